-- conntrack.format, unit part (no kernel, no privileges): save lines
-- written and parsed back, JSON, on synthetic entries.  The same formats
-- against the conntrack CLI on real entries: spec/42-format_spec.lua.
local fmt = require "conntrack.format"

describe("conntrack.format", function()
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
		local specs, errs, lines, ops = fmt.parse_save(text)
		assert.equals(3, #specs)
		assert.same({ "-A", "-A", "-I" }, ops)
		assert.same({ timeout = 99, status = { "SEEN_REPLY", "ASSURED" }, src = "192.0.2.1", dst = "198.51.100.2",
			reply_src = "198.51.100.2", reply_dst = "192.0.2.1", proto = "tcp", sport = 1000, dport = 80,
			reply_sport = 80, reply_dport = 1000, state = "ESTABLISHED" }, specs[1])
		-- the NAT forms (-g, -n) ask for the translation (issue 10)
		assert.same({ timeout = 5, status = {}, zone = 3, src = "2001:db8::1", dst = "2001:db8::2",
			reply_src = "2001:db8::3", reply_dst = "2001:db8::4", proto = "icmpv6", icmp_type = 128,
			icmp_code = 0, icmp_id = 5, dnat = "2001:db8::3", snat = "2001:db8::4" }, specs[2])
		assert.same({ timeout = 7, status = { "ASSURED" }, src = "192.0.2.1", dst = "192.0.2.2",
			reply_src = "192.0.2.2", reply_dst = "192.0.2.1", proto = "sctp", sport = 1, dport = 2,
			reply_sport = 2, reply_dport = 1, state = "ESTABLISHED", orig_vtag = 9, reply_vtag = 10 }, specs[3])
		assert.same({ 1, 4, 5 }, lines)
		assert.equals(4, #errs)
		assert.same({ 6, 7, 8, 9 }, { errs[1].line, errs[2].line, errs[3].line, errs[4].line })
		-- a -D line names a flow by its whole tuple (as conntrack -R runs it)
		assert.matches("^load: line 6: bad argument 'proto' %(missing%)", errs[1].message)
		assert.matches("^load: line 7: unsupported option %-%-bogus", errs[2].message)
		assert.matches("^load: line 8: bad argument 'timeout' %(missing", errs[3].message)
		assert.matches("^load: line 9: option %-c needs a value", errs[4].message)
		assert.equals(22, errs[1].errno)
	end)

	it("says whether conntrack -R reads save text as h:load does", function()
		local tcp = "-A -t 9 -u ASSURED -s 192.0.2.1 -d 192.0.2.2 -r 192.0.2.2 -q 192.0.2.1 -p tcp "
			.. "--sport 1 --dport 2 --reply-port-src 2 --reply-port-dst 1 --state ESTABLISHED"
		local udp = "-I -t 9 -u UNSET -s 192.0.2.1 -d 192.0.2.2 -p udp --sport 1 --dport 2"
		local icmp = "-A -t 9 -s 192.0.2.1 -d 192.0.2.2 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 3"
		assert.same({ true, 5 }, { fmt.save_plain(table.concat({ tcp, "", "# c", udp, icmp }, "\n") .. "\n") })
		assert.same({ true, 0 }, { fmt.save_plain("") })
		local function no(text) return { select(2, fmt.save_plain(text)) } end
		-- what conntrack would refuse or read otherwise, with the first line of it
		assert.same({ 2, "not -A or -I" }, no(tcp .. "\n-D -s 192.0.2.1\n"))
		assert.same({ 1, "not -A or -I" }, no(" " .. tcp))
		assert.same({ 2, "a quote, a tab or a CR" }, no(udp .. "\n" .. udp .. "\r\n"))
		assert.same({ 1, "a quote, a tab or a CR" }, no((udp:gsub(" %-%-dport", "\t--dport"))))
		assert.same({ 1, "a quote, a tab or a CR" }, no((udp:gsub("udp", '"udp"'))))
		assert.same({ 1, "an option conntrack refuses on a create" }, no(udp .. " -c 5"))
		assert.same({ 1, "an option conntrack refuses on a create" }, no(udp .. " --label-del 1"))
		assert.same({ 1, "no -p" }, no("-A -t 9 -s 192.0.2.1 -d 192.0.2.2 --protonum udp"))
		assert.same({ 1, "an option conntrack requires on a create is missing" },
			no((tcp:gsub(" %-%-state ESTABLISHED", ""))))
		assert.same({ 1, "an option conntrack requires on a create is missing" },
			no((icmp:gsub(" %-%-icmp%-code 0", ""))))
		assert.same({ 1, "an option conntrack requires on a create is missing" },
			no(udp:gsub("udp", "sctp") .. " --state ESTABLISHED --orig-vtag 1"))
		assert.has_error(function() fmt.save_plain(nil) end,
			"save_plain: bad argument 'text' (string expected, got nil)")
	end)

	it("makes JSON-ready tables and JSON", function()
		local json = require "dkjson"
		local e = E { family = "ipv6", proto = "udp", protonum = 17, timeout = 30,
			status = { SEEN_REPLY = true, CONFIRMED = true, SRC_NAT = true, [20] = true },
			labels = { blue = true, [3] = true },
			orig = { src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53, packets = 1, bytes = 80 },
			reply = { src = "2001:db8:2::2", dst = "2001:db8:2::100", sport = 53, dport = 7 } }
		local t = fmt.table(e)
		assert.same({ "CONFIRMED", "SEEN_REPLY", "SRC_NAT", 20 }, t.status)
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
