--- Helpers of the specs of the job examples (spec/6x-*_spec.lua): the tools
-- run as child processes, under each Lua the module builds for, in a given
-- namespace; their output parsed (Prometheus text, JSON, conntrack -S).
--
--   local J = require "jobhelp"
--   J.luas()                         -> { {bin = "lua5.4", v = "5.4"}, ... } (the module built for each)
--   J.run(ns, lua, "exporter.lua", args [, stdin]) -> ok, stdout, stderr, exit code
--   J.exec(cmd), J.sh(cmd)           a shell command, without the ASan preload of check-asan
--   J.check_usage("exporter.lua", {"--nosuch", ...})  --help exits 0, each bad one 2
--   local p = J.start(ns, lua, "exporter.lua", args, "listening on")   -- a background run
--   p.err(), p.stop() -> stdout, stderr
--   J.metrics(text)                  -> { {name =, labels = {...}, value =}, ... }
--   J.cli_stats(ns)                  -> { [cpu] = {found = n, ...} } from `conntrack -S`
--   J.get(url)                       -> body, status (luasocket)
--   J.poll(secs, fn)                 -> fn()'s first true value, tried every 0.1 s for secs
local hosts = require "hosts"
local H = require "helpers"

local J = {}
local q = hosts.quote

-- The checkout: this file's directory's parent, made absolute.
do
	local dir = debug.getinfo(1, "S").source:match("^@(.*)/spec/jobhelp%.lua$") or "."
	if dir:sub(1, 1) ~= "/" then
		local p = io.popen("pwd")
		dir = p:read("*l") .. "/" .. dir
		p:close()
	end
	J.ROOT = dir
