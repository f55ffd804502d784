-- The test-host harness (tools/hosts.lua) checked against reality with the
-- conntrack CLI, run inside the test namespaces only.
-- Run: LUA_PATH="$PWD/tools/?.lua;;" tools/netns-run busted --lua=lua5.4 spec/00-hosts_spec.lua

local hosts = require "hosts"
local H = require "helpers"
local P = hosts.port

-- The `conntrack -L` line (of text) holding every plain-text fragment given.
local function find_line(text, ...)
	return H.find(H.lines(text), ...)
end

local function ct_list(topo, args, role)
	local ok, out = topo:conntrack("-L " .. (args or ""), role)
	assert(ok, out)
	return out
end

local function ns_exists(name)
	local f = io.open("/run/netns/" .. name)
	if f then f:close() end
	return f ~= nil
end

-- A process that exists and is not a zombie.
local function running(pid)
	local f = io.open("/proc/" .. pid .. "/stat")
	if not f then return false end
	local st = f:read("*a")
	f:close()
	return st:match("^%d+ %b() (%a)") ~= "Z"
end

local function listed(name)
	local _, out = hosts.run("ip netns list")
	for line in out:gmatch("[^\n]+") do
		if line:match("^(%S+)") == name then return true end
	end
	return false
end

describe("hosts: routed topology", function()
	local topo, A

	setup(function()
		topo = hosts.new{ nat = { snat = { ports = "40000-40009" }, masquerade = true, dnat = true, redirect = true } }
		A = topo.addr
		topo:serve()
	end)

	teardown(function()
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	it("makes three namespaces bound under /run/netns with this process's prefix", function()
		for _, role in ipairs({ "client", "router", "server" }) do
			local name = topo.ns[role]
			assert.matches("^lct%-" .. hosts.pid .. "%-%d+%-" .. role .. "$", name)
			assert.is_true(ns_exists(name))
			assert.is_true(listed(name))
			-- bound in this process's mount namespace, so ct.open{netns = name} can setns() it
			local ok, fstype = hosts.run("stat -f -c %T /run/netns/" .. name)
			assert.is_true(ok)
			assert.equals("nsfs\n", fstype)
		end
	end)

	it("configures the router: forwarding, accounting and timestamps on", function()
		local ok, out = topo:exec("router", "sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding "
			.. "net.netfilter.nf_conntrack_acct net.netfilter.nf_conntrack_timestamp")
		assert.is_true(ok, out)
		assert.equals("1\n1\n1\n1\n", out)
		local ok2, addrs = topo:exec("router", "ip -o addr show dev s0")
		assert.is_true(ok2, addrs)
		assert.matches("198%.51%.100%.100/24", addrs)
		assert.not_matches("tentative", addrs)
	end)

	it("forwards plain TCP and UDP, v4 and v6", function()
		local ok, reply = topo:tcp_request("client", A.server, P.plain, "hello")
		assert.is_true(ok)
		assert.equals("hello", reply)
		ok, reply = topo:tcp_request("client", A.server6, P.plain, "hello6")
		assert.is_true(ok)
		assert.equals("hello6", reply)
		ok, reply = topo:udp_send("client", A.server6, P.plain, "u6", 2)
		assert.is_true(ok, reply)
		assert.equals("u6u6", reply)
	end)

	it("TCP through DNAT is ESTABLISHED with reply src = server, and counted", function()
		local c = topo:tcp_connect("client", A.public, P.dnat, { hold = 5 })
		finally(function() c:close() end)
		assert.is_true(c:alive())
		local out = ct_list(topo, "-p tcp --dport " .. P.dnat)
		local line = find_line(out, "sport=" .. c.sport .. " ")
		assert.is_truthy(line, out)
		assert.matches("ESTABLISHED", line)
		assert.matches("%[ASSURED%]", line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d dport=%d packets=%%d+ bytes=%%d+ src=%s dst=%s sport=%d dport=%d")
			:format(A.client, A.public, c.sport, P.dnat, A.server, A.client, P.dnat_to, c.sport)), line)
		-- timestamps on: the CLI prints the age of the flow
		assert.matches("delta%-time=%d+", line)

		c:close()
		assert.is_false(c:alive())
		out = ct_list(topo, "-p tcp --dport " .. P.dnat)
		line = find_line(out, "sport=" .. c.sport .. " ")
		assert.is_truthy(line, out)
		assert.not_matches("ESTABLISHED", line)
	end)

	it("UDP through SNAT shows reply dst = SNAT address from the port range", function()
		local ok, reply, sport = topo:udp_send("client", A.server, P.snat, "ping", 3)
		assert.is_true(ok, reply)
		local out = ct_list(topo, "-p udp --orig-port-src " .. sport)
		local line = find_line(out, "dport=" .. P.snat .. " ")
		assert.is_truthy(line, out)
		local rdst, rdport = line:match("src=" .. A.server:gsub("%.", "%%.") .. " dst=(%S+) sport=%d+ dport=(%d+)")
		assert.equals(A.snat, rdst)
		rdport = tonumber(rdport)
		assert.is_true(rdport >= 40000 and rdport <= 40009, line)
		-- accounting: three datagrams each way
		local po, pr = line:match("packets=(%d+) bytes=%d+ .*packets=(%d+) bytes=%d+")
		assert.equals("3", po, line)
		assert.equals("3", pr, line)
	end)

	it("IPv6 SNAT, masquerade and redirect translate as documented", function()
		local ok, reply, sport = topo:udp_send("client", A.server6, P.snat, "v6")
		assert.is_true(ok, reply)
		local line = find_line(ct_list(topo, "-f ipv6 -p udp --orig-port-src " .. sport), "dport=" .. P.snat .. " ")
		assert.is_truthy(line)
		assert.is_truthy(line:find("dst=" .. A.snat6 .. " ", 1, true), line)

		ok, reply, sport = topo:tcp_request("client", A.server, P.masquerade, "masq")
		assert.is_true(ok)
		assert.equals("masq", reply)
		line = find_line(ct_list(topo, "-p tcp --orig-port-src " .. sport), "dport=" .. P.masquerade .. " ")
		assert.is_truthy(line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d"):format(A.server, A.masquerade, P.masquerade), 1, true), line)

		ok, reply, sport = topo:tcp_request("client", A.server, P.redirect, "redir")
		assert.is_true(ok)
		assert.equals("redir", reply)
		line = find_line(ct_list(topo, "-p tcp --orig-port-src " .. sport), "dport=" .. P.redirect .. " ")
		assert.is_truthy(line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d"):format(A.redirect, A.client, P.redirect_to), 1, true), line)

		ok, reply, sport = topo:tcp_request("client", A.public6, P.dnat, "dnat6")
		assert.is_true(ok)
		assert.equals("dnat6", reply)
		line = find_line(ct_list(topo, "-f ipv6 -p tcp --orig-port-src " .. sport), "dport=" .. P.dnat .. " ")
		assert.is_truthy(line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d"):format(A.server6, A.client6, P.dnat_to), 1, true), line)
	end)

	it("exec reports failure and nft rejects bad rulesets", function()
		local ok, _, code = topo:exec("client", "exit 3")
		assert.is_false(ok)
		assert.equals(3, code)
		ok = topo:nft("router", "table inet lct_bad { this is not nft }")
		assert.is_false(ok)
		assert.has_error(function() topo:exec("nosuchrole", "true") end)
	end)
end)

describe("hosts: pair topology", function()
	local topo, A

	setup(function()
		topo = hosts.pair{ nat = { snat = true, dnat = true, redirect = true } }
		A = topo.addr
		topo:serve("tcp")
		topo:listen("server", "udp", P.snat)
	end)

	teardown(function()
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	it("has only client and server; NAT lives in the client", function()
		assert.is_nil(topo.ns.router)
		assert.equals("client", topo.nat_role)
		assert.is_true(ns_exists(topo.ns.client) and ns_exists(topo.ns.server))
	end)

	it("SNATs locally generated traffic to the second client address", function()
		local ok, reply, sport = topo:udp_send("client", A.server, P.snat, "s", 2)
		assert.is_true(ok, reply)
		local line = find_line(ct_list(topo, "-p udp --orig-port-src " .. sport), "dport=" .. P.snat .. " ")
		assert.is_truthy(line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d dport=%d packets=2")
			:format(A.client, A.server, sport, P.snat), 1, true), line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d"):format(A.server, A.snat, P.snat), 1, true), line)
	end)

	it("DNATs locally generated traffic in the output chain", function()
		local c = topo:tcp_connect("client", A.public, P.dnat, { hold = 3 })
		finally(function() c:close() end)
		local line = find_line(ct_list(topo, "-p tcp --orig-port-src " .. c.sport), "ESTABLISHED")
		assert.is_truthy(line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d dport=%d")
			:format(A.client, A.public, c.sport, P.dnat), 1, true), line)
		assert.is_truthy(line:find(("src=%s dst=%s sport=%d dport=%d")
			:format(A.server, A.client, P.dnat_to, c.sport), 1, true), line)
		-- the server's own table sees only the translated flow
		local sline = find_line(ct_list(topo, "-p tcp", "server"), "dport=" .. c.sport .. " ")
		assert.is_truthy(sline)
		assert.is_nil(sline:find(A.public, 1, true))
	end)

	it("redirects locally generated traffic to the client's own port", function()
		local ok, reply, sport = topo:tcp_request("client", A.server, P.redirect, "loop")
		assert.is_true(ok)
		assert.equals("loop", reply)
		local line = find_line(ct_list(topo, "-p tcp --orig-port-src " .. sport), "dport=" .. P.redirect .. " ")
		assert.is_truthy(line)
		assert.is_truthy(line:find(("src=127.0.0.1 dst=%s sport=%d"):format(A.client, P.redirect_to), 1, true), line)
	end)

	it("refuses masquerade (a no-op on a pair)", function()
		assert.has_error(function() hosts.pair{ nat = { masquerade = true } } end)
		-- and the failed build left nothing behind
		local names = hosts.list()
		for _, n in ipairs(names) do
			assert.is_truthy(n == topo.ns.client or n == topo.ns.server, n)
		end
	end)
end)

describe("hosts: destroy", function()
	teardown(function()
		hosts.cleanup_all()
	end)

	it("removes namespaces and background processes, and is idempotent", function()
		local topo = hosts.new{ nat = true }
		local names = {}
		for _, r in ipairs(topo.roles) do names[#names + 1] = topo.ns[r] end
		local l = topo:listen("server", "tcp", P.plain)
		local c = topo:tcp_connect("client", topo.addr.server, P.plain, { hold = 10 })
		local pids = { l.pid, c.pid }
		assert.is_true(topo:destroy())
		assert.is_true(topo:destroy())
		assert.is_true(topo.destroy())
		for _, n in ipairs(names) do
			assert.is_false(ns_exists(n))
			assert.is_false(listed(n))
		end
		-- SIGKILLed: gone, or a zombie until whoever inherited it reaps it
		for _, pid in ipairs(pids) do
			assert.is_false(running(pid), pid)
		end
		assert.has_error(function() topo:listen("server", "tcp", 1) end)
	end)

	it("with() destroys on error and re-raises", function()
		local seen
		assert.has_error(function()
			hosts.with({ pair = true }, function(t)
				seen = t.ns.client
				error("boom", 0)
			end)
		end, "boom")
		assert.is_false(ns_exists(seen))
	end)

	it("cleanup_all() removes every namespace this process made", function()
		hosts.new{}
		hosts.pair{}
		assert.equals(5, #hosts.list())
		assert.is_true(hosts.cleanup_all())
		assert.equals(0, #hosts.list())
	end)
end)

describe("hosts: twin topology", function()
	teardown(function()
		hosts.cleanup_all()
	end)

	it("two routers: traffic through a, through b after failover('b'), NAT alike on both", function()
		local topo = hosts.twin{ nat = { snat = { ports = "40000-40009" }, dnat = true } }
		finally(topo.destroy)
		local T = topo.addr
		for _, r in ipairs({ "client", "a", "b", "server" }) do
			assert.matches("^lct%-" .. hosts.pid .. "%-%d+%-" .. r .. "$", topo.ns[r])
		end
		assert.equals("a", topo.nat_role)
		topo:serve("tcp")
		local ok, out, sport = topo:tcp_request("client", T.server, P.plain, "via a")
		assert.is_true(ok, out)
		assert.equals("via a", out)
		-- SNATed by a to the shared address, from the port range; b saw nothing
		assert.is_truthy(find_line(ct_list(topo, "-p tcp --dport 8000", "a"), "sport=" .. sport,
			"dst=" .. T.snat, "dport=4000"))
		assert.is_nil(find_line(ct_list(topo, "-p tcp --dport 8000", "b"), "sport=" .. sport))
		-- the routers' own link
		assert.is_true((topo:exec("a", "ping -c1 -W2 " .. T.b_sync)))
		assert.is_true(topo:failover("b"))
		-- a is cut off: its links are down
		local _, links = topo:exec("a", "ip -br link show c0; ip -br link show s0")
		assert.matches("c0%S*%s+DOWN", links)
		assert.matches("s0%S*%s+DOWN", links)
		ok, out, sport = topo:tcp_request("client", T.public, P.dnat, "via b")
		assert.is_true(ok, out)
		assert.equals("via b", out)
		assert.is_truthy(find_line(ct_list(topo, "-p tcp --dport 8003", "b"), "sport=" .. sport,
			"src=" .. T.server, "sport=" .. P.dnat_to, "dst=" .. T.snat))
		-- and back
		assert.is_true(topo:failover("a"))
		ok, out = topo:tcp_request("client", T.server6, P.plain, "via a again")
		assert.is_true(ok, out)
		assert.equals("via a again", out)
		assert.has_error(function() topo:failover("c") end)
		assert.has_error(function() hosts.twin{ nat = { masquerade = true } } end)
	end)

	it("stream(): numbered lines echoed on one socket; a one-peer listener serves its first peer only", function()
		local topo = hosts.twin{}
		finally(topo.destroy)
		topo:listen("server", "udp", P.plain, nil, { one_peer = true })
		local s = topo:stream("client", "udp", topo.addr.server, P.plain, { interval = 0.05 })
		local n = s:last()
		assert.is_true(n >= 0)
		local ok = false
		for _ = 1, 100 do
			if s:last() >= n + 3 then ok = true break end
			hosts.sleep(0.05)
		end
		assert.is_true(ok)
		for i, v in ipairs(s:echoed()) do assert.equals(i - 1, v) end
		-- another peer gets nothing back
		local ok2, replies = topo:udp_send("client", topo.addr.server, P.plain, "other")
		assert.is_false(ok2)
		assert.equals("", replies)
		assert.is_true(s:alive())
		s:close()
		assert.is_false(s:alive())
		assert.has_error(function() hosts.new{}:failover("b") end)
	end)
end)
