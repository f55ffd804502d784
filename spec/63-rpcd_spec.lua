-- examples/rpcd-conntrack.lua called as rpcd calls an exec plugin (read from
-- rpcd's plugin.c and exec.c): `list` with stdin and stderr on /dev/null, the
-- first JSON object on stdout parsed, each method's value an object whose
-- members' JSON types give the argument types; `call METHOD` with the
-- arguments written to stdin as one JSON object and stdin closed, the first
-- JSON object on stdout the result (anything else fails the call; the exit
-- status is not looked at).  On a 100 000-flow table: pages equal to those
-- of a plain parser of /proc/net/nf_conntrack doing the same job
-- (bench/procpage.lua), counts and statistics equal to the CLI's, deletes
-- and flushes that the CLI sees, and bad arguments answered with errors.
local hosts = require "hosts"
local H = require "helpers"
local J = require "jobhelp"
local json = require "dkjson"

local q = hosts.quote
local N = 100000

-- The first JSON value of text, as rpcd's json_tokener takes it.
local function first_json(text)
	local doc, pos, err = json.decode(text, 1, json.null)
	return doc, err, pos
end

-- A call as rpcd makes it, in namespace ns under lua (default J.LUA):
-- the result object (raises when the output is not one).
local function call(ns, method, args, lua)
	local input = args and json.encode(args) or "{ }"
	local ok, out, err, code = J.run(ns, lua, "rpcd-conntrack.lua", "call " .. method, input)
	local doc = first_json(out)
	if type(doc) ~= "table" or getmetatable(doc) and getmetatable(doc).__jsontype == "array" then
		error(("call %s: not a JSON object (exit %s): %s %s"):format(method, tostring(code), out, err), 2)
	end
	return doc, ok
end

-- The page bench/procpage.lua gives for args: the original tuples, in order.
local function proc_page(ns, args)
	local ok, out = J.exec(("printf '%%s' %s | ip netns exec %s lua5.4 %s call list"):format(
		q(json.encode(args)), q(ns), q(J.ROOT .. "/bench/procpage.lua")))
	assert(ok, out)
	return json.decode(out)
end

-- The pages' flows, each as "proto src dst sport dport" (what /proc text has of them).
local FIELDS = { "src", "dst", "sport", "dport" }
local function tuples(doc)
	local t = {}
	for i, e in ipairs(doc.entries) do
		local parts = { e.proto }
		for _, k in ipairs(FIELDS) do parts[#parts + 1] = tostring(e.orig[k]) end
		t[i] = table.concat(parts, " ")
	end
	return t
end

-- Spec i of the big table: tcp and udp, 250 sources, ports by i.
local function spec(i)
	local udp = i % 4 == 3
	return { src = "198.51.100." .. (i % 250 + 1), dst = "203.0.113." .. (math.floor(i / 250) % 200 + 1),
		proto = udp and "udp" or "tcp", sport = 10000 + math.floor(i / 50000),
		dport = udp and (i % 8 == 3 and 53 or 123) or 443,
		timeout = 1200, state = not udp and "ESTABLISHED" or nil }
end

describe("rpcd-conntrack.lua", function()
	local topo, ns, h

	setup(function()
		topo, ns, h = H.scratch()
		for first = 0, N - 1, 10000 do
			local items = {}
			for i = first, first + 9999 do items[#items + 1] = spec(i) end
			local ok, missing, fails = h:batch("create", items)
			assert(ok == #items and missing == 0, fails[1] and fails[1].message)
		end
	end)
	teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
	end)

	it("--help and misuse", function()
		local ok, out = J.run(nil, nil, "rpcd-conntrack.lua", "--help")
		assert.is_true(ok)
		assert.matches("usage: rpcd%-conntrack.lua list", out)
		for _, args in ipairs({ "", "call", "bogus", "call list extra" }) do
			local ok2, _, err, code = J.run(nil, nil, "rpcd-conntrack.lua", args)
			assert.is_false(ok2)
			assert.equals(2, code)
			assert.matches("usage:", err)
		end
	end)

	it("`list` prints the methods and their argument types, on every Lua", function()
		local ref
		for _, lua in ipairs(J.luas()) do
			-- rpcd: stdin and stderr on /dev/null, stdout a pipe
			local ok, out = hosts.run(J.cmdline(ns, lua, "rpcd-conntrack.lua", "list") .. " </dev/null 2>/dev/null")
			assert.is_true(ok, out)
			local sig = first_json(out)
			assert.is_table(sig, out)
			local names = {}
			for m, args in pairs(sig) do
				names[#names + 1] = m
				-- a method whose value is not an object is skipped by rpcd
				assert.is_table(args, m)
				assert.is_nil(args[1], m .. ": an object, not an array")
			end
			table.sort(names)
			assert.same({ "count", "delete", "flush", "list", "stats" }, names)
			-- one object and nothing after it
			local _, _, pos = first_json(out)
			assert.is_nil(out:sub(pos):find("%S"))
			-- types as rpcd reads them: numbers int32, strings, a boolean
			assert.equals("number", type(sig.list.offset))
			assert.equals("number", type(sig.list.limit))
			assert.equals("boolean", type(sig.list.total))
			assert.equals("string", type(sig.list.src))
			assert.equals("number", type(sig.list.dport))
			assert.equals("string", type(sig.flush.family))
			assert.is_nil(next(sig.stats))
			ref = ref or sig
			assert.same(ref, sig)
		end
	end)

	it("count and stats equal conntrack -C and -S", function()
		local doc = call(ns, "count", {})
		assert.equals(N, doc.count)
		assert.equals(tonumber(H.cli_ok(ns, "-C")[1]), doc.count)
		assert.is_true(doc.max > 0)
		doc = call(ns, "count", { proto = "udp", dport = 53 })
		assert.equals(#H.cli_ok(ns, "-L -p udp --dport 53"), doc.count)
		assert.equals(N / 8, doc.count)
		doc = call(ns, "count", { src = "198.51.100.0/25", proto = "tcp" })
		local want = 0
		for i = 0, N - 1 do
			local s = spec(i)
			if s.proto == "tcp" and tonumber(s.src:match("%d+$")) < 128 then want = want + 1 end
		end
		assert.equals(want, doc.count)
		local before = J.cli_stats(ns)
		local st = call(ns, "stats")
		assert.same(before, J.cli_stats(ns))
		local cpus = 0
		for _, c in ipairs(st.cpus) do
			for k, v in pairs(before[c.cpu]) do assert.equals(v, c[k], k) end
			cpus = cpus + 1
		end
		for _ in pairs(before) do cpus = cpus - 1 end
		assert.equals(0, cpus)
	end)

	it("pages the table like a plain /proc/net/nf_conntrack parser, on every Lua", function()
		assert.is_truthy(H.sh(ns, "test -r /proc/net/nf_conntrack && echo yes"):find("yes"),
			"this kernel has /proc/net/nf_conntrack")
		for _, args in ipairs({
			{ offset = 0, limit = 100 },
			{ offset = 50000, limit = 250 },
			{ offset = N - 40, limit = 100, total = true },
			{ proto = "udp", dport = 53, offset = 1000, limit = 50, total = true },
		}) do
			local mine = call(ns, "list", args)
			local ref = proc_page(ns, args)
			assert.equals("/proc/net/nf_conntrack", ref.source)
			assert.same(tuples(ref), tuples(mine))
			assert.equals(ref.count, mine.count)
			assert.equals(ref.more, mine.more)
			assert.equals(ref.total, mine.total)
			assert.equals(args.offset, mine.offset)
			assert.equals(args.limit, mine.limit)
		end
		local last = call(ns, "list", { offset = N - 40, limit = 100, total = true })
		assert.equals(40, last.count)
		assert.is_false(last.more)
		assert.equals(N, last.total)
		local e = last.entries[1]
		assert.is_table(e.orig)
		assert.is_table(e.reply)
		assert.is_table(e.status)
		assert.equals("none", e.nat)
		-- every Lua gives the same page
		local ref
		for _, lua in ipairs(J.luas()) do
			local doc = call(ns, "list", { offset = 777, limit = 20, proto = "tcp" }, lua)
			local t = tuples(doc)
			assert.equals(20, #t, lua.bin)
			ref = ref or t
			assert.same(ref, t, lua.bin)
		end
		-- the page past the end is empty, and an array
		local ok, out = J.run(ns, nil, "rpcd-conntrack.lua", "call list", json.encode{ offset = N })
		assert.is_true(ok)
		assert.matches('"entries":%[%]', out)
	end)

	it("runs when rpcd executes the file itself (#! line), and ignores ubus_rpc_session", function()
		local dir = os.tmpname()
		os.remove(dir)
		J.sh(("mkdir -p %s && cp %s %s/conntrack && chmod 755 %s/conntrack"):format(q(dir),
			q(J.ROOT .. "/examples/rpcd-conntrack.lua"), q(dir), q(dir)))
		finally(function() hosts.run("rm -rf " .. q(dir)) end)
		-- /usr/bin/env lua: whichever Lua `lua` is here, with the module built for it
		local _, v = J.exec("lua -e 'io.write(type(jit) == \"table\" and \"jit\" or _VERSION:match(\"%d+%.%d+\"))'")
		local built = false
		for _, l in ipairs(J.luas()) do if l.v == v then built = true end end
		assert.is_true(built, "no build for `lua` (" .. v .. ")")
		local ok, out = J.exec(("printf '%%s' %s | ip netns exec %s env LUA_PATH=%s LUA_CPATH=%s %s/conntrack call count")
			:format(q('{ "ubus_rpc_session": "0123456789abcdef", "proto": "udp" }'), q(ns),
			q(J.ROOT .. "/lua/?.lua;;"), q(J.ROOT .. "/build/" .. v .. "/?.so;;"), q(dir)))
		assert.is_true(ok, out)
		assert.equals(N / 4, first_json(out).count)
	end)

	it("answers bad arguments with an error object", function()
		for _, c in ipairs({
			{ "list", { src = "1.2.3" }, "malformed address" },
			{ "list", { limit = 5000 }, "'limit' must be a whole number from 1 to 1000" },
			{ "list", { offset = -1 }, "'offset'" },
			{ "list", { nosuch = 1 }, "unknown argument 'nosuch'" },
			{ "count", { proto = "nosuch" }, "nosuch" },
			{ "delete", {}, "needs a filter" },
			{ "flush", { family = "ipx" }, "'family'" },
			{ "stats", { proto = "tcp" }, "unknown argument 'proto'" },
		}) do
			local doc = call(ns, c[1], c[2])
			assert.is_string(doc.error, c[1])
			assert.matches(c[3], doc.error, 1, true)
		end
		local ok, out = J.run(ns, nil, "rpcd-conntrack.lua", "call count", "not json")
		assert.is_true(ok)
		assert.matches('^{"error":"arguments: ', out)
		local doc = call(ns, "nosuch", {})
		assert.matches("unknown method", doc.error)
		assert.equals(N, tonumber(H.cli_ok(ns, "-C")[1]))
	end)

	it("deletes by filter and flushes, as the CLI then sees", function()
		local doc = call(ns, "delete", { proto = "udp", dport = 53 })
		assert.equals(N / 8, doc.deleted)
		assert.equals(0, doc.failed)
		assert.equals(0, #H.cli_ok(ns, "-L -p udp --dport 53"))
		assert.equals(N - N / 8, tonumber(H.cli_ok(ns, "-C")[1]))
		-- a mark above 2^31 as rpcd hands an int32 over: negative
		assert(h:update(H.tuple(spec(0)), { mark = 0xfffffff0 }))
		doc = call(ns, "count", { mark = 0xfffffff0 - 2 ^ 32 })
		assert.equals(1, doc.count)
		assert(h:create{ src = "2001:db8::1", dst = "2001:db8::2", proto = "udp", sport = 1, dport = 2, timeout = 100 })
		doc = call(ns, "flush", { family = "ipv6" })
		assert.is_true(doc.flushed)
		assert.equals(0, #H.cli_ok(ns, "-L -f ipv6"))
		assert.equals(N - N / 8, tonumber(H.cli_ok(ns, "-C")[1]))
		doc = call(ns, "flush", {})
		assert.is_true(doc.flushed)
		assert.equals(0, tonumber(H.cli_ok(ns, "-C")[1]))
	end)
end)
