-- The Lua layer's bad input (issue 8, rule 3), no kernel, no privileges:
-- every rejection raises "fname: bad argument 'arg' (...)" at the caller's
-- line, naming the function the caller called, with values shown short;
-- never a raw Lua error from inside the module.  (The API fuzzer,
-- tools/fuzz.lua, found each of these.)
local ct = require "conntrack"
local F, N, FMT = ct.filter, ct.nat, ct.format
local addr = require "conntrack.addr"

-- f(...) raises msg (plain text, after the position), at this file's line.
local function raises(msg, f, ...)
	local ok, err = pcall(f, ...)
	assert.is_false(ok, "no error raised")
	assert.equals("string", type(err))
	assert.matches("^[^\n]-43%-bad%-input_spec%.lua:%d+: ", err)
	assert.equals(msg, (err:gsub("^[^\n]-:%d+: ", "", 1)))
	return err
end

local function entry()
	return ct.entry { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1000, dport = 80 }
end

local BIG = ("k"):rep(100000)
local BIG_SHOWN = "'" .. ("k"):rep(40) .. "'... (100000 bytes)"

describe("bad input to the Lua layer", function()
	it("ct.nat.* take an entry or a table of its shape", function()
		for _, name in ipairs { "classify", "describe", "tostring", "from_status", "from_tuples" } do
			raises("nat." .. name .. ": bad argument 'e' (entry or table expected, got number)", N[name], 5)
			raises("nat." .. name .. ": bad argument 'e' (entry or table expected, got nil)", N[name])
			raises("nat." .. name .. ": bad argument 'e.status' (table of flags expected, got number)",
				N[name], { status = 5 })
			raises("nat." .. name .. ": bad argument 'e.reply' (table or tuple expected, got string)",
				N[name], { orig = {}, reply = "x" })
		end
		-- a table made by hand with odd values still gets an answer
		assert.equals("snat 5:table -> 7:table",
			N.tostring { orig = { src = 5, sport = {}, dst = "192.0.2.1" }, reply = { dst = 7, src = "192.0.2.1" } })
		assert.equals("none", N.classify(entry()))
	end)

	it("ct.format.* check their entry and options", function()
		local e = entry()
		for _, name in ipairs { "default", "extended", "format" } do
			raises("format." .. name .. ": bad argument 'e' (entry expected, got table)", FMT[name], {})
			raises("format." .. name .. ": bad argument 'e' (entry expected, got string)", FMT[name], "%d")
		end
		for _, name in ipairs { "save", "table", "json" } do
			raises("format." .. name .. ": bad argument 'e' (entry or table expected, got number)", FMT[name], 5)
			raises("format." .. name .. ": bad argument 'e.labels' (table of labels expected, got number)",
				FMT[name], { labels = 5 })
		end
		raises("format.save: bad argument 'opts' (table expected, got number)", FMT.save, e, 5)
		raises("format.save: bad argument 'command' (\"-A\", \"-I\", \"-U\" or \"-D\" expected, got "
			.. BIG_SHOWN .. ")", FMT.save, e, { command = BIG })
		raises("format.format: bad argument 'name' (format name expected, got table)", FMT.format, e, {})
		raises("format.format: bad argument 'e' (entry or table expected, got nil)", FMT.format, nil, "save")
		-- the ones that take tables still do
		assert.equals("-A", FMT.save {})
		assert.same({ status = {}, nat = "none" }, FMT.table {})
	end)

	it("ct.format.json names itself when JSON cannot hold the value", function()
		if not pcall(require, "dkjson") then
			return pending("no dkjson")
		end
		raises("format.json: bad argument 'e' (not JSON: type 'function' is not supported by JSON.)",
			FMT.json, { x = print })
		raises("format.json: bad argument 'opts' (table expected, got string)", FMT.json, entry(), "x")
	end)

	it("filter.band, bor, bxor take integers 0..2^32-1", function()
		raises("filter.band: bad argument 'a' (integer 0..4294967295 expected, got nil)", F.band, nil, 1)
		raises("filter.bor: bad argument 'b' (integer 0..4294967295 expected, got 'x')", F.bor, 1, "x")
		raises("filter.bxor: bad argument 'a' (integer 0..4294967295 expected, got -1)", F.bxor, -1, 1)
		assert.same({ 8, 14, 6 }, { F.band(12, 10), F.bor(12, 10), F.bxor(12, 10) })
	end)

	it("filter.marks and filter.none name themselves and show the bad value", function()
		raises("filter.marks: bad argument 'marks' (array of marks expected, got number)", F.marks, 5)
		raises("filter.marks: bad argument 'mark' (integer 0..4294967295 expected, got 'x')",
			F.marks, { { 1, 255 }, F.mark(2), 3, "x" })
		raises("filter.marks: bad argument 'mark_mask' (integer 0..4294967295 expected, got 'y')",
			F.marks, { { 1, "y" } })
		raises("filter.mark: bad argument 'mark' (integer 0..4294967295 expected, got 'x')", F.mark, "x")
		raises("filter.none: bad argument 'filter' (filter, table or function expected, got string)", F.none, "x")
		raises("filter.any: bad argument 'filter' (filter, table or function expected, got number)", F.any, 5)
		raises("filter.negate: bad argument 'filter' (filter, table or function expected, got number)",
			F.negate, 5)
		-- and a mark's errors inside a filter table name the function the table was given to
		raises("dump: bad argument 'mark' (integer 0..4294967295 expected, got 'x')", F.coerce,
			{ mark = "x" }, "dump")
	end)

	it("filter.where's text is a string", function()
		raises("filter.where: bad argument 'text' (string expected, got number)", F.where, print, 5)
		assert.equals("where(mine)", tostring(F.where(print, "mine")))
	end)

	it("f:plan and F.coerce check the function name they are given", function()
		raises("plan: bad argument 'fname' (function name expected, got table)", function()
			return F.proto("tcp"):plan {}
		end)
		raises("filter.coerce: bad argument 'fname' (function name expected, got number)", F.coerce, {}, 5)
		raises("filter.coerce: bad argument 'fname' (function name expected, got " .. BIG_SHOWN .. ")",
			F.coerce, {}, BIG)
		raises("explain: bad self (filter expected, got number)", F.Filter.explain, 5)
		-- a table read as a filter names the function it was given to
		raises("filter.coerce: bad argument 'family' (\"ipv4\" or \"ipv6\" expected, got 'inet')",
			F.coerce, { family = "inet" })
		raises("filter: bad argument 'family' (\"ipv4\" or \"ipv6\" expected, got 'inet')", F, { family = "inet" })
		raises("filter.all: bad argument 'family' (\"ipv4\" or \"ipv6\" expected, got 'inet')",
			F.all, { family = "inet" })
	end)

	it("a filter run on something that is not an entry raises as the C matcher does", function()
		local msg = "match: bad argument 'entry' (conntrack entry expected, got number)"
		for _, f in ipairs { F.nat "snat", F.where(function(e) return e.mark == 1 end), F.label "x",
			F.proto "tcp" * F.nat "any", F.proto "tcp" } do
			raises(msg, function() return f:match(5) end)
			raises(msg, function() return f(5) end)
			raises(msg, f:compile(), 5)
		end
		assert.is_true(F.proto("tcp"):match(entry()))
		assert.is_false(F.nat("snat")(entry()))
	end)

	it("an object whose match is not a function is refused when it becomes a filter", function()
		local msg = "dump: bad argument 'filter' (a filter object's match must be a function, got number)"
		raises(msg, F.coerce, { match = 5 }, "dump")
		raises(msg, F.coerce, setmetatable({}, { __index = { match = 5 } }), "dump")
		raises("dump: bad argument 'filter' (a filter object's match must be a function, got filter)", F.coerce,
			{ match = F.proto "tcp" }, "dump")
		-- its method as it was then: a later change does not break the filter
		local obj = { match = function(_, e) return e.proto == "tcp" end }
		local f = F.coerce(obj, "dump")
		obj.match = 5
		assert.is_true(f:match(entry()))
	end)

	it("addr.matcher names itself", function()
		raises("addr.matcher: bad argument 'address' (address or prefix string expected, got number)",
			addr.matcher, 5)
		raises("addr.matcher: bad argument 'what' (string expected, got table)", addr.matcher, "192.0.2.1", {})
		raises("addr.matcher: bad argument 'src' (malformed address or prefix '1.2.3')", addr.matcher, "1.2.3", "src")
	end)

	it("a list in a table of fields whose length is not a count raises, naming the field", function()
		-- (the fuzzer: "object length is not an integer", "too many results to unpack")
		if #setmetatable({}, { __len = function() return 1 end }) ~= 1 then
			return pending("# of a table ignores __len on " .. _VERSION)
		end
		local frac = setmetatable({}, { __len = function() return 1.5 end })
		local huge = setmetatable({}, { __len = function() return 1000000 end })
		local boom = setmetatable({}, { __len = function() error("boom") end })
		raises("filter.all: bad argument 'zone' (list of at most 4096 values expected, its length is 1.5)",
			F.all, { zone = frac })
		raises("filter.any: bad argument 'proto' (list of at most 4096 values expected, its length is 1000000)",
			F.any, { proto = huge })
		raises("dump: bad argument 'src' (list of at most 4096 values expected, its length is an error)",
			F.coerce, { src = boom }, "dump")
		-- a list read through its metamethods, as # and [] read it
		assert.equals("src(192.0.2.1,192.0.2.2)", tostring(F.all({ src = setmetatable({}, {
			__len = function() return 2 end,
			__index = function(_, i) return ({ "192.0.2.1", "192.0.2.2" })[i] end,
		}) })))
	end)

	it("long keys and values are cut in messages", function()
		raises("filter: bad argument " .. BIG_SHOWN .. " (unknown field)", F, { [BIG] = 1 })
		raises("dump: bad argument " .. BIG_SHOWN .. " (unknown field)", F.coerce, { [BIG] = 1 }, "dump")
		raises("addr.matcher: bad argument '" .. ("k"):rep(40) .. "...' (malformed address or prefix "
			.. BIG_SHOWN .. ")", addr.matcher, BIG, BIG)
		local _, _, why = addr.split_hostport(BIG .. ":x")
		assert.equals("malformed port in '" .. ("k"):rep(40) .. "'... (100002 bytes)", why)
		-- unprintable bytes, quotes and backslashes are escaped
		raises("filter.proto: bad argument 'proto' (unknown protocol 'a\\x00\\x27\\x5c\\x0a')", F.proto, "a\0'\\\n")
	end)
end)
