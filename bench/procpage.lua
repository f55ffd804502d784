-- bench/procpage.lua [--all-in-memory] call list: the reference for
-- examples/rpcd-conntrack.lua's paged list, done the way OpenWrt's web
-- interface has done it: parse the text of /proc/net/nf_conntrack (or, on a
-- kernel without that file, of `conntrack -L`) in plain Lua, no module.
--
-- Reads the same JSON arguments on stdin (offset, limit, total, and the
-- filter fields family, proto, src, dst, sport, dport, state, exact values
-- only) and prints {entries, offset, limit, count, more, total} with each
-- entry shaped like the plugin's (family, proto, state, timeout, orig and
-- reply tuples with their counters, status flags, mark, zone, use).
-- Streams the lines and keeps only the page; --all-in-memory first builds
-- the table of every entry and then takes the page from it, as a "return
-- all connections" helper does.  Used by bench/rpcd.lua and spec/63-rpcd.
local json = require "dkjson"

local all_in_memory = arg[1] == "--all-in-memory"
local method = all_in_memory and arg[3] or arg[2]
if method ~= "list" then
	io.stderr:write("usage: procpage.lua [--all-in-memory] call list   (JSON arguments on stdin)\n")
	os.exit(2)
end
local args = json.decode(io.stdin:read("*a")) or {}
local offset, limit = args.offset or 0, args.limit or 100

local source = "/proc/net/nf_conntrack"
local f = io.open(source)
if not f then
	source = "conntrack -L"
	f = io.popen("conntrack -L 2>/dev/null")
end
local lines = f:lines()

local TUPLE = { src = true, dst = true, sport = true, dport = true, type = true, code = true, id = true,
	packets = true, bytes = true }

-- One line of text as an entry (nil for a line that is not one).
local function parse(line)
	local e = { orig = {}, reply = {}, status = {} }
	local rest = line
	local fam = line:match("^(ipv[46])%s+%d+%s+")
	if fam then
		rest = line:gsub("^ipv[46]%s+%d+%s+", "")
	end
	local proto, pnum, timeout, tail = rest:match("^(%S+)%s+(%d+)%s+(%d+)%s+(.*)$")
	if not proto then
		return nil
	end
	e.proto, e.protonum, e.timeout = proto, tonumber(pnum), tonumber(timeout)
	local state, after = tail:match("^(%u[%u_]*)%s+(.*)$")
	if state and not state:find("=") then
		e.state, tail = state, after
	end
	local dir = e.orig
	for tok in tail:gmatch("%S+") do
		local k, v = tok:match("^([%w_]+)=(.*)$")
		if k then
			if TUPLE[k] and dir then
				if k == "src" and dir.src then
					dir = dir == e.orig and e.reply or nil
				end
				if dir then
					dir[k] = tonumber(v) or v
				else
					e[k] = tonumber(v) or v
				end
			else
				dir = nil
				e[k] = tonumber(v) or v
			end
		else
			local flag = tok:match("^%[(%u+)%]$")
			if flag then
				e.status[#e.status + 1] = flag
			end
		end
	end
	e.family = fam or (tostring(e.orig.src):find(":", 1, true) and "ipv6" or "ipv4")
	return e
end

local function match(e)
	local o = e.orig
	return (args.family == nil or e.family == args.family)
		and (args.proto == nil or e.proto == args.proto)
		and (args.state == nil or e.state == args.state)
		and (args.src == nil or o.src == args.src)
		and (args.dst == nil or o.dst == args.dst)
		and (args.sport == nil or o.sport == args.sport)
		and (args.dport == nil or o.dport == args.dport)
end

local entries, seen, more = {}, 0, false
if all_in_memory then
	local everything = {}
	for line in lines do
		local e = parse(line)
		if e then everything[#everything + 1] = e end
	end
	for _, e in ipairs(everything) do
		if match(e) then
			seen = seen + 1
			if seen > offset then
				if #entries < limit then entries[#entries + 1] = e else more = true end
			end
		end
	end
else
	for line in lines do
		local e = parse(line)
		if e and match(e) then
			seen = seen + 1
			if seen > offset then
				if #entries < limit then
					entries[#entries + 1] = e
				else
					more = true
					if not args.total then break end
				end
			end
		end
	end
end
f:close()
io.stdout:write(json.encode{ entries = setmetatable(entries, { __jsontype = "array" }), offset = offset,
	limit = limit, count = #entries, more = more, total = args.total and seen or nil, source = source }, "\n")
