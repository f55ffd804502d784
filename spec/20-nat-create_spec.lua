-- NAT on create (issue 10): the spec keys snat and dnat in every form they
-- take, against the conntrack CLI's --src-nat/--dst-nat both ways; a spec
-- with only a rewritten reply tuple (stored, not translated); the NAT kind
-- from the kernel's status bits where the CLI judges otherwise (un-NATed
-- ICMP flows carrying the *_NAT_DONE bits, IPv6 addresses compared on 32
-- bits); malformed NAT addresses; ct.load and `conntrack -R` restoring the
-- save text of real NATed traffic.

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local F = ct.filter
local P = hosts.port

H.assert_private()

-- The line of lines (CLI output) whose original tuple begins with head.
local function line_of(lines, head)
	return H.find(lines, head .. " ")
end

local function head(src, dst, sport, dport)
	return ("src=%s dst=%s sport=%d dport=%d"):format(src, dst, sport, dport)
end

local norm = H.comparable

local NAT_BITS = { "SRC_NAT", "DST_NAT", "SRC_NAT_DONE", "DST_NAT_DONE" }

describe("NAT on create: snat and dnat", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)
	before_each(function() assert(h:flush()) end)

	-- form, family, what the reply tuple becomes: for snat the reply's
	-- destination, for dnat the reply's source (nil: unchanged)
	local SNAT = {
		{ "198.51.100.100", "198.51.100.100", nil },
		{ "198.51.100.100:4000", "198.51.100.100", 4000 },
		{ ":4001", nil, 4001 },
		{ { addr = "198.51.100.101", port = 4002 }, "198.51.100.101", 4002 },
		{ { addr = "198.51.100.102" }, "198.51.100.102", nil },
		{ { port = 4003 }, nil, 4003 },
		{ "[2001:db8:2::100]:4004", "2001:db8:2::100", 4004 },
		{ "2001:db8:2::101", "2001:db8:2::101", nil },
	}

	local function tuple_for(i, v6)
		if v6 then
			return { src = "2001:db8:1::2", dst = "2001:db8:2::2", proto = "tcp", sport = 1000 + i, dport = 80 }
		end
		return { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1000 + i, dport = 80 }
	end

	local function spec_of(t, extra)
		local s = { timeout = 100, state = "ESTABLISHED" }
		for k, v in pairs(t) do s[k] = v end
		for k, v in pairs(extra) do s[k] = v end
		return s
	end

	for _, kind in ipairs{ "snat", "dnat" } do
		it(kind .. " in each accepted form: NAT status, the reply tuple the kernel computed, the CLI's "
			.. (kind == "snat" and "--src-nat" or "--dst-nat") .. " and -o save see it", function()
			local made = {}
			for i, c in ipairs(SNAT) do
				local form, addr, port = c[1], c[2], c[3]
				local v6 = (addr and addr:find(":", 1, true)) ~= nil
				local t = tuple_for(i, v6)
				assert.is_true(h:create(spec_of(t, { [kind] = form })))
				made[i] = { t = t, addr = addr, port = port }
			end
			local opt = kind == "snat" and "--src-nat" or "--dst-nat"
			local other = kind == "snat" and "--dst-nat" or "--src-nat"
			local seen, unseen, saved = H.cli_ok(ns, "-L " .. opt), H.cli_ok(ns, "-L " .. other),
				H.cli_ok(ns, "-L -o save")
			for i, m in ipairs(made) do
				local t = m.t
				local e = assert(h:get(t))
				local what = kind .. " form " .. i
				-- SNAT moves the reply's destination, DNAT its source;
				-- the other end of the reply is the inverse of the original
				local k = kind == "snat" and { "dst", "dport", "src", "sport", "SRC_NAT", "DST_NAT" }
					or { "src", "sport", "dst", "dport", "DST_NAT", "SRC_NAT" }
				assert.is_true(e.status[k[5]], what)
				assert.is_nil(e.status[k[6]], what)
				assert.equals(m.addr or t[k[3]], e.reply[k[1]], what)
				assert.equals(m.port or t[k[4]], e.reply[k[2]], what)
				assert.equals(t[k[1]], e.reply[k[3]], what)
				assert.equals(t[k[2]], e.reply[k[4]], what)
				assert.equals(kind, ct.nat.classify(e), what)
				assert.is_true(F.nat(kind):match(e), what)
				local hd = head(t.src, t.dst, t.sport, t.dport)
				assert.equals(norm(tostring(e)), norm(assert(line_of(seen, hd), what .. ": not in -L " .. opt)))
				assert.is_nil(line_of(unseen, hd), what .. ": in -L " .. other)
				-- the save line names the translation when an address changed
				-- (-n for SNAT, -g for DNAT), as libnetfilter_conntrack decides
				local sl = assert(H.find(saved, "--sport " .. t.sport .. " "), what)
				if m.addr then
					assert.truthy(sl:find((kind == "snat" and "-n " or "-g ") .. m.addr, 1, true), sl)
				end
			end
		end)
	end

	it("snat and dnat together: both bits, kind 'both', the CLI's -n and -g both list it", function()
		local t = tuple_for(50)
		assert.is_true(h:create(spec_of(t, { snat = "198.51.100.100", dnat = "198.51.100.3:81" })))
		local e = assert(h:get(t))
		assert.is_true(e.status.SRC_NAT)
		assert.is_true(e.status.DST_NAT)
		assert.equals("both", ct.nat.classify(e))
		assert.same({ src = "198.51.100.3", dst = "198.51.100.100", sport = 81, dport = 1050 },
			{ src = e.reply.src, dst = e.reply.dst, sport = e.reply.sport, dport = e.reply.dport })
		local hd = head(t.src, t.dst, t.sport, t.dport)
		assert.truthy(line_of(H.cli_ok(ns, "-L -n"), hd))
		assert.truthy(line_of(H.cli_ok(ns, "-L -g"), hd))
		assert.truthy(line_of(H.cli_ok(ns, "-L -g 198.51.100.3:81"), hd))
		assert.is_true(F.nat("dnat", "198.51.100.3:81"):match(e))
		assert.is_false(F.nat("dnat", "198.51.100.3:80"):match(e))
	end)

	it("conntrack -I --src-nat/--dst-nat: the module reads the NAT status, the reply tuple and the translation", function()
		H.cli_ok(ns, "-I -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 3000 --dport 80 -t 100 --state ESTABLISHED"
			.. " --src-nat 198.51.100.100:5000")
		H.cli_ok(ns, "-I -s 192.0.2.1 -d 203.0.113.10 -p udp --sport 3000 --dport 53 -t 100 --dst-nat 198.51.100.2:5353")
		H.cli_ok(ns, "-I -s 2001:db8:1::2 -d 2001:db8:2::2 -p tcp --sport 3000 --dport 80 -t 100 --state ESTABLISHED"
			.. " --src-nat [2001:db8:2::100]:5000")
		H.cli_ok(ns, "-I -s 2001:db8:1::2 -d 2001:db8:3::10 -p udp --sport 3001 --dport 53 -t 100"
			.. " --dst-nat 2001:db8:2::2")
		local e = assert(h:get{ src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 3000, dport = 80 })
		local d
		assert.is_true(e.status.SRC_NAT)
		d = ct.nat.describe(e)
		assert.equals("snat", d.kind)
		assert.same({ addr = "198.51.100.100", port = 5000 }, d.snat)
		assert.is_true(F.nat("snat", "198.51.100.100:5000"):match(e))
		e = assert(h:get{ src = "192.0.2.1", dst = "203.0.113.10", proto = "udp", sport = 3000, dport = 53 })
		assert.is_true(e.status.DST_NAT)
		d = ct.nat.describe(e)
		assert.equals("dnat", d.kind)
		assert.same({ addr = "198.51.100.2", port = 5353 }, d.dnat)
		e = assert(h:get{ src = "2001:db8:1::2", dst = "2001:db8:2::2", proto = "tcp", sport = 3000, dport = 80 })
		assert.equals("2001:db8:2::100", e.reply.dst)
		assert.equals(5000, e.reply.dport)
		d = ct.nat.describe(e)
		assert.equals("snat", d.kind)
		assert.same({ addr = "2001:db8:2::100", port = 5000 }, d.snat)
		e = assert(h:get{ src = "2001:db8:1::2", dst = "2001:db8:3::10", proto = "udp", sport = 3001, dport = 53 })
		assert.is_true(e.status.DST_NAT)
		assert.equals("2001:db8:2::2", e.reply.src)
		assert.equals(53, e.reply.sport)
		-- the module's lines equal the CLI's, entry by entry
		local lines = H.cli_ok(ns, "-L")
		assert.equals(4, #lines)
		for x in h:dump() do
			local o = x.orig
			local want = assert(line_of(lines, head(o.src, o.dst, o.sport, o.dport)))
			assert.equals(norm(want), norm(tostring(x)))
		end
	end)

	it("a rewritten reply tuple without snat/dnat is stored, with no NAT status: 'none' for ct.nat and F.nat,"
		.. " and the CLI's -n, -g and -j do not list it either", function()
		local t = tuple_for(60)
		assert.is_true(h:create(spec_of(t, { reply_dst = "198.51.100.100", reply_dport = 6000 })))
		H.cli_ok(ns, "-I -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 1061 --dport 80 -t 100 --state ESTABLISHED"
			.. " -r 198.51.100.2 -q 198.51.100.100 --reply-port-src 80 --reply-port-dst 6001")
		for i, port in ipairs{ 6000, 6001 } do
			local e = assert(h:get{ src = t.src, dst = t.dst, proto = "tcp", sport = 1059 + i, dport = 80 })
			assert.equals("198.51.100.100", e.reply.dst)
			assert.equals(port, e.reply.dport)
			for _, b in ipairs(NAT_BITS) do assert.is_nil(e.status[b], b) end
			assert.equals("none", ct.nat.classify(e))
			assert.equals("none", ct.nat.describe(e).kind)
			assert.is_false(F.nat("any"):match(e))
			assert.is_true(F.nat("none"):match(e))
		end
		assert.equals(2, #h:list(F.nat "none"))
		assert.equals(0, #h:list(F.nat "any"))
		for _, opt in ipairs{ "-n", "-g", "-j" } do
			assert.same({}, H.cli_ok(ns, "-L " .. opt), opt)
		end
	end)

	it("malformed NAT addresses and ports raise, where the CLI refuses them too", function()
		for _, bad in ipairs{ "192.0.2.1:65536", "[2001:db8::1]:70000", "192.0.2.1:", "300.1.1.1", "[2001:db8::1" } do
			local ok, msg = pcall(F.nat, "snat", bad)
			assert.is_false(ok, bad)
			assert.matches("filter.nat", msg, 1, true)
			ok, msg = pcall(h.create, h, spec_of(tuple_for(70), { snat = bad }))
			assert.is_false(ok, bad)
			assert.matches("create: bad argument 'snat'", msg, 1, true)
		end
		local ok, msg = pcall(F.dport, 65536)
		assert.is_false(ok)
		assert.matches("filter.dport", msg, 1, true)
		-- the CLI: a refusal (non-zero exit) for each
		for _, bad in ipairs{ "192.0.2.1:65536", "[2001:db8::1]:70000" } do
			local _, cli_ok = H.cli(ns, "-L -n " .. bad)
			assert.is_false(cli_ok, bad)
		end
		assert.equals(0, h:count())
	end)
end)

describe("NAT kind on real traffic: the kernel's bits, not the CLI's guesses", function()
	local topo, A, h
	H.routed({ nat = true, serve = "udp" }, function(t, hh) topo, A, h = t, t and t.addr, hh end)

	it("un-NATed ICMP flows carry SRC_NAT_DONE and DST_NAT_DONE: the CLI's -n and -g list them, ct.nat says none;"
		.. " an un-NATed UDP flow is listed by neither", function()
		assert(topo:exec("client", "ping -c 1 -W 2 " .. A.server))
		assert(topo:exec("client", "ping -c 1 -W 2 " .. A.server6))
		local ok, _, sport = topo:udp_send("client", A.server, P.plain, "x")
		assert.is_true(ok)
		local icmp = assert(h:list(F.proto("icmp", "icmpv6")))
		assert.equals(2, #icmp)
		for _, e in ipairs(icmp) do
			assert.is_true(e.status.SRC_NAT_DONE)
			assert.is_true(e.status.DST_NAT_DONE)
			assert.is_nil(e.status.SRC_NAT)
			assert.is_nil(e.status.DST_NAT)
			assert.equals("none", ct.nat.classify(e))
			assert.is_true(F.nat("none"):match(e))
		end
		local plain = assert(h:list(F.proto "udp" * F.sport(sport)))
		assert.equals(1, #plain)
		assert.equals("none", ct.nat.classify(plain[1]))
		assert.equals(0, #h:list(F.nat "any"))
		-- the CLI calls both ICMP flows NAT (its test: a *_NAT_DONE bit and a
		-- differing "port", which for ICMP compares type and id), not the UDP one
		for _, opt in ipairs{ "-n", "-g" } do
			local lines = H.cli_ok(topo.ns.router, "-L " .. opt)
			assert.equals(2, #lines, opt)
			assert.truthy(H.find(lines, "icmp "), opt)
			assert.truthy(H.find(lines, "icmpv6 "), opt)
		end
	end)

	it("IPv6 NAT addresses: the CLI's -n 2001:db8:99::10 matches every IPv6 SNAT flow, F.nat compares whole addresses",
		function()
			local ok, _, sport = topo:udp_send("client", A.server6, P.snat, "x")
			assert.is_true(ok)
			local e = assert(h:list(F.proto "udp" * F.sport(sport)))[1]
			assert.equals(A.snat6, e.reply.dst)
			assert.equals("snat", ct.nat.classify(e))
			assert.is_true(F.nat("snat", A.snat6):match(e))
			assert.is_true(F.nat("snat", "[" .. A.snat6 .. "]:" .. sport):match(e))
			assert.is_false(F.nat("snat", "2001:db8:99::10"):match(e))
			assert.equals(0, #h:list(F.nat("snat", "2001:db8:99::10")))
			-- the CLI: the wrong address matches the flow (and the ICMPv6 one)
			local lines = H.cli_ok(topo.ns.router, "-L -n 2001:db8:99::10")
			assert.truthy(H.find(lines, "sport=" .. sport .. " "))
			-- an IPv4 address that is not the SNAT address matches nothing there
			assert.same({}, H.cli_ok(topo.ns.router, "-L -n 198.51.100.99"))
			assert.equals(0, #h:list(F.nat("snat", "198.51.100.99")))
		end)
end)

describe("ct.load restores NAT entries from the save text of real NATed traffic", function()
	local topo, A, conns

	setup(function()
		topo = hosts.new{ nat = { snat = true, dnat = true } }
		A = topo.addr
		topo:serve("tcp")
		conns = {
			topo:tcp_connect("client", A.server, P.snat, { hold = 20 }),
			topo:tcp_connect("client", A.public, P.dnat, { hold = 20 }),
			topo:tcp_connect("client", A.server6, P.snat, { hold = 20 }),
			topo:tcp_connect("client", A.public6, P.dnat, { hold = 20 }),
		}
	end)
	teardown(function()
		for _, c in ipairs(conns or {}) do c:close() end
		if topo then topo:destroy() end
	end)

	-- The router's save lines (-n/-g forms), timeouts blanked, by source port.
	local function saved(ns)
		local t = {}
		for _, l in ipairs(H.cli_ok(ns, "-L -p tcp -o save")) do
			local sport = assert(tonumber(l:match("%-%-sport (%d+)")), l)
			t[sport] = l:gsub("%-t %d+", "-t T")
		end
		return t
	end

	it("the CLI's -o save lines (-n, -g) load into a fresh table: the same translations, as conntrack -R makes them",
		function()
			local router = saved(topo.ns.router)
			local n = 0
			for _, c in ipairs(conns) do
				assert.truthy(router[c.sport], "no save line for " .. c.sport)
				n = n + 1
			end
			local text = table.concat(H.cli_ok(topo.ns.router, "-L -p tcp -o save"), "\n") .. "\n"
			assert.truthy(text:find(" -n " .. A.snat .. " ", 1, true))
			assert.truthy(text:find(" -g " .. A.server .. " ", 1, true))
			assert.truthy(text:find(" -n " .. A.snat6 .. " ", 1, true))
			assert.truthy(text:find(" -g " .. A.server6 .. " ", 1, true))
			local rh = assert(ct.open{ netns = topo.ns.router })
			local on_exit = H.finally(finally)
			on_exit(function() rh:close() end)

			-- ct.load into one scratch table, conntrack -R into another
			local t1, ns1, h1 = H.scratch()
			local t2, ns2, h2 = H.scratch()
			on_exit(function() h1:close() h2:close() t1:destroy() t2:destroy() end)
			local done, existing, failures = h1:load(text)
			assert.same({}, failures)
			assert.equals(n, done)
			assert.equals(0, existing)
			local file = os.tmpname()
			on_exit(function() os.remove(file) end)
			local f = assert(io.open(file, "w"))
			f:write(text)
			f:close()
			H.cli_ok(ns2, "-R " .. file)

			assert.same(router, saved(ns1))
			assert.same(saved(ns2), saved(ns1))
			for _, c in ipairs(conns) do
				local orig = assert(rh:list(F.proto "tcp" * F.sport(c.sport)))[1]
				local e1 = assert(h1:list(F.proto "tcp" * F.sport(c.sport)))[1]
				local e2 = assert(h2:list(F.proto "tcp" * F.sport(c.sport)))[1]
				for _, e in ipairs{ e1, e2 } do
					assert.equals(ct.nat.classify(orig), ct.nat.classify(e))
					assert.same({ orig.reply.src, orig.reply.dst, orig.reply.sport, orig.reply.dport },
						{ e.reply.src, e.reply.dst, e.reply.sport, e.reply.dport })
					assert.equals(orig.state, e.state)
				end
				assert.same(ct.nat.describe(orig), ct.nat.describe(e1))
			end
			-- the CLI's NAT filters see the loaded entries as NAT
			assert.equals(2, #H.cli_ok(ns1, "-L -n"))
			assert.equals(2, #H.cli_ok(ns1, "-L -g"))
		end)
end)
