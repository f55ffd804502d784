-- bench/opsloop.lua N [premade]: the module's side of the single-operation
-- benchmark (bench/ops.lua), the same four phases as bench/ctops over the
-- same flows: ct.create of each (ESTABLISHED, SEEN_REPLY and ASSURED, timeout
-- 3600), ct.get of each, ct.update of each (mark = its index), ct.delete of
-- each, one call at a time.  Each call gets a table made in the loop, as a
-- script does; the address strings are made before (a C program has its
-- addresses as numbers).  With "premade" every table is made before the
-- timing too, which leaves the module's own part of an operation (the
-- script's table is no part of the C program's work either).  Prints what
-- bench/ctops prints: "<N>", then each phase's time and CPU time in ns
-- (bench/benchclock.so).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
require("benchlib").use_tree(here)

local clock = require "benchclock"
local ct = require "conntrack"

local n = tonumber(arg[1] or "")
local premade = arg[2] == "premade"
if not n or n < 1 or n ~= math.floor(n) or (arg[2] ~= nil and not premade) then
	io.stderr:write("usage: opsloop.lua N [premade]\n")
	os.exit(2)
end

-- The flows of bench/ctfill (tcp), made before the timing (a C program has
-- its flows at hand too): sources, destinations, ports.
local S, D, SP, DP = {}, {}, {}, {}
do
	local ports = { 80, 443, 22, 8080, 25, 993 }
	local floor = math.floor
	for i = 0, n - 1 do
		local s = i % 512
		S[i] = s < 256 and ("192.0.2." .. s) or ("198.51.100." .. (s - 256))
		D[i] = "203.0.113." .. floor(i / 512) % 256
		SP[i] = 1024 + floor(i / (512 * 256)) % 64512
		DP[i] = ports[floor(i / 7) % 6 + 1]
	end
end

local create, get, update, delete = ct.create, ct.get, ct.update, ct.delete
local status = { "SEEN_REPLY", "ASSURED" }
local out = { n }

-- One phase: op(i) for every flow, timed; op returns what the call did.
local function phase(name, op)
	local t0, c0 = clock.now(), clock.cpu()
	for i = 0, n - 1 do
		local ok, msg = op(i)
		if not ok then
			error(name .. " of flow " .. i .. ": " .. tostring(msg))
		end
	end
	out[#out + 1] = clock.now() - t0
	out[#out + 1] = clock.cpu() - c0
end

local function tuple(i)
	return { src = S[i], dst = D[i], proto = "tcp", sport = SP[i], dport = DP[i] }
end

if premade then
	local C, T1, T2, U, T3 = {}, {}, {}, {}, {}
	for i = 0, n - 1 do
		C[i] = { src = S[i], dst = D[i], proto = "tcp", sport = SP[i], dport = DP[i],
			timeout = 3600, state = "ESTABLISHED", status = status }
		T1[i], T2[i], U[i], T3[i] = tuple(i), tuple(i), { mark = i }, tuple(i)
	end
	phase("create", function(i) return create(C[i]) end)
	phase("get", function(i) return get(T1[i]) end)
	phase("update", function(i) return update(T2[i], U[i]) end)
	phase("delete", function(i) return delete(T3[i]) end)
else
	phase("create", function(i)
		return create{ src = S[i], dst = D[i], proto = "tcp", sport = SP[i], dport = DP[i],
			timeout = 3600, state = "ESTABLISHED", status = status }
	end)
	phase("get", function(i)
		return get{ src = S[i], dst = D[i], proto = "tcp", sport = SP[i], dport = DP[i] }
	end)
	phase("update", function(i)
		return update({ src = S[i], dst = D[i], proto = "tcp", sport = SP[i], dport = DP[i] }, { mark = i })
	end)
	phase("delete", function(i)
		return delete{ src = S[i], dst = D[i], proto = "tcp", sport = SP[i], dport = DP[i] }
	end)
end

for i = 1, #out do
	out[i] = string.format("%d", out[i])
end
print(table.concat(out, " "))
