#!/usr/bin/env lua
-- nat-report.lua: the translated flows of a conntrack table, one a line.
--
--   lua examples/nat-report.lua [--netns NAME] [--kind snat|dnat|both|any] [--json] [FIELD=VALUE...]
--
-- FIELD=VALUE narrows the report with conntrack.filter fields, e.g.
-- proto=tcp src=192.0.2.0/24 dport=443 mark=0x7/0xff.  Needs CAP_NET_ADMIN.
--
--   snat  tcp  ESTABLISHED  192.0.2.2:40100 -> 198.51.100.100:40003  (to 198.51.100.2:443)
--   dnat  udp               203.0.113.10:53 -> 198.51.100.2:5353     (from 192.0.2.2:40200)
local ct = require "conntrack"
local F, nat, fmt = ct.filter, ct.nat, ct.format

local netns, kind, json = nil, "any", false
local fields = {}
local i = 1
while i <= #arg do
	local a = arg[i]
	if a == "--netns" then
		i = i + 1
		netns = arg[i]
	elseif a == "--kind" then
		i = i + 1
		kind = arg[i]
	elseif a == "--json" then
		json = true
	elseif a:find("=", 1, true) then
		local k, v = a:match("^([%w_]+)=(.*)$")
		fields[k] = tonumber(v) or v
	else
		io.stderr:write("usage: nat-report.lua [--netns NAME] [--kind snat|dnat|both|any] [--json] [FIELD=VALUE...]\n")
		os.exit(2)
	end
	i = i + 1
end

local h = assert(ct.open { netns = netns })
local filter = F.nat(kind) * F(fields)

local function hostport(a, p)
	if a and a:find(":", 1, true) then
		a = "[" .. a .. "]"
	end
	return p and (a .. ":" .. p) or a
end

local n = 0
for e in h:dump(filter) do
	n = n + 1
	if json then
		print(fmt.json(e))
	else
		local d = nat.describe(e)
		local o = e.orig
		local peer
		if d.kind == "dnat" then
			peer = "from " .. hostport(o.src, o.sport or o.icmp_id)
		elseif d.kind == "snat" then
			peer = "to " .. hostport(o.dst, o.dport or o.icmp_id)
		end
		print(string.format("%-5s %-6s %-12s %s%s", d.kind, e.proto, e.state or "", nat.tostring(e),
			peer and ("  (" .. peer .. ")") or ""))
	end
end
if not json then
	io.stderr:write(("%d translated flow%s (%s)\n"):format(n, n == 1 and "" or "s", (filter:explain():gsub("\n", "; "))))
end
