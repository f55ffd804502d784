#!/usr/bin/env lua
--[[ exporter.lua: Prometheus metrics of conntrack tables, served over HTTP.

  exporter.lua --listen HOST:PORT [--netns NS]... [--top N] [--top-by dst|src]
               [--rate-window S] [--once]

  tools/netns-run lua5.4 examples/exporter.lua --listen 127.0.0.1:9447
  lua5.4 examples/exporter.lua --listen [::1]:9447 --netns router --netns edge

GET /metrics answers in the Prometheus text format (version 0.0.4).  With
--netns (repeatable: a name under /run/netns or a path like /proc/PID/ns/net)
one exporter serves several namespaces, each sample labelled netns="NS";
without it, the namespace the exporter runs in, labelled netns="".  --once
prints one scrape on stdout and exits (no event metrics: nothing was watched).

Metrics (every sample also has the label netns):
  conntrack_up                          1 when the table could be read
  conntrack_entries                     flows in the table (conntrack -C)
  conntrack_entries_limit               nf_conntrack_max (global: the same in every namespace)
  conntrack_stat_<counter>_total{cpu}   every per-CPU counter the kernel sends (conntrack -S)
  conntrack_flows{family,proto,state}   flows by family, protocol and state (state "" when none)
  conntrack_nat_flows{kind}             flows by NAT kind: none, snat, dnat, both (ct.nat.classify)
  conntrack_expectations                expectations in the table (conntrack -C expect)
  conntrack_events_total{type}          new and destroy events seen since the exporter started
  conntrack_events_per_second{type}     their rate over the last --rate-window seconds (default 10)
  conntrack_events_overflows_total, conntrack_events_lost_total
                                        event overflows, and events the kernel dropped
  conntrack_endpoint_flows{proto,addr,port}  the --top N (default 10) remote endpoints by flows:
                                        the original destination (--top-by dst, the default)
                                        or source address (--top-by src, no port)
  conntrack_endpoint_other_flows        flows of every endpoint outside the top N
  conntrack_endpoints                   distinct endpoints
  conntrack_dump_interrupted            1 when the table changed under the dump (counts approximate)
  conntrack_scrape_duration_seconds     time to read this namespace's table

At most N endpoint series per namespace, whatever the table holds: labels
stay bounded.  Events come from a subscription (ct.subscribe) made at
start: the kernel reports the destruction only of flows that began while
someone listened, so destroy counts start low after a restart.

A scrape reads each table with one dump, streamed, and gives the event loop
a turn every 5 ms: a scrape of a big table (250 000 flows: about a
second, see bench/exporter.lua) does not stall event counting or other
requests, and concurrent scrapes share one dump per namespace.

Uses lua-http (HTTP server; Debian: lua-http), lua-cqueues (its event
loop, also for the subscriptions) and lua-argparse (options).
]]

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/?.lua"  -- last: examples/conntrack.lua is the command, not the module
local tb = require "toolbox"
tb.tree(here)

