-- e:spec(), unit part (no kernel, no privileges): synthetic entries
-- (ct.entry, made as the kernel would send them) read back as create specs.
-- Real flows, created again in another table: spec/28-spec_spec.lua.
local ct = require "conntrack"

-- A synthetic entry holds what a spec gives it, so its spec is that spec
-- (with family and the status bits a program may set).
local function back(s)
	return ct.entry(s):spec()
end

describe("e:spec() of synthetic entries", function()
	it("TCP: tuple, state, window fields, mark, labels as bits, helper, settable status", function()
		local s = { family = "ipv4", proto = "tcp", src = "192.0.2.1", dst = "198.51.100.2", sport = 40000,
			dport = 21, timeout = 120, mark = 7, state = "ESTABLISHED", helper = "ftp", labels = { 1, 100 },
			tcp_flags_orig = 3, tcp_flags_reply = 35, tcp_wscale_orig = 7, tcp_wscale_reply = 9,
			status = { "SEEN_REPLY", "ASSURED" } }
		assert.same(s, back(s))
		-- bits a program cannot set stay out
		local t = back { proto = "tcp", src = "192.0.2.1", dst = "198.51.100.2", sport = 1, dport = 2,
			status = { "CONFIRMED", "ASSURED", "DYING", "SEQ_ADJUST", "FIXED_TIMEOUT" } }
		assert.same({ "ASSURED", "FIXED_TIMEOUT" }, t.status)
		assert.is_nil(t.timeout)
	end)

	it("ICMP, GRE keys, SCTP tags, zones, a rewritten reply tuple", function()
		local icmp = { family = "ipv6", proto = "icmpv6", src = "2001:db8::1", dst = "2001:db8::2",
			icmp_type = 128, icmp_code = 0, icmp_id = 77, timeout = 30, zone = 4 }
		assert.same(icmp, back(icmp))
		local gre = { family = "ipv4", proto = "gre", src = "192.0.2.1", dst = "198.51.100.2", srckey = 7,
			dstkey = 9, reply_srckey = 11, reply_dstkey = 13, timeout = 30 }
		assert.same(gre, back(gre))
		local sctp = { family = "ipv4", proto = "sctp", src = "192.0.2.1", dst = "198.51.100.2", sport = 5000,
			dport = 5001, state = "ESTABLISHED", orig_vtag = 0xfffffffe, reply_vtag = 1, timeout = 30,
			orig_zone = 3 }
		assert.same(sctp, back(sctp))
		local rw = { family = "ipv4", proto = "udp", src = "192.0.2.1", dst = "198.51.100.2", sport = 53,
			dport = 53, reply_src = "198.51.100.9", reply_dport = 5353, reply_zone = 2, timeout = 30 }
		assert.same(rw, back(rw))
	end)

	it("NAT from the reply tuple where SRC_NAT / DST_NAT say so, and only then", function()
		local e = ct.entry { proto = "tcp", src = "192.0.2.2", dst = "203.0.113.10", sport = 5000, dport = 80,
			reply_src = "198.51.100.2", reply_dst = "198.51.100.100", reply_sport = 9003, reply_dport = 40001,
			status = { "SRC_NAT", "DST_NAT", "SEEN_REPLY" }, timeout = 10 }
		local s = e:spec()
		assert.same({ addr = "198.51.100.100", port = 40001 }, s.snat)
		assert.same({ addr = "198.51.100.2", port = 9003 }, s.dnat)
		assert.same({ "SEEN_REPLY" }, s.status)
		assert.is_nil(s.reply_src)
		assert.is_nil(s.reply_dport)
		-- ICMP: by address
		s = ct.entry { proto = "icmp", src = "192.0.2.2", dst = "198.51.100.2", icmp_type = 8, icmp_id = 5,
			reply_dst = "198.51.100.100", status = { "SRC_NAT", "SRC_NAT_DONE" } }:spec()
		assert.same({ addr = "198.51.100.100" }, s.snat)
		-- the *_NAT_DONE bits alone are no translation
		s = ct.entry { proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 1, dport = 2,
			status = { "SRC_NAT_DONE", "DST_NAT_DONE" } }:spec()
		assert.is_nil(s.snat)
		assert.is_nil(s.dnat)
		assert.is_nil(s.status)
	end)

	it("is a fresh table each time, and events give one too", function()
		local e = ct.entry { proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 1, dport = 2,
			type = "destroy", orig_packets = 1, orig_bytes = 60 }
		local a, b = e:spec(), e:spec()
		assert.are_not.equal(a, b)
		assert.same(a, b)
		assert.same({ family = "ipv4", proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 1,
			dport = 2 }, a)
	end)

	it("raises on a bad self, naming spec", function()
		local e = ct.entry { proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 1, dport = 2 }
		local ok, err = pcall(e.spec, 42)
		assert.is_false(ok)
		assert.matches("spec", err)
		assert.matches("entry", err)
	end)
end)
