#!/usr/bin/env lua
--[==[ top.lua: the busiest flows of a conntrack table, live (like iptstate).

  top.lua [--netns NS] [--sort bps|pps|bytes|age|expiry] [--interval S]
          [-p PROTO]... [-s CIDR]... [-d CIDR]... [--nat KIND] [--acct] [--once [--lines N]]

  tools/netns-run lua5.4 examples/top.lua
  lua5.4 examples/top.lua --netns router -p tcp --sort bytes
  lua5.4 examples/top.lua --netns router --once --lines 10

A refreshing view (every --interval seconds, default 1) of the flows,
sorted by bytes per second (bps, the default), packets per second (pps),
bytes, age or expiry; under a header with the table's size and limit and
the kernel's statistics.  Rates come from the difference of each flow's
counters between two refreshes (both directions summed).  Keys:

  b  bytes/s    p  packets/s    t  total bytes    a  age    e  expiry
  r  reverse the order    space  refresh now    q  quit

Counters need net.netfilter.nf_conntrack_acct=1 in the namespace, ages
nf_conntrack_timestamp=1: the header says when they are off, and --acct
turns both on (for the flows that begin from then on).  -p, -s, -d and
--nat narrow the view with the module's filters (several values: any of
them).  --once prints one view on stdout and exits: two samples --interval
apart for the rates (--interval 0: one sample, no rates), the first
--lines flows (default 20; 0 for all).

Uses lua-argparse (options), luasocket (the clock and waiting for keys) and
stty (the terminal's mode).
]==]

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/?.lua"  -- last: examples/conntrack.lua is the command, not the module
local tb = require "toolbox"
tb.tree(here)

local argparse = require "argparse"
local socket = require "socket"
local ct = require "conntrack"

local SORTS = { bps = "bytes/s", pps = "packets/s", bytes = "bytes", age = "age", expiry = "expiry" }
local KEYS = { b = "bps", p = "pps", t = "bytes", a = "age", e = "expiry" }

local parser = argparse("top.lua", "The busiest flows of a conntrack table, live.")
tb.common_options(parser)
parser:option("-o --sort", "Sort by bps, pps, bytes, age or expiry.", "bps")
	:choices({ "bps", "pps", "bytes", "age", "expiry" })
parser:flag("-r --reverse", "Reverse the order.")
parser:option("-i --interval", "Seconds between refreshes (--once: between the two samples).", "1")
	:argname("<s>")
parser:option("--nat", "Only flows of this NAT kind: none, snat, dnat, both or any.")
	:choices({ "none", "snat", "dnat", "both", "any" })
parser:flag("--acct", "Turn accounting and timestamps on in the namespace.")
parser:flag("--once", "Print one view on stdout and exit.")
parser:option("-l --lines", "With --once: how many flows (0: all).", "20"):argname("<n>")
local o = tb.parse(parser)

local interval, lines = tonumber(o.interval), tonumber(o.lines)
if not interval or interval < 0 or (not o.once and interval < 0.1) or interval > 3600 then
	tb.usage_error(parser, "--interval needs seconds from 0.1 to 3600 (0 with --once)")
end
if not lines or lines < 0 or lines % 1 ~= 0 then
	tb.usage_error(parser, "--lines needs a whole number >= 0")
end

local filter = tb.options_filter(parser, ct.filter, o)
local ftext = tostring(filter)

local h, msg = ct.open{ netns = o.netns }
if not h then
	io.stderr:write("top: ", o.netns and (o.netns .. ": ") or "", msg, "\n")
	os.exit(1)
end
local nsname = o.netns or "(this namespace)"

