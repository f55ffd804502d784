-- conntrack.format: the CLI's -L, -o extended and -o save lines, byte for
-- byte against conntrack 1.4.7 on the same entries (only the clock-driven
-- timeout and delta-time are blanked); save text loaded back by
-- `conntrack -R` and by h:load; JSON through dkjson.
local fmt = require "conntrack.format"

describe("conntrack.format #unit", function()
	local function E(t)
		t.orig = t.orig or {}
		t.reply = t.reply or {}
		return t
	end

	it("writes save lines as conntrack-tools 1.4.7 does", function()
		local e = E { family = "ipv4", proto = "tcp", protonum = 6, timeout = 99, state = "ESTABLISHED",
			status = { SEEN_REPLY = true, ASSURED = true, CONFIRMED = true }, mark = 7,
			orig = { src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 80 },
			reply = { src = "198.51.100.2", dst = "192.0.2.1", sport = 80, dport = 1000 } }
		assert.equals("-A -t 99 -u SEEN_REPLY,ASSURED -s 192.0.2.1 -d 198.51.100.2 -r 198.51.100.2 -q 192.0.2.1 "
			.. "-p tcp --sport 1000 --dport 80 --reply-port-src 80 --reply-port-dst 1000 --state ESTABLISHED", fmt.save(e))
		-- NAT forms need the *_NAT_DONE bit and another address
		e.status = { SRC_NAT_DONE = true, DST_NAT_DONE = true, EXPECTED = true, FIXED_TIMEOUT = true }
		e.reply.src, e.reply.dst = "198.51.100.3", "198.51.100.100"
		e.type = "destroy"
		assert.equals("-D -t 99 -u EXPECTED,FIXED_TIMEOUT -s 192.0.2.1 -d 198.51.100.2 -g 198.51.100.3 -n 198.51.100.100 "
			.. "-p tcp --sport 1000 --dport 80 --reply-port-src 80 --reply-port-dst 1000 --state ESTABLISHED", fmt.save(e))
		e = E { family = "ipv6", proto = "icmpv6", protonum = 58, timeout = 5, status = {}, zone = 3,
			orig = { src = "2001:db8::1", dst = "2001:db8::2", icmp_type = 128, icmp_code = 0, icmp_id = 5, zone = 3 },
			reply = { src = "2001:db8::2", dst = "2001:db8::1" } }
		assert.equals("-A -t 5 -u UNSET -w 3 --orig-zone 3 -s 2001:db8::1 -d 2001:db8::2 -r 2001:db8::2 -q 2001:db8::1 "
			.. "-p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 5", fmt.save(e))
		e = E { proto = "50", protonum = 50, timeout = 1, status = {},
			orig = { src = "192.0.2.1", dst = "192.0.2.2" }, reply = { src = "192.0.2.2", dst = "192.0.2.1" } }
		assert.equals("-A -t 1 -u UNSET -s 192.0.2.1 -d 192.0.2.2 -r 192.0.2.2 -q 192.0.2.1 -p 50", fmt.save(e))
	end)

	it("reads save lines back as specs", function()
		local text = table.concat({
			"-A -t 99 -u SEEN_REPLY,ASSURED -s 192.0.2.1 -d 198.51.100.2 -r 198.51.100.2 -q 192.0.2.1 -p tcp "
				.. "--sport 1000 --dport 80 --reply-port-src 80 --reply-port-dst 1000 --state ESTABLISHED",
			"",
			"# a comment",
			"-A -t 5 -u UNSET -w 3 -s 2001:db8::1 -d 2001:db8::2 -g 2001:db8::3 -n 2001:db8::4 -p icmpv6 "
				.. "--icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 5",
			"-I -t 7 -u ASSURED -s 192.0.2.1 -d 192.0.2.2 -r 192.0.2.2 -q 192.0.2.1 -p sctp --sport 1 --dport 2 "
				.. "--reply-port-src 2 --reply-port-dst 1 --state ESTABLISHED --orig-vtag 9 --reply-vtag 10",
			"-D -t 1 -s 192.0.2.1",
			"-A -t 1 -s 192.0.2.1 --bogus 3",
			"-A -s 192.0.2.1 -d 192.0.2.2 -p 50",
			"-A -t 3 -m 42 -l 1,2 -s 192.0.2.1 -d 192.0.2.2 -p 50 -c",
		}, "\n")
		local specs, errs, lines = fmt.parse_save(text)
		assert.equals(3, #specs)
		assert.same({ timeout = 99, status = { "SEEN_REPLY", "ASSURED" }, src = "192.0.2.1", dst = "198.51.100.2",
			reply_src = "198.51.100.2", reply_dst = "192.0.2.1", proto = "tcp", sport = 1000, dport = 80,
			reply_sport = 80, reply_dport = 1000, state = "ESTABLISHED" }, specs[1])
		assert.same({ timeout = 5, status = {}, zone = 3, src = "2001:db8::1", dst = "2001:db8::2",
			reply_src = "2001:db8::3", reply_dst = "2001:db8::4", proto = "icmpv6", icmp_type = 128,
			icmp_code = 0, icmp_id = 5 }, specs[2])
		assert.same({ timeout = 7, status = { "ASSURED" }, src = "192.0.2.1", dst = "192.0.2.2",
			reply_src = "192.0.2.2", reply_dst = "192.0.2.1", proto = "sctp", sport = 1, dport = 2,
			reply_sport = 2, reply_dport = 1, state = "ESTABLISHED" }, specs[3])
		assert.same({ 1, 4, 5 }, lines)
		assert.equals(4, #errs)
		assert.same({ 6, 7, 8, 9 }, { errs[1].line, errs[2].line, errs[3].line, errs[4].line })
		assert.matches("only %-A/%-I lines", errs[1].message)
		assert.matches("unsupported option %-%-bogus", errs[2].message)
		assert.matches("no timeout", errs[3].message)
		assert.matches("option %-c needs a value", errs[4].message)
		assert.equals(22, errs[1].errno)
	end)

	it("makes JSON-ready tables and JSON", function()
		local json = require "dkjson"
		local e = E { family = "ipv6", proto = "udp", protonum = 17, timeout = 30,
			status = { SEEN_REPLY = true, CONFIRMED = true, [20] = true }, labels = { blue = true, [3] = true },
			orig = { src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53, packets = 1, bytes = 80 },
			reply = { src = "2001:db8:2::2", dst = "2001:db8:2::100", sport = 53, dport = 7 } }
		local t = fmt.table(e)
		assert.same({ "CONFIRMED", "SEEN_REPLY", 20 }, t.status)
		assert.same({ "blue", 3 }, t.labels)
		assert.equals("snat", t.nat)
		local back = json.decode(fmt.json(e))
		assert.same(t.orig, back.orig)
		assert.same(t.status, back.status)
		assert.equals("snat", back.nat)
		-- empty status is an empty array, and indentation is there when asked
		e.status = {}
		assert.matches('"status":%[%]', fmt.json(e))
		assert.matches("\n", fmt.json(e, { indent = true }))
	end)
end)

describe("formats against the conntrack CLI", function()
	local H = require "40-helpers"
	local hosts = require "hosts"
	local ct, ns, h, topo, router

	local function sorted(t)
		table.sort(t)
		return t
	end

	-- Lines of the CLI (stdout only) and ours, with the clock blanked.
	local function blank(line)
		line = H.untimed(line)
		line = line:gsub("^(ipv%d%s+%d+%s+%S+%s+%d+%s+)%d+", "%1T")    -- -o extended
		return (line:gsub("^(%-[AUD] %-t )%d+", "%1T"))                   -- -o save
	end
	local function cli(node, args)
		local out = node:exec("conntrack -L " .. args)
		local lines = H.lines(out)
		for i, l in ipairs(lines) do lines[i] = blank(l) end
		return sorted(lines)
	end
	local function ours(handle, f)
		local lines = {}
		for e in handle:dump() do lines[#lines + 1] = blank(f(e)) end
		return sorted(lines)
	end

	lazy_setup(function()
		ct = require "conntrack"
		ns = H.netns("format")
		h = assert(ct.open { netns = ns.name })
		local specs = {
			{ proto = "tcp", src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 80, state = "ESTABLISHED",
				status = { "SEEN_REPLY", "ASSURED" }, mark = 7 },
			{ proto = "tcp", src = "2001:db8::1", dst = "2001:db8:0:0:1::2", sport = 1001, dport = 443,
				state = "SYN_SENT", zone = 5 },
			{ proto = "tcp", src = "192.0.2.2", dst = "198.51.100.2", sport = 1002, dport = 22, state = "TIME_WAIT",
				status = { "SEEN_REPLY" } },
			{ proto = "udp", src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 53,
				reply_src = "198.51.100.2", reply_dst = "198.51.100.100", reply_sport = 53, reply_dport = 40000 },
			{ proto = "udp", src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53, zone = 9,
				status = { "SEEN_REPLY" }, mark = 0x107 },
			{ proto = "icmp", src = "192.0.2.1", dst = "198.51.100.2", icmp_type = 8, icmp_code = 0, icmp_id = 77 },
			{ proto = "icmpv6", src = "2001:db8::1", dst = "2001:db8::2", icmp_type = 128, icmp_id = 5 },
			{ proto = "gre", src = "192.0.2.3", dst = "198.51.100.2" },
			{ proto = 50, src = "192.0.2.4", dst = "198.51.100.2" },
		}
		for _, s in ipairs(specs) do
			s.timeout = 600
			assert(h:create(s))
		end
		-- Real NAT on a router, for the -g/-n forms (IPv4 and IPv6).
		topo = hosts.new { nat = { snat = true, dnat = true } }
		topo:serve()
		local A, P = topo.addr, hosts.port
		for _, c in ipairs { { A.server, P.snat }, { A.public, P.dnat }, { A.server6, P.snat }, { A.public6, P.dnat } } do
			local ok, reply = topo:tcp_request("client", c[1], c[2], "x")
			assert(ok and reply == "x", tostring(reply))
		end
		router = { exec = function(_, cmd) local _, out = topo:exec("router", cmd .. " 2>/dev/null"); return out end }
	end)

	lazy_teardown(function()
		if h then h:close() end
		if ns then ns:destroy() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	it("default: the conntrack -L lines", function()
		local got = ours(h, fmt.default)
		assert.equals(9, #got)
		assert.same(cli(ns, ""), got)
	end)

	it("extended: the conntrack -L -o extended lines", function()
		assert.same(cli(ns, "-o extended"), ours(h, fmt.extended))
	end)

	it("save: the conntrack -L -o save lines, NAT forms included", function()
		assert.same(cli(ns, "-o save"), ours(h, fmt.save))
		local rh = assert(ct.open { netns = topo.ns.router })
		finally(function() rh:close() end)
		local mine = ours(rh, fmt.save)
		assert.same(cli(router, "-o save"), mine)
		local n, g = 0, 0
		for _, l in ipairs(mine) do
			if l:find(" %-n ") then n = n + 1 end
			if l:find(" %-g ") then g = g + 1 end
		end
		assert.same({ 2, 2 }, { n, g })    -- one snat and one dnat flow of each family
		assert.same(cli(ns, ""), ours(h, function(e) return fmt.format(e, "default") end))
		assert.same(cli(ns, "-o save"), ours(h, function(e) return fmt.format(e, "save") end))
		assert.same(cli(ns, "-o id"), ours(h, function(e) return fmt.format(e, "id") end))
	end)

	it("save text goes back in with conntrack -R and with h:load", function()
		local before = cli(ns, "")
		local lines = {}
		for e in h:dump() do lines[#lines + 1] = fmt.save(e, { mark = true }) end
		local path = os.tmpname()
		finally(function() os.remove(path) end)
		local f = assert(io.open(path, "w"))
		f:write(table.concat(lines, "\n"), "\n")
		f:close()

		assert(h:flush())
		assert.same({}, cli(ns, ""))
		local _, ok = ns:exec("conntrack -R " .. H.quote(path))
		assert.is_true(ok)
		assert.same(before, cli(ns, ""))

		assert(h:flush())
		local created, failures = h:load(table.concat(lines, "\n"))
		assert.same({}, failures)
		assert.equals(#lines, created)
		assert.same(before, cli(ns, ""))

		-- the CLI's own format has no mark: those come back as 0
		local plain = {}
		for e in h:dump() do plain[#plain + 1] = fmt.save(e) end
		assert(h:flush())
		assert.equals(#plain, (h:load(table.concat(plain, "\n"))))
		local unmarked = {}
		for i, l in ipairs(before) do unmarked[i] = l:gsub("mark=%d+", "mark=0") end
		assert.same(sorted(unmarked), cli(ns, ""))
	end)

	it("JSON carries what the CLI shows", function()
		local json = require "dkjson"
		local n = 0
		for e in h:dump() do
			local t = json.decode(fmt.json(e))
			local line = tostring(e)
			assert.equals(e.id, t.id)
			assert.equals(e.proto, t.proto)
			local keys = (t.proto == "tcp" or t.proto == "udp") and { "src", "dst", "sport", "dport" } or { "src", "dst" }
			for _, dir in ipairs { "orig", "reply" } do
				for _, k in ipairs(keys) do
					if t[dir][k] ~= nil then
						assert.is_truthy(line:find(k .. "=" .. t[dir][k] .. " ", 1, true), line)
					end
				end
			end
			assert.is_truthy(line:find("mark=" .. t.mark .. " ", 1, true))
			if t.state then assert.is_truthy(line:find(" " .. t.state .. " ", 1, true)) end
			assert.equals(line:find("[ASSURED]", 1, true) ~= nil, t.status[1] == "ASSURED")
			n = n + 1
		end
		assert.equals(9, n)
	end)
end)
