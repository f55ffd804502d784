-- The expectation table (issue 10) against `conntrack ... expect` both
-- ways: list, get, create, delete, flush, count, stats and events, every
-- field the kernel sends, tostring(x) equal to the CLI's -L expect line; and
-- on real traffic, an FTP control connection (python3-pyftpdlib serving,
-- curl fetching) through the kernel's FTP helper, assigned by an nft
-- `ct helper` rule on the router, makes the expectation the module lists
-- and the CLI sees, with its NAT fields when the control connection is
-- DNATed.

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local E = ct.errno

H.assert_private()

-- An expectation line (-L expect, or an event line) with its timeout blanked.
local function xline(line)
	return (line:gsub("^(%s*%[?%u*%]?%s*)%d+ ", "%1T "))
end

local C, S = "192.0.2.1", "198.51.100.2"

-- A master flow the FTP helper watches (the kernel takes expectations only
-- for a master with a helper), source port 1000 + i.
local function master(h, i, extra)
	local s = { src = C, dst = S, proto = "tcp", sport = 1000 + i, dport = 21, timeout = 200,
		state = "ESTABLISHED", helper = "ftp" }
	for k, v in pairs(extra or {}) do s[k] = v end
	assert(h:create(s))
end

-- The expectation of master i: C -> S port 30000 + i, any source port.
local function xspec(i, extra)
	local s = { src = C, dst = S, proto = "tcp", sport = 1000 + i, dport = 21,
		tuple_src = C, tuple_dst = S, tuple_sport = 0, tuple_dport = 30000 + i, mask_sport = 0,
		timeout = 200 }
	for k, v in pairs(extra or {}) do s[k] = v end
	return s
end

local function xtuple(port, extra)
	local t = { src = C, dst = S, proto = "tcp", sport = 0, dport = port }
	for k, v in pairs(extra or {}) do t[k] = v end
	return t
end

local function plain(t)
	return { src = t.src, dst = t.dst, sport = t.sport, dport = t.dport }
end

-- conntrack -I expect for master i, expecting port: the CLI's own options.
local function cli_create(ns, i, port)
	return H.cli(ns, ("-I expect --orig-src %s --orig-dst %s --tuple-src %s --tuple-dst %s"
		.. " --mask-src 255.255.255.255 --mask-dst 255.255.255.255 -p tcp --orig-port-src %d"
		.. " --orig-port-dst 21 --tuple-port-src 0 --tuple-port-dst %d --mask-port-src 0"
		.. " --mask-port-dst 65535 -t 200"):format(C, S, C, S, 1000 + i, port))
end

