--- Shared helpers of the core specs (spec/1x-*_spec.lua) and the demo: the
-- conntrack CLI run in a namespace, its output parsed, scratch namespaces,
-- descriptor counts.  Plain Lua 5.1 - 5.4, like spec/hosts.lua.
--
--     local H = require "cthelp"
--     local lines, ok, err = H.cli(ns, "-L -p tcp")   -- stdout lines, no summary
--     local t = H.parse(lines[1])                       -- fields of one -L line
--     local line = H.find(lines, "sport=1000 ", "zone=5 ")
--     local topo, ns = H.scratch()                      -- an empty, untracked namespace
--     H.fds()                                           -- open descriptors of this process

local hosts = require "hosts"

local H = {}
local q = hosts.quote

--- The conntrack CLI inside namespace ns (nil: this process's namespace).
-- Returns the stdout lines (an array), ok (exit status 0) and stderr text.
function H.cli(ns, args)
	local errf = os.tmpname()
	local cmd = (ns and ("ip netns exec " .. q(ns) .. " ") or "") .. "conntrack " .. args
		.. " 2>" .. q(errf) .. "; echo \"@@rc=$?\""
	local p = assert(io.popen(cmd))
	local out = p:read("*a")
	p:close()
	local f = io.open(errf)
	local err = f and f:read("*a") or ""
	if f then f:close() end
	os.remove(errf)
	local body, rc = out:match("^(.-)@@rc=(%d+)%s*$")
	local lines = {}
	for l in (body or out):gmatch("[^\n]+") do lines[#lines + 1] = l end
	return lines, rc == "0", err
end

--- Like H.cli, raising when the CLI fails.
function H.cli_ok(ns, args)
	local lines, ok, err = H.cli(ns, args)
	if not ok then error("conntrack " .. args .. ": " .. err, 2) end
	return lines
end

--- The first line holding every plain-text fragment given (nil if none).
function H.find(lines, ...)
	local frags = { ... }
	for _, line in ipairs(lines) do
		local all = true
		for _, f in ipairs(frags) do
			if not line:find(f, 1, true) then all = false break end
		end
		if all then return line end
	end
	return nil
end

local TUPLE_KEYS = { src = true, dst = true, sport = true, dport = true, type = true,
	code = true, id = true, packets = true, bytes = true, srckey = true, dstkey = true }

--- Parses one `conntrack -L` line (default or extended output) into
-- { family, l3num, proto, protonum, timeout, state, orig = {...},
--   reply = {...}, flags = {UNREPLIED = true, ASSURED = true}, mark, zone,
--   use, id, ... }.  Numbers become numbers; tuple keys keep the CLI's
-- names (type/code/id for ICMP).
function H.parse(line)
	local toks = {}
	for t in line:gmatch("%S+") do toks[#toks + 1] = t end
	local r = { flags = {}, orig = {}, reply = {} }
	local i = 1
	if toks[1] == "ipv4" or toks[1] == "ipv6" then
		r.family, r.l3num, i = toks[1], tonumber(toks[2]), 3
	end
	r.proto, r.protonum, r.timeout = toks[i], tonumber(toks[i + 1]), tonumber(toks[i + 2])
	i = i + 3
	if toks[i] and not toks[i]:find("=", 1, true) and not toks[i]:find("^%[") then
		r.state = toks[i]
		i = i + 1
	end
	local cur, top = r.orig, false
	while i <= #toks do
		local t = toks[i]
		local flag = t:match("^%[(%u[%u_]*)%]$")
		if flag then
			r.flags[flag] = true
		elseif t:match("^%[start=") or t:match("^%[stop=") then
			-- ktimestamp: "[start=Tue Nov 24 07:29:24 2026]", several tokens
			local k = t:match("^%[(%a+)=")
			local parts = { t:sub(#k + 3) }
			while not parts[#parts]:find("%]$") and i < #toks do
				i = i + 1
				parts[#parts + 1] = toks[i]
			end
			r[k] = table.concat(parts, " "):sub(1, -2)
		else
			local k, v = t:match("^([%w_-]+)=(.*)$")
			if k then
				v = tonumber(v) or v
				if not top and TUPLE_KEYS[k] then
					if k == "src" and cur.src ~= nil then cur = r.reply end
					cur[k] = v
				else
					top = true
					r[k] = v
				end
			end
		end
		i = i + 1
	end
	return r
end

--- An empty namespace with conntrack ready and nothing tracked by itself
-- (no hooks), with accounting and timestamps on: the client of a bare
-- pair topology.  Returns topo, namespace name.
function H.scratch()
	local topo = hosts.pair{ track = false }
	return topo, topo.ns.client
end

--- A scratch namespace and a module handle bound to it, for a describe
-- block's setup: returns topo, namespace name, handle.
function H.open_scratch(ct)
	local topo, ns = H.scratch()
	local h, msg = ct.open{ netns = ns }
	if not h then
		topo:destroy()
		error(msg, 2)
	end
	return topo, ns, h
end

--- The teardown of H.open_scratch (nil arguments are fine).
function H.close_scratch(topo, h)
	if h then h:close() end
	if topo then topo:destroy() end
	hosts.cleanup_all()
end

--- A shell command's output inside namespace ns (nil: here).
function H.sh(ns, cmd)
	local ok, out = hosts.run(ns and ("ip netns exec " .. q(ns) .. " sh -c " .. q(cmd)) or cmd)
	return out, ok
end

--- Refuses to go on in the host's own network namespace: the specs flush
-- and fill the table of the namespace they run in (tools/netns-run makes a
-- private one).
function H.assert_private()
	local p = assert(io.popen("readlink /proc/" .. hosts.pid .. "/ns/net /proc/1/ns/net"))
	local mine, init = p:read("*l"), p:read("*l")
	p:close()
	if mine == nil or mine == init then
		error("refusing to run in the host's network namespace: run me under tools/netns-run", 2)
	end
end

--- Number of open descriptors of this Lua process.
function H.fds()
	local p = assert(io.popen("ls /proc/" .. hosts.pid .. "/fd"))
	local n = 0
	for _ in p:lines() do n = n + 1 end
	p:close()
	return n
end

--- Is fd an open descriptor of this process, and what is it?
function H.fd_target(fd)
	local p = assert(io.popen("readlink /proc/" .. hosts.pid .. "/fd/" .. fd .. " 2>/dev/null"))
	local s = p:read("*l")
	p:close()
	return s
end

--- Resident set size of this process, in KiB.
function H.rss_kib()
	local f = assert(io.open("/proc/" .. hosts.pid .. "/status"))
	local s = f:read("*a")
	f:close()
	return tonumber(s:match("VmRSS:%s*(%d+)"))
end

--- Calls mod() and cli() (each returning a line) until the module's line,
-- read before or after the CLI's, equals it: lines carry ages and timeouts
-- in seconds, which may tick between two reads.  Returns both lines of the
-- last attempt.
function H.same_line(mod, cli, tries)
	local a, c, b
	for _ = 1, tries or 3 do
		a = mod()
		c = cli()
		b = mod()
		if a == c then return a, c end
		if b == c then return b, c end
	end
	return a, c
end

--- A key naming a flow by its original tuple and zone, for sets of entries.
function H.key(e)
	local o = e.orig
	return table.concat({ e.proto or "?", o.src or "?", o.dst or "?",
		tostring(o.sport or o.icmp_id or ""), tostring(o.dport or o.icmp_type or ""),
		tostring(e.zone or 0) }, " ")
end

--- The set of keys of a dump or list (and how many there were).
function H.keyset(iter_or_list, ...)
	local s, n = {}, 0
	if type(iter_or_list) == "table" then
		for _, e in ipairs(iter_or_list) do s[H.key(e)] = true n = n + 1 end
	else
		for e in iter_or_list, ... do s[H.key(e)] = true n = n + 1 end
	end
	return s, n
end

--- Sorted list of the keys of a set, for readable assertions.
function H.sorted(set)
	local t = {}
	for k in pairs(set) do t[#t + 1] = k end
	table.sort(t)
	return t
end

--- The contents of a file, or nil.
function H.read(path)
	local f = io.open(path)
	if not f then return nil end
	local s = f:read("*a")
	f:close()
	return s
end

return H
