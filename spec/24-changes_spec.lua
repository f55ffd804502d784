-- Changes of issue 10 against the conntrack CLI both ways: labels added
-- and removed one by one (--label-add, --label-del), TCP protocol state
-- for creates and updates (state, window tracking flags and scales, as a
-- standby firewall takes over a flow seen by another), helper on create,
-- update's status adding flags as -U -u does, add leaving an existing flow
-- as -A does, and update_where counting what it left unchanged as -U skips
-- it.
--
-- Labels: the CLI takes label names only, from /etc/xtables/connlabel.conf,
-- which this machine has not.  The CLI runs here in a private mount
-- namespace whose /etc is an overlay holding that file: the host's /etc is
-- never written.  The module takes bit numbers without the file; a child
-- interpreter in the same overlay checks the names.

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local F = ct.filter
local q = hosts.quote

H.assert_private()

local C, S = "192.0.2.1", "198.51.100.2"

local norm = H.comparable

local function tcp(sport, extra)
	local s = { src = C, dst = S, proto = "tcp", sport = sport, dport = 80, timeout = 100, state = "ESTABLISHED" }
	for k, v in pairs(extra or {}) do s[k] = v end
	return s
end

local function names(set)
	local t = {}
	for k, v in pairs(set or {}) do
		if v then t[#t + 1] = tostring(k) end
	end
	table.sort(t)
	return table.concat(t, ",")
end

describe("labels: label_add and label_del on update, --label-add and --label-del", function()
	local ns, h, dir
	H.private(function(_, n, hh) ns, h = n, hh end)

	-- cmd run by sh inside a private mount namespace whose /etc holds
	-- xtables/connlabel.conf (an overlay on the real /etc)
	local function in_overlay(cmd)
		local script = ("mount -t overlay overlay -o lowerdir=/etc,upperdir=%s/u,workdir=%s/w /etc && %s")
			:format(dir, dir, cmd)
		return hosts.run("unshare -m --propagation private sh -c " .. q(script))
	end

	local function cli(args)
		local ok, out = in_overlay("ip netns exec " .. q(ns) .. " conntrack " .. args .. " 2>/dev/null")
		return H.lines(out), ok
	end

	setup(function()
		dir = os.tmpname()
		os.remove(dir)
		assert(hosts.run(("mkdir -p %s/u/xtables %s/w && printf '5 lct-five\\n7 lct-seven\\n9 lct-nine\\n'"
			.. " > %s/u/xtables/connlabel.conf"):format(dir, dir, dir)))
	end)
	teardown(function()
		if dir then hosts.run("rm -rf " .. q(dir)) end
	end)

	it("bits both ways; the CLI's names and the module's names (in the overlay) agree", function()
		assert.is_nil(H.read("/etc/xtables/connlabel.conf"))
		local ok, out = in_overlay("cat /etc/xtables/connlabel.conf")
		assert.is_true(ok, out)
		-- a labels extension on every new flow: a rule that may set a label
		local okn, nout = H.sh(ns, "nft -f - <<'EOF'\ntable inet lct_labels {\n\tchain c {\n"
			.. "\t\ttype filter hook output priority 0; policy accept;\n"
			.. "\t\tmeta mark 0xdead ct label set 127\n\t}\n}\nEOF")
		assert(nout, okn)
		local T = { src = C, dst = S, proto = "tcp", sport = 1, dport = 80 }
		assert.is_true(h:create(tcp(1)))
		assert.is_true(h:update(T, { label_add = { 5 } }))
		assert.equals("5", names(assert(h:get(T)).labels))
		local lines = cli("-L -o labels")
		assert.equals(1, #lines)
		assert.truthy(lines[1]:find("labels=lct-five", 1, true), lines[1])
		-- the CLI adds one, the module reads its bit
		local _, cok = cli("-U -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 1 --dport 80 --label-add lct-seven")
		assert.is_true(cok)
		assert.equals("5,7", names(assert(h:get(T)).labels))
		assert.is_true(h:update(T, { label_add = { 9 } }))
		assert.is_true(h:update(T, { label_del = { 7 } }))
		assert.equals("5,9", names(assert(h:get(T)).labels))
		assert.truthy(cli("-L -o labels")[1]:find("labels=lct-five,lct-nine", 1, true))
		_, cok = cli("-U -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 1 --dport 80 --label-del lct-five")
		assert.is_true(cok)
		assert.equals("9", names(assert(h:get(T)).labels))
		-- the CLI's label filter and the module's
		assert.equals(1, #cli("-L -l lct-nine"))
		assert.equals(0, #cli("-L -l lct-five"))
		assert.equals(1, #h:list(F.label(9)))
		assert.equals(0, #h:list(F.label(5)))
		-- a child interpreter in the overlay reads and writes the names
		local child = ([[
local ct = require "conntrack"
local h = assert(ct.open{ netns = %q })
local T = { src = %q, dst = %q, proto = "tcp", sport = 1, dport = 80 }
assert(h:update(T, { label_add = { "lct-seven" } }))
local e = assert(h:get(T))
local t = {}
for k in pairs(e.labels) do t[#t + 1] = k end
table.sort(t)
print(table.concat(t, ","))
print(e:format("labels"))
print(#h:list(ct.filter.label "lct-seven"))
]]):format(ns, C, S)
		local file = os.tmpname()
		finally(function() os.remove(file) end)
		local f = assert(io.open(file, "w"))
		f:write(child)
		f:close()
		local cok2, cout = in_overlay(H.lua .. " " .. q(file))
		assert.is_true(cok2, cout)
		local got = H.lines(cout)
		assert.equals("lct-nine,lct-seven", got[1])
		assert.equals(norm(cli("-L -o labels")[1]), norm(got[2]))
		assert.equals("1", got[3])
		assert.equals("7,9", names(assert(h:get(T)).labels))
	end)
end)

describe("TCP state for creates and updates, helper on create", function()
	local topo, A, h
	H.routed({ serve = "tcp" }, function(t, hh) topo, A, h = t, t and t.addr, hh end)

	it("a real connection's window tracking (flags, scales as ss shows them) copied into another table"
		.. " with state and helper: what a standby takes over", function()
		local c = topo:tcp_connect("client", A.server, hosts.port.plain, { hold = 10 })
		local st, sns, sh = H.scratch()
		local on_exit = H.finally(finally)
		on_exit(function() c:close() end)
		on_exit(function() sh:close() st:destroy() end)
		local e = assert(h:list(F.proto "tcp" * F.sport(c.sport)))[1]
		assert.equals("ESTABLISHED", e.state)
		-- the client's own view: wscale:<its send scale>,<its receive scale>
		local _, ssout = topo:exec("client", ("ss -Htni state established 'sport = :%d'"):format(c.sport))
		local snd, rcv = ssout:match("wscale:(%d+),(%d+)")
		assert.truthy(snd, ssout)
		assert.equals(tonumber(rcv), e.tcp_wscale_orig)
		assert.equals(tonumber(snd), e.tcp_wscale_reply)
		-- both sides announced window scaling (flag 0x01) and SACK (0x02)
		assert.equals(3, e.tcp_flags_orig % 4)
		assert.equals(3, e.tcp_flags_reply % 4)
		local spec = { src = e.orig.src, dst = e.orig.dst, proto = "tcp", sport = e.orig.sport, dport = e.orig.dport,
			timeout = 300, state = e.state, status = { "ASSURED", "SEEN_REPLY" }, helper = "ftp",
			tcp_flags_orig = e.tcp_flags_orig, tcp_flags_reply = e.tcp_flags_reply,
			tcp_wscale_orig = e.tcp_wscale_orig, tcp_wscale_reply = e.tcp_wscale_reply }
		assert.is_true(sh:create(spec))
		local t = H.tuple(spec)
		local x = assert(sh:get(t))
		assert.same({ e.state, e.tcp_flags_orig, e.tcp_flags_reply, e.tcp_wscale_orig, e.tcp_wscale_reply },
			{ x.state, x.tcp_flags_orig, x.tcp_flags_reply, x.tcp_wscale_orig, x.tcp_wscale_reply })
		assert.equals("ftp", x.helper)
		assert.is_true(x.status.ASSURED)
		local cli = H.cli_ok(sns, ("-G -s %s -d %s -p tcp --sport %d --dport %d"):format(t.src, t.dst, t.sport, t.dport))
		assert.equals(norm(cli[1]), norm(tostring(x)))
		assert.truthy(cli[1]:find(" ESTABLISHED ", 1, true))
		assert.truthy(cli[1]:find(" helper=ftp ", 1, true))
		assert.truthy(cli[1]:find("[ASSURED]", 1, true))
		-- an update of the state and window tracking
		assert.is_true(sh:update(t, { state = "TIME_WAIT", tcp_flags_orig = 0x01, tcp_wscale_reply = 3,
			tcp_wscale_orig = 4 }))
		x = assert(sh:get(t))
		assert.equals("TIME_WAIT", x.state)
		assert.equals(0x01, x.tcp_flags_orig)
		assert.same({ 4, 3 }, { x.tcp_wscale_orig, x.tcp_wscale_reply })
		assert.truthy(H.cli_ok(sns, "-L")[1]:find(" TIME_WAIT ", 1, true))
		-- the CLI's update of the state, read by the module
		H.cli_ok(sns, "-U -s " .. t.src .. " -d " .. t.dst .. " -p tcp --sport " .. t.sport .. " --dport " .. t.dport
			.. " --state CLOSE")
		assert.equals("CLOSE", assert(sh:get(t)).state)
		-- window tracking fields belong to tcp
		local ok, msg = pcall(sh.create, sh, { src = C, dst = S, proto = "udp", sport = 1, dport = 2, timeout = 9,
			tcp_wscale_orig = 7 })
		assert.is_false(ok)
		assert.matches("create: bad argument 'tcp_wscale_orig' (only for tcp)", msg, 1, true)
	end)
end)

describe("update, add and update_where as the CLI's -U, -A and -U with filters", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)
	before_each(function() assert(h:flush()) end)

	local function tup(sport) return H.tuple(tcp(sport)) end

	it("update's status adds to the entry's flags, as conntrack -U -u does (the kernel refuses to clear"
		.. " ASSURED)", function()
		assert.is_true(h:create(tcp(20, { status = { "ASSURED" } })))
		H.cli_ok(ns, "-I -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 21 --dport 80 -t 100 --state ESTABLISHED -u ASSURED")
		assert.is_true(h:update(tup(20), { status = { "FIXED_TIMEOUT" } }))
		H.cli_ok(ns, "-U -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 21 --dport 80 -u FIXED_TIMEOUT")
		for _, sport in ipairs{ 20, 21 } do
			local e = assert(h:get(tup(sport)))
			assert.is_true(e.status.ASSURED, sport)
			assert.is_true(e.status.FIXED_TIMEOUT, sport)
		end
		assert.equals(norm(H.cli_ok(ns, "-G -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 20 --dport 80")[1]),
			norm(tostring(assert(h:get(tup(20))))))
		assert.is_true(h:update(tup(20), { status = { "SEEN_REPLY" } }))
		local e = assert(h:get(tup(20)))
		assert.same({ true, true, true }, { e.status.ASSURED, e.status.FIXED_TIMEOUT, e.status.SEEN_REPLY })
		assert.is_nil(H.cli_ok(ns, "-G -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 20 --dport 80")[1]
			:find("UNREPLIED", 1, true))
	end)

	it("add of a flow already there returns false and leaves it, as conntrack -A reports 0 added", function()
		assert.is_true(h:create(tcp(30)))
		H.cli_ok(ns, "-I -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 31 --dport 80 -t 100 --state ESTABLISHED")
		local before = { norm(tostring(assert(h:get(tup(30))))), norm(tostring(assert(h:get(tup(31))))) }
		assert.is_false(h:add(tcp(31, { timeout = 50, mark = 9 })))
		local _, ok, err = H.cli(ns, "-A -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 30 --dport 80 -t 50"
			.. " --state ESTABLISHED -m 9")
		assert.is_true(ok)
		assert.matches("0 flow entries have been added", err, 1, true)
		assert.same(before, { norm(tostring(assert(h:get(tup(30))))), norm(tostring(assert(h:get(tup(31))))) })
		for _, sport in ipairs{ 30, 31 } do
			local e = assert(h:get(tup(sport)))
			assert.equals(0, e.mark)
			assert.is_true(e.timeout > 50)
		end
		-- a new flow: both add it
		assert.is_true(h:add(tcp(32, { mark = 9 })))
		_, ok, err = H.cli(ns, "-A -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 33 --dport 80 -t 50 --state ESTABLISHED -m 9")
		assert.is_true(ok)
		assert.matches("1 flow entries have been added", err, 1, true)
		assert.equals(2, #h:list{ mark = 9 })
	end)

	it("update_where counts what it left unchanged apart, as -U skips unchanged entries (and exits 1 when"
		.. " none changed)", function()
		for sport = 40, 43 do assert.is_true(h:create(tcp(sport, { mark = sport < 42 and 9 or 0 }))) end
		local updated, missing, failures, unchanged = h:update_where(F.proto "tcp", { mark = 9 })
		assert.same({ 2, 0, {}, 2 }, { updated, missing, failures, unchanged })
		updated, missing, failures, unchanged = h:update_where(F.proto "tcp", { mark = 9 })
		assert.same({ 0, 0, {}, 4 }, { updated, missing, failures, unchanged })
		local _, ok, err = H.cli(ns, "-U -p tcp -m 9")
		assert.is_false(ok)
		assert.matches("0 flow entries have been updated", err, 1, true)
		-- (with -p alone the CLI's update fails here: "Operation not supported")
		_, ok, err = H.cli(ns, "-U -s 192.0.2.1 -p tcp --sport 40 -m 10")
		assert.is_true(ok)
		assert.matches("1 flow entries have been updated", err, 1, true)
		updated, _, _, unchanged = h:update_where(F.proto "tcp", { mark = 9 })
		assert.same({ 1, 3 }, { updated, unchanged })
		assert.equals(4, #h:list{ mark = 9 })
	end)
end)
