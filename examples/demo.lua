-- lua-conntrack demo (`make demo`): builds a private client - router -
-- server network with NAT on the router, sends a little traffic through it,
-- and prints the router's connection tracking table through the module.
-- The namespaces are removed at the end, whatever happens.
--
-- Run by hand (as root, after `make`; any of lua5.1, lua5.3, lua5.4, luajit
-- with its build/ directory):
--   LUA_PATH="$PWD/lua/?.lua;$PWD/tools/?.lua;;" LUA_CPATH="$PWD/build/5.4/?.so;;" \
--     tools/netns-run lua5.4 examples/demo.lua
-- The test hosts come from tools/hosts.lua (namespaces, veth pairs, nft NAT,
-- socat traffic); the module never touches the host's own table.

local ct = require "conntrack"
local hosts = require "hosts"

local P = hosts.port

-- "addr:port", with brackets for IPv6; ICMP shows its type and id.
local function endpoint(addr, port)
	if addr:find(":", 1, true) then addr = "[" .. addr .. "]" end
	return port and (addr .. ":" .. port) or addr
end

local function side(t, src)
	if src then return endpoint(t.src, t.sport or t.icmp_id) end
	return endpoint(t.dst, t.dport)
end

local function flow(t)
	if t.icmp_type then
		return ("%s -> %s type %d id %d"):format(t.src, t.dst, t.icmp_type, t.icmp_id or 0)
	end
	return side(t, true) .. " -> " .. side(t, false)
end

