-- Bulk operations on a real table in a private namespace: update_where,
-- delete_where (with entries vanishing in between), filtered flush, load;
-- outcomes checked with the conntrack CLI.
local ct = require "conntrack"
local H = require "helpers"

local F = ct.filter

describe("bulk operations", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)

	-- n tcp + n/3 udp + n/3 IPv6 udp entries; marks 0/7 alternate.
	local function specs(n)
		local out = {}
		for i = 1, n do
			out[#out + 1] = { proto = "tcp", src = ("192.0.2.%d"):format(i % 250 + 1), dst = "198.51.100.2",
				sport = 1024 + i, dport = 80, timeout = 600, state = "ESTABLISHED", mark = i % 2 == 0 and 7 or 0,
				status = { "SEEN_REPLY", "ASSURED" } }
		end
		for i = 1, math.floor(n / 3) do
			out[#out + 1] = { proto = "udp", src = ((i % 2 == 0) and "192.0.2.%d" or "203.0.113.%d"):format(i % 250 + 1),
				dst = "198.51.100.53", sport = 1024 + i, dport = i % 3 == 0 and 123 or 53, timeout = 600 }
			out[#out + 1] = { proto = "udp", src = "2001:db8:1::" .. i, dst = "2001:db8:2::53", sport = 1024 + i,
				dport = 53, timeout = 600, mark = 7 }
		end
		return out
	end

	local function count(args)
		return #H.cli_ok(ns, "-L " .. (args or ""))
	end

	local function refill(n)
		assert(h:flush())
		local all = specs(n)
		local created, existing, failures = h:load(all)
		assert.same({}, failures)
		assert.equals(0, existing)
		assert.equals(#all, created)
		return #all
	end

	it("load creates entries in batches and reports each failure", function()
		local total = refill(3000)
		assert.equals(total, count())
		assert.equals(3000, count("-p tcp --state ESTABLISHED -u ASSURED"))
		-- again: every one exists; plus a spec the core refuses, and a good one
		local again = specs(30)
		table.insert(again, 5, { proto = "tcp", src = "192.0.2.1" })          -- no dst
		table.insert(again, { proto = "udp", src = "192.0.2.99", dst = "198.51.100.99", sport = 9, dport = 9,
			timeout = 60 })
		local created, existing, failures = h:load(again, { batch = 7 })
		assert.equals(1, created)
		-- creating what exists fails, as conntrack -I does; existing counts only for mode "add"
		assert.equals(0, existing)
		assert.equals(#again - 1, #failures)
		local byindex = {}
		for _, f in ipairs(failures) do byindex[f.index] = f end
		assert.equals(ct.errno.EEXIST, byindex[1].errno)
		assert.matches("File exists", byindex[1].message)
		assert.equals(22, byindex[5].errno)
		assert.matches("'dst'", byindex[5].message)
		assert.is_nil(byindex[#again])
		-- in mode "add" they are counted, not failures (conntrack -A)
		local again2 = specs(30)
		created, existing, failures = h:load(again2, { mode = "add" })
		assert.same({ 0, #again2 }, { created, existing })
		assert.same({}, failures)
		assert.equals(total + 1, count())
		-- add mode leaves what exists as it is (conntrack -A): counted, not changed
		created, existing, failures = h:load({ { proto = "udp", src = "192.0.2.99", dst = "198.51.100.99", sport = 9,
			dport = 9, timeout = 555 } }, { mode = "add" })
		assert.equals(0, created)
		assert.equals(1, existing)
		assert.same({}, failures)
		assert.matches("^udp%s+17 [56]%d ", H.cli_ok(ns, "-L -s 192.0.2.99 -d 198.51.100.99")[1])
		-- text: line numbers for what fails
		created, existing, failures = h:load("-A -t 60 -u UNSET -s 192.0.2.98 -d 198.51.100.98 -r 198.51.100.98 "
			.. "-q 192.0.2.98 -p udp --sport 8 --dport 8 --reply-port-src 8 --reply-port-dst 8\n-A -t 60 --bogus 1\n")
		assert.equals(1, created)
		assert.equals(0, existing)
		assert.equals(1, #failures)
		assert.equals(2, failures[1].line)
	end)

	it("update_where marks every TCP flow (conntrack -U -m 42 -p tcp)", function()
		local total = refill(3000)
		local n, missing, failures = h:update_where(F.proto "tcp", { mark = 42 })
		assert.equals(3000, n)
		assert.equals(0, missing)
		assert.same({}, failures)
		assert.equals(3000, count("-p tcp -m 42"))
		assert.equals(total - 3000, count("-p udp") )
		assert.equals(0, count("-p udp -m 42"))
		-- under a mask, on a filter the kernel runs
		n = h:update_where(F.mark(42), { mark = 0x100, mark_mask = 0xf00 })
		assert.equals(3000, n)
		assert.equals(3000, count("-m 0x12a"))
		-- timeouts, on a filter Lua runs
		n = h:update_where(F { proto = "udp", dport = 123 }, { timeout = 77 }, { batch = 50 })
		assert.equals(#assert(h:list(F { proto = "udp", dport = 123 })), n)
		for _, e in ipairs(assert(h:list(F.dport(123)))) do
			assert.is_true(e.timeout <= 77 and e.timeout >= 70, tostring(e))
		end
	end)

	it("delete_where deletes what matches (conntrack -D -p udp --src ... --dport 53)", function()
		local total = refill(3000)
		local f = F { proto = "udp", src = "192.0.2.0/24", dport = 53 }
		local want = #assert(h:list(f))
		assert.is_true(want > 100)
		local cli_before = count("-p udp -s 192.0.2.0/24 --dport 53")
		assert.equals(want, cli_before)
		local n, missing, failures = h:delete_where(f)
		assert.equals(want, n)
		assert.equals(0, missing)
		assert.same({}, failures)
		assert.equals(0, count("-p udp -s 192.0.2.0/24 --dport 53"))
		assert.equals(total - want, count())
		-- everything, through the module-level function on a handle of its own
		n = h:delete_where(F.all())
		assert.equals(total - want, n)
		assert.equals(0, count())
		assert.has_error(function() h:delete_where() end)
		assert.has_error(function() h:update_where(F.all()) end)
		assert.has_error(function() h:update_where(F.all(), { colour = 1 }) end)
	end)

	-- sorted untimed lines of text (or of an array of lines)
	local function untimed(lines)
		if type(lines) == "string" then lines = H.lines(lines) end
		local out = {}
		for i, l in ipairs(lines) do out[i] = H.untimed(l) end
		table.sort(out)
		return out
	end

	it("delete_where with lines hands over the line of each entry the kernel deleted", function()
		local total = refill(600)
		local f = F.proto "udp" * F.family "ipv4"
		-- as conntrack -L prints them, read just before
		local want = untimed(H.cli_ok(ns, "-L -p udp -f ipv4"))
		assert.equals(200, #want)
		local chunks = {}
		local n, missing, failures = h:delete_where(f, { lines = function(text) chunks[#chunks + 1] = text end })
		assert.same({ 200, 0, {} }, { n, missing, failures })
		local text = table.concat(chunks)
		assert.equals("\n", text:sub(-1))
		assert.same(want, untimed(text))
		assert.equals(0, count("-p udp -f ipv4"))
		assert.equals(total - 200, count())
		-- in batches of 7: one call per batch, each a whole number of lines
		local want6 = untimed(H.cli_ok(ns, "-L -f ipv6 -o extended,id"))
		assert.equals(200, #want6)
		chunks = {}
		n = h:delete_where(F.family "ipv6", { batch = 7, format = "extended,id", lines = function(t)
			chunks[#chunks + 1] = t
		end })
		assert.equals(200, n)
		assert.equals(math.ceil(200 / 7), #chunks)
		for _, c in ipairs(chunks) do assert.matches("^ipv6 .*\n$", c) end
		assert.same(want6, untimed(table.concat(chunks)))
		-- XML, on a filter with a Lua part: the library's <flow> of each
		local seen = 0
		chunks = {}
		n = h:delete_where(F.proto "tcp" * F.where(function(e)
			seen = seen + 1
			return e.orig.sport % 2 == 0
		end), { format = "xml", lines = function(t) chunks[#chunks + 1] = t end })
		assert.equals(600, seen)
		assert.equals(300, n)
		local flows = H.lines(table.concat(chunks))
		assert.equals(300, #flows)
		for _, l in ipairs(flows) do
			assert.matches("^<flow>.*<layer4 protonum=\"6\" protoname=\"tcp\"><sport>%d*[02468]</sport>.*</flow>$", l)
		end
		assert.equals(300, count("-p tcp"))
	end)

	it("delete_where with lines leaves out what vanished, and refuses bad arguments", function()
		refill(600)
		local other = assert(ct.open { netns = ns })
		finally(function() other:close() end)
		-- every other UDP flow is deleted behind the operation's back
		local k = 0
		local sneaky = F.proto "udp" * F.where(function(e)
			k = k + 1
			if k % 2 == 0 then assert(other:delete(e)) end
			return true
		end)
		local text = {}
		local n, missing, failures = h:delete_where(sneaky, { lines = function(t) text[#text + 1] = t end })
		assert.same({ 200, 200, {} }, { n, missing, failures })
		assert.equals(200, #H.lines(table.concat(text)))
		assert.equals(0, count("-p udp"))
		-- an error of the function ends the call, its batch deleted, and
		-- closes the dump's socket then (not when garbage is collected)
		local fds = H.fds_settled()
		collectgarbage("stop")
		local ok, err = pcall(h.delete_where, h, F.proto "tcp", { lines = function() error("enough", 0) end })
		local after = H.fds()
		collectgarbage("restart")
		assert.same({ false, "enough", fds }, { ok, err, after })
		assert.equals(0, count("-p tcp"))
		-- as does an error of the filter's Lua part
		assert(h:create { proto = "udp", src = "192.0.2.1", dst = "198.51.100.1", sport = 1, dport = 2, timeout = 60 })
		collectgarbage("stop")
		ok, err = pcall(h.delete_where, h, F.where(function() error("no", 0) end), { lines = print })
		after = H.fds()
		collectgarbage("restart")
		assert.same({ false, "no", fds }, { ok, err, after })
		assert(h:delete_where(F.all()))
		assert(h:create { proto = "udp", src = "192.0.2.1", dst = "198.51.100.1", sport = 1, dport = 2, timeout = 60 })
		local bad = {
			{ { format = "xml" }, "delete_where: bad argument 'format' (only with 'lines')" },
			{ { lines = 1 }, "delete_where: bad argument 'lines' (function expected, got number)" },
			{ { lines = print, format = 3 }, "delete_where: bad argument 'format' (string expected, got number)" },
			{ { lines = print, format = "extended,bogus" },
				"delete_where: bad argument 'format' (unknown output option 'bogus')" },
			{ { lines = print, batch = 0 }, "delete_where: bad argument 'batch' (integer 1..1024 expected, got 0)" },
		}
		for _, b in ipairs(bad) do
			ok, err = pcall(h.delete_where, h, F.all(), b[1])
			assert.is_false(ok)
			assert.matches(b[2], err, 1, true)
		end
		-- the refused calls deleted nothing
		assert.equals(1, count())
	end)

	it("counts entries that vanish between the dump and the request as missing", function()
		refill(600)
		local other = assert(ct.open { netns = ns })
		finally(function() other:close() end)
		-- each matching entry is deleted behind the operation's back
		local sneaky = F.proto "udp" * F.where(function(e) assert(other:delete(e)); return true end)
		local n, missing, failures = h:delete_where(sneaky)
		assert.equals(0, n)
		assert.equals(400, missing)
		assert.same({}, failures)
		assert.equals(0, count("-p udp"))
		n, missing = h:update_where(F.mark(7) * F.where(function(e) assert(other:delete(e)); return true end),
			{ mark = 1 })
		assert.equals(0, n)
		assert.equals(300, missing)
	end)

	it("reports what the kernel refuses, entry by entry", function()
		refill(300)
		-- EXPECTED cannot be set on a flow (EBUSY); status only adds flags, so
		-- an empty set changes nothing and is counted as unchanged
		local n, missing, failures, unchanged = h:update_where(F.status "ASSURED" + F.proto "udp",
			{ status = { "EXPECTED" } }, { batch = 64 })
		assert.same({ 0, 0, 500, 0 }, { n, missing, #failures, unchanged })
		local seen = {}
		for _, f in ipairs(failures) do
			assert.equals(ct.errno.EBUSY, f.errno)
			assert.matches("^update: ", f.message)
			assert.is_true(f.entry.proto == "tcp" or f.entry.proto == "udp")
			assert.is_true(f.index >= 1 and f.index <= 500)
			assert.is_nil(seen[f.index])
			seen[f.index] = true
		end
		n, missing, failures, unchanged = h:update_where(F.proto "udp", { status = {} })
		assert.same({ 0, 0, 0, 200 }, { n, missing, #failures, unchanged })
		assert.equals(300, count("-u ASSURED"))
	end)

	it("flush with a mark filter is the kernel's filtered flush", function()
		local total = refill(900)
		-- the kernel flushes by itself what it can select exactly; the rest is deleted entry by entry
		local function by_kernel(f)
			local p = f:plan()
			return p.matcher ~= nil and p.residual == nil and p.matcher:kernel().flush_exact == true
		end
		assert.is_true(by_kernel(F.mark(7)))
		assert.is_true(by_kernel(F.family "ipv6" * F.mark(7, 0xf)))
		assert.is_false(by_kernel(F.mark(7) * F.proto "udp" * F.dport(53)))
		assert.is_true(by_kernel(F.zone(3) * F.status "!ASSURED"))
		assert.is_false(by_kernel(F.zone(0)))
		local marked = count("-m 7")
		assert(h:flush(F.mark(7)))
		assert.equals(0, count("-m 7"))
		assert.equals(total - marked, count())
		assert(h:flush(F.family "ipv4" * F.proto "udp"))
		assert.equals(0, count("-p udp"))
		assert.equals(450, count())
		-- status and zone, in the kernel too
		assert.equals(450, count("-u ASSURED"))
		assert(h:flush(F.status "ASSURED"))
		assert.equals(0, count())
		assert(h:load { { proto = "udp", src = "192.0.2.1", dst = "192.0.2.2", sport = 1, dport = 2, timeout = 60, zone = 3 },
			{ proto = "udp", src = "192.0.2.1", dst = "192.0.2.2", sport = 1, dport = 2, timeout = 60, zone = 4 } })
		assert(h:flush(F.zone(3)))
		assert.equals(0, count("-w 3"))
		assert.equals(1, count("-w 4"))
		assert(h:flush(F.zone(0)))
		assert.equals(1, count())
		assert(h:flush(F.all()))
		assert.equals(0, count())
		-- the core's own options still work
		refill(30)
		assert(h:flush { mark = 7 })
		assert.equals(0, count("-m 7"))
	end)

	it("a bigger table, every flow at once (timed in bench/, not here)", function()
		local total = refill(15000)
		local n = h:update_where(F.proto "tcp", { mark = 1 })
		assert.equals(15000, n)
		n = h:delete_where(F.all())
		assert.equals(total, n)
	end)
end)
