-- conntrack.filter, unit part (no kernel, no privileges): the algebra on
-- synthetic entries (ct.entry: made as the kernel would send them), where
-- each part runs (plan, explain), address text.  The same filters on a real
-- table: spec/40-filter_spec.lua.
local ct = require "conntrack"
local F = require "conntrack.filter"
local addr = require "conntrack.addr"
local H = require "helpers"

-- Synthetic entries: the spec, plus rsrc/rdst/rsport/rdport for the reply.
local name_of = {}
local function E(t)
	local spec = { proto = t.proto or "tcp", src = t.src, dst = t.dst, timeout = t.timeout,
		reply_src = t.rsrc, reply_dst = t.rdst, reply_sport = t.rsport, reply_dport = t.rdport,
		state = t.state, mark = t.mark, zone = t.zone, labels = t.labels,
		status = t.status or { "CONFIRMED" } }
	if spec.proto == "icmp" then
		spec.icmp_type, spec.icmp_id = 8, t.icmp_id
	else
		spec.sport, spec.dport = t.sport, t.dport
	end
	local e = ct.entry(spec)
	name_of[e] = t.name
	return e
end

local synth = {
	E { name = "a", src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 80, state = "ESTABLISHED",
		status = { "CONFIRMED", "SEEN_REPLY", "ASSURED" }, mark = 42, timeout = 300 },
	E { name = "b", src = "192.0.2.200", dst = "198.51.100.2", sport = 1001, dport = 443, state = "SYN_SENT",
		mark = 0x107, timeout = 100 },
	E { name = "c", proto = "udp", src = "203.0.113.9", dst = "198.51.100.53", sport = 5353, dport = 53,
		rdst = "198.51.100.100", rdport = 40001, status = { "CONFIRMED", "SRC_NAT" }, timeout = 30 },
	E { name = "d", proto = "udp", src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53,
		zone = 5, timeout = 20, labels = { [7] = true, [3] = true } },
	E { name = "e", src = "2001:db8:1::2", dst = "2001:db8:3::10", sport = 9, dport = 8003,
		rsrc = "2001:db8:2::2", rsport = 9003, state = "TIME_WAIT", status = { "CONFIRMED", "DST_NAT",
		"SEEN_REPLY" }, timeout = 120 },
	E { name = "f", proto = "icmp", src = "192.0.2.7", dst = "198.51.100.2", icmp_id = 77, timeout = 29 },
}

