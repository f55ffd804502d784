--- tools/exercise.lua: every function and method of lua-conntrack called at
-- least once on a real table, with real events and expectations, then
-- everything dropped and collected: the script `make check-valgrind` runs
-- under valgrind to prove that the module loses no memory.  Plain Lua
-- (5.1, 5.3, 5.4, LuaJIT); as root, inside a private network namespace
-- (it fills and flushes the table of the namespace it runs in), with lua/
-- and tools/ on LUA_PATH and the module on LUA_CPATH (as the Makefile's
-- TEST_ENV sets them):
--   tools/netns-run lua5.4 tools/exercise.lua
-- Prints one line per area and "exercise: N checks, M failed"; exits 1 when a
-- result was not what the module documents (the checks are light: this is
-- a workout for valgrind, the specs prove the results).

local ct = require "conntrack"
local core = require "conntrack.core"
local addr = require "conntrack.addr"
local F, NAT, FMT = ct.filter, ct.nat, ct.format

require("hosts").refuse_host_namespace("exercise.lua")

local checks, failed = 0, 0
local function check(ok, what)
	checks = checks + 1
	if not ok then
		failed = failed + 1
		io.stderr:write("exercise: FAIL: ", what, "\n")
	end
	return ok
end
-- f(...) must raise a message naming fname
local function raises(fname, f, ...)
	local ok, err = pcall(f, ...)
	check(not ok and tostring(err):find(fname .. ": ", 1, true) ~= nil,
		fname .. " should raise, got " .. tostring(ok) .. " " .. tostring(err))
end
local function area(name)
	io.write("exercise: ", name, "\n")
end

local h = assert(ct.open())
assert(h:flush())
-- With nf_conntrack_events = 2 (the default) a flow reports events, and its
-- expectations too, only if some subscription was open when it began: this
-- one is, for the masters below.
local early = assert(h:subscribe { types = "destroy" })

area("handles")
check(ct.type(h) == "handle" and not h.closed, "type of a handle")
check(type(h:getfd()) == "number", "getfd")
check(tostring(h):find("conntrack.handle", 1, true), "tostring(handle)")
check(ct.default() == ct.default(), "default handle")
local own = os.getenv("LCT_NETNS")
if own then
	local hn = assert(ct.open { netns = own, rcvbuf = 65536 })
	check(hn:count() == 0, "handle by namespace name")
	hn:close()
end
check(select(3, ct.open { netns = "no-such-namespace" }) == ct.errno.ENOENT, "open an absent namespace")
raises("open", ct.open, { bogus = 1 })
check(ct.version and ct.errno.EEXIST and ct.status_bits.ASSURED and ct.names.protocols.tcp == 6, "constants")

area("single operations")
local tcp = { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1000, dport = 80 }
local specs = {
	{ src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1000, dport = 80, timeout = 300,
		state = "ESTABLISHED", status = { "ASSURED", "SEEN_REPLY" }, mark = 7 },
	{ src = "2001:db8::1", dst = "2001:db8:1::2", proto = "udp", sport = 1001, dport = 53, timeout = 300, zone = 3 },
	{ src = "192.0.2.1", dst = "198.51.100.2", proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 7,
		timeout = 300 },
	{ src = "192.0.2.2", dst = "203.0.113.10", proto = "tcp", sport = 1003, dport = 8003, timeout = 300,
		state = "SYN_SENT", dnat = "198.51.100.9:9003" },
	{ src = "192.0.2.3", dst = "198.51.100.2", proto = "udp", sport = 1004, dport = 123, timeout = 300,
		snat = { addr = "203.0.113.5", port = 5000 } },
	{ src = "192.0.2.4", dst = "198.51.100.2", proto = "sctp", sport = 1005, dport = 9, timeout = 300,
		state = "ESTABLISHED", orig_vtag = 11, reply_vtag = 12 },
	{ src = "192.0.2.5", dst = "198.51.100.2", proto = "dccp", sport = 1006, dport = 9, timeout = 300,
		state = "OPEN", role = "client" },
	{ src = "192.0.2.6", dst = "198.51.100.2", proto = "gre", srckey = 1, dstkey = 2, timeout = 300 },
	{ src = "192.0.2.7", dst = "198.51.100.2", proto = "udplite", sport = 1, dport = 2, timeout = 300,
		secmark = 0 },
	-- masters for expectations (the ftp helper keeps one expectation per master)
	{ src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1100, dport = 21, timeout = 300,
		state = "ESTABLISHED", status = { "ASSURED", "SEEN_REPLY" }, helper = "ftp" },
	{ src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1101, dport = 21, timeout = 300,
		state = "ESTABLISHED", status = { "ASSURED", "SEEN_REPLY" }, helper = "ftp" },
}
for i, s in ipairs(specs) do
	check(h:create(s) == true, "create " .. i)
