-- Real traffic between test hosts (tools/hosts.lua): a TCP connection and
-- UDP flows through a router with nft SNAT, masquerade and DNAT, read
-- through the module bound to the router's namespace, and checked against
-- the conntrack CLI there.  Accounting and timestamps are on (hosts.lua sets
-- nf_conntrack_acct=1 and nf_conntrack_timestamp=1 in every namespace).

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local P = hosts.port

H.assert_private()

-- The router's entry (module) whose original source port is sport.
local function by_sport(h, sport, opts)
	local found
	for e in h:dump(opts) do
		if e.orig.sport == sport then
			assert.is_nil(found, "two entries with sport " .. sport)
			found = e
		end
	end
	return found
end

local function now_ns()
	return os.time() * 1000000000
end

describe("traffic: routed client - router - server with NAT", function()
	local topo, A, h, hs, t_start

	setup(function()
		t_start = now_ns()
		topo = hosts.new{ nat = { snat = true, masquerade = true, dnat = true } }
		A = topo.addr
		topo:serve()
		-- a zone and a mark given by rules, for the kernel-side dump filters
		local ok, out = topo:nft("router", ([[
table inet lct_meta {
	chain lct_pre {
		type filter hook prerouting priority -350; policy accept;
		udp dport %d ct zone set 7
		udp sport %d ct zone set 7
	}
	chain lct_fwd {
		type filter hook forward priority 0; policy accept;
		tcp dport %d ct mark set 0x2a
	}
}]]):format(P.plain, P.plain, P.plain))
		assert(ok, out)
		h = assert(ct.open{ netns = topo.ns.router })
		hs = assert(ct.open{ netns = topo.ns.server })
	end)

	teardown(function()
		if h then h:close() end
		if hs then hs:close() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	it("TCP: ESTABLISHED, ASSURED, SEEN_REPLY, counters and start time; the CLI's line", function()
		local c = topo:tcp_connect("client", A.server, P.plain, { hold = 8 })
		finally(function() c:close() end)
		local t_end = now_ns()
		local e = assert(by_sport(h, c.sport))
		assert.equals("ipv4", e.family)
		assert.equals("tcp", e.proto)
		assert.equals(6, e.protonum)
		assert.equals("ESTABLISHED", e.state)
		assert.is_true(e.status.ASSURED)
		assert.is_true(e.status.SEEN_REPLY)
		assert.is_true(e.status.CONFIRMED)
		assert.is_nil(e.status.SRC_NAT)
		assert.is_nil(e.status.DST_NAT)
		assert.equals(0x2a, e.mark)
		assert.same({ src = A.client, dst = A.server, sport = c.sport, dport = P.plain },
			{ src = e.orig.src, dst = e.orig.dst, sport = e.orig.sport, dport = e.orig.dport })
		assert.same({ src = A.server, dst = A.client, sport = P.plain, dport = c.sport },
			{ src = e.reply.src, dst = e.reply.dst, sport = e.reply.sport, dport = e.reply.dport })
		-- handshake, data and acks both ways
		assert.is_true(e.orig.packets >= 3, e.orig.packets)
		assert.is_true(e.reply.packets >= 2, e.reply.packets)
		assert.is_true(e.orig.bytes > 3 * 40)
		assert.is_true(e.reply.bytes > 2 * 40)
		-- timestamps: started within this test's window, not stopped
		assert.is_true(e.start >= t_start - 1e9 and e.start <= t_end + 1e9,
			("start %d not in [%d, %d]"):format(e.start, t_start, t_end))
		assert.is_nil(e.stop)
		assert.is_true(e.timeout > 0)
		assert.is_number(e.id)

		-- the CLI agrees, counters included, to the character
		local cli = H.parse(assert(H.find(H.cli_ok(topo.ns.router, "-L -p tcp"), "sport=" .. c.sport .. " ")))
		assert.equals(e.orig.packets, cli.orig.packets)
		assert.equals(e.orig.bytes, cli.orig.bytes)
		assert.equals(e.reply.packets, cli.reply.packets)
		assert.equals(e.reply.bytes, cli.reply.bytes)
		assert.equals(42, cli.mark)
		local mine, line = H.same_line(function() return tostring(by_sport(h, c.sport)) end,
			function() return H.find(H.cli_ok(topo.ns.router, "-L -p tcp"), "sport=" .. c.sport .. " ") end)
		assert.equals(line, mine)
		local mine2, line2 = H.same_line(function() return by_sport(h, c.sport):format("extended,id") end,
			function() return H.find(H.cli_ok(topo.ns.router, "-L -p tcp -o extended,id"), "sport=" .. c.sport .. " ") end)
		assert.equals(line2, mine2)

		-- closing moves it out of ESTABLISHED
		c:close()
		local after = assert(by_sport(h, c.sport))
		assert.is_truthy(({ FIN_WAIT = true, CLOSE_WAIT = true, LAST_ACK = true, TIME_WAIT = true,
			CLOSE = true })[after.state], after.state)
		assert.equals(e.id, after.id)
		assert.equals(e.start, after.start)
		assert.is_true(after.orig.packets > e.orig.packets)
	end)

	it("TCP through DNAT, v4 and v6: reply from the real server port", function()
		for _, dst in ipairs{ A.public, A.public6 } do
			local c = topo:tcp_connect("client", dst, P.dnat, { hold = 5 })
			local e = assert(by_sport(h, c.sport, { family = dst == A.public and "ipv4" or "ipv6" }))
			c:close()
			local server = dst == A.public and A.server or A.server6
			local client = dst == A.public and A.client or A.client6
			assert.equals(dst, e.orig.dst)
			assert.equals(P.dnat, e.orig.dport)
			assert.equals(server, e.reply.src)
			assert.equals(P.dnat_to, e.reply.sport)
			assert.equals(client, e.reply.dst)
			assert.equals(c.sport, e.reply.dport)
			assert.equals("ESTABLISHED", e.state)
			assert.is_true(e.status.DST_NAT)
			assert.is_true(e.status.DST_NAT_DONE)
			assert.is_nil(e.status.SRC_NAT)
			assert.is_true(e.status.ASSURED)
		end
	end)

	it("UDP through SNAT, v4 and v6: reply to the SNAT address, exact counters", function()
		local payload = "ping"
		for _, v in ipairs{ { A.server, A.snat, 20 }, { A.server6, A.snat6, 40 } } do
			local server, snat, iphdr = v[1], v[2], v[3]
			local ok, reply, sport = topo:udp_send("client", server, P.snat, payload, 3)
			assert.is_true(ok, reply)
			local e = assert(by_sport(h, sport))
			assert.equals("udp", e.proto)
			assert.is_nil(e.state)
			assert.equals(server, e.reply.src)
			assert.equals(snat, e.reply.dst)
			assert.equals(P.snat, e.reply.sport)
			assert.is_true(e.status.SRC_NAT)
			assert.is_true(e.status.SRC_NAT_DONE)
			assert.is_true(e.status.SEEN_REPLY)
			assert.is_nil(e.status.DST_NAT)
			local size = iphdr + 8 + #payload
			assert.equals(3, e.orig.packets)
			assert.equals(3, e.reply.packets)
			assert.equals(3 * size, e.orig.bytes)
			assert.equals(3 * size, e.reply.bytes)
			local cli = H.parse(assert(H.find(H.cli_ok(topo.ns.router, "-L -p udp"), "sport=" .. sport .. " ")))
			assert.equals(e.orig.bytes, cli.orig.bytes)
			assert.equals(e.reply.packets, cli.reply.packets)
			assert.equals(e.reply.dst, cli.reply.dst)
			assert.equals(e.reply.dport, cli.reply.dport)
			-- the server's own table only ever saw the translated source
			local se
			for x in hs:dump{ family = e.family } do
				if x.orig.src == snat and x.orig.sport == e.reply.dport then se = x end
			end
			assert.is_truthy(se, "server has no entry from " .. snat)
			assert.equals(3, se.orig.packets)
		end
	end)

	it("masquerade: reply to the router's own address", function()
		local ok, reply, sport = topo:tcp_request("client", A.server, P.masquerade, "masq")
		assert.is_true(ok)
		assert.equals("masq", reply)
		local e = assert(by_sport(h, sport))
		assert.equals(A.masquerade, e.reply.dst)
		assert.is_true(e.status.SRC_NAT)
		assert.is_truthy(({ FIN_WAIT = true, CLOSE_WAIT = true, LAST_ACK = true, TIME_WAIT = true,
			CLOSE = true })[e.state], e.state)
	end)

	it("kernel dump filters on live traffic: zone, mark, family, status", function()
		local ok, reply, sport = topo:udp_send("client", A.server, P.plain, "z", 2)
		assert.is_true(ok, reply)
		local c = topo:tcp_connect("client", A.server6, P.plain, { hold = 5 })
		finally(function() c:close() end)
		-- zone 7 holds the plain UDP flow, and only UDP to port 8000
		local z = h:list{ zone = 7 }
		assert.is_true(#z >= 1)
		local seen = false
		for _, e in ipairs(z) do
			assert.equals(7, e.zone)
			assert.equals(P.plain, e.orig.dport)
			seen = seen or e.orig.sport == sport
		end
		assert.is_true(seen)
		assert.equals(#z, #H.cli_ok(topo.ns.router, "-L -w 7"))
		for _, e in ipairs(h:list{ zone = 0 }) do assert.is_nil(e.zone) end
		-- mark 0x2a: the TCP flows to port 8000 (v4 and v6)
		local m = h:list{ mark = 0x2a }
		assert.is_true(#m >= 1)
		for _, e in ipairs(m) do
			assert.equals("tcp", e.proto)
			assert.equals(P.plain, e.orig.dport)
		end
		assert.is_truthy(by_sport(h, c.sport, { mark = 0x2a, family = "ipv6" }))
		assert.is_nil(by_sport(h, c.sport, { family = "ipv4" }))
		-- status: every entry here saw a reply
		local all, n = H.keyset(h:dump())
		local replied, nr = H.keyset(h:dump{ status = { "SEEN_REPLY" } })
		assert.same(H.sorted(all), H.sorted(replied))
		assert.equals(n, nr)
		assert.equals(0, #h:list{ status = {}, status_mask = { "SEEN_REPLY" } })
		-- the whole table, as the CLI counts it
		assert.equals(tonumber(H.cli_ok(topo.ns.router, "-C")[1]), h:count())
		assert.equals(h:count(), #h:list())
	end)

	it("every entry of the router's table reads the same through the module and the CLI", function()
		local c = topo:tcp_connect("client", A.public, P.dnat, { hold = 5 })
		finally(function() c:close() end)
		-- lines carry seconds (timeout, delta-time) that may tick between the two reads
		local mine = {}
		for e in h:dump() do mine[#mine + 1] = H.untimed(tostring(e)) end
		local cli = {}
		for _, l in ipairs(H.cli_ok(topo.ns.router, "-L")) do cli[#cli + 1] = H.untimed(l) end
		table.sort(mine)
		table.sort(cli)
		assert.is_true(#mine >= 5)
		assert.same(cli, mine)
	end)
end)
