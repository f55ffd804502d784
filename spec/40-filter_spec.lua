-- conntrack.filter: the algebra on synthetic entries (#unit, no privileges),
-- then every pushed-down predicate on a real table in a private namespace:
-- kernel-filtered results == pure-Lua results == the CLI's.
local F = require "conntrack.filter"
local addr = require "conntrack.addr"

-- Synthetic entries shaped like conntrack.entry (plain tables).
local function E(t)
	t.proto = t.proto or "tcp"
	t.protonum = F.proto_numbers[t.proto] or t.protonum
	t.family = t.family or ((t.src or ""):find(":", 1, true) and "ipv6" or "ipv4")
	t.orig = { src = t.src, dst = t.dst, sport = t.sport, dport = t.dport, icmp_id = t.icmp_id }
	t.reply = { src = t.rsrc or t.dst, dst = t.rdst or t.src, sport = t.rsport or t.dport,
		dport = t.rdport or t.sport, icmp_id = t.icmp_id }
	t.status = t.status or { CONFIRMED = true }
	return t
end

local synth = {
	E { name = "a", src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 80, state = "ESTABLISHED",
		status = { CONFIRMED = true, SEEN_REPLY = true, ASSURED = true }, mark = 42, timeout = 300 },
	E { name = "b", src = "192.0.2.200", dst = "198.51.100.2", sport = 1001, dport = 443, state = "SYN_SENT",
		mark = 0x107, timeout = 100 },
	E { name = "c", proto = "udp", src = "203.0.113.9", dst = "198.51.100.53", sport = 5353, dport = 53,
		rdst = "198.51.100.100", rdport = 40001, status = { CONFIRMED = true, SRC_NAT = true }, timeout = 30 },
	E { name = "d", proto = "udp", src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53,
		zone = 5, timeout = 20, labels = { blue = true, [3] = true } },
	E { name = "e", src = "2001:db8:1::2", dst = "2001:db8:3::10", sport = 9, dport = 8003,
		rsrc = "2001:db8:2::2", rsport = 9003, state = "TIME_WAIT", status = { CONFIRMED = true, DST_NAT = true,
		SEEN_REPLY = true }, timeout = 120 },
	E { name = "f", proto = "icmp", src = "192.0.2.7", dst = "198.51.100.2", icmp_id = 77, timeout = 29 },
}

local function names(f)
	local out = {}
	for _, e in ipairs(synth) do
		if f:match(e) then
			out[#out + 1] = e.name
		end
	end
	return table.concat(out)
end

describe("conntrack.filter #unit", function()
	it("building blocks match as documented", function()
		assert.equals("abef", names(F.proto("tcp", "icmp")))
		assert.equals("cd", names(F.proto(17)))
		assert.equals("de", names(F.family "ipv6"))
		assert.equals("abf", names(F.src "192.0.2.0/24"))
		assert.equals("af", names(F.src "192.0.2.0/25"))
		assert.equals("b", names(F.src "192.0.2.128/25"))
		assert.equals("bc", names(F.src("192.0.2.200", "203.0.113.0/28")))
		assert.equals("de", names(F.src "2001:db8::/32"))
		assert.equals("de", names(F.src "2001:0db8:0001:0000::0002"))       -- not canonical text
		assert.equals("e", names(F.dst "2001:db8:3::/48"))
		assert.equals("d", names(F.dst "2001:db8:3::/47" - F.dst "2001:db8:3::10"))
		assert.equals("de", names(F.reply_src "2001:db8:2::2"))
		assert.equals("c", names(F.reply_dst "198.51.100.100/32"))
		assert.equals("cd", names(F.dport(53)))
		assert.equals("ab", names(F.dport "80-443"))
		assert.equals("abcd", names(F.dport({ 1, 100 }, 443)))
		assert.equals("bc", names(F.sport("1001:5353")))
		assert.equals("c", names(F.reply_dport(40001)))
		assert.equals("e", names(F.reply_sport(9003)))
		assert.equals("ae", names(F.state("established", "TIME_WAIT")))
		assert.equals("a", names(F.mark(42)))
		assert.equals("b", names(F.mark(7, 0xff)))
		assert.equals("b", names(F.mark "0x7/0xff"))
		assert.equals("d", names(F.zone(5)))
		assert.equals("abcef", names(F.zone(0)))
		assert.equals("d", names(F.label("blue", 3)))
		assert.equals("", names(F.label("blue", 4)))
		assert.equals("abe", names(F.timeout(100, 300)))
		assert.equals("cdf", names(F.timeout(nil, 30)))
		assert.equals("ae", names(F.timeout "120-"))
		assert.equals("f", names(F.where(function(e) return e.orig.icmp_id == 77 end)))
	end)

	it("status flags, negation and UNREPLIED", function()
		assert.equals("a", names(F.status "ASSURED"))
		assert.equals("ae", names(F.status { "SEEN_REPLY" }))
		assert.equals("e", names(F.status { SEEN_REPLY = true, ASSURED = false }))
		assert.equals("e", names(F.status "SEEN_REPLY,!ASSURED"))
		assert.equals("bcdf", names(F.status "UNREPLIED"))
		assert.equals("bcdf", names(-F.status "SEEN_REPLY"))
		-- 2^1 + 2^2: SEEN_REPLY and ASSURED
		assert.equals("a", names(F.status(6)))
		-- the negation of one flag is still a status filter the kernel can run
		local n = -F.status "ASSURED"
		assert.equals("status(!ASSURED)", tostring(n))
		local k, rest = n:pushdown { status = true }
		assert.same({ status = 0, status_mask = 4 }, k)
		assert.is_nil(rest)
	end)

	it("NAT kinds and translated addresses", function()
		assert.equals("c", names(F.nat "snat"))
		assert.equals("e", names(F.nat "dnat"))
		assert.equals("ce", names(F.nat "any"))
		assert.equals("abdf", names(F.nat "none"))
		assert.equals("", names(F.nat "both"))
		assert.equals("c", names(F.nat("snat", "198.51.100.100")))
		assert.equals("c", names(F.nat("snat", "198.51.100.100:40001")))
		assert.equals("", names(F.nat("snat", ":40002")))
		assert.equals("e", names(F.nat("dnat", "[2001:db8:2::2]:9003")))
		assert.equals("e", names(F.nat("dnat", "2001:db8:2::/64")))
		assert.equals("", names(F.nat("dnat", "2001:db8:2::3")))
	end)

	it("combinators, operators and De Morgan", function()
		local a, b, c = F.proto "tcp", F.src "192.0.2.0/24", F.status "ASSURED"
		assert.equals("ab", names(F.all(a, b)))
		assert.equals(names(F.all(a, b)), names(a * b))
		assert.equals("abcef", names(F.any(b, F.proto "udp" * F.family "ipv4", F.dport(8003))))
		assert.equals(names(F.any(a, b)), names(a + b))
		assert.equals("cdf", names(-a))
		assert.equals("b", names(a * b - c))
		assert.equals("cd", names(F.none(a, F.proto "icmp")))
		for _, pair in ipairs { { a, b }, { b, c }, { a * c, F.family "ipv6" } } do
			local x, y = pair[1], pair[2]
			assert.equals(names(-(x + y)), names(-x * -y))
			assert.equals(names(-(x * y)), names(-x + -y))
			assert.equals(names(x), names(F.negate(F.negate(x))))
		end
		assert.equals("abcdef", names(F.all()))
		assert.equals("", names(F.any()))
		-- flattening
		assert.equals("all(proto(tcp), src(192.0.2.0/24), status(ASSURED))", tostring((a * b) * c))
		-- callable, and compile() gives a plain function
		assert.is_true(F.proto "tcp"(synth[1]))
		assert.is_false(F.proto "tcp":compile()(synth[3]))
	end)

	it("reads tables of fields and functions", function()
		assert.equals("c", names(F { proto = "udp", src = "203.0.113.0/24", dport = 53 }))
		assert.equals("cd", names(F { proto = { "udp" }, dport = { 53, 54 } }))
		assert.equals("b", names(F { mark = 7, mark_mask = 0xff }))
		assert.equals("ab", names(F { sport = { 1000, 1001 } }))      -- one range
		assert.equals("d", names(F { labels = { "blue" }, zone = 5 }))
		assert.equals("c", names(F { nat = "snat" }))
		assert.equals("f", names(F(function(e) return e.proto == "icmp" end)))
		assert.equals("abcdef", names(F(nil)))
		assert.equals("all(proto(udp), dport(53))", tostring(F { dport = 53, proto = "udp" }))
	end)

	it("raises on bad arguments, naming function and argument", function()
		assert.has_error(function() F.proto "tcpx" end, "filter.proto: bad argument 'proto' (unknown protocol 'tcpx')")
		assert.has_error(function() F.src "192.0.2.300" end)
		assert.has_error(function() F.src "192.0.2.0/33" end)
		assert.has_error(function() F.dport "90-80" end)
		assert.has_error(function() F.status "BOGUS" end, "filter.status: bad argument 'status' (unknown status flag 'BOGUS')")
		assert.has_error(function() F.status "ASSURED,!ASSURED" end)
		assert.has_error(function() F.mark(-1) end)
		assert.has_error(function() F.zone(70000) end)
		assert.has_error(function() F.family "ipx" end)
		assert.has_error(function() F.nat "sometimes" end)
		assert.has_error(function() F { prot = "tcp" } end, "filter: bad argument 'prot' (unknown filter field)")
		assert.has_error(function() F { mark_mask = 1 } end)
		assert.has_error(function() F(42) end)
	end)

	it("pushdown: the kernel part is implied, the residual exact", function()
		local caps = { status = true }
		local cases = {
			F.family "ipv4", F.mark(42), F.mark(7, 0xff), F.zone(5), F.zone(0), F.status "ASSURED",
			F.status "!SEEN_REPLY", F.src "192.0.2.0/24", F.src "2001:db8::/32" * F.dport(53),
			F.family "ipv4" * F.mark(7, 0xff) * F.status "!ASSURED" * F.proto "tcp",
			F.mark(0, 0xf) * F.mark(0x100, 0xf00),        -- merge into one mask
			F.mark(1) * F.mark(2),                        -- conflict: one stays in Lua
			F.family "ipv4" * F.family "ipv6",
			F.any(F.mark(42) * F.family "ipv4", F.family "ipv4" * F.proto "udp"),
			F.any(F.mark(42), F.proto "udp"), -F.mark(42), F.nat "snat" * F.zone(0),
		}
		for _, f in ipairs(cases) do
			local k, rest = f:pushdown(caps)
			for _, e in ipairs(synth) do
				local want = f:match(e)
				local got = require("40-helpers").spec_match(k, e) and (rest == nil or rest:match(e))
				assert.equals(want, got, tostring(f) .. " on " .. e.name)
			end
		end
		local k, rest = (F.mark(0, 0xf) * F.mark(0x100, 0xf00)):pushdown(caps)
		assert.same({ mark = 0x100, mark_mask = 0xf0f }, k)
		assert.is_nil(rest)
		k, rest = (F.src "192.0.2.0/24" * F.mark(7)):pushdown(caps)
		assert.same({ family = "ipv4", mark = 7 }, k)
		assert.equals("src(192.0.2.0/24)", tostring(rest))
		-- without status support the status part stays in Lua
		k, rest = (F.status "ASSURED" * F.mark(1)):pushdown { status = false }
		assert.same({ mark = 1 }, k)
		assert.equals("status(ASSURED)", tostring(rest))
	end)

	it("explain says what runs where", function()
		local f = F.src "192.0.2.0/24" * F.mark(7, 0xff) * F.zone(3) * F.status "ASSURED"
		local text, parts = f:explain { status = true }
		assert.matches("kernel %(dump request attributes%): family=ipv4 mark=0x7/0xff status=ASSURED", text)
		assert.matches("C %(conntrack.core's dump, before any Lua runs%): zone == 3", text)
		assert.matches("Lua %(on each entry the dump returns%): src%(192.0.2.0/24%)", text)
		assert.same({ family = "ipv4", mark = 7, mark_mask = 0xff, status = 4, status_mask = 4 }, parts.kernel)
		assert.same({ zone = 3 }, parts.c)
		text = F.proto "tcp":explain()
		assert.matches("kernel %(dump request attributes%): proto=tcp %(CTA_FILTER%)", text)
		text = F.dport(53):explain()
		assert.matches("kernel %(dump request attributes%): nothing", text)
		text = (F.proto "udp" * F.dport(53) * F.reply_src "198.51.100.2"):explain()
		assert.matches("kernel %(dump request attributes%): family=ipv4 proto=udp %(CTA_FILTER%) dport=53 "
			.. "%(CTA_FILTER%) reply_src=198.51.100.2 %(CTA_FILTER%)", text)
		assert.matches("Lua: nothing", text)
		text = F.mark(1):explain()
		assert.matches("Lua: nothing", text)
		text = F.status "ASSURED":explain { status = false }
		assert.matches("status bits stay in Lua", text)
	end)

	it("writes addresses as the kernel does (glibc inet_ntop)", function()
		local cases = {
			["2001:0db8:0000:0000:0000:0000:0000:0001"] = "2001:db8::1",
			["2001:db8:0:0:1:0:0:1"] = "2001:db8::1:0:0:1",      -- first of two equal runs
			["2001:db8:0:1:0:0:0:1"] = "2001:db8:0:1::1",        -- the longer run
			["2001:db8:1:1:1:1:1:0"] = "2001:db8:1:1:1:1:1:0",   -- one zero word stays
			["::"] = "::", ["::1"] = "::1", ["1::"] = "1::",
			["::ffff:192.0.2.1"] = "::ffff:192.0.2.1", ["::192.0.2.1"] = "::192.0.2.1",
			["::2:192.0.2.1"] = "::2:c000:201",
			["2001:DB8::A"] = "2001:db8::a",
		}
		for input, want in pairs(cases) do
			assert.equals(want, (addr.canonical(input)), input)
		end
		assert.is_nil(addr.canonical "2001:db8::1::2")
		assert.is_nil(addr.canonical "1.2.3")
		assert.same({ "192.0.2.1", 80 }, { addr.split_hostport "192.0.2.1:80" })
		assert.same({ "2001:db8::1", 53 }, { addr.split_hostport "[2001:db8::1]:53" })
		assert.same({ "2001:db8::1" }, { addr.split_hostport "2001:db8::1" })
		assert.same({ nil, 8080 }, { addr.split_hostport ":8080" })
	end)
end)

describe("filters on a real table", function()
	local H = require "40-helpers"
	local ct, ns, h, all

	-- 48 entries: IPv4 and IPv6, tcp/udp/icmp, marks, zones, statuses, NAT tuples.
	local function populate()
		local n = 0
		local function add(spec)
			n = n + 1
			spec.timeout = spec.timeout or 600
			assert(h:create(spec))
		end
		for i = 1, 12 do
			add { proto = "tcp", src = "192.0.2." .. i * 20, dst = "198.51.100.2", sport = 1000 + i,
				dport = ({ 80, 443, 22 })[i % 3 + 1], state = i % 2 == 0 and "ESTABLISHED" or "SYN_SENT",
				status = i % 2 == 0 and { "SEEN_REPLY", "ASSURED" } or nil, mark = ({ 0, 7, 0x107, 42 })[i % 4 + 1],
				zone = i % 5 == 0 and 5 or nil }
		end
		for i = 1, 12 do
			add { proto = "udp", src = (i % 2 == 0 and "192.0.2." or "203.0.113.") .. i, dst = "198.51.100.53",
				sport = 2000 + i, dport = i % 3 == 0 and 123 or 53, mark = i % 4 == 0 and 7 or 0,
				status = i % 3 == 0 and { "SEEN_REPLY" } or nil, zone = i % 4 == 1 and 9 or nil }
		end
		for i = 1, 12 do
			add { proto = i % 3 == 0 and "udp" or "tcp", src = "2001:db8:1::" .. i, dst = "2001:db8:2::2",
				sport = 3000 + i, dport = i % 2 == 0 and 53 or 443, mark = i % 3 == 0 and 0x207 or 0,
				status = i % 4 == 0 and { "SEEN_REPLY", "ASSURED" } or nil, zone = i % 6 == 0 and 5 or nil }
		end
		for i = 1, 6 do
			add { proto = "icmp", src = "192.0.2." .. (100 + i), dst = "198.51.100.2", icmp_type = 8, icmp_id = i,
				mark = i % 2 == 0 and 7 or 0 }
		end
		for i = 1, 6 do      -- translated tuples, as NAT would make them
			add { proto = "udp", src = "192.0.2." .. (200 + i), dst = "198.51.100.2", sport = 4000 + i, dport = 53,
				reply_src = "198.51.100.2", reply_dst = "198.51.100.100", reply_sport = 53, reply_dport = 40000 + i }
		end
		return n
	end

	lazy_setup(function()
		ct = require "conntrack"
		ns = H.netns("filter")
		h = assert(ct.open { netns = ns.name })
		assert.equals(48, populate())
		all = assert(h:list())
		assert.equals(48, #all)
	end)

	lazy_teardown(function()
		if h then h:close() end
		if ns then ns:destroy() end
	end)

	-- Each filter run three ways on the same table gives the same entries.
	local function check(f, want_kernel)
		local pushed = assert(h:list(f))
		local lua = assert(h:list(f, { pushdown = false }))
		local by_hand = H.select(all, function(e) return f:match(e) end)
		assert.same(H.idlist(by_hand), H.idlist(pushed), tostring(f) .. " (pushed down)")
		assert.same(H.idlist(by_hand), H.idlist(lua), tostring(f) .. " (all in Lua)")
		local k = f:pushdown()
		if want_kernel ~= nil then
			assert.same(want_kernel, k, tostring(f) .. " pushdown")
		end
		-- and the kernel part alone, sent as plain dump options, is what the
		-- Lua model of it says (so each pushed key is applied as modelled)
		if k then
			local kernel_only = assert(h:list(k))
			local modelled = H.select(all, function(e) return H.spec_match(k, e) end)
			assert.same(H.idlist(modelled), H.idlist(kernel_only), tostring(f) .. " kernel part")
			assert.is_true(#kernel_only <= #all)
		end
		return pushed
	end

	it("family goes to the kernel", function()
		assert.equals(12, #check(F.family "ipv6", { family = "ipv6" }))
		assert.equals(36, #check(F.family "ipv4", { family = "ipv4" }))
	end)

	it("mark and mark/mask go to the kernel", function()
		local r = check(F.mark(7), { mark = 7 })
		assert.is_true(#r > 0)
		r = check(F.mark(7, 0xff), { mark = 7, mark_mask = 0xff })
		assert.is_true(#r > #check(F.mark(7)))
		check(F.mark(0x200, 0xf00), { mark = 0x200, mark_mask = 0xf00 })
		check(F.mark(0), { mark = 0 })
	end)

	it("zone goes to the C dump (and the kernel for zone > 0)", function()
		assert.equals(4, #check(F.zone(5), { zone = 5 }))
		assert.equals(3, #check(F.zone(9), { zone = 9 }))
		assert.equals(41, #check(F.zone(0), { zone = 0 }))
	end)

	it("status flags, set and clear, go to the kernel", function()
		local caps = F.caps()
		assert.is_true(caps.status, "this kernel (" .. caps.kernel .. ") should filter dumps by status")
		local assured = check(F.status "ASSURED", { status = 4, status_mask = 4 })
		local unreplied = check(F.status "UNREPLIED", { status = 0, status_mask = 2 })
		assert.equals(#all, #assured + #unreplied + #check(F.status "SEEN_REPLY,!ASSURED"))
		check(-F.status "ASSURED", { status = 0, status_mask = 4 })
	end)

	it("protocol, exact addresses and ports go to the kernel's tuple filter", function()
		assert.is_true(#check(F.proto "udp", { proto = 17 }) > 0)
		assert.is_true(#check(F.proto "tcp" * F.dport(80), { proto = 6, dport = 80 }) >= 0)
		check(F.proto "udp" * F.dport(53), { proto = 17, dport = 53 })
		check(F.src "192.0.2.2", { family = "ipv4", src = "192.0.2.2" })
		check(F.reply_dst "198.51.100.100", { family = "ipv4", reply_dst = "198.51.100.100" })
		check(F.dst "2001:db8:2::2" * F.proto "tcp", { family = "ipv6", dst = "2001:db8:2::2", proto = 6 })
		-- a port without a protocol that has ports stays in Lua
		check(F.dport(53), nil)
		assert.is_nil((F.dport(53):pushdown()))
		check(F.proto "icmp" * F.sport(1))
		-- entries every way: the kernel's selection equals the Lua one
		for _, e in ipairs(all) do
			if e.orig.sport then
				check(F.proto(e.proto) * F.src(e.orig.src) * F.sport(e.orig.sport) * F.reply_dport(e.reply.dport))
			end
		end
	end)

	it("mixed filters split between kernel and Lua", function()
		check(F.family "ipv4" * F.mark(7, 0xff) * F.status "!ASSURED" * F.proto "tcp")
		check(F.src "192.0.2.0/24" * F.zone(0), { family = "ipv4", zone = 0 })
		check(F.any(F.src "2001:db8:1::/64" * F.dport(53), F.family "ipv6" * F.mark(0x207)), { family = "ipv6" })
		check(F { proto = "udp", dport = 53, src = "203.0.113.0/24" }, { family = "ipv4", proto = 17, dport = 53 })
		check(F.nat "snat" + F.proto "icmp")
		check(F.mark(1) * F.mark(2))
		check(F.state "ESTABLISHED" - F.mark(42))
		check(F.reply_dst "198.51.100.100" * F.reply_dport "40002-40004")
	end)

	it("agrees with the conntrack CLI", function()
		local function cli(args)
			local lines = H.lines(ns:conntrack("-L " .. args))
			for i, l in ipairs(lines) do
				lines[i] = H.untimed(l)
			end
			table.sort(lines)
			return lines
		end
		local function ours(f)
			local lines = {}
			for e in h:dump(f) do
				lines[#lines + 1] = H.untimed(tostring(e))
			end
			table.sort(lines)
			return lines
		end
		assert.same(cli("-m 7/0xff"), ours(F.mark(7, 0xff)))
		assert.same(cli("-m 7"), ours(F.mark(7)))
		assert.same(cli("-p udp --dport 53"), ours(F { proto = "udp", dport = 53 }))
		assert.same(cli("-s 192.0.2.0/25"), ours(F.src "192.0.2.0/25"))
		assert.same(cli("-f ipv6 -p tcp"), ours(F.family "ipv6" * F.proto "tcp"))
		assert.same(cli("-w 5"), ours(F.zone(5)))
		assert.same(cli("-u ASSURED"), ours(F.status "ASSURED"))
		assert.same(cli("-u UNREPLIED"), ours(F.status "UNREPLIED"))
		assert.same(cli("-p tcp --state ESTABLISHED"), ours(F.state "ESTABLISHED"))
		assert.same(cli("-p icmp"), ours(F.proto "icmp"))
	end)

	it("ct.events takes a filter and pushes its top conjuncts into the socket filter", function()
		local f = F.proto "udp" * F.src "192.0.2.0/24" * F.mark(7) * F.dport(53)
		assert.same({ proto = { 17 }, src = { "192.0.2.0/24" }, mark = { value = 7, mask = 0xffffffff } },
			f:event_pushdown())
		assert.is_nil((F.proto "udp" + F.mark(7)):event_pushdown())
		assert.is_nil(F.mark(0):event_pushdown())
		finally(function() h:delete_where(F.dst "198.51.100.7") end)
		local it, st, c, closing = ct.events { netns = ns.name, types = "new", timeout = 0.3, filter = f }
		local rows = {
			{ "udp", "192.0.2.77", 53, 7, true }, { "udp", "192.0.2.78", 54, 7, false },
			{ "tcp", "192.0.2.79", 53, 7, false }, { "udp", "203.0.113.77", 53, 7, false },
			{ "udp", "192.0.2.80", 53, 0, false }, { "udp", "192.0.2.81", 53, 7, true },
		}
		local want = {}
		for i, r in ipairs(rows) do
			assert(h:create { proto = r[1], src = r[2], dst = "198.51.100.7", sport = 60000 + i, dport = r[3],
				mark = r[4], timeout = 60, state = r[1] == "tcp" and "ESTABLISHED" or nil })
			if r[5] then want[#want + 1] = 60000 + i end
		end
		local got = {}
		for ev in it, st, c, closing do
			got[#got + 1] = ev.orig.sport
		end
		assert.same(want, got)
		assert.is_true(st.kernel_filtered)
		-- the kernel let through only what its part of the filter matches
		assert.equals(3, st.received)
		assert.equals(6, #assert(h:list(F.dst "198.51.100.7")))
	end)

	it("a filtered dump can be left early and run again", function()
		local n = 0
		for _ in h:dump(F.family "ipv4" * F.proto "udp") do
			n = n + 1
			if n == 3 then break end
		end
		assert.equals(3, n)
		n = 0
		for _ in h:dump(F.family "ipv4" * F.proto "udp") do
			n = n + 1
		end
		assert.equals(18, n)
		-- plain dump options still reach the core unchanged
		assert.equals(12, #assert(h:list { family = "ipv6" }))
		assert.has_error(function() h:list { family = "ipv6", bogus = 1 } end)
		-- the module-level functions take filters too
		assert.is_function(ct.update_where)
		assert.is_function(ct.delete_where)
	end)
end)
