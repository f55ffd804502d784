-- examples/replicate.lua on real tables: a client and a server joined
-- through two routers a and b (hosts.twin), both firewalls alike (SNAT of
-- the client LAN to one address from a random port, a DNAT port forward,
-- invalid packets dropped, TCP picked up only from its handshake:
-- nf_conntrack_tcp_loose=0, so a router forwards a TCP flow only if it
-- holds its state), the primary on a, the backup on b, each run in its
-- router's namespace, talking over the routers' own link.
--
-- The failover: connections run from the client through a while b keeps a
-- copy of a's table; then a's links go down and the client's and server's
-- routes move to b, and the same connections must carry data both ways
-- through b.  Without replication they must not (the test can fail).
local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"
local J = require "jobhelp"

local T = hosts.twin_addr
local PORT = 7070
local PEER = T.b_sync .. ":" .. PORT
local MARK = { a = 0xa, b = 0xb }

-- Both routers the same firewall; each marks the flows it saw begin.  The
-- `ct label` rule makes the kernel keep labels in the namespace (without
-- one it drops the labels a create asks for).
local function firewall(topo)
	for _, r in ipairs({ "a", "b" }) do
		local ok, out = topo:nft(r, ([[
table inet lct_fw {
	chain lct_forward {
		type filter hook forward priority 0; policy accept;
		ct state invalid counter drop
		ct state new ct mark set 0x%x
		ct label 127 counter
	}
}]]):format(MARK[r]))
		assert(ok, out)
		assert(topo:exec(r, "sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0"))
	end
end

local function twin()
	local topo = hosts.twin{ nat = { snat = { ports = "40000-59999", random = true }, dnat = true } }
	firewall(topo)
	return topo
end

-- A twin with a handle on each router's table; done() ends them all.
local function routers()
	local topo = twin()
	local ha = assert(ct.open{ netns = topo.ns.a })
	local hb = assert(ct.open{ netns = topo.ns.b })
	return topo, ha, hb, function()
		ha:close()
		hb:close()
		topo:destroy()
	end
end

-- The pair of tools; stop() ends both and returns their stderr.
local function start_pair(topo, lua, primary_args)
	local b = J.start(topo.ns.b, lua, "replicate.lua", "backup --listen " .. PEER, "listening on")
	local a = J.start(topo.ns.a, lua, "replicate.lua", "primary --peer " .. PEER .. " " .. (primary_args or ""),
		"copy 1 sent")
	local pair = { a = a, b = b }
	function pair.stop()
		local _, ea = pair.a.stop()
		local _, eb = pair.b.stop()
		return ea, eb
	end
	function pair.log()
		return "--- primary:\n" .. pair.a.err() .. "--- backup:\n" .. pair.b.err()
	end
	return pair
end

-- The flows of a table but the routers' own link: key -> entry.
local function flows(h)
	local t = {}
	for _, e in ipairs(assert(h:list())) do
		if not (e.proto == "tcp" and (e.orig.dport == PORT or e.orig.sport == PORT)) then
			t[H.key(e)] = e
		end
	end
	return t
end

