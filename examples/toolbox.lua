--- What the job examples (exporter.lua, top.lua, nat-audit.lua) share: the
-- module paths of a checkout, option parsing with lua-argparse, the
-- filters their options describe, endpoints as text, and commands run in
-- another network namespace.  Plain Lua 5.1 - 5.4 and LuaJIT.
--
--   local here = arg[0]:match("^(.*)/[^/]*$") or "."
--   package.path = package.path .. ";" .. here .. "/?.lua"   -- after the module
--   local tb = require "toolbox"
--   tb.tree(here)                     -- this checkout's conntrack module
--   local o = tb.parse(parser)        -- argparse, exit status 2 on bad options
local T = {}

--- Uses the checkout's module (lua/ and build/<version>/) unless LUA_PATH /
-- LUA_CPATH already say where to look (make check and make demo set them).
function T.tree(here)
	local v = type(jit) == "table" and "jit" or _VERSION:match("%d+%.%d+")
	local function add(field, env, p)
		if os.getenv(env) then
			package[field] = package[field] .. ";" .. p
		else
			package[field] = p .. ";" .. package[field]
		end
	end
	add("path", "LUA_PATH", here .. "/../lua/?.lua")
	add("cpath", "LUA_CPATH", here .. "/../build/" .. v .. "/?.so")
end

