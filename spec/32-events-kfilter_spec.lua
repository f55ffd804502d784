-- Events: opts.kernel_filter really filters in the kernel (issue 3).  The
-- proof that it is the kernel: sub.received, which counts what reached the
-- socket, equals the number of matching changes.
local ct = require "conntrack"
local H = require "helpers"

-- One entry per row: a name for it and its spec.
local ENTRIES = {
	{ "t4", { src = "192.0.2.1", dst = "198.51.100.1", proto = "tcp", sport = 1, dport = 80, state = "ESTABLISHED" } },
	{ "u4", { src = "192.0.2.1", dst = "198.51.100.1", proto = "udp", sport = 2, dport = 53 } },
	{ "t4x", { src = "203.0.113.5", dst = "198.51.100.9", proto = "tcp", sport = 3, dport = 80, state = "ESTABLISHED" } },
	{ "t6", { family = "ipv6", src = "2001:db8:1::1", dst = "2001:db8:2::1", proto = "tcp", sport = 4, dport = 80,
		state = "ESTABLISHED" } },
	{ "t6x", { family = "ipv6", src = "2001:db8:9::1", dst = "2001:db8:8::1", proto = "tcp", sport = 5, dport = 80,
		state = "ESTABLISHED" } },
	{ "m7", { src = "192.0.2.2", dst = "198.51.100.2", proto = "tcp", sport = 6, dport = 80, state = "ESTABLISHED",
		mark = 7 } },
	{ "m0x107", { src = "192.0.2.2", dst = "198.51.100.2", proto = "tcp", sport = 7, dport = 80, state = "ESTABLISHED",
		mark = 0x107 } },
	{ "i4", { src = "192.0.2.3", dst = "198.51.100.3", proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 9 } },
	{ "u6", { family = "ipv6", src = "2001:db8:1::2", dst = "2001:db8:2::2", proto = "udp", sport = 10, dport = 53 } },
}