local function set_text(t)
	local l = {}
	for k, v in pairs(t or {}) do
		if v then l[#l + 1] = tostring(k) end
	end
	table.sort(l)
	return table.concat(l, ",")
end

local KEPT = { SEEN_REPLY = true, ASSURED = true, SRC_NAT = true, DST_NAT = true, FIXED_TIMEOUT = true }
local function status_text(e)
	local t = {}
	for k, v in pairs(e.status or {}) do
		if KEPT[k] then t[k] = v end
	end
	return set_text(t)
end

-- A tuple without its counters.
local function tuple_text(t)
	return ("%s %s %s %s %s"):format(t.src, t.dst, tostring(t.sport or t.icmp_id), tostring(t.dport or t.icmp_type),
		tostring(t.zone))
end

-- What a takeover needs of flow a, found in b: nil, or the first difference.
local function differs(a, b, hold)
	if b == nil then
		return "missing"
	end
	local ta, tb_ = tuple_text(a.reply), tuple_text(b.reply)
	if ta ~= tb_ then return "reply tuple " .. ta .. " / " .. tb_ end
	for _, f in ipairs({ "state", "mark", "helper", "zone", "tcp_flags_orig", "tcp_flags_reply",
		"tcp_wscale_orig", "tcp_wscale_reply", "orig_vtag", "reply_vtag" }) do
		if a[f] ~= b[f] then
			return ("%s: %s / %s"):format(f, tostring(a[f]), tostring(b[f]))
		end
	end
	if a.orig.zone ~= b.orig.zone or a.reply.zone ~= b.reply.zone then return "direction zones" end
	if status_text(a) ~= status_text(b) then return "status " .. status_text(a) .. " / " .. status_text(b) end
	if set_text(a.labels) ~= set_text(b.labels) then return "labels" end
	if ct.nat.tostring(a) ~= ct.nat.tostring(b) then return "nat " .. ct.nat.tostring(b) end
	-- the backup adds the refresh interval and 10 s to each timeout
	if hold and not (b.timeout >= a.timeout and b.timeout <= a.timeout + hold + 2) then
		return ("timeout %d / %d"):format(a.timeout, b.timeout)
	end
	return nil
end

-- Polls (at most secs) until b holds every flow of a as a has it (and,
-- with exact, nothing else); returns true, or false and the last difference.
local function mirrored(ha, hb, secs, hold, exact)
	local why
	local ok = J.poll(secs, function()
		local fa, fb = flows(ha), flows(hb)
		for k, e in pairs(fa) do
			local d = differs(e, fb[k], hold)
			if d then
				why = k .. ": " .. d
				return false
			end
		end
		if exact then
			for k in pairs(fb) do
				if not fa[k] then
					why = k .. ": on b only"
					return false
				end
			end
		end
		return true
	end)
	return ok, why
end

describe("replicate.lua", function()
	it("--help prints the usage; bad options exit 2 with the usage", function()
		local out = J.check_usage("replicate.lua", { "--nosuch", "primary", "backup", "sideways",
			"primary --peer nocolon", "primary --peer 192.0.2.1:70000", "backup --listen 127.0.0.1:1 --link-timeout 0",
			"primary --peer 192.0.2.1:1 --refresh x", "primary --peer 192.0.2.1:1 --ignore 1.2.3" })
		assert.matches("primary", out, 1, true)
		assert.matches("backup", out, 1, true)
	end)

	it("a namespace that does not exist: a clear error and exit status 1", function()
		local ok, _, err, code = J.run(nil, nil, "replicate.lua", "backup --listen 127.0.0.1:0 --netns lct-no-such-ns")
		assert.is_false(ok)
		assert.equals(1, code)
		assert.matches("backup: lct%-no%-such%-ns: ", err)
	end)

	describe("copies what a takeover needs", function()
		local topo, ha, hb, done

		setup(function()
			topo, ha, hb, done = routers()
		end)
		teardown(function()
			if done then done() end
		end)

		-- Flows of every kind the backup must rebuild, made on a through netlink.
		local EST = { "SEEN_REPLY", "ASSURED" }
		local SPECS = {
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "tcp", sport = 1001, dport = 80, timeout = 300,
				state = "ESTABLISHED", status = EST, snat = "203.0.113.100:41001", mark = 0x42, labels = { 1, 3 },
				tcp_flags_orig = 0x23, tcp_flags_reply = 0x23, tcp_wscale_orig = 7, tcp_wscale_reply = 9 },
			{ src = "192.0.2.2", dst = "203.0.113.10", proto = "udp", sport = 1002, dport = 8003, timeout = 100,
				dnat = "198.51.100.2:9003" },
			{ src = "192.0.2.2", dst = "203.0.113.10", proto = "tcp", sport = 1003, dport = 8003, timeout = 200,
				state = "ESTABLISHED", status = EST, dnat = "198.51.100.2:9003", snat = "203.0.113.100:41003",
				tcp_flags_orig = 0x01, tcp_flags_reply = 0x01, tcp_wscale_orig = 2, tcp_wscale_reply = 14 },
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "tcp", sport = 1004, dport = 443, timeout = 100,
				state = "SYN_SENT", zone = 7 },
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "tcp", sport = 1005, dport = 21, timeout = 300,
				state = "ESTABLISHED", status = EST, helper = "ftp" },
			{ src = "2001:db8:1::2", dst = "2001:db8:2::2", proto = "tcp", sport = 1006, dport = 80, timeout = 300,
				state = "ESTABLISHED", status = EST, snat = "[2001:db8:3::100]:41006" },
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 1007,
				timeout = 30, snat = "203.0.113.100" },
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "sctp", sport = 1008, dport = 5000, timeout = 300,
				state = "ESTABLISHED", orig_vtag = 0x1008, reply_vtag = 0x8001 },
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "udp", sport = 1009, dport = 53, timeout = 100,
				status = { "SEEN_REPLY", "ASSURED", "FIXED_TIMEOUT" }, orig_zone = 3 },
			-- a reply tuple rewritten by a program, without NAT
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "udp", sport = 1010, dport = 5353, timeout = 100,
				reply_src = "198.51.100.99" },
		}

		for _, lua in ipairs(J.luas()) do
			it(lua.bin .. ": flows, their changes and their ends reach b as they are on a", function()
				assert(ha:flush())
				assert(hb:flush())
				local pair = start_pair(topo, lua)
				finally(pair.stop)
				local ok, _, fails = ha:batch("create", SPECS)
				assert.equals(#SPECS, ok, fails[1] and fails[1].message)
				local same, why = mirrored(ha, hb, 10, 70, true)
				assert.is_true(same, (why or "") .. "\n" .. pair.log())
				-- the translations b set up are its own NAT, with the status bits
				local fb = flows(hb)
				local e = fb[H.key(ct.entry(SPECS[1]))]
				assert.is_true(e.status.SRC_NAT)
				assert.equals("snat", ct.nat.classify(e))
				assert.equals("both", ct.nat.classify(fb[H.key(ct.entry(SPECS[3]))]))
				assert.equals("none", ct.nat.classify(fb[H.key(ct.entry(SPECS[10]))]))
				assert.equals(3, fb[H.key(ct.entry(SPECS[9]))].orig.zone)
				-- changes: a mark, labels, a state, a deletion
				local t1 = H.tuple(SPECS[1])
				assert(ha:update(t1, { mark = 0x43, labels = { 2 } }))
				assert(ha:update(H.tuple(SPECS[5]), { state = "FIN_WAIT", timeout = 120 }))
				assert(ha:delete(H.tuple(SPECS[2])))
				same, why = mirrored(ha, hb, 10, 70, true)
				assert.is_true(same, (why or "") .. "\n" .. pair.log())
				assert.equals(0x43, hb:get(t1).mark)
				assert.is_nil(hb:get(H.tuple(SPECS[2])))
				-- the conntrack CLI on b sees the translation too
				assert.is_truthy(H.find(H.cli_ok(topo.ns.b, "-L -p tcp --sport 1001"), "dport=41001"))
				local ea, eb = pair.stop()
				assert.is_nil(ea:find("failure", 1, true), ea)
				assert.matches("0 failures so far", eb, 1, true)
			end)
		end
	end)

	-- The failover.  Streams of numbered lines from the client, each echoed
	-- by a server that answers its first peer only: TCP to the server (SNAT),
	-- TCP to the port forward (DNAT and SNAT), UDP to the server (SNAT).
	local function failover(lua, replicate)
		local topo, ha, hb, done = routers()
		local pair
		-- (busted keeps one finally per test: the last)
		finally(function()
			if pair then pair.stop() end
			done()
		end)
		for _, l in ipairs({ { "tcp", 8000 }, { "udp", 8000 }, { "tcp", hosts.port.dnat_to } }) do
			topo:listen("server", l[1], l[2], nil, { one_peer = true })
		end
		pair = replicate and start_pair(topo, lua)
		local log = function() return pair and pair.log() or "" end
		local streams = {
			tcp = topo:stream("client", "tcp", T.server, 8000),
			udp = topo:stream("client", "udp", T.server, 8000),
			fwd = topo:stream("client", "tcp", T.public, hosts.port.dnat),
		}
		-- on a, the three flows, translated, marked by a
		local before = flows(ha)
		local n = 0
		for _, e in pairs(before) do
			n = n + 1
			assert.equals(MARK.a, e.mark)
			assert.is_true(e.status.SRC_NAT)
		end
		assert.equals(3, n)
		if replicate then
			-- b holds them as a does (TCP: ESTABLISHED, with the window scales)
			local same, why = mirrored(ha, hb, 10)
			assert.is_true(same, (why or "") .. "\n" .. log())
			for _, e in pairs(flows(hb)) do
				if e.proto == "tcp" then
					assert.equals("ESTABLISHED", e.state)
					assert.is_truthy(e.tcp_wscale_orig and e.tcp_wscale_reply)
				end
			end
		end
		local last = {}
		for name, s in pairs(streams) do last[name] = s:last() end
		before = flows(ha)
		assert(topo:failover("b"))
		local t0 = H.now()
		-- each stream: five more numbers back, in at most 8 s
		local resumed = J.poll(8, function()
			for name, s in pairs(streams) do
				if s:last() < last[name] + 5 then return false end
			end
			return true
		end)
		return {
			topo = topo, streams = streams, last = last, resumed = resumed, after = H.now() - t0,
			before = before, hb = hb, log = log,
		}
	end

	for _, lua in ipairs(J.luas()) do
		it(lua.bin .. ": a fails; the same TCP connection, the port forward and the UDP flow go on through b", function()
			local r = failover(lua, true)
			local got = {}
			for name, s in pairs(r.streams) do got[#got + 1] = name .. " " .. r.last[name] .. " -> " .. s:last() end
			assert.is_truthy(r.resumed, "not resumed within 8 s: " .. table.concat(got, ", ") .. "\n" .. r.log())
			-- the same connections: every number back in order, none missing
			-- (TCP), from the one socket each began with (the servers answer
			-- their first peer only)
			for _, name in ipairs({ "tcp", "fwd" }) do
				local nums = r.streams[name]:echoed()
				for i, v in ipairs(nums) do
					assert.equals(i - 1, v, name .. ": the stream broke at " .. i)
				end
				assert.is_true(r.streams[name]:alive(), name)
			end
			-- b carries them with a's entries: a's mark, a's translation
			local fb = flows(r.hb)
			for k, e in pairs(r.before) do
				local b = fb[k]
				assert.is_truthy(b, k)
				assert.equals(MARK.a, b.mark)
				assert.equals(tuple_text(e.reply), tuple_text(b.reply))
			end
			print(("\n    %s: data flowed again %.2f s after the failover"):format(lua.bin, r.after))
		end)
	end

	it("without replication the TCP connections stop at the failover (the test can fail)", function()
		local r = failover(nil, false)
		assert.is_falsy(r.resumed)
		-- (a line on its way back when a went down may still arrive)
		for _, name in ipairs({ "tcp", "fwd" }) do
			assert.is_true(r.streams[name]:last() < r.last[name] + 5, name)
		end
		-- b dropped their packets as invalid, and has no entry for them
		local ok, out = r.topo:exec("b", "nft list chain inet lct_fw lct_forward")
		assert(ok, out)
		local dropped = tonumber(out:match("ct state invalid counter packets (%d+)"))
		assert.is_true(dropped > 0, out)
		for _, e in pairs(flows(r.hb)) do
			assert.is_false(e.proto == "tcp", tostring(e))
			-- the UDP flow b made itself: b's mark
			assert.equals(MARK.b, e.mark)
		end
	end)

	describe("resynchronises", function()
		local topo, ha, hb, done

		before_each(function()
			topo, ha, hb, done = routers()
		end)
		after_each(function()
			done()
		end)

		local function udp(i)
			return { src = "192.0.2.2", dst = "198.51.100.2", proto = "udp", sport = i, dport = 53, timeout = 300 }
		end

		it("after a reconnection: the backup deletes what a no longer has, keeps its own flows", function()
			local pair = start_pair(topo, nil)
			finally(pair.stop)
			for i = 1, 20 do assert(ha:create(udp(i))) end
			assert.is_true((mirrored(ha, hb, 10, 70, true)))
			-- the backup stops; meanwhile a loses 10 flows and gains 5, b has
			-- a flow a never had, and a connection of its own
			local _, err = pair.b.stop()
			assert.matches("copy 1 applied", err, 1, true)
			for i = 1, 10 do assert(ha:delete(H.tuple(udp(i)))) end
			for i = 21, 25 do assert(ha:create(udp(i))) end
			assert(hb:create(udp(99)))
			local mine = { src = T.b, dst = T.client, proto = "tcp", sport = 22, dport = 5022, timeout = 300,
				state = "ESTABLISHED", status = { "SEEN_REPLY", "ASSURED" } }
			assert(hb:create(mine))
			pair.b = J.start(topo.ns.b, nil, "replicate.lua", "backup --listen " .. PEER, " applied: ")
			local same, why = mirrored(ha, hb, 10, 70, false)
			assert.is_true(same, why)
			local fb = flows(hb)
			assert.is_nil(fb[H.key(ct.entry(udp(99)))])
			assert.is_nil(fb[H.key(ct.entry(udp(1)))])
			assert.is_truthy(fb[H.key(ct.entry(mine))], "b's own connection was deleted")
			assert.matches("link lost", pair.a.err(), 1, true)
			assert.matches("copy 2 sent (connected)", pair.a.err(), 1, true)
		end)

		it("after the link drops and comes back", function()
			local pair = start_pair(topo, nil, "--link-timeout 1")
			finally(pair.stop)
			for i = 1, 10 do assert(ha:create(udp(i))) end
			assert.is_true((mirrored(ha, hb, 10, 70, true)))
			assert(topo:exec("a", "ip link set sync down"))
			for i = 1, 5 do assert(ha:delete(H.tuple(udp(i)))) end
			assert.is_truthy(J.poll(10, function() return pair.a.err():find("link lost", 1, true) end),
				pair.log())
			assert(topo:exec("a", "ip link set sync up"))
			local same, why = mirrored(ha, hb, 15, 70, true)
			assert.is_true(same, (why or "") .. "\n" .. pair.log())
			assert.matches("copy 2 sent (connected)", pair.a.err(), 1, true)
		end)

		it("after an event overflow: a full copy", function()
			-- a 4 KiB event buffer cannot hold a burst of 3000 creations
			local pair = start_pair(topo, nil, "--rcvbuf 4096")
			finally(pair.stop)
			local specs = {}
			for i = 1, 3000 do specs[i] = udp(1000 + i) end
			assert.equals(3000, (ha:batch("create", specs)))
			local same, why = mirrored(ha, hb, 20, 70, true)
			assert.is_true(same, (why or "") .. "\n" .. pair.log())
			assert.matches("event overflow %(%d+ lost%): a full copy", pair.a.err())
			assert.matches("copy 2 sent (overflow)", pair.a.err(), 1, true)
		end)
	end)
end)