-- Debian 12 installs lua-http and the pure-Lua modules it needs (fifo,
-- basexx, lpeg_patterns, binaryheap) for Lua 5.1 and 5.2 only; its C
-- dependencies (cqueues, luaossl, lpeg) are there for 5.3 and 5.4 too, and
-- the Lua code is the same for every version.  Where they are missing, find
-- exactly these modules in 5.1's directory (nothing else comes from there).
do
	local pure = { http = true, fifo = true, basexx = true, lpeg_patterns = true, binaryheap = true }
	local searchers = package.searchers or package.loaders
	local dirs = "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
	searchers[#searchers + 1] = function(name)
		if not pure[name:match("^[^.]+")] or not package.searchpath then
			return nil
		end
		local path = package.searchpath(name, dirs)
		if not path then
			return "\n\tno file for " .. name .. " in /usr/share/lua/5.1"
		end
		return assert(loadfile(path)), path
	end
end

local argparse = require "argparse"
local ct = require "conntrack"

local parser = argparse("exporter.lua", "Prometheus metrics of conntrack tables, over HTTP.")
parser:option("--listen", "Address and port to serve /metrics on (\"[::1]:9447\" for IPv6; port 0: any).",
	"127.0.0.1:9447"):argname("<host:port>")
parser:option("--netns", "A namespace to export (repeatable): a name under /run/netns or a path.")
	:count("*"):argname("<ns>")
parser:option("--top", "How many remote endpoints to export (0 to 100).", "10"):argname("<n>")
parser:option("--top-by", "Endpoints by original destination (dst) or source address (src).", "dst")
	:choices({ "dst", "src" })
parser:option("--rate-window", "Seconds over which event rates are averaged.", "10"):argname("<s>")
parser:flag("--once", "Print one scrape on stdout and exit.")
local o = tb.parse(parser)

local top_n, window = tonumber(o.top), tonumber(o.rate_window)
if not top_n or top_n < 0 or top_n > 100 or top_n % 1 ~= 0 then
	tb.usage_error(parser, "--top needs a whole number from 0 to 100")
end
if not window or window < 1 or window > 3600 then
	tb.usage_error(parser, "--rate-window needs seconds from 1 to 3600")
end
local lhost, lport = tb.split_hostport(o.listen)
if not lhost then
	tb.usage_error(parser, "--listen needs HOST:PORT or [IPv6]:PORT, got " .. o.listen)
end

local function die(msg)
	io.stderr:write("exporter: ", msg, "\n")
	os.exit(1)
end

-- Targets: one per namespace, each with a handle for the table.
local targets = {}
for _, ns in ipairs(#o.netns > 0 and o.netns or { "" }) do
	local h, msg = ct.open{ netns = ns ~= "" and ns or nil }
	if not h then
		die((ns ~= "" and (ns .. ": ") or "") .. msg)
	end
	targets[#targets + 1] = { netns = ns, h = h, ev = { new = 0, destroy = 0 }, samples = {} }
end

-- Collecting one namespace -------------------------------------------------

local classify = ct.nat.classify
local CHUNK = 256

-- The number of expectations of h (conntrack -C expect), or nil when the
-- kernel refuses: the family conntrack_expectations is then left out.
local function expectations(h)
	return (h:expect_count())
end

-- The entry ct.nat.classify sees: the tuples read once here (they serve the
-- endpoints too), anything else (status) from the entry itself.
local cur
local view = setmetatable({}, { __index = function(_, k) return cur[k] end })

-- Up to CHUNK entries of a dump into r; true when the dump has ended.
-- Runs inside pcall and never yields (Lua 5.1 cannot yield across pcall).
local function take(it, st, r, by_src)
	local flows, nat, ep = r.flows, r.nat, r.ep
	for _ = 1, CHUNK do
		local e = it(st)
		if e == nil then
			return true
		end
		r.dumped = r.dumped + 1
		local fam, proto, state = e.family, e.proto, e.state or ""
		local f = flows[fam]
		if not f then f = {} flows[fam] = f end
		local p = f[proto]
		if not p then p = {} f[proto] = p end
		p[state] = (p[state] or 0) + 1
		local t = e.orig
		cur, view.orig, view.reply = e, t, e.reply
		local k = classify(view)
		nat[k] = (nat[k] or 0) + 1
		if ep then
			local a, port
			if by_src then
				a, port = t.src, ""
			else
				a, port = t.dst, t.dport or ""
			end
			local byp = ep[proto]
			if not byp then byp = {} ep[proto] = byp end
			local bya = byp[a]
			if not bya then bya = {} byp[a] = bya end
			bya[port] = (bya[port] or 0) + 1
		end
	end
	return false
end

-- The top n endpoints of ep (counts by proto, address, port), biggest first,
-- ties in text order (so that the output is stable); and how many there were.
local function top_endpoints(ep, n, yield)
	local top, add = tb.best(n, function(a, b)
		if a.flows ~= b.flows then return a.flows > b.flows end
		if a.addr ~= b.addr then return a.addr < b.addr end
		if a.proto ~= b.proto then return a.proto < b.proto end
		return tostring(a.port) < tostring(b.port)
	end)
	local distinct = 0
	for proto, byp in pairs(ep) do
		for a, bya in pairs(byp) do
			for port, c in pairs(bya) do
				distinct = distinct + 1
				if yield and distinct % 4096 == 0 then yield() end
				if #top < n or (n > 0 and c >= top[#top].flows) then
					add{ proto = proto, addr = a, port = port, flows = c }
				end
			end
		end
	end
	return top, distinct
end

local now = require("cqueues").monotime

-- Reads one namespace: counts, limit, statistics, then one dump for the
-- breakdowns.  yield (or nil) gives the event loop a turn between chunks.
local function collect(t, yield)
	local h = t.h
	local t0 = now()
	local r = { netns = t.netns, up = 0, dumped = 0, flows = {}, nat = {},
		ep = top_n > 0 and {} or nil }
	local count, msg = h:count()
	if not count then
		r.error = msg
		return r
	end
	r.count, r.max = count, h:max()
	r.stats = h:stats()
	r.expectations = expectations(h)
	local it, st = h:dump()
	if not it then
		r.error = st
		return r
	end
	while true do
		local ok, done = pcall(take, it, st, r, o.top_by == "src")
		if not ok then
			r.error = done
			st:close()
			return r
		end
		if done then
			break
		end
		if yield then yield() end
	end
	r.interrupted = st.interrupted
	if r.ep then
		r.top, r.endpoints = top_endpoints(r.ep, top_n, yield)
		r.ep = nil
		local shown = 0
		for _, e in ipairs(r.top) do shown = shown + e.flows end
		r.other = r.dumped - shown
	end
	r.up = 1
	r.duration = now() - t0
	return r
end

-- Text format -------------------------------------------------------------

local function num(v)
	if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
		return ("%.0f"):format(v)
	end
	return ("%.6g"):format(v)
end

local function esc(v)
	return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ["\""] = "\\\"", ["\n"] = "\\n" }))
