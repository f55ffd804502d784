-- conntrack.format: the CLI's -L, -o extended and -o save lines, byte for
-- byte against conntrack 1.4.7 on the same entries (only the clock-driven
-- timeout and delta-time are blanked); save text loaded back by
-- `conntrack -R` and by h:load; JSON through dkjson.  On synthetic entries:
-- spec/unit/42-format_spec.lua.
local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local fmt = ct.format

describe("formats against the conntrack CLI", function()
	local ns, h, topo
	H.private(function(_, n, hh) ns, h = n, hh end)

	local function sorted(t)
		table.sort(t)
		return t
	end

	-- Lines of the CLI (stdout only) and ours, with the clock blanked.
	local function blank(line)
		line = H.untimed(line)
		return (line:gsub("^(%-[AUD] %-t )%d+", "%1T"))                   -- -o save
	end
	local function cli(netns, args)
		local lines = H.cli_ok(netns, "-L " .. args)
		for i, l in ipairs(lines) do lines[i] = blank(l) end
		return sorted(lines)
	end
	local function ours(handle, f)
		local lines = {}
		for e in handle:dump() do lines[#lines + 1] = blank(f(e)) end
		return sorted(lines)
	end

	lazy_setup(function()
		local specs = {
			{ proto = "tcp", src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 80, state = "ESTABLISHED",
				status = { "SEEN_REPLY", "ASSURED" }, mark = 7 },
			{ proto = "tcp", src = "2001:db8::1", dst = "2001:db8:0:0:1::2", sport = 1001, dport = 443,
				state = "SYN_SENT", zone = 5 },
			{ proto = "tcp", src = "192.0.2.2", dst = "198.51.100.2", sport = 1002, dport = 22, state = "TIME_WAIT",
				status = { "SEEN_REPLY" } },
			{ proto = "udp", src = "192.0.2.1", dst = "198.51.100.2", sport = 1000, dport = 53,
				reply_src = "198.51.100.2", reply_dst = "198.51.100.100", reply_sport = 53, reply_dport = 40000 },
			{ proto = "udp", src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53, zone = 9,
				status = { "SEEN_REPLY" }, mark = 0x107 },
			{ proto = "icmp", src = "192.0.2.1", dst = "198.51.100.2", icmp_type = 8, icmp_code = 0, icmp_id = 77 },
			{ proto = "icmpv6", src = "2001:db8::1", dst = "2001:db8::2", icmp_type = 128, icmp_id = 5 },
			{ proto = "gre", src = "192.0.2.3", dst = "198.51.100.2" },
			{ proto = 50, src = "192.0.2.4", dst = "198.51.100.2" },
		}
		for _, s in ipairs(specs) do
			s.timeout = 600
			assert(h:create(s))
		end
		-- Real NAT on a router, for the -g/-n forms (IPv4 and IPv6).
		topo = hosts.new { nat = { snat = true, dnat = true } }
		topo:serve()
		local A, P = topo.addr, hosts.port
		for _, c in ipairs { { A.server, P.snat }, { A.public, P.dnat }, { A.server6, P.snat }, { A.public6, P.dnat } } do
			local ok, reply = topo:tcp_request("client", c[1], c[2], "x")
			assert(ok and reply == "x", tostring(reply))
		end
	end)

	lazy_teardown(function()
		if topo then topo:destroy() end
	end)

	it("default: the conntrack -L lines", function()
		local got = ours(h, fmt.default)
		assert.equals(9, #got)
		assert.same(cli(ns, ""), got)
	end)

	it("extended: the conntrack -L -o extended lines", function()
		assert.same(cli(ns, "-o extended"), ours(h, fmt.extended))
	end)

	it("save: the conntrack -L -o save lines, NAT forms included", function()
		assert.same(cli(ns, "-o save"), ours(h, fmt.save))
		local rh = assert(ct.open { netns = topo.ns.router })
		finally(function() rh:close() end)
		local mine = ours(rh, fmt.save)
		assert.same(cli(topo.ns.router, "-o save"), mine)
		local n, g = 0, 0
		for _, l in ipairs(mine) do
			if l:find(" %-n ") then n = n + 1 end
			if l:find(" %-g ") then g = g + 1 end
		end
		assert.same({ 2, 2 }, { n, g })    -- one snat and one dnat flow of each family
		assert.same(cli(ns, ""), ours(h, function(e) return fmt.format(e, "default") end))
		assert.same(cli(ns, "-o save"), ours(h, function(e) return fmt.format(e, "save") end))
		assert.same(cli(ns, "-o id"), ours(h, function(e) return fmt.format(e, "id") end))
	end)

	it("save text goes back in with conntrack -R and with h:load", function()
		local before = cli(ns, "")
		local lines = {}
		for e in h:dump() do lines[#lines + 1] = fmt.save(e, { mark = true }) end
		local path = os.tmpname()
		finally(function() os.remove(path) end)
		local f = assert(io.open(path, "w"))
		f:write(table.concat(lines, "\n"), "\n")
		f:close()

		assert(h:flush())
		assert.same({}, cli(ns, ""))
		H.cli_ok(ns, "-R " .. hosts.quote(path))
		assert.same(before, cli(ns, ""))

		assert(h:flush())
		local created, existing, failures = h:load(table.concat(lines, "\n"))
		assert.same({}, failures)
		assert.equals(0, existing)
		assert.equals(#lines, created)
		assert.same(before, cli(ns, ""))

		-- the CLI's own format has no mark: those come back as 0
		local plain = {}
		for e in h:dump() do plain[#plain + 1] = fmt.save(e) end
		assert(h:flush())
		assert.equals(#plain, (h:load(table.concat(plain, "\n"))))
		local unmarked = {}
		for i, l in ipairs(before) do unmarked[i] = l:gsub("mark=%d+", "mark=0") end
		assert.same(sorted(unmarked), cli(ns, ""))
	end)

	it("JSON carries what the CLI shows", function()
		local json = require "dkjson"
		local n = 0
		for e in h:dump() do
			local t = json.decode(fmt.json(e))
			local line = tostring(e)
			assert.equals(e.id, t.id)
			assert.equals(e.proto, t.proto)
			local keys = (t.proto == "tcp" or t.proto == "udp") and { "src", "dst", "sport", "dport" } or { "src", "dst" }
			for _, dir in ipairs { "orig", "reply" } do
				for _, k in ipairs(keys) do
					if t[dir][k] ~= nil then
						assert.is_truthy(line:find(k .. "=" .. t[dir][k] .. " ", 1, true), line)
					end
				end
			end
			assert.is_truthy(line:find("mark=" .. t.mark .. " ", 1, true))
			if t.state then assert.is_truthy(line:find(" " .. t.state .. " ", 1, true)) end
			assert.equals(line:find("[ASSURED]", 1, true) ~= nil, t.status[1] == "ASSURED")
			n = n + 1
		end
		assert.equals(9, n)
	end)
end)