describe("events: kernel_filter", function()
	local topo, ns, h
	H.private(function(t, n, hh) topo, ns, h = t, n, hh end)

	local byport = {}
	for _, row in ipairs(ENTRIES) do
		local s = row[2]
		s.timeout = 100
		byport[s.sport or s.icmp_id] = row[1]
	end

	-- Subscribes with opts, makes every entry, returns the names seen (in
	-- order) and the subscription.
	local function run(opts)
		opts.netns = ns
		opts.types = "new"
		local sub = assert(ct.subscribe(opts))
		assert(h:flush())
		for _, row in ipairs(ENTRIES) do
			assert(h:create(row[2]))
		end
		-- a last, always matching sentinel is not possible with every
		-- filter, so wait a bounded while instead: the events are queued
		-- before create() returns anyway
		local evs = H.collect(sub, function() return false end, 0.15)
		local names = {}
		for _, e in ipairs(evs) do
			names[#names + 1] = byport[e.orig.sport or e.orig.icmp_id]
		end
		sub:close()
		return names, sub
	end

	it("no filter: everything, kernel_filtered false; an empty filter is no filter", function()
		local names, sub = run{}
		assert.same({ "t4", "u4", "t4x", "t6", "t6x", "m7", "m0x107", "i4", "u6" }, names)
		assert.is_false(sub.kernel_filtered)
		names, sub = run{ kernel_filter = {} }
		assert.equals(9, #names)
		assert.is_false(sub.kernel_filtered)
	end)

	it("proto: one, several, by number", function()
		local names, sub = run{ kernel_filter = { proto = "tcp" } }
		assert.same({ "t4", "t4x", "t6", "t6x", "m7", "m0x107" }, names)
		assert.is_true(sub.kernel_filtered)
		assert.equals(6, sub.received)
		names = run{ kernel_filter = { proto = { "udp", "icmp" } } }
		assert.same({ "u4", "i4", "u6" }, names)
		names = run{ kernel_filter = { proto = { 17 } } }
		assert.same({ "u4", "u6" }, names)
	end)

	it("more addresses than the kernel's socket filter holds: the same events, the rest matched in C", function()
		local many = { "192.0.2.2" }
		for i = 1, 70 do many[#many + 1] = "203.0.113." .. (100 + i) end
		many[#many + 1] = "2001:db8:9::1"
		local names = run{ kernel_filter = { src = many } }
		assert.same({ "t6x", "m7", "m0x107" }, names)
	end)

	it("src: an IPv4 CIDR, an IPv6 CIDR, both", function()
		local names, sub = run{ kernel_filter = { src = "192.0.2.0/24", proto = "tcp" } }
		-- (proto tcp, and only IPv4 entries judged here: the tests below
		-- check what happens to IPv6 events)
		local v4 = {}
		for _, n in ipairs(names) do if not n:find("6") then v4[#v4 + 1] = n end end
		assert.same({ "t4", "m7", "m0x107" }, v4)
		assert.is_true(sub.kernel_filtered)
		names = run{ kernel_filter = { src = { "192.0.2.2/32", "192.0.2.3" } } }
		local v4b = {}
		for _, n in ipairs(names) do if not n:find("6") then v4b[#v4b + 1] = n end end
		assert.same({ "m7", "m0x107", "i4" }, v4b)
		names = run{ kernel_filter = { src = { "192.0.2.0/24", "2001:db8:1::/48" } } }
		assert.same({ "t4", "u4", "t6", "m7", "m0x107", "i4", "u6" }, names)
		names = run{ kernel_filter = { src = { "203.0.113.0/24", "2001:db8:9::/64" } } }
		assert.same({ "t4x", "t6x" }, names)
		names, sub = run{ kernel_filter = { src = { "192.0.2.0/24", "2001:db8:1::/48" }, proto = "udp" } }
		assert.same({ "u4", "u6" }, names)
		assert.equals(2, sub.received)
	end)

	it("dst: an IPv4 CIDR", function()
		local names = run{ kernel_filter = { dst = "198.51.100.0/30" } }
		local v4 = {}
		for _, n in ipairs(names) do if not n:find("6") then v4[#v4 + 1] = n end end
		assert.same({ "t4", "u4", "m7", "m0x107", "i4" }, v4)
	end)

	it("mark: a value, a value under a mask, a list", function()
		local names, sub = run{ kernel_filter = { mark = { value = 7 } } }
		assert.same({ "m7" }, names)
		assert.equals(1, sub.received)
		names = run{ kernel_filter = { mark = { value = 7, mask = 0xff } } }
		assert.same({ "m7", "m0x107" }, names)
		names = run{ kernel_filter = { mark = { { value = 7 }, { value = 0x107 } } } }
		assert.same({ "m7", "m0x107" }, names)
		names = run{ kernel_filter = { mark = { value = 0x100, mask = 0x100 }, proto = "tcp" } }
		assert.same({ "m0x107" }, names)
	end)

	it("a filter's C part becomes the socket filter; an object with :match runs in Lua", function()
		local F = ct.filter
		local names, sub = run{ filter = F.proto "udp" }
		assert.same({ "u4", "u6" }, names)
		assert.is_true(sub.kernel_filtered)
		local obj = {}
		function obj.match(_, e) return e.proto == "udp" end
		names, sub = run{ filter = obj }
		assert.same({ "u4", "u6" }, names)
		assert.is_false(sub.kernel_filtered)
		-- an explicit kernel_filter replaces the pushdown, and both apply:
		-- icmp in the kernel, udp in Lua, so nothing passes
		names = run{ filter = obj, kernel_filter = { proto = "icmp" } }
		assert.same({}, names)
		names = run{ filter = obj, kernel_filter = { proto = { "icmp", "udp" } } }
		assert.same({ "u4", "u6" }, names)
	end)

	it("ct.events: kernel_filter and filter together", function()
		topo:spawn("host", "timeout 5 sh -c 'sleep 0.2; for p in 11 12 13; do "
			.. "conntrack -I -s 192.0.2.20 -d 198.51.100.20 -p tcp --sport $p --dport 80 -t 30 --state ESTABLISHED; "
			.. "conntrack -I -s 192.0.2.20 -d 198.51.100.20 -p udp --sport $p --dport 53 -t 30; done'")
		local got = {}
		local f, s, c, closing = ct.events{ netns = ns, types = "new", timeout = 1,
			kernel_filter = { proto = "udp" }, filter = function(e) return e.orig.sport ~= 12 end }
		for ev in f, s, c, closing do
			got[#got + 1] = ev.proto .. ev.orig.sport
		end
		assert.same({ "udp11", "udp13" }, got)
		assert.is_true(s.kernel_filtered)
		assert.equals(3, s.received)
	end)

	it("dst with IPv4 and IPv6 alternatives passes matching IPv6 events", function()
		-- libnetfilter_conntrack's IPv4 dst check looks for attribute type
		-- 2 past the end of the CTA_TUPLE_IP nest; in an IPv6 event it
		-- finds CTA_TUPLE_PROTO there and rejects the event
		local names = run{ kernel_filter = { dst = { "198.51.100.0/24", "2001:db8:2::/64" } } }
		assert.same({ "t4", "u4", "t4x", "t6", "m7", "m0x107", "i4", "u6" }, names)
	end)

	it("an address field given in one family only stops the other family too", function()
		-- today src = IPv4 only lets every IPv6 event through (and dst =
		-- IPv4 only stops every IPv6 event): the fields do not mean the same
		local names = run{ kernel_filter = { src = "192.0.2.0/24" } }
		assert.same({ "t4", "u4", "m7", "m0x107", "i4" }, names)
		names = run{ kernel_filter = { src = "2001:db8:1::/48" } }
		assert.same({ "t6", "u6" }, names)
	end)
end)
