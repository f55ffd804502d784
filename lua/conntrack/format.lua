--- Output formats of conntrack entries, as the conntrack CLI writes them.
--
--   local fmt = require "conntrack.format"      -- also ct.format
--   fmt.default(e)    -> the `conntrack -L` line (libnetfilter_conntrack's own text)
--   fmt.extended(e)   -> the `conntrack -L -o extended` line
--   fmt.save(e [, opts]) -> the `conntrack -L -o save` line (conntrack-tools 1.4.7), which
--                        `conntrack -R file` and h:load(text) read back; an event entry
--                        gets -A/-U/-D by its type as `conntrack -E -o save` writes (but
--                        not the " [USERSPACE] portid=... progname=..." the CLI appends to
--                        events that a program caused).  Like the CLI's it has no mark:
--                        opts.mark = true appends "-m N" (both loaders take it).
--   fmt.table(e)      -> a JSON-ready plain table (status and labels as sorted arrays,
--                        plus nat = "none"|"snat"|"dnat"|"both")
--   fmt.json(e [, opts]) -> JSON text of fmt.table(e) (dkjson; opts.indent = true to indent)
--   fmt.format(e, name) -> by name: "default", "extended", "save", "json", or the CLI's
--                        -o options the core understands ("id", "ktimestamp", "labels", "xml",
--                        comma-combined)
--   fmt.parse_save(text) -> specs, errors, lines: the lines of save text as specs for
--                        h:create / h:load; errors = { {line=, errno=22, message=} };
--                        lines[i] = the line number of specs[i]
--   fmt.save_plain(text) -> true, lines | false, line, why: conntrack -R reads every line as
--                        h:load does (creations as -o save writes them)
--
-- fmt.save() is written after conntrack-tools' ct_save_snprintf(): -t, -u
-- (only EXPECTED, SEEN_REPLY, ASSURED, FIXED_TIMEOUT; "UNSET" when none), -c,
-- -w, --orig-zone, --reply-zone, -s, -d, then -g/-r and -n/-q (the NAT forms
-- when libnetfilter_conntrack 1.0.9 calls the entry NATed: the *_NAT_DONE
-- status bit and a different address), -p and the protocol's options.  Like the CLI it has no mark, labels or helper.
local core = require "conntrack.core"
local addr = require "conntrack.addr"
local nat = require "conntrack.nat"
local args = require "conntrack.args"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local M = {}

local concat, sort = table.concat, table.sort
local entry, argerr = args.entry, args.argerr

-- e: an entry (an expectation too where ok_expect).
local function only_entry(fname, e, ok_expect)
	if not args.is_entry(e) and not (ok_expect and core.type(e) == "expectation") then
		argerr(fname, "e", "entry expected, got " .. type(e))
	end
end

-- opts: nil or a table.
local function options(fname, opts)
	if opts ~= nil and type(opts) ~= "table" then
		argerr(fname, "opts", "table expected, got " .. type(opts))
	end
	return opts or {}
end

function M.default(e)
	only_entry("format.default", e, true)
	return tostring(e)
end

function M.extended(e)
	only_entry("format.extended", e)
	return e:format("extended")
end

-- ---------------------------------------------------------------------
-- -o save

local save_status = { { "EXPECTED", 0 }, { "SEEN_REPLY", 1 }, { "ASSURED", 2 }, { "FIXED_TIMEOUT", 10 } }
local evprefix = { new = "-A", update = "-U", destroy = "-D" }

-- libnetfilter_conntrack's NFCT_GOPT_IS_SNAT/IS_DNAT: the *_NAT_DONE bit
-- and a different (whole) address.
local function is_nat(st, done, a, b)
	if not st or not st[done] or a == nil or b == nil or a == b then
		return false
	end
	return (addr.canonical(a) or a) ~= (addr.canonical(b) or b)
end

local function save(fname, e, opts)
	local st, o, r = entry(fname, e, true)
	opts = options(fname, opts)
	local out = {}
	local function add(opt, v)
		if v ~= nil then
			out[#out + 1] = opt
			out[#out + 1] = tostring(v)
		end
	end
	local cmd = opts.command
	if cmd ~= nil and cmd ~= "-A" and cmd ~= "-I" and cmd ~= "-D" and cmd ~= "-U" then
		argerr(fname, "command", "\"-A\", \"-I\", \"-U\" or \"-D\" expected, got " .. args.show(cmd))
	end
	out[1] = cmd or evprefix[e.type] or "-A"
	add("-t", e.timeout)
	if st then
		local names = {}
		for _, f in ipairs(save_status) do
			if st[f[1]] then
				names[#names + 1] = f[1]
			end
		end
		add("-u", #names > 0 and concat(names, ",") or "UNSET")
	end
	add("-c", e.secmark)
	add("-w", e.zone)
	add("--orig-zone", o and o.zone)
	add("--reply-zone", r and r.zone)
	if o then
		add("-s", o.src)
		add("-d", o.dst)
	end
	if r then
		local rsrc, rdst = r.src, r.dst
		add(is_nat(st, "DST_NAT_DONE", rsrc, o and o.dst) and "-g" or "-r", rsrc)
		add(is_nat(st, "SRC_NAT_DONE", rdst, o and o.src) and "-n" or "-q", rdst)
	end
	local p = e.proto
	local pnum = e.protonum
	if p == "tcp" or p == "udp" or p == "udplite" or p == "sctp" or p == "dccp" then
		add("-p", p)
		add("--sport", o and o.sport)
		add("--dport", o and o.dport)
		add("--reply-port-src", r and r.sport)
		add("--reply-port-dst", r and r.dport)
		if p == "tcp" or p == "sctp" or p == "dccp" then
			add("--state", e.state)
		end
		if p == "sctp" then
			add("--orig-vtag", e.orig_vtag)
			add("--reply-vtag", e.reply_vtag)
		elseif p == "dccp" then
			local role = e.role
			add("--role", role and (type(role) == "string" and role or "(null)"))
		end
	elseif p == "icmp" or p == "icmpv6" then
		local v6 = p == "icmpv6" and "v6" or ""
		add("-p", p)
		add("--icmp" .. v6 .. "-type", o and o.icmp_type)
		add("--icmp" .. v6 .. "-code", o and o.icmp_code)
		add("--icmp" .. v6 .. "-id", o and o.icmp_id)
	elseif p == "gre" then
		add("-p", p)
		add("--srckey", o and o.sport)
		add("--dstkey", o and o.dport)
		add("--reply-key-src", r and r.sport)
		add("--reply-key-dst", r and r.dport)
	elseif pnum ~= nil then
		add("-p", pnum)
	end
	-- Not in the CLI's output, but read back by conntrack -R and h:load.
	if opts.mark and e.mark and e.mark ~= 0 then
		add("-m", e.mark)
	end
	return concat(out, " ")
end

function M.save(e, opts)
	return save("format.save", e, opts)
end

-- ---------------------------------------------------------------------
-- JSON

local function sorted_keys(set)
	if set == nil then
		return nil
	end
	local names, bits = {}, {}
	for k, v in pairs(set) do
		if v then
			if type(k) == "number" then
				bits[#bits + 1] = k
			else
				names[#names + 1] = k
			end
		end
	end
	sort(names)
	sort(bits)
	for _, b in ipairs(bits) do
		names[#names + 1] = b
	end
	return names
end

--- A plain table for JSON: e:totable() with status and labels as sorted
-- arrays and the NAT kind added.  Accepts a table of the same shape.
local function totable(fname, e)
	local t = e
	if args.is_entry(e) then
		t = e:totable()
	else
		entry(fname, e, true)
	end
	local out = {}
	for k, v in pairs(t) do
		out[k] = v
	end
	-- the copy, read once and checked again (a table's metamethods may change their answers)
	local st, labels = out.status, out.labels
	if type(e) == "table" then
		entry(fname, out, true)
	end
	out.status = sorted_keys(st) or {}
	if labels ~= nil then
		out.labels = sorted_keys(labels)
	end
	out.nat = nat.classify(type(e) == "table" and { status = st, orig = out.orig, reply = out.reply } or e)
	return out
end

function M.table(e)
	return totable("format.table", e)
end

local json
local keyorder = { "type", "family", "proto", "protonum", "state", "timeout", "status", "orig",
	"reply", "mark", "zone", "labels", "secmark", "use", "id", "start", "stop", "helper",
	"secctx", "nat", "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
	"packets", "bytes" }

local function tojson(fname, e, opts)
	if json == nil then
		local ok, mod = pcall(require, "dkjson")
		if not ok then
			core.error(fname .. ": needs the dkjson module (Debian: lua-dkjson; LuaRocks: dkjson)")
		end
		json = mod
	end
	opts = options(fname, opts)
	local t = totable(fname, e)
	-- a table made by hand may hold what JSON cannot (functions, cycles)
	local ok, text = pcall(json.encode, t, { indent = opts.indent and true or nil, keyorder = keyorder })
	if not ok then
		argerr(fname, "e", "not JSON: " .. tostring(text):gsub("^[^\n]-:%d+: ", ""):sub(1, 200))
	end
	return text
end

function M.json(e, opts)
	return tojson("format.json", e, opts)
end

--- The lines `conntrack -o xml` writes around the flows.
function M.xml_header()
	return '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>'
end

function M.xml_footer()
	return "</conntrack>"
end

function M.format(e, name)
	name = name or "default"
	if type(name) ~= "string" then
		argerr("format.format", "name", "format name expected, got " .. type(name))
	end
	if name == "save" then
		return save("format.format", e)
	elseif name == "json" then
		return tojson("format.format", e)
	end
	only_entry("format.format", e)
	if name == "default" then
		return tostring(e)
	end
	return e:format(name)
end

-- ---------------------------------------------------------------------
-- Reading save text back: the C reader (conntrack.core), one pass a line.

--- specs, errors, lines, ops: the lines of save text as spec tables (for
-- h:create, h:load); errors {line =, errno = EINVAL, message =}; lines[i]
-- the line number of specs[i]; ops[i] its command ("-A", "-I", "-U", "-D").
function M.parse_save(text)
	if type(text) ~= "string" then
		core.error("parse_save: bad argument 'text' (string expected, got " .. type(text) .. ")")
	end
	return core.parse_save(text)
end

--- true, lines | false, line, why: does conntrack -R read every line of text as
-- h:load does?  Each line a creation as -o save writes it ("-A " or "-I "
-- first, single spaces, no quoting), -p, what conntrack requires on a create
-- of that protocol (tcp --state; sctp --state, --orig-vtag, --reply-vtag;
-- dccp --state, --role; icmp/icmpv6 the type and code), none of the options
-- it refuses there and h:load takes (-f, -l, --label-del, --helper, -c);
-- empty lines and "#" comments pass.  lines: how many lines text has;
-- line, why: the first line that fails.
function M.save_plain(text)
	if type(text) ~= "string" then
		core.error("save_plain: bad argument 'text' (string expected, got " .. type(text) .. ")")
	end
	return core.save_plain(text)
end

return M