local function names(f)
	local out = {}
	for _, e in ipairs(synth) do
		if f:match(e) then
			out[#out + 1] = name_of[e]
		end
	end
	return table.concat(out)
end

describe("conntrack.filter", function()
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
		assert.equals("d", names(F.label(7, 3)))
		assert.equals("", names(F.label(7, 4)))
		assert.equals("", names(F.label "no-such-name"))       -- names: as the entry reads them
		assert.equals("d", names(F.orig_zone(5)))
		assert.equals("d", names(F.reply_zone(5)))
		assert.equals("f", names(F.icmp_id(77)))
		assert.equals("f", names(F.icmp_type(8)))
		assert.equals("", names(F.helper "ftp"))
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
		local _, parts = n:explain()
		assert.same({ status = 0, status_mask = 4, flush_exact = nil }, parts.kernel)
		assert.is_nil(parts.lua)
		assert.equals("e", names(F.status("SEEN_REPLY", { "SEEN_REPLY", "ASSURED" })))    -- value, mask
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
		assert.equals("d", names(F { labels = { 7 }, zone = 5 }))
		assert.equals("a", names(F { status = { "ASSURED" }, status_mask = { "ASSURED", "DYING" } }))
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
		assert.has_error(function() F.status "BOGUS" end,
			"filter.status: bad argument 'status' (unknown status flag 'BOGUS')")
		assert.has_error(function() F.status "ASSURED,!ASSURED" end)
		assert.has_error(function() F.mark(-1) end)
		assert.has_error(function() F.zone(70000) end)
		assert.has_error(function() F.family "ipx" end)
		assert.has_error(function() F.nat "sometimes" end)
		assert.has_error(function() F { prot = "tcp" } end, "filter: bad argument 'prot' (unknown field)")
		assert.has_error(function() F.coerce({ mark = -1 }, "dump") end,
			"dump: bad argument 'mark' (integer 0..4294967295 expected, got -1)")
		-- malformed NAT addresses, as the CLI refuses them (issue 10)
		assert.has_error(function() F.nat("snat", "192.0.2.1:65536") end)
		assert.has_error(function() F.nat("snat", "[2001:db8::1]:70000") end)
		assert.has_error(function() F.nat("snat", "192.0.2.1:") end)
		assert.has_error(function() F.dport(65536) end)
		assert.has_error(function() F { mark_mask = 1 } end)
		assert.has_error(function() F(42) end)
	end)

	it("plan: C and Lua parts together are the filter; the kernel part is implied", function()
		local cases = {
			F.family "ipv4", F.mark(42), F.mark(7, 0xff), F.zone(5), F.zone(0), F.status "ASSURED",
			F.status "!SEEN_REPLY", F.src "192.0.2.0/24", F.src "2001:db8::/32" * F.dport(53),
			F.family "ipv4" * F.mark(7, 0xff) * F.status "!ASSURED" * F.proto "tcp",
			F.mark(0, 0xf) * F.mark(0x100, 0xf00), F.mark(1) * F.mark(2),
			F.family "ipv4" * F.family "ipv6",
			F.any(F.mark(42) * F.family "ipv4", F.family "ipv4" * F.proto "udp"),
			F.any(F.mark(42), F.proto "udp"), -F.mark(42), F.nat "snat" * F.zone(0),
			F.any(F.nat "dnat", F.src "192.0.2.0/25"), -F.nat "none" * F.dport("40-9000"),
		}
		for _, f in ipairs(cases) do
			local p = f:plan()
			local k = p.matcher and p.matcher:kernel() or {}
			k.flush_exact, k.dump_exact = nil, nil
			for _, e in ipairs(synth) do
				local want = f:match(e)
				local got = (p.matcher == nil or p.matcher:match(e)) and (p.residual == nil or p.residual(e))
				assert.equals(want, got and true or false, tostring(f) .. " on " .. name_of[e])
				if want then
					assert.is_true(H.spec_match(k, e), "kernel part of " .. tostring(f) .. " on " .. name_of[e])
				end
			end
		end
		-- only nat, where and named labels stay in Lua
		local p = (F.src "192.0.2.0/24" * F.nat "snat" * F.mark(7)):plan()
		assert.equals("all(src(192.0.2.0/24), mark(7))", tostring(p.c))
		assert.equals("nat(snat)", tostring(p.lua))
		p = (F.src "192.0.2.0/24" * F.state "ESTABLISHED" * F.timeout(1, 50) * F.label(3)):plan()
		assert.is_nil(p.lua)
	end)

	it("explain says what runs where", function()
		local f = F.src "192.0.2.0/24" * F.mark(7, 0xff) * F.zone(3) * F.status "ASSURED"
		local text, parts = f:explain()
		assert.matches("kernel %(dump request attributes%): family=ipv4 mark=0x7/0xff status=ASSURED zone=3", text)
		assert.matches("C %(each message, before an entry is made of it%): all%(src%(192.0.2.0/24%), "
			.. "mark%(0x7/0xff%), zone%(3%), status%(ASSURED%)%)", text)
		assert.matches("Lua: nothing", text)
		assert.same({ family = "ipv4", mark = 7, mark_mask = 0xff, status = 4, status_mask = 4, zone = 3 },
			parts.kernel)
		text = F.proto "tcp":explain()
		assert.matches("kernel %(dump request attributes%): proto=tcp %(CTA_FILTER%)", text)
		text = F.dport(53):explain()
		assert.matches("kernel %(dump request attributes%): nothing", text)
		text = (F.proto "udp" * F.dport(53) * F.reply_src "198.51.100.2"):explain()
		assert.matches("kernel %(dump request attributes%): family=ipv4 proto=udp %(CTA_FILTER%) dport=53 "
			.. "%(CTA_FILTER%) reply_src=198.51.100.2 %(CTA_FILTER%)", text)
		text = (F.mark(1) * F.where(function() return true end, "true")):explain()
		assert.matches("Lua %(on each entry C lets through%): where%(true%)", text)
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
