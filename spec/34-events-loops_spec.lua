-- Events inside two real event loops from Debian's packages (issue 3):
-- cqueues waiting on the subscription object itself (it has :pollfd(),
-- :events() and :timeout()), and luv polling sub:getfd().  The traffic is
-- started in the background before the loop runs and happens while the loop
-- waits; every loop is bounded by a timer.
local ct = require "conntrack"
local hosts = require "hosts"

local P = hosts.port

local okcq, cqueues = pcall(require, "cqueues")
local okuv, uv = pcall(require, "luv")

describe("events: in event loops", function()
	local topo, A, R

	setup(function()
		topo = hosts.new{}
		A = topo.addr
		R = topo.ns.router
		topo:serve()
	end)
	teardown(function()
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	-- Starts, in the client, after `delay` seconds: one TCP request and three
	-- UDP datagrams to the server, from the given source ports.
	local function traffic(delay, tport, uport)
		local tcp = ("printf lct | socat -t 1 -T 2 - TCP4:%s:%d,sourceport=%d,connect-timeout=2")
			:format(A.server, P.plain, tport)
		local udp = ("for i in 1 2 3; do printf u; sleep 0.05; done | socat -t 0.3 -T 2 - UDP4:%s:%d,sourceport=%d")
			:format(A.server, P.plain, uport)
		topo:spawn("client", ("timeout 10 sh -c %s"):format(hosts.quote(("sleep %s; %s; %s")
			:format(delay, tcp, udp))))
	end

	-- Files events by flow; done() once TCP reached ESTABLISHED+ASSURED and
	-- UDP saw a reply.
	local function recorder(tport, uport)
		local r = { tcp = {}, udp = {}, other = 0 }
		function r.add(e)
			if e.type ~= "overflow" and e.orig.src == A.client and e.orig.sport == tport then
				r.tcp[#r.tcp + 1] = e
			elseif e.type ~= "overflow" and e.orig.src == A.client and e.orig.sport == uport then
				r.udp[#r.udp + 1] = e
			else
				r.other = r.other + 1
			end
		end
		function r.done()
			local t, u = false, false
			for _, e in ipairs(r.tcp) do
				if e.state == "ESTABLISHED" and e.status.ASSURED then t = true end
			end
			for _, e in ipairs(r.udp) do
				if e.status.SEEN_REPLY then u = true end
			end
			return t and u
		end
		function r.check()
			assert.is_true(r.done(), ("tcp %d events, udp %d events"):format(#r.tcp, #r.udp))
			assert.equals("new", r.tcp[1].type)
			assert.equals("SYN_SENT", r.tcp[1].state)
			assert.equals(A.server, r.tcp[1].orig.dst)
			assert.equals(P.plain, r.tcp[1].orig.dport)
			assert.equals("new", r.udp[1].type)
			assert.equals("udp", r.udp[1].proto)
			for i = 2, #r.tcp do assert.equals(r.tcp[1].id, r.tcp[i].id) end
		end
		return r
	end

	-- each as it comes from the socket, and read ahead by a thread (getfd
	-- then gives an eventfd: the loops poll it the same way)
	for _, ra in ipairs({ false, true }) do
		local how = ra and " (read ahead)" or ""
		local port = ra and 100 or 0
		it("cqueues: a controller waits on the subscription object itself" .. how, function()
			if not okcq then
				pending("lua-cqueues is not installed")
				return
			end
			local sub = assert(ct.subscribe{ netns = R, readahead = ra })
			finally(function() sub:close() end)
			local rec = recorder(31001 + port, 31002 + port)
			local ticks, wakeups, timedout = 0, 0, false
			local cq = cqueues.new()
			cq:wrap(function()
				local deadline = cqueues.monotime() + 8
				while not rec.done() do
					if cqueues.monotime() > deadline then
						timedout = true
						break
					end
					-- the object itself, no fd wrapper
					local ready = cqueues.poll(sub, 0.5)
					if ready == sub then
						wakeups = wakeups + 1
						for _, e in ipairs(sub:read()) do rec.add(e) end
					end
				end
			end)
			-- a timer in the same loop keeps running while the subscription waits
			cq:wrap(function()
				while not rec.done() and not timedout do
					cqueues.sleep(0.05)
					ticks = ticks + 1
				end
			end)
			traffic(0.3, 31001 + port, 31002 + port)
			local hard = cqueues.monotime() + 10
			while not cq:empty() and cqueues.monotime() < hard do
				local ok, err = cq:step(0.5)
				assert(ok, err)
			end
			assert.is_false(timedout)
			rec.check()
			assert.is_true(wakeups >= 1)
			-- the traffic began after 0.3 s: the timer ran meanwhile
			assert.is_true(ticks >= 3, "ticks " .. ticks)
		end)

		it("luv: a poll handle on sub:getfd()" .. how, function()
			if not okuv then
				pending("lua-luv is not installed")
				return
			end
			local sub = assert(ct.subscribe{ netns = R, readahead = ra })
			finally(function() sub:close() end)
			local rec = recorder(31011 + port, 31012 + port)
			local wakeups, ticks, timedout = 0, 0, false
			local poll = uv.new_poll(sub:getfd())
			local tick = uv.new_timer()
			local guard = uv.new_timer()
			local function stop()
				poll:stop()
				tick:stop()
				guard:stop()
			end
			poll:start("r", function(err)
				assert(not err, err)
				wakeups = wakeups + 1
				for _, e in ipairs(sub:read()) do rec.add(e) end
				if rec.done() then stop() end
			end)
			-- luv was loaded long ago (helpers): refresh the loop's cached time,
			-- which timers count from, or the guard fires at once
			uv.update_time()
			tick:start(50, 50, function() ticks = ticks + 1 end)
			guard:start(8000, 0, function()
				timedout = true
				stop()
			end)
			traffic(0.3, 31011 + port, 31012 + port)
			uv.run()
			poll:close()
			tick:close()
			guard:close()
			uv.run("nowait")
			assert.is_false(timedout)
			rec.check()
			assert.is_true(wakeups >= 1)
			assert.is_true(ticks >= 3, "ticks " .. ticks)
		end)
	end

	it("cqueues.poll on an idle subscription times out, on a closed one raises", function()
		if not okcq then
			pending("lua-cqueues is not installed")
			return
		end
		local sub = assert(ct.subscribe{ netns = topo.ns.server, types = "destroy" })
		local cq = cqueues.new()
		local res, dt
		cq:wrap(function()
			local t0 = cqueues.monotime()
			res = cqueues.poll(sub, 0.2)
			dt = cqueues.monotime() - t0
		end)
		assert(cq:loop(5))
		-- (cqueues hands back the timeout itself when it expires)
		assert.are_not.equal(sub, res)
		assert.is_true(dt >= 0.19 and dt < 1, tostring(dt))
		sub:close()
		assert.has_error(function() sub:pollfd() end)
	end)
end)
