-- A short tour of the job tools (the end of `make demo`): a client - router -
-- server network with NAT, a little traffic, and each tool run on the
-- router's table as a user would run it: nat-audit.lua, top.lua --once,
-- exporter.lua scraped once, the rpcd plugin called as rpcd calls it.
--
-- Run by hand (as root, after `make`):
--   LUA_PATH="$PWD/lua/?.lua;$PWD/spec/?.lua;;" LUA_CPATH="$PWD/build/5.4/?.so;;" \
--     tools/netns-run lua5.4 examples/tour.lua
-- Plain Lua 5.1 - 5.4; the namespaces are removed at the end, whatever happens.

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
local lua = os.getenv("LUA") or (arg and arg[-1]) or "lua5.4"
local hosts = require "hosts"
local q = hosts.quote

local function run(cmd, stdin)
	if stdin then
		cmd = "printf '%s' " .. q(stdin) .. " | " .. cmd
	end
	local ok, out = hosts.run(cmd)
	if not ok then
		error(cmd .. ":\n" .. out, 0)
	end
	return out
end

local function tool(name, args, stdin)
	return run(lua .. " " .. q(here .. "/" .. name) .. " " .. args, stdin)
end

local function section(title, shown)
	print(("\n== %s\n   $ %s\n"):format(title, shown))
end

local function indent(text, max)
	local n = 0
	for line in text:gmatch("[^\n]+") do
		n = n + 1
		if max and n > max then
			print("     ...")
			break
		end
		print("     " .. line)
	end
end

local function tour(topo)
	local A, P, router = topo.addr, hosts.port, topo.ns.router
	topo:serve()
	-- the exporter first: it counts events only for flows that begin while it listens
	local errf = os.tmpname()
	local pid = run(("%s %s --listen 127.0.0.1:0 --netns %s --top 3 2>%s >/dev/null & echo $!"):format(
		lua, q(here .. "/exporter.lua"), q(router), q(errf))):match("%d+")
	local url
	for _ = 1, 200 do
		local f = io.open(errf)
		url = f and f:read("*a"):match("(http://%S+/metrics)")
		if f then f:close() end
		if url then break end
		hosts.sleep(0.05)
	end
	local held = {
		topo:tcp_connect("client", A.public, P.dnat, { hold = 30 }),
		topo:tcp_connect("client", A.server, P.masquerade, { hold = 30 }),
		topo:tcp_connect("client", A.server6, P.snat, { hold = 30 }),
	}
	assert(topo:udp_send("client", A.server, P.snat, "hello", 3))
	assert(topo:tcp_request("client", A.server, P.redirect, "to the router"))
	run(("ip netns exec %s sh -c 'head -c 3000000 /dev/zero | timeout 10 socat -t 2 - TCP4:%s:%d >/dev/null'")
		:format(q(topo.ns.client), A.server, P.plain))

	print("\nA tour of the job tools (examples/), on the router's table")

	section("NAT audit: translations grouped by kind", "lua examples/nat-audit.lua --netns ROUTER")
	indent(tool("nat-audit.lua", "--netns " .. q(router)))

	section("top, one snapshot (live in a terminal without --once; keys b p t a e r q)",
		"lua examples/top.lua --netns ROUTER --once --sort bytes --lines 6")
	indent(tool("top.lua", "--netns " .. q(router) .. " --once --sort bytes --interval 0 --lines 6"))

	section("Prometheus exporter, one scrape (some of its lines)",
		"lua examples/exporter.lua --listen 127.0.0.1:9447 --netns ROUTER --top 3; curl .../metrics")
	if url then
		local body = require("socket.http").request(url) or ""
		local keep = {}
		for line in body:gmatch("[^\n]+") do
			if line:find("^conntrack_entries") or line:find("^conntrack_flows") or line:find("^conntrack_nat_flows")
				or line:find("^conntrack_events_total") or line:find("^conntrack_endpoint_flows") then
				keep[#keep + 1] = (line:gsub('netns="[^"]*"', 'netns="ROUTER"'))
			end
		end
		indent(table.concat(keep, "\n"))
		local f = io.open(errf, "w")
		f:write(body)
		f:close()
		local ok, out = hosts.run("promtool check metrics < " .. q(errf))
		print(("     (%d lines in all; promtool check metrics: %s)"):format(select(2, body:gsub("\n", "")),
			ok and "no problems" or out))
	else
		print("     the exporter did not start")
	end
	run("kill " .. pid)
	os.remove(errf)

	section("rpcd plugin (OpenWrt's ubus), called as rpcd calls it",
		"echo '{\"proto\": \"tcp\", \"limit\": 2}' | lua examples/rpcd-conntrack.lua call list")
	local ns = "ip netns exec " .. q(router) .. " "
	indent(run(ns .. lua .. " " .. q(here .. "/rpcd-conntrack.lua") .. " call count", "{}"))
	local page = run(ns .. lua .. " " .. q(here .. "/rpcd-conntrack.lua") .. " call list",
		'{"proto": "tcp", "limit": 2}')
	indent(page:sub(1, 400) .. (#page > 400 and " ..." or ""))

	for _, c in ipairs(held) do c:close() end
end

local ok, err = pcall(hosts.with, { nat = true }, tour)
local clean = hosts.cleanup_all()
if not ok then
	io.stderr:write("tour failed: ", tostring(err), "\n")
	os.exit(1)
end
print(clean and "\nTour over; its namespaces are removed." or "\nWARNING: some namespaces were left behind.")
