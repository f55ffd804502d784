-- nat-demo.lua: three test hosts in private namespaces (client,
-- router with nft NAT rules, server), one flow of each NAT kind between
-- them, and what lua-conntrack makes of the router's table: each flow with
-- its NAT kind and translation, a filter and where it runs, a bulk update.
-- Run (as root, after `make`): LUA_PATH="$PWD/lua/?.lua;$PWD/tools/?.lua;;" \
--   LUA_CPATH="$PWD/build/5.4/?.so;;" tools/netns-run lua5.4 examples/nat-demo.lua
local hosts = require "hosts"
local ct = require "conntrack"
local F, nat, fmt = ct.filter, ct.nat, ct.format

local topo = hosts.new { nat = { snat = { ports = "40000-40009" }, masquerade = true, dnat = true, redirect = true } }
local ok, err = pcall(function()
	local A, P = topo.addr, hosts.port
	topo:serve()
	local flows = {
		{ "plain", "tcp", A.server, P.plain }, { "snat", "udp", A.server, P.snat },
		{ "masquerade", "tcp", A.server, P.masquerade }, { "dnat", "tcp", A.public, P.dnat },
		{ "redirect", "tcp", A.server, P.redirect }, { "snat (IPv6)", "udp", A.server6, P.snat },
		{ "dnat (IPv6)", "tcp", A.public6, P.dnat },
	}
	local label = {}
	for _, f in ipairs(flows) do
		local done, reply, sport
		for _ = 1, 3 do
			if f[2] == "tcp" then
				done, reply, sport = topo:tcp_request("client", f[3], f[4], "demo")
			else
				done, reply, sport = topo:udp_send("client", f[3], f[4], "demo", 1, { wait = 1 })
			end
			if done then break end
		end
		assert(done, f[1] .. ": no echo from the server: " .. tostring(reply))
		label[sport] = f[1]
	end

	local h = assert(ct.open { netns = topo.ns.router })
	print("The router's table, flow by flow:\n")
	for e in h:dump() do
		print(string.format("  %-12s %-5s %s", label[e.orig.sport] or "?", nat.classify(e), nat.tostring(e)))
	end

	print("\nThe same entries as `conntrack -L -o save` writes them:\n")
	for e in h:dump() do
		print("  " .. fmt.save(e))
	end

	local f = F.nat "snat" * F.family "ipv4" * F.status "ASSURED"
	print("\nA filter and where it runs:\n")
	print("  " .. f:explain():gsub("\n", "\n  "))
	for e in h:dump(f) do
		print("    -> " .. tostring(e))
	end

	local n = h:update_where(F.nat "any", { mark = 42 })
	print(("\nupdate_where(nat \"any\", {mark = 42}) changed %d entries; by mark now:"):format(n))
	for e in h:dump(F.mark(42)) do
		print("  " .. fmt.json(e))
	end
	h:close()
end)
topo:destroy()
if not ok then
	error(err, 0)
end
