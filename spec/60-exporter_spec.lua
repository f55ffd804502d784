-- examples/exporter.lua on real tables: its text passes `promtool check
-- metrics`, its values are those of `conntrack -C` and `conntrack -S` at the
-- same moment and the breakdowns those of the entries made, on every Lua;
-- it serves several namespaces at once, counts their events, and a real
-- Prometheus server scrapes it (the exporter and Prometheus both on the
-- loopback of this run's namespace, the tables read through --netns).
local hosts = require "hosts"
local H = require "helpers"
local J = require "jobhelp"
local json = require "dkjson"

local q = hosts.quote

-- The scratch table: 33 flows with known breakdowns.
--   tcp ESTABLISHED 192.0.2.1 -> 198.51.100.1:80      6 flows  (endpoint X)
--   udp 192.0.2.1 -> 198.51.100.2:53                  4 flows  (endpoint Y)
--   udp 2001:db8:1::1 -> [2001:db8:2::1]:53            3 flows  (endpoint Z)
--   tcp SYN_SENT 192.0.2.1 -> 203.0.113.N:443, N=1..20 20 flows, one endpoint each;
--       N = 1, 2 DNATed (to 198.51.100.9, .10), N = 3 SNATed (to 198.51.100.100), NAT on create
local function fill(h)
	local items = {}
	local function add(t) items[#items + 1] = t end
	for i = 1, 6 do
		add{ src = "192.0.2.1", dst = "198.51.100.1", proto = "tcp", sport = 1000 + i, dport = 80,
			timeout = 600, state = "ESTABLISHED", status = { "SEEN_REPLY", "ASSURED" } }
	end
	for i = 1, 4 do
		add{ src = "192.0.2.1", dst = "198.51.100.2", proto = "udp", sport = 2000 + i, dport = 53, timeout = 600 }
	end
	for i = 1, 3 do
		add{ src = "2001:db8:1::1", dst = "2001:db8:2::1", proto = "udp", sport = 3000 + i, dport = 53,
			timeout = 600 }
	end
	for n = 1, 20 do
		local t = { src = "192.0.2.1", dst = "203.0.113." .. n, proto = "tcp", sport = 4000, dport = 443,
			timeout = 600, state = "SYN_SENT" }
		if n <= 2 then t.dnat = "198.51.100." .. (8 + n) end
		if n == 3 then t.snat = "198.51.100.100" end
		add(t)
	end
	local ok, missing, fails = h:batch("create", items)
	assert(ok == 33 and missing == 0, fails[1] and fails[1].message)
end

local function promtool(text)
	local f = os.tmpname()
	local fh = assert(io.open(f, "w"))
	fh:write(text)
	fh:close()
	local ok, out = J.exec("promtool check metrics < " .. q(f))
	os.remove(f)
	return ok, out
end

-- The per-CPU counters of the text against `conntrack -S` read just before
-- and just after it (retried while the two differ: a counter moved).
local function same_moment(ns, produce)
	for _ = 1, 3 do
		local before = J.cli_stats(ns)
		local text = produce()
		local after = J.cli_stats(ns)
		if require("luassert.util").deepcompare(before, after) then
			return text, before
		end
	end
	error("conntrack -S kept changing")
end

local function check_stats(samples, ns, cli)
	local n = 0
	for cpu, counters in pairs(cli) do
		for k, v in pairs(counters) do
			assert.equals(v, J.value(samples, "conntrack_stat_" .. k .. "_total", { netns = ns, cpu = cpu }),
				k .. " of cpu " .. cpu)
			n = n + 1
		end
	end
	assert.is_true(n >= 10 * 1, "conntrack -S gave " .. n .. " counters")
	-- and no counter the CLI does not know of, nor another CPU
	local all = 0
	for _, s in ipairs(samples) do
		if s.name:match("^conntrack_stat_") and s.labels.netns == ns then all = all + 1 end
	end
	assert.equals(n, all)
end

describe("exporter.lua", function()
	local topo, A, h

	setup(function()
		topo, A, h = H.scratch()
		fill(h)
	end)
	teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
	end)

	it("--help prints the usage; bad options exit 2 with the usage", function()
		local out = J.check_usage("exporter.lua", { "--nosuch", "--top 101", "--top x", "--listen nocolon",
			"--top-by port", "--rate-window 0" })
		assert.matches("--listen <host:port>", out, 1, true)
	end)

	it("a namespace that does not exist: a clear error and exit status 1", function()
		local ok, _, err, code = J.run(nil, nil, "exporter.lua", "--once --netns lct-no-such-ns")
		assert.is_false(ok)
		assert.equals(1, code)
		assert.matches("exporter: lct%-no%-such%-ns: ", err)
	end)

	it("--once on every Lua: promtool accepts it, its values are conntrack -C / -S and the flows made", function()
		local luas = J.luas()
		assert.is_true(#luas >= 4, "the module built for 5.1, 5.3, 5.4 and LuaJIT")
		local ref
		for _, lua in ipairs(luas) do
			local out, err
			local text, cli = same_moment(A, function()
				local ok
				ok, out, err = J.run(nil, lua, "exporter.lua", "--once --top 3 --netns " .. q(A))
				assert.is_true(ok, lua.bin .. ": " .. err)
				return out
			end)
			local pok, pout = promtool(text)
			assert.is_true(pok, lua.bin .. ": promtool: " .. pout)
			local s = J.metrics(text)
			local L = { netns = A }
			assert.equals(1, J.value(s, "conntrack_up", L))
			assert.equals(tonumber(H.cli_ok(A, "-C")[1]), J.value(s, "conntrack_entries", L))
			assert.equals(33, J.value(s, "conntrack_entries", L))
			local max = tonumber((H.sh(A, "cat /proc/sys/net/netfilter/nf_conntrack_max")))
			assert.equals(max, J.value(s, "conntrack_entries_limit", L))
			check_stats(s, A, cli)
			-- flows by family, protocol and state
			local flows = J.select(s, "conntrack_flows", L)
			assert.equals(4, #flows)
			assert.equals(6, J.value(s, "conntrack_flows", { netns = A, family = "ipv4", proto = "tcp", state = "ESTABLISHED" }))
			assert.equals(20, J.value(s, "conntrack_flows", { netns = A, family = "ipv4", proto = "tcp", state = "SYN_SENT" }))
			assert.equals(4, J.value(s, "conntrack_flows", { netns = A, family = "ipv4", proto = "udp", state = "" }))
			assert.equals(3, J.value(s, "conntrack_flows", { netns = A, family = "ipv6", proto = "udp", state = "" }))
			-- NAT kinds
			assert.equals(30, J.value(s, "conntrack_nat_flows", { netns = A, kind = "none" }))
			assert.equals(2, J.value(s, "conntrack_nat_flows", { netns = A, kind = "dnat" }))
			assert.equals(1, J.value(s, "conntrack_nat_flows", { netns = A, kind = "snat" }))
			assert.equals(0, J.value(s, "conntrack_nat_flows", { netns = A, kind = "both" }))
			-- the top 3 endpoints, and only them
			local top = J.select(s, "conntrack_endpoint_flows", L)
			assert.equals(3, #top)
			assert.same({ proto = "tcp", addr = "198.51.100.1", port = "80", netns = A }, top[1].labels)
			assert.equals(6, top[1].value)
			assert.same({ proto = "udp", addr = "198.51.100.2", port = "53", netns = A }, top[2].labels)
			assert.equals(4, top[2].value)
			assert.same({ proto = "udp", addr = "2001:db8:2::1", port = "53", netns = A }, top[3].labels)
			assert.equals(3, top[3].value)
			assert.equals(20, J.value(s, "conntrack_endpoint_other_flows", L))
			assert.equals(23, J.value(s, "conntrack_endpoints", L))
			assert.equals(0, J.value(s, "conntrack_dump_interrupted", L))
			-- no event families: --once watched nothing
			assert.equals(0, #J.select(s, "conntrack_events_total"))
			-- the same text from every Lua, but for the time taken
			local norm = text:gsub("\nconntrack_scrape_duration_seconds[^\n]*", "")
			ref = ref or norm
			assert.equals(ref, norm, lua.bin)
		end
	end)

	it("exports the expectations, as many as conntrack -C expect counts", function()
		local stopo, S, sh = H.scratch()
		finally(function()
			sh:close()
			stopo:destroy()
		end)
		local function scrape()
			local ok, out, err = J.run(nil, nil, "exporter.lua", "--once --netns " .. q(S))
			assert.is_true(ok, err)
			return J.value(J.metrics(out), "conntrack_expectations", { netns = S })
		end
		assert.equals(0, tonumber(H.cli_ok(S, "-C expect")[1]))
		assert.equals(0, scrape())
		-- an FTP control flow (the helper attached on create) and what it expects
		assert(sh:create{ src = "192.0.2.1", dst = "198.51.100.1", proto = "tcp", sport = 1021, dport = 21,
			timeout = 600, state = "ESTABLISHED", status = { "SEEN_REPLY", "ASSURED" }, helper = "ftp" })
		assert(sh:expect_create{ src = "192.0.2.1", dst = "198.51.100.1", proto = "tcp", sport = 1021, dport = 21,
			tuple_src = "192.0.2.1", tuple_dst = "198.51.100.1", tuple_sport = 0, tuple_dport = 40000,
			timeout = 200 })
		assert.equals(1, tonumber(H.cli_ok(S, "-C expect")[1]))
		assert.equals(1, scrape())
	end)

	it("--top-by src counts sources; --top 0 leaves the endpoint families out", function()
		local ok, out, err = J.run(nil, nil, "exporter.lua", "--once --top-by src --top 2 --netns " .. q(A))
		assert.is_true(ok, err)
		local s = J.metrics(out)
		local top = J.select(s, "conntrack_endpoint_flows", { netns = A })
		assert.equals(2, #top)
		assert.same({ netns = A, proto = "tcp", addr = "192.0.2.1", port = "" }, top[1].labels)
		assert.equals(26, top[1].value)
		assert.same({ netns = A, proto = "udp", addr = "192.0.2.1", port = "" }, top[2].labels)
		assert.equals(4, top[2].value)
		assert.equals(3, J.value(s, "conntrack_endpoint_other_flows", { netns = A }))
		ok, out = J.run(nil, nil, "exporter.lua", "--once --top 0 --netns " .. q(A))
		assert.is_true(ok)
		assert.is_nil(out:find("conntrack_endpoint", 1, true))
	end)

	it("answers HTTP on every Lua: /metrics (GET and HEAD), / and 404", function()
		for _, lua in ipairs(J.luas()) do
			local p = J.start(nil, lua, "exporter.lua", "--listen 127.0.0.1:0 --netns " .. q(A), "listening on")
			local base = p.err():match("(http://127%.0%.0%.1:%d+)/metrics")
			local body, code = J.get(base .. "/metrics")
			assert.equals(200, code, lua.bin)
			local pok, pout = promtool(body)
			assert.is_true(pok, lua.bin .. ": " .. pout)
			assert.equals(33, J.value(J.metrics(body), "conntrack_entries", { netns = A }))
			local _, c404 = J.get(base .. "/nope")
			assert.equals(404, c404)
			local idx, c200 = J.get(base .. "/")
			assert.equals(200, c200)
			assert.matches("/metrics", idx)
			local http = require "socket.http"
			local r, hc, hh = http.request{ url = base .. "/metrics", method = "HEAD" }
			assert.equals(1, r)
			assert.equals(200, hc)
			assert.matches("^text/plain; version=0%.0%.4", hh["content-type"])
			local _, err = p.stop()
			assert.is_nil(err:find("error", 1, true), err)
		end
	end)

	describe("serving two namespaces", function()
		local R, exporter, prom, promdir

		setup(function()
			R = hosts.new{ nat = { snat = true, dnat = true } }
			R:serve("tcp")
			exporter = J.start(nil, nil, "exporter.lua", "--listen 127.0.0.1:9447 --rate-window 5 --netns "
				.. q(A) .. " --netns " .. q(R.ns.router), "listening on")
		end)
		teardown(function()
			if prom then hosts.run("kill " .. prom .. " 2>/dev/null") end
			if exporter then exporter.stop() end
			if promdir then hosts.run("rm -rf " .. q(promdir)) end
			if R then R:destroy() end
		end)

		local function scrape()
			local body, code = J.get("http://127.0.0.1:9447/metrics")
			assert.equals(200, code)
			return body
		end

		it("equals conntrack -C and -S at the same moment, and counts events with their rates", function()
			local text, cli = same_moment(A, scrape)
			local pok, pout = promtool(text)
			assert.is_true(pok, pout)
			local s = J.metrics(text)
			assert.equals(tonumber(H.cli_ok(A, "-C")[1]), J.value(s, "conntrack_entries", { netns = A }))
			check_stats(s, A, cli)
			assert.equals(0, J.value(s, "conntrack_events_total", { netns = A, type = "new" }))

			-- 5 flows made, 3 of them removed, after the exporter subscribed
			local made = {}
			for i = 1, 5 do
				made[i] = { src = "192.0.2.7", dst = "198.51.100.7", proto = "udp", sport = 7000 + i, dport = 7,
					timeout = 600 }
				assert(h:create(made[i]))
			end
			for i = 1, 3 do assert(h:delete(H.tuple(made[i]))) end
			local got = J.poll(10, function()
				local t = J.metrics(scrape())
				local d = J.value(t, "conntrack_events_total", { netns = A, type = "destroy" })
				return d == 3 and t
			end)
			assert.is_truthy(got, "the exporter did not count the 3 destroy events")
			assert.equals(5, J.value(got, "conntrack_events_total", { netns = A, type = "new" }))
			assert.equals(0, J.value(got, "conntrack_events_lost_total", { netns = A }))
			-- the rate over the window shows them, once a sample has been taken
			local rate = J.poll(5, function()
				local v = J.value(J.metrics(scrape()), "conntrack_events_per_second", { netns = A, type = "new" })
				return v > 0 and v
			end)
			assert.is_truthy(rate)
			assert.is_true(rate <= 5, tostring(rate))
		end)

		it("is scraped by a real Prometheus server, which stores both namespaces' series", function()
			-- real traffic through the router: a DNAT and an SNAT connection
			local c1 = R:tcp_connect("client", R.addr.public, hosts.port.dnat, { hold = 40 })
			local c2 = R:tcp_connect("client", R.addr.server, hosts.port.snat, { hold = 40 })
			promdir = os.tmpname()
			os.remove(promdir)
			J.sh("mkdir -p " .. q(promdir))
			local cfg = assert(io.open(promdir .. "/prometheus.yml", "w"))
			cfg:write([[
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: conntrack
    static_configs:
      - targets: ['127.0.0.1:9447']
]])
			cfg:close()
			local ok, pid = J.exec(("timeout 120 prometheus --config.file=%s --storage.tsdb.path=%s "
				.. "--web.listen-address=127.0.0.1:19090 --log.level=warn >%s 2>&1 & echo $!")
				:format(q(promdir .. "/prometheus.yml"), q(promdir .. "/data"), q(promdir .. "/log")))
			assert(ok, pid)
			prom = pid:match("%d+")
			local function query(expr)
				local url = "http://127.0.0.1:19090/api/v1/query?query=" .. expr:gsub("[^%w_]", function(c)
					return ("%%%02X"):format(c:byte())
				end)
				local body, code = J.get(url)
				if code ~= 200 then return nil end
				local doc = json.decode(body)
				return doc and doc.status == "success" and doc.data.result or nil
			end
			local entries = tonumber(H.cli_ok(A, "-C")[1])
			local res = J.poll(30, function()
				local r = query(('conntrack_entries{netns="%s"}'):format(A))
				return r and #r == 1 and tonumber(r[1].value[2]) == entries and r
			end)
			local log = H.read(promdir .. "/log") or ""
			assert.is_truthy(res, "Prometheus never stored conntrack_entries of " .. A .. "\n" .. log)
			assert.equals("conntrack", res[1].metric.job)
			assert.equals("127.0.0.1:9447", res[1].metric.instance)
			local up = query('up{job="conntrack"}')
			assert.equals(1, #up)
			assert.equals("1", up[1].value[2])
			-- the router's series: its DNAT and SNAT flows, per-CPU counters
			local router = R.ns.router
			local dn = J.poll(10, function()
				local r = query(('conntrack_nat_flows{netns="%s",kind="dnat"}'):format(router))
				return r and #r == 1 and tonumber(r[1].value[2]) >= 1 and r
			end)
			assert.is_truthy(dn, "no DNAT flow of the router in Prometheus")
			local sn = query(('conntrack_nat_flows{netns="%s",kind="snat"}'):format(router))
			assert.is_true(tonumber(sn[1].value[2]) >= 1)
			local found = query(('conntrack_stat_found_total{netns="%s"}'):format(router))
			assert.is_true(#found >= 1)
			local ev = query(('conntrack_events_total{netns="%s",type="new"}'):format(A))
			local direct = J.value(J.metrics(scrape()), "conntrack_events_total", { netns = A, type = "new" })
			assert.equals(direct, tonumber(ev[1].value[2]))
			-- one series per namespace for the table size, and no more
			assert.equals(2, #query("conntrack_entries"))
			c1:close()
			c2:close()
		end)
	end)
end)
