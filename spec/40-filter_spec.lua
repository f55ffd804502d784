-- Every pushed-down filter on a real table in a scratch namespace:
-- kernel-filtered results == pure-Lua results == the CLI's.  The algebra
-- itself on synthetic entries: spec/unit/40-filter_spec.lua.
local ct = require "conntrack"
local H = require "helpers"

local F = ct.filter

-- The flows of an array of entries, sorted, for assertions.
local function keys(list)
	return H.sorted((H.keyset(list)))
end

describe("filters on a real table", function()
	local ns, h, all
	H.private(function(_, n, hh) ns, h = n, hh end)

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
		assert.equals(48, populate())
		all = assert(h:list())
		assert.equals(48, #all)
	end)

	-- Each filter run three ways on the same table gives the same entries.
	local function check(f, want_kernel)
		local pushed = assert(h:list(f))
		local lua = assert(h:list(f, { pushdown = false }))
		local by_hand = H.select(all, function(e) return f:match(e) end)
		assert.same(keys(by_hand), keys(pushed), tostring(f) .. " (pushed down)")
		assert.same(keys(by_hand), keys(lua), tostring(f) .. " (all in Lua)")
		local _, parts = f:explain()
		local k = parts.kernel
		if want_kernel == false then
			assert.is_nil(k, tostring(f) .. " pushdown")
		elseif want_kernel ~= nil then
			assert.same(want_kernel, k, tostring(f) .. " pushdown")
		end
		-- and the kernel part alone, sent as plain dump options, is what the
		-- Lua model of it says (so each pushed key is applied as modelled)
		if k then
			local kernel_only = assert(h:list(k))
			local modelled = H.select(all, function(e) return H.spec_match(k, e) end)
			assert.same(keys(modelled), keys(kernel_only), tostring(f) .. " kernel part")
			assert.is_true(#kernel_only <= #all)
		end
		return pushed
	end

	it("family goes to the kernel", function()
		assert.equals(12, #check(F.family "ipv6", { family = "ipv6" }))
		assert.equals(36, #check(F.family "ipv4", { family = "ipv4" }))
	end)

	it("mark and mark/mask go to the kernel", function()
		local r = check(F.mark(7), { mark = 7, mark_mask = 0xffffffff })
		assert.is_true(#r > 0)
		r = check(F.mark(7, 0xff), { mark = 7, mark_mask = 0xff })
		assert.is_true(#r > #check(F.mark(7), { mark = 7, mark_mask = 0xffffffff }))
		check(F.mark(0x200, 0xf00), { mark = 0x200, mark_mask = 0xf00 })
		check(F.mark(0), { mark = 0, mark_mask = 0xffffffff })
	end)

	it("zone goes to the C matcher (and the kernel for zone > 0: it reads 0 as any zone)", function()
		assert.equals(4, #check(F.zone(5), { zone = 5 }))
		assert.equals(3, #check(F.zone(9), { zone = 9 }))
		assert.equals(41, #check(F.zone(0), false))
	end)

	it("status flags, set and clear, go to the kernel", function()
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
		-- an IPv6 address stays in C: the kernel's tuple filter selects nothing with one
		check(F.dst "2001:db8:2::2" * F.proto "tcp", { family = "ipv6", proto = 6 })
		-- a port without a protocol that has ports stays in Lua
		check(F.dport(53), nil)
		assert.is_nil(select(2, F.dport(53):explain()).kernel)
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
		check(F.src "192.0.2.0/24" * F.zone(0), { family = "ipv4" })
		check(F.any(F.src "2001:db8:1::/64" * F.dport(53), F.family "ipv6" * F.mark(0x207)), false)
		check(F { proto = "udp", dport = 53, src = "203.0.113.0/24" }, { family = "ipv4", proto = 17, dport = 53 })
		check(F.nat "snat" + F.proto "icmp")
		check(F.mark(1) * F.mark(2))
		check(F.state "ESTABLISHED" - F.mark(42))
		check(F.reply_dst "198.51.100.100" * F.reply_dport "40002-40004")
	end)

	it("agrees with the conntrack CLI", function()
		local function cli(args)
			local lines = H.cli_ok(ns, "-L " .. args)
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
		finally(function() h:delete_where(F.dst "198.51.100.7") end)
		local it, st, c, closing = ct.events { netns = ns, types = "new", timeout = 0.3, filter = f }
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
		-- the socket filter holds all of this filter: only the matches reached the socket
		assert.equals(2, st.received)
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
