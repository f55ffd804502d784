-- examples/nat-audit.lua on a router with every NAT preset and real
-- connections through it (IPv4 and IPv6), plus one entry whose tuples say
-- DNAT while its status bits say nothing: the groups, the translations and
-- the disagreement, in text on every Lua and in JSON.
local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"
local J = require "jobhelp"
local json = require "dkjson"

local q = hosts.quote
local P = hosts.port

-- Text output: { [group] = { lines... } }, the disagreement lines, and the
-- first line.
local function groups(out)
	local g, cur, first = {}, nil, out:match("^[^\n]*")
	for line in out:gmatch("[^\n]+") do
		local name = line:match("^([%w +]+): %d+ flows?")
		if line:find("^disagreeing with the status bits:") then
			cur = {}
			g["disagreeing"] = cur
		elseif name then
			cur = {}
			g[name] = cur
		elseif cur and line:find("^  ") then
			cur[#cur + 1] = line
		end
	end
	return g, first
end

local function has(lines, ...)
	return H.find(lines or {}, ...) ~= nil
end

describe("nat-audit.lua", function()
	local topo, router, h, conns, sport = nil, nil, nil, {}, {}
	local ODD = { src = "192.0.2.50", dst = "198.51.100.50", proto = "udp", sport = 1, dport = 2, timeout = 300,
		reply_src = "198.51.100.60" }

	setup(function()
		topo = hosts.new{ nat = true }
		router = topo.ns.router
		topo:serve()
		local A = topo.addr
		local function conn(name, addr, port)
			local c = topo:tcp_connect("client", addr, port, { hold = 60 })
			conns[#conns + 1] = c
			sport[name] = c.sport
		end
		conn("dnat", A.public, P.dnat)
		conn("dnat6", A.public6, P.dnat)
		conn("snat", A.server, P.snat)
		conn("snat6", A.server6, P.snat)
		conn("masq", A.server, P.masquerade)
		conn("masq6", A.server6, P.masquerade)
		conn("redirect", A.server, P.redirect)
		conn("plain", A.server, P.plain)
		local ok, _, s = topo:udp_send("client", A.server, P.snat, "u")
		assert(ok)
		sport.snat_udp = s
		h = assert(ct.open{ netns = router })
		assert(h:create(ODD))
	end)
	teardown(function()
		for _, c in ipairs(conns) do c:close() end
		if h then h:close() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	it("--help prints the usage; bad options exit 2", function()
		J.check_usage("nat-audit.lua", { "--nosuch", "-s 1.2.3", "-p nosuch" })
	end)

	it("groups the flows by NAT kind with their translations, on every Lua", function()
		-- IPv6 SNAT goes to the address the router prefers anyway: it looks like masquerade
		local pref6 = json.decode(J.sh(("ip -n %s -j route get 2001:db8:2::2"):format(q(router))))[1].prefsrc
		local snat6_group = pref6 == "2001:db8:2::100" and "masquerade" or "snat"
		for _, lua in ipairs(J.luas()) do
			local ok, out, err = J.run(nil, lua, "nat-audit.lua", "--netns " .. q(router))
			assert.is_true(ok, lua.bin .. ": " .. err)
			local g, first = groups(out)
			local c = sport
			assert.is_true(has(g["port forward"], ("192.0.2.2:%d -> 203.0.113.10:%d"):format(c.dnat, P.dnat),
				"to 198.51.100.2:" .. P.dnat_to), lua.bin .. "\n" .. out)
			assert.is_true(has(g["port forward"], ("[2001:db8:1::2]:%d -> [2001:db8:3::10]:%d"):format(c.dnat6, P.dnat),
				"to [2001:db8:2::2]:" .. P.dnat_to))
			assert.is_true(has(g["redirect"], ("192.0.2.2:%d -> 198.51.100.2:%d"):format(c.redirect, P.redirect),
				"to 192.0.2.1:" .. P.redirect_to))
			assert.is_true(has(g["masquerade"], ("192.0.2.2:%d -> 198.51.100.2:%d"):format(c.masq, P.masquerade),
				"as 198.51.100.1:"))
			assert.is_true(has(g["masquerade"], ("[2001:db8:1::2]:%d -> [2001:db8:2::2]:%d"):format(c.masq6, P.masquerade)))
			assert.is_true(has(g["snat"], ("192.0.2.2:%d -> 198.51.100.2:%d"):format(c.snat, P.snat),
				"as 198.51.100.100:"))
			assert.is_true(has(g["snat"], "  udp ", ("192.0.2.2:%d ->"):format(c.snat_udp), "as 198.51.100.100:"))
			assert.is_true(has(g[snat6_group], ("[2001:db8:1::2]:%d -> [2001:db8:2::2]:%d"):format(c.snat6, P.snat),
				"as [2001:db8:2::100]:"))
			-- the injected entry: a port forward by its tuples, nothing by its bits
			assert.is_true(has(g["port forward"], "192.0.2.50:1 -> 198.51.100.50:2", "to 198.51.100.60:2"))
			assert.equals(1, #g["disagreeing"])
			assert.is_true(has(g["disagreeing"], "192.0.2.50:1 -> 198.51.100.50:2",
				"tuples: dnat, to 198.51.100.60:2; status bits: none"))
			-- the plain connection is not listed, only counted
			assert.is_false(has(g["port forward"], ":" .. c.plain .. " ->"))
			local n = tonumber(H.cli_ok(router, "-C")[1])
			assert.matches(("^NAT audit of netns %s: %d flows, %d translated, 1 disagreeing"):format(
				router:gsub("%-", "%%-"), n, n - 1), first)
		end
	end)

	it("--json: the same audit as a document, with the translated count the CLI agrees with", function()
		local ok, out, err = J.run(nil, nil, "nat-audit.lua", "--json --all --netns " .. q(router))
		assert.is_true(ok, err)
		local doc = assert(json.decode(out))
		assert.equals(router, doc.netns)
		local n = 0
		for name, g in pairs(doc.groups) do
			assert.equals(#g.flows, g.count)
			for _, f in ipairs(g.flows) do
				assert.equals(name, f.group)
				assert.is_string(f.translation)
				-- the status bits' kind, but for the flow that disagrees with them
				assert.is_not_equal(f.claimed == nil and "none" or "", f.nat)
				n = n + 1
			end
		end
		assert.equals(doc.translated, n)
		assert.equals(doc.flows, doc.translated + doc.untranslated)
		assert.equals(doc.untranslated, #doc.untranslated_flows)
		assert.equals(1, #doc.disagreements)
		local d = doc.disagreements[1]
		assert.equals("dnat", d.tuples)
		assert.equals("none", d.claimed)
		assert.equals("198.51.100.60", d.reply.src)
		-- IPv4: the CLI's --any-nat (status bits) sees all but the injected entry
		local v4 = 0
		for _, g in pairs(doc.groups) do
			for _, f in ipairs(g.flows) do
				if f.family == "ipv4" then v4 = v4 + 1 end
			end
		end
		assert.equals(#H.cli_ok(router, "-L -f ipv4 -j"), v4 - 1)
	end)

	it("filters with -p and -d; --strict fails only while a flow disagrees", function()
		local ok, out = J.run(nil, nil, "nat-audit.lua", "--json -p udp --all --netns " .. q(router))
		assert.is_true(ok)
		local doc = json.decode(out)
		for _, g in pairs(doc.groups) do
			for _, f in ipairs(g.flows) do assert.equals("udp", f.proto) end
		end
		for _, f in ipairs(doc.untranslated_flows) do assert.equals("udp", f.proto) end
		ok, out = J.run(nil, nil, "nat-audit.lua", "--json -d 203.0.113.0/24 --netns " .. q(router))
		assert.is_true(ok)
		doc = json.decode(out)
		assert.equals(1, doc.flows)
		assert.equals(1, doc.groups["port forward"].count)

		local _, _, _, code = J.run(nil, nil, "nat-audit.lua", "--strict --netns " .. q(router))
		assert.equals(1, code)
		assert(h:delete(H.tuple(ODD)))
		local ok2, out2 = J.run(nil, nil, "nat-audit.lua", "--strict --netns " .. q(router))
		assert.is_true(ok2)
		assert.matches(", 0 disagreeing with their status bits", out2)
		assert.is_nil(out2:find("disagreeing with the status bits:", 1, true))
	end)
end)
