-- Save text and output formats of issue 10 against the conntrack CLI:
-- ct.load runs the -D and -U lines of a save file as `conntrack -R` does;
-- format.save(e, {command = "-D"}) writes the line `conntrack -D -o save`
-- prints; format.xml_header()/xml_footer() around e:format("xml") make
-- `conntrack -L -o xml`; events carry the time they were received, as
-- `conntrack -E -o timestamp` stamps them.

local ct = require "conntrack"
local H = require "helpers"

H.assert_private()

local function udp(sport, extra)
	local s = { src = "192.0.2.1", dst = "198.51.100.2", proto = "udp", sport = sport, dport = 53, timeout = 100,
		mark = sport % 100 }
	for k, v in pairs(extra or {}) do s[k] = v end
	return s
end

-- The table of namespace ns as the CLI lists it, comparable, sorted.
local function table_of(ns)
	local t = {}
	for _, l in ipairs(H.cli_ok(ns, "-L")) do t[#t + 1] = H.comparable(l) end
	table.sort(t)
	return t
end

-- Two scratch namespaces beside h's, each table holding UDP flows 1001-1004:
-- ns2, the third's handle, on_exit (removing them), and ns2's handle.
local function three_tables(h, finally)
	local t2, ns2, h2 = H.scratch()
	local t3, _, h3 = H.scratch()
	local on_exit = H.finally(finally)
	on_exit(function() h2:close() h3:close() t2:destroy() t3:destroy() end)
	for sport = 1001, 1004 do
		for _, x in ipairs{ h, h2, h3 } do assert.is_true(x:create(udp(sport))) end
	end
	return ns2, h3, on_exit, h2
end

-- conntrack -R of the one line (through file) in namespace ns2.
local function cli_load(ns2, file, line)
	local f = assert(io.open(file, "w"))
	f:write(line, "\n")
	f:close()
	H.cli(ns2, "-R " .. file)
end

-- Each {line, done} through h:load and through conntrack -R of a one-line
-- file in ns2: done flows each, no failure, the two tables alike after
-- each line.  Returns the lines.
local function load_both(h, ns, ns2, on_exit, lines)
	local file = os.tmpname()
	on_exit(function() os.remove(file) end)
	local all = {}
	for _, l in ipairs(lines) do
		local line, want = l[1], l[2]
		all[#all + 1] = line
		local done, existing, failures = h:load(line .. "\n")
		assert.same({}, failures, line)
		assert.same({ want, 0 }, { done, existing }, line)
		cli_load(ns2, file, line)
		assert.same(table_of(ns2), table_of(ns), line)
	end
	return all
end

-- The entries of h's table, comparable, sorted.
local function entries(h)
	local t = {}
	for e in h:dump() do t[#t + 1] = H.comparable(tostring(e)) end
	table.sort(t)
	return t
end

describe("save text: -D and -U lines, format.save with a command", function()
	local topo, ns, h
	H.private(function(t, n, hh) topo, ns, h = t, n, hh end)
	before_each(function() assert(h:flush()) end)

	it("ct.load runs -I, -A, -U and -D lines as conntrack -R does, on a table of the same flows", function()
		local ns2, h3, on_exit = three_tables(h, finally)
		local lines = {
			"-D -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1001 --dport 53",
			"-U -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1002 --dport 53 -m 77",
			"-D -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1009 --dport 53",
			"-I -t 100 -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1005 --dport 53",
			"-A -t 100 -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1003 --dport 53 -m 5",
			"-U -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1004 --dport 53 -t 50",
		}
		-- line by line: the module's load and the CLI's -R of a one-line file
		-- (conntrack -R 1.4.7 given the whole file at once left 1002's mark
		-- as it was, and a -U line followed by a -D line loses the -U too)
		local file = os.tmpname()
		on_exit(function() os.remove(file) end)
		local sums = { 0, 0 }
		for _, line in ipairs(lines) do
			local done, existing, failures = h:load(line .. "\n")
			assert.same({}, failures, line)
			sums[1], sums[2] = sums[1] + done, sums[2] + existing
			cli_load(ns2, file, line)
			assert.same(table_of(ns2), table_of(ns), line)
		end
		-- done: the -D, both -U and the -I; existing: the -D of a flow gone
		-- and the -A of a flow already there
		assert.same({ 4, 2 }, sums)
		assert.equals(ct.errno.ENOENT, select(3, h:get(H.tuple(udp(1001)))))
		assert.equals(77, assert(h:get(H.tuple(udp(1002)))).mark)
		assert.equals(3, assert(h:get(H.tuple(udp(1003)))).mark)
		assert.is_true(assert(h:get(H.tuple(udp(1004)))).timeout <= 50)
		-- the whole text at once does the same
		local done, existing, failures = h3:load(table.concat(lines, "\n") .. "\n")
		assert.same({}, failures)
		assert.same({ 4, 2 }, { done, existing })
		assert.same(entries(h), entries(h3))
	end)

	it("a -D or -U line that names no single flow acts on every flow it matches, as conntrack -R runs it", function()
		local ns2, h3, on_exit = three_tables(h, finally)
		local lines = {
			{ "-D -s 192.0.2.1 -m 1", 1 },		-- the mark filters too: 1001 alone
			{ "-U -s 192.0.2.1 -m 42", 3 },		-- the three left
			{ "-D -p udp --sport 1003", 1 },
			{ "-D -s 203.0.113.9", 0 },		-- nothing matches: nothing done, no failure
		}
		local all = load_both(h, ns, ns2, on_exit, lines)
		assert.equals(ct.errno.ENOENT, select(3, h:get(H.tuple(udp(1001)))))
		assert.equals(ct.errno.ENOENT, select(3, h:get(H.tuple(udp(1003)))))
		assert.equals(42, assert(h:get(H.tuple(udp(1002)))).mark)
		assert.equals(42, assert(h:get(H.tuple(udp(1004)))).mark)
		-- the whole text at once, with creations between the filter lines, in
		-- file order: 1005 made before the -U is marked; 1003 made again
		-- after the -D of 1003 stays, with its own mark
		table.insert(all, 2, "-I -t 100 -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1005 --dport 53")
		table.insert(all, "-I -t 100 -s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1003 --dport 53 -m 9")
		table.insert(all, "-U -s 192.0.2.1 -x 1")
		table.insert(all, "-U -s 192.0.2.1")
		local done, existing, failures = h3:load(table.concat(all, "\n") .. "\n")
		assert.same({ 1 + 1 + 4 + 1 + 1, 0 }, { done, existing })
		assert.equals(2, #failures)
		assert.same({ 7, 7, ct.errno.EINVAL }, { failures[1].index, failures[1].line, failures[1].errno })
		assert.matches("^load: line 7: unsupported option %-x", failures[1].message)
		assert.same({ 8, 8 }, { failures[2].index, failures[2].line })
		assert.matches("^load: line 8: an update line changes nothing", failures[2].message)
		assert.equals(9, assert(h3:get(H.tuple(udp(1003)))).mark)
		assert.equals(42, assert(h3:get(H.tuple(udp(1005)))).mark)
		assert.equals(ct.errno.ENOENT, select(3, h3:get(H.tuple(udp(1001)))))
	end)

	-- conntrack 1.4.7's -R takes a prefix in the -s and -d of -D and -U
	-- lines (as its command line does) and acts on every flow in it; the
	-- other addresses, and every address of -I and -A, are single.
	it("-s and -d prefixes in -D and -U lines select every flow in them, as conntrack -R takes them", function()
		local ns2, h3, on_exit, h2 = three_tables(h, finally)
		local more = { udp(2001, { src = "192.0.2.200" }), udp(2002, { src = "203.0.113.5" }),
			udp(2003, { src = "2001:db8::1", dst = "2001:db8:1::2" }),
			udp(2004, { src = "2001:db8:ff::1", dst = "2001:db8:1::2" }) }
		for _, s in ipairs(more) do
			for _, x in ipairs{ h, h2, h3 } do assert.is_true(x:create(s)) end
		end
		local lines = {
			{ "-D -s 192.0.2.128/25", 1 },				-- 192.0.2.200 alone
			{ "-U -s 192.0.2.0/24 -m 42", 4 },			-- 1001-1004
			{ "-U -d 198.51.100.0/24 -p udp --sport 2002 -m 43", 1 },
			{ "-D -s 2001:db8::/48 -p udp", 1 },			-- not 2001:db8:ff::1
			{ "-D -s 192.0.2.77/24 -p udp --sport 1001", 1 },	-- the host bits left out
			{ "-D -d 192.0.2.0/24", 0 },
		}
		local all = load_both(h, ns, ns2, on_exit, lines)
		assert.equals(ct.errno.ENOENT, select(3, h:get(H.tuple(more[1]))))
		assert.equals(42, assert(h:get(H.tuple(udp(1002)))).mark)
		assert.equals(43, assert(h:get(H.tuple(more[2]))).mark)
		assert.equals(ct.errno.ENOENT, select(3, h:get(H.tuple(more[3]))))
		assert.truthy(h:get(H.tuple(more[4])))
		-- the whole text at once; a bad prefix, a prefix where one flow is
		-- named (-I) or in a reply address are failures of their lines
		all[#all + 1] = "-D -s 192.0.2.0/33"
		all[#all + 1] = "-I -t 100 -s 192.0.2.0/24 -d 198.51.100.2 -p udp --sport 1009 --dport 53"
		all[#all + 1] = "-U -r 198.51.100.0/24 -m 1"
		local done, existing, failures = h3:load(table.concat(all, "\n") .. "\n")
		assert.same({ 8, 0 }, { done, existing })
		assert.equals(3, #failures)
		assert.same({ 7, 8, 9 }, { failures[1].line, failures[2].line, failures[3].line })
		assert.equals("load: line 7: bad argument 'src' (malformed address '192.0.2.0/33')", failures[1].message)
		assert.equals("load: line 8: bad argument 'src' (malformed address '192.0.2.0/24')", failures[2].message)
		assert.equals("load: line 9: bad argument 'reply_src' (malformed address '198.51.100.0/24')",
			failures[3].message)
		assert.same(entries(h), entries(h3))
		-- the reader gives the prefix as the filter field it is
		local specs = require("conntrack.core").parse_save("-D -s 2001:db8::/48 -d 2001:db8:1::/64 -p udp\n", true)
		assert.same({ src = "2001:db8::/48", dst = "2001:db8:1::/64", proto = "udp" }, specs[1])
	end)

	it("a -U line of one flow adds its status flags to the flow's, as conntrack -U -u does", function()
		local ns2, h3, on_exit = three_tables(h, finally)
		local tuple = "-s 192.0.2.1 -d 198.51.100.2 -p udp --sport 1002 --dport 53"
		local lines = load_both(h, ns, ns2, on_exit, {
			{ "-U " .. tuple .. " -u ASSURED", 1 },
			{ "-U " .. tuple .. " -u SEEN_REPLY", 1 },	-- ASSURED stays
		})
		local e = assert(h:get(H.tuple(udp(1002))))
		assert.is_true(e.status.ASSURED)
		assert.is_true(e.status.SEEN_REPLY)
		-- in one text, after a creation of the flow in the same batch
		assert.is_true(h3:delete(H.tuple(udp(1002))))
		local done, existing, failures = h3:load("-I -t 100 -m 2 " .. tuple .. "\n" .. table.concat(lines, "\n") .. "\n")
		assert.same({ {}, 3, 0 }, { failures, done, existing })
		assert.same(entries(h), entries(h3))
	end)

	it("format.save(e, {command = \"-D\"}) is the line conntrack -D -o save prints, and it loads back as a delete",
		function()
			assert.is_true(h:create(udp(2001)))
			assert.is_true(h:create(udp(2002)))
			local e1 = assert(h:get(H.tuple(udp(2001))))
			local mine = ct.format.save(e1, { command = "-D" })
			assert.matches("^%-D ", mine)
			local cli = H.cli_ok(ns, "-D -p udp --sport 2001 -o save")
			assert.equals(1, #cli)
			assert.equals(cli[1]:gsub("%-t %d+", "-t T"), (mine:gsub("%-t %d+", "-t T")))
			-- -U and -A and -I by command; a bad one raises
			local e2 = assert(h:get(H.tuple(udp(2002))))
			for _, c in ipairs{ "-U", "-A", "-I" } do
				assert.matches("^" .. c:gsub("%-", "%%-") .. " ", ct.format.save(e2, { command = c }))
			end
			local ok, msg = pcall(ct.format.save, e2, { command = "-X" })
			assert.is_false(ok)
			assert.matches("save: bad argument 'command'", msg, 1, true)
			local done = h:load(ct.format.save(e2, { command = "-D" }) .. "\n")
			assert.equals(1, done)
			assert.equals(0, h:count())
		end)

	it("-o xml: xml_header(), each e:format(\"xml\"), xml_footer() make the CLI's document", function()
		for sport = 3001, 3003 do assert.is_true(h:create(udp(sport))) end
		assert.is_true(h:create{ src = "2001:db8::1", dst = "2001:db8::2", proto = "tcp", sport = 1, dport = 2,
			timeout = 100, state = "ESTABLISHED", zone = 3, snat = "2001:db8::100" })
		local function blank(s)
			return (s:gsub("<timeout>%d+</timeout>", "<timeout>T</timeout>"):gsub("<deltatime>%d+</deltatime>", ""))
		end
		for _, opt in ipairs{ "xml", "xml,id", "xml,ktimestamp" } do
			local cli = H.cli_ok(ns, "-L -o " .. opt .. " -f ipv4")
			local cli6 = H.cli_ok(ns, "-L -o " .. opt .. " -f ipv6")
			local mine = { ct.format.xml_header() }
			local flows = {}
			for e in h:dump() do flows[#flows + 1] = blank(e:format(opt)) end
			local want = {}
			for i = 3, #cli - 1 do want[#want + 1] = blank(cli[i]) end
			want[#want + 1] = blank(cli6[3])
			table.sort(flows)
			table.sort(want)
			assert.same(want, flows, opt)
			mine[#mine + 1] = ct.format.xml_footer()
			-- header: the two lines before the flows; footer: the one after
			assert.equals(cli[1] .. "\n" .. cli[2], mine[1]:gsub("\n$", ""))
			assert.equals(cli[#cli], (mine[2]:gsub("\n$", "")))
		end
	end)

	it("events carry the time they were received: within the CLI's -E -o timestamp stamp of the same event",
		function()
			local w = H.cli_events(topo, "host", "-o timestamp")
			local sub = assert(h:subscribe())
			local on_exit = H.finally(finally)
			on_exit(function() sub:close() end)
			local t0 = os.time()
			assert.is_true(h:create(udp(4001)))
			assert.is_true(h:delete(H.tuple(udp(4001))))
			local evs = H.collect_n(sub, 2, function(ev) return ev.orig.sport == 4001 end)
			local t1 = os.time() + 1
			w.stop()
			local stamps = {}
			for _, l in ipairs(H.lines(H.read(w.file) or "")) do
				local ts, kind = l:match("^%[(%d+%.%d+)%]%s+%[(%u+)%].* sport=4001 ")
				if ts then stamps[#stamps + 1] = { tonumber(ts), kind } end
			end
			w.lines()
			assert.equals(2, #evs)
			assert.same({ "NEW", "DESTROY" }, { stamps[1][2], stamps[2][2] })
			for i, ev in ipairs(evs) do
				assert.is_true(ev.time >= t0 and ev.time <= t1, tostring(ev.time))
				-- both read the same multicast message: a few milliseconds apart
				assert.is_true(math.abs(ev.time - stamps[i][1]) < 0.5, ev.time .. " vs " .. stamps[i][1])
			end
			assert.is_true(evs[1].time <= evs[2].time)
		end)

	-- The CLI's -E -o timestamp line is "[seconds.micros]\t" before the event
	-- line, the time the CLI read it; ev:format("timestamp") writes the same
	-- with the time the module read it.
	it("ev:format(\"timestamp\") is the CLI's -E -o timestamp line, but for the moment of receipt", function()
		local w = H.cli_events(topo, "host", "-o timestamp")
		local sub = assert(h:subscribe())
		local on_exit = H.finally(finally)
		on_exit(function() sub:close() end)
		assert.is_true(h:create(udp(4002)))
		assert.is_true(h:delete(H.tuple(udp(4002))))
		local evs = H.collect_n(sub, 2, function(ev) return ev.orig.sport == 4002 end)
		w.stop()
		local theirs = {}
		for _, l in ipairs(H.lines(H.read(w.file) or "")) do
			if l:find(" sport=4002 ", 1, true) then theirs[#theirs + 1] = l end
		end
		w.lines()
		assert.equals(2, #theirs)
		for i, ev in ipairs(evs) do
			local mine = ev:format("timestamp")
			local ts, rest = mine:match("^%[(%d+%.%d%d%d%d%d%d)%]\t(.*)$")
			assert.is_string(ts, mine)
			assert.is_true(math.abs(tonumber(ts) - ev.time) < 1e-5)
			local cts, crest = theirs[i]:match("^%[(%d+%.%d%d%d%d%d%d)%]\t(.*)$")
			assert.is_string(cts, theirs[i])
			-- (less what the CLI appends for events a program caused: our
			-- examples/conntrack.lua adds that from the message's port id)
			crest = crest:gsub(" %[USERSPACE%] portid=%d+.*$", "")
			assert.equals(H.comparable(crest), H.comparable(rest))
			assert.equals(rest, tostring(ev))
		end
		-- entries read from a table have no time of receipt: the plain line
		assert.is_true(h:create(udp(4003)))
		local e = assert(h:get(H.tuple(udp(4003))))
		assert.equals(tostring(e), e:format("timestamp"))
	end)
end)
