#!/usr/bin/env lua
--[==[ rpcd-conntrack.lua: the conntrack table on OpenWrt's ubus, as an rpcd
exec plugin, without parsing /proc/net/nf_conntrack.

  rpcd-conntrack.lua list              the methods and their arguments, as JSON
  rpcd-conntrack.lua call METHOD       JSON arguments on stdin, a JSON object on stdout

Install it as /usr/libexec/rpcd/conntrack (executable; on OpenWrt the first
line reads #!/usr/bin/lua), restart rpcd, and:

  ubus call conntrack count
  ubus call conntrack list '{"proto": "tcp", "dport": 443, "offset": 0, "limit": 50}'
  ubus call conntrack delete '{"src": "192.0.2.0/24", "proto": "udp"}'

rpcd runs the file with `list` once, when it starts, and registers the
methods it prints (an argument's type is that of its example value); then
with `call METHOD` for each call, writing the call's arguments to stdin as
one JSON object and closing it, and reading one JSON object back from
stdout: anything else fails the call.  Errors are objects too:
{"error": "message", "errno": n} (errno for the kernel's refusals).

Methods (filter fields, all optional: family, proto, src, dst (address or
CIDR prefix), sport, dport, state, nat (none, snat, dnat, both, any), mark
(a number or "value/mask"), zone):
  list   filter fields, offset (default 0), limit (1 to 1000, default 100),
         total (true: also count every match, which reads the whole table)
         -> {entries = [...], offset, limit, count, more, total}
         each entry as the module's format.table(e) (tuples, counters,
         status, NAT kind...); the table is read as a stream and only the
         page is kept, so memory stays flat whatever the table's size
  count  filter fields -> {count, max} (no filter: the kernel's own count)
  stats  -> {cpus = [{cpu, found, invalid, ...}], total = {...}}
  delete filter fields (at least one) -> {deleted, missing, failed, errors = [...]}
  flush  family (optional) -> {flushed = true}

Arguments that rpcd adds itself (ubus_rpc_session) are ignored; unknown
ones are refused.  Uses lua-dkjson for JSON.
]==]

-- From a checkout: this tree's module (examples/toolbox.lua says where);
-- installed on a router, the system's.
do
	local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")
	if here then
		package.path = package.path .. ";" .. here .. "/?.lua"  -- last: examples/conntrack.lua is the command, not the module
		local ok, tb = pcall(require, "toolbox")
		if ok then tb.tree(here) end
	end
end

local json = require "dkjson"
local ct = require "conntrack"

local USAGE = [[
usage: rpcd-conntrack.lua list
       rpcd-conntrack.lua call METHOD    (JSON arguments on stdin)
An rpcd exec plugin: install as /usr/libexec/rpcd/conntrack.
Methods: list, count, stats, delete, flush (see the head of this file).
]]

local MAX_LIMIT = 1000

local FILTER = { family = "ipv4", proto = "tcp", src = "192.0.2.0/24", dst = "198.51.100.1", sport = 0,
	dport = 0, state = "ESTABLISHED", nat = "any", mark = "0x1/0xff", zone = 0 }

local function with(extra)
	local t = {}
	for k, v in pairs(FILTER) do t[k] = v end
	for k, v in pairs(extra or {}) do t[k] = v end
	return t
end

-- What `list` prints: each method with example values of its arguments.
local SIGNATURES = {
	list = with{ offset = 0, limit = 100, total = false },
	count = with(),
	stats = setmetatable({}, { __jsontype = "object" }), -- {} even with no arguments
	delete = with(),
	flush = { family = "ipv4" },
}

-- Keys in a reading order (rpcd does not care; people reading ubus output do).
local KEYORDER = { "error", "errno", "entries", "offset", "limit", "count", "more", "total", "max",
	"deleted", "missing", "failed", "errors", "flushed", "cpus", "cpu",
	"family", "proto", "protonum", "state", "timeout", "status", "nat", "orig", "reply", "src", "dst",
	"sport", "dport", "icmp_type", "icmp_code", "icmp_id", "packets", "bytes", "mark", "zone", "labels",
	"secmark", "use", "id", "start", "stop", "helper", "secctx" }

local function out(t)
	io.stdout:write(json.encode(t, { keyorder = KEYORDER }), "\n")
end

-- Errors travel as values from here on: a raise in a method means a bad
-- argument (the module names it), never a crash.
local Bad = {}
local function bad(msg)
	error(setmetatable({ msg = msg }, Bad), 0)
end

local function ours(k)
	return type(k) == "string" and not k:find("^ubus_rpc_session") -- added by rpcd / uhttpd-mod-ubus
end

-- The call's arguments other than the filter fields, refusing any not in allowed.
local function others(args, allowed)
	local rest = {}
	for k, v in pairs(args) do
		if type(k) ~= "string" then
			bad("arguments must be an object")
		elseif ours(k) and FILTER[k] == nil then
			if not allowed[k] then
				bad("unknown argument '" .. k .. "'")
			end
			rest[k] = v
		end
	end
	return rest
end

-- The filter of the call's arguments, and how many fields it has; the other
-- arguments (those allowed) come back in `rest`.
local function filter_of(args, allowed)
	local rest = others(args, allowed or {})
	local f, n = {}, 0
	for k, v in pairs(args) do
		if FILTER[k] ~= nil and v ~= "" and v ~= json.null then
			-- blobmsg int32 comes as a signed number: marks above 2^31 are negative
			if k == "mark" and type(v) == "number" and v < 0 then v = v + 2 ^ 32 end
			f[k] = v
			n = n + 1
		end
	end
	local ok, filter = pcall(ct.filter.coerce, f)
	if not ok then
		bad(tostring(filter))
	end
	return filter, rest, n
end

-- Refuses every argument but those allowed, filter fields included.
local function only(args, allowed)
	for k in pairs(args) do
		if ours(k) and not allowed[k] then
			bad("unknown argument '" .. tostring(k) .. "'")
		end
	end
end

local function whole(v, name, lo, hi, default)
	if v == nil then return default end
	if type(v) ~= "number" or v ~= math.floor(v) or v < lo or v > hi then
		bad(("'%s' must be a whole number from %d to %d"):format(name, lo, hi))
	end
	return v
end

local function handle()
	local h, msg, errno = ct.open()
	if not h then
		return nil, { error = msg, errno = errno }
	end
	return h
end

local M = {}

function M.list(h, args)
	local filter, rest = filter_of(args, { offset = true, limit = true, total = true })
	local offset = whole(rest.offset, "offset", 0, 2 ^ 31 - 1, 0)
	local limit = whole(rest.limit, "limit", 1, MAX_LIMIT, 100)
	local want_total = rest.total == true
	local it, st = h:dump(filter)
	if not it then
		return { error = st }
	end
	local entries, seen, more = {}, 0, false
	local table_of = ct.format.table
	local ok, err = pcall(function()
		for e in it, st do
			seen = seen + 1
			if seen > offset then
				if #entries < limit then
					entries[#entries + 1] = table_of(e)
				else
					more = true
					if not want_total then break end
				end
			end
		end
	end)
	st:close()
	if not ok then
		return { error = tostring(err) }
	end
	return { entries = setmetatable(entries, { __jsontype = "array" }), offset = offset, limit = limit,
		count = #entries, more = more, total = want_total and seen or nil }
end

function M.count(h, args)
	local filter, _, n = filter_of(args)
	local max = h:max()
	if n == 0 then
		local c, msg, errno = h:count()
		if not c then return { error = msg, errno = errno } end
		return { count = c, max = max }
	end
	local c = 0
	for _ in h:dump(filter) do c = c + 1 end
	return { count = c, max = max }
end

function M.stats(h, args)
	only(args, {})
	local s, msg, errno = h:stats()
	if not s then return { error = msg, errno = errno } end
	local cpus = {}
	for i, c in ipairs(s) do cpus[i] = c end
	return { cpus = cpus, total = s.total }
end

function M.delete(h, args)
	local filter, _, n = filter_of(args)
	if n == 0 then
		bad("delete needs a filter (flush empties the table)")
	end
	local deleted, missing, failures = h:delete_where(filter)
	if not deleted then
		return { error = missing, errno = failures }
	end
	local errors = {}
	for i = 1, math.min(#failures, 10) do errors[i] = failures[i].message end
	return { deleted = deleted, missing = missing, failed = #failures,
		errors = setmetatable(errors, { __jsontype = "array" }) }
end

function M.flush(h, args)
	only(args, { family = true })
	local family = args.family ~= "" and args.family or nil
	if family ~= nil and family ~= "ipv4" and family ~= "ipv6" then
		bad("'family' must be \"ipv4\" or \"ipv6\"")
	end
	local ok, msg, errno = h:flush(family and { family = family } or nil)
	if not ok then return { error = msg, errno = errno } end
	return { flushed = true }
end

-- Main ----------------------------------------------------------------------

local cmd, method = arg[1], arg[2]
if cmd == "list" then
	out(SIGNATURES)
	os.exit(0)
elseif cmd == "-h" or cmd == "--help" then
	io.stdout:write(USAGE)
	os.exit(0)
elseif cmd ~= "call" or not method or arg[3] then
	io.stderr:write(USAGE)
	os.exit(2)
end

if not M[method] then
	out{ error = "unknown method '" .. method .. "'" }
	os.exit(0)
end

local input = io.stdin:read("*a") or ""
local args = {}
if input:find("%S") then
	local doc, _, err = json.decode(input)
	if type(doc) ~= "table" then
		out{ error = "arguments: " .. (err or "a JSON object expected") }
		os.exit(0)
	end
	args = doc
end

local h, herr = handle()
if not h then
	out(herr)
	os.exit(0)
end
local ok, res = pcall(M[method], h, args)
h:close()
if not ok then
	if getmetatable(res) == Bad then
		res = { error = method .. ": " .. res.msg }
	else
		res = { error = method .. ": " .. tostring(res) }
	end
end
out(res)
