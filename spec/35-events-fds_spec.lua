-- Events: no descriptor leaks (issue 3).  Counted in /proc/self/fd, once
-- garbage holds none (H.fds_settled), before and after 1 000
-- subscribe/close cycles, iterators left by break, subscriptions dropped
-- unclosed and collected, and failed subscribes.
local ct = require "conntrack"
local H = require "helpers"

describe("events: descriptors", function()
	local ns, base
	H.private(function(_, n) ns = n end)
	setup(function()
		-- the default handle and anything lazily opened, opened first
		assert(ct.default())
	end)

	before_each(function()
		base = H.fds_settled()
	end)

	it("1 000 subscribe/close cycles leave none open", function()
		for _ = 1, 1000 do
			local sub = assert(ct.subscribe())
			sub:close()
		end
		assert.equals(base, H.fds())
	end)

	it("1 000 cycles with netns, types, rcvbuf and a kernel filter leave none open", function()
		for i = 1, 1000 do
			local sub = assert(ct.subscribe{ netns = ns, types = { "new" }, rcvbuf = 65536,
				kernel_filter = { proto = "tcp", src = { "192.0.2.0/24", "2001:db8::/32" }, mark = { value = i } } })
			assert.is_true(sub.kernel_filtered)
			sub:close()
		end
		assert.equals(base, H.fds())
	end)

	it("1 000 subscriptions dropped unclosed are closed by the collector", function()
		local t = {}
		for i = 1, 1000 do
			t[i] = assert(ct.subscribe{ netns = ns, rcvbuf = 4096 })
		end
		assert.equals(1000, #t)
		assert.is_true(H.fds() >= base + 1000)
		t = nil -- luacheck: ignore 311 (dropped for the collector)
		assert.equals(base, H.fds_settled())
	end)

	it("1 000 ct.events loops left by break or by timeout leave none open", function()
		local h = assert(ct.open{ netns = ns })
		base = base + 1
		local spec = H.spec(1)
		for i = 1, 1000 do
			if i % 2 == 0 then
				for _ in ct.events{ netns = ns, timeout = 0 } do end
			else
				local f, s, c, closing = ct.events{ netns = ns, timeout = 1 }
				assert(h:create(spec))
				assert(h:delete(H.tuple(spec)))
				local n = 0
				for ev in f, s, c, closing do -- luacheck: ignore 512 (leaves at the first event)
					n = n + 1
					assert.equals("new", ev.type)
					break
				end
				assert.equals(1, n)
				-- (Lua 5.4 closed it at the break; elsewhere the collector will)
				assert.equals(H.CLOSE, s.closed)
			end
		end
		h:close()
		assert.equals(base - 1, H.fds_settled())
	end)

	it("failed and refused subscribes leave none open", function()
		for _ = 1, 300 do
			assert.is_nil((ct.subscribe{ netns = "lct-no-such-namespace" }))
			assert.is_false(pcall(ct.subscribe, { netns = ns, kernel_filter = { src = "bad" } }))
			assert.is_false(pcall(ct.subscribe, { netns = ns, types = { "bad" } }))
			assert.is_false(pcall(ct.events, { netns = ns, timeout = -1 }))
		end
		assert.equals(base, H.fds_settled())
	end)

	it("use after close does not reopen anything", function()
		local sub = assert(ct.subscribe())
		sub:close()
		for _ = 1, 100 do
			assert.is_false(pcall(sub.read, sub))
			assert.is_true(sub:close())
		end
		assert.equals(base, H.fds_settled())
	end)
end)
