--- Filters over conntrack entries, with kernel pushdown.
--
--   local F = require "conntrack.filter"        -- also ct.filter
--   local f = F.all(F.proto "udp", F.src "192.0.2.0/24", F.dport(53))
--   local f = F.proto "tcp" * F.status "ASSURED" - F.nat "any"   -- same algebra with operators
--   local f = F{ proto = "udp", src = "192.0.2.0/24", dport = 53 } -- a table of fields
--   for e in h:dump(f) do ... end ; h:list(f) ; h:delete_where(f) ; h:update_where(f, changes)
--   print(f:explain())
--
-- Building blocks (each returns a filter; several arguments mean "any of"
-- except for label and status, where they all must hold):
--   family(name)                    "ipv4" | "ipv6"
--   proto(p, ...)                   "tcp", "udp", "udplite", "icmp", "icmpv6", "sctp", "dccp", "gre" or a number
--   src / dst / reply_src / reply_dst (a, ...)   address or CIDR prefix, IPv4 or IPv6
--   sport / dport / reply_sport / reply_dport (p, ...)  port, "lo-hi", or {lo, hi}
--   state(name, ...)                "ESTABLISHED", "TIME_WAIT", ...
--   status(flags)                   "ASSURED", "!DYING", {"ASSURED", "!SEEN_REPLY"},
--                                   {ASSURED = true, DYING = false}, "UNREPLIED" (= "!SEEN_REPLY"), or a number
--   mark(value [, mask])            (mark & mask) == (value & mask); also "42/0xff"
--   zone(n)                         the entry's zone (no zone = 0)
--   label(l, ...)                   all of these labels set (names or bit numbers)
--   nat(kind [, "addr:port"])       kind "none", "snat", "dnat", "both", "any"; "snat" and "dnat" also
--                                   match "both".  With an address/port ("198.51.100.100", ":40000",
--                                   "[2001:db8::1]:53"): the translated source (snat) or the
--                                   destination really reached (dnat), as --src-nat/--dst-nat do
--   timeout(lo [, hi])              lo <= timeout <= hi; nil = open end; also {lo, hi} and "lo-hi"
--   where(fn [, text])              any Lua predicate fn(e) -> boolean
-- Combinators: all(...), any(...), none(...), negate(f); operators
--   a * b  == all(a, b)    a + b == any(a, b)    -a == negate(a)    a - b == all(a, negate(b))
-- Plain tables are read as all() of their fields (the names above, plus
-- mark_mask, labels and where); functions as where(fn).  F.coerce(x) does that.
--
-- Methods of a filter f:
--   f:match(e) / f(e)     -> boolean (pure Lua evaluation of the whole filter)
--   f:compile()           -> fn(e) -> boolean, the same as a plain function
--   f:pushdown([caps])    -> kernel, residual
--   f:explain([caps])     -> text saying what runs where, and the {kernel=, c=, lua=} parts
--   f:event_pushdown()    -> the socket filter ct.events attaches ({proto=, src=, dst=, mark=}) or nil
--   tostring(f)           -> the filter as an expression
--
-- PUSHDOWN CONTRACT (for ct.dump/list/delete_where/update_where here, and
-- for conntrack.events, which asks for it too):
--   local kernel, residual = f:pushdown([caps])
--   kernel:   nil, or a table of h:dump() options: { family = "ipv4"|"ipv6",
--             mark = n, mark_mask = n, zone = n, status = n, status_mask = n }
--             (only the keys that apply).  Every entry f matches also matches
--             `kernel`: sending it to the kernel only drops entries f rejects.
--   residual: nil when `kernel` alone is exactly f; otherwise a filter (it
--             has :match(e) and is callable) that must still hold for each
--             entry the kernel returns.  Never a weaker test than needed.
--   caps (optional): { status = bool, zone = bool, mark = bool, family = bool }
--             which keys the consumer can apply; omitted keys take the
--             defaults for dumps on this kernel (F.caps(): status needs
--             Linux >= 5.15, where CTA_STATUS_MASK came; older kernels would
--             ignore the status attributes silently, so status stays in Lua).
--   A consumer that cannot apply a key it was given must evaluate f whole.
local addr = require "conntrack.addr"

local F = {}

local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local floor, format, concat, sort = math.floor, string.format, table.concat, table.sort
local unpack = table.unpack or unpack

-- ---------------------------------------------------------------------
-- 32-bit and/or: native operators on 5.3+, bit32 or LuaJIT's bit, else arithmetic.

local band, bor
do
	local ld = loadstring or load
	local f = ld("return function(a, b) return a & b end, function(a, b) return a | b end")
	if f then
		band, bor = f()
	elseif bit32 then
		band, bor = bit32.band, bit32.bor
	else
		local ok, bit = pcall(require, "bit")
		if ok and bit and bit.band then
			local b_and, b_or = bit.band, bit.bor
			band = function(a, b)
				local r = b_and(a, b)
				return r < 0 and r + 4294967296 or r
			end
			bor = function(a, b)
				local r = b_or(a, b)
				return r < 0 and r + 4294967296 or r
			end
		else
			local function op(a, b, both)
				local r, p = 0, 1
				for _ = 1, 32 do
					local x, y = a % 2, b % 2
					if (both and x + y == 2) or (not both and x + y > 0) then
						r = r + p
					end
					a, b, p = (a - x) / 2, (b - y) / 2, p * 2
				end
				return r
			end
			band = function(a, b) return op(a, b, true) end
			bor = function(a, b) return op(a, b, false) end
		end
	end