local notes = {}
if o.acct then
	local ok1, e1 = tb.set_sysctl(o.netns, "nf_conntrack_acct", 1)
	local ok2, e2 = tb.set_sysctl(o.netns, "nf_conntrack_timestamp", 1)
	if not (ok1 and ok2) then
		io.stderr:write("top: cannot turn accounting on: ", e1 or e2, "\n")
		os.exit(1)
	end
	notes[#notes + 1] = "accounting and timestamps turned on: flows that begin from now on carry counters"
end

-- Sampling ------------------------------------------------------------------

local classify = ct.nat.classify

local function key(e, t)
	return table.concat({ e.proto, t.src, t.sport or t.icmp_type or "", t.dst, t.dport or t.icmp_id or "",
		e.zone or 0 }, " ")
end

-- One pass over the table: rows with their rates against prev (the rows of
-- the previous sample, by key), or no rates when prev is nil.
local function sample(prev, dt)
	local rows, byk = {}, {}
	local now = os.time()
	for e in h:dump(filter) do
		local t, r = e.orig, e.reply
		local k = key(e, t)
		local bytes = t.bytes and (t.bytes + (r.bytes or 0))
		local packets = t.packets and (t.packets + (r.packets or 0))
		local row = {
			key = k, proto = e.proto .. (e.family == "ipv6" and "6" or ""), state = e.state or "",
			src = tb.endpoint(t, "src"), dst = tb.endpoint(t, "dst"), nat = classify(e),
			bytes = bytes, packets = packets, expiry = e.timeout or 0,
			age = e.start and math.max(0, now - math.floor(e.start / 1e9)) or nil,
		}
		if prev and bytes and dt > 0 then
			-- a flow new since the last sample made all its traffic in between
			local p = prev[k]
			row.bps = math.max(0, bytes - (p and p.bytes or 0)) / dt
			row.pps = math.max(0, packets - (p and p.packets or 0)) / dt
		end
		rows[#rows + 1] = row
		byk[k] = row
	end
	return rows, byk
end

-- Order: the biggest first for rates and bytes, the oldest first for age,
-- the soonest to expire first; flows without the value last; ties by key.
local function order(sort, reverse)
	local asc = sort == "expiry"
	return function(a, b)
		local x, y = a[sort], b[sort]
		if x ~= y then
			if x == nil then return false end
			if y == nil then return true end
			if asc ~= (reverse and true or false) then return x < y end
			return x > y
		end
		return a.key < b.key
	end
end

local function pick(rows, n, sort, reverse)
	local before = order(sort, reverse)
	if n == 0 or n >= #rows then
		local all = {}
		for i, r in ipairs(rows) do all[i] = r end
		table.sort(all, before)
		return all
	end
	local best, add = tb.best(n, before)
	for _, r in ipairs(rows) do add(r) end
	return best
end

-- Text ----------------------------------------------------------------------

local function human(n)
	if n == nil then return "-" end
	local units = { "", "K", "M", "G", "T" }
	local i = 1
	while n >= 1024 and i < #units do
		n = n / 1024
		i = i + 1
	end
	if i == 1 then
		return n == math.floor(n) and ("%d"):format(n) or ("%.1f"):format(n)
	end
	return ("%.1f%s"):format(n, units[i])
end

local function duration(s)
	if s == nil then return "-" end
	if s >= 3600 then return ("%dh%02dm"):format(math.floor(s / 3600), math.floor(s % 3600 / 60)) end
	if s >= 60 then return ("%dm%02ds"):format(math.floor(s / 60), s % 60) end
	return ("%ds"):format(s)
end

local COLS = { "PROTO", "STATE", "SOURCE", "DESTINATION", "NAT", "BYTES/S", "PKTS/S", "BYTES", "PKTS",
	"AGE", "EXPIRES" }
local RIGHT = { [6] = true, [7] = true, [8] = true, [9] = true, [10] = true, [11] = true }

local function cells(r)
	return { r.proto, r.state ~= "" and r.state or "-", r.src, r.dst, r.nat == "none" and "-" or r.nat,
		human(r.bps), human(r.pps), human(r.bytes), human(r.packets), duration(r.age), tostring(r.expiry) }
end

local function table_lines(rows)
	local all = { COLS }
	for _, r in ipairs(rows) do all[#all + 1] = cells(r) end
	local w = {}
	for _, c in ipairs(all) do
		for i, v in ipairs(c) do w[i] = math.max(w[i] or 0, #v) end
	end
	local out = {}
	for _, c in ipairs(all) do
		local parts = {}
		for i, v in ipairs(c) do
			local pad = (" "):rep(w[i] - #v)
			parts[i] = RIGHT[i] and (pad .. v) or (i == #c and v or v .. pad)
		end
		out[#out + 1] = table.concat(parts, "  ")
	end
	return out
end

local function header(view)
	local acct = tb.sysctl(o.netns, "nf_conntrack_acct")
	local ts = tb.sysctl(o.netns, "nf_conntrack_timestamp")
	local count, max = h:count(), h:max()
	local stats = h:stats()
	local t = {}
	t[#t + 1] = ("conntrack top  netns %s  %s  sorted by %s%s"):format(nsname, os.date("%H:%M:%S"),
		SORTS[view.sort], view.reverse and " (reversed)" or "")
	t[#t + 1] = ("table %s / %s flows  showing %d of %d%s"):format(tostring(count), tostring(max or "?"),
		#view.shown, #view.rows, ftext ~= "all()" and ("  filter " .. ftext) or "")
	local names = {}
	for k in pairs(stats.total or {}) do
		if k ~= "cpu" then names[#names + 1] = k end
	end
	table.sort(names)
	for i, k in ipairs(names) do names[i] = k .. " " .. stats.total[k] end
	t[#t + 1] = ("stats (%d CPUs): %s"):format(#stats, table.concat(names, "  "))
	if acct ~= 1 then
		t[#t + 1] = "accounting is off in this namespace (net.netfilter.nf_conntrack_acct=0): "
			.. "no counters, no rates; --acct turns it on"
	elseif not view.rated then
		t[#t + 1] = o.once and "no rates: one sample (--interval 0)" or "rates from the next refresh on"
	end
	if ts ~= 1 then
		t[#t + 1] = "timestamps are off (net.netfilter.nf_conntrack_timestamp=0): no ages"
	end
	for _, n in ipairs(notes) do t[#t + 1] = n end
	return t
end

-- --once ----------------------------------------------------------------

if o.once then
	local rows, byk = sample(nil, 0)
	local rated = false
	if interval > 0 then
		socket.sleep(interval)
		rows = sample(byk, interval)
		rated = true
	end
	local view = { sort = o.sort, reverse = o.reverse, rows = rows, rated = rated }
	view.shown = pick(rows, lines, o.sort, o.reverse)
	for _, l in ipairs(header(view)) do print(l) end
	print()
	for _, l in ipairs(table_lines(view.shown)) do print(l) end
	h:close()
	os.exit(0)
end

-- Live ------------------------------------------------------------------

local function stty(args)
	local p = io.popen("stty " .. args .. " < /dev/tty 2>/dev/null")
	local out = p:read("*a")
	p:close()
	return out
end

local function size()
	local rows, cols = stty("size"):match("(%d+)%s+(%d+)")
	return tonumber(rows) or 24, tonumber(cols) or 80
end

local saved = stty("-g"):match("%S+")
if not saved then
	io.stderr:write("top: no terminal (use --once for one view on stdout)\n")
	os.exit(1)
end
stty("-icanon -echo min 1 time 0")
io.stdin:setvbuf("no")
io.stdout:setvbuf("full")
io.stdout:write("\27[?1049h\27[?25l")

local function restore()
	io.stdout:write("\27[?25h\27[?1049l")
	io.stdout:flush()
	stty(saved)
end

local stdin = { getfd = function() return 0 end, dirty = function() return false end }

local function ready(secs)
	local r = socket.select({ stdin }, nil, secs)
	return r ~= nil and #r > 0
end

-- A key, waiting at most secs: the character, or nil.  Escape sequences
-- (arrows, function keys: ESC [ ... final byte, or ESC O x) are read whole
-- and dropped.
local function key_within(secs)
	if not ready(secs) then return nil end
	local c = io.stdin:read(1)
	if c ~= "\27" then
		return c
	end
	if not ready(0.05) then return nil end
	local c2 = io.stdin:read(1)
	if c2 == "O" then
		io.stdin:read(1)
	elseif c2 == "[" then
		repeat
			local b = io.stdin:read(1)
		until b == nil or (b:byte() >= 0x40 and b:byte() <= 0x7e)
	end
	return nil
end

local view = { sort = o.sort, reverse = o.reverse, rows = {}, shown = {}, rated = false }

local function draw()
	local nrows, ncols = size()
	local head = header(view)
	local room = math.max(1, nrows - #head - 3)
	view.shown = pick(view.rows, room, view.sort, view.reverse)
	local out = { "\27[H" }
	local function line(s)
		out[#out + 1] = s:sub(1, ncols) .. "\27[K\r\n"
	end
	for _, l in ipairs(head) do line(l) end
	line("")
	for _, l in ipairs(table_lines(view.shown)) do line(l) end
	out[#out + 1] = "\27[J"
	out[#out + 1] = ("\27[%d;1H\27[7m%s\27[0m"):format(nrows,
		("b p t a e: sort by bytes/s, packets/s, bytes, age, expiry   r: reverse   q: quit"):sub(1, ncols))
	io.stdout:write(table.concat(out))
	io.stdout:flush()
end

local function run()
	local prev, tprev
	while true do
		local t = socket.gettime()
		local rows, byk = sample(prev, tprev and (t - tprev) or 0)
		view.rows, view.rated = rows, prev ~= nil
		prev, tprev = byk, t
		draw()
		local deadline = t + interval
		while true do
			local left = deadline - socket.gettime()
			if left <= 0 then break end
			local c = key_within(left)
			if c == "q" or c == "Q" then
				return
			elseif c and KEYS[c] then
				view.sort = KEYS[c]
				draw()
			elseif c == "r" then
				view.reverse = not view.reverse
				draw()
			elseif c == " " or c == "\n" then
				break
			end
		end
	end
end

local ok, err = pcall(run)
restore()
h:close()
if not ok then
	if tostring(err):find("interrupted", 1, true) then
		os.exit(130)
	end
	io.stderr:write("top: ", tostring(err), "\n")
	os.exit(1)
end
