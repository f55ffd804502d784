-- examples/top.lua on a router with real traffic: --once on every Lua
-- (sorts, filters, the header against the CLI), accounting turned on when
-- asked, and the live view in a real terminal (tmux: keys sent, the pane
-- captured).
local hosts = require "hosts"
local H = require "helpers"
local J = require "jobhelp"

local q = hosts.quote
local P = hosts.port

local BUSY, BIG = 20500, 20600
local SINK = 8010      -- the server's port that only reads (no NAT rule names it)

-- Rows of a view: the lines after the column header up to an empty line,
-- each split into its eleven cells.
local COLS = { "proto", "state", "src", "dst", "nat", "bps", "pps", "bytes", "packets", "age", "expiry" }

local function number(cell)
	if cell == "-" then return nil end
	local n, unit = cell:match("^([%d.]+)([KMGT]?)$")
	if not n then
		local hh, mm = cell:match("^(%d+)h(%d+)m$")
		if hh then return hh * 3600 + mm * 60 end
		local m, s = cell:match("^(%d+)m(%d+)s$")
		if m then return m * 60 + s end
		return tonumber((cell:match("^(%d+)s$")))
	end
	local mult = { [""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4 }
	return tonumber(n) * mult[unit]
end

local function view(text)
	local rows, head, inrows = {}, {}, false
	for line in (text .. "\n"):gmatch("([^\n]*)\n") do
		if inrows then
			if not line:find("%S") then break end
			local cells = {}
			for c in line:gmatch("%S+") do cells[#cells + 1] = c end
			if #cells == #COLS then
				local r = {}
				for i, k in ipairs(COLS) do r[k] = cells[i] end
				for _, k in ipairs({ "bps", "pps", "bytes", "packets", "age", "expiry" }) do r[k] = number(r[k]) end
				r.sport = tonumber(r.src:match(":(%d+)$"))
				rows[#rows + 1] = r
			end
		elseif line:find("^PROTO%s+STATE%s+SOURCE") then
			inrows = true
		else
			head[#head + 1] = line
		end
	end
	return rows, table.concat(head, "\n")
end

-- Is the column monotone (down: non-increasing), values missing last?
local function sorted_by(rows, k, down)
	for i = 2, #rows do
		local a, b = rows[i - 1][k], rows[i][k]
		if a == nil and b ~= nil then return false end
		if a ~= nil and b ~= nil and (down and a < b or not down and a > b) then return false end
	end
	return true
end

describe("top.lua", function()
	local topo, router, slow

	setup(function()
		-- listeners that outlive every step of the spec, however slow the
		-- machine (a listener that timed out mid-transfer resets it)
		topo = hosts.new{ nat = { snat = true, dnat = true }, timeout = 240 }
		router = topo.ns.router
		local A = topo.addr
		topo:serve()
		-- oldest: a quiet held connection
		slow = topo:tcp_connect("client", A.server, P.plain, { hold = 90 })
		-- busiest: about 200 KB/s each way for 90 s
		topo:spawn("client", ("timeout 90 sh -c 'while :; do head -c 10000 /dev/zero; sleep 0.1; done"
			.. " | socat - TCP4:%s:%d,sourceport=%d >/dev/null'"):format(A.server, P.plain, BUSY))
		-- the most bytes: 40 MB one way into a sink on the server, then
		-- closed (TIME_WAIT).  One way: 20 MB echoed back through socat
		-- stalled to its 60 s bound in three full-suite runs (two socats that
		-- each block writing, neither reading, is one way it can); a stream
		-- that only flows one way cannot wait on its reader's writes.
		topo:spawn("server", ("timeout 240 socat -u TCP4-LISTEN:%d,reuseaddr OPEN:/dev/null,wronly"):format(SINK))
		assert(J.poll(10, function()
			return (topo:exec("server", ("ss -Htln 'sport = :%d' | grep -q ."):format(SINK)))
		end), "the sink did not listen")
		local t0 = os.time()
		local ok, out = topo:exec("client", ("head -c 40000000 /dev/zero | timeout 60 socat -u - TCP4:%s:%d,sourceport=%d")
			:format(A.server, SINK, BIG))
		assert(ok, ("the 40 MB transfer failed after %d s: %s\n%s"):format(os.time() - t0, out, topo:log()))
		-- the soonest to expire: udp; and a DNAT flow
		assert(topo:udp_send("client", A.server, P.plain, "u"))
		assert(topo:tcp_request("client", A.public, P.dnat, "hello"))
		-- the busy flow is in the table and moving
		assert(J.poll(10, function()
			local lines = H.cli(router, "-L -p tcp --sport " .. BUSY)
			return lines[1] and tonumber(lines[1]:match("bytes=(%d+)")) > 100000
		end), "the busy flow did not start")
	end)
	teardown(function()
		if slow then slow:close() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	local function once(lua, args)
		local ok, out, err = J.run(nil, lua, "top.lua", "--once --netns " .. q(router) .. " " .. (args or ""))
		assert.is_true(ok, err)
		return view(out)
	end

	it("--help prints the usage; bad options exit 2", function()
		J.check_usage("top.lua", { "--nosuch", "--sort size", "--interval x", "--once --lines -1",
			"--once -s 300.1.1.1", "--once -p nosuchproto", "--nat sideways" })
		local _, _, err = J.run(nil, nil, "top.lua", "--once -s 300.1.1.1")
		assert.matches("300%.1%.1%.1", err)
	end)

	it("--once on every Lua: the busiest flow first, by counter deltas", function()
		for _, lua in ipairs(J.luas()) do
			local rows, head = once(lua, "--interval 0.5")
			assert.matches("sorted by bytes/s", head)
			assert.is_true(#rows >= 5, lua.bin .. ": " .. #rows .. " rows")
			assert.equals(BUSY, rows[1].sport, lua.bin)
			assert.is_true(rows[1].bps > 50 * 1024, lua.bin .. ": " .. tostring(rows[1].bps))
			assert.is_true(sorted_by(rows, "bps", true), lua.bin)
			-- the quiet and closed flows made nothing in the interval
			for _, r in ipairs(rows) do
				if r.sport == BIG then assert.equals(0, r.bps) end
			end
		end
	end)

	it("sorts by packets/s, bytes, age and expiry, and reverses", function()
		local rows = once(nil, "--sort pps --interval 0.5")
		assert.is_true(sorted_by(rows, "pps", true))
		rows = once(nil, "--sort bytes --interval 0")
		assert.equals(BIG, rows[1].sport)
		assert.is_true(rows[1].bytes >= 40000000)
		assert.is_true(sorted_by(rows, "bytes", true))
		rows = once(nil, "--sort expiry --interval 0")
		assert.equals("udp", rows[1].proto)
		assert.is_true(sorted_by(rows, "expiry", false))
		rows = once(nil, "--sort age --interval 0")
		assert.is_true(sorted_by(rows, "age", true))
		-- the quiet connection began first: none is older
		for _, r in ipairs(rows) do
			if r.sport == slow.sport then assert.equals(rows[1].age, r.age) end
		end
		rows = once(nil, "--sort expiry --reverse --interval 0")
		assert.is_true(sorted_by(rows, "expiry", true))
		assert.is_true(#once(nil, "--interval 0 --lines 2") == 2)
	end)

	it("filters: -p, -s, -d (CIDR prefixes) and --nat", function()
		local rows, head = once(nil, "-p udp --interval 0")
		assert.is_true(#rows >= 1)
		for _, r in ipairs(rows) do assert.equals("udp", r.proto) end
		assert.matches("filter proto%(udp%)", head)
		rows = once(nil, "--nat dnat --interval 0")
		assert.equals(1, #rows)
		assert.equals("203.0.113.10:" .. P.dnat, rows[1].dst)
		assert.equals("dnat", rows[1].nat)
		rows = once(nil, "-d 203.0.113.0/24 -d 2001:db8::/32 --interval 0")
		assert.equals(1, #rows)
		rows = once(nil, "-s 192.0.2.0/24 -p tcp,udp --lines 0 --interval 0")
		local n = #H.cli_ok(router, "-L -s 192.0.2.2")
		assert.equals(n, #rows)
		assert.equals(0, #once(nil, "-s 198.51.100.0/24 --interval 0"))
	end)

	it("the header holds the table's size and limit and the kernel's statistics", function()
		local head, count, total
		for _ = 1, 3 do
			local before = H.cli_ok(router, "-C")[1]
			local stats = J.cli_stats(router)
			local _
			_, head = once(nil, "--interval 0")
			if before == H.cli_ok(router, "-C")[1] and require("luassert.util").deepcompare(stats, J.cli_stats(router)) then
				count = tonumber(before)
				total = {}
				for _, c in pairs(stats) do
					for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
				end
				break
			end
		end
		assert.is_truthy(count, "the table kept changing")
		local max = tonumber((H.sh(router, "cat /proc/sys/net/netfilter/nf_conntrack_max")))
		assert.matches(("table %d / %d flows"):format(count, max), head, 1, true)
		local shown = {}
		for k, v in head:match("\nstats %(%d+ CPUs%): ([^\n]*)"):gmatch("([%w_]+) (%d+)") do
			shown[k] = tonumber(v)
		end
		assert.same(total, shown)
	end)

	it("says when accounting is off, and --acct turns it on", function()
		local stopo, ns, h = H.scratch()
		finally(function()
			h:close()
			stopo:destroy()
		end)
		H.sh(ns, "sysctl -qw net.netfilter.nf_conntrack_acct=0 net.netfilter.nf_conntrack_timestamp=0")
		assert(h:create{ src = "192.0.2.1", dst = "198.51.100.1", proto = "udp", sport = 1, dport = 2, timeout = 60 })
		local ok, out = J.run(nil, nil, "top.lua", "--once --interval 0 --netns " .. q(ns))
		assert.is_true(ok)
		assert.matches("accounting is off in this namespace", out, 1, true)
		assert.matches("timestamps are off", out, 1, true)
		local rows = view(out)
		assert.equals(1, #rows)
		assert.is_nil(rows[1].bytes)
		assert.is_nil(rows[1].age)
		ok, out = J.run(nil, nil, "top.lua", "--once --interval 0 --acct --netns " .. q(ns))
		assert.is_true(ok)
		assert.matches("accounting and timestamps turned on", out, 1, true)
		assert.is_nil(out:find("accounting is off", 1, true))
		assert.equals("1", (H.sh(ns, "cat /proc/sys/net/netfilter/nf_conntrack_acct")):match("%d"))
		assert.equals("1", (H.sh(ns, "cat /proc/sys/net/netfilter/nf_conntrack_timestamp")):match("%d"))
	end)

	-- A tmux session (on a server of its own) running top.lua live under
	-- lua: returns an object with pane(), keys(k), shows(want [, check]) and
	-- quit().  The servers a test made are ended by kill_all() (its finally).
	local servers, made = {}, 0
	local function tmux(sock, args)
		return J.exec("tmux -L " .. q(sock) .. " " .. args)
	end
	local function kill_all()
		for _, sock in ipairs(servers) do
			tmux(sock, "kill-server 2>/dev/null")
			J.exec(("rm -f \"${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/%s\""):format(sock))
		end
		servers = {}
	end
	local function live(lua)
		made = made + 1
		local sock = ("lct-%s-%d"):format(hosts.pid, made)
		servers[#servers + 1] = sock
		local cmd = J.cmdline(nil, lua, "top.lua", "--interval 0.5 --netns " .. q(router))
			.. "; echo TOP-EXITED $?; sleep 60"
		assert(tmux(sock, "new-session -d -s top -x 160 -y 30 " .. q(cmd)))
		local t = {}
		function t.pane()
			local _, out = tmux(sock, "capture-pane -p -t top")
			return out
		end
		function t.keys(k)
			assert(tmux(sock, "send-keys -t top " .. k))
		end
		-- waits until a header line ends with `want` (or goes on with " (")
		-- and the rows satisfy check
		function t.shows(want, check)
			local last
			local got = J.poll(10, function()
				last = t.pane()
				local rows, head = view(last)
				head = head .. "\n"
				local said = head:find(want .. "\n", 1, true) or head:find(want .. " (", 1, true)
				return said and #rows > 0 and (not check or check(rows)) and rows
			end)
			assert.is_truthy(got, "the pane never showed " .. want .. ":\n" .. tostring(last))
			return got
		end
		function t.quit()
			t.keys("q")
			local done = J.poll(10, function() return t.pane():find("TOP-EXITED 0", 1, true) end)
			assert.is_truthy(done, t.pane())
			-- the normal screen is back: the view is gone from it
			assert.is_nil(t.pane():find("conntrack top", 1, true))
		end
		return t
	end

	it("runs live in a real terminal (tmux): keys change the sort, q quits and restores it", function()
		finally(kill_all)
		local t = live(nil)
		local rows = t.shows("sorted by bytes/s", function(r) return r[1].bps ~= nil end)
		assert.equals(BUSY, rows[1].sport)
		assert.matches("b p t a e: sort by", t.pane(), 1, true)
		t.keys("p")
		rows = t.shows("sorted by packets/s")
		assert.is_true(sorted_by(rows, "pps", true))
		t.keys("t")
		rows = t.shows("sorted by bytes")
		assert.equals(BIG, rows[1].sport)
		t.keys("e")
		rows = t.shows("sorted by expiry")
		assert.equals("udp", rows[1].proto)
		t.keys("a")
		rows = t.shows("sorted by age")
		assert.is_true(sorted_by(rows, "age", true))
		t.keys("r")
		rows = t.shows("sorted by age (reversed)")
		assert.is_true(sorted_by(rows, "age", false))
		-- an arrow key is an escape sequence: read whole and ignored
		t.keys("Up b")
		t.shows("sorted by bytes/s (reversed)")
		t.quit()
	end)

	it("runs live on every Lua", function()
		finally(kill_all)
		for _, lua in ipairs(J.luas()) do
			local t = live(lua)
			local rows = t.shows("sorted by bytes/s", function(r) return r[1].bps ~= nil end)
			assert.equals(BUSY, rows[1].sport, lua.bin)
			t.keys("Up t")
			rows = t.shows("sorted by bytes")
			assert.equals(BIG, rows[1].sport, lua.bin)
			t.quit()
		end
	end)
end)