end
F.band, F.bor = band, bor

-- ---------------------------------------------------------------------
-- Kernel capabilities of dumps.

local kcaps
--- The pushdown defaults for this kernel: { family, mark, zone, status = bool }.
function F.caps()
	if kcaps == nil then
		local rel = ""
		local fh = io.open("/proc/sys/kernel/osrelease")
		if fh then
			rel = fh:read("*l") or ""
			fh:close()
		end
		local maj, min = rel:match("^(%d+)%.(%d+)")
		maj, min = tonumber(maj) or 0, tonumber(min) or 0
		kcaps = {
			family = true,
			tuple = true, -- conntrack.core re-checks what CTA_FILTER selects
			mark = true,
			zone = true, -- conntrack.core's dump checks the zone itself
			status = maj > 5 or (maj == 5 and min >= 15),
			kernel = rel,
		}
	end
	return kcaps
end

-- ---------------------------------------------------------------------
-- Names

local proto_nums = {
	tcp = 6, udp = 17, udplite = 136, icmp = 1, icmpv6 = 58, sctp = 132, dccp = 33, gre = 47,
}
local proto_names = {}
for k, v in pairs(proto_nums) do
	proto_names[v] = k
end
F.proto_numbers = proto_nums

-- Kernel status bits (IPS_*_BIT): bit -> name for 0..15.
local status_names = {
	[0] = "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT", "DST_NAT",
	"SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING", "FIXED_TIMEOUT",
	"TEMPLATE", "UNTRACKED", "HELPER", "OFFLOAD", "HW_OFFLOAD",
}
local status_bits = {}
for b = 0, 15 do
	status_bits[status_names[b]] = b
end
status_bits.NAT_CLASH = 12
F.status_bits = status_bits

local function hex(n)
	return format("0x%x", n)
end

-- ---------------------------------------------------------------------
-- Nodes.  kind: "const" (value), "leaf", "all"/"any" (list), "not" (child).
-- A leaf has: text; pred(e) or dir+field+check(v); push (dump options it
-- implies) and exact (push says all of it).

local Filter = {}
Filter.__index = Filter
F.Filter = Filter

local function new(t)
	return setmetatable(t, Filter)
end

local function is_filter(x)
	return getmetatable(x) == Filter
end
F.is = is_filter

local TRUE = new { kind = "const", value = true }
local FALSE = new { kind = "const", value = false }
F.always, F.never = TRUE, FALSE

--- Raises msg at the first caller outside lua/conntrack (the user's
-- code), as the C core does for its argument errors.
local function raise(msg)
	local getinfo = debug and debug.getinfo
	local k = 2
	while getinfo do
		local info = getinfo(k, "S")
		if info == nil then
			break
		end
		local src = info.source or ""
		if info.what ~= "C" and not src:find("/conntrack/", 1, true) and
			not src:find("conntrack%.lua$") then
			error(msg, k)
		end
		k = k + 1
	end
	error(msg, 0)
end
F.raise = raise

local function argerr(fname, what, why)
	raise(format("filter.%s: bad argument '%s' (%s)", fname, what, why))
end

local coerce

-- The values of a block that takes one or more.
local function several(fname, what, ...)
	local n = select("#", ...)
	if n == 0 then
		argerr(fname, fname, what .. " expected")
	end
	return { ... }, n
end