-- What NAT did to a flow: ct.nat reads it off the two tuples (whole IPv6
-- addresses, port-only translations too).
local function nat(e)
	local kind = ct.nat.classify(e)
	if kind == "none" then
		return "-"
	end
	local d = ct.nat.describe(e)
	local parts = {}
	if d.snat then
		parts[#parts + 1] = "SNAT as " .. endpoint(d.snat.addr or e.orig.src, d.snat.port or e.orig.sport)
	end
	if d.dnat then
		parts[#parts + 1] = "DNAT to " .. endpoint(d.dnat.addr or e.orig.dst, d.dnat.port or e.orig.dport)
	end
	return table.concat(parts, ", ")
end

local function human(n)
	if n == nil then return "-" end
	if n >= 10 * 1024 * 1024 then return ("%.0fM"):format(n / 1048576) end
	if n >= 10 * 1024 then return ("%.0fK"):format(n / 1024) end
	return tostring(n)
end

local function flags(e)
	local f = {}
	if e.status.ASSURED then f[#f + 1] = "assured" end
	if not e.status.SEEN_REPLY then f[#f + 1] = "unreplied" end
	if e.zone then f[#f + 1] = "zone " .. e.zone end
	if e.mark and e.mark ~= 0 then f[#f + 1] = ("mark %#x"):format(e.mark) end
	return table.concat(f, " ")
end

-- Prints rows (arrays of strings) in columns under a header.
local function print_table(header, rows)
	local w = {}
	for _, row in ipairs({ header, (table.unpack or unpack)(rows) }) do
		for i, cell in ipairs(row) do
			w[i] = math.max(w[i] or 0, #cell)
		end
	end
	local function line(row)
		local out = {}
		for i, cell in ipairs(row) do
			out[i] = i == #row and cell or cell .. (" "):rep(w[i] - #cell)
		end
		print("  " .. table.concat(out, "  "))
	end
	line(header)
	local rule = {}
	for i = 1, #header do rule[i] = ("-"):rep(w[i]) end
	line(rule)
	for _, row in ipairs(rows) do line(row) end
end

local function run(topo)
	local A = topo.addr
	print(("Test hosts: client %s / %s -- router (NAT) -- server %s / %s")
		:format(A.client, A.client6, A.server, A.server6))
	print(("NAT on the router: DNAT %s:%d -> %s:%d, SNAT to %s for port %d, masquerade for port %d, "
		.. "redirect of port %d to the router's %d\n")
		:format(A.public, P.dnat, A.server, P.dnat_to, A.snat, P.snat, P.masquerade, P.redirect, P.redirect_to))

	-- Listen to the router's events before any traffic: the kernel reports
	-- events only for flows that begin while someone listens.
	local sub = assert(ct.subscribe{ netns = topo.ns.router })

	-- A little traffic: two held TCP connections, a few UDP exchanges, one
	-- short TCP request that has already closed.
	topo:serve()
	local held = {
		topo:tcp_connect("client", A.public, P.dnat, { hold = 15 }),
		topo:tcp_connect("client", A.server6, P.plain, { hold = 15 }),
	}
	assert(topo:udp_send("client", A.server, P.snat, "hello", 3))
	assert(topo:udp_send("client", A.server6, P.snat, "hello6", 2))
	assert(topo:udp_send("client", A.server, P.plain, "plain"))
	assert(topo:tcp_request("client", A.server, P.masquerade, "GET / HTTP/1.0\r\n\r\n"))
	assert(topo:tcp_request("client", A.server, P.redirect, "to the router"))

	-- The live events those flows made, as `conntrack -E` prints them.
	local evs = sub:read()
	sub:close()
	print(("Live events on the router while the traffic ran (%d; the first 8, as conntrack -E prints them):")
		:format(#evs))
	for i = 1, math.min(8, #evs) do
		print("  " .. tostring(evs[i]))
	end
	print()

	-- The router's table, through the module.
	local h = assert(ct.open{ netns = topo.ns.router })
	local entries = assert(h:list())
	table.sort(entries, function(a, b)
		if a.proto ~= b.proto then return a.proto > b.proto end
		if a.family ~= b.family then return a.family < b.family end
		return (a.orig.sport or 0) < (b.orig.sport or 0)
	end)
	local now = os.time()
	local rows = {}
	for _, e in ipairs(entries) do
		rows[#rows + 1] = {
			e.proto .. (e.family == "ipv6" and "6" or ""),
			e.state or "",
			flow(e.orig),
			flow(e.reply),
			nat(e),
			("%s/%s"):format(human(e.orig.packets), human(e.reply.packets)),
			("%s/%s"):format(human(e.orig.bytes), human(e.reply.bytes)),
			e.start and ("%ds"):format(math.max(0, now - math.floor(e.start / 1e9))) or "-",
			("%ds"):format(e.timeout or 0),
			flags(e),
		}
	end
	print(("Connection tracking table of the router (%d entries, limit %s):\n")
		:format(h:count(), tostring(h:max())))
	print_table({ "PROTO", "STATE", "ORIGINAL", "REPLY", "NAT", "PACKETS", "BYTES", "AGE", "EXPIRES", "FLAGS" }, rows)

	-- The same entries narrowed down by the kernel, and one as the CLI prints it.
	local n6, assured = 0, 0
	for _ in h:dump{ family = "ipv6" } do n6 = n6 + 1 end
	for _ in h:dump{ status = { "ASSURED" } } do assured = assured + 1 end
	print(("\n%d of them IPv6, %d assured.  One entry as `conntrack -L` prints it (tostring(e)):")
		:format(n6, assured))
	for _, e in ipairs(entries) do
		if e.status.DST_NAT then print("  " .. tostring(e)) break end
	end

	-- A filter: the kernel selects TCP, Lua keeps the source-NATed ones.
	local f = ct.filter.proto "tcp" * ct.filter.nat "snat"
	print("\nSource-NATed TCP flows, with a filter (" .. tostring(f) .. "):")
	for e in h:dump(f) do
		print("  " .. ct.nat.tostring(e))
	end
	print("  what runs where:\n    " .. f:explain():gsub("\n", "\n    "))
	local stats, names = h:stats(), {}
	for k in pairs(stats.total) do names[#names + 1] = k end
	table.sort(names)
	for i, k in ipairs(names) do names[i] = k .. "=" .. stats.total[k] end
	print(("\nKernel statistics, summed over %d CPUs:\n  %s"):format(#stats, table.concat(names, " ")))

	h:close()
	for _, c in ipairs(held) do c:close() end
end

local ok, err = pcall(hosts.with, { nat = { snat = true, masquerade = true, dnat = true, redirect = true } }, run)
local clean = hosts.cleanup_all()
if not ok then
	io.stderr:write("demo failed: ", tostring(err), "\n")
	os.exit(1)
end
print(clean and "\nNamespaces removed." or "\nWARNING: some namespaces were left behind.")
