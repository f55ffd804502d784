-- Errors and bad input: programmer errors raise naming the function and the
-- argument; kernel refusals return nil, "op: strerror", errno; without
-- CAP_NET_ADMIN the message says so; no input crashes the interpreter or
-- leaks a descriptor.

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local E = ct.errno
local NIL = {} -- removes a field from the base table
local unpack = table.unpack or unpack
-- the extreme integers of 5.3/5.4; on 5.1 and LuaJIT numbers as far out
local MININT, MAXINT = math.mininteger or -2 ^ 63, math.maxinteger or 2 ^ 63

H.assert_private()

local BASE_T = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1000, dport = 80 }
local BASE_S = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1000, dport = 80, timeout = 60 }
local ICMP_S = { src = "192.0.2.1", dst = "192.0.2.2", proto = "icmp", icmp_type = 8, icmp_id = 1, timeout = 60 }

local function with(base, changes)
	local t = {}
	for k, v in pairs(base) do t[k] = v end
	for k, v in pairs(changes) do
		if v == NIL then t[k] = nil else t[k] = v end
	end
	return t
end

-- f raises; the message points at this file and contains every fragment.
local function raises(f, ...)
	local ok, msg = pcall(f)
	assert.is_false(ok, "no error raised")
	assert.equals("string", type(msg))
	assert.matches("^[^\n]-11%-errors_spec%.lua:%d+: ", msg)
	for _, frag in ipairs{ ... } do
		assert.is_truthy(msg:find(frag, 1, true), ("%q not in %q"):format(frag, msg))
	end
	return msg
end

local function describe_value(v)
	if type(v) == "string" then return ("%q"):format(v) end
	if type(v) == "table" then return "{...}" end
	return tostring(v)
end

