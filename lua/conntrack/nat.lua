--- NAT classification of conntrack entries.
--
--   local nat = require "conntrack.nat"      -- also ct.nat
--   nat.classify(e)  -> "none" | "snat" | "dnat" | "both"
--   nat.describe(e)  -> { kind = ..., tuples = the kind the tuples show,
--                         snat = {addr=, port=} | nil, dnat = {addr=, port=} | nil (from the tuples) }
--   nat.tostring(e)  -> "snat 192.0.2.2:40000 -> 198.51.100.100:40003" (or "none")
--   nat.from_status(e) -> the kind the SRC_NAT / DST_NAT status bits claim
--   nat.from_tuples(e) -> the kind the tuples show (what a reply tuple made by hand claims)
--
-- The kind comes from the kernel's SRC_NAT / DST_NAT status bits: they say
-- what the kernel translates.  The translation comes from the tuples:
-- without NAT the reply tuple is the original one inverted; a reply
-- destination (address or port) other than the original source is what the
-- source became (SNAT, masquerade), a reply source other than the original
-- destination is where the flow really goes (DNAT, redirect).  Whole
-- addresses are compared, IPv6 included (the conntrack CLI's
-- --src-nat/--dst-nat look at the first 32 bits only).  A flow made with a
-- rewritten reply tuple but no NAT status is not translated by the kernel:
-- "none".  For ICMP the echo id plays the port.
-- Only a table without status (no status field at all) is judged by its tuples.
--
-- e may be an entry, e:totable(), or any table of the same shape:
-- { orig = {src=, dst=, sport=, dport=, icmp_id=}, reply = {...}, status = {SRC_NAT=true, ...} }.
-- When an entry has no reply tuple the status bits decide.  Anything else
-- raises "nat.classify: bad argument 'e' (entry or table expected, got number)".
local core = require "conntrack.core"
local addr = require "conntrack.addr"
local args = require "conntrack.args"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local N = {}

local entry, is_entry = args.entry, args.is_entry

-- Text of two addresses differ?  Kernel texts are canonical, so plain
-- equality settles nearly all; other texts are compared canonically.
local function differ(a, b)
	if a == b then
		return false
	end
	if a == nil or b == nil then
		return false
	end
	local ca, cb = addr.canonical(a), addr.canonical(b)
	return (ca or a) ~= (cb or b)
end

local function numdiffer(a, b)
	return a ~= nil and b ~= nil and a ~= b
end

local function has(set, flag)
	return set ~= nil and set[flag] == true
end

local function kind_of(s, d)
	if s and d then
		return "both"
	elseif s then
		return "snat"
	elseif d then
		return "dnat"
	end
	return "none"
end

-- Each function below works on the status, orig and reply of e, read
-- once (args.entry checks them).
local function status_kind(st)
	return kind_of(has(st, "SRC_NAT"), has(st, "DST_NAT"))
end

-- (an entry's kind is its status's: only that is read)
function N.from_status(e)
	if is_entry(e) then
		return status_kind(e.status)
	end
	return status_kind((entry("nat.from_status", e, true)))
end

-- What changed: source address, source port, destination address, destination port.
local function changes(st, o, r)
	local osrc, odst, rsrc, rdst = o.src, o.dst, r.src, r.dst
	local saddr = differ(rdst, osrc) and rdst or nil
	local daddr = differ(rsrc, odst) and rsrc or nil
	local sport, dport
	local osp, rdp = o.sport, r.dport
	if osp ~= nil then
		if numdiffer(rdp, osp) then
			sport = rdp
		end
		local odp, rsp = o.dport, r.sport
		if numdiffer(rsp, odp) then
			dport = rsp
		end
	else
		local oid, rid = o.icmp_id, r.icmp_id
		if numdiffer(rid, oid) then
			if has(st, "DST_NAT") and not has(st, "SRC_NAT") then
				dport = rid
			else
				sport = rid
			end
		end
	end
	return saddr, sport, daddr, dport
end

local function tuples_kind(st, o, r)
	if o == nil or r == nil then
		return status_kind(st)
	end
	local saddr, sport, daddr, dport = changes(st, o, r)
	return kind_of(saddr ~= nil or sport ~= nil, daddr ~= nil or dport ~= nil)
end

--- The kind the tuples show, whatever the status bits say (the status
-- decides only without a reply tuple).
function N.from_tuples(e)
	return tuples_kind(entry("nat.from_tuples", e, true))
end

-- Only a table without status is judged by its tuples.
local function classify(e, st, o, r)
	if type(e) ~= "table" or st ~= nil or o == nil or r == nil then
		return status_kind(st)
	end
	return tuples_kind(st, o, r)
end

function N.classify(e)
	if is_entry(e) then
		return status_kind(e.status)
	end
	return classify(e, entry("nat.classify", e, true))
end

--- What was translated.  snat: the address/port the peer sees instead of
-- the original source; dnat: the address/port the flow really goes to
-- instead of the original destination.  A part that did not change is nil
-- (a port-only translation has snat.addr == nil).  The original values
-- are given too, as orig_src/orig_sport/orig_dst/orig_dport.
local function describe(e, st, o, r)
	if o == nil or r == nil then
		return { kind = status_kind(st) }
	end
	local saddr, sport, daddr, dport = changes(st, o, r)
	local d = { kind = classify(e, st, o, r), tuples = kind_of(saddr ~= nil or sport ~= nil,
		daddr ~= nil or dport ~= nil) }
	if saddr ~= nil or sport ~= nil then
		d.snat = { addr = saddr, port = sport }
	end
	if daddr ~= nil or dport ~= nil then
		d.dnat = { addr = daddr, port = dport }
	end
	d.orig_src, d.orig_dst = o.src, o.dst
	d.orig_sport, d.orig_dport = o.sport or o.icmp_id, o.dport or o.icmp_id
	return d
end

function N.describe(e)
	return describe(e, entry("nat.describe", e, true))
end

-- An address or port of a table made by hand may be of any type: its
-- text, or its type's name.
local function text(v)
	local t = type(v)
	if t == "string" or t == "number" then
		return tostring(v)
	end
	return v ~= nil and t or nil
end

local function hostport(a, p)
	a, p = text(a), text(p)
	if a and a:find(":", 1, true) then
		a = "[" .. a .. "]"
	end
	if p then
		return (a or "") .. ":" .. p
	end
	return a or ""
end

--- One line: "snat A:P -> A':P'", "dnat ...", "snat ...; dnat ..." or "none"
-- (a flow the kernel does not translate is "none", whatever its tuples say).
function N.tostring(e)
	local d = describe(e, entry("nat.tostring", e, true))
	if d.kind == "none" or (d.snat == nil and d.dnat == nil) then
		return d.kind
	end
	local parts = {}
	if d.snat then
		parts[#parts + 1] = "snat " .. hostport(d.orig_src, d.orig_sport) .. " -> " ..
			hostport(d.snat.addr or d.orig_src, d.snat.port or d.orig_sport)
	end
	if d.dnat then
		parts[#parts + 1] = "dnat " .. hostport(d.orig_dst, d.orig_dport) .. " -> " ..
			hostport(d.dnat.addr or d.orig_dst, d.dnat.port or d.orig_dport)
	end
	return table.concat(parts, "; ")
end

return N
