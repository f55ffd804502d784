-- bench/stall.lua [K] [--runs=R]: how many events a subscription's receive
-- buffer holds while its reader is stalled, and what that costs in kernel
-- memory (issue 13).  Run it through `make bench-stall` (inside
-- tools/netns-run: it flushes the conntrack table).
--
-- For the module's default buffer and for requests of 1 to 64 MiB: subscribe
-- (ct.subscribe, default types), read nothing while bench/ctfill creates K
-- flows (default 160000: K new events), then note the memory the queue holds
-- (the socket's Rmem in /proc/net/netlink: the kernel's own count of the
-- queued buffers) and read the queue out (sub:read()).  "holds" is the
-- events delivered before the overflow, "lost" what the kernel dropped
-- (sub.lost); R rounds (default 1: the kernel's accounting is exact, so a
-- run gives the same numbers every time), medians.  The memory is taken only
-- while events wait: a reader that keeps up holds next to nothing.
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench/stall")
local q, capture = L.q, L.capture
local count = L.count
local function flush() B:flush() end
L.use_tree(here)
local ct = require "conntrack"

local K, runs = 160000, tonumber(os.getenv("BENCH_RUNS") or "") or 1
for _, a in ipairs(arg) do
	local r = a:match("^%-%-runs=(%d+)$")
	if r then
		runs = tonumber(r)
	elseif tonumber(a) and tonumber(a) >= 1000 then
		K = math.floor(tonumber(a))
	else
		B:die("usage: stall.lua [K >= 1000] [--runs=R]")
	end
end
B:need_netns("run me through `make bench-stall` (tools/netns-run): I flush the conntrack table")
B:need_tools(here, { "ctfill" })

local MiB = 1024 * 1024
local sizes = { false, 1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB, 64 * MiB }

-- Rmem of the one subscribed NETLINK_NETFILTER socket of this namespace.
local function rmem()
	local found
	for line in io.lines("/proc/net/netlink") do
		local eth, groups, mem = line:match("^%x+%s+(%d+)%s+%d+%s+(%x+)%s+(%d+)")
		if eth == "12" and tonumber(groups, 16) ~= 0 then
			if found then
				B:die("more than one subscribed socket in this namespace")
			end
			found = tonumber(mem)
		end
	end
	return found or B:die("the subscription is not in /proc/net/netlink")
end

local function once(size)
	flush()
	local sub = assert(ct.subscribe{ rcvbuf = size or nil })
	local fill = capture(q(here .. "/ctfill") .. " " .. K .. " 2>&1")
	if count() ~= K then
		B:die("ctfill did not make " .. K .. " flows: " .. fill)
	end
	local held = rmem()
	local got = 0
	while true do
		local evs = sub:read()
		if #evs == 0 then
			break
		end
		for i = 1, #evs do
			if evs[i].type ~= "overflow" then
				got = got + 1
			end
		end
	end
	local r = { granted = sub.rcvbuf, held = held, got = got, lost = sub.lost }
	sub:close()
	flush()
	if r.got + r.lost ~= K then
		B:die(string.format("%d delivered and %d lost of %d", r.got, r.lost, K))
	end
	return r
end

print(string.format("### A stalled reader: %d new events while it reads nothing, median of %d runs\n", K, runs))
print("| rcvbuf asked | granted (sub.rcvbuf) | holds (events) | lost | kernel memory held | bytes per event |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for _, size in ipairs(sizes) do
	local got, lost, held, granted = {}, {}, {}, 0
	for _ = 1, runs do
		local r = once(size)
		got[#got + 1], lost[#lost + 1], held[#held + 1], granted = r.got, r.lost, r.held, r.granted
	end
	local g, h = L.median(got), L.median(held)
	print(string.format("| %s | %.1f MiB | %s%d | %d | %.1f MiB | %.0f |",
		size and string.format("%d MiB", size // MiB) or "default", granted / MiB,
		L.median(lost) == 0 and ">= " or "", g, L.median(lost), h / MiB, h / g))
end