describe("expectations: the module and conntrack ... expect", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)
	before_each(function()
		assert(h:expect_flush())
		assert(h:flush())
	end)

	it("expect_create: the CLI lists it, tostring is its -L expect line, every field reads back", function()
		master(h, 1)
		assert.is_true(h:expect_create(xspec(1)))
		local lines = H.cli_ok(ns, "-L expect")
		assert.equals(1, #lines)
		local xs = assert(h:list(nil, { table = "expect" }))
		assert.equals(1, #xs)
		local x = xs[1]
		assert.equals("expectation", ct.type(x))
		assert.equals(xline(lines[1]), xline(tostring(x)))
		assert.same({ src = C, dst = S, sport = 1001, dport = 21 }, plain(x.master))
		assert.same({ src = C, dst = S, sport = 0, dport = 30001 }, plain(x.tuple))
		assert.same({ src = "255.255.255.255", dst = "255.255.255.255", sport = 0, dport = 65535 }, plain(x.mask))
		-- the kernel gives an expectation of a helped master the helper's
		-- own timeout (FTP: 300 s), whatever the request said
		assert.is_true(x.timeout <= 300 and x.timeout >= 290, tostring(x.timeout))
		assert.equals("ftp", x.helper)
		assert.equals(0, x.class)
		assert.equals("ipv4", x.family)
		assert.equals("tcp", x.proto)
		assert.equals(6, x.protonum)
		assert.is_true(H.is_integer(x.id))
		assert.is_nil(next(x.flags))
		assert.is_nil(x.nat)
		assert.is_nil(x.nat_dir)
		assert.is_nil(x.fn)
		assert.is_nil(x.type)
		assert.equals("string", type(x:raw()))
		local t = x:totable()
		assert.same(plain(x.master), plain(t.master))
		assert.same(plain(x.tuple), plain(t.tuple))
		assert.equals("ftp", t.helper)
		-- the same through a dump and a get, by tuple and by the object
		local n = 0
		for y in h:dump(nil, { table = "expect" }) do
			n = n + 1
			assert.equals(xline(tostring(x)), xline(tostring(y)))
		end
		assert.equals(1, n)
		assert.equals(xline(tostring(x)), xline(tostring(assert(h:expect_get(xtuple(30001))))))
		assert.equals(xline(tostring(x)), xline(tostring(assert(h:expect_get(x)))))
		assert.equals(1, h:expect_count())
		assert.same({ "1" }, H.cli_ok(ns, "-C expect"))
	end)

	it("conntrack -I expect: the module reads what the CLI made (the CLI takes the expected tuple's protocol"
		.. " from the port it copies there: ports 1536..1791 keep it tcp, 30003 makes it 117)", function()
		master(h, 2)
		master(h, 3)
		assert.is_true(select(2, cli_create(ns, 2, 1600)))
		assert.is_true(select(2, cli_create(ns, 3, 30003)))
		local lines = H.cli_ok(ns, "-L expect")
		assert.equals(2, #lines)
		local x = assert(h:expect_get(xtuple(1600)))
		assert.equals(xline(assert(H.find(lines, "dport=1600 "))), xline(tostring(x)))
		assert.same({ src = C, dst = S, sport = 1002, dport = 21 }, plain(x.master))
		assert.same({ src = C, dst = S, sport = 0, dport = 1600 }, plain(x.tuple))
		assert.equals(65535, x.mask.dport)
		assert.equals(0, x.mask.sport)
		assert.equals("tcp", x.proto)
		-- 30003 = 0x7533: the CLI's tuple protocol is 0x75 = 117, with no ports
		local odd
		for y in h:dump(nil, { table = "expect" }) do
			if y.master.sport == 1003 then odd = y end
		end
		assert.truthy(odd)
		assert.equals(117, odd.protonum)
		assert.is_nil(odd.tuple.dport)
		assert.equals(xline(assert(H.find(lines, "proto=117 "))), xline(tostring(odd)))
	end)

	it("expect_get and expect_delete take what the CLI made; the CLI's -G and -D expect take what the module made",
		function()
			master(h, 4)
			master(h, 5)
			assert.is_true(h:expect_create(xspec(4, { tuple_dport = 1604 })))
			assert.is_true(select(2, cli_create(ns, 5, 1605)))
			-- the CLI's -G expect needs --reply-port-* although it sends none of them
			local g = H.cli_ok(ns, ("-G expect -s %s -d %s -p tcp --sport 0 --dport 1604"
				.. " --reply-port-src 0 --reply-port-dst 0"):format(C, S))
			assert.equals(1, #g)
			assert.equals(xline(g[1]), xline(tostring(assert(h:expect_get(xtuple(1604))))))
			local x = assert(h:expect_get(xtuple(1605)))
			assert.is_true(h:expect_delete(x))
			local ok, msg, errno = h:expect_delete(xtuple(1605))
			assert.is_nil(ok)
			assert.equals("expect_delete: No such file or directory", msg)
			assert.equals(E.ENOENT, errno)
			ok, msg, errno = h:expect_get(xtuple(1605))
			assert.is_nil(ok)
			assert.equals("expect_get: No such file or directory", msg)
			assert.equals(E.ENOENT, errno)
			-- (the CLI's -D expect deletes it and exits 1 all the same)
			H.cli(ns, ("-D expect -s %s -d %s -p tcp --sport 0 --dport 1604 --reply-port-src 0 --reply-port-dst 0")
				:format(C, S))
			assert.equals(E.ENOENT, select(3, h:expect_get(xtuple(1604))))
			assert.equals(0, h:expect_count())
			assert.same({}, H.cli_ok(ns, "-L expect"))
		end)

	it("expect_flush: by helper name, everything; the CLI's -F expect empties what the module made",
		function()
			master(h, 6)
			master(h, 7, { src = "2001:db8:1::1", dst = "2001:db8:2::2" })
			assert.is_true(h:expect_create(xspec(6)))
			assert.is_true(h:expect_create(xspec(7, { src = "2001:db8:1::1", dst = "2001:db8:2::2",
				tuple_src = "2001:db8:1::1", tuple_dst = "2001:db8:2::2",
				mask_src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", mask_dst = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" })))
			-- the CLI lists one family, IPv4 unless told
			local lines = H.cli_ok(ns, "-L expect -f ipv6")
			assert.equals(1, #lines)
			assert.equals(1, #H.cli_ok(ns, "-L expect"))
			assert.equals(2, h:expect_count())
			local x6 = assert(h:expect_get{ src = "2001:db8:1::1", dst = "2001:db8:2::2", proto = "tcp", sport = 0,
				dport = 30007 })
			assert.equals("ipv6", x6.family)
			assert.equals(xline(assert(H.find(lines, "src=2001:db8:1::1 "))), xline(tostring(x6)))
			assert.is_true(h:expect_flush{ helper = "irc" })
			assert.equals(2, h:expect_count())
			assert.is_true(h:expect_flush{ helper = "ftp" })
			assert.equals(0, h:expect_count())
			assert.same({}, H.cli_ok(ns, "-L expect"))
			assert.is_true(h:expect_create(xspec(6)))
			assert.same({ "1" }, H.cli_ok(ns, "-C expect"))
			H.cli_ok(ns, "-F expect")
			assert.equals(0, h:expect_count())
			assert.same({}, assert(h:list(nil, { table = "expect" })))
		end)

	-- Linux flushes every expectation whatever the request's family (its
	-- flush iterates without looking at it; the CLI takes no -f with -F
	-- expect): expect_flush{family = ...} selects them itself.
	it("expect_flush{family = ...} flushes that family only (the kernel's flush would take both)", function()
		local v6 = { src = "2001:db8:1::1", dst = "2001:db8:2::2" }
		local x6 = { src = v6.src, dst = v6.dst, tuple_src = v6.src, tuple_dst = v6.dst,
			mask_src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", mask_dst = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" }
		for i = 11, 12 do
			master(h, i)
			assert.is_true(h:expect_create(xspec(i)))
			master(h, i + 10, v6)
			assert.is_true(h:expect_create(xspec(i + 10, x6)))
		end
		assert.equals(4, h:expect_count())
		assert.is_true(h:expect_flush{ family = "ipv6" })
		assert.equals(2, h:expect_count())
		assert.same({}, H.cli_ok(ns, "-L expect -f ipv6"))
		assert.equals(2, #H.cli_ok(ns, "-L expect -f ipv4"))
		-- with a helper too: none of irc, both of ftp
		assert.is_true(h:expect_flush{ family = "ipv4", helper = "irc" })
		assert.equals(2, h:expect_count())
		assert.is_true(h:expect_flush{ family = "ipv4", helper = "ftp" })
		assert.equals(0, h:expect_count())
		local ok, msg = pcall(h.expect_flush, h, { family = "inet" })
		assert.is_false(ok)
		assert.matches("expect_flush: bad argument 'family' (\"ipv4\" or \"ipv6\" expected, got 'inet')", msg, 1, true)
		ok, msg = pcall(h.expect_flush, h, { family = "ipv4", colour = 1 })
		assert.is_false(ok)
		assert.matches("expect_flush: bad argument 'colour' (unknown option)", msg, 1, true)
	end)

	it("expect_stats: the counters of conntrack -S expect, per CPU", function()
		for i = 8, 10 do
			master(h, i)
			assert.is_true(h:expect_create(xspec(i)))
		end
		assert.is_true(h:expect_delete(xtuple(30009)))
		local st = assert(h:expect_stats())
		local cli = {}
		for _, l in ipairs(H.cli_ok(ns, "-S expect")) do
			local cpu = assert(tonumber(l:match("cpu=(%d+)")), l)
			cli[cpu] = { cpu = cpu, new = tonumber(l:match("expect_new=(%d+)")),
				create = tonumber(l:match("expect_create=(%d+)")), delete = tonumber(l:match("expect_delete=(%d+)")) }
		end
		local sum = { new = 0, create = 0, delete = 0 }
		assert.equals(#st, #cli + 1)
		for _, c in ipairs(st) do
			assert.same(cli[c.cpu], { cpu = c.cpu, new = c.new, create = c.create, delete = c.delete })
			for k in pairs(sum) do sum[k] = sum[k] + c[k] end
		end
		assert.same(sum, { new = st.total.new, create = st.total.create, delete = st.total.delete })
		assert.is_true(st.total.create >= 3)
		assert.is_true(st.total.delete >= 1)
	end)

	it("flags, class, fn, the NAT part and the master's zone: what the kernel keeps, read back and printed"
		.. " as the CLI does",
		function()
			master(h, 11)
			master(h, 12)
			master(h, 13)
			master(h, 14)
			master(h, 15, { zone = 7 })
			master(h, 16)
			assert.is_true(h:expect_create(xspec(11, { flags = { "PERMANENT" } })))
			assert.is_true(h:expect_create(xspec(12, { flags = { "INACTIVE" }, class = 0, helper = "ftp" })))
			assert.is_true(h:expect_create(xspec(13, { fn = "nat-follow-master", nat_dir = "orig",
				nat_src = "198.51.100.100", nat_dst = "0.0.0.0", nat_sport = 4000, nat_dport = 0 })))
			-- the kernel clears USERSPACE (it marks expectations made without a helper)
			assert.is_true(h:expect_create(xspec(14, { flags = { "USERSPACE" }, nat_dir = "reply",
				nat_src = "198.51.100.101", nat_dst = "192.0.2.1", nat_sport = 4001, nat_dport = 0 })))
			assert.is_true(h:expect_create(xspec(15, { zone = 7 })))
			-- refusals: the FTP helper has one class; a NAT tuple needs both ends
			local ok, msg, errno = h:expect_create(xspec(16, { class = 1 }))
			assert.is_nil(ok)
			assert.equals("expect_create: Invalid argument", msg)
			assert.equals(E.EINVAL, errno)
			ok, msg, errno = h:expect_create(xspec(16, { nat_dir = "orig", nat_src = "198.51.100.100", nat_sport = 1 }))
			assert.is_nil(ok)
			assert.equals("expect_create: Invalid argument", msg)
			assert.equals(E.EINVAL, errno)

			local lines = H.cli_ok(ns, "-L expect")
			assert.equals(5, #lines)
			local by = {}
			for x in h:dump(nil, { table = "expect" }) do
				by[x.master.sport - 1000] = x
				assert.equals(xline(assert(H.find(lines, "sport=" .. x.master.sport .. " dport=21 "))),
					xline(tostring(x)))
			end
			assert.same({ PERMANENT = true }, by[11].flags)
			assert.truthy(tostring(by[11]):find(" PERMANENT class=0 ", 1, true))
			assert.same({ INACTIVE = true }, by[12].flags)
			assert.equals("nat-follow-master", by[13].fn)
			assert.equals("orig", by[13].nat_dir)
			-- the kernel keeps the NAT tuple's source (address and port) alone
			assert.same({ src = "198.51.100.100", dst = "0.0.0.0", sport = 4000, dport = 0 }, plain(by[13].nat))
			assert.is_nil(next(by[14].flags))
			assert.equals("reply", by[14].nat_dir)
			assert.same({ src = "198.51.100.101", sport = 4001 }, { src = by[14].nat.src, sport = by[14].nat.sport })
			-- a zone names the master when looking an expectation up; Linux
			-- sends no zone back with an expectation (CTA_EXPECT_ZONE is never dumped)
			assert.is_nil(by[15].zone)
			assert.truthy(h:expect_get(xtuple(30015, { zone = 7 })))
			assert.equals(E.ENOENT, select(3, h:expect_get(xtuple(30015))))
			assert.is_true(h:expect_delete(xtuple(30015, { zone = 7 })))
			assert.equals(4, h:expect_count())
		end)

	-- x:format goes through the library the CLI prints with: the same
	-- element whatever the expectation holds (flags, class, the NAT part,
	-- made by the CLI, IPv6).
	it("x:format(\"xml\") is conntrack -L expect -o xml's element byte for byte; \"xml,timestamp\" adds"
		.. " the CLI's <when>; only the options the CLI takes for expectations", function()
		local V6C, V6S = "2001:db8::1", "2001:db8:1::2"
		master(h, 21)
		master(h, 22)
		master(h, 23)
		master(h, 24)
		master(h, 25, { src = V6C, dst = V6S })
		assert.is_true(h:expect_create(xspec(21)))
		assert.is_true(h:expect_create(xspec(22, { flags = { "PERMANENT" } })))
		assert.is_true(h:expect_create(xspec(23, { flags = { "INACTIVE" }, fn = "nat-follow-master",
			nat_dir = "orig", nat_src = "198.51.100.100", nat_dst = "0.0.0.0", nat_sport = 4000, nat_dport = 0 })))
		assert.is_true(select(2, cli_create(ns, 24, 1624)))
		assert.is_true(h:expect_create(xspec(25, { src = V6C, dst = V6S, tuple_src = V6C, tuple_dst = V6S })))
		local function untimed(l)
			return (l:gsub("<timeout>%d+</timeout>", "<timeout>T</timeout>"))
		end
		local cli = {}
		for _, fam in ipairs({ "ipv4", "ipv6" }) do
			local lines = H.cli_ok(ns, "-L expect -o xml -f " .. fam)
			assert.same({ '<?xml version="1.0" encoding="utf-8"?>', "<expect>" }, { lines[1], lines[2] })
			assert.equals("</expect>", lines[#lines])
			for i = 3, #lines - 1 do cli[#cli + 1] = lines[i] end
		end
		assert.equals(5, #cli)
		local n = 0
		for x in h:dump(nil, { table = "expect" }) do
			n = n + 1
			local sport = x.master.sport
			local mine = x:format("xml")
			local theirs = assert(H.find(cli, "<master><sport>" .. sport .. "</sport>"), sport)
			assert.equals(untimed(theirs), untimed(mine))
			local stamped = x:format("xml,timestamp")
			assert.truthy(stamped:find("<class>%d+</class><when><hour>%d+</hour>.-</year></when>"), stamped)
			assert.equals(untimed(mine), untimed((stamped:gsub("<when>.-</when>", ""))))
			-- a listed expectation has no time: "timestamp" adds nothing
			assert.equals(tostring(x), x:format("timestamp"))
			assert.equals(tostring(x), x:format())
		end
		assert.equals(5, n)
		local x = assert(h:expect_get(xtuple(30021)))
		local d = os.date("*t")
		local w = x:format("xml,timestamp"):match("<when>(.-)</when>")
		assert.equals(d.year, tonumber(w:match("<year>(%d+)</year>")))
		assert.has_error(function() x:format("extended") end,
			"format: bad argument 'opts' (unknown output option 'extended')")
		assert.has_error(function() x:format(1) end, "format: bad argument 'opts' (string expected, got number)")
	end)

	it("expectation events: x.time is when they came; format(\"timestamp\") writes it as conntrack -E expect"
		.. " -o timestamp does, format(\"xml\") with the event's type", function()
		local on_exit = H.finally(finally)
		assert(select(2, H.sh(ns, "sysctl -qw net.netfilter.nf_conntrack_events=1")))
		on_exit(function() H.sh(ns, "sysctl -qw net.netfilter.nf_conntrack_events=2") end)
		local sub = assert(h:subscribe{ table = "expect" })
		on_exit(function() sub:close() end)
		master(h, 26)
		local before = os.time()
		assert.is_true(h:expect_create(xspec(26)))
		local listed = assert(h:expect_get(xtuple(30026)))
		assert.is_true(h:expect_delete(xtuple(30026)))
		local evs = H.collect_n(sub, 2)
		assert.same({ "new", "destroy" }, { evs[1].type, evs[2].type })
		for _, ev in ipairs(evs) do
			assert.is_true(ev.time >= before and ev.time <= os.time() + 1, tostring(ev.time))
			assert.equals(ev.time, ev:totable().time)
			-- conntrack's expectation events: "[%-8ld.%-6ld]\t", blanks after the microseconds
			local sec, usec, pad, rest = ev:format("timestamp"):match("^%[(%d+)%.(%d+)( *)%]\t(.*)$")
			assert.equals(tostring(ev), rest)
			assert.is_true(#pad == 0 and #usec >= 6 or #usec + #pad == 6, usec .. pad)
			assert.is_true(#usec == 1 or usec:sub(1, 1) ~= "0", usec)
			assert.is_true(math.abs(tonumber(sec) + tonumber(usec) / 1e6 - ev.time) < 1e-5)
			local xml = ev:format("xml")
			assert.equals('<flow type="' .. ev.type .. '">', xml:sub(1, #ev.type + 14))
			assert.equals(listed:format("xml"):gsub("<timeout>%d+</timeout>", ""):sub(7),
				(xml:gsub("<timeout>%d+</timeout>", ""):sub(#ev.type + 15)))
		end
		assert.is_nil(listed.time)
	end)

	it("events: new and destroy of expectations, each line as conntrack -E expect prints it", function()
		-- expectation events come from the master's event state: with
		-- nf_conntrack_events=1 every master has it, whoever listened when
		-- it was made (with 2, only masters made while a listener existed)
		local on_exit = H.finally(finally)
		assert(select(2, H.sh(ns, "sysctl -qw net.netfilter.nf_conntrack_events=1")))
		on_exit(function() H.sh(ns, "sysctl -qw net.netfilter.nf_conntrack_events=2") end)
		local file = os.tmpname()
		on_exit(function() os.remove(file) end)
		-- the CLI, and a marker expectation made and deleted until the CLI
		-- printed its end (so the CLI is subscribed, and later has printed all)
		local out, ok = H.sh(ns, ("timeout 30 stdbuf -oL conntrack -E expect > %s 2>&1 & echo $!"):format(file))
		assert.is_true(ok)
		local pid = assert(out:match("(%d+)"))
		on_exit(function() H.sh(ns, "kill " .. pid .. " 2>/dev/null") end)
		master(h, 99)
		local function barrier()
			local before = select(2, (H.read(file) or ""):gsub("DESTROY%][^\n]*dport=30099 ", ""))
			for _ = 1, 100 do
				h:expect_create(xspec(99))
				h:expect_delete(xtuple(30099))
				for _ = 1, 5 do
					local now = select(2, (H.read(file) or ""):gsub("DESTROY%][^\n]*dport=30099 ", ""))
					if now > before then return end
					hosts.sleep(0.01)
				end
			end
			error("conntrack -E expect never printed the marker's end")
		end
		barrier()
		local sub = assert(h:subscribe{ table = "expect" })
		on_exit(function() sub:close() end)
		master(h, 17)
		master(h, 18)
		assert.is_true(h:expect_create(xspec(17)))
		assert.is_true(h:expect_create(xspec(18, { flags = { "PERMANENT" } })))
		assert.is_true(h:expect_delete(xtuple(30017)))
		local evs = H.collect_n(sub, 3, function(ev) return ev.tuple.dport ~= 30099 end)
		barrier()
		local cli = {}
		for _, l in ipairs(H.lines(H.read(file) or "")) do
			if l:match("^%s*%[%u+%]") and not l:find("dport=30099 ", 1, true) then cli[#cli + 1] = l end
		end
		assert.equals(3, #evs)
		assert.same({ "new", "new", "destroy" }, { evs[1].type, evs[2].type, evs[3].type })
		assert.equals(3, #cli)
		for i, ev in ipairs(evs) do
			assert.equals("expectation", ct.type(ev))
			assert.equals(xline(cli[i]), xline(tostring(ev)))
		end
		assert.equals(30017, evs[3].tuple.dport)
		-- ct.events: the iterator form, on the table the options name
		local n = 0
		local it = ct.events{ table = "expect", netns = ns, timeout = 0.5 }
		assert.is_true(h:expect_create(xspec(17)))
		for ev in it do
			n = n + 1
			assert.equals("new", ev.type)
			assert.equals(30017, ev.tuple.dport)
		end
		assert.equals(1, n)
	end)
end)

describe("expectations on real traffic: FTP through the kernel's FTP helper", function()
	local topo, A, h, dir
	local FTP_PORTS = "30000-30009"

	setup(function()
		topo = hosts.new{}
		A = topo.addr
		dir = "/tmp/lct-" .. hosts.pid .. "-ftp"
		assert(hosts.run("mkdir -p " .. dir .. " && echo lct > " .. dir .. "/f.txt"))
		-- the router: the FTP helper on port 21, a DNAT of the public
		-- address's port 21 to the server, and the data connections dropped
		-- before conntrack sees them, so the expectations stay listed
		local ok, out = topo:nft("router", ([[
table inet lct_ftp {
	ct helper ftp-std {
		type "ftp" protocol tcp;
	}
	chain lct_raw {
		type filter hook prerouting priority -300; policy accept;
		tcp dport %s drop
	}
	chain lct_dnat {
		type nat hook prerouting priority -100; policy accept;
		ip daddr %s tcp dport 21 dnat ip to %s:21
	}
	chain lct_helpers {
		type filter hook prerouting priority 0; policy accept;
		tcp dport 21 ct helper set "ftp-std"
	}
}]]):format(FTP_PORTS, A.public, A.server))
		assert(ok, out)
		-- (python without the ASan runtime make check-asan preloads for the module)
		topo:spawn("server", ("env -u LD_PRELOAD timeout 60 /usr/bin/python3 -m pyftpdlib -i %s -p 21 -r %s -d %s")
			:format(A.server, FTP_PORTS, dir))
		assert(topo:wait_for("server", "ss -Htln 'sport = :21' | grep -q .", 5), "no FTP server:\n" .. topo:log())
		-- (event state on every flow: see the events test above)
		assert(topo:exec("router", "sysctl -qw net.netfilter.nf_conntrack_events=1"))
		h = assert(ct.open{ netns = topo.ns.router })
	end)
	teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
		if dir then hosts.run("rm -rf " .. dir) end
	end)

	-- curl fetches a file from addr (in the background, bounded); returns
	-- the expectation its control connection made on the router, once listed.
	local function fetch(addr, sub, on_exit)
		local pid = topo:spawn("client", ("env -u LD_PRELOAD timeout 15 curl -s --max-time 12 -o /dev/null ftp://%s/f.txt")
			:format(addr))
		on_exit(function() topo:exec("client", "kill " .. pid .. " 2>/dev/null") end)
		local deadline = H.now() + 5
		while H.now() < deadline do
			for _, x in ipairs(assert(h:list(nil, { table = "expect" }))) do
				if x.master.dst == addr then return x end
			end
			sub:wait(0.1)
		end
		error("no expectation for " .. addr .. " on the router\n" .. topo:log())
	end

	it("the control connection's expectation: the module lists it, the CLI sees the same line, its master is"
		.. " the control flow with helper ftp", function()
		local on_exit = H.finally(finally)
		local sub = assert(h:subscribe{ table = "expect" })
		on_exit(function() sub:close() end)
		local x = fetch(A.server, sub, on_exit)
		assert.equals(A.client, x.master.src)
		assert.equals(21, x.master.dport)
		assert.same({ src = A.client, dst = A.server, sport = 0 },
			{ src = x.tuple.src, dst = x.tuple.dst, sport = x.tuple.sport })
		assert.is_true(x.tuple.dport >= 30000 and x.tuple.dport <= 30009, tostring(x.tuple.dport))
		assert.same({ src = "255.255.255.255", dst = "255.255.255.255", sport = 0, dport = 65535 }, plain(x.mask))
		assert.equals("ftp", x.helper)
		assert.is_nil(x.fn)
		assert.is_nil(x.nat)
		local m = assert(h:get{ src = x.master.src, dst = x.master.dst, proto = "tcp", sport = x.master.sport, dport = 21 })
		assert.equals("ftp", m.helper)
		assert.equals("ESTABLISHED", m.state)
		local lines = H.cli_ok(topo.ns.router, "-L expect")
		local line = assert(H.find(lines, "master-dst=" .. A.server .. " sport=" .. x.master.sport .. " "))
		assert.equals(xline(line), xline(tostring(x)))
		-- the subscription saw it made
		local evs = H.collect_n(sub, 1, function(ev) return ev.type == "new" and ev.master.dst == A.server end)
		assert.equals(1, #evs)
		assert.equals(xline(tostring(x)), xline(tostring(evs[1]):gsub("^%s*%[NEW%] ", "")))
	end)

	it("through DNAT: the NAT helper's expectation function, direction and saved port", function()
		local on_exit = H.finally(finally)
		local sub = assert(h:subscribe{ table = "expect" })
		on_exit(function() sub:close() end)
		local x = fetch(A.public, sub, on_exit)
		assert.equals(A.public, x.tuple.dst)
		assert.equals("nat-follow-master", x.fn)
		assert.equals("orig", x.nat_dir)
		assert.equals(x.tuple.dport, x.nat.sport)
		local m = assert(h:get{ src = x.master.src, dst = A.public, proto = "tcp", sport = x.master.sport, dport = 21 })
		assert.is_true(m.status.DST_NAT)
		assert.equals(A.server, m.reply.src)
		local line = assert(H.find(H.cli_ok(topo.ns.router, "-L expect"), "master-dst=" .. A.public .. " "))
		assert.equals(xline(line), xline(tostring(x)))
	end)
end)
