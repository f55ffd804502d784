-- bench/benchlib.lua: what the benchmark drivers (bench.lua, bulk.lua,
-- events.lua) share: shell helpers, the guards every run needs, and the
-- sizes/--runs options; and the module paths of their timed children.
--   local B = require("benchlib").new("bench/bulk")   -- the prefix of its messages
local M = {}

function M.q(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- ok, exit code
function M.sh(cmd)
	local ok, _, code = os.execute(cmd)
	return ok == true or ok == 0, code
end

function M.capture(cmd)
	local f = assert(io.popen(cmd, "r"))
	local out = f:read("a")
	f:close()
	return out
end

-- A file's text, "" when it cannot be read.
function M.slurp(path)
	local f = io.open(path)
	if not f then
		return ""
	end
	local s = f:read("a")
	f:close()
	return s
end

-- For the timed children (loop.lua, bulkop.lua): the tree's module, after
-- LUA_PATH/LUA_CPATH when the caller set them (make bench does), else
-- before the system paths; and bench/'s own benchclock.so.
function M.use_tree(here)
	local root = here .. "/.."
	local function add(field, env, p)
		if os.getenv(env) then
			package[field] = package[field] .. ";" .. p
		else
			package[field] = p .. ";" .. package[field]
		end
	end
	add("path", "LUA_PATH", root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua")
	add("cpath", "LUA_CPATH", root .. "/build/" .. (jit and "jit" or _VERSION:match("%d+%.%d+")) .. "/?.so")
	package.cpath = here .. "/?.so;" .. package.cpath
end

-- Runs argv (an array of words) under bench/timeit, its stdout into out
-- (a file name; /dev/null when nil) and its stderr into err.  Returns
-- { wall = ns, rss = KiB, cpu = ns (user + system) }, or nil, why (timeit
-- failed, or the command exited non-zero: its first line on stderr).
function M.timeit(here, argv, out, err)
	local cmd = { M.q(here .. "/timeit"), "-o", M.q(out or "/dev/null") }
	for _, a in ipairs(argv) do
		cmd[#cmd + 1] = M.q(a)
	end
	local res = M.capture(table.concat(cmd, " ") .. " 2>" .. M.q(err))
	local wall, rss, code, cpu = res:match("^(%d+) (%d+) (%d+) (%d+)")
	local why = M.slurp(err):match("[^\n]+") or ""
	if not wall then
		return nil, "timeit failed: " .. why
	end
	if tonumber(code) ~= 0 then
		return nil, "exit " .. code .. ": " .. why
	end
	return { wall = tonumber(wall), rss = tonumber(rss), cpu = tonumber(cpu) }
end

-- The median of an array of numbers (nil when empty).
function M.median(t)
	if #t == 0 then
		return nil
	end
	local s = {}
	for i, x in ipairs(t) do
		s[i] = x
	end
	table.sort(s)
	local m = math.floor(#s / 2)
	if #s % 2 == 1 then
		return s[m + 1]
	end
	return (s[m] + s[m + 1]) / 2
end

local B = {}
B.__index = B

function M.new(prefix)
	return setmetatable({ prefix = prefix }, B)
end

function B:die(msg)
	io.stderr:write(self.prefix, ": ", msg, "\n")
	os.exit(1)
end

-- Refuses to run outside a namespace of tools/netns-run: the drivers flush
-- the table.
function B:need_netns(msg)
	if not os.getenv("LCT_NETNS") and os.getenv("BENCH_ANY_NETNS") ~= "1" then
		self:die(msg)
	end
end

-- The number of flows in this namespace's table (conntrack -C).
function M.count()
	return tonumber(M.capture("conntrack -C 2>/dev/null"):match("%d+"))
end

-- Empties the table (conntrack -F), and dies when it stays full.
function B:flush()
	M.sh("conntrack -F >/dev/null 2>&1")
	if M.count() ~= 0 then
		self:die("table not empty after conntrack -F")
	end
end

-- The helper programs of bench/ that must have been built.
function B:need_tools(here, names)
	for _, p in ipairs(names) do
		if not M.sh("test -x " .. M.q(here .. "/" .. p)) then
			self:die(here .. "/" .. p .. " missing: run make -C bench")
		end
	end
end

-- Table sizes from the arguments (else env BENCH_SIZES, else dflt) and the
-- number of runs (--runs=R, else env BENCH_RUNS, else 5).  Sizes below min
-- are refused.
function B:options(args, dflt, min)
	local sizes, runs = {}, tonumber(os.getenv("BENCH_RUNS") or "") or 5
	local function add(s)
		for w in s:gmatch("[^%s,]+") do
			local n = tonumber(w)
			if not n or n < min or n ~= math.floor(n) then
				self:die("bad size " .. M.q(w))
			end
			sizes[#sizes + 1] = math.tointeger(n)
		end
	end
	for _, a in ipairs(args) do
		local r = a:match("^%-%-runs=(%d+)$")
		if r then
			runs = tonumber(r)
		else
			add(a)
		end
	end
	if #sizes == 0 then
		add(os.getenv("BENCH_SIZES") or dflt)
	end
	if runs < 1 then
		self:die("BENCH_RUNS must be at least 1")
	end
	return sizes, runs
end

return M
