-- The core module against the real kernel table, cross-checked both ways
-- with the conntrack CLI: what the module creates, `conntrack -L` shows;
-- what `conntrack -I` creates, the module reads field by field, and
-- tostring(e) / e:format(...) equal the CLI's lines.
-- Everything happens in scratch namespaces (hosts.scratch, H.private) or in
-- the private namespace tools/netns-run made for the run.

local ct = require "conntrack"
local H = require "helpers"

local E = ct.errno

H.assert_private()

-- Every entry of a dump (or nil) whose key is k.
local function dumped(h, k, opts)
	for e in h:dump(opts) do
		if H.key(e) == k then return e end
	end
	return nil
end

local function count_dump(h, opts)
	local n = 0
	for _ in h:dump(opts) do n = n + 1 end
	return n
end

describe("core: handles", function()
	local ns
	H.private(function(_, n) ns = n end)

	it("open() returns a handle with every method, getfd() a netlink socket", function()
		local h = assert(ct.open())
		assert.equals("userdata", type(h))
		assert.matches("^conntrack%.handle %(", tostring(h))
		for _, m in ipairs{ "dump", "list", "get", "create", "add", "update", "delete",
			"flush", "count", "max", "stats", "batch", "close", "getfd" } do
			assert.equals("function", type(h[m]), m)
		end
		local fd = h:getfd()
		assert.is_true(H.is_integer(fd))
		assert.matches("^socket:", H.fd_target(fd))
		assert.is_true(h:close())
	end)

	it("close() is idempotent, and a closed handle raises naming the function", function()
		local h = assert(ct.open())
		assert.is_true(h:close())
		assert.is_true(h:close())
		assert.equals("conntrack.handle (closed)", tostring(h))
		for _, m in ipairs{ "dump", "list", "count", "max", "stats", "getfd" } do
			local ok, msg = pcall(h[m], h)
			assert.is_false(ok)
			assert.matches(m .. ": attempt to use a closed handle", msg, 1, true)
		end
		local ok, msg = pcall(h.get, h, { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1, dport = 2 })
		assert.is_false(ok)
		assert.matches("get: attempt to use a closed handle", msg, 1, true)
	end)

	-- (the syntax is 5.4's: compiled from a string there, so that the other
	-- versions can load this file)
	local in_close_scope = H.load54[[
		local ct, fds = ...
		local keep, inside
		do
			local h <close> = assert(ct.open())
			keep, inside = h, fds()
			assert(type(h:count()) == "number")
		end
		return keep, inside
	]]

	H.it54("a <close> variable closes the handle at the end of its scope", function()
		local before = H.fds_settled()
		local keep, inside = in_close_scope(ct, H.fds)
		assert.equals(before + 1, inside)
		assert.equals("conntrack.handle (closed)", tostring(keep))
		assert.equals(before, H.fds())
	end)

	it("garbage collection closes dropped handles", function()
		local before = H.fds_settled()
		local hs = {}
		for i = 1, 20 do hs[i] = assert(ct.open()) end
		assert.equals(20, #hs)
		assert.equals(before + 20, H.fds())
		hs = nil -- luacheck: ignore 311 (dropped for the collector)
		assert.equals(before, H.fds_settled())
	end)

	it("binds to a namespace by name and by path, and only sees that table", function()
		local h1 = assert(ct.open{ netns = ns })
		local h2 = assert(ct.open{ netns = "/run/netns/" .. ns, rcvbuf = 1024 * 1024 })
		local here = assert(ct.open())
		finally(function() h1:close() h2:close() here:close() end)
		assert.is_true(h1:flush())
		here:flush()
		local spec = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 5001, dport = 53, timeout = 60 }
		assert.is_true(h1:create(spec))
		assert.equals(1, h1:count())
		assert.equals(1, h2:count())
		assert.equals(0, here:count())
		assert.is_truthy(h2:get(H.tuple(spec)))
		assert.is_nil((here:get(H.tuple(spec))))
		-- the CLI inside the namespace agrees; outside it sees nothing
		assert.equals(1, #H.cli_ok(ns, "-L"))
		assert.equals(0, #H.cli_ok(nil, "-L"))
		-- the handle did not move this thread: a new default-namespace handle still sees 0
		local h3 = assert(ct.open())
		assert.equals(0, h3:count())
		h3:close()
	end)

	it("binds to the namespace of a process, by /proc/PID/ns/net", function()
		local p = assert(io.popen("exec ip netns exec " .. ns .. " sh -c 'echo $$; exec sleep 10'"))
		local pid = assert(tonumber(p:read("*l")))
		local h = assert(ct.open{ netns = "/proc/" .. pid .. "/ns/net" })
		finally(function()
			h:close()
			os.execute("kill " .. pid .. " 2>/dev/null")
			p:close()
		end)
		local inside = assert(ct.open{ netns = ns })
		assert.is_true(inside:flush())
		local spec = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 5002, dport = 53, timeout = 60 }
		assert.is_true(inside:create(spec))
		assert.equals(1, h:count())
		assert.is_truthy(h:get(H.tuple(spec)))
		assert.is_true(inside:flush())
		inside:close()
	end)

	it("open() of a missing namespace returns nil, message, ENOENT", function()
		local h, msg, errno = ct.open{ netns = "lct-no-such-namespace" }
		assert.is_nil(h)
		assert.equals("open: netns 'lct-no-such-namespace': No such file or directory", msg)
		assert.equals(E.ENOENT, errno)
		h, msg, errno = ct.open{ netns = "/nonexistent/ns" }
		assert.is_nil(h)
		assert.matches("^open: netns '/nonexistent/ns': ", msg)
		assert.equals(E.ENOENT, errno)
	end)
end)

describe("core: module-level functions on the default handle", function()
	after_each(function()
		ct.flush()
	end)

	it("work on this process's namespace and agree with the CLI", function()
		local h = assert(ct.default())
		assert.equals(h, ct.default())
		assert.is_true(ct.flush())
		local spec = { src = "198.51.100.7", dst = "198.51.100.8", proto = "tcp", sport = 7001,
			dport = 22, timeout = 90, state = "ESTABLISHED", mark = 5 }
		assert.is_true(ct.create(spec))
		local e = assert(ct.get(H.tuple(spec)))
		assert.equals(5, e.mark)
		assert.equals(1, ct.count())
		assert.equals(tonumber(H.cli_ok(nil, "-C")[1]), ct.count())
		assert.is_true(ct.update(H.tuple(spec), { mark = 6 }))
		assert.equals(6, ct.get(H.tuple(spec)).mark)
		local n = 0
		for x in ct.dump() do
			n = n + 1
			assert.equals(H.key(e), H.key(x))
		end
		assert.equals(1, n)
		assert.equals(1, #ct.list())
		assert.is_number(ct.max())
		assert.is_table(ct.stats().total)
		local ok, missing = ct.batch("delete", { H.tuple(spec) })
		assert.equals(1, ok)
		assert.equals(0, missing)
		assert.equals(0, ct.count())
		assert.is_true(ct.add(spec))
		assert.is_true(ct.delete(H.tuple(spec)))
		assert.equals(0, #H.cli_ok(nil, "-L"))
	end)

	it("reopen the default handle after it was closed", function()
		local h = assert(ct.default())
		h:close()
		local h2 = assert(ct.default())
		assert.are_not.equal(h, h2)
		assert.is_number(ct.count())
	end)

	it("reopen it from a single request as well, each on a new handle", function()
		local spec = { src = "198.51.100.9", dst = "198.51.100.10", proto = "udp", sport = 5353,
			dport = 53, timeout = 60 }
		local calls = {
			function() return ct.create(spec) end,
			function() return ct.get(H.tuple(spec)) end,
			function() return ct.update(H.tuple(spec), { mark = 9 }) end,
			function() return ct.delete(H.tuple(spec)) end,
		}
		local seen = {}
		for i, call in ipairs(calls) do
			local h = assert(ct.default())
			seen[h] = true
			h:close()
			assert.truthy(call(), "call " .. i)
			assert.is_nil(seen[ct.default()])
			assert.equals("handle", ct.type(ct.default()))
		end
		assert.equals(0, ct.count())
		-- A programmer error names the caller's line and the user's function.
		local ok, err = pcall(function() ct.delete(5) end)
		assert.is_false(ok)
		assert.matches("_spec%.lua:%d+: delete: bad argument 'tuple' " ..
			"%(table expected, got number%)$", err)
	end)
end)

describe("core: what the module creates, `conntrack -L` shows", function()
	local ns, h

	H.private(function(_, n, hh) ns, h = n, hh end)

	before_each(function()
		assert(h:flush())
	end)

	-- spec, fragment finding its CLI line, expected parse (orig/reply as the CLI names them)
	local cases = {
		{ "tcp v4, state, mark, ASSURED",
			{ src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1000, dport = 80, timeout = 120,
				state = "ESTABLISHED", mark = 7, status = { "ASSURED" } },
			{ proto = "tcp", protonum = 6, state = "ESTABLISHED", mark = 7,
				orig = { src = "192.0.2.1", dst = "192.0.2.2", sport = 1000, dport = 80 },
				reply = { src = "192.0.2.2", dst = "192.0.2.1", sport = 80, dport = 1000 },
				flags = { UNREPLIED = true, ASSURED = true } } },
		{ "udp v6 in zone 3",
			{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "udp", sport = 1001, dport = 53, timeout = 60, zone = 3 },
			{ proto = "udp", protonum = 17, zone = 3, mark = 0,
				orig = { src = "2001:db8:1::1", dst = "2001:db8:1::2", sport = 1001, dport = 53 },
				reply = { src = "2001:db8:1::2", dst = "2001:db8:1::1", sport = 53, dport = 1001 },
				flags = { UNREPLIED = true } } },
		{ "icmp echo v4",
			{ src = "192.0.2.1", dst = "192.0.2.2", proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 1002, timeout = 30 },
			{ proto = "icmp", protonum = 1,
				orig = { src = "192.0.2.1", dst = "192.0.2.2", type = 8, code = 0, id = 1002 },
				reply = { src = "192.0.2.2", dst = "192.0.2.1", type = 0, code = 0, id = 1002 } } },
		{ "icmpv6 echo (proto 'icmp' with v6 addresses becomes icmpv6)",
			{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "icmp", icmp_type = 128, icmp_id = 1003, timeout = 30 },
			{ proto = "icmpv6", protonum = 58,
				orig = { src = "2001:db8:1::1", dst = "2001:db8:1::2", type = 128, code = 0, id = 1003 },
				reply = { src = "2001:db8:1::2", dst = "2001:db8:1::1", type = 129, code = 0, id = 1003 } } },
		{ "DNAT v4 tcp from reply_* fields",
			{ src = "192.0.2.2", dst = "203.0.113.10", proto = "tcp", sport = 1004, dport = 8003,
				reply_src = "198.51.100.2", reply_dst = "192.0.2.2", reply_sport = 9003, reply_dport = 1004,
				timeout = 100, state = "SYN_SENT" },
			{ proto = "tcp", state = "SYN_SENT",
				orig = { src = "192.0.2.2", dst = "203.0.113.10", sport = 1004, dport = 8003 },
				reply = { src = "198.51.100.2", dst = "192.0.2.2", sport = 9003, dport = 1004 } } },
		{ "SNAT v6 udp with a translated port",
			{ src = "2001:db8:1::2", dst = "2001:db8:2::2", proto = "udp", sport = 1005, dport = 8001,
				reply_src = "2001:db8:2::2", reply_dst = "2001:db8:2::100", reply_sport = 8001, reply_dport = 40005,
				timeout = 100 },
			{ proto = "udp",
				orig = { src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 1005, dport = 8001 },
				reply = { src = "2001:db8:2::2", dst = "2001:db8:2::100", sport = 8001, dport = 40005 } } },
		{ "sctp by protocol number",
			{ src = "192.0.2.1", dst = "192.0.2.2", proto = 132, sport = 1006, dport = 9, timeout = 50 },
			{ proto = "sctp", protonum = 132, state = "NONE",
				orig = { src = "192.0.2.1", dst = "192.0.2.2", sport = 1006, dport = 9 } } },
		{ "udplite",
			{ src = "192.0.2.1", dst = "192.0.2.2", proto = "udplite", sport = 1007, dport = 9, timeout = 50 },
			{ proto = "udplite", protonum = 136,
				orig = { src = "192.0.2.1", dst = "192.0.2.2", sport = 1007, dport = 9 } } },
	}

	for _, c in ipairs(cases) do
		local name, spec, want = c[1], c[2], c[3]
		it(name, function()
			assert.is_true(h:create(spec))
			local frag = spec.sport and ("sport=" .. spec.sport .. " ") or ("id=" .. spec.icmp_id .. " ")
			local lines = H.cli_ok(ns, "-L")
			assert.equals(1, #lines)
			local line = H.find(lines, frag)
			assert.is_truthy(line, table.concat(lines, "\n"))
			local got = H.parse(line)
			assert.is_true(got.timeout <= spec.timeout and got.timeout >= spec.timeout - 2, line)
			for k, v in pairs(want) do
				if type(v) == "table" then
					for k2, v2 in pairs(v) do
						assert.equals(v2, got[k][k2], k .. "." .. k2 .. " in " .. line)
					end
				else
					assert.equals(v, got[k], k .. " in " .. line)
				end
			end
			if not want.flags or not want.flags.ASSURED then
				assert.is_nil(got.flags.ASSURED, line)
			end
			assert.equals(1, got.use)
			-- and the module reads back what it wrote, its line equal to the CLI's
			local e = assert(h:get(H.tuple(spec)))
			assert.equals(got.orig.src, e.orig.src)
			assert.equals(got.reply.dst, e.reply.dst)
			local k = H.key(e)
			local mine, cli = H.same_line(function() return tostring(dumped(h, k)) end,
				function() return H.find(H.cli_ok(ns, "-L"), frag) end)
			assert.equals(cli, mine)
		end)
	end

	it("a numeric protocol without a name reads as its number", function()
		local spec = { src = "192.0.2.1", dst = "192.0.2.2", proto = 50, timeout = 40 }
		assert.is_true(h:create(spec))
		local line = H.cli_ok(ns, "-L")[1]
		assert.matches("^unknown%s+50 ", line)
		local e = assert(h:get(H.tuple(spec)))
		assert.equals("50", e.proto)
		assert.equals(50, e.protonum)
		assert.is_nil(e.orig.sport)
		local k = H.key(e)
		local mine, cli = H.same_line(function() return tostring(dumped(h, k)) end,
			function() return H.cli_ok(ns, "-L")[1] end)
		assert.equals(cli, mine)
	end)

	it("create refuses a duplicate with EEXIST; add leaves it as it is and says so (as conntrack -A)", function()
		local spec = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1010, dport = 80,
			timeout = 100, state = "ESTABLISHED", mark = 1 }
		assert.is_true(h:create(spec))
		local ok, msg, errno = h:create(spec)
		assert.is_nil(ok)
		assert.equals("create: File exists", msg)
		assert.equals(E.EEXIST, errno)
		spec.mark, spec.timeout = 2, 300
		assert.is_false(h:add(spec))
		local got = H.parse(H.cli_ok(ns, "-L")[1])
		assert.equals(1, got.mark)
		assert.is_true(got.timeout <= 100)
		-- the CLI's -A does the same: exit 0, "0 flow entries have been added", the entry unchanged
		local _, okc, err = H.cli(ns, "-A -s 192.0.2.1 -d 192.0.2.2 -p tcp --sport 1010 --dport 80 -t 300 "
			.. "--state ESTABLISHED -m 3")
		assert.is_true(okc)
		assert.matches("0 flow entries have been added", err)
		assert.equals(1, H.parse(H.cli_ok(ns, "-L")[1]).mark)
		assert.equals(1, h:count())
		-- add of a new flow creates it
		spec.sport = 1011
		assert.is_true(h:add(spec))
		assert.equals(2, #H.cli_ok(ns, "-L"))
	end)

	it("create accepts status {ASSURED} and {ASSURED, CONFIRMED} alike (the library adds CONFIRMED)", function()
		local a = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1020, dport = 80,
			timeout = 100, state = "ESTABLISHED", status = { "ASSURED" } }
		local b = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1021, dport = 80,
			timeout = 100, state = "ESTABLISHED", status = { "ASSURED", "CONFIRMED" } }
		assert.is_true(h:create(a))
		assert.is_true(h:create(b))
		for _, s in ipairs{ a, b } do
			local e = assert(h:get(H.tuple(s)))
			assert.is_true(e.status.ASSURED)
			assert.is_true(e.status.CONFIRMED)
			assert.is_nil(e.status.SEEN_REPLY)
		end
		assert.equals(2, #H.cli_ok(ns, "-L -u ASSURED"))
	end)
end)

describe("core: what `conntrack -I` creates, the module reads", function()
	local ns, h

	H.private(function(_, n, hh) ns, h = n, hh end)

	before_each(function()
		assert(h:flush())
	end)

	-- CLI arguments, the tuple the module looks it up by, fragment of its line, expected fields
	local cases = {
		{ "tcp v4 with state, mark and ASSURED",
			"-p tcp -s 192.0.2.1 -d 192.0.2.2 --sport 1100 --dport 443 -t 200 --state ESTABLISHED -u ASSURED -m 0x42",
			{ src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1100, dport = 443 },
			{ family = "ipv4", proto = "tcp", protonum = 6, state = "ESTABLISHED", mark = 0x42, timeout = 200,
				orig = { src = "192.0.2.1", dst = "192.0.2.2", sport = 1100, dport = 443 },
				reply = { src = "192.0.2.2", dst = "192.0.2.1", sport = 443, dport = 1100 },
				status = { ASSURED = true, CONFIRMED = true } } },
		{ "udp v6 in zone 12",
			"-p udp -s 2001:db8:1::1 -d 2001:db8:1::2 --sport 1101 --dport 53 -t 60 -w 12",
			{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "udp", sport = 1101, dport = 53, zone = 12 },
			{ family = "ipv6", proto = "udp", protonum = 17, zone = 12, mark = 0, timeout = 60,
				orig = { src = "2001:db8:1::1", dst = "2001:db8:1::2", sport = 1101, dport = 53 },
				reply = { src = "2001:db8:1::2", dst = "2001:db8:1::1", sport = 53, dport = 1101 } } },
		{ "icmp v4",
			"-p icmp -s 192.0.2.1 -d 192.0.2.2 --icmp-type 8 --icmp-code 0 --icmp-id 1102 -t 30",
			{ src = "192.0.2.1", dst = "192.0.2.2", proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 1102 },
			{ family = "ipv4", proto = "icmp", protonum = 1, timeout = 30,
				orig = { src = "192.0.2.1", dst = "192.0.2.2", icmp_type = 8, icmp_code = 0, icmp_id = 1102 },
				reply = { src = "192.0.2.2", dst = "192.0.2.1", icmp_type = 0, icmp_code = 0, icmp_id = 1102 } } },
		{ "icmpv6",
			"-p icmpv6 -s 2001:db8:1::1 -d 2001:db8:1::2 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 1103 -t 30",
			{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "icmpv6", icmp_type = 128, icmp_id = 1103 },
			{ family = "ipv6", proto = "icmpv6", protonum = 58,
				orig = { src = "2001:db8:1::1", dst = "2001:db8:1::2", icmp_type = 128, icmp_code = 0, icmp_id = 1103 },
				reply = { src = "2001:db8:1::2", dst = "2001:db8:1::1", icmp_type = 129, icmp_code = 0, icmp_id = 1103 } } },
		{ "DNAT tcp",
			"-p tcp -s 192.0.2.2 -d 203.0.113.10 --sport 1104 --dport 8003 -r 198.51.100.2 -q 192.0.2.2 "
				.. "--reply-port-src 9003 --reply-port-dst 1104 -t 100 --state SYN_SENT",
			{ src = "192.0.2.2", dst = "203.0.113.10", proto = "tcp", sport = 1104, dport = 8003 },
			{ proto = "tcp", state = "SYN_SENT",
				orig = { src = "192.0.2.2", dst = "203.0.113.10", sport = 1104, dport = 8003 },
				reply = { src = "198.51.100.2", dst = "192.0.2.2", sport = 9003, dport = 1104 } } },
		{ "SNAT udp, replied",
			"-p udp -s 192.0.2.2 -d 198.51.100.2 --sport 1105 --dport 8001 -r 198.51.100.2 -q 198.51.100.100 "
				.. "--reply-port-src 8001 --reply-port-dst 40001 -t 100 -u SEEN_REPLY",
			{ src = "192.0.2.2", dst = "198.51.100.2", proto = "udp", sport = 1105, dport = 8001 },
			{ proto = "udp", status = { SEEN_REPLY = true },
				orig = { src = "192.0.2.2", dst = "198.51.100.2", sport = 1105, dport = 8001 },
				reply = { src = "198.51.100.2", dst = "198.51.100.100", sport = 8001, dport = 40001 } } },
	}

	local function frag_of(t)
		return t.sport and ("sport=" .. t.sport .. " ") or ("id=" .. t.icmp_id .. " ")
	end

	for _, c in ipairs(cases) do
		local name, args, tuple, want = c[1], c[2], c[3], c[4]
		it(name .. ": field by field, tostring and format equal the CLI's lines", function()
			H.cli_ok(ns, "-I " .. args)
			local e = assert(h:get(tuple))
			for k, v in pairs(want) do
				if k == "timeout" then
					assert.is_true(e.timeout <= v and e.timeout >= v - 2, "timeout " .. e.timeout)
				elseif type(v) == "table" then
					local sub = e[k]
					for k2, v2 in pairs(v) do
						assert.equals(v2, sub[k2], k .. "." .. k2)
					end
				else
					assert.equals(v, e[k], k)
				end
			end
			-- absent attributes read as nil
			assert.is_nil(e.helper)
			assert.is_nil(e.secctx)
			assert.is_nil(e.stop)
			assert.is_nil(e.labels)
			if not tuple.zone then assert.is_nil(e.zone) end
			-- accounting and timestamps are on in the scratch namespace
			assert.equals(0, e.orig.packets)
			assert.equals(0, e.reply.bytes)
			assert.is_true(e.start > 0)

			-- the same flow in a dump; its id is the CLI's -o id
			local frag = frag_of(tuple)
			local k = H.key(e)
			local d = assert(dumped(h, k))
			assert.equals(1, d.use)
			local idline = assert(H.find(H.cli_ok(ns, "-L -o id"), frag))
			assert.equals(d.id, H.parse(idline).id)
			assert.equals(e.id, d.id)

			for _, o in ipairs{ { nil, "" }, { "extended", "-o extended" }, { "id", "-o id" },
				{ "extended,id", "-o extended,id" }, { "ktimestamp", "-o ktimestamp" } } do
				local fmt, cliopt = o[1], o[2]
				local mine, cli = H.same_line(function()
					local x = dumped(h, k)
					return fmt and x:format(fmt) or tostring(x)
				end, function() return H.find(H.cli_ok(ns, "-L " .. cliopt), frag) end)
				assert.equals(cli, mine, cliopt)
			end

			-- totable: plain nested tables with the same values
			local t = d:totable()
			assert.equals(d.family, t.family)
			assert.equals(d.proto, t.proto)
			assert.equals(d.id, t.id)
			assert.equals(d.mark, t.mark)
			assert.equals(d.zone, t.zone)
			assert.equals("table", type(t.orig))
			assert.is_nil(getmetatable(t.orig))
			for key, v in pairs(d.orig:totable()) do assert.equals(v, t.orig[key], key) end
			assert.equals(d.orig.src, t.orig.src)
			assert.equals(d.reply.dport, t.reply.dport)
			assert.same(d.status, t.status)
		end)
	end

	it("reads an entry the CLI deleted as gone (ENOENT)", function()
		H.cli_ok(ns, "-I -p udp -s 192.0.2.1 -d 192.0.2.2 --sport 1200 --dport 7 -t 30")
		local t = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 1200, dport = 7 }
		assert.is_truthy(h:get(t))
		H.cli_ok(ns, "-D -p udp -s 192.0.2.1 -d 192.0.2.2 --sport 1200 --dport 7")
		local e, msg, errno = h:get(t)
		assert.is_nil(e)
		assert.equals("get: No such file or directory", msg)
		assert.equals(E.ENOENT, errno)
	end)
end)

describe("core: update, delete, flush", function()
	local topo, ns, h

	H.private(function(t, n, hh) topo, ns, h = t, n, hh end)

	before_each(function()
		assert(h:flush())
	end)

	local function tcp(sport, extra)
		local t = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = sport, dport = 80 }
		for k, v in pairs(extra or {}) do t[k] = v end
		return t
	end

	it("mark with mark_mask does what `conntrack -U -m V/M` does", function()
		local cases = { -- old mark, value, mask (nil: -m V alone)
			{ 0xff00ff, 0x0f, 0xf0f }, { 1, 5, 4 }, { 0x12345678, 0, 0xffff0000 },
			{ 0xdeadbeef, 1, 1 }, { 7, 0x100, nil }, { 0, 0xffffffff, 0xffffffff },
			{ 0xffffffff, 0x80000000, 0xc0000000 }, { 0x1234, 0x4321, 0 },
		}
		for i, c in ipairs(cases) do
			local old, v, m = c[1], c[2], c[3]
			local mine, theirs = 30000 + i, 31000 + i
			assert.is_true(h:create(tcp(mine, { timeout = 300, state = "ESTABLISHED", mark = old })))
			H.cli_ok(ns, ("-I -p tcp -s 192.0.2.1 -d 192.0.2.2 --sport %d --dport 80 -t 300 --state ESTABLISHED -m %d")
				:format(theirs, old))
			assert.is_true(h:update(tcp(mine), { mark = v, mark_mask = m }))
			-- the CLI updates only with the whole tuple given (conntrack-tools 1.4.7)
			local _, ok, err = H.cli(ns, ("-U -p tcp -s 192.0.2.1 -d 192.0.2.2 --sport %d --dport 80 -m %d%s")
				:format(theirs, v, m and ("/" .. m) or ""))
			local want = m and H.bxor(old - H.band(old, m), v) or v
			local got_cli = h:get(tcp(theirs)).mark
			assert.equals(want, h:get(tcp(mine)).mark, ("old %#x V %#x M %s"):format(old, v, tostring(m)))
			if want ~= old then
				assert.is_true(ok, err)
			end
			assert.equals(got_cli, h:get(tcp(mine)).mark, ("case %d vs CLI"):format(i))
		end
	end)

	it("timeout, status and the entry object as the tuple", function()
		local t = tcp(2000)
		assert.is_true(h:create(tcp(2000, { timeout = 100, state = "ESTABLISHED" })))
		assert.is_true(h:update(t, { timeout = 5000 }))
		local e = h:get(t)
		assert.is_true(e.timeout > 4990)
		assert.is_true(h:update(e, { status = { "ASSURED", "SEEN_REPLY" } }))
		e = h:get(t)
		assert.is_true(e.status.ASSURED)
		assert.is_true(e.status.SEEN_REPLY)
		local line = H.cli_ok(ns, "-L")[1]
		assert.matches("%[ASSURED%]", line)
		assert.not_matches("UNREPLIED", line)
		-- status flags are added to the entry's, as conntrack -U -u does: the
		-- kernel keeps ASSURED once set, and asking to clear it would be EBUSY
		assert.is_true(h:update(e, { status = { "FIXED_TIMEOUT" } }))
		e = h:get(t)
		assert.is_true(e.status.ASSURED and e.status.SEEN_REPLY and e.status.FIXED_TIMEOUT)
		-- an entry from a dump works as the tuple too, zone included
		assert.is_true(h:create(tcp(2001, { timeout = 100, zone = 9 })))
		for x in h:dump{ zone = 9 } do
			assert.is_true(h:update(x, { mark = 99 }))
		end
		assert.equals(99, h:get(tcp(2001, { zone = 9 })).mark)
	end)

	it("labels, once the namespace uses them", function()
		local ok, out = topo:nft("host", [[
table inet lct_labels {
	chain c {
		type filter hook prerouting priority 0; policy accept;
		ct label set 1
	}
}]])
		assert.is_true(ok, out)
		local t = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 2100, dport = 9 }
		assert.is_true(h:create{ src = t.src, dst = t.dst, proto = "udp", sport = 2100, dport = 9,
			timeout = 100, labels = { 3, 40 } })
		assert.same({ [3] = true, [40] = true }, h:get(t).labels)
		assert.is_true(h:update(t, { labels = { 7 }, labels_mask = { 3, 7 } }))
		assert.same({ [7] = true, [40] = true }, h:get(t).labels)
		assert.is_true(h:update(t, { labels = { [127] = true } }))
		assert.same({ [127] = true }, h:get(t).labels)
		assert.is_true(h:update(t, { labels = {} }))
		assert.is_nil(h:get(t).labels)
	end)

	it("update, delete of a missing entry: nil, message, ENOENT", function()
		local ok, msg, errno = h:update(tcp(2200), { mark = 1 })
		assert.is_nil(ok)
		assert.equals("update: No such file or directory", msg)
		assert.equals(E.ENOENT, errno)
		ok, msg, errno = h:delete(tcp(2200))
		assert.is_nil(ok)
		assert.equals("delete: No such file or directory", msg)
		assert.equals(E.ENOENT, errno)
	end)

	it("delete by tuple and by entry; the CLI no longer shows them", function()
		assert.is_true(h:create(tcp(2300, { timeout = 100 })))
		assert.is_true(h:create(tcp(2301, { timeout = 100, zone = 4 })))
		assert.is_true(h:create{ src = "2001:db8::1", dst = "2001:db8::2", proto = "icmpv6",
			icmp_type = 128, icmp_id = 2302, timeout = 100 })
		assert.equals(3, #H.cli_ok(ns, "-L"))
		assert.is_true(h:delete(tcp(2300)))
		assert.is_nil(H.find(H.cli_ok(ns, "-L"), "sport=2300 "))
		-- the zone is part of the tuple
		assert.equals(E.ENOENT, select(3, h:delete(tcp(2301))))
		assert.is_true(h:delete(tcp(2301, { zone = 4 })))
		local e = assert(h:get{ src = "2001:db8::1", dst = "2001:db8::2", proto = "icmpv6", icmp_type = 128, icmp_id = 2302 })
		assert.is_true(h:delete(e))
		assert.equals(E.ENOENT, select(3, h:delete(e)))
		assert.equals(0, #H.cli_ok(ns, "-L"))
	end)

	it("flush by family, by mark, and everything", function()
		for i = 1, 4 do
			assert.is_true(h:create(tcp(2400 + i, { timeout = 100, mark = i })))
			assert.is_true(h:create{ src = "2001:db8::1", dst = "2001:db8::2", proto = "udp",
				sport = 2400 + i, dport = 53, timeout = 100, mark = i })
		end
		assert.equals(8, h:count())
		assert.is_true(h:flush{ family = "ipv6" })
		assert.equals(4, h:count())
		assert.equals(0, #H.cli_ok(ns, "-L -f ipv6"))
		assert.equals(4, #H.cli_ok(ns, "-L -f ipv4"))
		-- mark 2 and 3 have bit 1 set
		assert.is_true(h:flush{ mark = 2, mark_mask = 2 })
		local left = {}
		for e in h:dump() do left[#left + 1] = e.mark end
		table.sort(left)
		assert.same({ 1, 4 }, left)
		assert.is_true(h:flush{ family = "ipv4", mark = 4 })
		assert.equals(1, h:count())
		assert.is_true(h:flush())
		assert.equals(0, h:count())
		assert.equals(0, #H.cli_ok(ns, "-L"))
		-- flushing an empty table is fine
		assert.is_true(h:flush())
	end)
end)

describe("core: count, max, stats", function()
	local ns, h

	H.private(function(_, n, hh) ns, h = n, hh end)

	it("count equals `conntrack -C` as the table grows and shrinks", function()
		assert.is_true(h:flush())
		assert.equals(0, h:count())
		assert.equals("0", H.cli_ok(ns, "-C")[1])
		local items = {}
		for i = 1, 250 do
			items[i] = { src = "198.51.100.1", dst = "198.51.100.2", proto = "udp", sport = 10000 + i, dport = 53,
				timeout = 100 }
		end
		assert.equals(250, (h:batch("create", items)))
		assert.equals(250, h:count())
		assert.equals(tonumber(H.cli_ok(ns, "-C")[1]), h:count())
		assert.equals(250, count_dump(h))
		assert.equals(250, #h:list())
		h:batch("delete", { H.tuple(items[1]), H.tuple(items[2]), H.tuple(items[3]) })
		assert.equals(247, h:count())
		assert.equals(tonumber(H.cli_ok(ns, "-C")[1]), h:count())
		h:flush()
	end)

	it("max is the table limit (nf_conntrack_max)", function()
		local max = h:max()
		assert.is_number(max)
		assert.equals(tonumber(H.read("/proc/sys/net/netfilter/nf_conntrack_max")), max)
	end)

	it("stats: one table per CPU and a total, equal to `conntrack -S`", function()
		-- some activity first, so that not every counter is zero
		local spec = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 3000, dport = 53, timeout = 10 }
		h:create(spec)
		h:create(spec)
		h:flush()
		local s = h:stats()
		local lines = H.cli_ok(ns, "-S")
		assert.equals(#lines, #s)
		local names = { "found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
			"search_restart", "clash_resolve", "chaintoolong" }
		local sum = {}
		for i, line in ipairs(lines) do
			local cli = {}
			for k, v in line:gmatch("([%w_]+)=(%d+)") do cli[k] = tonumber(v) end
			local mine = s[i]
			assert.equals(cli.cpu, mine.cpu)
			for k, v in pairs(cli) do
				assert.equals(v, mine[k], "cpu " .. cli.cpu .. " " .. k)
			end
			for k, v in pairs(mine) do
				assert.is_not_nil(cli[k], "the CLI does not print " .. k)
				assert.equals("number", type(v))
				if k ~= "cpu" then sum[k] = (sum[k] or 0) + v end
			end
			for _, k in ipairs(names) do assert.is_number(mine[k], k) end
		end
		assert.same(sum, s.total)
		assert.is_nil(s.total.cpu)
		assert.is_true(s.total.insert >= 1)
	end)
end)

describe("core: dump", function()
	local ns, h

	-- fixtures covering family, mark, zone and status
	local F = {
		{ src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 4001, dport = 80, timeout = 300,
			state = "ESTABLISHED", status = { "ASSURED" }, mark = 0x10 },
		{ src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 4002, dport = 53, timeout = 300,
			mark = 0x11, zone = 5 },
		{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "udp", sport = 4003, dport = 53, timeout = 300,
			mark = 0x20, zone = 5 },
		{ src = "192.0.2.1", dst = "192.0.2.2", proto = "icmp", icmp_type = 8, icmp_id = 4004, timeout = 300 },
		{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "icmpv6", icmp_type = 128, icmp_id = 4005,
			timeout = 300, mark = 0x30, zone = 7, status = { "SEEN_REPLY" } },
		{ src = "2001:db8:1::1", dst = "2001:db8:1::2", proto = "tcp", sport = 4006, dport = 443, timeout = 300,
			state = "SYN_SENT", mark = 0x1011, status = { "ASSURED", "SEEN_REPLY" } },
		{ src = "192.0.2.3", dst = "192.0.2.4", proto = "udp", sport = 4007, dport = 53, timeout = 300, zone = 0 },
	}

	H.private(function(_, n, hh) ns, h = n, hh end)
	setup(function()
		for _, s in ipairs(F) do assert(h:create(s)) end
	end)

	it("returns iterator, state, nil, closing value; state counts and closes", function()
		local f, s, init, closer = h:dump()
		assert.equals("function", type(f))
		assert.equals("userdata", type(s))
		assert.is_nil(init)
		assert.equals(s, closer)
		assert.is_false(s.interrupted)
		assert.is_false(s.closed)
		local n = 0
		for e in f, s, init, closer do
			n = n + 1
			assert.equals(n, s.count)
			assert.equals("userdata", type(e))
		end
		assert.equals(#F, n)
		assert.equals(#F, s.count)
		assert.is_true(s.closed)
		assert.is_false(s.interrupted)
		-- a finished dump stays finished
		assert.is_nil(f(s))
	end)

	it("after a break the next dump works; close() ends one early, at once", function()
		for e, _ in h:dump() do -- luacheck: ignore 512 (leaves at the first entry)
			assert.is_truthy(e)
			break
		end
		local f, s, init, closer = h:dump()
		for _ in f, s, init, closer do break end -- luacheck: ignore 512
		-- (Lua 5.4 has closed it already; 5.1, 5.3 and LuaJIT leave that to
		-- the collector: close() is the way to end it now on every version)
		s:close()
		assert.is_true(s.closed)
		assert.is_nil(f(s))
		s:close()
		f, s = h:dump()
		assert.is_truthy(f(s))
		s:close()
		assert.is_true(s.closed)
		assert.is_nil(f(s))
		assert.equals(#F, count_dump(h))
	end)

	H.it54("break closes the dump at once (the closing value of the generic for)", function()
		local f, s, init, closer = h:dump()
		for _ in f, s, init, closer do break end -- luacheck: ignore 512
		assert.is_true(s.closed)
		assert.equals(#F, count_dump(h))
	end)

	it("entries stay valid after the loop has moved on", function()
		local kept = {}
		for e in h:dump() do kept[#kept + 1] = e end
		collectgarbage()
		assert.equals(#F, #kept)
		local seen = {}
		for _, e in ipairs(kept) do
			seen[e.orig.sport or e.orig.icmp_id] = e
			assert.is_string(tostring(e))
			assert.is_table(e:totable())
		end
		assert.equals("ESTABLISHED", seen[4001].state)
		assert.equals(5, seen[4003].zone)
		assert.equals(0x30, seen[4005].mark)
		assert.equals("2001:db8:1::2", seen[4006].reply.src)
		assert.equals(443, seen[4006].reply.sport)
	end)

	it("list() returns the same entries as an array", function()
		local l = h:list()
		assert.equals(#F, #l)
		assert.same((H.keyset(h:dump())), (H.keyset(l)))
		assert.same((H.keyset(h:dump{ family = "ipv6" })), (H.keyset(h:list{ family = "ipv6" })))
	end)

	it("sees what the CLI sees", function()
		local mine = {}
		for e in h:dump() do mine[#mine + 1] = H.parse(tostring(e)) end
		local cli = {}
		for _, l in ipairs(H.cli_ok(ns, "-L")) do cli[#cli + 1] = H.parse(l) end
		local function keys(list)
			local s = {}
			for _, p in ipairs(list) do
				s[#s + 1] = table.concat({ p.proto, p.orig.src, tostring(p.orig.sport or p.orig.id), tostring(p.zone) }, " ")
			end
			table.sort(s)
			return s
		end
		assert.same(keys(cli), keys(mine))
	end)

	-- kernel filters against the unfiltered dump filtered here
	local function has(e, flag) return e.status and e.status[flag] == true end
	local filters = {
		{ { family = "ipv4" }, function(e) return e.family == "ipv4" end, "-f ipv4", 4 },
		{ { family = "ipv6" }, function(e) return e.family == "ipv6" end, "-f ipv6", 3 },
		{ { mark = 0x10 }, function(e) return e.mark == 0x10 end, "-m 16", 1 },
		{ { mark = 0x10, mark_mask = 0xf0 }, function(e) return H.band(e.mark, 0xf0) == 0x10 end, "-m 16/240", 3 },
		{ { mark = 0x1000, mark_mask = 0xf000 }, function(e) return H.band(e.mark, 0xf000) == 0x1000 end,
			"-m 4096/61440", 1 },
		{ { mark = 0 }, function(e) return e.mark == 0 end, "-m 0", 2 },
		{ { zone = 5 }, function(e) return e.zone == 5 end, "-w 5", 2 },
		{ { zone = 7 }, function(e) return e.zone == 7 end, "-w 7", 1 },
		{ { zone = 0 }, function(e) return (e.zone or 0) == 0 end, "-w 0", 4 },
		{ { zone = 99 }, function(e) return e.zone == 99 end, "-w 99", 0 },
		{ { status = { "ASSURED" } }, function(e) return has(e, "ASSURED") end, "-u ASSURED", 2 },
		{ { status = { ASSURED = true } }, function(e) return has(e, "ASSURED") end, nil, 2 },
		{ { status = ct.status_bits.SEEN_REPLY }, function(e) return has(e, "SEEN_REPLY") end, "-u SEEN_REPLY", 2 },
		{ { status = { "ASSURED" }, status_mask = { "ASSURED", "SEEN_REPLY" } },
			function(e) return has(e, "ASSURED") and not has(e, "SEEN_REPLY") end, nil, 1 },
		{ { status = {}, status_mask = { "SEEN_REPLY" } }, function(e) return not has(e, "SEEN_REPLY") end, nil, 5 },
		{ { family = "ipv6", zone = 5 }, function(e) return e.family == "ipv6" and e.zone == 5 end, "-f ipv6 -w 5", 1 },
		{ { family = "ipv4", mark = 0x11, zone = 5 },
			function(e) return e.family == "ipv4" and e.mark == 0x11 and e.zone == 5 end, nil, 1 },
		{ { family = "ipv6", status = { "SEEN_REPLY" }, mark = 0x30 },
			function(e) return e.family == "ipv6" and has(e, "SEEN_REPLY") and e.mark == 0x30 end, nil, 1 },
	}

	for _, c in ipairs(filters) do
		local opts, pred, cliargs, n = c[1], c[2], c[3], c[4]
		local name = {}
		for k, v in pairs(opts) do
			name[#name + 1] = k .. "=" .. (type(v) == "table" and "{...}" or tostring(v))
		end
		table.sort(name)
		it("filter " .. table.concat(name, ", "), function()
			local want = {}
			for e in h:dump() do
				if pred(e) then want[H.key(e)] = true end
			end
			local got, count = H.keyset(h:dump(opts))
			assert.same(H.sorted(want), H.sorted(got))
			assert.equals(n, count)
			for e in h:dump(opts) do assert.is_true(pred(e)) end
			if cliargs then
				assert.equals(n, #H.cli_ok(ns, "-L " .. cliargs), cliargs)
			end
		end)
	end
end)

describe("core: batch", function()
	local ns, h

	H.private(function(_, n, hh) ns, h = n, hh end)

	it("create, update, delete many; failures carry index, errno and message", function()
		h:flush()
		local items = {}
		for i = 1, 3000 do
			items[i] = { src = "203.0.113.1", dst = "203.0.113.2", proto = "tcp", sport = 20000 + i, dport = 80,
				timeout = 200, state = "ESTABLISHED" }
		end
		local ok, missing, fails = h:batch("create", items)
		assert.equals(3000, ok)
		assert.equals(0, missing)
		assert.same({}, fails)
		assert.equals(3000, tonumber(H.cli_ok(ns, "-C")[1]))
		-- duplicates fail one by one, in order
		ok, missing, fails = h:batch("create", { items[5], { src = "203.0.113.1", dst = "203.0.113.2", proto = "tcp",
			sport = 1, dport = 80, timeout = 200 }, items[7] })
		assert.equals(1, ok)
		assert.equals(0, missing)
		assert.equals(2, #fails)
		assert.same({ index = 1, errno = E.EEXIST, message = "create: File exists" }, fails[1])
		assert.equals(3, fails[2].index)
		-- update marks all, with a mask (a batch takes tuples: a spec's other keys fail)
		local tuples = {}
		for i, it in ipairs(items) do
			tuples[i] = H.tuple(it)
		end
		ok, missing, fails = h:batch("update", items, { mark = 0x5, mark_mask = 0xf })
		assert.same({ 0, 0, 3000 }, { ok, missing, #fails })
		assert.matches("^batch: item 1: update: bad argument '%a+' %(not a field of a tuple%)$", fails[1].message)
		ok, missing, fails = h:batch("update", tuples, { mark = 0x5, mark_mask = 0xf })
		assert.equals(3000, ok)
		assert.equals(0, missing)
		assert.equals(0, #fails)
		assert.equals(3000, #H.cli_ok(ns, "-L -m 5"))
		-- delete, with some already gone: missing, not failed
		h:delete(H.tuple(items[10]))
		h:delete(H.tuple(items[20]))
		ok, missing, fails = h:batch("delete", tuples)
		assert.equals(2998, ok)
		assert.equals(2, missing)
		assert.equals(0, #fails)
		assert.equals(1, h:count())
		-- add: creates or updates
		-- add: creates, and leaves what is there (counted apart, as conntrack -A)
		ok, missing = h:batch("add", { items[1], items[2], items[1] })
		assert.same({ 2, 1 }, { ok, missing })
		assert.equals(3, h:count())
		h:flush()
	end)
end)

describe("core: errno", function()
	it("maps names to the Linux numbers", function()
		local want = { EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11,
			EWOULDBLOCK = 11, ENOMEM = 12, EACCES = 13, EBUSY = 16, EEXIST = 17, ENODEV = 19,
			EINVAL = 22, EMFILE = 24, ENOSPC = 28, ERANGE = 34, EMSGSIZE = 90,
			EPROTONOSUPPORT = 93, EOPNOTSUPP = 95, ENOTSUP = 95, EAFNOSUPPORT = 97,
			ENOBUFS = 105, ETIMEDOUT = 110, EBADMSG = 74 }
		for k, v in pairs(want) do
			assert.equals(v, ct.errno[k], k)
		end
		for k, v in pairs(ct.errno) do
			assert.matches("^E[A-Z]+$", k)
			assert.equals("number", type(v))
		end
	end)
end)

describe("core: the module under test", function()
	it("is the build this run asked for", function()
		local path = package.searchpath("conntrack.core", package.cpath)
		assert.is_truthy(path)
		local maps = H.read("/proc/self/maps")
		assert.is_truthy(maps:find(path:gsub("^%./", ""), 1, true), "conntrack.core not mapped from " .. path)
		if os.getenv("LCT_ASAN") then
			assert.matches("/build/asan/conntrack/core%.so$", path)
			assert.is_truthy(maps:find("libasan", 1, true), "AddressSanitizer runtime not loaded")
		else
			-- built for this interpreter (build/5.1, build/5.3, build/5.4, build/jit)
			assert.matches("/build/" .. H.version .. "/conntrack/core%.so$", path)
		end
	end)
end)
