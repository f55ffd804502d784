-- The module's threads, where the process may run on two CPUs or more.
--
-- Dumps read ahead: a dump's
-- chunks are received by a thread of the dump's own (the kernel builds the
-- next chunk inside that recvmsg, on the other CPU) while the caller works
-- on the ones before.  What is checked here, on a real table: the thread
-- exists while a dump runs and is gone when it ends, is closed, is broken
-- out of and collected, or fails; `readahead = false` reads in the calling
-- thread alone; both ways yield the same flows (the CLI's count as the
-- oracle), for dumps that walk both families; bulk deletes and updates do
-- the same with and without it; a child of fork() gets a clear error, and
-- its parent reads the dump to its end.
--
-- Batches sent ahead: a create, add or delete of more than 256 items (and
-- load of a plain array) sends each batch from a thread of the call's own
-- while the next is read, and so does load of more than 64 KiB of save
-- text: the counts, the failures and their indices or lines, and the table
-- are what they would be without it (a -U line acts after the lines before
-- it); a small batch starts no thread.

local ct = require "conntrack"
local core = require "conntrack.core"
local H = require "helpers"

local F = ct.filter

H.assert_private()

-- The threads of this process, from the kernel.
local function threads()
	local s = assert(H.read("/proc/self/status"))
	return tonumber(s:match("\nThreads:%s*(%d+)"))
end

local function cpus()
	local p = assert(io.popen("nproc"))
	local n = tonumber(p:read("*l"))
	p:close()
	return n or 1
end

-- Waits (bounded: 10 s) until the process has t0 threads; returns how many it has.
local function settle(t0)
	local hosts = require "hosts"
	for _ = 1, 200 do
		if threads() == t0 then break end
		hosts.sleep(0.05)
	end
	return threads()
end

-- After collection: on LuaJIT a compiled trace may hold the loop's iterator
-- (and so the dump) as a constant; the thread then ends when it has waited
-- a second for a reader that reads nothing (see "left unread" below).
local function collected(t0)
	collectgarbage()
	collectgarbage()
	if type(jit) == "table" then return settle(t0) end
	return threads()
end

-- Pending (and true) where the process runs on one CPU: no thread then.
local function one_cpu(what)
	if cpus() >= 2 then return false end
	pending("this machine runs the process on one CPU: nothing is " .. what .. " ahead")
	return true
end

-- lua-posix's unistd and sys.wait, or nothing (and the test pending).
local function posix_fork()
	local ok, unistd = pcall(require, "posix.unistd")
	local ok2, wait = pcall(require, "posix.sys.wait")
	if ok and ok2 then return unistd, wait end
	pending("lua-posix is not installed for this Lua")
end

-- An object whose collection runs fn (5.1 and LuaJIT: a proxy).
local function on_gc(fn)
	if newproxy then
		local p = newproxy(true)
		getmetatable(p).__gc = fn
		return p
	end
	return setmetatable({}, { __gc = fn })
end

local N4, N6 = 3000, 500

local function spec6(i, proto)
	local s = {
		family = "ipv6", src = ("2001:db8::%x"):format(i + 1), dst = "2001:db8:1::2",
		proto = proto, sport = 2000 + i, dport = proto == "tcp" and 80 or 53, timeout = 600,
	}
	if proto == "tcp" then s.state = "ESTABLISHED" end
	return s
end

