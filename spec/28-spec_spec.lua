-- e:spec() and h:batch("put"): real flows of a router (TCP and UDP through
-- nft snat, masquerade, dnat and redirect rules, IPv4 and IPv6, ICMP echo)
-- and flows made through netlink (SCTP, GRE, zones, labels, a helper, a
-- rewritten reply tuple) read as create specs and created in another
-- namespace's table; `conntrack -L` of both tables must then print the
-- same lines.  Then "put" on a table that holds some of the flows already.
local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local A, P = hosts.routed_addr, hosts.port

-- A -L line as both tables print it for the same flow: the timeout ticks,
-- use= counts references, counters are not part of a spec.
local function same(line)
	return (H.comparable(line):gsub(" packets=%d+ bytes=%d+", ""))
end

local function cli_set(ns)
	local set, n = {}, 0
	for _, line in ipairs(H.cli_ok(ns, "-L")) do
		set[same(line)] = true
		n = n + 1
	end
	return set, n
end

-- Every line of a missing from b, and the other way.
local function diff(a, b)
	local out = {}
	for l in pairs(a) do
		if not b[l] then out[#out + 1] = "only in the router's: " .. l end
	end
	for l in pairs(b) do
		if not a[l] then out[#out + 1] = "only in the copy:     " .. l end
	end
	table.sort(out)
	return table.concat(out, "\n")
end

-- A labels extension on every new flow of namespace role: a rule that may
-- set a label (without one the kernel keeps no labels).
local LABELS = "table inet lct_labels {\n\tchain c {\n"
	.. "\t\ttype filter hook output priority 0; policy accept;\n"
	.. "\t\tmeta mark 0xdead ct label set 127\n\t}\n}"

-- The labels of every flow of a handle's table, by flow.
local function labels_of(h)
	local t = {}
	for e in h:dump() do
		local l = {}
		for b in pairs(e.labels or {}) do l[#l + 1] = tostring(b) end
		table.sort(l)
		t[H.key(e)] = table.concat(l, ",")
	end
	return t
end

describe("e:spec() of real flows", function()
	local topo, h, copy_topo, copy_ns, hc
	local flows

	lazy_setup(function()
		topo = hosts.new { nat = { snat = { ports = "40000-40009" }, masquerade = true, dnat = true,
			redirect = true } }
		assert(topo:nft("router", LABELS))
		topo:serve()
		h = assert(ct.open { netns = topo.ns.router })
		flows = H.nat_flows(topo)
		assert(topo:exec("client", "ping -c 1 -W 2 " .. A.server))
		assert(topo:exec("client", "ping -6 -c 1 -W 2 " .. A.server6))
		-- flows made through netlink, with what traffic here does not make
		local made = {
			{ proto = "sctp", src = "192.0.2.2", dst = "198.51.100.2", sport = 5000, dport = 5001,
				state = "ESTABLISHED", orig_vtag = 0x01020304, reply_vtag = 0x0a0b0c0d, timeout = 300 },
			{ proto = "gre", src = "192.0.2.2", dst = "198.51.100.2", srckey = 7, dstkey = 9,
				reply_srckey = 11, reply_dstkey = 7, timeout = 300 },
			{ proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 5353, dport = 53,
				zone = 3, mark = 0x42, labels = { 1, 70 }, timeout = 300, status = { "SEEN_REPLY" } },
			{ proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 5354, dport = 53,
				orig_zone = 4, timeout = 300 },
			{ proto = "udp", src = "192.0.2.2", dst = "198.51.100.2", sport = 5356, dport = 53,
				reply_zone = 5, timeout = 300 },
			{ proto = "tcp", src = "192.0.2.2", dst = "198.51.100.2", sport = 5021, dport = 21,
				helper = "ftp", state = "ESTABLISHED", status = { "SEEN_REPLY", "ASSURED" },
				tcp_flags_orig = 0x0c, tcp_flags_reply = 0x0c, tcp_wscale_orig = 7, tcp_wscale_reply = 9,
				timeout = 300 },
			{ proto = "tcp", src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 5022, dport = 22,
				reply_src = "2001:db8:2::9", reply_dport = 6022, state = "SYN_SENT", timeout = 300 },
			{ proto = "udp", src = "192.0.2.2", dst = "203.0.113.10", sport = 5355, dport = 53,
				dnat = "198.51.100.2:5353", snat = { addr = "198.51.100.100" }, timeout = 300,
				status = { "FIXED_TIMEOUT" } },
		}
		for i, s in ipairs(made) do
			local ok, msg = h:create(s)
			assert(ok, "made flow " .. i .. ": " .. tostring(msg))
		end
		copy_topo, copy_ns, hc = H.scratch()
		assert(copy_topo:nft("host", LABELS))
	end)

	lazy_teardown(function()
		if hc then hc:close() end
		if h then h:close() end
		if copy_topo then copy_topo:destroy() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	-- The router's entry of the flow that left the client from sport.
	local function find(sport)
		return assert(h:list(ct.filter.sport(sport))[1], "no entry for sport " .. sport)
	end

	it("gives NAT as snat/dnat from the reply tuple, where the status bits say so", function()
		local s = find(flows.snat):spec()
		assert.same({ addr = A.snat, port = s.snat.port }, s.snat)
		assert.is_true(s.snat.port >= 40000 and s.snat.port <= 40009)
		assert.is_nil(s.dnat)
		s = find(flows.both):spec()
		assert.same({ addr = A.snat, port = s.snat.port }, s.snat)
		assert.same({ addr = A.server, port = P.dnat_to }, s.dnat)
		assert.equals(A.public, s.dst)
		s = find(flows.redir):spec()
		assert.same({ addr = A.redirect, port = P.redirect_to }, s.dnat)
		s = find(flows.plain):spec()
		assert.is_nil(s.snat)
		assert.is_nil(s.dnat)
		assert.is_nil(s.reply_src)
		assert.equals(find(flows.plain).state, s.state)
		assert.same({ "SEEN_REPLY", "ASSURED" }, s.status)
		assert.is_number(s.tcp_wscale_orig)
		assert.is_number(s.tcp_flags_reply)
		assert.equals("tcp", s.proto)
		assert.equals("ipv4", s.family)
	end)

	it("gives the keys ct.create takes, and nothing else", function()
		local takes = {}
		for _, k in ipairs({ "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
			"icmp_id", "srckey", "dstkey", "reply_src", "reply_dst", "reply_sport", "reply_dport",
			"reply_srckey", "reply_dstkey", "zone", "orig_zone", "reply_zone", "timeout", "mark",
			"secmark", "status", "state", "labels", "helper", "snat", "dnat", "tcp_flags_orig",
			"tcp_flags_reply", "tcp_wscale_orig", "tcp_wscale_reply", "orig_vtag", "reply_vtag",
			"role" }) do
			takes[k] = true
		end
		local n = 0
		for e in h:dump() do
			local s = e:spec()
			for k in pairs(s) do
				assert(takes[k], "spec key " .. k .. " of " .. tostring(e))
			end
			n = n + 1
		end
		assert.is_true(n >= 17, "flows: " .. n)
	end)

	it("recreates every flow in another table: conntrack -L prints the same lines", function()
		assert(hc:flush())
		local specs = {}
		for e in h:dump() do specs[#specs + 1] = e:spec() end
		for i, s in ipairs(specs) do
			local ok, msg = hc:create(s)
			assert(ok, "flow " .. i .. ": " .. tostring(msg))
		end
		local a, na = cli_set(topo.ns.router)
		local b, nb = cli_set(copy_ns)
		assert.equals(na, nb)
		assert.equals("", diff(a, b))
		assert.same(labels_of(h), labels_of(hc))
		-- and the module's own text agrees with the CLI's on the copy
		for e in hc:dump() do
			assert(b[same(tostring(e))], tostring(e))
		end
	end)

	it("works on events the same way", function()
		assert(hc:flush())
		local sub = assert(h:subscribe { types = { "new", "update" } })
		local s0 = { proto = "tcp", src = "192.0.2.2", dst = "198.51.100.2", sport = 6000, dport = 80,
			state = "ESTABLISHED", status = { "SEEN_REPLY", "ASSURED" }, tcp_wscale_orig = 7,
			tcp_wscale_reply = 7, tcp_flags_orig = 0x03, tcp_flags_reply = 0x03, timeout = 300,
			snat = "198.51.100.100:40005", mark = 9, labels = { 3 } }
		-- the event of the next change of this flow of type ty
		local function event(ty)
			local stop = H.now() + 5
			while H.now() < stop do
				for _, e in ipairs(sub:read(16)) do
					if e.type == ty and e.orig.sport == 6000 then return e end
				end
				sub:wait(0.2)
			end
			error("no " .. ty .. " event for the flow")
		end
		assert(h:create(s0))
		local new = event("new")
		assert(h:update(new, { labels = { 3, 4 }, mark = 10 }))
		local upd = event("update")
		sub:close()
		local s = new:spec()
		assert.same({ addr = "198.51.100.100", port = 40005 }, s.snat)
		assert.equals(9, s.mark)
		assert.equals(7, s.tcp_wscale_reply)
		assert(hc:create(s))
		-- the update event carries what changed (no protocol info here): put updates the copy
		s = upd:spec()
		assert.same({ 3, 4 }, s.labels)
		assert.equals(10, s.mark)
		local n, existing, fails = hc:batch("put", { s })
		assert.same({}, fails)
		assert.equals(1, n)
		assert.equals(1, existing)
		local a = H.find(H.cli_ok(topo.ns.router, "-L -p tcp --orig-port-src 6000"), "sport=6000")
		local b = H.find(H.cli_ok(copy_ns, "-L -p tcp --orig-port-src 6000"), "sport=6000")
		assert.equals(same(a), same(b))
		assert.matches("mark=10", b)
		assert.same({ [3] = true, [4] = true }, assert(hc:get { proto = "tcp", src = s.src, dst = s.dst,
			sport = 6000, dport = 80 }).labels)
	end)

	it("batch put creates what is missing and updates what is there", function()
		assert(hc:flush())
		local entries = h:list()
		local specs = {}
		for i, e in ipairs(entries) do specs[i] = e:spec() end
		-- half of them there already, each with other values than the router's
		local half = {}
		for i = 1, #specs, 2 do
			local s = {}
			for k, v in pairs(specs[i]) do s[k] = v end
			s.timeout, s.mark, s.labels = 77, 0x77, nil
			if s.proto == "tcp" and s.state == "ESTABLISHED" then
				s.state, s.tcp_flags_orig, s.tcp_wscale_orig = "SYN_RECV", 0, 0
			end
			if s.status then s.status = { s.status[1] ~= "FIXED_TIMEOUT" and s.status[1] or nil } end
			half[#half + 1] = s
		end
		local n, missing, fails = hc:batch("create", half)
		assert.same({}, fails)
		assert.equals(#half, n)
		assert.equals(0, missing)
		n, missing, fails = hc:batch("put", specs)
		assert.same({}, fails)
		assert.equals(#specs, n)
		assert.equals(#half, missing)      -- the flows that were there: updated
		local a = cli_set(topo.ns.router)
		local b = cli_set(copy_ns)
		assert.equals("", diff(a, b))
		assert.same(labels_of(h), labels_of(hc))
		-- again: every flow there, every one updated
		n, missing, fails = hc:batch("put", specs)
		assert.same({}, fails)
		assert.equals(#specs, n)
		assert.equals(#specs, missing)
	end)

	it("batch put leaves what the kernel keeps: SEEN_REPLY, ASSURED, a fixed timeout", function()
		assert(hc:flush())
		local s1 = { proto = "udp", src = "192.0.2.8", dst = "198.51.100.8", sport = 1, dport = 2, timeout = 100,
			status = { "SEEN_REPLY", "ASSURED" } }
		local s2 = { proto = "udp", src = "192.0.2.8", dst = "198.51.100.8", sport = 3, dport = 2, timeout = 100,
			status = { "FIXED_TIMEOUT" } }
		assert(hc:create(s1))
		assert(hc:create(s2))
		local n, existing, fails = hc:batch("put", {
			{ proto = "udp", src = "192.0.2.8", dst = "198.51.100.8", sport = 1, dport = 2, timeout = 200,
				mark = 5, status = { "SEEN_REPLY" } },
			{ proto = "udp", src = "192.0.2.8", dst = "198.51.100.8", sport = 3, dport = 2, timeout = 300,
				mark = 6, status = { "FIXED_TIMEOUT" } },
		})
		assert.same({}, fails)
		assert.equals(2, n)
		assert.equals(2, existing)
		local e1 = assert(hc:get { proto = "udp", src = "192.0.2.8", dst = "198.51.100.8", sport = 1, dport = 2 })
		local e2 = assert(hc:get { proto = "udp", src = "192.0.2.8", dst = "198.51.100.8", sport = 3, dport = 2 })
		assert.equals(5, e1.mark)
		assert.is_true(e1.status.ASSURED)
		assert.equals(6, e2.mark)
		assert.is_true(e2.timeout <= 100)
	end)

	it("load with mode put: save text and arrays, created or updated", function()
		assert(hc:flush())
		local save = {}
		for e in h:dump(ct.filter.proto("udp", "tcp")) do
			save[#save + 1] = ct.format.save(e)
		end
		local text = table.concat(save, "\n") .. "\n"
		-- a line that cannot be read, and one flow there already with another mark
		text = text .. "-I -p udp -s 192.0.2.77\n"
		local first = assert(h:list { proto = "udp", sport = 5353 })[1]:spec()
		local other = {}
		for k, v in pairs(first) do other[k] = v end
		other.timeout = 50    -- (save lines carry no mark: the timeout tells)
		assert(hc:create(other))
		local n, existing, fails = hc:load(text, { mode = "put" })
		assert.equals(#save, n)
		assert.equals(1, existing)
		assert.equals(1, #fails)
		assert.equals(#save + 1, fails[1].line)
		assert.matches("^load: line " .. (#save + 1), fails[1].message)
		assert.is_true(assert(hc:get { proto = "udp", src = first.src, dst = first.dst, sport = first.sport,
			dport = first.dport, zone = first.zone }).timeout > 100)
		-- all there: all updated
		n, existing, fails = hc:load(text, { mode = "put" })
		assert.equals(#save, n)
		assert.equals(#save, existing)
		assert.equals(1, #fails)
		-- arrays too (save lines carry no helper, and a flow there keeps its own: afresh)
		assert(hc:flush())
		local specs = {}
		for e in h:dump() do specs[#specs + 1] = e:spec() end
		for round = 0, 1 do
			n, existing, fails = hc:load(specs, { mode = "put", batch = 5 })
			assert.same({}, fails)
			assert.equals(#specs, n)
			assert.equals(round * #specs, existing)
			assert.equals("", diff(cli_set(topo.ns.router), cli_set(copy_ns)))
		end
	end)

	it("batch put reports each bad item and goes on", function()
		local n, missing, fails = hc:batch("put", {
			{ proto = "udp", src = "192.0.2.9", dst = "198.51.100.9", sport = 1, dport = 2, timeout = 30 },
			{ proto = "udp", src = "192.0.2.9", dst = "198.51.100.9", sport = 1, timeout = 30 },
			{ proto = "udp", src = "192.0.2.9", dst = "198.51.100.9", sport = 3, dport = 2, timeout = 30,
				mark_mask = 1 },
			{ proto = "udp", src = "192.0.2.9", dst = "198.51.100.9", sport = 4, dport = 2 },
		})
		assert.equals(1, n)
		assert.equals(0, missing)
		assert.equals(3, #fails)
		assert.equals(2, fails[1].index)
		assert.equals(ct.errno.EINVAL, fails[1].errno)
		assert.matches("^batch: item 2: put: bad argument 'dport' %(missing%)", fails[1].message)
		assert.matches("^batch: item 3: put: bad argument 'mark_mask'", fails[2].message)
		assert.matches("^batch: item 4: put: bad argument 'timeout'", fails[3].message)
		assert.has_error(function() hc:batch("put", { 1 }, {}) end,
			"batch: bad argument 'changes' (only for \"update\")")
	end)

	it("raises on a bad self", function()
		local e = find(flows.plain)
		assert.has_error(function() e.spec(42) end)
		local ok, err = pcall(e.spec, {})
		assert.is_false(ok)
		assert.matches("spec", err)
	end)
end)