describe("errors: bad input raises naming the function and the field", function()
	local ns, h

	H.private(function(_, n, hh) ns, h = n, hh end)

	after_each(function()
		-- nothing bad ever reached the table
		local n = h:count()
		h:flush()
		assert.equals(0, n, "a bad spec reached the table")
	end)

	-- base, changes, field named, reason (plain text)
	local spec_rows = {
		{ BASE_S, { src = 123 }, "src", "address string expected, got number" },
		{ BASE_S, { src = "1.2.3" }, "src", "malformed address '1.2.3'" },
		{ BASE_S, { dst = "::g" }, "dst", "malformed address '::g'" },
		{ BASE_S, { src = "300.1.1.1" }, "src", "malformed address '300.1.1.1'" },
		{ BASE_S, { src = "" }, "src", "malformed address ''" },
		{ BASE_S, { src = "192.0.2.1/24" }, "src", "malformed address" },
		{ BASE_S, { src = "192.0.2.1\0junk" }, "src", "malformed address" },
		{ BASE_S, { dst = "2001:db8::2" }, "dst", "IPv4 and IPv6 addresses mixed in one tuple" },
		{ BASE_S, { reply_src = "2001:db8::2" }, "reply_src", "IPv4 and IPv6 addresses mixed" },
		{ BASE_S, { reply_dst = "1.2.3" }, "reply_dst", "malformed address '1.2.3'" },
		{ BASE_S, { family = "ipv6" }, "src", "IPv4 and IPv6 addresses mixed" },
		{ BASE_S, { family = "ipv5" }, "family", "\"ipv4\" or \"ipv6\" expected, got 'ipv5'" },
		{ BASE_S, { family = 4 }, "family", "expected, got 4" },
		{ BASE_S, { src = NIL }, "src", "missing" },
		{ BASE_S, { dst = NIL }, "dst", "missing" },
		{ BASE_S, { proto = NIL }, "proto", "missing" },
		{ BASE_S, { proto = "tcpx" }, "proto", "unknown protocol 'tcpx'" },
		{ BASE_S, { proto = 256 }, "proto", "integer 0..255 expected, got 256" },
		{ BASE_S, { proto = -1 }, "proto", "integer 0..255 expected, got -1" },
		{ BASE_S, { proto = 6.5 }, "proto", "integer 0..255 expected, got 6.5" },
		{ BASE_S, { proto = {} }, "proto", "name or number expected, got table" },
		{ ICMP_S, { proto = "icmpv6" }, "proto", "icmpv6 with IPv4 addresses" },
		{ BASE_S, { sport = 65536 }, "sport", "integer 0..65535 expected, got 65536" },
		{ BASE_S, { sport = -1 }, "sport", "integer 0..65535 expected, got -1" },
		{ BASE_S, { dport = 1.5 }, "dport", "integer 0..65535 expected, got 1.5" },
		{ BASE_S, { sport = 0 / 0 }, "sport", "integer 0..65535 expected, got " },
		{ BASE_S, { sport = "80" }, "sport", "integer 0..65535 expected, got string" },
		{ BASE_S, { dport = NIL }, "dport", "missing" },
		{ BASE_S, { sport = NIL }, "sport", "missing" },
		{ ICMP_S, { sport = 1 }, "sport", "has no ports" },
		{ ICMP_S, { icmp_type = 256 }, "icmp_type", "integer 0..255 expected, got 256" },
		{ ICMP_S, { icmp_code = -1 }, "icmp_code", "integer 0..255 expected, got -1" },
		{ ICMP_S, { icmp_id = 65536 }, "icmp_id", "integer 0..65535 expected, got 65536" },
		{ ICMP_S, { icmp_type = NIL }, "icmp_type", "missing" },
		{ ICMP_S, { icmp_id = NIL }, "icmp_id", "missing" },
		{ ICMP_S, { reply_sport = 5 }, "reply_sport", "has no ports" },
		{ BASE_S, { icmp_type = 8 }, "icmp_type", "only for icmp and icmpv6" },
		{ BASE_S, { reply_dport = 70000 }, "reply_dport", "integer 0..65535 expected, got 70000" },
		{ BASE_S, { zone = 65536 }, "zone", "integer 0..65535 expected, got 65536" },
		{ BASE_S, { zone = -1 }, "zone", "integer 0..65535 expected, got -1" },
		{ BASE_S, { timeout = -1 }, "timeout", "integer 0..4294967295 expected, got -1" },
		{ BASE_S, { timeout = -0.5 }, "timeout", "integer 0..4294967295 expected, got -0.5" },
		{ BASE_S, { timeout = MININT }, "timeout", "integer 0..4294967295 expected, got -" },
		{ BASE_S, { timeout = 2 ^ 32 }, "timeout", "integer 0..4294967295 expected, got 4294967296" },
		{ BASE_S, { timeout = 1 / 0 }, "timeout", "integer 0..4294967295 expected, got " },
		{ BASE_S, { timeout = "60" }, "timeout", "integer 0..4294967295 expected, got string" },
		{ BASE_S, { timeout = NIL }, "timeout", "missing" },
		{ BASE_S, { mark = -1 }, "mark", "integer 0..4294967295 expected, got -1" },
		{ BASE_S, { mark = MAXINT }, "mark", "integer 0..4294967295 expected, got " },
		{ BASE_S, { secmark = -1 }, "secmark", "integer 0..4294967295 expected, got -1" },
		{ BASE_S, { state = "ESTABLISHD" }, "state", "unknown tcp state 'ESTABLISHD'" },
		{ BASE_S, { state = 3 }, "state", "state name expected" },
		{ with(BASE_S, { proto = "udp" }), { state = "ESTABLISHED" }, "state", "only tcp, sctp and dccp have states" },
		{ BASE_S, { status = { "ASURED" } }, "status", "unknown status flag 'ASURED'" },
		{ BASE_S, { status = { ASSURED = true, BOGUS = true } }, "status", "unknown status flag 'BOGUS'" },
		{ BASE_S, { status = "NOPE" }, "status", "unknown status flag 'NOPE'" },
		{ BASE_S, { status = true }, "status", "flag names expected, got boolean" },
		{ BASE_S, { status = { 1 } }, "status", "flag names expected" },
		{ BASE_S, { status = -1 }, "status", "integer 0..4294967295 expected" },
		{ BASE_S, { labels = "x" }, "labels", "table of label names or bits expected, got string" },
		{ BASE_S, { labels = { 128 } }, "labels", "integer 0..127 expected, got 128" },
		{ BASE_S, { labels = { "no-such-label" } }, "labels", "unknown label 'no-such-label'" },
		{ BASE_S, { labels = { {} } }, "labels", "label names or bit numbers expected" },
		{ BASE_S, { colour = "blue" }, "colour", "unknown field" },
		{ BASE_S, { source_port = 1 }, "source_port", "unknown field" },
		{ BASE_S, { mark_mask = 1 }, "mark_mask", "not a field of a spec" },
		{ BASE_S, { [1] = "x" }, nil, "field names must be strings, got number" },
	}

	for _, op in ipairs{ "create", "add" } do
		for _, r in ipairs(spec_rows) do
			local base, changes, field, why = r[1], r[2], r[3], r[4]
			local what = {}
			for k, v in pairs(changes) do
				what[#what + 1] = tostring(k) .. "=" .. (v == NIL and "nil" or describe_value(v))
			end
			it(op .. " " .. table.concat(what, " "), function()
				raises(function() h[op](h, with(base, changes)) end,
					op .. ": bad argument " .. (field and ("'" .. field .. "' (") or "("), why)
			end)
		end
	end

	it("create and add need a table", function()
		raises(function() h:create() end, "create: bad argument 'spec' (table expected, got no value)")
		raises(function() h:add("spec") end, "add: bad argument 'spec' (table expected, got string)")
		raises(function() ct.create(42) end, "create: bad argument 'spec' (table expected, got number)")
	end)

	local tuple_rows = {
		{ { src = "1.2.3" }, "src", "malformed address '1.2.3'" },
		{ { dst = "::g" }, "dst", "malformed address '::g'" },
		{ { dst = "2001:db8::1" }, "dst", "IPv4 and IPv6 addresses mixed" },
		{ { sport = 65536 }, "sport", "integer 0..65535 expected, got 65536" },
		{ { proto = "bogus" }, "proto", "unknown protocol 'bogus'" },
		{ { colour = 5 }, "colour", "unknown field" },
		{ { icmp_type = 1 }, "icmp_type", "only for icmp and icmpv6" },
		{ { zone = 1.5 }, "zone", "integer 0..65535 expected, got 1.5" },
	}

	for _, op in ipairs{ "get", "delete" } do
		for _, r in ipairs(tuple_rows) do
			local changes, field, why = r[1], r[2], r[3]
			local k, v = next(changes)
			it(op .. " " .. k .. "=" .. describe_value(v), function()
				raises(function() h[op](h, with(BASE_T, changes)) end, op .. ": bad argument '" .. field .. "' (", why)
			end)
		end
		it(op .. " takes a tuple: a spec's other fields raise, naming them (issue 7)", function()
			assert.is_true(h:create(BASE_S))
			raises(function() h[op](h, with(BASE_S, { timeout = 5, state = "BOGUS" })) end,
				op .. ": bad argument '", "' (not a field of a tuple)")
			raises(function() h[op](h, with(BASE_T, { secmark = 7 })) end,
				op .. ": bad argument 'secmark' (not a field of a tuple)")
			assert.equals(1, h:count())
			assert.is_truthy(h[op](h, BASE_T))
			h:flush()
		end)
		it(op .. " needs a tuple table or an entry", function()
			raises(function() h[op](h) end, op .. ": bad argument 'tuple' (table expected, got no value)")
			raises(function() h[op](h, io.stdout) end, op .. ": bad argument 'tuple' (table expected, got")
		end)
	end

	it("update: the tuple, then the changes", function()
		raises(function() h:update(with(BASE_T, { src = "1.2.3" }), { mark = 1 }) end,
			"update: bad argument 'src' (malformed address")
		raises(function() h:update(BASE_T) end, "update: bad argument 'changes' (table expected, got no value)")
		-- changes, and what the message says after "update: bad argument "
		local rows = {
			{ 5, "'changes' (table expected, got number)" },
			{ {}, "'changes' (nothing to change)" },
			{ { mark_mask = 1 }, "'mark_mask' (needs 'mark')" },
			{ { mark = 1, mark_mask = -1 }, "'mark_mask' (integer 0..4294967295 expected, got -1)" },
			{ { mark = 1, mark_mask = 0 / 0 }, "'mark_mask' (" },
			{ { labels_mask = { 1 } }, "'labels_mask' (needs 'labels')" },
			{ { labels = { 1 }, labels_mask = { 200 } }, "'labels_mask' (integer 0..127 expected, got 200)" },
			{ { src = "192.0.2.9" }, "'src' (not a field of changes)" },
			{ { colour = "blue" }, "'colour' (unknown field)" },
			{ { timeout = -5 }, "'timeout' (integer 0..4294967295 expected, got -5)" },
			{ { status = { "NOPE" } }, "'status' (unknown status flag 'NOPE')" },
			{ { mark = "1" }, "'mark' (integer 0..4294967295 expected, got string)" },
		}
		for _, r in ipairs(rows) do
			raises(function() h:update(BASE_T, r[1]) end, "update: bad argument " .. r[2])
		end
	end)

	local dump_rows = {
		{ "x", "filter", "filter, table or function expected, got string" },
		{ { family = "ipx" }, "family", "\"ipv4\" or \"ipv6\" expected, got 'ipx'" },
		{ { family = 10 }, "family", "expected, got 10" },
		{ { mark = -1 }, "mark", "integer 0..4294967295 expected" },
		{ { mark = 2 ^ 32 }, "mark", "integer 0..4294967295 expected" },
		{ { mark = "x" }, "mark", "integer 0..4294967295 expected" },
		{ { mark_mask = 1 }, "mark_mask", "needs 'mark'" },
		{ { zone = 65536 }, "zone", "0..65535, \"lo-hi\" or {lo, hi} expected, got 65536" },
		{ { zone = 0 / 0 }, "zone", "0..65535, \"lo-hi\" or {lo, hi} expected, got " },
		{ { status = { "X" } }, "status", "unknown status flag 'X'" },
		{ { status = 1.5 }, "status", "integer 0..4294967295 expected" },
		{ { status_mask = { "ASSURED" } }, "status_mask", "needs 'status'" },
		{ { colour = 1 }, "colour", "unknown field" },
	}

	for _, op in ipairs{ "dump", "list" } do
		for _, r in ipairs(dump_rows) do
			local opts, field, why = r[1], r[2], r[3]
			it(op .. " opts " .. (type(opts) == "table" and (next(opts)) or describe_value(opts)), function()
				raises(function() h[op](h, opts) end, op .. ": bad argument '" .. field .. "' (", why)
			end)
		end
	end

	it("flush options", function()
		raises(function() h:flush("all") end,
			"flush: bad argument 'filter' (filter, table or function expected, got string)")
		raises(function() h:flush{ family = "inet" } end,
			"flush: bad argument 'family' (\"ipv4\" or \"ipv6\" expected, got 'inet'")
		raises(function() h:flush{ mark = -1 } end, "flush: bad argument 'mark' (")
		raises(function() h:flush{ mark = 0 / 0 } end, "flush: bad argument 'mark' (")
		raises(function() h:flush{ mark_mask = 1 } end, "flush: bad argument 'mark_mask' (needs 'mark')")
	end)

	it("flush refuses options it does not know instead of flushing everything", function()
		local spec = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 9, dport = 9, timeout = 30 }
		assert.is_true(h:create(spec))
		local ok = pcall(h.flush, h, { colour = 3 })
		local left = h:count()
		h:flush()
		assert.equals(1, left, "flush{colour = 3} flushed the whole table")
		assert.is_false(ok)
		raises(function() h:flush{ colour = 3 } end, "flush: bad argument 'colour' (unknown field)")
		raises(function() h:flush{ zone = 70000 } end, "flush: bad argument 'zone' (0..65535")
	end)

	it("flush by zone (0 too: then it runs as delete_where) and by status removes only the matching entries", function()
		local a = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 9, dport = 9, timeout = 30 }
		local b = { src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 9, dport = 9, timeout = 30, zone = 3 }
		local c = { src = "192.0.2.3", dst = "192.0.2.4", proto = "tcp", sport = 9, dport = 9, timeout = 30,
			state = "ESTABLISHED", status = { "ASSURED", "SEEN_REPLY" } }
		assert.is_true(h:create(a))
		assert.is_true(h:create(b))
		assert.is_true(h:create(c))
		assert.is_true(h:flush{ zone = 3 })
		assert.equals(2, h:count())
		assert.is_truthy(h:get(H.tuple(a)))
		assert.is_nil((h:get(H.tuple(b))))
		assert.is_true(h:create(b))
		assert.is_true(h:flush{ zone = 0 })
		assert.equals(1, h:count())
		assert.is_nil((h:get(H.tuple(a))))
		assert.is_truthy(h:get(H.tuple(b)))
		assert.is_true(h:flush{ zone = 3 })
		assert.is_true(h:create(a))
		assert.is_true(h:create(c))
		assert.is_true(h:flush{ status = { "ASSURED" } })
		assert.equals(1, h:count())
		assert.is_truthy(h:get(H.tuple(a)))
		assert.is_nil((h:get(H.tuple(c))))
		h:flush()
	end)

	it("open options", function()
		raises(function() ct.open("ns") end, "open: bad argument 'opts' (table expected, got string)")
		raises(function() ct.open{ rcvbuf = -1 } end,
			"open: bad argument 'rcvbuf' (integer 4096..1073741824 expected, got -1)")
		raises(function() ct.open{ rcvbuf = 1e5 + 0.5 } end, "open: bad argument 'rcvbuf' (integer")
		raises(function() ct.open{ netns = "ns\0x" } end, "open: bad argument 'netns' (embedded NUL")
		raises(function() ct.open{ rcvbuf = "big" } end, "open: bad argument 'rcvbuf' (")
		raises(function() ct.open{ rcvbuf = 2 ^ 40 } end, "open: bad argument 'rcvbuf' (")
		raises(function() ct.open{ rcvbuf = 0 / 0 } end, "open: bad argument 'rcvbuf' (")
		raises(function() ct.open{ netns = 5 } end, "open: bad argument 'netns' (string expected, got number)")
		raises(function() ct.open{ netns = "" } end, "open: bad argument 'netns' (empty name)")
		raises(function() ct.open{ netns = ".." } end, "open: bad argument 'netns' (invalid name")
		raises(function() ct.open{ netsn = "x" } end, "open: bad argument 'netsn' (unknown option)")
	end)

	it("batch arguments raise; a bad item is a failure of that item, the rest goes (issue 7)", function()
		raises(function() h:batch("frob", {}) end, "batch: bad argument 'op' (unknown operation 'frob')")
		raises(function() h:batch("create") end, "batch: bad argument 'items' (table expected, got no value)")
		raises(function() h:batch("update", { BASE_T }) end, "batch: bad argument 'changes' (table expected, got no value)")
		local ok, missing, fails = h:batch("create", { BASE_S, with(BASE_S, { sport = 1001, src = "1.2.3" }) })
		assert.same({ 1, 0, 1 }, { ok, missing, #fails })
		assert.same({ 2, E.EINVAL }, { fails[1].index, fails[1].errno })
		assert.equals("batch: item 2: create: bad argument 'src' (malformed address '1.2.3')", fails[1].message)
		ok, missing, fails = h:batch("delete", { BASE_T, "x" })
		assert.same({ 1, 0, 1 }, { ok, missing, #fails })
		assert.equals("batch: item 2: delete: bad argument 'tuple' (table expected, got string)", fails[1].message)
		ok, missing, fails = h:batch("update", { BASE_T }, {})
		assert.same({ 0, 0, 1 }, { ok, missing, #fails })
		assert.matches("nothing to change", fails[1].message)
		assert.equals(0, h:count())
		-- 1 500 specs, item 1 200 bad: the others are created and the counts come back
		local items = H.specs(1500)
		items[1200] = with(items[1200], { src = "1.2.3" })
		ok, missing, fails = h:batch("create", items)
		assert.same({ 1499, 0, 1, 1200 }, { ok, missing, #fails, fails[1].index })
		assert.equals(1499, h:count())
		h:flush()
	end)

	it("entry:format options", function()
		assert.is_true(h:create(BASE_S))
		local e = assert(h:get(BASE_T))
		h:flush()
		raises(function() e:format("xmlx") end, "format: bad argument 'opts' (unknown output option 'xmlx')")
		raises(function() e:format("extended,bogus") end, "format: bad argument 'opts' (unknown output option 'bogus')")
	end)

	it("a method called on something that is not a handle", function()
		raises(function() h.dump(5) end, "dump: bad self (conntrack handle expected, got number)")
		raises(function() h.count({}) end, "count: bad self (conntrack handle expected, got table)")
		raises(function() h.create(nil, BASE_S) end, "create: bad self (conntrack handle expected, got nil)")
	end)

	it("every method of a closed handle raises; close() stays fine", function()
		local c = assert(ct.open{ netns = ns })
		assert.is_true(c:close())
		local calls = {
			dump = {}, list = {}, count = {}, max = {}, stats = {}, getfd = {}, flush = {},
			get = { BASE_T }, create = { BASE_S }, add = { BASE_S }, delete = { BASE_T },
			update = { BASE_T, { mark = 1 } }, batch = { "create", { BASE_S } }, load = { { BASE_S } },
			subscribe = {}, events = {}, delete_where = { {} }, update_where = { {}, { mark = 1 } },
			expect_count = {}, expect_stats = {}, expect_flush = {},
		}
		for m, args in pairs(calls) do
			raises(function() c[m](c, unpack(args)) end, m .. ": attempt to use a closed handle")
		end
		assert.is_true(c:close())
	end)

	-- Issue 8: what the API fuzzer (tools/fuzz.lua) found in the Lua layer.
	it("update_where checks the changes it reads as update does", function()
		assert.is_true(h:create(BASE_S))
		for _, c in ipairs{
			{ { label_del = 5 }, "'label_del' (table of label names or bits expected, got number)" },
			{ { mark = 1, mark_mask = "x" }, "'mark_mask' (integer 0..4294967295 expected, got string)" },
			{ { mark = -1 }, "'mark' (integer 0..4294967295 expected, got -1)" },
			{ { labels = "x" }, "'labels' (table of label names or bits expected, got string)" },
			{ { status = true }, "'status' (flag names expected, got boolean)" },
			{ { tcp_wscale_orig = 15 }, "'tcp_wscale_orig' (integer 0..14 expected, got 15)" },
			{ { tcp_flags_reply = "x" }, "'tcp_flags_reply' (integer 0..255 expected, got string)" },
		} do
			raises(function() h:update(BASE_T, c[1]) end, "update: bad argument " .. c[2])
			raises(function() h:update_where(ct.filter.all(), c[1]) end, "update_where: bad argument " .. c[2])
		end
		h:flush()
	end)

	it("load refuses specs whose length is not a count", function()
		if #setmetatable({}, { __len = function() return 3 end }) ~= 3 then
			return	-- Lua 5.1 and LuaJIT: no __len for tables
		end
		raises(function() h:load(setmetatable({}, { __len = function() return "x" end })) end,
			"load: bad argument 'specs' (array of specs expected, its length is 'x')")
		raises(function() h:load(setmetatable({}, { __len = function() return 2 ^ 40 end })) end,
			"load: bad argument 'specs' (array of specs expected, its length is 1")
	end)

	it("option tables are read once: their metamethods cannot change or close what was checked", function()
		local seen = false
		for _ in pairs(setmetatable({}, { __pairs = function() seen = true return next, {}, nil end })) do end
		if not seen then
			return	-- Lua 5.1 and LuaJIT: no __pairs
		end
		-- pairs shows batch = 2, a plain read would give 0
		local how = setmetatable({}, { __pairs = function() return next, { batch = 2 }, nil end,
			__index = function() return 0 end })
		assert.same({ 3, 0, {} }, { h:load(H.specs(3), how) })
		assert.same({ 3, 0, {} }, { h:delete_where(function() return true end, how) })
		-- an option table that closes the handle while it is read
		local c = assert(ct.open{ netns = ns })
		local opts = setmetatable({ family = "ipv4" }, { __pairs = function(t) c:close() return next, t, nil end })
		raises(function() c:expect_flush(opts) end, "expect_flush: attempt to use a closed handle")
	end)

	it("long option and field names are cut in messages", function()
		local F = ct.filter
		local big = ("k"):rep(100000)
		local shown = "'" .. ("k"):rep(40) .. "'... (100000 bytes)"
		for _, m in ipairs{ "dump", "list", "delete_where", "flush" } do
			local msg = raises(function() h[m](h, F.all(), { [big] = 1 }) end,
				m .. ": bad argument " .. shown .. " (unknown option)")
			assert.is_true(#msg < 200, msg)
		end
		raises(function() h:dump{ [big] = 1 } end, "dump: bad argument " .. shown .. " (unknown field)")
		raises(function() h:update_where(F.all(), { [big] = 1 }) end,
			"update_where: bad argument " .. shown .. " (unknown field)")
		raises(function() h:subscribe{ [big] = 1 } end, "subscribe: bad argument " .. shown .. " (unknown option)")
		raises(function() h:subscribe{ kernel_filter = { [big] = 1 } } end,
			"subscribe: bad argument 'kernel_filter." .. ("k"):rep(40) .. "...' (unknown field)")
		raises(function() h:expect_flush{ family = "ipv4", [big] = 1 } end,
			"expect_flush: bad argument " .. shown .. " (unknown option)")
		raises(function() h:load({}, { mode = big }) end,
			"load: bad argument 'mode' (\"create\", \"add\" or \"put\" expected, got " .. shown .. ")")
	end)

	it("a callback that closes the handle: the error names the method called", function()
		for _, m in ipairs{ "delete_where", "update_where", "flush" } do
			assert.equals(3, (h:load(H.specs(3))))
			local c = assert(ct.open{ netns = ns })
			local closer = function() c:close() return true end
			raises(function() c[m](c, closer, m == "update_where" and { timeout = 50 } or nil) end,
				m .. ": attempt to use a closed handle")
			h:flush()
		end
		-- flush with a filter it hands to the bulk delete: bad self, closed handle
		local F = ct.filter
		for _, f in ipairs{ F.zone(0), F.where(function() return true end) } do
			raises(function() h.flush(5, f) end, "flush: bad self (conntrack handle expected, got number)")
			local c = assert(ct.open{ netns = ns })
			c:close()
			raises(function() c:flush(f) end, "flush: attempt to use a closed handle")
		end
	end)

	it("ct.events' iterator names events when its filter closes the subscription", function()
		local sub
		local iter
		iter, sub = h:events{ filter = function() sub:close() return true end, timeout = 2 }
		assert.is_true(h:create(BASE_S))
		raises(function() return iter(sub) end, "events: attempt to use a closed subscription")
		h:flush()
	end)
end)

describe("errors: kernel refusals return nil, 'op: strerror', errno", function()
	local h

	H.private(function(_, _, hh) h = hh end)

	before_each(function() h:flush() end)

	local function refused(want_msg, want_errno, ok, msg, errno, extra)
		assert.is_nil(ok)
		assert.equals(want_msg, msg)
		assert.equals(want_errno, errno)
		assert.is_nil(extra)
	end

	it("EEXIST on a duplicate create", function()
		assert.is_true(h:create(BASE_S))
		refused("create: File exists", E.EEXIST, h:create(BASE_S))
		-- the zone makes it another flow
		assert.is_true(h:create(with(BASE_S, { zone = 1 })))
		refused("create: File exists", E.EEXIST, h:create(with(BASE_S, { zone = 1 })))
	end)

	it("ENOENT on get, update and delete of a missing entry", function()
		refused("get: No such file or directory", E.ENOENT, h:get(BASE_T))
		refused("update: No such file or directory", E.ENOENT, h:update(BASE_T, { mark = 1 }))
		refused("delete: No such file or directory", E.ENOENT, h:delete(BASE_T))
		refused("get: No such file or directory", E.ENOENT, ct.get(with(BASE_T, { sport = 1 })))
	end)

	it("an update's status flags are added to the entry's, as conntrack -U -u does (issue 10)", function()
		-- the kernel refuses to clear ASSURED (EBUSY): the module never asks it to
		assert.is_true(h:create(with(BASE_S, { status = { "ASSURED" } })))
		assert.is_true(h:update(BASE_T, { status = 0 }))
		assert.is_true(h:update(BASE_T, { status = { "FIXED_TIMEOUT" } }))
		local st = h:get(BASE_T).status
		assert.is_true(st.ASSURED and st.FIXED_TIMEOUT)
	end)

	it("EINVAL where the kernel refuses the spec (sctp state without vtags)", function()
		refused("create: Invalid argument", E.EINVAL, h:create{ src = "192.0.2.1", dst = "192.0.2.2",
			proto = "sctp", sport = 1, dport = 2, timeout = 10, state = "ESTABLISHED" })
	end)
end)

describe("errors: without CAP_NET_ADMIN", function()
	local setpriv = "setpriv --inh-caps=-all --bounding-set=-all --ambient-caps=-all"
	local script = [=[
local ct = require "conntrack"
local h = assert(ct.open())
local T = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1, dport = 2 }
local function show(name, ok, msg, errno) print(name, tostring(ok), tostring(msg), tostring(errno)) end
show("count", h:count())
show("max", h:max())
show("stats", h:stats())
show("get", h:get(T))
show("create", h:create{ src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1, dport = 2, timeout = 5 })
show("update", h:update(T, { mark = 1 }))
show("delete", h:delete(T))
show("flush", h:flush())
show("list", h:list())
show("flush_zone0", h:flush(ct.filter.zone(0)))
show("flush_where", h:flush(function() return true end))
local bok, bmissing, bfails = h:batch("delete", { T })
local bfail = bfails and bfails[1] or {}
print("batch", tostring(bok), tostring(bmissing), bfail.message, bfail.errno)
local ok, err = pcall(function() for _ in h:dump() do end end)
print("dump", tostring(ok), err)
show("netns", ct.open{ netns = os.getenv("LCT_NETNS") or "." })
print("caps", io.open("/proc/self/status"):read("*a"):match("CapEff:%s*(%x+)"))
print("done")
]=]

	local out

	setup(function()
		assert.is_truthy(hosts.run("command -v setpriv"), "setpriv (util-linux) is needed")
		local name = os.tmpname()
		local f = assert(io.open(name, "w"))
		f:write(script)
		f:close()
		local ok
		ok, out = hosts.run(setpriv .. " " .. H.lua .. " " .. hosts.quote(name))
		os.remove(name)
		assert.is_true(ok, out)
	end)

	local function row(name)
		local line = out:match("\n" .. name .. "\t([^\n]*)") or out:match("^" .. name .. "\t([^\n]*)")
		assert.is_truthy(line, "no line for " .. name .. " in:\n" .. out)
		local ok, msg, errno = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)$")
		return ok, msg, tonumber(errno)
	end

	it("really has no capabilities", function()
		assert.matches("\ncaps\t0+\n", out)
		assert.matches("\ndone\n", out)
	end)

	for _, op in ipairs{ "count", "max", "stats", "get", "create", "update", "delete", "flush", "list" } do
		it(op .. " says CAP_NET_ADMIN is required, errno EPERM", function()
			local ok, msg, errno = row(op)
			assert.equals("nil", ok)
			assert.equals(op .. ": Operation not permitted (CAP_NET_ADMIN is required)", msg)
			assert.equals(E.EPERM, errno)
		end)
	end

	it("flush with a filter it hands to the bulk delete names flush (issue 8)", function()
		for _, row_name in ipairs{ "flush_zone0", "flush_where" } do
			local ok, msg, errno = row(row_name)
			assert.equals("nil", ok)
			assert.equals("flush: Operation not permitted (CAP_NET_ADMIN is required)", msg)
			assert.equals(E.EPERM, errno)
		end
	end)

	it("batch reports the refusal per item, saying CAP_NET_ADMIN is required", function()
		local line = out:match("\nbatch\t([^\n]*)")
		assert.is_truthy(line, out)
		local ok, missing, msg, errno = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
		assert.equals("0", ok)
		assert.equals("0", missing)
		assert.equals(tostring(E.EPERM), errno)
		assert.equals("delete: Operation not permitted (CAP_NET_ADMIN is required)", msg)
	end)

	it("a dump raises, saying CAP_NET_ADMIN is required", function()
		local line = out:match("\ndump\t([^\n]*)")
		assert.is_truthy(line, out)
		assert.matches("^false\t", line)
		assert.matches("dump: Operation not permitted", line)
		assert.matches("CAP_NET_ADMIN", line)
	end)

	it("binding to a namespace is refused with EPERM, not a crash", function()
		local ok, msg, errno = row("netns")
		assert.equals("nil", ok)
		assert.matches("^open: ", msg)
		assert.equals(E.EPERM, errno)
	end)
end)

describe("errors: nothing crashes or leaks", function()
	-- A child interpreter throws garbage at every entry point; a crash there
	-- shows up as a failed test instead of taking busted down.
	local script = [=[
local ct = require "conntrack"
-- open descriptors, counted without starting a program: /proc/self/fd/N
-- of a closed N is ENOENT (of a socket ENXIO, of a pipe or file it opens)
local function fds()
	local n = 0
	for fd = 0, 1023 do
		local f, _, errno = io.open("/proc/self/fd/" .. fd)
		if f then f:close() end
		if f or errno ~= 2 then n = n + 1 end
	end
	return n
end
local function rss()
	return tonumber(io.open("/proc/self/status"):read("*a"):match("VmRSS:%s*(%d+)"))
end
local h = assert(ct.open())
local closed = assert(ct.open()) closed:close()
assert(h:create{ src = "192.0.2.1", dst = "192.0.2.2", proto = "udp", sport = 1, dport = 2, timeout = 60 })
local entry = h:list()[1]
local keys = { "family", "proto", "src", "dst", "sport", "dport", "reply_src", "reply_dst", "reply_sport",
	"reply_dport", "icmp_type", "icmp_code", "icmp_id", "zone", "timeout", "mark", "mark_mask", "state",
	"status", "status_mask", "labels", "labels_mask", "secmark", "netns", "rcvbuf", 1, true }
local atoms = { false, true, 0, -1, 1, 6, 17, 58, 255, 256, 65535, 65536, 2^31, 2^32, 2^53, 1/0, -1/0, 0/0,
	math.mininteger or -2^63, math.maxinteger or 2^63, 1.5, "", "x", "tcp", "udp", "icmp", "icmpv6", "ipv4", "ipv6",
	"ESTABLISHED", "ASSURED", "192.0.2.1", "2001:db8::1", "1.2.3", "::g", "300.1.1.1", ("a"):rep(5000),
	"192.0.2.1\0", "/", ".", "..", "/proc/self/ns/net", print, io.stdout, coroutine.create(function() end),
	entry, closed }
local rnd = math.random
math.randomseed(42)
local function value(depth)
	local r = rnd(10)
	if r <= 6 or depth > 2 then return atoms[rnd(#atoms)] end
	if r == 7 then return nil end
	local t = {}
	for _ = 1, rnd(0, 8) do
		local k = keys[rnd(#keys)]
		t[k] = value(depth + 1)
	end
	if rnd(3) == 1 then
		t.src, t.dst, t.proto = "192.0.2." .. rnd(254), "192.0.2." .. rnd(254), ({ "tcp", "udp", "icmp", 6, 17 })[rnd(5)]
	end
	return t
end
local methods = { "dump", "list", "get", "create", "add", "update", "delete", "flush", "count", "max",
	"stats", "batch" }
local function round(n)
	local raised = 0
	for _ = 1, n do
		local m = methods[rnd(#methods)]
		local self = rnd(20) == 1 and value(0) or (rnd(20) == 1 and closed or h)
		local a, b, c = value(0), value(0), value(0)
		if m == "batch" then a = ({ "create", "add", "update", "delete", a })[rnd(5)] b = { value(0), value(0) } end
		local ok = pcall(function()
			local r = { h[m](self, a, b, c) }
			if m == "dump" and type(r[1]) == "function" then
				for _ in r[1], r[2], r[3], r[4] do break end
			end
		end)
		if not ok then raised = raised + 1 end
		pcall(entry.format, entry, value(0))
		pcall(ct.open, value(0))
	end
	h:flush()
	collectgarbage() collectgarbage()
	return raised
end
local f0 = fds()
round(3000)
local f1, r1 = fds(), rss()
local raised = round(3000)
local f2, r2 = fds(), rss()
print("fds", f0, f1, f2)
print("rss", r1, r2)
print("raised", raised)
h:close()
print("done")
-- closing the state frees everything: under check-asan LeakSanitizer then
-- reports whatever the module lost
os.exit(0, true)
]=]

	it("survives 6000 calls with random arguments, descriptors and memory flat", function()
		local name = os.tmpname()
		local f = assert(io.open(name, "w"))
		f:write(script)
		f:close()
		local asan = os.getenv("LCT_ASAN")
		local ok, out, code = hosts.run((asan and "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 " or "")
			.. H.lua .. " " .. hosts.quote(name))
		os.remove(name)
		assert.is_true(ok, ("exit %s:\n%s"):format(tostring(code), out))
		assert.matches("\ndone\n", out)
		local f0, f1, f2 = out:match("fds\t(%d+)\t(%d+)\t(%d+)")
		assert.equals(f0, f1, out)
		assert.equals(f1, f2, out)
		local r1, r2 = out:match("rss\t(%d+)\t(%d+)")
		-- a second identical round must not keep allocating (KiB); under
		-- ASan freed memory sits in quarantine, and LeakSanitizer judges
		if not asan then
			assert.is_true(tonumber(r2) - tonumber(r1) < 4096, out)
		end
		assert.not_matches("LeakSanitizer", out)
		assert.is_true(tonumber(out:match("raised\t(%d+)")) > 1000, out)
	end)
end)
