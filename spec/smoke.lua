-- A smoke test of the module on every Lua it builds for (5.1, 5.3, 5.4,
-- LuaJIT): plain Lua, no busted.  Run inside tools/netns-run (it fills and
-- flushes the table of the namespace it runs in):
--   LUA_PATH="$PWD/lua/?.lua;;" LUA_CPATH="$PWD/build/5.1/?.so;;" tools/netns-run lua5.1 spec/smoke.lua
-- Prints each failed check and exits non-zero when any failed.

local ct = require "conntrack"

local checks, failed = 0, 0

local function check(ok, what)
	checks = checks + 1
	if not ok then
		failed = failed + 1
		io.stderr:write("FAIL: ", what, "\n")
	end
	return ok
end

local function eq(got, want, what)
	return check(got == want, what .. ": got " .. tostring(got) .. ", want " .. tostring(want))
end

-- f must raise an error whose message holds frag
local function raises(f, frag)
	local ok, msg = pcall(f)
	check(not ok and tostring(msg):find(frag, 1, true) ~= nil,
		"error holding " .. frag .. ", got " .. tostring(ok) .. " " .. tostring(msg))
end

-- Never in the host's namespace.
do
	local p = io.popen("readlink /proc/self/ns/net /proc/1/ns/net")
	local mine, init = p:read("*l"), p:read("*l")
	p:close()
	if mine == nil or mine == init then
		io.stderr:write("smoke.lua: refusing to run in the host's network namespace (use tools/netns-run)\n")
		os.exit(2)
	end
end

local version = (type(jit) == "table" and jit.version) or _VERSION
local E = ct.errno

local h = assert(ct.open())
check(h:flush(), "flush")
eq(h:count(), 0, "count of an empty table")

local tcp = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1000, dport = 80,
	timeout = 100, state = "ESTABLISHED", mark = 7, status = { "ASSURED" } }
local udp6 = { src = "2001:db8::1", dst = "2001:db8::2", proto = "udp", sport = 1001, dport = 53,
	timeout = 100, zone = 3 }
local icmp = { src = "192.0.2.1", dst = "192.0.2.2", proto = "icmp", icmp_type = 8, icmp_id = 1002,
	timeout = 100 }
local nat = { src = "192.0.2.2", dst = "203.0.113.10", proto = "tcp", sport = 1003, dport = 8003,
	reply_src = "198.51.100.2", reply_dst = "192.0.2.2", reply_sport = 9003, reply_dport = 1003,
	timeout = 100 }

-- The tuple of a spec: what get, update and delete take.
local TUPLE = { "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id", "zone" }
local function key(spec)
	local t = {}
	for _, k in ipairs(TUPLE) do t[k] = spec[k] end
	return t
end

-- create, and the kernel's refusal of a duplicate
for _, s in ipairs({ tcp, udp6, icmp, nat }) do
	eq(h:create(s), true, "create " .. s.proto .. " " .. s.src)
end
local ok, msg, errno = h:create(tcp)
eq(ok, nil, "duplicate create")
eq(msg, "create: File exists", "duplicate create message")
eq(errno, E.EEXIST, "duplicate create errno")
eq(h:count(), 4, "count")

-- get and the entry's fields
local e = h:get(key(tcp))
if check(e ~= nil, "get tcp") then
	eq(e.family, "ipv4", "family")
	eq(e.proto, "tcp", "proto")
	eq(e.protonum, 6, "protonum")
	eq(e.state, "ESTABLISHED", "state")
	eq(e.mark, 7, "mark")
	eq(e.orig.src, "192.0.2.1", "orig.src")
	eq(e.orig.sport, 1000, "orig.sport")
	eq(e.reply.src, "192.0.2.2", "reply.src")
	eq(e.reply.dport, 1000, "reply.dport")
	eq(e.status.ASSURED, true, "status.ASSURED")
	eq(e.helper, nil, "absent helper")
	check(e.timeout > 90 and e.timeout <= 100, "timeout")
	check(tostring(e):find("^tcp +6 %d+ ESTABLISHED src=192%.0%.2%.1 dst=192%.0%.2%.2 sport=1000 dport=80 ") ~= nil,
		"tostring: " .. tostring(e))
	local t = e:totable()
	eq(type(t), "table", "totable")
	eq(t.orig.dport, 80, "totable orig.dport")
end
e = h:get(key(icmp))
if check(e ~= nil, "get icmp") then
	eq(e.orig.icmp_type, 8, "icmp_type")
	eq(e.reply.icmp_type, 0, "reply icmp_type")
	eq(e.orig.icmp_id, 1002, "icmp_id")