local function flatten(kind, list, out)
	for i = 1, #list do
		local c = coerce(list[i], kind)
		if c.kind == kind then
			flatten(kind, c.list, out)
		else
			out[#out + 1] = c
		end
	end
	return out
end

-- all() / any(): flattened; the absorbing constant (false for all, true
-- for any) wins, the neutral one drops out.
local function combine(kind, absorbing, ...)
	local out = {}
	for _, c in ipairs(flatten(kind, { ... }, {})) do
		if c.kind == "const" then
			if c.value == absorbing then
				return c
			end
		else
			out[#out + 1] = c
		end
	end
	if #out == 0 then
		return absorbing and FALSE or TRUE
	elseif #out == 1 then
		return out[1]
	end
	return new { kind = kind, list = out }
end

function F.all(...)
	return combine("all", false, ...)
end

function F.any(...)
	return combine("any", true, ...)
end

function F.negate(f)
	f = coerce(f, "negate")
	if f.kind == "const" then
		return f.value and FALSE or TRUE
	elseif f.kind == "not" then
		return f.child
	elseif f.negate then
		-- A leaf that knows its own negation (status flags) stays pushable.
		local g = f.negate()
		if g then
			return g
		end
	end
	return new { kind = "not", child = f }
end

function F.none(...)
	return F.negate(F.any(...))
end

-- A tuple leaf tests e[dir][field]; an entry leaf tests pred(e).
local function tleaf(text, dir, field, check, push, exact)
	return new { kind = "leaf", text = text, dir = dir, field = field, check = check,
		push = push, exact = exact }
end

local function eleaf(text, pred, push, exact)
	return new { kind = "leaf", text = text, pred = pred, push = push, exact = exact }
end

-- ---------------------------------------------------------------------
-- Building blocks

function F.family(name)
	if name ~= "ipv4" and name ~= "ipv6" then
		argerr("family", "family", "\"ipv4\" or \"ipv6\" expected, got " .. tostring(name))
	end
	return eleaf("family(" .. name .. ")", function(e) return e.family == name end,
		{ family = name }, true)
end

function F.proto(...)
	local args, n = several("proto", "a protocol name or number", ...)
	local set, names = {}, {}
	for i = 1, n do
		local p = args[i]
		local num = type(p) == "number" and p or proto_nums[p]
		if type(p) == "string" and not num and p:match("^%d+$") then
			num = tonumber(p)
		end
		if type(num) ~= "number" or num < 0 or num > 255 or num ~= floor(num) then
			argerr("proto", "proto", "unknown protocol '" .. tostring(p) .. "'")
		end
		set[num] = true
		names[#names + 1] = proto_names[num] or tostring(num)
	end
	local text = "proto(" .. concat(names, ",") .. ")"
	local nums = {}
	for num in pairs(set) do
		nums[#nums + 1] = num
	end
	sort(nums)
	local leaf
	if n == 1 then
		local only = nums[1]
		leaf = eleaf(text, function(e) return e.protonum == only end, { proto = only }, true)
	else
		leaf = eleaf(text, function(e)
			local p = e.protonum
			return p ~= nil and set[p] == true
		end)
	end
	leaf.event = { proto = nums }
	return leaf
end

local function addr_leaf(fname, dir, field, ...)
	local args, n = several(fname, "an address or prefix", ...)
	local tests, texts, fams = {}, {}, {}
	for i = 1, n do
		local ok, m, fam, canon = pcall(addr.matcher, args[i], fname)
		if not ok then
			raise("filter." .. fname .. ": " .. m)
		end
		tests[i], texts[i], fams[fam] = m, canon, true
	end
	local check = tests[1]
	if n > 1 then
		check = function(v)
			for i = 1, n do
				if tests[i](v) then
					return true
				end
			end
			return false
		end
	end
	-- All of one family: the kernel can at least drop the other family;
	-- one exact address goes whole into the dump's tuple filter.
	local push, exact
	if fams.ipv4 and not fams.ipv6 then
		push = { family = "ipv4" }
	elseif fams.ipv6 and not fams.ipv4 then
		push = { family = "ipv6" }
	end
	if n == 1 and not texts[1]:find("/", 1, true) then
		push[fname], exact = texts[1], true
	end
	local leaf = tleaf(fname .. "(" .. concat(texts, ",") .. ")", dir, field, check, push, exact or false)
	-- The events' socket filter checks original addresses; its IPv4 dst
	-- check rejects IPv6 events, so dst goes there in one family only.
	if dir == "orig" and n <= 64 and (field == "src" or push) then
		leaf.event = { [field] = texts }
	end
	return leaf
end

function F.src(...) return addr_leaf("src", "orig", "src", ...) end
function F.dst(...) return addr_leaf("dst", "orig", "dst", ...) end
function F.reply_src(...) return addr_leaf("reply_src", "reply", "src", ...) end
function F.reply_dst(...) return addr_leaf("reply_dst", "reply", "dst", ...) end

local function port_range(fname, p)
	local lo, hi
	if type(p) == "number" then
		lo, hi = p, p
	elseif type(p) == "string" then
		local a, b = p:match("^%s*(%d+)%s*[-:]%s*(%d+)%s*$")
		if a then
			lo, hi = tonumber(a), tonumber(b)
		else
			lo = tonumber(p)
			hi = lo
		end
	elseif type(p) == "table" then
		lo, hi = p[1] or p.lo or p.min, p[2] or p.hi or p.max
	end
	if type(lo) ~= "number" or type(hi) ~= "number" or lo < 0 or hi > 65535 or lo > hi
		or lo ~= floor(lo) or hi ~= floor(hi) then
		argerr(fname, fname, "port 0..65535, \"lo-hi\" or {lo, hi} expected, got " .. tostring(p))
	end
	return lo, hi
end

local function port_leaf(fname, dir, field, ...)
	local args, n = several(fname, "a port or range", ...)
	local los, his, texts = {}, {}, {}
	for i = 1, n do
		local lo, hi = port_range(fname, args[i])
		los[i], his[i] = lo, hi
		texts[i] = lo == hi and tostring(lo) or (lo .. "-" .. hi)
	end
	local check
	if n == 1 and los[1] == his[1] then
		local p = los[1]
		check = function(v) return v == p end
	elseif n == 1 then
		local lo, hi = los[1], his[1]
		check = function(v) return v ~= nil and v >= lo and v <= hi end
	else
		check = function(v)
			if v == nil then
				return false
			end
			for i = 1, n do
				if v >= los[i] and v <= his[i] then
					return true
				end
			end
			return false
		end
	end
	if n == 1 and los[1] == his[1] then
		return tleaf(fname .. "(" .. concat(texts, ",") .. ")", dir, field, check,
			{ [fname] = los[1] }, true)
	end
	return tleaf(fname .. "(" .. concat(texts, ",") .. ")", dir, field, check)
end

function F.sport(...) return port_leaf("sport", "orig", "sport", ...) end
function F.dport(...) return port_leaf("dport", "orig", "dport", ...) end
function F.reply_sport(...) return port_leaf("reply_sport", "reply", "sport", ...) end
function F.reply_dport(...) return port_leaf("reply_dport", "reply", "dport", ...) end

function F.state(...)
	local args, n = several("state", "a state name", ...)
	local set, names = {}, {}
	for i = 1, n do
		local s = args[i]
		if type(s) ~= "string" then
			argerr("state", "state", "state name expected, got " .. type(s))
		end
		s = s:upper()
		set[s] = true
		names[i] = s
	end
	if n == 1 then
		local only = names[1]
		return eleaf("state(" .. only .. ")", function(e) return e.state == only end)
	end
	return eleaf("state(" .. concat(names, ",") .. ")", function(e)
		local s = e.state
		return s ~= nil and set[s] == true
	end)
end

-- Status: bits that must be set (on) and bits that must be clear (off).
local function status_leaf(on, off)
	local value, mask, texts = 0, 0, {}
	local bits = {}
	for b in pairs(on) do
		bits[#bits + 1] = b
	end
	for b in pairs(off) do
		bits[#bits + 1] = b
	end
	sort(bits)
	local ons, offs = {}, {}
	for _, b in ipairs(bits) do
		local name = status_names[b] or b
		if on[b] then
			value = value + 2 ^ b
			ons[#ons + 1] = name
			texts[#texts + 1] = tostring(name)
		else
			offs[#offs + 1] = name
			texts[#texts + 1] = "!" .. tostring(name)
		end
		mask = mask + 2 ^ b
	end
	if mask == 0 then
		return TRUE
	end
	local non, noff = #ons, #offs
	local pred = function(e)
		local st = e.status
		if st == nil then
			return non == 0
		end
		for i = 1, non do
			if not st[ons[i]] then
				return false
			end
		end
		for i = 1, noff do
			if st[offs[i]] then
				return false
			end
		end
		return true
	end
	local leaf = eleaf("status(" .. concat(texts, ",") .. ")", pred,
		{ status = value, status_mask = mask }, true)
	leaf.status_leaf = true
	if #bits == 1 then
		leaf.negate = function()
			if non == 1 then
				return status_leaf({}, on)
			end
			return status_leaf(off, {})
		end
	end
	return leaf
end

local function status_bit(fname, name)
	if type(name) == "number" then
		if name < 0 or name > 31 or name ~= floor(name) then
			argerr(fname, "status", "bit number 0..31 expected")
		end
		return name
	end
	local b = status_bits[type(name) == "string" and name:upper() or name]
	if b == nil then
		argerr(fname, "status", "unknown status flag '" .. tostring(name) .. "'")
	end
	return b
end

function F.status(spec, ...)
	if select("#", ...) > 0 then
		spec = { spec, ... }
	end
	local on, off = {}, {}
	local function add(name, want)
		if type(name) == "string" then
			local neg, rest = name:match("^(!?)%s*(.-)%s*$")
			if neg == "!" then
				want, name = not want, rest
			else
				name = rest
			end
			if name:upper() == "UNREPLIED" then
				want, name = not want, "SEEN_REPLY"
			end
		end
		local b = status_bit("status", name)
		if want then
			on[b] = true
		else
			off[b] = true
		end
		if on[b] and off[b] then
			argerr("status", "status", "flag " .. tostring(status_names[b] or b) .. " both set and clear")
		end
	end
	if type(spec) == "number" then
		if spec < 0 or spec >= 2 ^ 32 or spec ~= floor(spec) then
			argerr("status", "status", "integer 0..2^32-1 expected")
		end
		for b = 0, 31 do
			if floor(spec / 2 ^ b) % 2 == 1 then
				on[b] = true
			end
		end
	elseif type(spec) == "string" then
		for w in spec:gmatch("[^,%s]+") do
			add(w, true)
		end
	elseif type(spec) == "table" then
		for k, v in pairs(spec) do
			if type(k) == "number" then
				add(v, true)
			elseif type(v) == "boolean" then
				add(k, v)
			else
				argerr("status", "status", "flag names expected ({\"ASSURED\", \"!DYING\"} or {ASSURED = true})")
			end
		end
	else
		argerr("status", "status", "flag name(s), table or number expected, got " .. type(spec))
	end
	return status_leaf(on, off)
end

local function u32(fname, what, v)
	if type(v) == "string" then
		v = tonumber(v)
	end
	if type(v) ~= "number" or v < 0 or v >= 2 ^ 32 or v ~= floor(v) then
		argerr(fname, what, "integer 0..2^32-1 expected")
	end
	return v
end

function F.mark(value, mask)
	if type(value) == "string" and mask == nil then
		local v, m = value:match("^%s*([^/%s]+)%s*/%s*([^/%s]+)%s*$")
		if v then
			value, mask = v, m
		end
	end
	value = u32("mark", "mark", value)
	mask = mask == nil and 4294967295 or u32("mark", "mark_mask", mask)
	local want = band(value, mask)
	local text = mask == 4294967295 and ("mark(" .. value .. ")") or
		("mark(" .. hex(want) .. "/" .. hex(mask) .. ")")
	local pred
	if mask == 4294967295 then
		pred = function(e) return (e.mark or 0) == want end
	else
		pred = function(e) return band(e.mark or 0, mask) == want end
	end
	local push = { mark = want }
	if mask ~= 4294967295 then
		push.mark_mask = mask
	end
	local leaf = eleaf(text, pred, push, true)
	-- Events leave out a zero mark: only a non-zero one is safe to require.
	if want ~= 0 then
		leaf.event = { mark = { value = want, mask = mask } }
	end
	return leaf
end

function F.zone(z)
	if type(z) ~= "number" or z < 0 or z > 65535 or z ~= floor(z) then
		argerr("zone", "zone", "integer 0..65535 expected")
	end
	return eleaf("zone(" .. z .. ")", function(e) return (e.zone or 0) == z end, { zone = z }, true)
end

function F.label(...)
	local args, n = several("label", "a label name or bit", ...)
	local want, texts = {}, {}
	for i = 1, n do
		local l = args[i]
		if type(l) ~= "string" and (type(l) ~= "number" or l < 0 or l > 127 or l ~= floor(l)) then
			argerr("label", "label", "label name or bit 0..127 expected")
		end
		want[i], texts[i] = l, tostring(l)
	end
	return eleaf("label(" .. concat(texts, ",") .. ")", function(e)
		local ls = e.labels
		if ls == nil then
			return false
		end
		for i = 1, n do
			if not ls[want[i]] then
				return false
			end
		end
		return true
	end)
end

local nat_kinds = { none = true, snat = true, dnat = true, both = true, any = true }

function F.nat(kind, where)
	local natmod = require "conntrack.nat"
	if type(kind) == "table" then
		kind, where = kind[1] or kind.kind, kind[2] or kind.addr
	end
	if not nat_kinds[kind] then
		argerr("nat", "kind", "\"none\", \"snat\", \"dnat\", \"both\" or \"any\" expected, got " .. tostring(kind))
	end
	if where == nil then
		local pred
		if kind == "snat" then
			pred = function(e)
				local k = natmod.classify(e)
				return k == "snat" or k == "both"
			end
		elseif kind == "dnat" then
			pred = function(e)
				local k = natmod.classify(e)
				return k == "dnat" or k == "both"
			end
		elseif kind == "any" then
			pred = function(e) return natmod.classify(e) ~= "none" end
		else
			pred = function(e) return natmod.classify(e) == kind end
		end
		return eleaf("nat(" .. kind .. ")", pred)
	end
	if kind ~= "snat" and kind ~= "dnat" then
		argerr("nat", "addr", "an address/port goes with \"snat\" or \"dnat\" only")
	end
	local a, p = addr.split_hostport(where)
	if a == nil and p == nil then
		argerr("nat", "addr", "\"addr\", \"addr:port\", \"[v6]:port\" or \":port\" expected")
	end
	local m
	if a then
		local ok, mm = pcall(addr.matcher, a, "addr")
		if not ok then
			raise("filter.nat: " .. mm)
		end
		m = mm
	end
	-- The translated value, as it stands in the reply tuple, changed or not
	-- (as the CLI matches), provided the kind of translation took place.
	local pred = function(e)
		local d = natmod.describe(e)
		local part = d[kind]
		if part == nil then
			return false
		end
		local r = e.reply
		if m then
			local v = kind == "snat" and r.dst or r.src
			if not m(v) then
				return false
			end
		end
		if p then
			local v
			if kind == "snat" then
				v = r.dport or r.icmp_id
			else
				v = r.sport or r.icmp_id
			end
			if v ~= p then
				return false
			end
		end
		return true
	end
	return eleaf("nat(" .. kind .. "," .. tostring(where) .. ")", pred)
end

function F.timeout(lo, hi)
	if type(lo) == "table" then
		lo, hi = lo[1] or lo.lo or lo.min, lo[2] or lo.hi or lo.max
	elseif type(lo) == "string" and hi == nil then
		local a, b = lo:match("^%s*(%d*)%s*-%s*(%d*)%s*$")
		if a then
			lo, hi = tonumber(a), tonumber(b)
		else
			lo = tonumber(lo)
			hi = lo
		end
	end
	if (lo ~= nil and type(lo) ~= "number") or (hi ~= nil and type(hi) ~= "number") or
		(lo == nil and hi == nil) then
		argerr("timeout", "timeout", "lo, hi seconds (either may be nil) expected")
	end
	local l, h = lo or 0, hi or math.huge
	return eleaf(format("timeout(%s-%s)", lo or "", hi or ""), function(e)
		local t = e.timeout
		return t ~= nil and t >= l and t <= h
	end)
end

function F.where(fn, text)
	if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call) then
		argerr("where", "fn", "function expected, got " .. type(fn))
	end
	return eleaf(text and ("where(" .. text .. ")") or "where(fn)", function(e)
		return fn(e) and true or false
	end)
end

-- ---------------------------------------------------------------------
-- Tables and functions as filters

local from_keys = {
	family = F.family, state = F.state, status = F.status, zone = F.zone, timeout = F.timeout,
	where = F.where,
	proto = F.proto, src = F.src, dst = F.dst, reply_src = F.reply_src, reply_dst = F.reply_dst,
	label = F.label, labels = F.label,
	sport = F.sport, dport = F.dport, reply_sport = F.reply_sport, reply_dport = F.reply_dport,
}
-- Keys whose table value is one spec (not a list of alternatives).
local one_spec = { status = true, timeout = true, sport = true, dport = true, reply_sport = true,
	reply_dport = true, nat = true }
-- Fixed order, so that tostring() of a table filter is stable.
local key_order = { "family", "proto", "src", "dst", "sport", "dport", "reply_src", "reply_dst",
	"reply_sport", "reply_dport", "state", "status", "mark", "zone", "label", "labels", "nat",
	"timeout", "where" }

--- Is k a field of filter tables?
function F.is_field(k)
	return type(k) == "string" and (from_keys[k] ~= nil or k == "mark" or k == "mark_mask" or k == "nat")
end

local function from_table(t, fname)
	for k in pairs(t) do
		if not F.is_field(k) then
			raise(format("filter: bad argument '%s' (unknown filter field)", tostring(k)))
		end
	end
	local parts = {}
	for _, k in ipairs(key_order) do
		local v = t[k]
		if v ~= nil then
			if k == "mark" then
				parts[#parts + 1] = F.mark(v, t.mark_mask)
			elseif k == "nat" then
				parts[#parts + 1] = F.nat(v)
			elseif type(v) == "table" and not one_spec[k] and not is_filter(v) then
				parts[#parts + 1] = from_keys[k](unpack(v))
			else
				parts[#parts + 1] = from_keys[k](v)
			end
		end
	end
	if t.mark_mask ~= nil and t.mark == nil then
		raise("filter: bad argument 'mark_mask' (needs 'mark')")
	end
	return F.all(unpack(parts))
end

--- Any filter-like value as a filter: filters as they are, tables of
-- fields, functions (where), true/false/nil (all / nothing / all).
coerce = function(x, fname)
	if is_filter(x) then
		return x
	end
	local tx = type(x)
	if tx == "table" then
		return from_table(x, fname)
	elseif tx == "function" then
		return F.where(x)
	elseif x == nil or x == true then
		return TRUE
	elseif x == false then
		return FALSE
	end
	raise(format("filter%s: bad argument (filter, table or function expected, got %s)",
		fname and ("." .. fname) or "", tx))
end
F.coerce = coerce

-- ---------------------------------------------------------------------
-- Compiling: tuple leaves in one all()/any() share one e.orig / e.reply read.

local compile

local function group_tuples(list)
	local out, groups = {}, {}
	for _, c in ipairs(list) do
		if c.kind == "leaf" and c.dir then
			local g = groups[c.dir]
			if not g then
				g = { dir = c.dir, fields = {}, checks = {} }
				groups[c.dir] = g
				out[#out + 1] = g
			end
			g.fields[#g.fields + 1] = c.field
			g.checks[#g.checks + 1] = c.check
		else
			out[#out + 1] = c
		end
	end
	return out
end

local function compile_group(g, conj)
	local dir, fields, checks, n = g.dir, g.fields, g.checks, #g.fields
	if n == 1 then
		local field, check = fields[1], checks[1]
		return function(e)
			local t = e[dir]
			return t ~= nil and check(t[field]) and true or false
		end
	end
	if conj then
		return function(e)
			local t = e[dir]
			if t == nil then
				return false
			end
			for i = 1, n do
				if not checks[i](t[fields[i]]) then
					return false
				end
			end
			return true
		end
	end
	return function(e)
		local t = e[dir]
		if t == nil then
			return false
		end
		for i = 1, n do
			if checks[i](t[fields[i]]) then
				return true
			end
		end
		return false
	end
end

compile = function(f)
	local k = f.kind
	if k == "const" then
		local v = f.value
		return function() return v end
	elseif k == "leaf" then
		if f.dir then
			return compile_group({ dir = f.dir, fields = { f.field }, checks = { f.check } }, true)
		end
		return f.pred
	elseif k == "not" then
		local p = compile(f.child)
		return function(e) return not p(e) end
	end
	local conj = k == "all"
	local preds = {}
	for _, c in ipairs(group_tuples(f.list)) do
		preds[#preds + 1] = c.kind and compile(c) or compile_group(c, conj)
	end
	local n = #preds
	if n == 2 then
		local a, b = preds[1], preds[2]
		if conj then
			return function(e) return a(e) and b(e) end
		end
		return function(e) return a(e) or b(e) end
	end
	if conj then
		return function(e)
			for i = 1, n do
				if not preds[i](e) then
					return false
				end
			end
			return true
		end
	end
	return function(e)
		for i = 1, n do
			if preds[i](e) then
				return true
			end
		end
		return false
	end
end

function Filter:compile()
	local c = rawget(self, "_compiled")
	if not c then
		c = compile(self)
		rawset(self, "_compiled", c)
	end
	return c
end

function Filter:match(e)
	return self:compile()(e)
end

Filter.__call = function(self, e)
	return self:compile()(e)
end

-- ---------------------------------------------------------------------
-- Text

local function text(f)
	local k = f.kind
	if k == "const" then
		return f.value and "all()" or "any()"
	elseif k == "leaf" then
		return f.text
	elseif k == "not" then
		return "negate(" .. text(f.child) .. ")"
	end
	local parts = {}
	for i, c in ipairs(f.list) do
		parts[i] = text(c)
	end
	return k .. "(" .. concat(parts, ", ") .. ")"
end

Filter.__tostring = text

-- Operators (all available on Lua 5.1).
Filter.__mul = function(a, b) return F.all(a, b) end
Filter.__add = function(a, b) return F.any(a, b) end
Filter.__unm = function(a) return F.negate(a) end
Filter.__sub = function(a, b) return F.all(a, F.negate(b)) end

-- ---------------------------------------------------------------------
-- Pushdown

local groups = {
	{ "family" }, { "zone" }, { "mark", "mark_mask" }, { "status", "status_mask" },
	{ "proto" }, { "src" }, { "dst" }, { "reply_src" }, { "reply_dst" },
	{ "sport" }, { "dport" }, { "reply_sport" }, { "reply_dport" },
}

-- Tuple keys go to the kernel as CTA_FILTER (Linux >= 5.8); conntrack.core
-- checks each entry against them again, so they are safe on any kernel.
local tuple_keys = { proto = true, src = true, dst = true, reply_src = true, reply_dst = true }
local port_keys = { sport = true, dport = true, reply_sport = true, reply_dport = true }
local port_protos = { [6] = true, [17] = true, [136] = true, [132] = true, [33] = true }

local function allowed(caps, key)
	if port_keys[key] then
		if caps.ports == false then
			return false
		end
		key = "tuple"
	elseif tuple_keys[key] then
		key = "tuple"
	end
	local c = caps[key]
	if c == nil then
		c = F.caps()[key]
	end
	return c
end

-- A leaf's push, restricted to what caps allow; exact only when all of it is.
local function leaf_push(f, caps)
	local p = f.push
	if not p then
		return nil, false
	end
	local out, dropped = {}, false
	for _, g in ipairs(groups) do
		if p[g[1]] ~= nil then
			if allowed(caps, g[1]) then
				for _, key in ipairs(g) do
					out[key] = p[key]
				end
			else
				dropped = true
			end
		end
	end
	if next(out) == nil then
		return nil, false
	end
	return out, f.exact and not dropped
end

-- Merges b into a (copy); nil when they conflict.
local function merge(a, b)
	local out = {}
	for k, v in pairs(a) do
		out[k] = v
	end
	for _, key in ipairs({ "family", "zone", "proto", "src", "dst", "reply_src", "reply_dst",
		"sport", "dport", "reply_sport", "reply_dport" }) do
		if b[key] ~= nil then
			if out[key] ~= nil and out[key] ~= b[key] then
				return nil
			end
			out[key] = b[key]
		end
	end
	for _, pair in ipairs({ { "mark", "mark_mask" }, { "status", "status_mask" } }) do
		local vk, mk = pair[1], pair[2]
		if b[vk] ~= nil then
			local bm = b[mk] or (vk == "mark" and 4294967295 or b[vk])
			if out[vk] == nil then
				out[vk], out[mk] = b[vk], b[mk]
			else
				local am = out[mk] or (vk == "mark" and 4294967295 or out[vk])
				if band(out[vk], bm) ~= band(b[vk], am) then
					return nil
				end
				out[vk] = bor(out[vk], b[vk])
				out[mk] = bor(am, bm)
			end
		end
	end
	if out.mark_mask == 4294967295 then
		out.mark_mask = nil
	end
	return out
end

local function same(a, b, keys)
	for _, k in ipairs(keys) do
		if a[k] ~= b[k] then
			return false
		end
	end
	return true
end

-- -> spec|nil, exact (spec says all of f)
local function kpart(f, caps)
	local k = f.kind
	if k == "leaf" then
		return leaf_push(f, caps)
	elseif k == "const" then
		return nil, false
	elseif k == "all" then
		local spec, exact = {}, true
		for _, c in ipairs(f.list) do
			local s, ex = kpart(c, caps)
			local m = s and merge(spec, s)
			if m then
				spec = m
			end
			if not (m and ex) then
				exact = false
			end
		end
		if next(spec) == nil then
			return nil, false
		end
		return spec, exact
	elseif k == "any" then
		-- Only what every alternative implies, and never exactly.
		local specs = {}
		for i, c in ipairs(f.list) do
			specs[i] = kpart(c, caps)
			if not specs[i] then
				return nil, false
			end
		end
		local out = {}
		for _, g in ipairs(groups) do
			local ok = specs[1][g[1]] ~= nil
			for i = 2, #specs do
				ok = ok and same(specs[1], specs[i], g)
			end
			if ok then
				for _, key in ipairs(g) do
					out[key] = specs[1][key]
				end
			end
		end
		if next(out) == nil then
			return nil, false
		end
		return out, false
	end
	return nil, false
end

-- The part of f left once spec has run in the kernel.
local function residual(f, caps)
	if f.kind == "all" then
		local rest, spec = {}, {}
		for _, c in ipairs(f.list) do
			local s, ex = kpart(c, caps)
			local m = s and merge(spec, s)
			if m then
				spec = m
			end
			if not (m and ex) then
				rest[#rest + 1] = c
			end
		end
		if #rest == 0 then
			return nil
		end
		return F.all(unpack(rest))
	end
	local _, ex = kpart(f, caps)
	if ex then
		return nil
	end
	return f
end

function Filter:pushdown(caps)
	caps = caps or {}
	if self.kind == "const" then
		if self.value then
			return nil, nil
		end
		return nil, self
	end
	local spec = kpart(self, caps)
	-- The kernel compares ports only under a protocol that has them.
	if spec and not port_protos[spec.proto or -1] and caps.ports ~= false then
		for k in pairs(port_keys) do
			if spec[k] ~= nil then
				local c = {}
				for ck, cv in pairs(caps) do
					c[ck] = cv
				end
				c.ports = false
				return self:pushdown(c)
			end
		end
	end
	return spec, residual(self, caps)
end

--- The kernel socket filter of conntrack.events for this filter:
-- { proto = {...}, src = {...}, dst = {...}, mark = {value =, mask =} }
-- or nil.  Taken from the conjuncts at the top (each implied by f, so the
-- events it lets through are a superset of f's); ct.events still applies
-- f:match to every event.
function Filter:event_pushdown()
	local conj = self.kind == "all" and self.list or { self }
	local kf
	for _, c in ipairs(conj) do
		if c.kind == "leaf" and c.event then
			for k, v in pairs(c.event) do
				kf = kf or {}
				if kf[k] == nil then
					kf[k] = v
				end
			end
		end
	end
	return kf
end

local function spec_text(spec)
	local parts = {}
	if spec.family then
		parts[#parts + 1] = "family=" .. spec.family
	end
	for _, k in ipairs({ "proto", "src", "dst", "sport", "dport", "reply_src", "reply_dst",
		"reply_sport", "reply_dport" }) do
		if spec[k] ~= nil then
			parts[#parts + 1] = k .. "=" .. (k == "proto" and (proto_names[spec[k]] or spec[k]) or spec[k])
				.. " (CTA_FILTER)"
		end
	end
	if spec.mark then
		parts[#parts + 1] = "mark=" .. hex(spec.mark) .. "/" .. hex(spec.mark_mask or 4294967295)
	end
	if spec.status then
		local on, off = {}, {}
		for b = 0, 31 do
			if floor(spec.status_mask / 2 ^ b) % 2 == 1 then
				local name = status_names[b] or tostring(b)
				if floor(spec.status / 2 ^ b) % 2 == 1 then
					on[#on + 1] = name
				else
					off[#off + 1] = "!" .. name
				end
			end
		end
		for _, o in ipairs(off) do
			on[#on + 1] = o
		end
		parts[#parts + 1] = "status=" .. concat(on, ",")
	end
	return concat(parts, " ")
end

--- What runs where, for dumps (ct.dump, ct.list, update_where, delete_where).
-- Returns the text and a table { kernel = spec|nil, c = {zone=}|nil, lua = residual|nil }.
function Filter:explain(caps)
	local spec, rest = self:pushdown(caps)
	local lines = { "filter: " .. text(self) }
	local kspec = spec and {} or nil
	local cpart
	if spec then
		for k, v in pairs(spec) do
			if k ~= "zone" then
				kspec[k] = v
			end
		end
		if spec.zone then
			cpart = { zone = spec.zone }
		end
		if next(kspec) == nil then
			kspec = nil
		end
	end
	lines[#lines + 1] = "kernel (dump request attributes): " ..
		(kspec and spec_text(kspec) or "nothing (the kernel sends every entry)")
	if cpart then
		lines[#lines + 1] = "C (conntrack.core's dump, before any Lua runs): zone == " .. cpart.zone ..
			(cpart.zone > 0 and " (CTA_ZONE is sent too; kernels that filter dumps by zone use it)" or "")
	end
	if rest then
		lines[#lines + 1] = "Lua (on each entry the dump returns): " .. text(rest)
	else
		lines[#lines + 1] = "Lua: nothing"
	end
	local c = F.caps()
	if not allowed(caps or {}, "status") then
		lines[#lines + 1] = "note: status bits stay in Lua (dump filtering by status needs Linux >= 5.15; this is "
			.. (c.kernel ~= "" and c.kernel or "unknown") .. ")"
	end
	return concat(lines, "\n"), { kernel = kspec, c = cpart, lua = rest }
end

-- F{...} == F.coerce{...}
setmetatable(F, { __call = function(_, x) return coerce(x) end })

return F
