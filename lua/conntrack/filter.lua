--- Filters over conntrack entries, run by the module's C matcher.
--
--   local F = require "conntrack.filter"        -- also ct.filter
--   local f = F.all(F.proto "udp", F.src "192.0.2.0/24", F.dport(53))
--   local f = F.proto "tcp" * F.status "ASSURED" - F.nat "any"   -- the same algebra with operators
--   local f = F{ proto = "udp", src = "192.0.2.0/24", dport = 53 } -- a table of fields
--   for e in h:dump(f) do ... end ; h:list(f) ; h:delete_where(f) ; h:update_where(f, changes)
--   print(f:explain())
--
-- Building blocks (each returns a filter; several arguments mean "any of",
-- except for label and status, where they all must hold):
--   family(name)                    "ipv4" | "ipv6"
--   proto(p, ...)                   a name ("tcp", "udp", ... or from /etc/protocols) or a number
--   src / dst / reply_src / reply_dst (a, ...)   address or CIDR prefix, IPv4 or IPv6
--   sport / dport / reply_sport / reply_dport (p, ...)  port, "lo-hi", or {lo, hi}
--   icmp_type / icmp_code / icmp_id (v, ...)         the original direction's ICMP fields
--   state(name, ...)                "ESTABLISHED", "TIME_WAIT", ...
--   status(flags)                   "ASSURED", "!DYING", {"ASSURED", "!SEEN_REPLY"},
--                                   {ASSURED = true, DYING = false}, "UNREPLIED" (= "!SEEN_REPLY"),
--                                   or a number; status(value, mask) for (status & mask) == value
--   mark(value [, mask])            (mark & mask) == (value & mask); also "42/0xff"
--   zone(n, ...) / orig_zone / reply_zone   the entry's zone (none = 0), a direction's zone
--   label(l, ...)                   all of these labels set (names or bit numbers)
--   secmark(v, ...), helper(name, ...)
--   nat(kind [, "addr:port"])       kind "none", "snat", "dnat", "both", "any"; "snat" and "dnat" also
--                                   match "both".  With an address/port ("198.51.100.100", ":40000",
--                                   "[2001:db8::1]:53"): the translated source (snat) or the
--                                   destination really reached (dnat), as --src-nat/--dst-nat do
--   timeout(lo [, hi])              lo <= timeout <= hi; nil = open end; also {lo, hi} and "lo-hi"
--   where(fn [, text])              any Lua predicate fn(e) -> boolean
-- Combinators: all(...), any(...), none(...), negate(f); operators
--   a * b  == all(a, b)    a + b == any(a, b)    -a == negate(a)    a - b == all(a, negate(b))
-- Plain tables are read as all() of their fields (the names above, plus
-- mark_mask, status_mask, labels and where); functions as where(fn); an
-- object with a match method as where(function(e) return obj:match(e) end).
-- F.coerce(x) does that.
--
-- Where a filter runs (f:plan(), f:explain()): every block but nat, where and
-- named labels is a leaf of the C matcher (conntrack.core), which checks each
-- message before an entry is made of it; what the kernel can apply of the
-- matcher goes into the request too (family, protocol, single IPv4 addresses
-- and ports, mark/mask, status/mask, a zone above 0), and for events into a
-- socket filter.  nat, where and named labels run in Lua on what the C part
-- lets through.
--
-- Methods of a filter f:
--   f:match(e) / f(e)     -> boolean, on an entry (ct.entry(spec) makes one from a table)
--   f:compile()           -> fn(e) -> boolean, the same as a plain function
--   f:plan([fname])       -> {matcher =, residual =, c =, lua =}: the C matcher, the Lua
--                            predicate, and the two parts as filters (nil where empty)
--   f:explain()           -> text saying what runs where, and {kernel =, c =, lua =}
--   tostring(f)           -> the filter as an expression
local core = require "conntrack.core"
local addr = require "conntrack.addr"
local check = require "conntrack.args"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local F = {}

local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local floor, format, concat, sort = math.floor, string.format, table.concat, table.sort
local unpack = table.unpack or unpack
local names = core.names

F.status_bits = core.status_bits

local function hex(n)
	return format("0x%x", n)
end

