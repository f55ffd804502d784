-- conntrack.nat, unit part (no kernel, no privileges): classification and
-- description of translations on synthetic tuples.  Real traffic through
-- NAT rules: spec/41-nat_spec.lua.
local ct = require "conntrack"
local nat = require "conntrack.nat"

-- A table without status is judged by its tuples; with status, by its bits.
local function entry(o, r, status)
	return { orig = o, reply = r, status = status }
end

describe("conntrack.nat", function()
	it("no translation: the reply is the inverted original", function()
		local e = entry({ src = "192.0.2.2", dst = "198.51.100.2", sport = 5000, dport = 80 },
			{ src = "198.51.100.2", dst = "192.0.2.2", sport = 80, dport = 5000 })
		assert.equals("none", nat.classify(e))
		assert.same({ kind = "none", tuples = "none", orig_src = "192.0.2.2", orig_dst = "198.51.100.2", orig_sport = 5000,
			orig_dport = 80 }, nat.describe(e))
		assert.equals("none", nat.tostring(e))
	end)

	it("source translation: address, port, or both", function()
		local e = entry({ src = "192.0.2.2", dst = "198.51.100.2", sport = 5000, dport = 80 },
			{ src = "198.51.100.2", dst = "198.51.100.100", sport = 80, dport = 40003 })
		assert.equals("snat", nat.classify(e))
		local d = nat.describe(e)
		assert.same({ addr = "198.51.100.100", port = 40003 }, d.snat)
		assert.is_nil(d.dnat)
		assert.equals("snat 192.0.2.2:5000 -> 198.51.100.100:40003", nat.tostring(e))
		-- port only (masquerade that had to move the port)
		e.reply.dst = "192.0.2.2"
		assert.equals("snat", nat.classify(e))
		assert.same({ port = 40003 }, nat.describe(e).snat)
		-- address only
		e.reply.dst, e.reply.dport = "198.51.100.1", 5000
		assert.same({ addr = "198.51.100.1" }, nat.describe(e).snat)
	end)

	it("destination translation: dnat and redirect", function()
		local e = entry({ src = "192.0.2.2", dst = "203.0.113.10", sport = 5000, dport = 8003 },
			{ src = "198.51.100.2", dst = "192.0.2.2", sport = 9003, dport = 5000 })
		assert.equals("dnat", nat.classify(e))
		assert.same({ addr = "198.51.100.2", port = 9003 }, nat.describe(e).dnat)
		assert.equals("dnat 203.0.113.10:8003 -> 198.51.100.2:9003", nat.tostring(e))
		-- a redirect to the router's own port, same address
		e = entry({ src = "192.0.2.2", dst = "192.0.2.1", sport = 5000, dport = 8004 },
			{ src = "192.0.2.1", dst = "192.0.2.2", sport = 9004, dport = 5000 })
		assert.equals("dnat", nat.classify(e))
		assert.same({ port = 9004 }, nat.describe(e).dnat)
	end)

	it("both ways at once", function()
		local e = entry({ src = "192.0.2.2", dst = "203.0.113.10", sport = 5000, dport = 8003 },
			{ src = "198.51.100.2", dst = "198.51.100.100", sport = 9003, dport = 5000 })
		assert.equals("both", nat.classify(e))
		assert.equals("snat 192.0.2.2:5000 -> 198.51.100.100:5000; dnat 203.0.113.10:8003 -> 198.51.100.2:9003",
			nat.tostring(e))
	end)

	it("compares whole IPv6 addresses, not their first 32 bits", function()
		local e = entry({ src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53 },
			{ src = "2001:db8:2::2", dst = "2001:db8:1::3", sport = 53, dport = 7 })
		assert.equals("snat", nat.classify(e))
		assert.same({ addr = "2001:db8:1::3" }, nat.describe(e).snat)
		assert.equals("snat [2001:db8:1::2]:7 -> [2001:db8:1::3]:7", nat.tostring(e))
		-- texts that are the same address are the same
		e.reply.dst = "2001:0db8:0001:0000:0000:0000:0000:0002"
		assert.equals("none", nat.classify(e))
	end)

	it("ICMP: the echo id plays the port", function()
		local e = entry({ src = "192.0.2.2", dst = "198.51.100.2", icmp_type = 8, icmp_id = 7 },
			{ src = "198.51.100.2", dst = "198.51.100.1", icmp_type = 0, icmp_id = 9 })
		assert.equals("snat", nat.classify(e))
		assert.same({ addr = "198.51.100.1", port = 9 }, nat.describe(e).snat)
		-- with only DST_NAT claimed, a changed id belongs to it
		e = entry({ src = "192.0.2.2", dst = "203.0.113.10", icmp_id = 7 },
			{ src = "198.51.100.2", dst = "192.0.2.2", icmp_id = 9 }, { DST_NAT = true })
		assert.equals("dnat", nat.classify(e))
		assert.same({ addr = "198.51.100.2", port = 9 }, nat.describe(e).dnat)
	end)

	it("without a reply tuple the status bits decide", function()
		assert.equals("both", nat.classify { status = { SRC_NAT = true, DST_NAT = true } })
		assert.equals("dnat", nat.classify { orig = { src = "192.0.2.1" }, status = { DST_NAT = true } })
		assert.equals("none", nat.classify { status = {} })
		assert.equals("snat", nat.from_status { status = { SRC_NAT = true } })
	end)

	it("the kind is the kernel's SRC_NAT / DST_NAT bits; the translation, the tuples", function()
		-- a flow made with a rewritten reply tuple and no NAT status: the
		-- kernel never translates it, so it is no NAT (issue 10)
		local spec = { src = "192.0.2.2", dst = "203.0.113.10", proto = "tcp", sport = 5000, dport = 8003,
			reply_src = "198.51.100.2", reply_sport = 9003, timeout = 30 }
		local e = ct.entry(spec)
		assert.equals("none", nat.classify(e))
		assert.equals("none", nat.tostring(e))
		-- what the tuples alone claim stays readable
		assert.equals("dnat", nat.from_tuples(e))
		assert.equals("dnat", nat.describe(e).tuples)
		assert.same({ addr = "198.51.100.2", port = 9003 }, nat.describe(e).dnat)
		spec.status = { "DST_NAT", "DST_NAT_DONE" }
		e = ct.entry(spec)
		assert.equals("dnat", nat.classify(e))
		assert.same({ addr = "198.51.100.2", port = 9003 }, nat.describe(e).dnat)
		-- an un-NATed ICMP flow with only the *_NAT_DONE bits (the CLI calls it NAT)
		e = ct.entry { src = "192.0.2.2", dst = "198.51.100.2", proto = "icmp", icmp_type = 8, icmp_id = 7,
			timeout = 30, status = { "SRC_NAT_DONE", "DST_NAT_DONE" } }
		assert.equals("none", nat.classify(e))
		-- a table with status: the bits too
		e = entry({ src = "192.0.2.2", dst = "198.51.100.2", sport = 5000, dport = 80 },
			{ src = "198.51.100.2", dst = "198.51.100.100", sport = 80, dport = 40003 }, { CONFIRMED = true })
		assert.equals("none", nat.classify(e))
		e.status.SRC_NAT = true
		assert.equals("snat", nat.classify(e))
	end)
end)