--- Parses arg with an argparse parser.  --help prints the help and exits 0
-- (argparse's own action); a bad option prints the usage and the error on
-- stderr and exits 2, as the other examples do.
function T.parse(parser, args)
	local ok, res = parser:pparse(args)
	if not ok then
		io.stderr:write(parser:get_usage(), "\n", parser._name or "", ": ", res, "\n")
		os.exit(2)
	end
	return res
end

--- Raises a usage error from option checks that argparse cannot express.
function T.usage_error(parser, msg)
	io.stderr:write(parser:get_usage(), "\n", parser._name or "", ": ", msg, "\n")
	os.exit(2)
end

--- "addr:port", "[v6]:port", or the address alone when port is nil.
function T.hostport(a, p)
	a = a or "?"
	if a:find(":", 1, true) then
		a = "[" .. a .. "]"
	end
	if p == nil then
		return a
	end
	return a .. ":" .. p
end

--- "HOST:PORT" or "[IPv6]:PORT" -> host, port (a number 0..65535), or nil.
function T.split_hostport(s)
	local host, port = tostring(s):match("^%[([^%]]+)%]:(%d+)$")
	if not host then
		host, port = tostring(s):match("^([^:]+):(%d+)$")
	end
	port = tonumber(port)
	if not host or port > 65535 then
		return nil
	end
	return host, port
end

--- One side of a flow's original tuple as text (ICMP: type and id).
function T.endpoint(t, which)
	if which == "src" then
		return T.hostport(t.src, t.sport or t.icmp_id)
	end
	return T.hostport(t.dst, t.dport)
end

function T.quote(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The shell prefix that runs a command in namespace ns: nothing for the
-- caller's own, `ip netns exec NAME` for a name under /run/netns,
-- `nsenter --net=PATH` for a path such as /proc/PID/ns/net.
function T.in_netns(ns)
	if ns == nil or ns == "" then
		return ""
	elseif ns:find("/", 1, true) then
		return "nsenter --net=" .. T.quote(ns) .. " "
	end
	return "ip netns exec " .. T.quote(ns) .. " "
end

--- Runs a shell command: ok, output (stdout and stderr).
function T.sh(cmd)
	local f = assert(io.popen("exec 2>&1\n" .. cmd .. "\necho \"@@rc=$?\""))
	local out = f:read("*a")
	f:close()
	local body, rc = out:match("^(.-)@@rc=(%d+)%s*$")
	return rc == "0", body or out
end

--- Every address of a namespace (nil: the caller's), from `ip -j addr`:
-- a set of address texts, or nil when `ip` cannot say.
function T.local_addresses(ns)
	local ok, out = T.sh(T.in_netns(ns) .. "ip -j addr show")
	local doc = ok and require("dkjson").decode(out)
	if type(doc) ~= "table" then
		return nil
	end
	local set = {}
	for _, link in ipairs(doc) do
		for _, a in ipairs(link.addr_info or {}) do
			if a["local"] then set[a["local"]] = true end
		end
	end
	return set
end

--- Reads a namespace's sysctl net.netfilter.NAME: the number, or nil.
-- (A file under /proc/sys/net shows the namespace of the process that
-- opens it: another namespace's is read by a command run there.)
function T.sysctl(ns, name)
	local path = "/proc/sys/net/netfilter/" .. name
	if ns == nil or ns == "" then
		local f = io.open(path)
		local v = f and f:read("*n")
		if f then f:close() end
		return v
	end
	local ok, out = T.sh(T.in_netns(ns) .. "cat " .. path)
	return ok and tonumber(out) or nil
end

--- Sets it: true, or nil and the command's message.
function T.set_sysctl(ns, name, value)
	local ok, out = T.sh(T.in_netns(ns) .. "sysctl -qw net.netfilter." .. name .. "=" .. value)
	if not ok then
		return nil, out
	end
	return true
end

local function list(v)
	if v == nil or type(v) == "table" then
		return v
	end
	return { v }
end

--- The filter the usual options describe (each a value or a list: any of):
-- proto, src, dst (addresses or CIDR prefixes), sport, dport, state, and
-- nat (a kind: none, snat, dnat, both, any).  Returns a conntrack filter,
-- or raises with the module's message on a bad value.
function T.filter(F, o)
	local parts = {}
	local function add(name, fn)
		local v = list(o[name])
		if v and #v > 0 then
			parts[#parts + 1] = fn((table.unpack or unpack)(v))
		end
	end
	add("proto", F.proto)
	add("src", F.src)
	add("dst", F.dst)
	add("sport", F.sport)
	add("dport", F.dport)
	add("state", F.state)
	if o.nat then
		parts[#parts + 1] = F.nat(o.nat)
	end
	return F.all((table.unpack or unpack)(parts))
end

--- The k first items by before(a, b) ("a comes first"), kept in order as
-- they come: returns the array (sorted) and add(item).  Cheap when most
-- items do not make it: compare with the array's last item first.
function T.best(k, before)
	local items = {}
	local function add(item)
		local n = #items
		if n >= k and (k == 0 or not before(item, items[n])) then
			return
		end
		local i = n < k and n + 1 or n
		while i > 1 and before(item, items[i - 1]) do
			items[i] = items[i - 1]
			i = i - 1
		end
		items[i] = item
	end
	return items, add
end

--- The options the tools share: -n/--netns, and -p/--proto, -s/--src,
-- -d/--dst for the filter (several values, or a comma list for -p: any of).
function T.common_options(parser)
	parser:option("-n --netns", "The namespace: a name under /run/netns or a path."):argname("<ns>")
	parser:option("-p --proto", "Only this protocol (repeatable, or a comma list)."):count("*")
		:argname("<proto>")
	parser:option("-s --src", "Only sources in this address or CIDR prefix (repeatable)."):count("*")
		:argname("<cidr>")
	parser:option("-d --dst", "Only destinations in this address or CIDR prefix (repeatable)."):count("*")
		:argname("<cidr>")
end

--- The filter those options (and o.nat, where a tool has it) describe; a
-- bad value ends the program with the usage and the module's message.
function T.options_filter(parser, F, o)
	local protos = {}
	for _, p in ipairs(o.proto or {}) do
		for _, w in ipairs(T.words(p, true)) do protos[#protos + 1] = w end
	end
	local ok, f = pcall(T.filter, F, { proto = protos, src = o.src, dst = o.dst, nat = o.nat })
	if not ok then
		T.usage_error(parser, tostring(f))
	end
	return f
end

--- Numbers of a comma-separated list ("80,443" -> {80, 443}); strings stay.
function T.words(s, numbers)
	local t = {}
	for w in tostring(s):gmatch("[^,%s]+") do
		t[#t + 1] = numbers and (tonumber(w) or w) or w
	end
	return t
end

return T