end
check(select(3, h:create(specs[1])) == ct.errno.EEXIST, "create twice")
check(h:add(specs[1]) == false, "add an existing flow")
check(ct.add { src = "192.0.2.9", dst = "198.51.100.2", proto = "udp", sport = 9, dport = 9, timeout = 30 } == true,
	"ct.add")
local e = h:get(tcp)
check(ct.type(e) == "entry", "get")
check(h:update(tcp, { mark = 0x30, mark_mask = 0xf0, timeout = 200, status = { "ASSURED" } }), "update")
check(h:update(e, { timeout = 250 }), "update by entry")
-- labels need the connlabel extension, which only a ruleset using labels turns on
check(select(3, h:update(e, { label_add = { 9 }, label_del = { 1 } })) == ct.errno.ENOSPC, "labels without connlabel")
check(select(3, h:get { src = "192.0.2.99", dst = "198.51.100.2", proto = "tcp", sport = 1, dport = 2 })
	== ct.errno.ENOENT, "get an absent flow")
check(h:count() >= #specs, "count")
check(type(h:max()) == "number", "max")
local st = h:stats()
check(type(st.total) == "table" and type(st[1]) == "table", "stats")
check(ct.count() == h:count(), "ct.count")
raises("get", h.get, h, "x")
raises("create", h.create, h, { src = "1.2.3", dst = "198.51.100.2", proto = "tcp", sport = 1, dport = 2,
	timeout = 1 })
raises("create", h.create, h, { src = ("\255"):rep(20), dst = "198.51.100.2", proto = "tcp", timeout = 1 })

area("entries and tuples")
local fields = { "family", "proto", "protonum", "orig", "reply", "state", "timeout", "mark", "secmark", "use",
	"id", "zone", "status", "labels", "start", "stop", "helper", "secctx", "type", "orig_vtag", "reply_vtag",
	"role", "tcp_flags_orig", "tcp_flags_reply", "tcp_wscale_orig", "tcp_wscale_reply", "time", "nosuch" }
local tfields = { "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id", "packets", "bytes",
	"zone", "protonum", "srckey", "dstkey", "nosuch" }
local all = assert(h:list())
check(#all >= #specs, "list")
for _, x in ipairs(all) do
	for _, f in ipairs(fields) do
		local _ = x[f]
	end
	for _, dir in ipairs { "orig", "reply" } do
		local t = x[dir]
		if t then
			for _, f in ipairs(tfields) do
				local _ = t[f]
			end
			check(type(t:totable()) == "table" and type(tostring(t)) == "string", "tuple methods")
			check(ct.type(t) == "tuple", "type of a tuple")
		end
	end
	check(type(x:totable()) == "table", "totable")
	check(type(tostring(x)) == "string", "tostring(entry)")
	for _, o in ipairs { "extended", "id", "ktimestamp", "labels", "xml", "extended,id,labels", "library" } do
		check(type(x:format(o)) == "string", "format " .. o)
	end
	check(#x:raw() > 0, "raw")
	check(type(x:spec()) == "table", "spec")
	check(x == x and x ~= all[1] or x == all[1], "==")
end
raises("format", e.format, e, "bogus")
local synthetic = ct.entry { src = "192.0.2.1", dst = "198.51.100.2", proto = "udp", sport = 1, dport = 2,
	type = "new", id = 5, use = 1, orig_packets = 3, orig_bytes = 300, reply_packets = 1, reply_bytes = 100,
	mark = 1, status = { "ASSURED" } }
check(tostring(synthetic):find("NEW", 1, true) ~= nil, "ct.entry")
raises("entry", ct.entry, { src = 1 })

area("dumps")
local n = 0
for x in h:dump() do
	n = n + 1
	check(ct.type(x) == "entry", "dump entry")
end
check(n == #all, "dump count")
local it, ds = h:dump(nil, { unique = true })
check(ct.type(ds) == "dump", "dump state")
local first = it(ds)
check(first ~= nil and ds.count == 1 and ds.duplicates == 0 and ds.interrupted == false, "dump state fields")
local nx = ds:next()
check(nx ~= nil, "dump state next")
ds:close()
check(ds.closed and ct.type(ds) == "closed dump", "closed dump")
for _ = 1, 20 do
	local di, dstate = h:dump()	-- abandoned after one entry: the collector closes them
	check(di(dstate) ~= nil, "first entry of an abandoned dump")
end
h:dump()	-- dropped at once
for _, how in ipairs { { zero = true }, { table = "dying" }, { table = "unconfirmed" }, { pushdown = false } } do
	check(h:list(nil, how) ~= nil, "list with a how")
end
check(#h:list(F.proto "tcp") >= 3, "list by protocol")
check(#h:list { src = "192.0.2.0/24", dport = 80 } == 1, "list by a table")
check(#h:list(function(x) return x.mark == 0x37 end) == 1, "list by a function")
local f = F.all(F.family "ipv4", F.proto("tcp", "udp"), F.src "192.0.2.0/24", F.dst "198.51.100.0/24",
	F.sport "1000-1100", F.dport(80, 21, 123), F.state "ESTABLISHED", F.status "ASSURED", F.mark(0x37, 0xff),
	F.zone(0), F.timeout(1, 400))
n = 0
for _ in h:dump(f + F.nat "any" + F.where(function() return false end), { unique = true }) do
	n = n + 1
end
check(n == 3, "dump with every kind of filter: " .. n)

area("filters")
local blocks = {
	F.family "ipv6", F.proto "icmp", F.src "2001:db8::/32", F.dst "198.51.100.2", F.reply_src "198.51.100.9",
	F.reply_dst "192.0.2.2", F.sport(1000), F.dport { 50, 60 }, F.reply_sport(9003), F.reply_dport "1-2000",
	F.icmp_type(8), F.icmp_code(0), F.icmp_id(7), F.secmark(0), F.zone(3), F.orig_zone(0), F.reply_zone(0),
	F.state("ESTABLISHED", "SYN_SENT"), F.status("ASSURED", "SEEN_REPLY"), F.status(4, 4), F.mark "7/0xff",
	F.marks { { 7, 255 }, F.mark(1) }, F.label(5), F.label "somename", F.helper "ftp", F.nat "none",
	F.nat("dnat", "198.51.100.9:9003"), F.nat { "snat", "203.0.113.5" }, F.timeout "1-1000",
	F.where(function(x) return x.proto == "tcp" end, "tcp"), F.always, F.never, F.none(F.proto "gre"),
	F.negate(F.proto "gre"), -F.proto "tcp", F.proto "tcp" - F.dport(80), F { proto = "udp", dport = 53 },
	F.coerce { mark = 7, mark_mask = 255, status = "ASSURED", status_mask = "ASSURED", labels = { 5 } },
}
for i, b in ipairs(blocks) do
	local text, parts = b:explain()
	check(type(text) == "string" and type(parts) == "table", "explain " .. i)
	local p = b:plan("dump")
	if p.matcher then
		check(ct.type(p.matcher) == "matcher", "matcher")
		check(type(p.matcher:kernel()) == "table" and type(tostring(p.matcher)) == "string", "matcher methods")
		check(type(p.matcher:match(e)) == "boolean", "matcher:match")
	end
	local c = b:compile()
	for _, x in ipairs(all) do
		check(b:match(x) == c(x) and b(x) == c(x), "match, compile, call " .. i)
	end
	check(type(b:description()) == "table" or b:description() == nil, "description")
	check(type(tostring(b)) == "string", "tostring(filter)")
	check(#h:list(b) >= 0, "list by block " .. i)
end
check(F.is(F.always) and not F.is({}) and F.is_field("src") and not F.is_field("bogus"), "is, is_field")
check(F.band(12, 10) == 8 and F.bor(12, 10) == 14 and F.bxor(12, 10) == 6, "band, bor, bxor")
check(ct.type(F.proto "tcp") == "filter", "type of a filter")
raises("filter.src", F.src, 42)
raises("dump", h.dump, h, { mark = -1 })

area("nat and formats")
for _, x in ipairs(all) do
	check(type(NAT.classify(x)) == "string" and type(NAT.describe(x)) == "table"
		and type(NAT.tostring(x)) == "string" and type(NAT.from_status(x)) == "string", "nat")
	local t = x:totable()
	check(NAT.classify(t) == NAT.classify(x), "nat of a table")
	check(FMT.default(x) == tostring(x) and type(FMT.extended(x)) == "string", "default, extended")
	check(type(FMT.save(x)) == "string" and type(FMT.save(x, { mark = true, command = "-D" })) == "string", "save")
	check(type(FMT.table(x)) == "table", "format.table")
	local okj, j = pcall(FMT.json, x, { indent = true })
	check(not okj and tostring(j):find("dkjson", 1, true) or type(j) == "string", "json")
	for _, name in ipairs { "default", "save", "extended", "id,xml" } do
		check(type(FMT.format(x, name)) == "string", "format.format " .. name)
	end
end
check(FMT.xml_header():find("<conntrack>", 1, true) and FMT.xml_footer() == "</conntrack>", "xml header and footer")
local text = {}
for _, x in ipairs(all) do
	-- (Linux 6.16 dropped DCCP tracking: such a flow keeps no ports, and
	-- its line cannot be read back)
	if x.proto ~= "dccp" then
		text[#text + 1] = FMT.save(x)
	end
end
local parsed, perrs, plines, pops = FMT.parse_save(table.concat(text, "\n") .. "\n-A -t bogus\n")
check(#parsed >= 1 and #perrs == 1 and #plines == #parsed and #pops == #parsed,
	"parse_save: " .. #perrs .. " errors: " .. tostring(perrs[1] and perrs[1].message))

area("addresses")
check(addr.parse("192.0.2.1") == "ipv4", "addr.parse")
check(addr.canonical("2001:DB8::1") == "2001:db8::1", "addr.canonical")
local m = addr.matcher("192.0.2.0/24")
check(m("192.0.2.77") and not m("192.0.3.1"), "addr.matcher")
local sa, sp = addr.split_hostport("[2001:db8::1]:53")
check(sa == "2001:db8::1" and sp == 53, "addr.split_hostport")
check(core.ntop(select(2, core.pton("192.0.2.1"))) == "192.0.2.1" and core.cidr("192.0.2.0/24") == "ipv4"
	and core.proto("tcp") == 6, "core vocabulary")

area("batches and bulk operations")
local many, keys = {}, {}
for i = 1, 300 do
	many[i] = { src = "203.0.113." .. (i % 250 + 1), dst = "198.51.100.2", proto = "udp", sport = 2000 + i,
		dport = 53, timeout = 300 }
	keys[i] = { src = many[i].src, dst = many[i].dst, proto = "udp", sport = many[i].sport, dport = 53 }
end
local ok, missing, fails = h:batch("create", many)
check(ok == 300 and missing == 0 and #fails == 0, "batch create")
ok, missing = h:batch("add", many)
check(ok == 0 and missing == 300, "batch add of existing flows")
ok = h:batch("update", keys, { mark = 3 })
check(ok == 300, "batch update")
local bad = { keys[1], { src = "1.2.3" } }
ok, missing, fails = h:batch("delete", bad)
check(ok == 1 and missing == 0 and #fails == 1, "batch delete with an unreadable item")
ok = h:batch("delete", h:list(F.src "203.0.113.0/24" * F.sport(2000, 2001, 2002)))
check(ok >= 1, "batch delete of entries")
raises("batch", h.batch, h, "bogus", {})
local upd, _, ufails, unchanged = h:update_where(F.src "203.0.113.0/24", { mark = 4 }, { batch = 50 })
check(upd > 0 and #ufails == 0 and unchanged == 0, "update_where")
upd, _, _, unchanged = h:update_where(F.src "203.0.113.0/24", { mark = 4 })
check(upd == 0 and unchanged > 0, "update_where of unchanged flows")
local del = h:delete_where(F.src "203.0.113.0/24" * F.sport "2000-2100")	-- kernel and C: purge
check(del > 0, "delete_where by the kernel and C")
del = h:delete_where(F.src "203.0.113.0/24" * F.where(function(x) return x.orig.sport % 2 == 0 end),
	{ batch = 10 })
check(del > 0, "delete_where with a Lua part")
local texts = {}
local function keep_text(t) texts[#texts + 1] = t end
del = h:delete_where(F.src "203.0.113.0/24" * F.sport "2101-2150", { lines = keep_text, batch = 7 })
local nlines = select(2, table.concat(texts):gsub("\n", ""))
check(del > 0 and nlines == del, "delete_where with lines: " .. del .. " deleted, " .. nlines .. " lines")
texts = {}
del = h:delete_where(F.src "203.0.113.0/24" * F.where(function(x) return x.orig.sport % 3 == 0 end),
	{ lines = keep_text, format = "xml", batch = 5 })
check(del > 0 and table.concat(texts):find("<flow>", 1, true) ~= nil, "delete_where with lines, xml, a Lua part")
local done, existing, lfails = h:load(many, { batch = 100, mode = "add" })
check(done + existing == 300 and #lfails == 0, "load specs")
local save = {}
for i = 1, 50 do
	save[i] = ("-A -t 100 -s 192.0.2.%d -d 198.51.100.3 -p udp --sport 3000 --dport 53"):format(i)
end
save[#save + 1] = "-X bogus"
done, existing, lfails = h:load(table.concat(save, "\n"), { mode = "add" })
check(done == 50 and existing == 0 and #lfails == 1, "load save text")
local plain, pline = FMT.save_plain(table.concat(save, "\n"))
check(plain == false and pline == 51, "save_plain: the first line conntrack reads otherwise")
plain, pline = FMT.save_plain(table.concat(save, "\n", 1, 50))
check(plain == true and pline == 50, "save_plain of plain creations")
check(h:flush(F.mark(3)) == true, "flush by mark (the kernel's filtered flush)")
check(h:flush(F.src "192.0.2.0/28" * F.dport(53) * F.sport(3000)) == true, "flush by a filter")

area("events")
local sub = assert(h:subscribe { types = { "new", "destroy" }, rcvbuf = 1048576 })
local fsub = assert(ct.subscribe { filter = F.proto "udp" * F.where(function(x) return x.orig.sport >= 4000 end),
	kernel_filter = { proto = { "udp" }, src = { "192.0.2.0/24" }, mark = { value = 0, mask = 0xff } } })
check(ct.type(sub) == "subscription" and type(sub:getfd()) == "number" and sub:pollfd() == sub:getfd()
	and sub:events() == "r" and sub:timeout() == nil, "subscription methods")
check(type(sub.rcvbuf) == "number" and sub.overflows == 0 and sub.lost == 0 and sub.closed == false
	and type(fsub.kernel_filtered) == "boolean", "subscription fields")
check(tostring(sub):find("subscription", 1, true) ~= nil, "tostring(sub)")
for i = 1, 20 do
	h:create { src = "192.0.2.10", dst = "198.51.100.4", proto = "udp", sport = 4000 + i, dport = 53, timeout = 30 }
end
for i = 1, 20 do
	h:delete { src = "192.0.2.10", dst = "198.51.100.4", proto = "udp", sport = 4000 + i, dport = 53 }
end
local got = 0
while got < 40 do
	local ev = sub:next(2)
	if not check(ev ~= nil, "an event within 2 s") then
		break
	end
	got = got + 1
	check(ev.type == "new" or ev.type == "destroy", "event type")
	check(type(ev.time) == "number" and type(tostring(ev)) == "string", "event fields")
end
check(sub.received >= 40, "received")
check(sub:wait(0) == false, "wait with nothing queued")
local fr = fsub:read()
check(#fr == 40, "filtered subscription read: " .. #fr)
check(#fsub:read(5) == 0, "read of nothing")
sub:close()
check(sub.closed and ct.type(sub) == "closed subscription", "closed subscription")
raises("next", sub.next, sub, 0)
fsub = nil	-- luacheck: ignore (the collector closes it)
local evs = 0
local iter, isub = ct.events { timeout = 0.2, types = "new" }
h:create { src = "192.0.2.11", dst = "198.51.100.4", proto = "udp", sport = 5000, dport = 53, timeout = 30 }
for ev in iter, isub do
	evs = evs + 1
	check(ev.type == "new", "ct.events event")
end
check(evs == 1, "ct.events: " .. evs)
local closing = assert(h:subscribe { filter = function() error("stop here") end })
h:create { src = "192.0.2.11", dst = "198.51.100.4", proto = "udp", sport = 5001, dport = 53, timeout = 30 }
check(not pcall(closing.next, closing, 1), "a filter that raises")
local closer
closer = assert(h:subscribe { filter = function() closer:close() return true end })
h:create { src = "192.0.2.11", dst = "198.51.100.4", proto = "udp", sport = 5002, dport = 53, timeout = 30 }
local cok, cerr = pcall(closer.read, closer)
check(not cok and tostring(cerr):find("closed subscription", 1, true), "a filter that closes its subscription")

area("expectations")
local xs = assert(h:subscribe { table = "expect" })
local xspec = { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1100, dport = 21,
	tuple_src = "192.0.2.1", tuple_dst = "198.51.100.2", tuple_sport = 0, tuple_dport = 40000,
	mask_src = "255.255.255.255", mask_dst = "255.255.255.255", mask_sport = 0, mask_dport = 65535,
	timeout = 200 }
check(h:expect_create(xspec) == true, "expect_create")
local xspec2 = {}
for k, v in pairs(xspec) do
	xspec2[k] = v
end
xspec2.sport, xspec2.tuple_dport, xspec2.flags, xspec2.helper = 1101, 40001, { "USERSPACE" }, "ftp"
check(h:expect_create(xspec2) == true, "expect_create with flags")
local xl = assert(h:list(nil, { table = "expect" }))
check(#xl == 2, "list expectations")
local xfields = { "family", "proto", "protonum", "master", "tuple", "mask", "timeout", "id", "helper", "zone",
	"flags", "class", "nat_dir", "nat", "fn", "type", "time", "nosuch" }
for _, x in ipairs(xl) do
	for _, k in ipairs(xfields) do
		local _ = x[k]
	end
	check(ct.type(x) == "expectation" and type(x:totable()) == "table" and #x:raw() > 0
		and type(tostring(x)) == "string" and x == x and x:format("xml"):sub(1, 6) == "<flow>",
		"expectation methods")
end
for x in h:dump(nil, { table = "expect" }) do
	check(ct.type(x.master) == "tuple", "expectation master")
end
local xk = { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 0, dport = 40000 }
check(ct.type(h:expect_get(xk)) == "expectation", "expect_get")
check(ct.type(h:expect_get(xl[1])) == "expectation", "expect_get by object")
check(h:expect_count() == 2, "expect_count")
check(type(h:expect_stats().total) == "table", "expect_stats")
check(h:expect_delete(xk) == true, "expect_delete")
check(select(3, h:expect_delete(xk)) == ct.errno.ENOENT, "expect_delete again")
check(h:expect_flush { family = "ipv4", helper = "ftp" } == true, "expect_flush")
check(h:expect_flush() == true, "expect_flush all")
local xev = xs:read()
check(#xev >= 2, "expectation events: " .. #xev)
xs:close()

area("closing")
local h2 = assert(ct.open())
local dit, dst2 = h2:dump()
h2:close()
check(h2.closed and ct.type(h2) == "closed handle" and h2:close() == true, "closed handle")
raises("count", h2.count, h2)
raises("dump", h2.dump, h2)
check(dit(dst2) ~= nil, "a dump outlives its handle's close")
dst2:close()
local co = coroutine.wrap(function()
	for x in h:dump() do
		coroutine.yield(x)
	end
end)
check(ct.type(co()) == "entry", "a dump in a coroutine")
co = nil	-- luacheck: ignore (abandoned in the middle of its dump)
for _ = 1, 50 do
	ct.open()	-- dropped handles
end
ct.default():close()
check(ct.count() >= 0, "the default handle reopens")
check(h:flush() == true, "flush")
check(h:expect_flush() == true, "expect_flush at the end")
early:close()
h:close()
collectgarbage()
collectgarbage()

io.write(("exercise: %s: %d checks, %d failed\n"):format((type(jit) == "table" and jit.version) or _VERSION,
	checks, failed))
os.exit(failed == 0 and 0 or 1, true)
