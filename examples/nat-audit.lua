#!/usr/bin/env lua
--[==[ nat-audit.lua: the translated flows of a conntrack table, grouped by
the kind of NAT, with what each translation did; and the flows whose
translation disagrees with their status bits.

  nat-audit.lua [--netns NS] [--json] [--all] [--strict] [-p PROTO]... [-s CIDR]... [-d CIDR]...

  tools/netns-run lua5.4 examples/nat-audit.lua
  lua5.4 examples/nat-audit.lua --netns router --json

Groups, from each flow's tuples (ct.nat.describe) and the namespace's own
addresses and routes (`ip`):
  port forward   the destination was translated to another host (DNAT)
  redirect       the destination was translated to this host itself
  masquerade     the source was translated to the address this host picks
                 itself for the peer (its route's preferred source): what
                 MASQUERADE does (an SNAT to that same address looks alike)
  snat           the source was translated to another address, or only its port
Flows translated both ways are in a group of both names ("port forward +
masquerade").  Untranslated flows are counted; --all lists them too.

A flow disagrees when the kind its tuples show (ct.nat.from_tuples) is not
the one its SRC_NAT / DST_NAT status bits claim (ct.nat.from_status): a
NAT entry made by a program that gave a reply tuple but no NAT, or state
copied between hosts without its bits.  They are listed at the end;
--strict makes the exit status 1 when there is one.

--json prints one JSON document: { netns, flows, translated, groups = {
name = { count, flows = [...] } }, untranslated, disagreements = [...] },
each flow as ct.format.table(e) plus group and translation.

Uses lua-argparse (options), lua-dkjson (JSON) and iproute2 (`ip`).
]==]

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/?.lua"  -- last: examples/conntrack.lua is the command, not the module
local tb = require "toolbox"
tb.tree(here)

local argparse = require "argparse"
local json = require "dkjson"
local ct = require "conntrack"
local nat = ct.nat

local parser = argparse("nat-audit.lua", "The translated flows of a conntrack table, grouped by NAT kind.")
tb.common_options(parser)
parser:flag("--json", "One JSON document instead of text.")
parser:flag("--all", "List the untranslated flows too.")
parser:flag("--strict", "Exit with status 1 when a flow disagrees with its status bits.")
local o = tb.parse(parser)

local filter = tb.options_filter(parser, ct.filter, o)

local function die(msg)
	io.stderr:write("nat-audit: ", msg, "\n")
	os.exit(1)
end

local h, msg = ct.open{ netns = o.netns }
if not h then
	die((o.netns and (o.netns .. ": ") or "") .. msg)
end

-- The namespace's addresses and routes --------------------------------------

local ip = tb.in_netns(o.netns) .. "ip "

-- The preferred source address of the namespace's route to each address of
-- peers (one `ip -batch` for all): address -> source.
local function preferred_sources(peers)
	local list = {}
	for a in pairs(peers) do list[#list + 1] = "route get " .. a end
	if #list == 0 then
		return {}
	end
	local f = os.tmpname()
	local fh = assert(io.open(f, "w"))
	fh:write(table.concat(list, "\n"), "\n")
	fh:close()
	local _, out = tb.sh(ip .. "-force -j -batch " .. tb.quote(f))
	os.remove(f)
	local src = {}
	for line in out:gmatch("[^\n]+") do
		local doc = json.decode(line)
		if type(doc) == "table" and doc[1] and doc[1].dst then
			src[doc[1].dst] = doc[1].prefsrc
		end
	end
	return src
end

-- The audit -----------------------------------------------------------------

local ORDER = { "port forward", "redirect", "masquerade", "snat" }

local flows, untranslated, translated, disagree = 0, {}, {}, {}
local peers = {}
for e in h:dump(filter) do
	flows = flows + 1
	local d = nat.describe(e)
	local claimed = nat.from_status(e)
	local item = { e = e, d = d }
	if d.tuples ~= claimed then
		item.claimed = claimed
		disagree[#disagree + 1] = item
	end
	if d.tuples == "none" then
		untranslated[#untranslated + 1] = item
	else
		translated[#translated + 1] = item
		if d.snat then peers[e.reply.src] = true end
	end
end

local locals = tb.local_addresses(o.netns)
local prefsrc = preferred_sources(peers)

-- The group names of a translated flow.
local function group_of(item)
	local e, d = item.e, item.d
	local parts = {}
	if d.dnat then
		local to = d.dnat.addr or e.orig.dst
		if locals == nil then
			parts[#parts + 1] = "dnat"
		else
			parts[#parts + 1] = locals[to] and "redirect" or "port forward"
		end
	end
	if d.snat then
		local as = d.snat.addr or e.orig.src
		local pref = prefsrc[e.reply.src]
		parts[#parts + 1] = (pref ~= nil and pref == as) and "masquerade" or "snat"
	end
	return table.concat(parts, " + ")
end

local groups, names = {}, {}
for _, item in ipairs(translated) do
	local g = group_of(item)
	item.group = g
	if not groups[g] then
		groups[g] = {}
		names[#names + 1] = g
	end
	table.insert(groups[g], item)
end
local rank = {}
for i, n in ipairs(ORDER) do rank[n] = i end
table.sort(names, function(a, b)
	local ra, rb = rank[a] or #ORDER + 1, rank[b] or #ORDER + 1
	if ra ~= rb then return ra < rb end
	return a < b
end)

-- Stable order of flows: protocol, then the original tuple's text.
local function flow_text(e)
	local t = e.orig
	return tb.endpoint(t, "src") .. " -> " .. tb.endpoint(t, "dst")
end
local function by_flow(a, b)
	if a.e.proto ~= b.e.proto then return a.e.proto < b.e.proto end
	return flow_text(a.e) < flow_text(b.e)
end
for _, g in pairs(groups) do table.sort(g, by_flow) end
table.sort(untranslated, by_flow)
table.sort(disagree, by_flow)

-- What the translation did, in words.
local function translation(item)
	local e, d = item.e, item.d
	local t, parts = e.orig, {}
	if d.snat then
		parts[#parts + 1] = "as " .. tb.hostport(d.snat.addr or t.src, d.snat.port or t.sport or t.icmp_id)
	end
	if d.dnat then
		parts[#parts + 1] = "to " .. tb.hostport(d.dnat.addr or t.dst, d.dnat.port or t.dport)
	end
	return table.concat(parts, ", ")
end

local nat_count = #translated

if o.json then
	local function doc_flow(item)
		local t = ct.format.table(item.e)
		t.group = item.group
		t.translation = item.d.tuples ~= "none" and translation(item) or nil
		t.claimed = item.claimed
		return t
	end
	local doc = { netns = o.netns or "", flows = flows, translated = nat_count, groups = {},
		untranslated = #untranslated, disagreements = {} }
	for _, n in ipairs(names) do
		local list = {}
		for i, item in ipairs(groups[n]) do list[i] = doc_flow(item) end
		doc.groups[n] = { count = #list, flows = list }
	end
	if o.all then
		doc.untranslated_flows = {}
		for i, item in ipairs(untranslated) do doc.untranslated_flows[i] = doc_flow(item) end
	end
	for i, item in ipairs(disagree) do
		local t = doc_flow(item)
		t.tuples = item.d.tuples
		doc.disagreements[i] = t
	end
	print(json.encode(doc, { indent = true, keyorder = {
		"netns", "flows", "translated", "untranslated", "groups", "disagreements", "untranslated_flows",
		"port forward", "redirect", "masquerade", "snat", "count", "group", "translation", "tuples", "claimed",
		"family", "proto", "protonum", "state", "timeout", "status", "nat", "orig", "reply", "src", "dst",
		"sport", "dport", "icmp_type", "icmp_code", "icmp_id", "packets", "bytes", "mark", "zone", "labels",
		"secmark", "use", "id", "start", "stop", "helper", "secctx" } }))
else
	local function line(item, extra)
		local e = item.e
		return ("  %-5s %-12s %-44s %s"):format(e.proto .. (e.family == "ipv6" and "6" or ""), e.state or "",
			flow_text(e), extra or "")
	end
	local function plural(n, w)
		return n .. " " .. w .. (n == 1 and "" or "s")
	end
	print(("NAT audit of %s: %s, %d translated, %d disagreeing with %s status bits"):format(
		o.netns and ("netns " .. o.netns) or "this namespace", plural(flows, "flow"), nat_count, #disagree,
		#disagree == 1 and "its" or "their"))
	if locals == nil then
		print("(the namespace's addresses could not be read with `ip`: DNAT is not told from redirect)")
	end
	for _, n in ipairs(names) do
		print()
		print(("%s: %s"):format(n, plural(#groups[n], "flow")))
		for _, item in ipairs(groups[n]) do print(line(item, translation(item))) end
	end
	print()
	print(("not translated: %s%s"):format(plural(#untranslated, "flow"), o.all and "" or " (--all lists them)"))
	if o.all then
		for _, item in ipairs(untranslated) do print(line(item)) end
	end
	if #disagree > 0 then
		print()
		print(("disagreeing with the status bits: %s"):format(plural(#disagree, "flow")))
		for _, item in ipairs(disagree) do
			local what = item.d.tuples ~= "none" and (", " .. translation(item)) or ""
			print(line(item, ("tuples: %s%s; status bits: %s"):format(item.d.tuples, what, item.claimed)))
		end
	end
end
h:close()
if o.strict and #disagree > 0 then
	os.exit(1)
end