end
e = h:get(key(nat))
if check(e ~= nil, "get nat") then
	eq(e.reply.src, "198.51.100.2", "nat reply.src")
	eq(e.reply.sport, 9003, "nat reply.sport")
end
e = h:get(key(udp6))
if check(e ~= nil, "get udp6 in its zone") then
	eq(e.family, "ipv6", "v6 family")
	eq(e.zone, 3, "zone")
	eq(e.orig.dst, "2001:db8::2", "v6 dst")
end
ok, msg, errno = h:get({ src = "192.0.2.9", dst = "192.0.2.2", proto = "tcp", sport = 1, dport = 2 })
eq(ok, nil, "get missing")
eq(msg, "get: No such file or directory", "get missing message")
eq(errno, E.ENOENT, "get missing errno")

-- dump, filters, break, list
local n = 0
for x in h:dump() do
	n = n + 1
	check(type(tostring(x)) == "string", "dump entry text")
end
eq(n, 4, "dump count")
n = 0
for x in h:dump({ family = "ipv6" }) do n = n + 1 eq(x.family, "ipv6", "family filter") end
eq(n, 1, "ipv6 dump count")
n = 0
for _ in h:dump({ mark = 7 }) do n = n + 1 end
eq(n, 1, "mark filter")
n = 0
for _ in h:dump({ zone = 3 }) do n = n + 1 end
eq(n, 1, "zone filter")
for _ = 1, 50 do
	for _ in h:dump() do break end -- luacheck: ignore 512 (abandoned dumps)
end
local f, s = h:dump()
check(f(s) ~= nil, "first entry of an iterator called by hand")
s:close()
eq(#h:list(), 4, "list")

-- update with a mask, as conntrack -U -m V/M: (old & ~M) ^ V
eq(h:update(key(tcp), { mark = 0x30, mark_mask = 0xf0 }), true, "update mark")
eq(h:get(key(tcp)).mark, 0x37, "masked mark")
eq(h:update(key(tcp), { timeout = 500 }), true, "update timeout")
check(h:get(key(tcp)).timeout > 400, "updated timeout")

-- count, max, stats
check(type(h:max()) == "number", "max")
local st = h:stats()
check(type(st) == "table" and type(st.total) == "table" and type(st[1]) == "table", "stats")
check(st[1] and type(st[1].cpu) == "number", "stats cpu")

-- batch
local items = {}
for i = 1, 1000 do
	items[i] = { src = "198.51.100.1", dst = "198.51.100.2", proto = "udp", sport = 20000 + i, dport = 53, timeout = 60 }
end
local bok, missing, fails = h:batch("create", items)
eq(bok, 1000, "batch create")
eq(missing, 0, "batch create missing")
eq(#fails, 0, "batch create failures")
eq(h:count(), 1004, "count after batch")
local keys = {}
for i, it in ipairs(items) do keys[i] = key(it) end
bok, missing = h:batch("delete", keys)
eq(bok, 1000, "batch delete")
eq(missing, 0, "batch delete missing")

-- delete
eq(h:delete(key(tcp)), true, "delete")
ok, msg, errno = h:delete(key(tcp))
eq(ok, nil, "delete again")
eq(errno, E.ENOENT, "delete again errno")
eq(msg, "delete: No such file or directory", "delete again message")

-- programmer errors raise naming function and field
-- h:create of a good spec with one field changed
local function create_with(k, v)
	return function()
		local t = { src = "192.0.2.1", dst = "192.0.2.2", proto = "tcp", sport = 1, dport = 2, timeout = 1 }
		t[k] = v
		h:create(t)
	end
end
raises(create_with("src", "1.2.3"), "create: bad argument 'src' (malformed address '1.2.3')")
raises(create_with("dst", "::1"), "create: bad argument 'dst' (IPv4 and IPv6 addresses mixed")
raises(create_with("sport", 70000), "create: bad argument 'sport' (integer 0..65535 expected, got 70000)")
raises(create_with("timeout", -1), "create: bad argument 'timeout'")
raises(create_with("proto", "xyz"), "create: bad argument 'proto' (unknown protocol 'xyz')")
raises(function() h:get("x") end, "get: bad argument 'tuple'")

-- module-level functions on the default handle
eq(ct.count(), 3, "ct.count")
eq(ct.flush(), true, "ct.flush")
eq(ct.count(), 0, "ct.count after flush")

-- close
eq(h:close(), true, "close")
eq(h:close(), true, "close again")
raises(function() h:count() end, "count: attempt to use a closed handle")
for _ = 1, 100 do ct.open() end
collectgarbage()

io.write(("smoke: %s: %d checks, %d failed\n"):format(version, checks, failed))
os.exit(failed == 0 and 0 or 1, true)
