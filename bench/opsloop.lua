-- bench/opsloop.lua N: the module's side of the single-operation benchmark
-- (bench/ops.lua), the same four phases as bench/ctops over the same flows:
-- ct.create of each (ESTABLISHED, SEEN_REPLY and ASSURED, timeout 3600),
-- ct.get of each, ct.update of each (mark = its index), ct.delete of each,
-- one call at a time.  Each call gets a table made in the loop, as a script
-- does; the address strings are made before (a C program has its addresses
-- as numbers).  Prints what bench/ctops prints: "<N>", then each phase's
-- time and CPU time in ns (bench/benchclock.so).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
require("benchlib").use_tree(here)

local clock = require "benchclock"
local ct = require "conntrack"

local n = tonumber(arg[1] or "")
if not n or n < 1 or n ~= math.floor(n) then
	io.stderr:write("usage: opsloop.lua N\n")
	os.exit(2)
end

-- The flows of bench/ctfill (tcp): sources, destinations, ports.
local srcs, dsts = {}, {}
for s = 0, 511 do
	srcs[s] = s < 256 and ("192.0.2." .. s) or ("198.51.100." .. (s - 256))
end
for d = 0, 255 do
	dsts[d] = "203.0.113." .. d
end
local ports = { 80, 443, 22, 8080, 25, 993 }
local floor = math.floor
local function flow(i)
	return srcs[i % 512], dsts[floor(i / 512) % 256], 1024 + floor(i / (512 * 256)) % 64512,
		ports[floor(i / 7) % 6 + 1]
end

local create, get, update, delete = ct.create, ct.get, ct.update, ct.delete
local status = { "SEEN_REPLY", "ASSURED" }
local out = { n }

-- One phase: op(i, flow(i)) for every flow, timed.
local function phase(name, op)
	local t0, c0 = clock.now(), clock.cpu()
	for i = 0, n - 1 do
		local ok, msg = op(i, flow(i))
		if not ok then
			error(name .. " of flow " .. i .. ": " .. tostring(msg))
		end
	end
	out[#out + 1] = clock.now() - t0
	out[#out + 1] = clock.cpu() - c0
end

phase("create", function(_, src, dst, sport, dport)
	return create{ src = src, dst = dst, proto = "tcp", sport = sport, dport = dport,
		timeout = 3600, state = "ESTABLISHED", status = status }
end)
phase("get", function(_, src, dst, sport, dport)
	return get{ src = src, dst = dst, proto = "tcp", sport = sport, dport = dport }
end)
phase("update", function(i, src, dst, sport, dport)
	return update({ src = src, dst = dst, proto = "tcp", sport = sport, dport = dport }, { mark = i })
end)
phase("delete", function(_, src, dst, sport, dport)
	return delete{ src = src, dst = dst, proto = "tcp", sport = sport, dport = dport }
end)

for i = 1, #out do
	out[i] = string.format("%d", out[i])
end
print(table.concat(out, " "))
