-- Events for real traffic between test hosts (issue 3): subscribe in the
-- router's namespace, make TCP and UDP flows from the client to the server,
-- and check new -> update (ESTABLISHED, ASSURED) -> destroy on delete field by
-- field, and every line against what `conntrack -E` prints in the router.
local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local P = hosts.port

describe("events: real traffic through a router", function()
	local topo, A, R, h

	setup(function()
		topo = hosts.new{ nat = { snat = true, dnat = true } }
		A = topo.addr
		R = topo.ns.router
		topo:serve()
		h = assert(ct.open{ netns = R })
	end)
	teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	local function flow(src, sport)
		return function(e)
			return e.type ~= "overflow" and e.orig.src == src and e.orig.sport == sport
		end
	end

	-- Events of one flow until pred(last event) holds.
	local function until_(sub, f, pred, secs)
		local got = H.collect(sub, function(list)
			for _, e in ipairs(list) do
				if f(e) and pred(e) then return true end
			end
			return false
		end, secs or 5)
		return H.select(got, f)
	end

	local function same_lines(evs, lines, sport)
		local mine = {}
		for _, l in ipairs(lines) do
			if l:find(" sport=" .. sport .. " ", 1, true) then
				mine[#mine + 1] = H.strip_userspace(l)
			end
		end
		local texts = {}
		for i, e in ipairs(evs) do texts[i] = tostring(e) end
		assert.same(mine, texts)
	end

	it("TCP: new, updates to ESTABLISHED and ASSURED, destroy on delete (IPv4, no NAT)", function()
		local w = H.cli_events(topo, "router")
		local sub = assert(ct.subscribe{ netns = R })
		finally(function() sub:close() end)
		local c = topo:tcp_connect("client", A.server, P.plain, { hold = 5 })
		local f = flow(A.client, c.sport)
		local evs = until_(sub, f, function(e) return e.state == "ESTABLISHED" and e.status.ASSURED end)
		assert.is_true(#evs >= 2)
		local first = evs[1]
		assert.equals("new", first.type)
		assert.equals("SYN_SENT", first.state)
		assert.is_nil(first.status.ASSURED)
		assert.is_nil(first.status.SEEN_REPLY)
		assert.is_true(first.status.CONFIRMED)
		for _, e in ipairs(evs) do
			assert.equals("ipv4", e.family)
			assert.equals("tcp", e.proto)
			assert.equals(6, e.protonum)
			assert.equals(A.client, e.orig.src)
			assert.equals(A.server, e.orig.dst)
			assert.equals(c.sport, e.orig.sport)
			assert.equals(P.plain, e.orig.dport)
			assert.equals(A.server, e.reply.src)
			assert.equals(A.client, e.reply.dst)
			assert.equals(P.plain, e.reply.sport)
			assert.equals(c.sport, e.reply.dport)
			assert.equals(first.id, e.id)
			assert.is_nil(e.status.SRC_NAT)
			assert.is_nil(e.status.DST_NAT)
		end
		for i = 2, #evs do
			assert.equals("update", evs[i].type)
		end
		local last = evs[#evs]
		assert.equals("ESTABLISHED", last.state)
		assert.is_true(last.status.ASSURED)
		assert.is_true(last.status.SEEN_REPLY)
		assert.is_true(last.timeout > 120)

		c:close()
		local tuple = { src = A.client, dst = A.server, proto = "tcp", sport = c.sport, dport = P.plain }
		assert.is_true(h:delete(tuple))
		local rest = until_(sub, f, function(e) return e.type == "destroy" end)
		local d = rest[#rest]
		assert.equals("destroy", d.type)
		assert.equals(first.id, d.id)
		for i = 1, #rest - 1 do
			assert.equals("update", rest[i].type)
		end
		-- accounting and timestamps are on in the router
		assert.is_true(d.orig.packets >= 4, tostring(d.orig.packets))
		assert.is_true(d.orig.bytes > 0)
		assert.is_true(d.reply.packets >= 3)
		assert.is_true(d.reply.bytes > 0)
		assert.is_true(d.start > 0 and d.stop >= d.start)
		assert.is_true(d.status.ASSURED)

		for _, e in ipairs(rest) do evs[#evs + 1] = e end
		w.stop()
		same_lines(evs, w.lines(), c.sport)
	end)

	it("TCP through DNAT, IPv6: the reply tuple names the real server", function()
		local w = H.cli_events(topo, "router")
		local sub = assert(ct.subscribe{ netns = R, types = { "new", "update" } })
		finally(function() sub:close() end)
		local c = topo:tcp_connect("client", A.public6, P.dnat, { hold = 5 })
		local f = flow(A.client6, c.sport)
		local evs = until_(sub, f, function(e) return e.state == "ESTABLISHED" and e.status.ASSURED end)
		assert.equals("new", evs[1].type)
		for _, e in ipairs(evs) do
			assert.equals("ipv6", e.family)
			assert.equals(A.public6, e.orig.dst)
			assert.equals(P.dnat, e.orig.dport)
			assert.equals(A.server6, e.reply.src)
			assert.equals(A.client6, e.reply.dst)
			assert.equals(P.dnat_to, e.reply.sport)
			assert.equals(c.sport, e.reply.dport)
			assert.is_true(e.status.DST_NAT)
			assert.is_nil(e.status.SRC_NAT)
		end
		assert.is_true(evs[#evs].status.ASSURED)
		c:close()
		-- the teardown of the connection: updates only (types), then the
		-- delete gives a destroy that this subscription does not want
		local rest = until_(sub, f, function(e) return e.state == "TIME_WAIT" or e.state == "CLOSE" end)
		assert.is_true(#rest >= 1)
		assert.is_true(h:delete{ family = "ipv6", src = A.client6, dst = A.public6, proto = "tcp",
			sport = c.sport, dport = P.dnat })
		for _, e in ipairs(rest) do
			assert.equals("update", e.type)
			evs[#evs + 1] = e
		end
		assert.is_false(sub:wait(0.2))
		w.stop()
		local lines = {}
		for _, l in ipairs(w.lines()) do
			if not l:match("^%[DESTROY%]") then lines[#lines + 1] = l end
		end
		same_lines(evs, lines, c.sport)
	end)

	it("UDP through SNAT: new UNREPLIED, update SEEN_REPLY, destroy with counters on CLI delete", function()
		local w = H.cli_events(topo, "router")
		local sub = assert(ct.subscribe{ netns = R })
		finally(function() sub:close() end)
		local ok, reply, sport = topo:udp_send("client", A.server, P.snat, "ev", 3)
		assert.is_true(ok, reply)
		local f = flow(A.client, sport)
		local evs = until_(sub, f, function(e) return e.type == "update" and e.status.SEEN_REPLY end)
		assert.equals("new", evs[1].type)
		assert.is_nil(evs[1].status.SEEN_REPLY)
		assert.is_true(tostring(evs[1]):find("[UNREPLIED]", 1, true) ~= nil)
		for _, e in ipairs(evs) do
			assert.equals("udp", e.proto)
			assert.equals(17, e.protonum)
			assert.equals(A.server, e.orig.dst)
			assert.equals(P.snat, e.orig.dport)
			assert.equals(A.server, e.reply.src)
			assert.equals(A.snat, e.reply.dst)
			assert.equals(P.snat, e.reply.sport)
			assert.is_true(e.status.SRC_NAT)
			assert.is_nil(e.state)
			assert.equals(evs[1].id, e.id)
		end
		local ok2, out = topo:conntrack("-D -p udp --orig-port-src " .. sport, "router")
		assert.is_true(ok2, out)
		local rest = until_(sub, f, function(e) return e.type == "destroy" end)
		local d = rest[#rest]
		assert.equals("destroy", d.type)
		assert.equals(evs[1].id, d.id)
		assert.equals(3, d.orig.packets)
		assert.equals(3, d.reply.packets)
		assert.equals(3 * (20 + 8 + 2), d.orig.bytes)
		for _, e in ipairs(rest) do evs[#evs + 1] = e end
		w.stop()
		same_lines(evs, w.lines(), sport)
	end)

	it("a client-side subscription sees the client's own flows only", function()
		local sub = assert(ct.subscribe{ netns = topo.ns.client, types = "new" })
		local rsub = assert(ct.subscribe{ netns = R, types = "new" })
		finally(function() sub:close(); rsub:close() end)
		local ok, _, sport = topo:tcp_request("client", A.server, P.plain, "x")
		assert.is_true(ok)
		local mine = H.collect_n(sub, 1, flow(A.client, sport))
		assert.equals(1, #mine)
		assert.equals("SYN_SENT", mine[1].state)
		local seen = H.collect_n(rsub, 1, flow(A.client, sport))
		assert.equals(1, #seen)
		-- nothing of the server's own table shows up in either
		local ok2, _, sport2 = topo:udp_send("server", A.router_s, 9, "x", 1, { wait = 0.1 })
		assert.is_false(ok2)
		assert.equals(0, #H.collect_n(sub, 1, flow(A.server, sport2), 0.3))
	end)
end)