-- N4 IPv4 flows (a third UDP) and N6 IPv6 ones (half UDP).
local function fill(h)
	local specs = {}
	for i = 0, N4 - 1 do specs[#specs + 1] = H.spec(i, i % 3 == 0 and "udp" or "tcp") end
	for i = 0, N6 - 1 do specs[#specs + 1] = spec6(i, i % 2 == 0 and "udp" or "tcp") end
	local created, existing, failures = h:load(specs)
	assert.are.equal(N4 + N6, created, failures and failures[1] and failures[1].message)
	assert.are.equal(0, existing)
end

local UDP = math.ceil(N4 / 3) + N6 / 2

describe("the module's threads", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)

	before_each(function()
		assert(h:flush())
		fill(h)
	end)

	it("in a thread of the dump's own, which ends with the dump; readahead = false starts none", function()
		if one_cpu("read") then return end
		local t0, made = threads(), core.threads()
		local during, n = nil, 0
		for _ in h:dump() do
			n = n + 1
			if n == 10 then during = threads() end
		end
		assert.are.equal(N4 + N6, n)
		assert.are.equal(t0 + 1, during)
		assert.are.equal(t0, settle(t0))
		assert.are.equal(made + 1, core.threads())

		during, n = nil, 0
		for _ in h:dump(nil, { readahead = false }) do
			n = n + 1
			if n == 10 then during = threads() end
		end
		assert.are.equal(N4 + N6, n)
		assert.are.equal(t0, during)
		assert.are.equal(t0, settle(t0))
		assert.are.equal(made + 1, core.threads())
	end)

	it("the thread ends when the dump is closed, broken out of and collected, or a filter raises", function()
		if one_cpu("read") then return end
		local t0 = threads()
		local it, st = h:dump()
		assert.is_truthy(it(st))
		assert.are.equal(t0 + 1, threads())
		st:close()
		assert.are.equal(t0, settle(t0))
		assert.is_true(st.closed)

		-- broken out of: the state is only collected (the loop in a function
		-- of its own: LuaJIT keeps a loop's hidden values in its frame's slots)
		local function first()
			for e in h:dump() do
				if e then return e end
			end
		end
		assert.is_truthy(first())
		it, st = nil, nil -- luacheck: ignore (dropped for the collector)
		assert.are.equal(t0, collected(t0))

		-- a filter's Lua part raises in the middle of the dump
		local seen = 0
		local ok, err = pcall(function()
			for _ in h:dump(F.where(function()
				seen = seen + 1
				if seen == 100 then error("enough") end
				return true
			end)) do end
		end)
		assert.is_false(ok)
		assert.matches("enough", tostring(err))
		assert.are.equal(t0, collected(t0))
	end)

	it("a dump left unread for a second gives its thread back, and reads on alone to the end", function()
		if one_cpu("read") then return end
		local t0 = threads()
		for _, c in ipairs{ { f = nil, want = N4 + N6 }, { f = F.proto("udp"), want = UDP } } do
			local made = core.threads()
			local it, st = h:dump(c.f)
			local keys = {}
			keys[H.key(assert(it(st)))] = true
			assert.are.equal(made + 1, core.threads())
			assert.are.equal(t0 + 1, threads())
			-- the thread has filled what it may and waits; after a second it ends
			assert.are.equal(t0, settle(t0))
			local n = 1
			for e in it, st do
				n = n + 1
				keys[H.key(e)] = true
			end
			assert.are.equal(c.want, n)
			local distinct = 0
			for _ in pairs(keys) do distinct = distinct + 1 end
			assert.are.equal(c.want, distinct)
			assert.is_true(st.closed)
			assert.are.equal(made + 1, core.threads())
		end
	end)

	it("yields the same flows as reading in one thread, and as conntrack -L, for dumps that walk both families",
		function()
		local cases = {
			{ name = "all", f = nil, cli = "-L", want = N4 + N6 },
			{ name = "udp (a tuple filter without family: two walks)", f = F.proto("udp"),
				cli = "-L -p udp", want = UDP },
			{ name = "ipv6", f = F.family("ipv6"), cli = "-L -f ipv6", want = N6 },
		}
		for _, c in ipairs(cases) do
			local a, na = H.keyset(h:dump(c.f))
			local b, nb = H.keyset(h:dump(c.f, { readahead = false }))
			local l = assert(h:list(c.f))
			assert.are.equal(c.want, na, c.name)
			assert.are.equal(c.want, nb, c.name)
			assert.are.equal(c.want, #l, c.name)
			assert.are.same(H.sorted(b), H.sorted(a), c.name)
			local out = H.cli_ok(ns, c.cli)
			assert.are.equal(c.want, #out, c.name)
		end
	end)

	it("delete_where and update_where do the same with and without it", function()
		local with = { assert(h:update_where(F.proto("udp"), { mark = 7 })) }
		assert.are.equal(UDP, with[1])
		assert.are.equal(UDP, #assert(h:list(F.mark(7))))
		local without = { assert(h:update_where(F.proto("udp"), { mark = 9 }, { readahead = false })) }
		assert.are.equal(UDP, without[1])
		assert.are.equal(UDP, #assert(h:list(F.mark(9))))

		local deleted = assert(h:delete_where(F.all(F.family("ipv6"), F.proto("udp")), { readahead = false }))
		assert.are.equal(N6 / 2, deleted)
		deleted = assert(h:delete_where(F.proto("udp")))
		assert.are.equal(UDP - N6 / 2, deleted)
		assert.are.equal(0, #assert(h:list(F.proto("udp"))))
		assert.are.equal(N4 + N6 - UDP, #assert(h:list()))
		assert.are.equal(N4 + N6 - UDP, #H.cli_ok(ns, "-L"))
	end)

	it("takes a boolean, named in the error", function()
		assert.has_error(function() h:dump(nil, { readahead = "yes" }) end,
			"dump: bad argument 'readahead' (boolean expected, got string)")
		assert.has_error(function() h:list(nil, { readahead = 1 }) end,
			"list: bad argument 'readahead' (boolean expected, got number)")
		assert.has_error(function() h:delete_where(F.proto("udp"), { readahead = {} }) end,
			"delete_where: bad argument 'readahead' (boolean expected, got table)")
	end)

	it("a child of fork() cannot read its parent's dump and says so; the parent reads it to the end", function()
		local unistd, wait = posix_fork()
		if not unistd or one_cpu("read") then return end
		local it, st = h:dump()
		local first = it(st)
		assert.is_truthy(first)
		local pid = assert(unistd.fork())
		if pid == 0 then
			local okc, err = pcall(it, st)
			local code = (not okc and tostring(err):find("the dump was begun in the parent process", 1, true))
				and 0 or 1
			io.stdout:flush()
			unistd._exit(code)
		end
		local _, how, code = wait.wait(pid)
		assert.are.equal("exited", how)
		assert.are.equal(0, code)
		local n = 1
		for _ in it, st do n = n + 1 end
		assert.are.equal(N4 + N6, n)
	end)

	it("load and batch of more than 256 items send ahead from a thread of the call's own, with the same results",
		function()
		if one_cpu("sent") then return end
		assert(h:flush())
		local specs = H.specs(3000)
		specs[20] = H.spec(15)      -- item 16's flow again, in the same batch
		specs[1500] = H.spec(10)    -- item 11's flow again, two batches later
		specs[2999] = { proto = "udp", sport = 1, dport = 2 }   -- no addresses
		local t0, made = threads(), core.threads()
		local created, existing, failures = h:load(specs)
		assert.are.equal(made + 1, core.threads())
		assert.are.equal(t0, settle(t0))
		assert.are.equal(2997, created)
		assert.are.equal(0, existing)
		assert.are.equal(3, #failures)
		assert.are.same({ 20, 1500, 2999 }, { failures[1].index, failures[2].index, failures[3].index })
		assert.are.equal(ct.errno.EEXIST, failures[1].errno)
		assert.are.equal(ct.errno.EEXIST, failures[2].errno)
		assert.are.equal(ct.errno.EINVAL, failures[3].errno)
		assert.matches("^load: ", failures[3].message)
		assert.are.equal(2997, #H.cli_ok(ns, "-L"))

		-- add: every readable item is there
		created, existing, failures = h:load(specs, { mode = "add" })
		assert.are.equal(0, created)
		assert.are.equal(2999, existing)
		assert.are.equal(1, #failures)
		assert.are.equal(2999, failures[1].index)
		assert.are.equal(made + 2, core.threads())

		-- delete by entries, twice: all gone, then all missing
		local list = assert(h:list())
		assert.are.equal(2997, #list)
		local ok, missing, fails = h:batch("delete", list)
		assert.are.same({ 2997, 0, 0 }, { ok, missing, #fails })
		ok, missing, fails = h:batch("delete", list)
		assert.are.same({ 0, 2997, 0 }, { ok, missing, #fails })
		assert.are.equal(made + 5, core.threads())   -- and the list's read-ahead
		assert.are.equal(0, #H.cli_ok(ns, "-L"))

		-- 256 items or fewer, and updates, go from the calling thread
		ok = h:batch("create", H.specs(256, 5000))
		assert.are.equal(256, ok)
		ok = h:batch("update", assert(h:list()), { mark = 3 })
		assert.are.equal(256, ok)
		assert.are.equal(256, #assert(h:list(F.mark(3))))
		assert.are.equal(made + 5 + 2, core.threads())   -- the two lists' read-ahead alone
		assert.are.equal(t0, settle(t0))
	end)

	it("load of save text of more than 64 KiB sends ahead; its -U and -D lines act after the lines before them",
		function()
		if one_cpu("sent") then return end
		assert(h:flush())
		local function flow(i)
			return ("-s 192.0.2.%d -d 198.51.100.%d -p udp --sport %d --dport 53"):format(i % 250 + 1,
				math.floor(i / 250) + 1, 1024 + i)
		end
		local lines = {}
		for i = 1, 3000 do lines[i] = "-I -t 300 " .. flow(i) end
		lines[1500] = "-I -t 300 " .. flow(10)                -- again: refused
		lines[2000] = "-U " .. flow(100) .. " -m 7"           -- a flow of the first batch
		lines[2500] = "-U " .. flow(2400) .. " -u SEEN_REPLY,ASSURED"   -- of its own batch
		lines[2600] = "-D " .. flow(5)
		lines[2999] = "-I -t 300 -p udp --sport 1 --dport 2"  -- no addresses
		local text = table.concat(lines, "\n") .. "\n"
		assert.is_true(#text > 64 * 1024)
		local made = core.threads()
		local done, existing, failures = h:load(text)
		assert.are.equal(made + 1, core.threads())
		assert.are.equal(2995 + 2 + 1, done)
		assert.are.equal(0, existing)
		assert.are.equal(2, #failures)
		assert.are.same({ 1500, 2999 }, { failures[1].line, failures[2].line })
		assert.are.equal(ct.errno.EEXIST, failures[1].errno)
		assert.are.equal(ct.errno.EINVAL, failures[2].errno)
		local function get(i)
			return h:get{ src = ("192.0.2.%d"):format(i % 250 + 1),
				dst = ("198.51.100.%d"):format(math.floor(i / 250) + 1),
				proto = "udp", sport = 1024 + i, dport = 53 }
		end
		assert.are.equal(7, assert(get(100)).mark)
		assert.is_true(assert(get(2400)).status.ASSURED)
		assert.is_nil((get(5)))
		assert.are.equal(2994, #H.cli_ok(ns, "-L"))
	end)

	it("a delete_where whose filter closes its handle stops with an error naming it, its threads ended", function()
		local t0, fds = threads(), H.fds_settled()
		local other = assert(ct.open { netns = ns })
		local k = 0
		collectgarbage("stop")
		local ok, err = pcall(other.delete_where, other, F.where(function()
			k = k + 1
			if k == 10 then other:close() end
			return true
		end))
		local after, tafter = H.fds(), threads()
		collectgarbage("restart")
		assert.is_false(ok)
		assert.matches("delete_where: attempt to use a closed handle", tostring(err), 1, true)
		assert.are.same({ t0, fds }, { tafter, after })
		-- nothing was sent: the batch was not full when the handle closed
		assert.are.equal(N4 + N6, #assert(h:list()))
	end)

	it("a finalizer that closes a dump while it makes an entry leaves the entry whole", function()
		-- garbage whose finalizer closes the dump, and a collector that
		-- runs a step at every allocation: some closes come while the
		-- iterator makes an entry of a message the thread received
		local pause = collectgarbage("setpause", 0)
		local stepmul = collectgarbage("setstepmul", 1000)
		local closes, entries, whole = 0, 0, 0
		local ok, err = pcall(function()
			for _ = 1, 30 do
				local it, st = h:dump()
				while true do
					on_gc(function()
						if not st.closed then
							st:close()
							closes = closes + 1
						end
					end)
					local okn, e = pcall(it, st)
					if not okn or e == nil then break end
					entries = entries + 1
					if e.family == "ipv4" and e.orig.dst:match("^198%.51%.100%.") or
						e.family == "ipv6" and e.orig.dst == "2001:db8:1::2" then
						whole = whole + 1
					end
				end
			end
		end)
		collectgarbage("setpause", pause)
		collectgarbage("setstepmul", stepmul)
		assert(ok, err)
		assert.is_true(closes > 0)
		assert.is_true(entries > 0)
		assert.are.equal(entries, whole)
	end)
end)

-- Events read ahead: the subscription of ct.events (and of subscribe with
-- readahead = true) is read by a thread of its own into chunks while the
-- loop makes entries of the ones before.
describe("events read ahead", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)

	before_each(function()
		assert(h:flush())
	end)

	-- the i of H.spec(i) an event is of (i < 62 500)
	local function index(e)
		local a = tonumber(e.orig.src:match("%.(%d+)$"))
		local b = tonumber(e.orig.dst:match("%.(%d+)$"))
		return (a - 1) + 250 * (b - 1)
	end

	local function create(first, n)
		local ok, missing, failures = h:batch("create", H.specs(n, first))
		assert.are.same({ n, 0, {} }, { ok, missing, failures })
	end

	-- What an eventfd holds, from the kernel: readable exactly when not 0.
	local function efd_count(fd)
		local info = H.read("/proc/self/fdinfo/" .. fd)
		return info and tonumber(info:match("eventfd%-count:%s*(%x+)"), 16)
	end

	it("ct.events reads in a thread of its own that ends with the loop; readahead = false and subscribe start none",
		function()
			if one_cpu("read") then return end
			local t0, made = threads(), core.threads()
			create(0, 20)
			local n = 0
			local f, s, c, closing = h:events{ types = "new", timeout = 0.5 }
			assert.are.equal(t0 + 1, threads())
			create(100, 20)
			for _ in f, s, c, closing do n = n + 1 end
			assert.are.equal(20, n)
			assert.is_true(s.closed)
			assert.are.equal(t0, settle(t0))
			assert.are.equal(made + 1, core.threads())

			-- closed, and broken out of then collected
			local _, s2 = h:events{ types = "new" }
			assert.are.equal(t0 + 1, threads())
			s2:close()
			assert.are.equal(t0, settle(t0))
			local function broken()
				local bf, bs, bc, bclosing = h:events{ types = "new", timeout = 5 }
				create(200, 5)
				for ev in bf, bs, bc, bclosing do
					if ev then return index(ev) end
				end
			end
			assert.are.equal(200, broken())
			assert.are.equal(t0, collected(t0))

			-- none
			f, s = h:events{ types = "new", readahead = false, timeout = 0.2 }
			local sub = assert(h:subscribe{ types = "new" })
			assert.are.equal(t0, settle(t0))
			create(300, 3)
			n = 0
			for _ in f, s do n = n + 1 end
			assert.are.equal(3, #sub:read())
			assert.are.equal(3, n)
			sub:close()
			assert.are.equal(made + 3, core.threads())

			-- asked for
			sub = assert(h:subscribe{ types = "new", readahead = true })
			assert.are.equal(t0 + 1, threads())
			sub:close()
			assert.are.equal(t0, settle(t0))
			assert.has_error(function() h:subscribe{ readahead = 1 } end,
				"subscribe: bad argument 'readahead' (boolean expected, got number)")
			assert.has_error(function() h:events{ readahead = "no" } end,
				"events: bad argument 'readahead' (boolean expected, got string)")
		end)

	it("overflows come where events were lost, each with its count; the rest arrive once, in order", function()
		if one_cpu("read") then return end
		-- a small socket buffer and a loop that reads nothing: the thread
		-- fills its chunks and waits, and the socket overflows
		local sub = assert(ct.subscribe{ netns = ns, rcvbuf = 4096, types = "new", readahead = true })
		finally(function() sub:close() end)
		local N = 6000
		create(0, N)
		local received, lost, overflows, prev = 0, 0, 0, -1
		while true do
			local e = sub:next(0.3)
			if not e then break end
			if e.type == "overflow" then
				overflows = overflows + 1
				assert.are.equal(overflows, e.overflows)
				lost = lost + e.lost
			else
				assert.are.equal("new", e.type)
				local i = index(e)
				assert.is_true(i > prev, i .. " after " .. prev)
				prev, received = i, received + 1
			end
		end
		assert.is_true(overflows >= 1)
		assert.are.equal(overflows, sub.overflows)
		-- the socket's drop count accounts for the rest exactly
		assert.is_true(received >= 1)
		assert.are.equal(N, received + lost)
		assert.are.equal(lost, sub.lost)
		-- and the stream goes on (one at a time: the small buffer holds
		-- only a handful)
		for i = 0, 9 do
			create(N + i, 1)
			local e = assert(sub:next(2))
			assert.are.equal(N + i, index(e))
		end
	end)

	it("getfd gives a descriptor readable exactly while events wait", function()
		if one_cpu("read") then return end
		local sub = assert(h:subscribe{ types = "new", readahead = true })
		finally(function() sub:close() end)
		local fd = sub:getfd()
		assert.are.equal(0, efd_count(fd))
		create(0, 5)
		local hosts = require "hosts"
		for _ = 1, 200 do
			if efd_count(fd) > 0 then break end
			hosts.sleep(0.01)
		end
		assert.is_true(efd_count(fd) > 0)
		local got = {}
		for _ = 1, 100 do
			for _, e in ipairs(sub:read()) do got[#got + 1] = index(e) end
			if #got == 5 then break end
			assert.is_true(sub:wait(2))
		end
		assert.are.same({ 0, 1, 2, 3, 4 }, got)
		assert.are.equal(0, efd_count(fd))
		assert.is_false(sub:wait(0))
	end)

	it("a child of fork() reads on alone: what its parent's thread had received, then the socket", function()
		local unistd, wait = posix_fork()
		if not unistd or one_cpu("read") then return end
		local f, s = h:events{ types = "new", timeout = 2 }
		create(0, 10)
		assert.is_true(s:wait(2))
		local r, w = assert(unistd.pipe())
		local pid = assert(unistd.fork())
		if pid == 0 then
			-- in the child: the queue its parent's thread filled comes
			-- first (in order; the parent may have taken some of the
			-- rest), then, once the parent closed its copy, 5 more
			local code = 1
			pcall(function()
				unistd.close(w)
				local got, prev = 0, -1
				for _ = 1, 10 do
					local e = f(s)
					if not e then break end
					local i = index(e)
					assert(i > prev and i < 10)
					prev, got = i, got + 1
					if i == 9 then break end
				end
				assert(got >= 1)
				assert(unistd.read(r, 1) == "x")
				create(10, 5)
				-- it waits on its own socket, not on its parent's eventfd
				assert(s:wait(2))
				for i = 10, 14 do
					local e = assert(f(s))
					assert(index(e) == i)
				end
				code = 0
			end)
			unistd._exit(code)
		end
		unistd.close(r)
		s:close()
		unistd.write(w, "x")
		unistd.close(w)
		local _, how, code = wait.wait(pid)
		assert.are.same({ "exited", 0 }, { how, code })
	end)

	it("a finalizer that closes the subscription while it makes an entry leaves the entry whole", function()
		local pause = collectgarbage("setpause", 0)
		local stepmul = collectgarbage("setstepmul", 1000)
		local closes, entries, whole = 0, 0, 0
		local okr, err = pcall(function()
			for round = 1, 10 do
				local f, s = h:events{ types = "new", timeout = 1 }
				create(round * 1000, 300)
				while true do
					on_gc(function()
						if not s.closed then
							s:close()
							closes = closes + 1
						end
					end)
					local okn, e = pcall(f, s)
					if not okn or e == nil then break end
					entries = entries + 1
					local i = index(e)
					if i >= round * 1000 and i < round * 1000 + 300 then whole = whole + 1 end
				end
				s:close()
			end
		end)
		collectgarbage("setpause", pause)
		collectgarbage("setstepmul", stepmul)
		assert(okr, err)
		assert.is_true(closes > 0)
		assert.is_true(entries > 0)
		assert.are.equal(entries, whole)
	end)
end)