end

-- labels: an array of name, value, name, value...
local function labelset(labels)
	local t = {}
	for i = 1, #labels, 2 do
		t[#t + 1] = labels[i] .. "=\"" .. esc(labels[i + 1]) .. "\""
	end
	return "{" .. table.concat(t, ",") .. "}"
end

local STAT_HELP = {
	found = "Lookups that found an existing flow",
	invalid = "Packets that could not be tracked",
	insert = "Flows inserted into the table",
	insert_failed = "Flows that could not be inserted (clash with an existing flow)",
	drop = "Packets dropped because their new flow could not be tracked",
	early_drop = "Flows evicted to make room in a full table",
	error = "Packets with a protocol error, or ICMP errors matching no flow",
	search_restart = "Lookups restarted because the table changed under them",
	clash_resolve = "Insert clashes resolved by using the existing flow",
	chaintoolong = "Inserts refused because a hash chain was too long",
}

local function render(results, with_events)
	local out = {}
	local function fam(name, mtype, help, rows)
		out[#out + 1] = "# HELP " .. name .. " " .. help
		out[#out + 1] = "# TYPE " .. name .. " " .. mtype
		for _, row in ipairs(rows) do
			out[#out + 1] = name .. labelset(row[1]) .. " " .. num(row[2])
		end
	end
	-- One family: rows from each result that has the value (fn(r) -> rows).
	local function each(name, mtype, help, fn)
		local rows = {}
		for _, r in ipairs(results) do
			fn(r, function(labels, v)
				local l = { "netns", r.netns }
				for _, x in ipairs(labels) do l[#l + 1] = x end
				rows[#rows + 1] = { l, v }
			end)
		end
		if #rows > 0 then fam(name, mtype, help, rows) end
	end
	local function up(fn)
		return function(r, add)
			if r.up == 1 then fn(r, add) end
		end
	end

	each("conntrack_up", "gauge", "Whether the namespace's table could be read.", function(r, add)
		add({}, r.up)
	end)
	each("conntrack_entries", "gauge", "Flows in the table (conntrack -C).", up(function(r, add)
		add({}, r.count)
	end))
	each("conntrack_entries_limit", "gauge", "Table limit (nf_conntrack_max, the same in every namespace).",
		up(function(r, add)
			if r.max then add({}, r.max) end
		end))
	-- every counter the kernel sent, in name order
	local names, seen = {}, {}
	for _, r in ipairs(results) do
		for _, cpu in ipairs(r.up == 1 and r.stats or {}) do
			for k in pairs(cpu) do
				if k ~= "cpu" and not seen[k] then
					seen[k] = true
					names[#names + 1] = k
				end
			end
		end
	end
	table.sort(names)
	for _, k in ipairs(names) do
		each("conntrack_stat_" .. k .. "_total", "counter",
			(STAT_HELP[k] or ("Kernel conntrack statistic " .. k)) .. ", per CPU (conntrack -S).",
			up(function(r, add)
				for _, cpu in ipairs(r.stats) do
					if cpu[k] then add({ "cpu", cpu.cpu }, cpu[k]) end
				end
			end))
	end
	each("conntrack_flows", "gauge", "Flows by family, protocol and state.", up(function(r, add)
		local fams = {}
		for f in pairs(r.flows) do fams[#fams + 1] = f end
		table.sort(fams)
		for _, f in ipairs(fams) do
			local protos = {}
			for p in pairs(r.flows[f]) do protos[#protos + 1] = p end
			table.sort(protos)
			for _, p in ipairs(protos) do
				local states = {}
				for s in pairs(r.flows[f][p]) do states[#states + 1] = s end
				table.sort(states)
				for _, s in ipairs(states) do
					add({ "family", f, "proto", p, "state", s }, r.flows[f][p][s])
				end
			end
		end
	end))
	each("conntrack_nat_flows", "gauge", "Flows by NAT kind, from their tuples (ct.nat.classify).",
		up(function(r, add)
			for _, k in ipairs({ "none", "snat", "dnat", "both" }) do
				add({ "kind", k }, r.nat[k] or 0)
			end
		end))
	each("conntrack_expectations", "gauge", "Expectations in the table.", up(function(r, add)
		if r.expectations then add({}, r.expectations) end
	end))
	if with_events then
		each("conntrack_events_total", "counter", "Events since the exporter started.", function(r, add)
			add({ "type", "new" }, r.events.new)
			add({ "type", "destroy" }, r.events.destroy)
		end)
		each("conntrack_events_per_second", "gauge",
			("Events per second over the last %d seconds."):format(window), function(r, add)
				add({ "type", "new" }, r.events.new_rate)
				add({ "type", "destroy" }, r.events.destroy_rate)
			end)
		each("conntrack_events_overflows_total", "counter",
			"Event overflows: the socket buffer filled and the kernel dropped events.", function(r, add)
				add({}, r.events.overflows)
			end)
		each("conntrack_events_lost_total", "counter", "Events the kernel dropped.", function(r, add)
			add({}, r.events.lost)
		end)
	end
	if top_n > 0 then
		local what = o.top_by == "src" and "source addresses" or "destinations"
		each("conntrack_endpoint_flows", "gauge",
			("Flows of the %d busiest original %s."):format(top_n, what), up(function(r, add)
				for _, e in ipairs(r.top) do
					add({ "proto", e.proto, "addr", e.addr, "port", e.port }, e.flows)
				end
			end))
		each("conntrack_endpoint_other_flows", "gauge", "Flows of the endpoints outside the top.",
			up(function(r, add) add({}, r.other) end))
		each("conntrack_endpoints", "gauge", "Distinct endpoints in the table.",
			up(function(r, add) add({}, r.endpoints) end))
	end
	each("conntrack_dump_interrupted", "gauge",
		"1 when the table changed during the dump (the breakdowns are then approximate).",
		up(function(r, add) add({}, r.interrupted and 1 or 0) end))
	each("conntrack_scrape_duration_seconds", "gauge", "Time taken to read the namespace's table.",
		up(function(r, add) add({}, r.duration) end))
	out[#out + 1] = ""
	return table.concat(out, "\n")
end

-- --once ----------------------------------------------------------------

if o.once then
	local results = {}
	for i, t in ipairs(targets) do
		results[i] = collect(t)
	end
	io.stdout:write(render(results, false))
	for _, r in ipairs(results) do
		if r.error then io.stderr:write("exporter: ", r.netns, ": ", tostring(r.error), "\n") end
	end
	os.exit(0)
end

-- The server --------------------------------------------------------------

local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local http_server = require "http.server"
local http_headers = require "http.headers"

local cq = cqueues.new()

-- A turn for the rest of the loop (events, other requests) at least every
-- 5 ms while a scrape reads a table.
local last_turn = now()
local function yield()
	if now() - last_turn >= 0.005 then
		cqueues.sleep(0)
		last_turn = now()
	end
end

-- One dump per namespace at a time: a scrape that arrives while one runs
-- waits for it and shares its result.
local function collect_shared(t)
	if t.busy then
		t.done:wait()
		return t.last
	end
	t.busy = true
	local r = collect(t, yield)
	t.busy = false
	t.last = r
	t.done:signal()
	if r.error then
		io.stderr:write("exporter: ", t.netns, ": ", tostring(r.error), "\n")
	end
	return r
end

local function rate(t, kind)
	local s = t.samples
	local first, last = s[1], s[#s]
	if not first or last.t <= first.t then
		return 0
	end
	return (last[kind] - first[kind]) / (last.t - first.t)
end

local function scrape()
	local results = {}
	for i, t in ipairs(targets) do
		local r = collect_shared(t)
		local sub = t.sub
		r.events = { new = t.ev.new, destroy = t.ev.destroy, overflows = sub.overflows, lost = sub.lost,
			new_rate = rate(t, "new"), destroy_rate = rate(t, "destroy") }
		results[i] = r
	end
	return render(results, true)
end

local INDEX = "conntrack exporter (lua-conntrack): metrics at /metrics\n"

local function onstream(_, stream)
	local req = stream:get_headers()
	if not req then
		return
	end
	local method = req:get(":method")
	local path = (req:get(":path") or "/"):gsub("%?.*$", "")
	local status, ctype, body = "200", "text/plain; charset=utf-8"
	if method ~= "GET" and method ~= "HEAD" then
		status, body = "405", "only GET and HEAD\n"
	elseif path == "/metrics" then
		body, ctype = scrape(), "text/plain; version=0.0.4; charset=utf-8"
	elseif path == "/" then
		body = INDEX
	else
		status, body = "404", "not found: try /metrics\n"
	end
	local res = http_headers.new()
	res:append(":status", status)
	res:append("content-type", ctype)
	res:append("content-length", tostring(#body))
	if method == "HEAD" then
		stream:write_headers(res, true)
	else
		stream:write_headers(res, false)
		stream:write_chunk(body, true)
	end
end

for _, t in ipairs(targets) do
	local sub, msg = t.h:subscribe{ types = { "new", "destroy" } }
	if not sub then
		die((t.netns ~= "" and (t.netns .. ": ") or "") .. msg)
	end
	t.sub, t.done = sub, condition.new()
	-- the events: counted as they come (the subscription is pollable)
	cq:wrap(function()
		local ev = t.ev
		while true do
			if cqueues.poll(sub, 1) == sub then
				local list = sub:read()
				for i = 1, #list do
					local ty = list[i].type
					if ty == "new" or ty == "destroy" then
						ev[ty] = ev[ty] + 1
					end
				end
			end
		end
	end)
end

-- Once a second, the event totals, for rates over the last window.
cq:wrap(function()
	while true do
		local tnow = now()
		for _, t in ipairs(targets) do
			local s = t.samples
			s[#s + 1] = { t = tnow, new = t.ev.new, destroy = t.ev.destroy }
			while #s > 1 and s[1].t < tnow - window - 0.5 do
				table.remove(s, 1)
			end
		end
		cqueues.sleep(1)
	end
end)

local server = http_server.listen{
	host = lhost,
	port = tonumber(lport),
	cq = cq,
	tls = false,
	onstream = onstream,
	onerror = function(_, ctx, op, err)
		io.stderr:write(("exporter: %s on %s: %s\n"):format(op, tostring(ctx), tostring(err)))
	end,
}
local ok, err = server:listen()
if not ok then
	die("cannot listen on " .. o.listen .. ": " .. tostring(err))
end
local _, bhost, bport = server:localname()
io.stderr:write(("# listening on http://%s/metrics (%d namespace%s)\n"):format(
	tb.hostport(bhost, bport), #targets, #targets == 1 and "" or "s"))

local okl, lerr = cq:loop()
if not okl then
	die(tostring(lerr))
end