--- Raises msg at the script's line, as the C core does for its argument errors.
local raise = core.error
F.raise = raise

-- The function the user called, while a table is read as a filter on its
-- behalf (h:dump{mark = -1} says "dump: ..."); else the block's own name.
local caller

local function argerr(fname, what, why)
	raise(format("%s: bad argument '%s' (%s)", caller or ("filter." .. fname), what, why))
end

local show = check.show

-- Runs fn(...) with caller set to name unless a caller is set already
-- (F.marks names itself in the errors of the marks it reads).
local function as_caller(name, fn, ...)
	local prev = caller
	caller = prev or name
	local ok, r = pcall(fn, ...)
	caller = prev
	if not ok then
		error(r, 0)
	end
	return r
end

-- ---------------------------------------------------------------------
-- Nodes.  kind: "const" (value), "leaf", "all"/"any" (list), "not" (child).
-- A leaf has text and either c (its description for the C matcher) or
-- pred (a Lua predicate on an entry).

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

local coerce

-- The values of a block that takes one or more.
local function several(fname, what, ...)
	local n = select("#", ...)
	if n == 0 then
		argerr(fname, fname, what .. " expected")
	end
	return { ... }, n
end

local function flatten(kind, list, out, fname)
	for i = 1, #list do
		local c = coerce(list[i], fname)
		if c.kind == kind then
			flatten(kind, c.list, out, fname)
		else
			out[#out + 1] = c
		end
	end
	return out
end

-- all() / any(): flattened; the absorbing constant (false for all, true
-- for any) wins, the neutral one drops out.
local function combine(kind, absorbing, fname, ...)
	local out = {}
	for _, c in ipairs(flatten(kind, { ... }, {}, fname)) do
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
	return combine("all", false, "filter.all", ...)
end

function F.any(...)
	return combine("any", true, "filter.any", ...)
end

local function negate(f, fname)
	f = coerce(f, fname)
	if f.kind == "const" then
		return f.value and FALSE or TRUE
	elseif f.kind == "not" then
		return f.child
	elseif f.negate then
		-- A leaf that knows its own negation (one status flag) stays one leaf.
		return f.negate()
	end
	return new { kind = "not", child = f }
end

function F.negate(f)
	return negate(f, "filter.negate")
end

function F.none(...)
	return negate(combine("any", true, "filter.none", ...), "filter.none")
end

local function cleaf(text, c)
	return new { kind = "leaf", text = text, c = c }
end

local function lleaf(text, pred)
	return new { kind = "leaf", text = text, pred = pred }
end

-- ---------------------------------------------------------------------
-- Building blocks

function F.family(...)
	local args, n = several("family", "\"ipv4\" or \"ipv6\"", ...)
	for i = 1, n do
		if args[i] ~= "ipv4" and args[i] ~= "ipv6" then
			argerr("family", "family", "\"ipv4\" or \"ipv6\" expected, got " .. show(args[i]))
		end
	end
	return cleaf("family(" .. concat(args, ",") .. ")", { field = "family", values = args })
end

function F.proto(...)
	local args, n = several("proto", "a protocol name or number", ...)
	local set, nums, texts = {}, {}, {}
	for i = 1, n do
		local p = args[i]
		local num = (type(p) == "number" or type(p) == "string") and core.proto(p) or nil
		if type(p) == "string" and not num and p:match("^%d+$") then
			num = core.proto(tonumber(p))
		end
		if num == nil then
			argerr("proto", "proto", "unknown protocol " .. show(p))
		end
		if not set[num] then
			set[num] = true
			nums[#nums + 1] = num
		end
	end
	sort(nums)
	for i, num in ipairs(nums) do
		texts[i] = names.protocols[num] or tostring(num)
	end
	return cleaf("proto(" .. concat(texts, ",") .. ")", { field = "proto", values = nums })
end

local function addr_leaf(fname, ...)
	local args, n = several(fname, "an address or prefix", ...)
	local texts = {}
	for i = 1, n do
		local a = args[i]
		if type(a) ~= "string" then
			argerr(fname, fname, "address or prefix string expected, got " .. type(a))
		end
		local fam, canon = core.cidr(a)
		if not fam then
			argerr(fname, fname, "malformed address or prefix " .. show(a))
		end
		texts[i] = canon
	end
	return cleaf(fname .. "(" .. concat(texts, ",") .. ")", { field = fname, values = texts })
end

function F.src(...) return addr_leaf("src", ...) end
function F.dst(...) return addr_leaf("dst", ...) end
function F.reply_src(...) return addr_leaf("reply_src", ...) end
function F.reply_dst(...) return addr_leaf("reply_dst", ...) end

-- A number, "lo-hi" (or "lo:hi"), {lo, hi}: the range, or raises.
local function range(fname, p, max)
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
	if type(lo) ~= "number" or type(hi) ~= "number" or lo < 0 or hi > max or lo > hi
		or lo ~= floor(lo) or hi ~= floor(hi) then
		argerr(fname, fname, format("0..%d, \"lo-hi\" or {lo, hi} expected, got %s", max,
			type(p) == "table" and "a table" or show(p)))
	end
	return lo, hi
end

local function range_leaf(fname, max, ...)
	local args, n = several(fname, "a value or range", ...)
	local values, texts = {}, {}
	for i = 1, n do
		local lo, hi = range(fname, args[i], max)
		values[i] = { lo, hi }
		texts[i] = lo == hi and tostring(lo) or (lo .. "-" .. hi)
	end
	return cleaf(fname .. "(" .. concat(texts, ",") .. ")", { field = fname, values = values })
end

for _, name in ipairs { "sport", "dport", "reply_sport", "reply_dport", "icmp_id" } do
	F[name] = function(...) return range_leaf(name, 65535, ...) end
end
F.icmp_type = function(...) return range_leaf("icmp_type", 255, ...) end
F.icmp_code = function(...) return range_leaf("icmp_code", 255, ...) end
F.secmark = function(...) return range_leaf("secmark", 4294967295, ...) end

function F.zone(...) return range_leaf("zone", 65535, ...) end
function F.orig_zone(...) return range_leaf("orig_zone", 65535, ...) end
function F.reply_zone(...) return range_leaf("reply_zone", 65535, ...) end

function F.state(...)
	local args, n = several("state", "a state name", ...)
	local list = {}
	local st = names.states
	for i = 1, n do
		local s = args[i]
		if type(s) ~= "string" then
			argerr("state", "state", "state name expected, got " .. type(s))
		end
		s = s:upper()
		if st.tcp[s] == nil and st.sctp[s] == nil and st.dccp[s] == nil then
			argerr("state", "state", "unknown state " .. show(s))
		end
		list[i] = s
	end
	return cleaf("state(" .. concat(list, ",") .. ")", { field = "state", values = list })
end

function F.helper(...)
	local args, n = several("helper", "a helper name", ...)
	for i = 1, n do
		if type(args[i]) ~= "string" or #args[i] == 0 or #args[i] > 15 then
			argerr("helper", "helper", "helper name expected, got " .. show(args[i]))
		end
	end
	return cleaf("helper(" .. concat(args, ",") .. ")", { field = "helper", values = args })
end

local status_name = names.status
local has_bit
do
	has_bit = function(v, b) return floor(v / 2 ^ b) % 2 == 1 end
end

-- Status: bits that must be set (on) and bits that must be clear (off).
local function status_leaf(on, off)
	local value, mask, texts, bits = 0, 0, {}, {}
	for b in pairs(on) do
		bits[#bits + 1] = b
	end
	for b in pairs(off) do
		bits[#bits + 1] = b
	end
	sort(bits)
	for _, b in ipairs(bits) do
		local name = status_name[b] or tostring(b)
		if on[b] then
			value = value + 2 ^ b
			texts[#texts + 1] = name
		else
			texts[#texts + 1] = "!" .. name
		end
		mask = mask + 2 ^ b
	end
	if mask == 0 then
		return TRUE
	end
	local leaf = cleaf("status(" .. concat(texts, ",") .. ")",
		{ field = "status", value = value, mask = mask })
	if #bits == 1 then
		leaf.negate = function()
			if next(on) then
				return status_leaf({}, on)
			end
			return status_leaf(off, {})
		end
	end
	return leaf
end

local function status_bit(name)
	if type(name) == "number" then
		if name < 0 or name > 31 or name ~= floor(name) then
			argerr("status", "status", "bit number 0..31 expected")
		end
		return name
	end
	local b = status_name[type(name) == "string" and name:upper() or name]
	if b == nil then
		argerr("status", "status", "unknown status flag " .. show(name))
	end
	return b
end

local function status_words(spec, on, off)
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
		local b = status_bit(name)
		if want then
			on[b] = true
		else
			off[b] = true
		end
		if on[b] and off[b] then
			argerr("status", "status", "flag " .. tostring(status_name[b] or b) .. " both set and clear")
		end
	end
	if type(spec) == "number" then
		if spec < 0 or spec >= 2 ^ 32 or spec ~= floor(spec) then
			argerr("status", "status", "integer 0..4294967295 expected, got " .. show(spec))
		end
		for b = 0, 31 do
			if has_bit(spec, b) then
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
end

--- F.status(flags) or F.status(value, mask): (status & mask) == value.
function F.status(spec, mask, ...)
	local on, off = {}, {}
	if select("#", ...) > 0 or (mask ~= nil and type(mask) ~= "number" and type(mask) ~= "table") then
		-- status("ASSURED", "SEEN_REPLY", ...): all of them
		spec = { spec, mask, ... }
		mask = nil
	end
	if mask ~= nil then
		local v, m = {}, {}
		status_words(spec, v, {})
		status_words(mask, m, {})
		for b in pairs(m) do
			if v[b] then
				on[b] = true
			else
				off[b] = true
			end
		end
	else
		status_words(spec, on, off)
	end
	return status_leaf(on, off)
end

local function u32(fname, what, given)
	local v = given
	if type(v) == "string" then
		v = tonumber(v)
	end
	if type(v) ~= "number" or v < 0 or v >= 2 ^ 32 or v ~= floor(v) then
		argerr(fname, what, "integer 0..4294967295 expected, got " .. show(given))
	end
	return v
end

-- 32-bit and/or/xor on any Lua (5.1 has no operators for them).
local function bitop(a, b, f)
	local r, p = 0, 1
	for _ = 1, 32 do
		if f(a % 2, b % 2) then
			r = r + p
		end
		a, b, p = floor(a / 2), floor(b / 2), p * 2
	end
	return r
end
local function band(a, b) return bitop(a, b, function(x, y) return x + y == 2 end) end
-- The public ones check their arguments: integers 0..4294967295.
local function ints(fname, a, b)
	if type(a) ~= "number" or a < 0 or a >= 2 ^ 32 or a ~= floor(a) then
		argerr(fname, "a", "integer 0..4294967295 expected, got " .. show(a))
	end
	if type(b) ~= "number" or b < 0 or b >= 2 ^ 32 or b ~= floor(b) then
		argerr(fname, "b", "integer 0..4294967295 expected, got " .. show(b))
	end
end
F.band = function(a, b)
	ints("band", a, b)
	return band(a, b)
end
F.bor = function(a, b)
	ints("bor", a, b)
	return bitop(a, b, function(x, y) return x + y > 0 end)
end
F.bxor = function(a, b)
	ints("bxor", a, b)
	return bitop(a, b, function(x, y) return x + y == 1 end)
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
	return cleaf(text, { field = "mark", values = { { want, mask } } })
end

--- Any of several marks, as one leaf: marks({value, mask} or F.mark(...), ...).
local function marks(list)
	if type(list) ~= "table" then
		argerr("marks", "marks", "array of marks expected, got " .. type(list))
	end
	local values, texts = {}, {}
	for i, m in ipairs(list) do
		if is_filter(m) and m.c and m.c.field == "mark" then
			values[i] = m.c.values[1]
		elseif type(m) == "table" then
			values[i] = F.mark(m[1] or m.value, m[2] or m.mask).c.values[1]
		else
			values[i] = F.mark(m).c.values[1]
		end
		texts[i] = hex(values[i][1]) .. "/" .. hex(values[i][2])
	end
	if #values == 0 then
		argerr("marks", "marks", "one or more marks expected")
	end
	return cleaf("mark(" .. concat(texts, ",") .. ")", { field = "mark", values = values })
end

function F.marks(list)
	return as_caller("filter.marks", marks, list)
end

function F.label(...)
	local args, n = several("label", "a label name or bit", ...)
	local bits, named, texts = {}, {}, {}
	for i = 1, n do
		local l = args[i]
		if type(l) == "number" then
			if l < 0 or l > 127 or l ~= floor(l) then
				argerr("label", "label", "label name or bit 0..127 expected")
			end
			bits[#bits + 1] = l
		elseif type(l) == "string" then
			named[#named + 1] = l
		else
			argerr("label", "label", "label name or bit 0..127 expected")
		end
		texts[i] = tostring(l)
	end
	local text = "label(" .. concat(texts, ",") .. ")"
	if #named == 0 then
		return cleaf(text, { field = "labels", values = bits })
	end
	-- Names: as the entry reads them (from the label map), in Lua.
	return lleaf(text, function(e)
		local ls = e.labels
		if ls == nil then
			return false
		end
		for i = 1, n do
			if not ls[args[i]] then
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
		argerr("nat", "kind", "\"none\", \"snat\", \"dnat\", \"both\" or \"any\" expected, got " .. show(kind))
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
		return lleaf("nat(" .. kind .. ")", pred)
	end
	if kind ~= "snat" and kind ~= "dnat" then
		argerr("nat", "addr", "an address/port goes with \"snat\" or \"dnat\" only")
	end
	local a, p, why = addr.split_hostport(where)
	if why then
		argerr("nat", "addr", why)
	end
	-- (split_hostport has checked the address: the matcher takes it)
	local m = a and addr.matcher(a, "addr")
	-- The translated value, as it stands in the reply tuple, changed or not
	-- (as the CLI matches), provided the kind of translation took place.
	local pred = function(e)
		local d = natmod.describe(e)
		if d[kind] == nil then
			return false
		end
		local r = e.reply
		if m and not m(kind == "snat" and r.dst or r.src) then
			return false
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
	return lleaf("nat(" .. kind .. "," .. tostring(where) .. ")", pred)
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
	local l, h = lo or 0, hi or 4294967295
	if l < 0 or h > 4294967295 or l ~= floor(l) or h ~= floor(h) or l > h then
		argerr("timeout", "timeout", "seconds 0..4294967295, lo <= hi expected")
	end
	return cleaf(format("timeout(%s-%s)", lo or "", hi or ""),
		{ field = "timeout", values = { { l, h } } })
end

function F.where(fn, text)
	if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call) then
		argerr("where", "fn", "function expected, got " .. type(fn))
	end
	if text ~= nil and type(text) ~= "string" then
		argerr("where", "text", "string expected, got " .. type(text))
	end
	return lleaf(text and ("where(" .. text .. ")") or "where(fn)", function(e)
		return fn(e) and true or false
	end)
end

-- ---------------------------------------------------------------------
-- Tables and functions as filters

local from_keys = {
	family = F.family, state = F.state, zone = F.zone, orig_zone = F.orig_zone,
	reply_zone = F.reply_zone, timeout = F.timeout, where = F.where, helper = F.helper,
	secmark = F.secmark, icmp_type = F.icmp_type, icmp_code = F.icmp_code, icmp_id = F.icmp_id,
	proto = F.proto, src = F.src, dst = F.dst, reply_src = F.reply_src, reply_dst = F.reply_dst,
	label = F.label, labels = F.label,
	sport = F.sport, dport = F.dport, reply_sport = F.reply_sport, reply_dport = F.reply_dport,
}
-- Keys whose table value is one spec (not a list of alternatives).
local one_spec = { status = true, timeout = true, sport = true, dport = true, reply_sport = true,
	reply_dport = true, nat = true }
-- Fixed order, so that tostring() of a table filter is stable.
local key_order = { "family", "proto", "src", "dst", "sport", "dport", "reply_src", "reply_dst",
	"reply_sport", "reply_dport", "icmp_type", "icmp_code", "icmp_id", "state", "status", "mark",
	"zone", "orig_zone", "reply_zone", "label", "labels", "secmark", "helper", "nat", "timeout",
	"where" }

--- Is k a field of filter tables?
function F.is_field(k)
	return type(k) == "string" and (from_keys[k] ~= nil or k == "mark" or k == "mark_mask" or
		k == "nat" or k == "status" or k == "status_mask")
end

local function from_table(t)
	for k in pairs(t) do
		if not F.is_field(k) then
			raise(format("%s: bad argument %s (unknown field)", caller or "filter", check.key(k)))
		end
	end
	local parts = {}
	for _, k in ipairs(key_order) do
		local v = t[k]
		if v ~= nil then
			if k == "mark" then
				parts[#parts + 1] = F.mark(v, t.mark_mask)
			elseif k == "status" then
				parts[#parts + 1] = t.status_mask ~= nil and F.status(v, t.status_mask) or F.status(v)
			elseif k == "nat" then
				parts[#parts + 1] = F.nat(v)
			elseif type(v) == "table" and not one_spec[k] and not is_filter(v) then
				parts[#parts + 1] = from_keys[k](unpack((check.list(caller or "filter", k, v))))
			else
				parts[#parts + 1] = from_keys[k](v)
			end
		end
	end
	if t.mark_mask ~= nil and t.mark == nil then
		raise((caller or "filter") .. ": bad argument 'mark_mask' (needs 'mark')")
	end
	if t.status_mask ~= nil and t.status == nil then
		raise((caller or "filter") .. ": bad argument 'status_mask' (needs 'status')")
	end
	return F.all(unpack(parts))
end

--- Any filter-like value as a filter: filters as they are, tables of
-- fields, functions (where), true/false/nil (all / nothing / all).
-- fname names the function the user called, for the message of a bad value.
coerce = function(x, fname)
	if is_filter(x) then
		return x
	end
	fname = check.fname("filter.coerce", "fname", fname) or "filter.coerce"
	local tx = type(x)
	local m = tx == "table" and x.match
	if m ~= nil and m ~= false then
		-- an object of the caller's with :match(e): a predicate, in Lua
		-- (its method as it is now: a later change to the object does not
		-- turn the filter into an error at dump time)
		if type(m) ~= "function" then
			raise(format("%s: bad argument 'filter' (a filter object's match must be a function, got %s)",
				fname, is_filter(m) and "filter" or type(m)))
		end
		return F.where(function(e) return m(x, e) end, "object:match")
	elseif tx == "table" then
		local prev = caller
		caller = fname
		local ok, f = pcall(from_table, x)
		caller = prev
		if not ok then
			error(f, 0)
		end
		return f
	elseif tx == "function" then
		return F.where(x)
	elseif x == nil or x == true then
		return TRUE
	elseif x == false then
		return FALSE
	end
	raise(format("%s: bad argument 'filter' (filter, table or function expected, got %s)",
		fname, tx))
end
F.coerce = coerce

-- ---------------------------------------------------------------------
-- Planning: the C part and the Lua part

local function in_c(f)
	local k = f.kind
	if k == "const" then
		return true
	elseif k == "leaf" then
		return f.c ~= nil
	elseif k == "not" then
		return in_c(f.child)
	end
	for _, c in ipairs(f.list) do
		if not in_c(c) then
			return false
		end
	end
	return true
end

local function cdesc(f)
	local k = f.kind
	if k == "const" then
		return { op = "const", value = f.value }
	elseif k == "leaf" then
		return f.c
	elseif k == "not" then
		return { op = "not", cdesc(f.child) }
	end
	local d = { op = k }
	for i, c in ipairs(f.list) do
		d[i] = cdesc(c)
	end
	return d
end

local compile

-- The Lua predicate of f; C parts inside it run as matchers of their own.
compile = function(f)
	if in_c(f) then
		if f.kind == "const" then
			local v = f.value
			return function() return v end
		end
		local m = core.matcher(cdesc(f))
		local match = m.match
		return function(e) return match(m, e) end
	end
	local k = f.kind
	if k == "leaf" then
		return f.pred
	elseif k == "not" then
		local p = compile(f.child)
		return function(e) return not p(e) end
	end
	-- Each C-able run of children is one matcher, then the Lua ones.
	local conj = k == "all"
	local cs, ls = {}, {}
	for _, c in ipairs(f.list) do
		if in_c(c) then
			cs[#cs + 1] = c
		else
			ls[#ls + 1] = c
		end
	end
	local preds = {}
	if #cs > 0 then
		preds[1] = compile(new { kind = k, list = cs })
	end
	for _, c in ipairs(ls) do
		preds[#preds + 1] = compile(c)
	end
	local n = #preds
	if n == 1 then
		return preds[1]
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

local function check_self(fname, self)
	if not is_filter(self) then
		raise(fname .. ": bad self (filter expected, got " .. type(self) .. ")")
	end
end

--- The plan of f: {matcher = C matcher or nil, residual = Lua predicate or
-- nil, c = the C part, lua = the Lua part (filters, nil where empty)}.
function Filter:plan(fname)
	check_self("plan", self)
	check.fname("plan", "fname", fname)
	local p = rawget(self, "_plan")
	if p then
		return p
	end
	local c, l
	if self.kind == "const" and self.value then
		c, l = nil, nil
	elseif in_c(self) then
		c = self
	elseif self.kind == "all" then
		local cs, ls = {}, {}
		for _, x in ipairs(self.list) do
			if in_c(x) then
				cs[#cs + 1] = x
			else
				ls[#ls + 1] = x
			end
		end
		c = #cs > 0 and F.all(unpack(cs)) or nil
		l = F.all(unpack(ls))
	else
		l = self
	end
	p = { c = c, lua = l }
	if c then
		p.matcher = core.matcher(cdesc(c), fname)
	end
	if l then
		p.residual = compile(l)
	end
	rawset(self, "_plan", p)
	return p
end

--- The C matcher description of f's C part (nil when it has none).
function Filter:description()
	check_self("description", self)
	local p = self:plan()
	return p.c and cdesc(p.c)
end

-- f:compile(), f:match(e) and f(e) take entries: the C matcher's message
-- for anything else, whichever part of the filter would see it first.
local is_entry = check.is_entry
local function checked(fn)
	return function(e)
		if not is_entry(e) then
			raise("match: bad argument 'entry' (conntrack entry expected, got " .. type(e) .. ")")
		end
		return fn(e)
	end
end

function Filter:compile()
	check_self("compile", self)
	local c = rawget(self, "_compiled")
	if not c then
		c = checked(compile(self))
		rawset(self, "_compiled", c)
	end
	return c
end

function Filter:match(e)
	check_self("match", self)
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

local function kernel_text(k)
	local parts = {}
	if k.family then
		parts[#parts + 1] = "family=" .. k.family
	end
	for _, key in ipairs { "proto", "src", "dst", "sport", "dport", "reply_src", "reply_dst",
		"reply_sport", "reply_dport" } do
		if k[key] ~= nil then
			parts[#parts + 1] = key .. "=" .. (key == "proto" and (names.protocols[k[key]] or k[key]) or
				k[key]) .. " (CTA_FILTER)"
		end
	end
	if k.mark then
		parts[#parts + 1] = "mark=" .. hex(k.mark) .. "/" .. hex(k.mark_mask)
	end
	if k.status then
		local on, off = {}, {}
		for b = 0, 31 do
			if has_bit(k.status_mask, b) then
				local name = status_name[b] or tostring(b)
				if has_bit(k.status, b) then
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
	if k.zone then
		parts[#parts + 1] = "zone=" .. k.zone
	end
	return concat(parts, " ")
end

--- What runs where, for dumps (ct.dump, ct.list, update_where, delete_where).
-- Returns the text and { kernel = request attributes|nil, c = filter|nil, lua = filter|nil }.
function Filter:explain()
	check_self("explain", self)
	local p = self:plan()
	local k = p.matcher and p.matcher:kernel() or nil
	if k then
		k.flush_exact, k.dump_exact = nil, nil
		if next(k) == nil then
			k = nil
		end
	end
	local lines = { "filter: " .. text(self) }
	lines[#lines + 1] = "kernel (dump request attributes): " ..
		(k and kernel_text(k) or "nothing (the kernel sends every entry)")
	lines[#lines + 1] = "C (each message, before an entry is made of it): " ..
		(p.c and text(p.c) or "nothing")
	lines[#lines + 1] = p.lua and ("Lua (on each entry C lets through): " .. text(p.lua)) or "Lua: nothing"
	return concat(lines, "\n"), { kernel = k, c = p.c, lua = p.lua }
end

-- F{...} == F.coerce{...}
setmetatable(F, { __call = function(_, x) return coerce(x, "filter") end })

return F
