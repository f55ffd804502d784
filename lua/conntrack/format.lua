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
--
-- fmt.save() is written after conntrack-tools' ct_save_snprintf(): -t, -u
-- (only EXPECTED, SEEN_REPLY, ASSURED, FIXED_TIMEOUT; "UNSET" when none), -c,
-- -w, --orig-zone, --reply-zone, -s, -d, then -g/-r and -n/-q (the NAT forms
-- when libnetfilter_conntrack 1.0.9 calls the entry NATed: the *_NAT_DONE
-- status bit and a different address), -p and the protocol's options.  Like the CLI it has no mark, labels or helper.
local core = require "conntrack.core"
local addr = require "conntrack.addr"
local nat = require "conntrack.nat"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local M = {}

local concat, sort = table.concat, table.sort

function M.default(e)
	return tostring(e)
end

function M.extended(e)
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

function M.save(e, opts)
	local out = {}
	local function add(opt, v)
		if v ~= nil then
			out[#out + 1] = opt
			out[#out + 1] = tostring(v)
		end
	end
	out[1] = evprefix[e.type] or "-A"
	add("-t", e.timeout)
	local st = e.status
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
	local o, r = e.orig, e.reply
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
	if opts and opts.mark and e.mark and e.mark ~= 0 then
		add("-m", e.mark)
	end
	return concat(out, " ")
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
function M.table(e)
	local t = type(e) == "table" and e or e:totable()
	local out = {}
	for k, v in pairs(t) do
		out[k] = v
	end
	out.status = sorted_keys(t.status) or {}
	if t.labels ~= nil then
		out.labels = sorted_keys(t.labels)
	end
	out.nat = nat.classify(e)
	return out
end

local json
function M.json(e, opts)
	if json == nil then
		json = require "dkjson"
	end
	local keyorder = { "type", "family", "proto", "protonum", "state", "timeout", "status", "orig",
		"reply", "mark", "zone", "labels", "secmark", "use", "id", "start", "stop", "helper",
		"secctx", "nat", "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
		"packets", "bytes" }
	return json.encode(M.table(e), { indent = opts and opts.indent or nil, keyorder = keyorder })
end

function M.format(e, name)
	name = name or "default"
	if name == "default" then
		return tostring(e)
	elseif name == "save" then
		return M.save(e)
	elseif name == "json" then
		return M.json(e)
	end
	return e:format(name)
end

-- ---------------------------------------------------------------------
-- Reading save text back

local opt_field = {
	["-s"] = "src", ["--orig-src"] = "src", ["--src"] = "src",
	["-d"] = "dst", ["--orig-dst"] = "dst", ["--dst"] = "dst",
	["-r"] = "reply_src", ["--reply-src"] = "reply_src", ["-g"] = "reply_src", ["--dst-nat"] = "reply_src",
	["-q"] = "reply_dst", ["--reply-dst"] = "reply_dst", ["-n"] = "reply_dst", ["--src-nat"] = "reply_dst",
	["-p"] = "proto", ["--proto"] = "proto", ["--protonum"] = "proto",
	["-f"] = "family", ["--family"] = "family",
	["--sport"] = "sport", ["--orig-port-src"] = "sport",
	["--dport"] = "dport", ["--orig-port-dst"] = "dport",
	["--reply-port-src"] = "reply_sport", ["--reply-port-dst"] = "reply_dport",
	["--state"] = "state",
	["--icmp-type"] = "icmp_type", ["--icmp-code"] = "icmp_code", ["--icmp-id"] = "icmp_id",
	["--icmpv6-type"] = "icmp_type", ["--icmpv6-code"] = "icmp_code", ["--icmpv6-id"] = "icmp_id",
	["-t"] = "timeout", ["--timeout"] = "timeout",
	["-u"] = "status", ["--status"] = "status",
	["-c"] = "secmark", ["--secmark"] = "secmark",
	["-w"] = "zone", ["--zone"] = "zone",
	["-m"] = "mark", ["--mark"] = "mark",
	["-l"] = "labels", ["--label"] = "labels",
}
local numeric = { sport = true, dport = true, reply_sport = true, reply_dport = true,
	icmp_type = true, icmp_code = true, icmp_id = true, timeout = true, secmark = true,
	zone = true, mark = true }
-- Protocol details the core's specs do not carry; the kernel sets its own.
local ignored = { ["--orig-vtag"] = true, ["--reply-vtag"] = true, ["--role"] = true }
-- GRE keys: the core's specs have none, so only zero keys (what the kernel
-- gives an entry created without them) can be loaded.
local gre_keys = { ["--srckey"] = true, ["--dstkey"] = true, ["--reply-key-src"] = true,
	["--reply-key-dst"] = true }
local commands = { ["-A"] = true, ["--add"] = true, ["-I"] = true, ["--create"] = true }
local status_ok = { ASSURED = true, SEEN_REPLY = true, FIXED_TIMEOUT = true, EXPECTED = true,
	OFFLOAD = true, HW_OFFLOAD = true }

-- Status words seen before ("SEEN_REPLY,ASSURED" -> the array), or false.
local status_memo = {}
local function parse_status(val)
	local set = status_memo[val]
	if set == nil then
		set = {}
		for s in val:gmatch("[^,]+") do
			s = s:upper()
			if s ~= "UNSET" then
				if not status_ok[s] then
					set = false
					break
				end
				set[#set + 1] = s
			end
		end
		status_memo[val] = set
	end
	if not set then
		return nil
	end
	local copy = {}
	for i = 1, #set do
		copy[i] = set[i]
	end
	return copy
end

-- The lines `conntrack -L -o save` writes for tcp/udp/icmp without zones,
-- read with a few anchored patterns (twice as fast as the general way).
local fast_head = "^%-A %-t (%d+) %-u (%S+) %-s (%S+) %-d (%S+) %-[rg] (%S+) %-[qn] (%S+) %-p (%a+)(.*)$"
local fast_ports = "^ %-%-sport (%d+) %-%-dport (%d+) %-%-reply%-port%-src (%d+) %-%-reply%-port%-dst (%d+)(.*)$"
local fast_icmp = "^ %-%-icmp(v?6?)%-type (%d+) %-%-icmpv?6?%-code (%d+) %-%-icmpv?6?%-id (%d+)$"
local fast_protos = { tcp = true, udp = true, udplite = true, sctp = true, dccp = true }

local function parse_fast(line)
	local to, st, src, dst, rsrc, rdst, p, rest = line:match(fast_head)
	if not to then
		return nil
	end
	local status = parse_status(st)
	if not status then
		return nil
	end
	if fast_protos[p] then
		local sp, dp, rsp, rdp, tail = rest:match(fast_ports)
		if not sp then
			return nil
		end
		local state
		if tail ~= "" then
			state = tail:match("^ %-%-state ([%u_%d]+)$")
			if not state or p ~= "tcp" then
				return nil
			end
		end
		return { timeout = tonumber(to), status = status, src = src, dst = dst,
			reply_src = rsrc, reply_dst = rdst, proto = p, sport = tonumber(sp),
			dport = tonumber(dp), reply_sport = tonumber(rsp), reply_dport = tonumber(rdp),
			state = state }
	elseif p == "icmp" or p == "icmpv6" then
		local v6, ty, co, id = rest:match(fast_icmp)
		if not ty or (v6 == "v6") ~= (p == "icmpv6") then
			return nil
		end
		return { timeout = tonumber(to), status = status, src = src, dst = dst,
			reply_src = rsrc, reply_dst = rdst, proto = p, icmp_type = tonumber(ty),
			icmp_code = tonumber(co), icmp_id = tonumber(id) }
	end
	return nil
end

-- Every option takes one value, so a line is a command and pairs.
local function parse_line(line)
	local fast = parse_fast(line)
	if fast then
		return fast
	end
	local cmd, rest = line:match("^%s*(%S+)(.*)$")
	if cmd == nil or cmd:sub(1, 1) == "#" then
		return nil
	end
	if not commands[cmd] then
		if cmd == "-U" or cmd == "-D" or cmd == "--update" or cmd == "--delete" then
			return false, "only -A/-I lines can be loaded, not " .. cmd
		end
		rest = line
	end
	local spec = {}
	local pos = 1
	for opt, val, after in rest:gmatch("(%S+)%s+(%S+)()") do
		pos = after
		local field = opt_field[opt]
		if field == nil then
			if gre_keys[opt] then
				if tonumber(val) ~= 0 then
					return false, "option " .. opt .. ": GRE keys other than 0 cannot be loaded"
				end
			elseif not ignored[opt] then
				return false, "unsupported option " .. opt
			end
		elseif numeric[field] then
			local n = tonumber(val)
			if not n then
				return false, "option " .. opt .. ": number expected, got " .. val
			end
			spec[field] = n
		elseif field == "status" then
			spec.status = parse_status(val)
			if not spec.status then
				return false, "option " .. opt .. ": unknown status in " .. val
			end
		elseif field == "labels" then
			local set = {}
			for l in val:gmatch("[^,]+") do
				set[#set + 1] = tonumber(l) or l
			end
			spec.labels = set
		elseif field == "proto" then
			spec.proto = tonumber(val) or val:lower()
		else
			spec[field] = val
		end
	end
	local tail = rest:sub(pos):match("%S+")
	if tail then
		return false, "option " .. tail .. " needs a value"
	end
	if spec.timeout == nil then
		return false, "no timeout (-t)"
	end
	return spec
end

function M.parse_save(text)
	local specs, errors, lines = {}, {}, {}
	local n = 0
	for line in (text .. "\n"):gmatch("([^\n]*)\n") do
		n = n + 1
		local spec, why = parse_line(line)
		if spec then
			specs[#specs + 1] = spec
			lines[#specs] = n
		elseif spec == false then
			errors[#errors + 1] = { line = n, errno = 22, message = "load: line " .. n .. ": " .. why }
		end
	end
	return specs, errors, lines
end

return M