end
-- The interpreter under test (make check's LCT_LUA), for tools run without one named.
J.LUA = os.getenv("LCT_LUA") or os.getenv("LUA") or "lua5.4"

local VERSIONS = {
	{ bin = "lua5.4", v = "5.4" }, { bin = "lua5.1", v = "5.1" },
	{ bin = "lua5.3", v = "5.3" }, { bin = "luajit", v = "jit" },
}

-- Under make check-asan the suite runs with the ASan runtime preloaded and
-- the module built with it (LCT_ASAN=1).  The tools are whole programs that
-- run others (ip, tmux, promtool, prometheus), which would inherit the
-- preload (Debian 12's `ip route get` trips ASan on a strncpy of its own):
-- they and the commands of these specs run without it, on the plain build.
local ASAN = os.getenv("LCT_ASAN") == "1"
local PRELOAD = os.getenv("LD_PRELOAD") and os.getenv("LD_PRELOAD") ~= ""

--- A shell command line that runs cmd without the ASan preload.
function J.plain(cmd)
	return PRELOAD and ("env -u LD_PRELOAD sh -c " .. q(cmd)) or cmd
end

--- hosts.run(J.plain(cmd)): ok, output, code.
function J.exec(cmd)
	return hosts.run(J.plain(cmd))
end

-- The environment that makes interpreter v load this tree's module built for it.
local function env(v)
	-- the suite's own LUA_CPATH names the build of the Lua running it
	local build = v == H.version and not ASAN and os.getenv("LUA_CPATH")
		and os.getenv("LUA_CPATH"):match("^([^;]*/)%?%.so")
	build = build or (J.ROOT .. "/build/" .. v .. "/")
	return ("env LUA_PATH=%s LUA_CPATH=%s "):format(q(J.ROOT .. "/lua/?.lua;;"), q(build .. "?.so;;"))
end

local built = {}
--- Every Lua the module is built for, building it for 5.1, 5.3 and LuaJIT
-- when that has not been done yet (make check builds 5.4 only).
function J.luas()
	local out = {}
	for _, l in ipairs(VERSIONS) do
		if built[l.v] == nil then
			local so = J.ROOT .. "/build/" .. l.v .. "/conntrack/core.so"
			local own = l.v == H.version and not ASAN -- the build make check made
			if not own and not H.read(so) then
				J.exec("cd " .. q(J.ROOT) .. " && make -s LUA_VERSION=" .. l.v .. " all >/dev/null 2>&1")
			end
			built[l.v] = own or H.read(so) ~= nil
		end
		if built[l.v] then out[#out + 1] = l end
	end
	return out
end

function J.lua(bin)
	for _, l in ipairs(VERSIONS) do
		if l.bin == bin then return l end
	end
	return { bin = bin, v = "5.4" }
end

--- The command line that runs examples/script under lua in namespace ns.
local function cmdline(ns, lua, script, args)
	lua = type(lua) == "table" and lua or J.lua(lua or J.LUA)
	return (PRELOAD and "env -u LD_PRELOAD " or "") .. (ns and ("ip netns exec " .. q(ns) .. " ") or "")
		.. env(lua.v) .. lua.bin .. " " .. q(J.ROOT .. "/examples/" .. script) .. " " .. (args or "")
end

J.cmdline = cmdline

local seq = 0
local function tmp(tag)
	seq = seq + 1
	return ("/tmp/lct-%s-job%d-%s"):format(hosts.pid, seq, tag)
end

--- Runs a tool to its end (at most 60 s): ok, stdout, stderr, exit code.
function J.run(ns, lua, script, args, stdin)
	local o, e, i = tmp("out"), tmp("err"), tmp("in")
	local f = assert(io.open(i, "w"))
	f:write(stdin or "")
	f:close()
	local _, rc = hosts.run(("cat %s | timeout 60 %s > %s 2> %s; echo \"@@$?\""):format(q(i),
		cmdline(ns, lua, script, args), q(o), q(e)))
	local out, err = H.read(o) or "", H.read(e) or ""
	os.remove(o)
	os.remove(e)
	os.remove(i)
	local code = tonumber(rc:match("@@(%d+)"))
	return code == 0, out, err, code
end

--- Starts a tool in the background (bounded by timeout 120) and waits, at
-- most 10 s, until its stderr holds `ready`.  p.pid, p.err(), p.out(),
-- p.stop() -> stdout, stderr (TERM, then KILL; waits until it is gone).
function J.start(ns, lua, script, args, ready)
	local p = { outf = tmp("out"), errf = tmp("err") }
	local ok, pid = hosts.run(("timeout 120 %s > %s 2> %s & echo $!")
		:format(cmdline(ns, lua, script, args), q(p.outf), q(p.errf)))
	assert(ok, pid)
	p.pid = pid:match("%d+")
	function p.err() return H.read(p.errf) or "" end
	function p.out() return H.read(p.outf) or "" end
	function p.stop()
		hosts.run(("kill %s 2>/dev/null; i=0; while kill -0 %s 2>/dev/null && [ $i -lt 100 ]; do "
			.. "sleep 0.05; i=$((i+1)); done; kill -KILL %s 2>/dev/null"):format(p.pid, p.pid, p.pid))
		local out, err = p.out(), p.err()
		os.remove(p.outf)
		os.remove(p.errf)
		return out, err
	end
	if ready then
		local seen = J.poll(10, function() return p.err():find(ready, 1, true) end)
		if not seen then
			local _, err = p.stop()
			error(script .. " did not say " .. ready .. "; stderr: " .. err, 2)
		end
	end
	return p
end

--- The usage conventions of a tool: --help prints the usage on stdout and
-- exits 0; each argument string of bad exits 2 with the usage and a message
-- on stderr.  Returns the help text.
function J.check_usage(script, bad)
	local assert = require "luassert"
	local ok, out, _, code = J.run(nil, nil, script, "--help")
	assert.is_true(ok, out)
	assert.equals(0, code)
	local usage = "Usage: " .. script
	assert.is_truthy(out:find(usage, 1, true), out)
	for _, args in ipairs(bad) do
		local ok2, _, err, code2 = J.run(nil, nil, script, args)
		assert.is_false(ok2, args)
		assert.equals(2, code2, args .. ": " .. err)
		assert.is_truthy(err:find(usage, 1, true), args .. ": " .. err)
	end
	return out
end

--- Samples of Prometheus text: { name =, labels = {k = v}, value = number }.
function J.metrics(text)
	local t = {}
	for line in text:gmatch("[^\n]+") do
		if not line:find("^#") then
			local name, ls, v = line:match("^([%w_:]+){(.-)} (%S+)$")
			if not name then
				name, v = line:match("^([%w_:]+) (%S+)$")
				ls = ""
			end
			local labels = {}
			for k, lv in ls:gmatch("([%w_]+)=\"(.-)\"") do labels[k] = lv end
			t[#t + 1] = { name = name, labels = labels, value = tonumber(v) }
		end
	end
	return t
end

--- The samples of one metric whose labels include all of want.
function J.select(samples, name, want)
	local out = {}
	for _, s in ipairs(samples) do
		if s.name == name then
			local all = true
			for k, v in pairs(want or {}) do
				if s.labels[k] ~= tostring(v) then all = false break end
			end
			if all then out[#out + 1] = s end
		end
	end
	return out
end

--- The value of the one sample of name with labels want (error if not one).
function J.value(samples, name, want)
	local s = J.select(samples, name, want)
	if #s ~= 1 then
		error(("%d samples of %s for the labels given"):format(#s, name), 2)
	end
	return s[1].value
end

--- `conntrack -S` in ns: { [cpu] = {counter = value, ...} }.
function J.cli_stats(ns)
	local t = {}
	for _, line in ipairs(H.cli_ok(ns, "-S")) do
		local cpu = tonumber(line:match("^cpu=(%d+)"))
		if cpu then
			t[cpu] = {}
			for k, v in line:gmatch("([%w_]+)=(%d+)") do
				if k ~= "cpu" then t[cpu][k] = tonumber(v) end
			end
		end
	end
	return t
end

--- GET url with luasocket: body, status code.
function J.get(url)
	local http = require "socket.http"
	local body, code = http.request(url)
	return body, code
end

--- Calls fn every 0.1 s until it returns a true value (returned), for at most secs.
function J.poll(secs, fn)
	local socket = require "socket"
	local stop = socket.gettime() + secs
	repeat
		local v = fn()
		if v then return v end
		socket.sleep(0.1)
	until socket.gettime() > stop
	return fn()
end

--- Runs a command, raising with its output when it fails; returns the output.
function J.sh(cmd)
	local ok, out = J.exec(cmd)
	if not ok then error(cmd .. ": " .. out, 2) end
	return out
end

return J
