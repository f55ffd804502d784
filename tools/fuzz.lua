--- tools/fuzz.lua: a seeded random-call fuzzer of the whole public API of
-- lua-conntrack (plain Lua: 5.1, 5.3, 5.4, LuaJIT).
--
-- As root, inside a private network namespace (it fills and flushes the
-- table of the namespace it runs in), with lua/ and tools/ on LUA_PATH and
-- the module on LUA_CPATH (make fuzz sets them):
--   tools/netns-run lua5.4 tools/fuzz.lua [-n CALLS] [--chunk CALLS] [--seed S] [-j JOBS]
--       [--timeout SECS] [--child-env "VAR=value ..."] [--skip PATTERN]... [--no-callbacks]
--       [--tame-binary] [--lua INTERPRETER]
--   tools/netns-run lua5.4 tools/fuzz.lua --child SEED CALLS [--trace] [--skip PATTERN]...
-- (make fuzz N=CALLS and make fuzz-asan run it.)
--
-- The parent runs chunks of CALLS calls, each in a child process (`timeout
-- SECS LUA tools/fuzz.lua --child SEED CALLS`), so that a crash (a signal)
-- or a hang (the timeout) is counted with its seed; a chunk that crashed
-- or hung is run once more with --trace to show its last calls.  The child
-- calls every module function, handle method, entry, tuple, expectation,
-- matcher, subscription and dump-state method and field, and every
-- function of ct.filter, ct.nat, ct.format and conntrack.addr (the handle's
-- methods are found in conntrack.core's method tables, so new ones are
-- called too), with arguments of every type: callbacks and metatables
-- that close the objects in use, raise or return junk, finalizers that
-- close or change objects while C code runs, coroutines.  Every rejection
-- must be a Lua error "[file:line: ]fname: ..." or a `nil, "fname: ...",
-- errno` return; anything else is a convention violation, reported with
-- its seed and call number.  A rejection that names another function than
-- the one called is counted apart ("misnamed").  Blocking waits always get
-- a timeout of at most 0.01 s (or an invalid one): a hang is a defect.
--
-- Replay a chunk: tools/netns-run lua5.4 tools/fuzz.lua --child SEED CALLS --trace
-- (the calls are written to stderr as they are made; a replay makes the
-- same calls, but the kernel's answers and the collector's timing may
-- differ).  To explore past a known defect: --skip PATTERN leaves out the
-- calls whose label matches (a Lua pattern: "^sub:next$"), --no-callbacks
-- passes no callback, metatable or finalizer that closes or raises, and
-- --tame-binary keeps unprintable bytes out of the first 48 bytes of the
-- big binary strings.

local unpack = table.unpack or unpack
local floor, huge = math.floor, math.huge
local concat, sort = table.concat, table.sort

-- ---------------------------------------------------------------------
-- Arguments

local function usage(msg)
	io.stderr:write("fuzz.lua: ", msg, "\n",
		"usage: fuzz.lua [-n CALLS] [--chunk CALLS] [--seed S] [-j JOBS] [--timeout SECS]\n",
		"                [--child-env \"VAR=value ...\"] [--skip PATTERN]... [--no-callbacks] [--tame-binary]\n",
		"       fuzz.lua --child SEED CALLS [--trace] [--skip PATTERN]... [--no-callbacks]\n")
	os.exit(2)
end

local opt = { n = 100000, chunk = 2000, jobs = 1, skip = {}, callbacks = true }
do
	local i = 1
	local function val()
		i = i + 1
		if arg[i] == nil then
			usage("missing value after " .. arg[i - 1])
		end
		return arg[i]
	end
	local function num()
		local v = tonumber(val())
		if not v then
			usage("a number expected after " .. arg[i - 1])
		end
		return v
	end
	while arg[i] do
		local a = arg[i]
		if a == "--child" then
			opt.child = true
			opt.seed = num()
			opt.n = num()
		elseif a == "-n" then
			opt.n = num()
		elseif a == "--chunk" then
			opt.chunk = num()
		elseif a == "--seed" then
			opt.seed = num()
		elseif a == "-j" then
			opt.jobs = num()
		elseif a == "--timeout" then
			opt.timeout = num()
		elseif a == "--child-env" then
			opt.env = val()
		elseif a == "--lua" then
			opt.lua = val()
		elseif a == "--skip" then
			opt.skip[#opt.skip + 1] = val()
		elseif a == "--trace" then
			opt.trace = true
		elseif a == "--no-callbacks" then
			opt.callbacks = false
		elseif a == "--tame-binary" then
			opt.tame = true
		else
			usage("unknown argument " .. a)
		end
		i = i + 1
	end
end

-- Never in the host's namespace.
require("hosts").refuse_host_namespace("fuzz.lua")

-- =====================================================================
-- The parent: chunks in child processes
-- =====================================================================

local function shquote(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function parent()
	io.stdout:setvbuf("line")
	local lua = opt.lua
	if not lua then
		local j = -1
		while arg[j - 1] do
			j = j - 1
		end
		local parts = {}
		for k = j, -1 do
			parts[#parts + 1] = shquote(arg[k])
		end
		lua = concat(parts, " ")
	end
	local script = shquote(arg[0])
	local seed0 = opt.seed or (os.time() % 1000000) * 1000
	local chunks = math.ceil(opt.n / opt.chunk)
	local limit = opt.timeout or math.max(60, opt.chunk / 20)
	local extra = ""
	for _, s in ipairs(opt.skip) do
		extra = extra .. " --skip " .. shquote(s)
	end
	if not opt.callbacks then
		extra = extra .. " --no-callbacks"
	end
	if opt.tame then
		extra = extra .. " --tame-binary"
	end
	local env = opt.env and ("env " .. opt.env .. " ") or ""
	local function command(seed, n, trace)
		return ("timeout -k 5 %d %s%s %s --child %d %d%s%s 2>&1; echo \"__EXIT $?\""):format(
			limit, env, lua, script, seed, n, extra, trace and " --trace" or "")
	end

	local total = { calls = 0, ok = 0, raised = 0, refused = 0, cb = 0, closed = 0, events = 0 }
	local crashes, hangs, died = {}, {}, {}
	local viol, misn, vorder, morder = {}, {}, {}, {}
	local called = {}
	local t0 = os.time()

	-- Reads one child's whole output; returns its exit status and lines.
	local function finish(p)
		local lines, status = {}, nil
		for line in p:lines() do
			local s = line:match("^__EXIT (%d+)$")
			if s then
				status = tonumber(s)
			else
				lines[#lines + 1] = line
			end
		end
		p:close()
		return status, lines
	end

	-- The last n lines of a child's output; of a sanitizer's report, its
	-- first line, the first frames and its summary instead.
	local function tail(lines, n)
		local out = {}
		for k, l in ipairs(lines) do
			if l:find("ERROR: AddressSanitizer", 1, true) or l:find("ERROR: LeakSanitizer", 1, true) then
				out[1] = "    | " .. l
				for j = k + 1, #lines do
					if lines[j]:match("^%s+#%d+ ") and #out < 10 then
						out[#out + 1] = "    | " .. lines[j]
					elseif lines[j]:match("^SUMMARY") then
						out[#out + 1] = "    | " .. lines[j]
						break
					end
				end
				return concat(out, "\n")
			end
		end
		for k = #lines, 1, -1 do
			if #out >= n then
				break
			end
			if not lines[k]:match("^L %d+ ") then
				table.insert(out, 1, "    | " .. lines[k])
			end
		end
		return concat(out, "\n")
	end

	-- The last calls of a chunk that crashed or hung, from a traced rerun.
	local function retrace(seed, n)
		local p = io.popen(command(seed, n, true))
		local status, lines = finish(p)
		local calls = {}
		for _, l in ipairs(lines) do
			if l:match("^T ") then
				calls[#calls + 1] = l
			end
		end
		local last = {}
		for k = math.max(1, #calls - 2), #calls do
			last[#last + 1] = "    " .. calls[k]
		end
		return status, concat(last, "\n"), lines
	end

	local function absorb(seed, n, status, lines)
		local done = false
		for _, l in ipairs(lines) do
			local f = {}
			for part in (l .. "\t"):gmatch("([^\t]*)\t") do
				f[#f + 1] = part
			end
			if f[1] == "VIOL" or f[1] == "MISN" then
				local set, order = f[1] == "VIOL" and viol or misn, f[1] == "VIOL" and vorder or morder
				local sig = f[2]
				local v = set[sig]
				if not v then
					v = { count = 0, seed = seed, callno = f[3], label = f[4], msg = f[5], args = f[6] }
					set[sig] = v
					order[#order + 1] = sig
				end
				v.count = v.count + (tonumber(f[7]) or 1)
			elseif f[1] == "CALLED" then
				for k = 2, #f do
					local name, c = f[k]:match("^(.-)=(%d+)$")
					if name then
						called[name] = (called[name] or 0) + (tonumber(c) or 0)
					end
				end
			elseif f[1] == "DONE" then
				done = true
				total.calls = total.calls + tonumber(f[2])
				total.ok = total.ok + tonumber(f[3])
				total.raised = total.raised + tonumber(f[4])
				total.refused = total.refused + tonumber(f[5])
				total.cb = total.cb + tonumber(f[6])
				total.closed = total.closed + tonumber(f[7] or 0)
				total.events = total.events + tonumber(f[8] or 0)
			end
		end
		-- the labels of the last calls the child began
		local began = {}
		for _, l in ipairs(lines) do
			if l:match("^L %d+ ") then
				began[#began + 1] = l
			end
		end
		began = concat(began, "\n    ", math.max(1, #began - 2))
		if status == 124 or status == 137 then
			local _, last = retrace(seed, n)
			hangs[#hangs + 1] = seed
			print(("HANG  seed %d (%d calls, over %d s); replay: fuzz.lua --child %d %d --trace; last calls begun:" ..
				"\n    %s\n  and of the replay:\n%s"):format(seed, n, limit, seed, n, began, last))
		elseif status and status > 128 then
			local _, last = retrace(seed, n)
			crashes[#crashes + 1] = seed
			print(("CRASH seed %d: signal %d; replay: fuzz.lua --child %d %d --trace; output:\n%s\n" ..
				"  last calls begun:\n    %s\n  and of the replay:\n%s")
				:format(seed, status - 128, seed, n, tail(lines, 12), began, last))
		elseif status ~= 0 or not done then
			died[#died + 1] = seed
			if #died <= 3 then
				print(("DIED  seed %d: exit %s; replay: fuzz.lua --child %d %d --trace; output:\n%s")
					:format(seed, tostring(status), seed, n, tail(lines, 30)))
			else
				print(("DIED  seed %d: exit %s"):format(seed, tostring(status)))
			end
		end
	end

	local k, report = 0, 0
	while k < chunks do
		local running = {}
		for _ = 1, opt.jobs do
			if k >= chunks then
				break
			end
			local n = math.min(opt.chunk, opt.n - k * opt.chunk)
			local seed = seed0 + k
			running[#running + 1] = { seed = seed, n = n, p = io.popen(command(seed, n)) }
			k = k + 1
		end
		for _, r in ipairs(running) do
			local status, lines = finish(r.p)
			absorb(r.seed, r.n, status, lines)
		end
		if floor(k * 10 / chunks) > report and k < chunks then
			report = floor(k * 10 / chunks)
			print(("fuzz: %d%%: %d calls, %d s"):format(report * 10, total.calls, os.time() - t0))
		end
	end

	local function show(set, order, head)
		if #order == 0 then
			return
		end
		print(head)
		sort(order, function(a, b) return set[a].count > set[b].count end)
		for _, sig in ipairs(order) do
			local v = set[sig]
			print(("  %dx  %s\n       %s\n       first: seed %d call %s, args %s"):format(v.count, v.label,
				v.msg, v.seed, v.callno, v.args))
		end
	end
	show(viol, vorder, "convention violations (kind: count, call, message, first seed and call):")
	show(misn, morder, "misnamed (the message names another function than the one called):")

	local names, never = {}, {}
	for name in pairs(called) do
		names[#names + 1] = name
	end
	sort(names)
	for _, name in ipairs(names) do
		if called[name] == 0 then
			never[#never + 1] = name
		end
	end
	if #never > 0 then
		print("never called: " .. concat(never, " "))
	end
	local nv, nm = 0, 0
	for _, sig in ipairs(vorder) do
		nv = nv + viol[sig].count
	end
	for _, sig in ipairs(morder) do
		nm = nm + misn[sig].count
	end
	print(("fuzz: %d returned, %d raised (%d of them on a closed object), %d refused, %d callback errors; " ..
		"%d events read"):format(total.ok, total.raised, total.closed, total.refused, total.cb, total.events))
	print(("fuzz: %s: %d calls (of the chunks that ran to their end; %d chunks from seed %d, %d functions " ..
		"and methods) in %d s: %d crashes, " ..
		"%d hangs, %d convention violations (%d kinds), %d misnamed (%d kinds), %d abnormal exits")
		:format(opt.env and (lua .. " [" .. opt.env:match("^%S*") .. "]") or lua, total.calls, chunks, seed0,
			#names, os.time() - t0, #crashes, #hangs, nv, #vorder, nm, #morder, #died))
	os.exit((#crashes + #hangs + #died + nv) == 0 and 0 or 1)
end

if not opt.child then
	return parent()
end

-- =====================================================================
-- The child: N random calls
-- =====================================================================

local ct = require "conntrack"
local core = require "conntrack.core"
local F, NAT, FMT = ct.filter, ct.nat, ct.format
local ADDR = require "conntrack.addr"

-- Park-Miller: the same sequence on every Lua.
local rstate
local function rnd()
	rstate = rstate * 48271 % 2147483647
	return (rstate - 1) / 2147483646
end
local function rint(a, b)
	return a + floor(rnd() * (b - a + 1))
end
local function chance(p)
	return rnd() < p
end
local function pick(t)
	return t[rint(1, #t)]
end
rstate = (opt.seed * 7919 + 1) % 2147483646 + 1
for _ = 1, 8 do
	rnd()
end

local JIT = type(jit) == "table"
local skip = opt.skip
local tracing = opt.trace
local callbacks = opt.callbacks

-- ---------------------------------------------------------------------
-- Reports

-- closed: rejections because the object was closed (often by a callback
-- in the middle of the call); events: flow events the subscriptions read.
local stats = { calls = 0, ok = 0, raised = 0, refused = 0, cb = 0, closed = 0, events = 0 }
local called = {}
local reported = {}
local callno = 0

local function oneline(s, max)
	s = tostring(s):gsub("[%c\t]", function(c) return ("\\x%02x"):format(c:byte()) end)
	if #s > max then
		s = s:sub(1, max) .. "...(" .. #s .. " bytes)"
	end
	return s
end

-- A short text of a value, for reports and traces.
local DESC = setmetatable({}, { __mode = "k" })
local function desc(v, depth)
	local t = type(v)
	if t == "string" then
		if #v > 40 then
			return ("%q"):format(v:sub(1, 24)):gsub("\\\n", "\\n") .. "..(" .. #v .. " bytes)"
		end
		return (("%q"):format(v):gsub("\\\n", "\\n"))
	elseif t == "number" then
		if v ~= v then
			return "0/0"
		elseif v == huge then
			return "1/0"
		elseif v == -huge then
			return "-1/0"
		end
		return tostring(v)
	elseif t == "table" then
		if DESC[v] then
			return DESC[v]
		end
		depth = depth or 0
		if depth > 1 then
			return "{..}"
		end
		local parts, n = {}, 0
		for k, x in next, v do
			n = n + 1
			if n > 8 then
				parts[#parts + 1] = "..."
				break
			end
			if type(k) == "string" and k:match("^[%a_][%w_]*$") then
				parts[#parts + 1] = k .. "=" .. desc(x, depth + 1)
			elseif k == n then
				parts[#parts + 1] = desc(x, depth + 1)
			else
				parts[#parts + 1] = "[" .. desc(k, depth + 1) .. "]=" .. desc(x, depth + 1)
			end
		end
		local mt = getmetatable(v)
		local s = "{" .. concat(parts, ",") .. "}"
		if mt == F.Filter then
			local ok, text = pcall(tostring, v)
			return ok and ("F<" .. oneline(text, 60) .. ">") or "F<?>"
		elseif mt ~= nil then
			local m = {}
			if type(mt) == "table" then
				for k in next, mt do
					m[#m + 1] = tostring(k)
				end
			end
			s = "setmetatable(" .. s .. ",{" .. concat(m, ",") .. "})"
		end
		return s
	elseif t == "function" then
		return DESC[v] or "function"
	elseif t == "userdata" then
		local ok, k = pcall(ct.type, v)
		return "<" .. (ok and k or "userdata") .. ">"
	end
	return t
end

local function args_desc(n, args)
	local parts = {}
	for i = 1, n do
		parts[i] = desc(args[i])
	end
	return oneline(concat(parts, ", "), 400)
end

-- Messages stripped of what varies, for grouping.
local function signature(label, msg)
	msg = msg:gsub("^%S-:%d+: ", ""):gsub("'[^']*'", "'~'"):gsub("%d+", "N"):gsub("0xN%x*", "P")
		:gsub("%(local '[^']*'%)", ""):gsub("%(field '[^']*'%)", "")
	return label .. " | " .. msg
end

local function report(kind, label, msg, n, args)
	local sig = signature(label, msg)
	local r = reported[sig]
	if r then
		r.count = r.count + 1
		return
	end
	reported[sig] = { count = 1, kind = kind, line = { kind, oneline(sig, 400), tostring(callno), label,
		oneline(msg, 300),
		args_desc(n, args) } }
	reported[#reported + 1] = sig
	if tracing then
		io.stderr:write(kind, " ", label, ": ", oneline(msg, 300), "\n")
	end
end

-- The function a message names: "[file:line: ]name: ...".
local function named(msg)
	local rest = msg:gsub("^%S-:%d+: ", "", 1)
	return rest:match("^([%a_][%w_.]*): "), rest
end

-- Functions whose nil, why returns are documented (no errno).
local NILWHY = { ["addr.parse"] = true, ["addr.canonical"] = true, ["addr.split_hostport"] = true,
	["core.cidr"] = true, ["core.pton"] = true }

local POOLED -- forward: harvests objects from results

local function check(label, names, n, args, res, rn)
	stats.calls = stats.calls + 1
	called[label] = (called[label] or 0) + 1
	if names == false then
		return	-- conntrack.core's own functions: crashes and hangs only
	end
	if not res[1] then
		local err = res[2]
		if type(err) == "table" and rawget(err, "FUZZCB") then
			stats.cb = stats.cb + 1
			return
		end
		if type(err) ~= "string" then
			stats.raised = stats.raised + 1
			report("VIOL", label, "error value of type " .. type(err) .. ": " .. desc(err), n, args)
			return
		end
		if err:find("FUZZCB", 1, true) then
			stats.cb = stats.cb + 1
			return
		end
		stats.raised = stats.raised + 1
		if err:find("attempt to use a closed", 1, true) then
			stats.closed = stats.closed + 1
		end
		local name, rest = named(err)
		if #err > 1000 then
			report("VIOL", label, ("message of %d bytes: %s"):format(#err, rest), n, args)
		end
		if not name then
			report("VIOL", label, rest, n, args)
		elseif names and not names[name] then
			report("MISN", label, rest, n, args)
		end
		return
	end
	if res[2] == nil and rn >= 3 and res[3] ~= nil and not NILWHY[label] then
		local msg, errno = res[3], res[4]
		stats.refused = stats.refused + 1
		if type(msg) ~= "string" then
			report("VIOL", label, "nil and a " .. type(msg) .. " returned", n, args)
			return
		end
		local name = msg:match("^([%a_][%w_.]*): ")
		if not name then
			if not NILWHY[label] then
				report("VIOL", label, "nil, " .. msg .. " (the message names no function)", n, args)
			end
		elseif errno == nil and not NILWHY[label] then
			report("VIOL", label, "nil, " .. msg .. " without an errno", n, args)
		elseif errno ~= nil and (type(errno) ~= "number" or errno ~= floor(errno) or errno <= 0) then
			report("VIOL", label, "nil, " .. msg .. ", errno " .. desc(errno), n, args)
		elseif names and not names[name] then
			report("MISN", label, "nil, " .. msg, n, args)
		end
		return
	end
	stats.ok = stats.ok + 1
	if label:find("sub:", 1, true) or label:find("events", 1, true) then
		local r = res[2]
		if type(r) == "table" and getmetatable(r) == nil then
			for _, ev in ipairs(r) do
				if ct.type(ev) == "entry" then
					stats.events = stats.events + 1
				end
			end
		elseif ct.type(r) == "entry" then
			stats.events = stats.events + 1
		end
	end
	for i = 2, rn do
		POOLED(res[i])
	end
end

local function pack(...)
	return { n = select("#", ...), ... }
end

local CUR = {}	-- the objects the call at hand uses: h, sub, dump
local incall = 0	-- depth of checked calls under way

-- The end of a checked call: before anything is allocated.
local function left(...)
	incall = incall - 1
	return pack(...)
end

-- call(label, names, f, ...): one call, checked.  names: the set of function
-- names its messages may carry (nil: any; false: conntrack.core's own
-- functions, whose messages are not checked).  Returns pcall's results.
local function call(label, names, f, ...)
	for i = 1, #skip do
		if label:find(skip[i]) then
			return false, "skipped"
		end
	end
	callno = callno + 1
	local n, args = select("#", ...), { ... }
	if tracing then
		io.stderr:write("T ", callno, " ", label, "(", args_desc(n, args), ")\n")
	else
		io.stderr:write("L ", callno, " ", label, "\n")	-- the last ones tell where a crash or hang was
	end
	incall = incall + 1
	local res = left(pcall(f, ...))
	check(label, names, n, args, res, res.n)
	return unpack(res, 1, res.n)
end

local function set(...)
	local s = {}
	for _, k in ipairs { ... } do
		s[k] = true
	end
	return s
end

-- ---------------------------------------------------------------------
-- Objects at hand

local P = { handle = {}, sub = {}, dump = {}, entry = {}, tuple = {}, expect = {}, matcher = {},
	filter = {}, closed = {} }
local PMAX = { handle = 6, sub = 6, dump = 8, entry = 64, tuple = 16, expect = 16, matcher = 16,
	filter = 32, closed = 4 }

local function keep(kind, v)
	local l = P[kind]
	if #l < PMAX[kind] then
		l[#l + 1] = v
	else
		l[rint(1, #l)] = v
	end
end

local kind_of = {
	handle = "handle", ["closed handle"] = "closed", subscription = "sub", ["closed subscription"] = "sub",
	dump = "dump", ["closed dump"] = "dump", entry = "entry", tuple = "tuple", expectation = "expect",
	matcher = "matcher", filter = "filter",
}

POOLED = function(v, depth)
	local tv = type(v)
	if tv == "userdata" or (tv == "table" and getmetatable(v) == F.Filter) then
		local ok, t = pcall(ct.type, v)
		local kind = ok and kind_of[t]
		if kind == "dump" then
			keep("dump", { st = v, it = function(s) return s:next() end })
		elseif kind then
			keep(kind, v)
		end
	elseif tv == "table" and (depth or 0) < 2 and getmetatable(v) == nil then
		local k = 0
		for _, x in pairs(v) do
			k = k + 1
			if k > 100 then
				break
			end
			if type(x) == "userdata" or type(x) == "table" then
				POOLED(x, (depth or 0) + 1)
			end
		end
	end
end

-- The private handle that sets the scene (flows for events, masters for
-- expectations); no callback ever closes it.
local SH = assert(ct.open())

-- ---------------------------------------------------------------------
-- Values

local NUMBERS = { 0, 1, -1, 2, 3, 7, 8, 21, 31, 32, 42, 53, 80, 127, 128, 255, 256, 1000, 1023, 1024, 1025,
	4095, 4096, 65535, 65536, -65536, 2 ^ 31 - 1, 2 ^ 31, 2 ^ 32 - 1, 2 ^ 32, 2 ^ 53, -2 ^ 53, 2 ^ 63, -2 ^ 63,
	2 ^ 64, 0.5, 1.5, -0.5, 3.0, 1e-300, 1e300, -1e300, 0 / 0, huge, -huge, 0.001, 0.01 }
if math.tointeger then
	for _, v in ipairs { 2 ^ 31, 2 ^ 32 - 1, 2 ^ 32, 2 ^ 53, -2 ^ 53, 3.0, 65536.0 } do
		NUMBERS[#NUMBERS + 1] = math.tointeger(v)
	end
	NUMBERS[#NUMBERS + 1] = math.maxinteger
	NUMBERS[#NUMBERS + 1] = math.mininteger
	NUMBERS[#NUMBERS + 1] = math.maxinteger - 1
	NUMBERS[#NUMBERS + 1] = math.mininteger + 1
end

local NAMES = { "tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "gre", "udplite", "ipv4", "ipv6", "inet",
	"inet6", "ip", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "SYN_RECV", "CLOSE", "NONE", "LISTEN", "CLOSED",
	"COOKIE_WAIT", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "established", "ASSURED", "SEEN_REPLY",
	"!DYING", "UNREPLIED", "CONFIRMED", "EXPECTED", "DYING", "SRC_NAT", "DST_NAT", "FIXED_TIMEOUT",
	"TEMPLATE", "OFFLOAD", "!ASSURED", "ASSURED,SEEN_REPLY", "new", "update", "destroy", "conntrack",
	"expect", "dying", "unconfirmed", "create", "add", "delete", "extended", "id", "ktimestamp", "labels",
	"xml", "default", "library", "save", "json", "extended,id", "id,xml,labels", "snat", "dnat", "both", "any",
	"none", "ftp", "sip", "irc", "tftp", "-A", "-I", "-U", "-D", "PERMANENT", "INACTIVE", "USERSPACE",
	"original", "reply", "client", "server", "lo-hi", "1-2", "10:20", "42/0xff", "0x10/0xf0", "0-",
	"-5", "1000-1005", "65535-0", "mark", "src", "dst", "proto", "sport", "dport", "status", "zone",
	"timeout", "filter", "all", "not", "const", "field", "values", "op" }

local ADDRS = { "192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.1", "198.51.100.2", "203.0.113.5",
	"2001:db8::1", "2001:db8::2", "2001:db8:1::1", "192.0.2.0/24", "2001:db8::/32", "198.51.100.0/25",
	"0.0.0.0", "::", "255.255.255.255", "0.0.0.0/0", "::/0", "::ffff:192.0.2.1", "[2001:db8::1]:53",
	"192.0.2.1:80", ":80", "[2001:db8::1]", "192.0.2.1:0", "192.0.2.1:65535" }
local BAD_ADDRS = { "1.2.3", "256.1.1.1", "192.0.2.1/33", "2001:db8::/129", "::1::2", "192.0.2.1 ",
	" 192.0.2.1", "192.0.2.1\0x", "fe80::1%eth0", "1.2.3.4.5", "/24", "192.0.2.1/", "192.0.2.1/-1",
	"abc", "", "192.0.2.1:65536", "192.0.2.1:-1", "[2001:db8::1", "[::1]x", "192.0.2.01", "0x7f.1",
	"1e3.0.0.1", "2001:db8::g", "192.0.2.1/24/3", "192.0.2.1:", "[]", ":", "192.0.2.1:80:81" }

-- 100 KB of binary and other big strings, made once.
local BIG = {}
do
	local b = {}
	for i = 1, 100 * 1024 do
		b[i] = string.char(rint(0, 255))
	end
	-- --tame-binary: printable first bytes, for the C core's message of a
	-- bad string value (lct_shortval) overflowed on 40 unprintable bytes.
	if opt.tame then
		for i = 1, 48 do
			b[i] = "b"
		end
	end
	BIG[1] = concat(b)
	BIG[2] = ("a"):rep(100 * 1024)
	BIG[3] = ("-A -t 10 -u ASSURED "):rep(5000)
	BIG[4] = ("192.0.2.1,"):rep(10000)
	BIG[5] = ("x\0"):rep(50000)
	BIG[6] = ("9"):rep(4000)
	BIG[7] = BIG[1]:sub(49, 112)	-- 64 bytes of binary
	if opt.tame then
		BIG[7] = "b" .. BIG[7]:gsub("[^%w]", "")
	end
end

-- Namespaces: only this one, or none that exists.  Paths and names of
-- namespaces are never made at random (see rstr).
local OWN_NS = os.getenv("LCT_NETNS")
local NETNS = { "/proc/self/ns/net", "/proc/thread-self/ns/net", "/dev/null", "/nonexistent/ns",
	"no-such-ns-fuzz", "", ".", "..", "a\0b", BIG[2], 42, true, {}, "/proc/self/ns/mnt" }
if OWN_NS then
	NETNS[#NETNS + 1] = OWN_NS
	NETNS[#NETNS + 1] = "/run/netns/" .. OWN_NS
end
local netns_exist = {}
do
	local p = io.popen("env -u LD_PRELOAD ls /run/netns 2>/dev/null")
	for l in p:lines() do
		netns_exist[l] = true
	end
	p:close()
end

local ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:,!%[]{}\0\1\n\t\255"
local function rstr()
	local n = rint(0, 12)
	local t = {}
	for i = 1, n do
		local k = rint(1, #ALPHA)
		t[i] = ALPHA:sub(k, k)
	end
	local s = concat(t)
	if netns_exist[s] then
		s = s .. "?"
	end
	return s
end

local function str()
	local r = rnd()
	if r < 0.35 then
		return pick(NAMES)
	elseif r < 0.55 then
		return pick(ADDRS)
	elseif r < 0.7 then
		return pick(BAD_ADDRS)
	elseif r < 0.95 then
		return rstr()
	end
	return pick(BIG)
end

local function num()
	if chance(0.5) then
		return pick(NUMBERS)
	end
	return rint(-10, 70000)
end

-- ---------------------------------------------------------------------
-- Callbacks: close the objects in use, raise, return junk

local any, hostile

local function close_obj(o)
	if o == nil then
		return
	end
	if type(o) == "table" then
		o = o.st
	end
	pcall(function() o:close() end)
end

-- Closes something: most often an object the call at hand uses.
local function close_something()
	local r = rnd()
	if r < 0.3 and CUR.h then
		return close_obj(CUR.h)
	elseif r < 0.5 and CUR.sub then
		return close_obj(CUR.sub)
	elseif r < 0.7 and CUR.dump then
		return close_obj(CUR.dump)
	end
	local kind = pick { "handle", "sub", "dump" }
	local l = P[kind]
	if #l > 0 then
		close_obj(l[rint(1, #l)])
	end
	if chance(0.1) then
		close_obj(ct.default())
	end
end

local cberr = { FUZZCB = true }
local MUT = {}	-- tables the call at hand was given: finalizers may change them

-- (Filter objects are never changed: their fields are not the API.)
local function mutate_something()
	local t = MUT[rint(1, #MUT + 1)]
	if type(t) ~= "table" or getmetatable(t) == F.Filter then
		return
	end
	local r = rnd()
	if r < 0.3 then
		local n = rawlen and rawlen(t) or #t	-- its own __len may answer anything
		rawset(t, n + 1, { op = "all", { field = "proto", values = { 6 } } })
	elseif r < 0.5 then
		local k = next(t)
		if k ~= nil then
			t[k] = nil
		end
	elseif r < 0.7 then
		t[pick { "src", "dst", "proto", "values", "op", "field", 1, 2, "timeout", "filter" }] = any(1)
	else
		for i = 1, rint(1, 50) do
			t[i] = { field = "mark", values = { { 1, 2 } } }
		end
	end
end

local CBKINDS = { "closer", "closer", "closer", "raiser", "junk", "true", "false", "gc", "mutator",
	"yielder", "closer-raiser" }

local function callback(kind)
	kind = kind or pick(CBKINDS)
	local f
	if kind == "closer" then
		f = function()
			close_something()
			return chance(0.5) or any(1)
		end
	elseif kind == "closer-raiser" then
		f = function()
			close_something()
			error(cberr)
		end
	elseif kind == "raiser" then
		f = function()
			if chance(0.5) then
				error("FUZZCB raised", 0)
			end
			error(cberr)
		end
	elseif kind == "junk" then
		f = function()
			return any(1), any(1)
		end
	elseif kind == "true" then
		f = function() return true end
	elseif kind == "false" then
		f = function() return false end
	elseif kind == "gc" then
		f = function()
			collectgarbage()
			return true
		end
	elseif kind == "mutator" then
		f = function()
			mutate_something()
			return true
		end
	else -- yielder: inside a coroutine, tries to suspend the call
		f = function()
			local ok, e = pcall(coroutine.yield, "FUZZCB")
			if not ok and not tostring(e):find("outside a coroutine", 1, true) and
				not tostring(e):find("yield across", 1, true) and
				not tostring(e):find("attempt to yield", 1, true) then
				error("FUZZCB yield: " .. tostring(e), 0)
			end
			return true
		end
	end
	DESC[f] = kind
	return f
end

-- Garbage with finalizers that close or change objects whenever the
-- collector runs (inside the module's C code, often).
local newgc
if _VERSION == "Lua 5.1" then
	newgc = function(fn)
		local p = newproxy(true)
		getmetatable(p).__gc = fn
		return p
	end
else
	newgc = function(fn)
		return setmetatable({}, { __gc = fn })
	end
end

local function litter(k)
	for _ = 1, k do
		local r = rnd()
		if r < 0.6 then
			newgc(function() close_something() end)
		elseif r < 0.85 then
			newgc(function() mutate_something() end)
		else
			-- raises only inside a checked call: 5.1 and 5.3 pass the error on
			-- from wherever the collector ran.  Never on LuaJIT: its JIT
			-- crashes on an error raised by a finalizer, module or not
			-- (luajit 2.1.0-beta3, a loop of pcalls while finalizers raise).
			newgc(function()
				if incall > 0 and not JIT then
					error("FUZZCB in __gc", 0)
				end
			end)
		end
	end
end

-- ---------------------------------------------------------------------
-- Kernel-shaped values: tuples, specs, changes, filters, options

local SRC4 = { "192.0.2.1", "192.0.2.2", "192.0.2.3" }
local DST4 = { "198.51.100.1", "198.51.100.2" }
local SRC6 = { "2001:db8::1", "2001:db8::2" }
local DST6 = { "2001:db8:1::1" }
local PROTOS = { "tcp", "tcp", "udp", "udp", "icmp", "sctp", "dccp", "gre", "udplite", 17, 6 }
local SPEC_KEYS = { "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
	"orig_zone", "srckey", "dstkey", "reply_src", "reply_dst", "reply_sport", "reply_dport", "reply_zone",
	"reply_srckey", "reply_dstkey", "zone", "timeout", "mark", "mark_mask", "state", "status", "labels",
	"labels_mask", "label_add", "label_del", "secmark", "snat", "dnat", "helper", "tcp_flags_orig",
	"tcp_flags_reply", "tcp_wscale_orig", "tcp_wscale_reply", "orig_vtag", "reply_vtag", "role", "type",
	"id", "use", "orig_packets", "orig_bytes", "reply_packets", "reply_bytes", "tuple_src", "tuple_dst",
	"tuple_sport", "tuple_dport", "mask_src", "mask_dst", "mask_sport", "mask_dport", "class", "fn", "flags",
	"nat_dir", "nat_src", "nat_dst", "nat_sport", "nat_dport", "pushdown", "zero", "table", "unique",
	"batch", "mode", "types", "rcvbuf", "netns", "filter", "kernel_filter", "matcher", "command", "mark",
	"indent", "where", "nat", "status_mask", "label", "value", "mask", "addr", "port", "kind", "lo", "hi",
	"start", "stop", "secctx", "orig", "reply", "protonum", "time", 1, 2, 3 }

-- One value for key k: mostly of the right kind.
local function value_for(k)
	if k == "netns" then
		return pick(NETNS)
	elseif k == "src" or k == "dst" or k == "reply_src" or k == "reply_dst" or k:find("_src$") or
		k:find("_dst$") then
		return chance(0.8) and pick(ADDRS) or pick(BAD_ADDRS)
	elseif k == "proto" then
		return pick(PROTOS)
	elseif k == "state" then
		return pick { "ESTABLISHED", "SYN_SENT", "TIME_WAIT", "CLOSE", "NONE", "OPEN", "REQUEST", "bogus" }
	elseif k == "status" or k == "status_mask" then
		return pick { "ASSURED", { "ASSURED", "SEEN_REPLY" }, { ASSURED = true, DYING = false }, 4, 0,
			"!DYING", "UNREPLIED", 2 ^ 32, -1, { "NOPE" } }
	elseif k == "labels" or k == "labels_mask" or k == "label_add" or k == "label_del" or k == "label" then
		return pick { { 1, 2 }, { [3] = true }, { 0, 127 }, { 128 }, { "nolabel" }, 5, {} }
	elseif k == "snat" or k == "dnat" then
		return pick { "198.51.100.9", "198.51.100.9:4000", "[2001:db8::9]:53", ":4000",
			{ addr = "198.51.100.9", port = 4000 }, { port = 70000 }, {}, "x:y" }
	elseif k == "helper" then
		return pick { "ftp", "sip", "nosuchhelper", "", ("h"):rep(40) }
	elseif k == "family" then
		return pick { "ipv4", "ipv6", "inet", 2, 10 }
	elseif k == "types" then
		return pick { { "new" }, { "new", "update", "destroy" }, "destroy", { "bogus" }, {} }
	elseif k == "table" then
		return pick { "conntrack", "dying", "unconfirmed", "expect", "bogus" }
	elseif k == "mode" then
		return pick { "create", "add", "put", "bogus" }
	elseif k == "batch" then
		return pick { 1, 2, 7, 100, 1024, 0, 1025, 1.5, -1, 0 / 0, 1e-300 }
	elseif k == "timeout" then
		return pick { 0, 0.001, 0.01, 1, 100, 300, -1, 0 / 0, 2 ^ 32, 4294967295 }
	elseif k == "rcvbuf" then
		return pick { 4096, 65536, 1048576, 1.5, 0, -1, 2 ^ 40, 4095 }
	elseif k == "lines" then
		return chance(0.9) and callback() or any(1)
	elseif k == "format" then
		return pick { "extended", "extended,id", { "id", "ktimestamp" }, { extended = true }, "xml", "save",
			"bogus", 5, {} }
	elseif k == "pushdown" or k == "zero" or k == "unique" or k == "indent" then
		return chance(0.85) and chance(0.5) or any(1)
	end
	if chance(0.6) then
		return num()
	end
	return any(1)
end

-- With probability p, one change that makes t wrong.
local function mutate(t, p)
	if not chance(p) or getmetatable(t) == F.Filter then
		return t
	end
	local r = rnd()
	if r < 0.35 then
		local k = pick(SPEC_KEYS)
		t[k] = chance(0.5) and value_for(type(k) == "string" and k or "?") or any(1)
	elseif r < 0.5 then
		t[rstr()] = any(1)
	elseif r < 0.65 then
		for k in pairs(t) do
			if chance(0.3) then
				t[k] = nil
			end
		end
	elseif r < 0.75 then
		local k = any(1)
		if k == nil or k ~= k then
			k = 1
		end
		t[k] = any(1)
	elseif r < 0.9 then
		for k in pairs(t) do
			if chance(0.3) then
				t[k] = any(1)
			end
		end
	else
		return hostile(t)
	end
	return t
end

local function tuple()
	local v6 = chance(0.25)
	local t = { src = pick(v6 and SRC6 or SRC4), dst = pick(v6 and DST6 or DST4) }
	local p = pick(PROTOS)
	t.proto = p
	if p == "icmp" then
		if v6 then
			t.proto = "icmpv6"
		end
		t.icmp_type, t.icmp_code, t.icmp_id = v6 and 128 or 8, 0, rint(1, 8)
	elseif p == "gre" then
		if chance(0.5) then
			t.srckey, t.dstkey = rint(1, 4), rint(1, 4)
		end
	else
		t.sport, t.dport = rint(1000, 1015), pick { 21, 53, 80, 443 }
	end
	if chance(0.1) then
		t.zone = rint(0, 3)
	end
	return t
end

local function spec()
	local t = tuple()
	t.timeout = chance(0.9) and rint(1, 300) or value_for("timeout")
	local p = t.proto
	if (p == "tcp" or p == 6) and chance(0.8) then
		t.state = pick { "ESTABLISHED", "SYN_SENT", "TIME_WAIT", "CLOSE", "SYN_RECV" }
	elseif p == "sctp" and chance(0.5) then
		t.state = pick { "ESTABLISHED", "COOKIE_WAIT", "CLOSED" }
		t.orig_vtag, t.reply_vtag = rint(0, 99999), rint(0, 99999)
	elseif p == "dccp" and chance(0.5) then
		t.state = pick { "OPEN", "REQUEST", "RESPOND" }
		t.role = pick { "client", "server" }
	end
	if chance(0.3) then
		t.mark = rint(0, 10)
	end
	if chance(0.3) then
		t.status = value_for("status")
	end
	if chance(0.1) then
		t.labels = value_for("labels")
	end
	if chance(0.1) then
		t[chance(0.5) and "snat" or "dnat"] = value_for("snat")
	end
	if chance(0.05) and (p == "tcp" or p == 6) then
		t.helper = "ftp"
	end
	if chance(0.1) then
		t.secmark = rint(0, 5)
	end
	if chance(0.05) then
		t.tcp_flags_orig, t.tcp_wscale_orig = rint(0, 255), rint(0, 14)
	end
	if chance(0.1) then
		t.reply_src, t.reply_dst = t.dst, t.src
	end
	return mutate(t, 0.25)
end

local function changes()
	local c = {}
	for _ = 1, rint(1, 3) do
		local k = pick { "mark", "mark_mask", "timeout", "status", "labels", "labels_mask", "label_add",
			"label_del", "state", "tcp_flags_orig", "tcp_wscale_reply", "src" }
		c[k] = value_for(k)
		if k == "mark" or k == "mark_mask" then
			c[k] = rint(0, 255)
		end
	end
	return mutate(c, 0.2)
end

-- Something naming a flow: a tuple, a spec, an entry, or junk.
local function flowish()
	local r = rnd()
	if r < 0.45 then
		return mutate(tuple(), 0.15)
	elseif r < 0.6 then
		return spec()
	elseif r < 0.85 and #P.entry > 0 then
		return pick(P.entry)
	end
	return any(1)
end

local LEAVES = {
	function() return F.proto(pick(PROTOS)) end,
	function() return F.src(pick(SRC4), chance(0.3) and "2001:db8::/32" or nil) end,
	function() return F.dst(pick { "198.51.100.0/24", "198.51.100.1", "2001:db8:1::1" }) end,
	function() return F.sport(pick { 1000, "1000-1007", { 1003, 1015 } }) end,
	function() return F.dport(pick { 21, 53, 80, 443 }) end,
	function() return F.reply_sport(pick { 21, 53, 80 }) end,
	function() return F.reply_src(pick(DST4)) end,
	function() return F.reply_dst(pick(SRC4)) end,
	function() return F.reply_dport(pick { 1000, "1000-1015" }) end,
	function() return F.family(pick { "ipv4", "ipv6" }) end,
	function() return F.state(pick { "ESTABLISHED", "TIME_WAIT", "SYN_SENT" }) end,
	function() return F.status(pick { "ASSURED", "!SEEN_REPLY", { ASSURED = true } }) end,
	function() return F.mark(rint(0, 10), chance(0.5) and 255 or nil) end,
	function() return F.marks { { rint(0, 3), 255 }, F.mark(rint(0, 3)) } end,
	function() return F.zone(rint(0, 3)) end,
	function() return F.orig_zone(0) end,
	function() return F.reply_zone(0, 1) end,
	function() return F.label(rint(0, 127)) end,
	function() return F.label("somelabel") end,
	function() return F.secmark(0) end,
	function() return F.helper("ftp") end,
	function() return F.nat(pick { "none", "snat", "dnat", "both", "any" }) end,
	function() return F.nat("snat", pick { "198.51.100.9", ":4000", "[2001:db8::9]:53" }) end,
	function() return F.timeout(rint(0, 100), chance(0.5) and 300 or nil) end,
	function() return F.icmp_type(8) end,
	function() return F.icmp_code(0) end,
	function() return F.icmp_id(1, 3) end,
	function()
		return F.where(callback((chance(0.5) or not callbacks) and "true" or nil), chance(0.3) and "text" or nil)
	end,
	function() return F.always end,
	function() return F.never end,
}

local function filter(depth)
	depth = depth or 0
	local r = rnd()
	if depth > 2 or r < 0.45 then
		local ok, f = pcall(pick(LEAVES))
		return ok and f or F.always
	elseif r < 0.6 then
		return F.all(filter(depth + 1), filter(depth + 1))
	elseif r < 0.75 then
		return F.any(filter(depth + 1), filter(depth + 1), chance(0.3) and filter(depth + 1) or nil)
	elseif r < 0.85 then
		return F.negate(filter(depth + 1))
	elseif r < 0.9 then
		return F.none(filter(depth + 1))
	end
	return filter(depth + 1) * filter(depth + 1) - filter(depth + 1)
end

-- Anything a function takes as a filter.
local function filterish()
	local r = rnd()
	if r < 0.3 then
		return filter()
	elseif r < 0.5 then
		local t = {}
		for _ = 1, rint(1, 3) do
			local k = pick { "proto", "src", "dst", "sport", "dport", "state", "status", "mark", "zone",
				"family", "timeout", "nat", "helper", "label", "labels", "reply_src", "where", "status_mask",
				"mark_mask", "secmark", "icmp_type" }
			t[k] = value_for(k)
			if k == "where" then
				t[k] = callbacks and callback() or callback("true")
			elseif k == "sport" or k == "dport" then
				t[k] = pick { 1000, "1000-1003", { 1000, 1010 }, 80, -1, 70000 }
			elseif k == "mark" then
				t[k] = rint(0, 4)
			elseif k == "nat" then
				t[k] = pick { "snat", "any", { "dnat", ":80" }, "bogus" }
			end
		end
		return mutate(t, 0.2)
	elseif r < 0.62 then
		return callbacks and callback() or callback(pick { "true", "false", "junk" })
	elseif r < 0.7 then
		return nil
	elseif r < 0.75 then
		return chance(0.5)
	elseif r < 0.85 and #P.matcher > 0 then
		return pick(P.matcher)
	end
	return any(1)
end

local function how()
	if chance(0.45) then
		return nil
	end
	local t = {}
	for _ = 1, rint(1, 2) do
		local k = pick { "pushdown", "zero", "table", "unique", "batch", "mode", "pushdown", "unique",
			"lines", "format" }
		t[k] = value_for(k)
	end
	if t.table == "expect" and chance(0.7) then
		t.table = nil
	end
	return mutate(t, 0.15)
end

local function items(maker)
	local t = {}
	local n = chance(0.9) and rint(0, 12) or rint(100, 300)
	for i = 1, n do
		t[i] = maker()
	end
	if chance(0.05) then
		t[rint(1, n + 1)] = nil
	end
	return mutate(t, 0.1)
end

-- Expectations: masters on 192.0.2.1:1000..1003 -> 198.51.100.2:21 with helper ftp.
local function master(k)
	return { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1000 + (k or rint(0, 3)), dport = 21 }
end

local function xkey()
	local r = rnd()
	if r < 0.5 then
		return mutate({ src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 0,
			dport = 40000 + rint(0, 3) }, 0.2)
	elseif r < 0.75 and #P.expect > 0 then
		return pick(P.expect)
	end
	return flowish()
end

local function xspec()
	local t = master()
	t.tuple_src, t.tuple_dst, t.tuple_sport, t.tuple_dport = "192.0.2.1", "198.51.100.2", 0, 40000 + rint(0, 3)
	t.mask_src, t.mask_dst, t.mask_sport, t.mask_dport = "255.255.255.255", "255.255.255.255", 0, 65535
	t.timeout = rint(1, 300)
	if chance(0.2) then
		t.flags = pick { { "PERMANENT" }, { "INACTIVE" }, "USERSPACE", 1, { "BOGUS" } }
	end
	if chance(0.2) then
		t.helper = pick { "ftp", "nosuch" }
	end
	if chance(0.1) then
		t.nat_dir, t.nat_src, t.nat_sport = pick { "original", "reply", 0, 1 }, "203.0.113.5", 5000
	end
	if chance(0.1) then
		t.class, t.fn = rint(0, 2), pick { "ftp", "bogus" }
	end
	return mutate(t, 0.25)
end

local function savetext()
	local lines = {}
	for _ = 1, rint(1, 6) do
		local line
		local e = #P.entry > 0 and pick(P.entry)
		if e and chance(0.6) then
			local ok, s = pcall(FMT.save, e, chance(0.3) and { mark = true } or nil)
			line = ok and s or "-A"
		else
			line = pick {
				"-A -t 100 -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 1003 --dport 80 --state ESTABLISHED -u ASSURED",
				"-I -t 50 -s 2001:db8::1 -d 2001:db8:1::1 -p udp --sport 1001 --dport 53",
				"-D -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 1003 --dport 80",
				"-U -s 192.0.2.1 -d 198.51.100.2 -p tcp --sport 1003 --dport 80 -m 7",
				"-A -t 10 -s 192.0.2.2 -d 198.51.100.1 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 3",
				"-A -t 10 -s 192.0.2.2 -d 198.51.100.1 -g 203.0.113.5 -p tcp --sport 1 --dport 2 --state CLOSE",
				"# comment", "", "-A", "-X foo", "-A -t", "-A -t 1 -s 1.2.3 -d ::1 -p bogus" }
		end
		if chance(0.3) then
			local words = {}
			for w in line:gmatch("%S+") do
				words[#words + 1] = w
			end
			local r = rnd()
			if r < 0.3 and #words > 0 then
				table.remove(words, rint(1, #words))
			elseif r < 0.6 then
				table.insert(words, rint(1, #words + 1), chance(0.5) and rstr() or pick(NAMES))
			elseif #words > 0 then
				words[rint(1, #words)] = tostring(num())
			end
			line = concat(words, " ")
		end
		lines[#lines + 1] = line
	end
	if chance(0.03) then
		lines[#lines + 1] = pick(BIG):sub(1, rint(1, 20000))
	end
	return concat(lines, chance(0.9) and "\n" or "\r\n")
end

local function bounded_timeout()
	return pick { 0, 0, 0.001, 0.005, 0.01, -1, 0 / 0, "0.01", true, {}, -huge, -0.0 }
end

local function kernel_filter()
	local kf = {}
	for _ = 1, rint(1, 2) do
		local k = pick { "proto", "src", "dst", "mark", "bogus" }
		if k == "proto" then
			kf.proto = pick { "tcp", { "udp", "tcp" }, { 3.5 }, 300, { "bogus" } }
		elseif k == "src" or k == "dst" then
			local n = chance(0.2) and rint(20, 70) or rint(1, 3)
			local l = {}
			for i = 1, n do
				l[i] = chance(0.5) and ("2001:db8::" .. i) or ("192.0.2." .. (i % 250 + 1))
			end
			kf[k] = chance(0.2) and pick(ADDRS) or l
		elseif k == "mark" then
			kf.mark = pick { { value = 1, mask = 255 }, { { value = 1 }, { value = 2, mask = 3 } }, 5, { value = "x" } }
		else
			kf[k] = any(1)
		end
	end
	return mutate(kf, 0.1)
end

-- Options of subscribe/events; events always get a timeout it may wait.
local function subopts(events)
	if not events and chance(0.2) then
		return nil
	end
	local o = {}
	if chance(0.3) then
		o.types = value_for("types")
	end
	if chance(0.2) then
		o.rcvbuf = value_for("rcvbuf")
	end
	if chance(0.05) then
		o.netns = pick(NETNS)
	end
	if chance(0.4) then
		o.filter = chance(0.5) and (callbacks and callback() or callback("true")) or filterish()
	end
	if chance(0.2) then
		o.kernel_filter = kernel_filter()
	end
	if chance(0.1) then
		o.table = pick { "expect", "conntrack", "bogus" }
	end
	if events then
		o.timeout = bounded_timeout()
	end
	o = mutate(o, 0.1)
	if events and type(o) == "table" and getmetatable(o) == nil then
		-- no wait without a bound: a bad value at most
		local t = rawget(o, "timeout")
		if t == nil or (type(t) == "number" and t > 0.01) then
			rawset(o, "timeout", 0.01)
		end
	end
	return o
end

-- ---------------------------------------------------------------------
-- any(): a value of any type

local function handle_like()
	local r = rnd()
	if r < 0.6 and #P.handle > 0 then
		return pick(P.handle)
	elseif r < 0.75 and #P.closed > 0 then
		return pick(P.closed)
	elseif r < 0.85 then
		return ct.default()
	end
	return any(1)
end

local function userdata()
	local kinds = { "handle", "sub", "entry", "entry", "tuple", "expect", "matcher", "closed" }
	local l = P[pick(kinds)]
	if #l > 0 then
		return l[rint(1, #l)]
	end
	local r = rnd()
	if r < 0.3 and #P.dump > 0 then
		return pick(P.dump).st
	elseif r < 0.5 then
		return io.stdout
	end
	return newgc(function() end)
end

local threads = {}
local function thread()
	if #threads < 4 then
		local co = coroutine.create(function() coroutine.yield() end)
		if chance(0.5) then
			coroutine.resume(co)
		end
		threads[#threads + 1] = co
	end
	return pick(threads)
end

any = function(depth)
	depth = depth or 0
	local r = rnd()
	if r < 0.08 then
		return nil
	elseif r < 0.14 then
		return chance(0.5)
	elseif r < 0.32 then
		return num()
	elseif r < 0.57 then
		return str()
	elseif r < 0.77 then
		if depth > 2 then
			return {}
		end
		local q = rnd()
		if q < 0.3 then
			return spec()
		elseif q < 0.45 then
			return filterish()
		elseif q < 0.6 then
			local t = {}
			for i = 1, rint(0, 4) do
				t[i] = any(depth + 1)
			end
			return t
		elseif q < 0.8 then
			local t = {}
			for _ = 1, rint(0, 4) do
				local k = chance(0.7) and pick(SPEC_KEYS) or any(depth + 1)
				if k ~= nil and k == k then
					t[k] = chance(0.5) and value_for(type(k) == "string" and k or "?") or any(depth + 1)
				end
			end
			return t
		end
		return hostile(spec())
	elseif r < 0.85 then
		return callback(not callbacks and pick { "true", "false", "junk" } or nil)
	elseif r < 0.97 then
		return userdata()
	end
	return thread()
end

-- A table whose metamethods close objects, raise or lie.
hostile = function(t)
	if not callbacks or getmetatable(t) ~= nil then
		return t
	end
	local mt = {}
	if chance(0.6) then
		mt.__index = function(_, k)
			if chance(0.5) then
				close_something()
			end
			if chance(0.1) then
				error("FUZZCB __index", 0)
			end
			return value_for(type(k) == "string" and k or "?")
		end
	end
	if chance(0.5) then
		mt.__pairs = function(tt)
			close_something()
			if chance(0.1) then
				error(cberr)
			end
			local keys, k = {}, 0
			for key in next, tt do
				keys[#keys + 1] = key
			end
			keys[#keys + 1] = pick(SPEC_KEYS)
			return function()
				k = k + 1
				if k > #keys then
					return nil
				end
				if chance(0.2) then
					close_something()
				end
				local key = keys[k]
				local v = rawget(tt, key)
				if v == nil then
					v = value_for(type(key) == "string" and key or "?")
				end
				return key, v
			end, tt, nil
		end
	end
	if chance(0.2) then
		mt.__len = function()
			close_something()
			return pick { 3, -1, 2 ^ 40, "x" }
		end
	end
	if chance(0.2) then
		mt.__tostring = function()
			close_something()
			return "hostile"	-- (a table here is Lua's own error)
		end
	end
	if chance(0.1) then
		mt.__metatable = "locked"
	end
	if chance(0.1) then
		mt.__newindex = function() close_something() end
	end
	if chance(0.1) and _VERSION ~= "Lua 5.1" then
		mt.__gc = function() close_something() end
	end
	return setmetatable(t, mt)
end

-- ---------------------------------------------------------------------
-- Field names of the C classes, as their __index knows them (so new ones
-- are read too).

-- Lua 5.1 and LuaJIT do not show a C function's upvalues: there the
-- names are the ones the C core had when this was written.
local KNOWN_FIELDS = {
	entry = { "family", "proto", "protonum", "orig", "reply", "state", "timeout", "mark", "secmark", "use",
		"id", "zone", "status", "labels", "start", "stop", "helper", "secctx", "type", "orig_vtag",
		"reply_vtag", "role", "tcp_flags_orig", "tcp_flags_reply", "tcp_wscale_orig", "tcp_wscale_reply",
		"time" },
	tuple = { "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id", "packets", "bytes",
		"zone", "protonum", "srckey", "dstkey" },
	sub = { "overflows", "received", "lost", "rcvbuf", "kernel_filtered", "closed" },
	dump = { "interrupted", "count", "closed", "duplicates" },
	expect = { "family", "proto", "protonum", "master", "tuple", "mask", "timeout", "id", "helper", "zone",
		"flags", "class", "nat_dir", "nat", "fn", "type", "time" },
	handle = { "closed" },
}

local function class_fields(kind, name)
	local mt = debug.getregistry()[name]
	local out = {}
	if type(mt) == "table" and type(mt.__index) == "function" then
		local _, names = debug.getupvalue(mt.__index, 3)
		if type(names) == "table" then
			for k in pairs(names) do
				out[#out + 1] = k
			end
		end
	end
	if #out == 0 then
		out = KNOWN_FIELDS[kind] or {}
	end
	sort(out)
	return out
end

local FIELDS = {
	entry = class_fields("entry", "conntrack.entry"),
	tuple = class_fields("tuple", "conntrack.tuple"),
	sub = class_fields("sub", "conntrack.subscription"),
	dump = class_fields("dump", "conntrack.dump"),
	expect = class_fields("expect", "conntrack.expectation"),
	handle = class_fields("handle", "conntrack.handle"),
}

local function sorted_names(t, want)
	local out = {}
	for k, v in pairs(t) do
		if type(k) == "string" and (want == nil or type(v) == want) then
			out[#out + 1] = k
		end
	end
	sort(out)
	return out
end

local METHODS = {}
for kind, t in pairs(core.methods) do
	METHODS[kind] = sorted_names(t, "function")
end

-- ---------------------------------------------------------------------
-- Scene: flows for dumps and events, masters for expectations

local function scene()
	if ct.type(SH) ~= "handle" then
		SH = assert(ct.open())
	end
	SH:batch("create", { master(0), master(1), master(2), master(3) })
	for k = 0, 3 do
		local m = master(k)
		m.timeout, m.state, m.status, m.helper = 300, "ESTABLISHED", { "ASSURED", "SEEN_REPLY" }, "ftp"
		SH:create(m)
	end
	local specs = {}
	for i = 1, 24 do
		local s = tuple()
		s.timeout = 200
		specs[i] = s
	end
	SH:batch("create", specs)
	if SH:count() > 3000 then
		SH:flush()
	end
end

-- A flow made and removed, so that subscriptions have events to read.
local function churn()
	local t = tuple()
	local s = {}
	for k, v in pairs(t) do
		s[k] = v
	end
	s.timeout = 30
	SH:create(s)
	if chance(0.7) then
		SH:delete(t)
	end
end

-- ---------------------------------------------------------------------
-- Argument shapes of the handle's methods (and of the module's functions
-- of the same names); a method not named here gets any() arguments.

local SHAPES = {
	get = function() return flowish() end,
	delete = function() return flowish() end,
	create = function() return spec() end,
	add = function() return spec() end,
	update = function() return flowish(), changes() end,
	flush = function() if chance(0.5) then return nil, how() end return filterish(), how() end,
	count = function() if chance(0.9) then return end return any(1) end,
	max = function() if chance(0.9) then return end return any(1) end,
	stats = function() if chance(0.9) then return end return any(1) end,
	dump = function() return filterish(), how() end,
	list = function() return filterish(), how() end,
	batch = function()
		local op = chance(0.9) and pick { "create", "add", "update", "delete", "put" } or any(1)
		local maker = (op == "create" or op == "add" or op == "put") and spec or flowish
		return op, chance(0.9) and items(maker) or any(1), (op == "update" or chance(0.05)) and changes() or nil
	end,
	delete_where = function() return filterish(), how() end,
	update_where = function() return filterish(), chance(0.9) and changes() or any(1), how() end,
	load = function()
		if chance(0.5) then
			return savetext(), how()
		end
		return items(spec), how()
	end,
	subscribe = function() return subopts(false) end,
	events = function() return subopts(true) end,
	expect_get = function() return xkey() end,
	expect_delete = function() return xkey() end,
	expect_create = function() return xspec() end,
	expect_flush = function()
		if chance(0.6) then
			return nil
		end
		return mutate({ family = pick { "ipv4", "ipv6", "bogus", 2 }, helper = pick { "ftp", "", "nosuch" } }, 0.3)
	end,
	expect_count = function() return end,
	expect_stats = function() return end,
	close = function() return end,
	getfd = function() return end,
}

-- The arguments of method name, sometimes any() instead.
local function shaped(name)
	local shape = SHAPES[name]
	local a
	if shape and chance(0.9) then
		a = pack(shape())
	else
		a = pack(any(), any(), any())
		a.n = rint(0, 3)
	end
	if chance(0.05) then
		a.n = a.n + 1
		a[a.n] = any(1)
	end
	for i = 1, a.n do
		if type(a[i]) == "table" then
			MUT[#MUT + 1] = a[i]
		end
	end
	return a
end

-- ---------------------------------------------------------------------
-- Calls on results: entries, tuples, expectations, dumps, subscriptions

local function names_of(...)
	return set(...)
end

local function poke_tuple(t)
	local f = FIELDS.tuple
	for _ = 1, rint(1, 3) do
		local k = chance(0.9) and pick(f) or any(1)
		call("tuple[k]", nil, function() return t[k] end)
	end
	if chance(0.3) then
		call("tuple:totable", names_of("totable"), function() return t:totable() end)
	end
	if chance(0.2) then
		call("tostring(tuple)", names_of("tostring"), tostring, t)
	end
end

local FORMATS = { "extended", "id", "ktimestamp", "labels", "xml", "default", "library", "extended,id,labels",
	"xml,id", "", ",", "bogus", "id,,xml" }

local function poke_entry(e)
	CUR.entry = e
	local f = FIELDS.entry
	for _ = 1, rint(1, 4) do
		local k = chance(0.9) and pick(f) or any(1)
		local ok, v = call("entry[k]", nil, function() return e[k] end)
		if ok and ct.type(v) == "tuple" and chance(0.5) then
			poke_tuple(v)
		end
	end
	local r = rnd()
	if r < 0.2 then
		call("entry:totable", names_of("totable"), function() return e:totable() end)
	elseif r < 0.4 then
		local o = chance(0.85) and pick(FORMATS) or any(1)
		call("entry:format", names_of("format"), function() return e:format(o) end)
	elseif r < 0.45 then
		call("entry:raw", names_of("raw"), function() return e:raw() end)
	elseif r < 0.5 then
		call("entry:spec", names_of("spec"), function() return e:spec() end)
	elseif r < 0.65 then
		call("tostring(entry)", names_of("tostring"), tostring, e)
	elseif r < 0.75 then
		local other = chance(0.7) and pick(P.entry) or any(1)
		call("entry == x", nil, function() return e == other end)
	elseif r < 0.85 then
		-- methods with a bad self
		local m = pick(METHODS.entry)
		local a = any(1)
		call("entry:" .. m, names_of(m), function() return core.methods.entry[m](a, any(1)) end)
	end
end

local function poke_expect(x)
	local f = FIELDS.expect
	for _ = 1, rint(1, 3) do
		local k = chance(0.9) and pick(f) or any(1)
		local ok, v = call("expect[k]", nil, function() return x[k] end)
		if ok and ct.type(v) == "tuple" then
			poke_tuple(v)
		end
	end
	local r = rnd()
	if r < 0.25 then
		call("expect:totable", names_of("totable"), function() return x:totable() end)
	elseif r < 0.45 then
		call("expect:raw", names_of("raw"), function() return x:raw() end)
	elseif r < 0.65 then
		call("tostring(expect)", names_of("tostring"), tostring, x)
	elseif r < 0.75 then
		local other = chance(0.7) and pick(P.expect) or any(1)
		call("expect == x", nil, function() return x == other end)
	elseif r < 0.85 then
		local m = pick(METHODS.expectation)
		local a = any(1)
		call("expect:" .. m, names_of(m), function() return core.methods.expectation[m](a) end)
	end
end

local function poke_dump(d)
	local st, it = d.st, d.it
	CUR.dump = st
	local r = rnd()
	if r < 0.45 then
		for _ = 1, rint(1, 20) do
			local ok, e = call("dump iterator", names_of("dump", "next"), it, st)
			if not ok or not e then
				break
			end
			if chance(0.2) then
				poke_entry(e)
			end
		end
	elseif r < 0.6 then
		call("dump:next", names_of("next", "dump"), function() return st:next() end)
	elseif r < 0.7 then
		call("dump:close", names_of("close"), function() return st:close() end)
	elseif r < 0.85 then
		local k = chance(0.8) and pick(FIELDS.dump) or any(1)
		call("dump[k]", nil, function() return st[k] end)
	elseif r < 0.9 then
		call("dump __close", nil, function() return getmetatable(st).__close(st, any(1)) end)
	elseif r < 0.95 then
		local m = pick(METHODS.dump)
		local a = any(1)
		call("dump:" .. m, names_of(m), function() return core.methods.dump[m](a) end)
	else
		call("dump __gc", nil, function() return getmetatable(st).__gc(st) end)
	end
end

local function poke_sub(s)
	CUR.sub = s
	if chance(0.5) then
		churn()
	end
	local r = rnd()
	if r < 0.3 then
		local t = bounded_timeout()
		local ok, ev = call("sub:next", names_of("next"), function() return s:next(t) end)
		if ok and ct.type(ev) == "entry" and chance(0.3) then
			poke_entry(ev)
		end
	elseif r < 0.5 then
		local m = chance(0.8) and (chance(0.5) and rint(1, 5) or nil) or any(1)
		call("sub:read", names_of("read"), function() return s:read(m) end)
	elseif r < 0.58 then
		local t = bounded_timeout()
		call("sub:wait", names_of("wait"), function() return s:wait(t) end)
	elseif r < 0.66 then
		local m = pick { "getfd", "pollfd", "events", "timeout" }
		call("sub:" .. m, names_of(m, "getfd"), function() return s[m](s) end)
	elseif r < 0.72 then
		call("sub:close", names_of("close"), function() return s:close() end)
	elseif r < 0.86 then
		local k = chance(0.8) and pick(FIELDS.sub) or any(1)
		call("sub[k]", nil, function() return s[k] end)
	elseif r < 0.9 then
		call("tostring(sub)", names_of("tostring"), tostring, s)
	elseif r < 0.95 then
		local m = pick(METHODS.subscription)
		local a = any(1)
		call("sub:" .. m, names_of(m, "getfd"), function() return core.methods.subscription[m](a, 0) end)
	else
		local mm = pick { "__gc", "__close", "__tostring" }
		call("sub " .. mm, nil, function() return getmetatable(s)[mm](s) end)
	end
end

local function poke_matcher(m)
	local r = rnd()
	if r < 0.5 then
		local e = chance(0.8) and pick(P.entry) or any(1)
		call("matcher:match", names_of("match"), function() return m:match(e) end)
	elseif r < 0.7 then
		call("matcher:kernel", names_of("kernel"), function() return m:kernel() end)
	elseif r < 0.8 then
		call("tostring(matcher)", names_of("tostring"), tostring, m)
	else
		local name = pick(METHODS.matcher)
		local a = any(1)
		call("matcher:" .. name, names_of(name), function() return core.methods.matcher[name](a, any(1)) end)
	end
end

-- ---------------------------------------------------------------------
-- Handle methods and module functions

-- M(h, name)(...): h's method, through h when h is a handle (open or
-- closed), else the method table's function with h as a bad self.
local function M(h, name)
	local t = ct.type(h)
	if (t == "handle" or t == "closed handle") and chance(0.9) then
		return function(...) return h[name](h, ...) end
	end
	local m = core.methods.handle[name]
	return function(...) return m(h, ...) end
end

local function handle_call(name, self, module)
	local a = shaped(name)
	local label = (module and "ct." or "h:") .. name
	local names = names_of(name, "open")
	CUR.h = self
	local f
	if module then
		f = ct[name]
	else
		f = M(self, name)
	end
	if name == "events" and type(a[1]) == "table" and getmetatable(a[1]) ~= nil then
		a[1] = subopts(true)
	end
	if name == "events" and a[1] == nil then
		a[1] = { timeout = 0.01 }
		a.n = math.max(a.n, 1)
	end
	if name == "events" and type(a[1]) ~= "table" and not chance(0.3) then
		a[1] = { timeout = 0.005 }
	end
	if name == "events" then
		a.n = math.max(a.n, 1)	-- never events() without a bound
	end
	if name == "events" and type(a[1]) == "table" then
		local t = rawget(a[1], "timeout")
		if t == nil or type(t) == "number" and t > 0.01 then
			rawset(a[1], "timeout", 0.01)
		end
		if chance(0.5) then
			churn()
		end
	end
	local res = pack(call(label, names, f, unpack(a, 1, a.n)))
	if not res[1] then
		return
	end
	if name == "dump" and type(res[2]) == "function" and res[3] ~= nil then
		local it, st = res[2], res[3]
		keep("dump", { it = it, st = st })
		if chance(0.6) then
			poke_dump({ it = it, st = st })
		end
	elseif name == "events" and type(res[2]) == "function" then
		local it, st = res[2], res[3]
		CUR.sub = st
		for _ = 1, rint(1, 4) do
			local ok, ev = call(label .. " iterator", names_of("events", "next"), it, st)
			if not ok or ev == nil then
				break
			end
		end
	elseif name == "subscribe" and ct.type(res[2]) == "subscription" then
		if chance(0.5) then
			poke_sub(res[2])
		end
	elseif name == "close" and ct.type(self) == "closed handle" then
		keep("closed", self)
	end
end

local function pick_handle()
	local r = rnd()
	if r < 0.75 and #P.handle > 0 then
		local h = pick(P.handle)
		if ct.type(h) == "closed handle" then
			keep("closed", h)
			if chance(0.7) then
				local nh = ct.open()
				if nh then
					for i, x in ipairs(P.handle) do
						if x == h then
							P.handle[i] = nh
						end
					end
					return nh
				end
			end
		end
		return h
	elseif r < 0.85 then
		local h = ct.open()
		if h then
			keep("handle", h)
		end
		return h
	elseif r < 0.92 and #P.closed > 0 then
		return pick(P.closed)
	end
	return any(1)
end

-- ---------------------------------------------------------------------
-- The pure-Lua layer: filters, NAT, formats, addresses

local FUNCS = sorted_names(F, "function")
local FILTER_ARGS = {
	family = function() return pick { "ipv4", "ipv6" } end,
	proto = function() return pick(PROTOS) end,
	src = function() return chance(0.8) and pick(ADDRS) or pick(BAD_ADDRS) end,
	state = function() return pick { "ESTABLISHED", "TIME_WAIT", "bogus", "established" } end,
	status = function() return value_for("status") end,
	mark = function() return pick { 1, "42/0xff", 2 ^ 32, -1, "x" } end,
	label = function() return pick { 1, 127, 128, "x", -1 } end,
	helper = function() return pick { "ftp", "", ("h"):rep(20) } end,
	nat = function() return pick { "snat", "dnat", "any", "none", "both", { "dnat", ":80" }, "bogus" } end,
	timeout = function() return pick { 1, "1-5", { 1, 2 }, "-", "5-1", 0 / 0 } end,
	where = function() return callback() end,
	coerce = function() return filterish() end,
	negate = function() return filterish() end,
	all = function() return filterish() end,
	any = function() return filterish() end,
	none = function() return filterish() end,
	marks = function() return { { 1, 255 }, F.mark(2), 3, "x" } end,
	is_field = function() return pick(SPEC_KEYS) end,
	band = function() return num() end,
	bor = function() return num() end,
	bxor = function() return num() end,
}
for _, k in ipairs { "dst", "reply_src", "reply_dst" } do
	FILTER_ARGS[k] = FILTER_ARGS.src
end
for _, k in ipairs { "sport", "dport", "reply_sport", "reply_dport", "icmp_id", "icmp_type", "icmp_code",
	"secmark", "zone", "orig_zone", "reply_zone" } do
	FILTER_ARGS[k] = function() return pick { 1, 80, "1000-1005", { 1, 5 }, -1, 65536, "x", 1.5, "5:3" } end
end

local function filter_fn_call(name)
	local gen = FILTER_ARGS[name]
	local a = {}
	local n = rint(0, 3)
	for i = 1, n do
		a[i] = (gen and chance(0.8)) and gen() or any(1)
	end
	if name == "raise" then
		return	-- raises the message it is given, by design
	elseif name == "coerce" and chance(0.8) then
		a[2], n = pick { "dump", "list", "subscribe" }, 2
	end
	local names = names_of("filter." .. name, name, "filter")
	if name == "coerce" and type(a[2]) == "string" then
		names[a[2]] = true	-- coerce(x, fname) names fname
	end
	call("filter." .. name, names, F[name], unpack(a, 1, n))
end

-- (no concat, lt or len: Lua's own errors for a table without them)
local FILTER_METHODS = { "plan", "description", "compile", "match", "explain", "call", "tostring", "mul",
	"add", "sub", "unm", "eq" }

local function filter_method(f)
	local m = pick(FILTER_METHODS)
	if m == "plan" then
		local fname = chance(0.7) and pick { "dump", "list", "flush" } or any(1)
		-- a bad fname is reported under the method's own name
		local ok, p = call("filter:plan", type(fname) == "string" and names_of(fname, "filter", "plan") or nil,
			function() return f:plan(fname) end)
		if ok and type(p) == "table" and ct.type(p.matcher) == "matcher" then
			keep("matcher", p.matcher)
		end
	elseif m == "description" or m == "explain" then
		local ok, d = call("filter:" .. m, names_of(m, "filter"), function() return f[m](f) end)
		if ok and m == "description" and type(d) == "table" and chance(0.5) then
			local desc_t = mutate(d, 0.5)
			MUT[#MUT + 1] = desc_t
			local okm, mt = call("core.matcher", false, core.matcher, desc_t, chance(0.5) and "dump" or nil)
			if okm and ct.type(mt) == "matcher" then
				keep("matcher", mt)
			end
		end
	elseif m == "compile" then
		local ok, fn = call("filter:compile", names_of("compile", "filter"), function() return f:compile() end)
		if ok and type(fn) == "function" then
			local e = chance(0.8) and pick(P.entry) or any(1)
			call("compiled filter", names_of("filter", "match"), fn, e)
		end
	elseif m == "match" or m == "call" then
		local e = chance(0.7) and pick(P.entry) or any(1)
		if m == "match" then
			call("filter:match", names_of("match", "filter"), function() return f:match(e) end)
		else
			call("filter(e)", names_of("filter", "match"), function() return f(e) end)
		end
	elseif m == "tostring" then
		call("tostring(filter)", names_of("tostring", "filter"), tostring, f)
	else
		local o = chance(0.6) and filterish() or any(1)
		local ops = {
			mul = function() return f * o end, add = function() return f + o end,
			sub = function() return f - o end, unm = function() return -f end,
			eq = function() return f == o end,
		}
		call("filter " .. m, names_of("filter", "all", "any", "negate", "filter.all", "filter.any",
			"filter.negate"), ops[m])
	end
end

local function entryish()
	local r = rnd()
	if r < 0.6 and #P.entry > 0 then
		return pick(P.entry)
	elseif r < 0.75 and #P.entry > 0 then
		local ok, t = pcall(function() return pick(P.entry):totable() end)
		return ok and mutate(t, 0.3) or {}
	end
	return any(1)
end

local NAT_FUNCS = sorted_names(NAT, "function")
local FMT_FUNCS = sorted_names(FMT, "function")
local ADDR_FUNCS = sorted_names(ADDR, "function")
local CORE_FUNCS = {}
for _, k in ipairs(sorted_names(core, "function")) do
	if k ~= "own" and k ~= "error" then
		CORE_FUNCS[#CORE_FUNCS + 1] = k
	end
end

local function lua_layer()
	local r = rnd()
	if r < 0.4 then
		filter_fn_call(pick(FUNCS))
	elseif r < 0.6 then
		local f = (#P.filter > 0 and chance(0.5)) and pick(P.filter) or filter()
		if F.is(f) then
			keep("filter", f)
			filter_method(f)
		end
	elseif r < 0.72 then
		local name = pick(NAT_FUNCS)
		local e = entryish()
		call("nat." .. name, names_of(name, "nat." .. name, "nat"), NAT[name], e)
	elseif r < 0.88 then
		local name = pick(FMT_FUNCS)
		local a, b
		if name == "parse_save" or name == "save_plain" then
			a = chance(0.9) and savetext() or any(1)
		else
			a = entryish()
			if name == "format" then
				b = chance(0.8) and pick { "default", "save", "json", "extended", "id", "xml", "bogus" } or any(1)
			elseif name == "save" or name == "json" then
				b = chance(0.5) and mutate({ mark = chance(0.5), command = pick { "-A", "-I", "-U", "-D", "-X" },
					indent = chance(0.5) }, 0.2) or nil
			end
		end
		call("format." .. name, names_of(name, "format." .. name, "format", "save", "json", "extended"),
			FMT[name], a, b)
	else
		local name = pick(ADDR_FUNCS)
		local a = chance(0.8) and str() or any(1)
		local ok, m = call("addr." .. name, names_of(name, "addr." .. name), ADDR[name], a,
			name == "matcher" and (chance(0.5) and "what" or any(1)) or nil)
		if ok and name == "matcher" and type(m) == "function" then
			call("addr matcher fn", nil, m, chance(0.8) and str() or any(1))
		end
	end
end

local function core_call()
	local name = pick(CORE_FUNCS)
	local a = {}
	local n = rint(0, 4)
	for i = 1, n do
		local r = rnd()
		if i == 1 and r < 0.5 then
			a[i] = handle_like()
		elseif r < 0.6 and #P.matcher > 0 then
			a[i] = pick(P.matcher)
		else
			a[i] = any(1)
		end
	end
	call("core." .. name, false, core[name], unpack(a, 1, n))
end

-- ---------------------------------------------------------------------
-- Callback scenarios: objects closed while the module uses them

local function scen_sub_filter()
	local h = pick_handle()
	CUR.h = h
	local cb = callback(callbacks and pick { "closer", "closer", "closer-raiser", "gc", "raiser", "junk" } or "true")
	local o = { filter = cb, types = chance(0.3) and { "new" } or nil, table = chance(0.1) and "expect" or nil }
	local r = rnd()
	if r < 0.3 then
		o.timeout = pick { 0, 0.005, 0.01 }
		churn()
		churn()
		local ok, it, st = call("ct.events", names_of("events", "open"), ct.events, o)
		if ok and type(it) == "function" then
			CUR.sub = st
			for _ = 1, rint(1, 4) do
				local ok2, ev = call("ct.events iterator", names_of("events", "next"), it, st)
				if not ok2 or ev == nil then
					break
				end
			end
		end
		return
	end
	local subscribe = chance(0.7) and M(h, "subscribe") or ct.subscribe
	local ok, s = call("h:subscribe", names_of("subscribe", "open"), subscribe, o)
	if not ok or ct.type(s) ~= "subscription" then
		return
	end
	keep("sub", s)
	CUR.sub = s
	for _ = 1, rint(1, 3) do
		churn()
	end
	if o.table == "expect" then
		local x = xspec()
		pcall(SH.expect_create, SH, x)
		pcall(SH.expect_delete, SH, { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 0,
			dport = rawget(x, "tuple_dport") })
	end
	if chance(0.5) then
		call("sub:next", names_of("next"), function() return s:next(pick { 0, 0.005, 0.01 }) end)
	else
		call("sub:read", names_of("read"), function() return s:read() end)
	end
end

local function scen_dump_callbacks()
	local h = pick_handle()
	CUR.h = h
	local pred = callback(callbacks and pick { "closer", "closer", "closer-raiser", "gc", "mutator", "yielder" }
		or "true")
	local f = chance(0.5) and pred or (chance(0.5) and { where = pred, proto = "tcp" } or (F.where(pred) * filter()))
	local hw = how()
	local r = rnd()
	if r < 0.35 then
		local ok, it, st = call("h:dump", names_of("dump"), M(h, "dump"), f, hw)
		if ok and type(it) == "function" then
			CUR.dump = st
			keep("dump", { it = it, st = st })
			for _ = 1, rint(1, 30) do
				local ok2, e = call("dump iterator", names_of("dump", "next"), it, st)
				if not ok2 or not e then
					break
				end
			end
		end
	elseif r < 0.55 then
		call("h:list", names_of("list"), M(h, "list"), f, hw)
	elseif r < 0.75 then
		call("h:delete_where", names_of("delete_where"), M(h, "delete_where"), f, hw)
	elseif r < 0.9 then
		local c = changes()
		call("h:update_where", names_of("update_where"), M(h, "update_where"), f, c, hw)
	else
		call("h:flush", names_of("flush"), M(h, "flush"), f, hw)
	end
end

-- Option tables whose metamethods close the handle while it reads them.
local function scen_hostile_options()
	local h = pick_handle()
	CUR.h = h
	local name = pick(METHODS.handle)
	local a = shaped(name)
	for i = 1, a.n do
		if type(a[i]) == "table" and getmetatable(a[i]) == nil and not F.is(a[i]) then
			a[i] = hostile(a[i])
		end
	end
	if a.n == 0 then
		a.n, a[1] = 1, hostile(spec())
	end
	if name == "events" then
		a[1] = subopts(true)
		if type(a[1]) ~= "table" or getmetatable(a[1]) ~= nil then
			a[1] = { timeout = 0.01 }
		end
	end
	call("h:" .. name, names_of(name, "open"), M(h, name), unpack(a, 1, a.n))
end

local TARGETS -- forward

-- A call inside a coroutine; callbacks may yield out of it.  Abandoned
-- after a few resumes (its dump, if any, is left to the collector).
local function scen_coroutine()
	local t = pick(TARGETS)
	local co = coroutine.create(function() t[2]() end)
	local depth = incall
	for _ = 1, rint(1, 3) do
		local ok, err = coroutine.resume(co)
		incall = depth	-- a call suspended inside the coroutine is not under way here
		if not ok then
			report("VIOL", "coroutine", "error escaped the checked call: " .. tostring(err), 0, {})
			break
		end
		if coroutine.status(co) == "dead" then
			break
		end
	end
end

local function scen_finalizers()
	litter(rint(5, 40))
	local t = pick(TARGETS)
	t[2]()
end

-- ---------------------------------------------------------------------
-- Targets: {weight, function}

local HMETHODS = METHODS.handle
local MODFUNCS = {}
for _, k in ipairs(sorted_names(ct, "function")) do
	MODFUNCS[#MODFUNCS + 1] = k
end

TARGETS = {
	{ 30, function()
		local name = pick(HMETHODS)
		handle_call(name, pick_handle(), false)
	end },
	{ 12, function()
		local name = pick(MODFUNCS)
		if name == "open" then
			local o = chance(0.3) and nil or mutate({ netns = chance(0.5) and pick(NETNS) or nil,
				rcvbuf = chance(0.5) and value_for("rcvbuf") or nil }, 0.2)
			local ok, h = call("ct.open", names_of("open"), ct.open, o)
			if ok and ct.type(h) == "handle" then
				keep("handle", h)
			end
		elseif name == "default" or name == "type" or name == "entry" or name == "subscribe" then
			local a = name == "entry" and (chance(0.8) and spec() or any(1)) or
				name == "subscribe" and subopts(false) or any(1)
			call("ct." .. name, names_of(name, "open"), ct[name], a)
		else
			handle_call(name, nil, true)
		end
	end },
	{ 10, function()
		if #P.entry == 0 then
			return
		end
		poke_entry(pick(P.entry))
	end },
	{ 3, function()
		if #P.tuple > 0 then
			poke_tuple(pick(P.tuple))
		elseif #P.entry > 0 then
			local ok, t = pcall(function() return pick(P.entry).orig end)
			if ok and t then
				poke_tuple(t)
			end
		end
	end },
	{ 3, function()
		if #P.expect == 0 then
			pcall(SH.expect_create, SH, xspec())
			local l = SH:list(nil, { table = "expect" })
			for _, e in ipairs(l or {}) do
				keep("expect", e)
			end
			return
		end
		poke_expect(pick(P.expect))
	end },
	{ 8, function()
		if #P.dump == 0 then
			local h = pick_handle()
			if ct.type(h) == "handle" then
				local ok, it, st = pcall(h.dump, h, nil, chance(0.3) and { unique = true } or nil)
				if ok then
					keep("dump", { it = it, st = st })
				end
			end
			return
		end
		local d = pick(P.dump)
		CUR.h = nil
		poke_dump(d)
	end },
	{ 8, function()
		if #P.sub == 0 then
			local ok, s = pcall(ct.subscribe, chance(0.3) and { filter = callback() } or nil)
			if ok and s then
				keep("sub", s)
			end
			return
		end
		poke_sub(pick(P.sub))
	end },
	{ 3, function()
		if #P.matcher == 0 then
			local ok, p = pcall(function() return filter():plan("dump") end)
			if ok and p.matcher then
				keep("matcher", p.matcher)
			end
			return
		end
		poke_matcher(pick(P.matcher))
	end },
	{ 16, lua_layer },
	{ 2, core_call },
	{ 2, function() -- the generic for, broken out of, on every Lua
		local h = pick_handle()
		CUR.h = h
		local f, hw = filterish(), how()
		call("for e in h:dump() break", names_of("dump"), function()
			for e in M(h, "dump")(f, hw) do
				if chance(0.5) then
					return e
				end
			end
		end)
	end },
}
if callbacks then
	local more = {
		{ 8, scen_sub_filter },
		{ 8, scen_dump_callbacks },
		{ 5, scen_hostile_options },
		{ 3, scen_finalizers },
		{ 3, scen_coroutine },
	}
	for _, t in ipairs(more) do
		TARGETS[#TARGETS + 1] = t
	end
end

local WSUM = 0
for _, t in ipairs(TARGETS) do
	WSUM = WSUM + t[1]
end
local function target()
	local x = rnd() * WSUM
	for _, t in ipairs(TARGETS) do
		x = x - t[1]
		if x < 0 then
			return t
		end
	end
	return TARGETS[#TARGETS]
end

-- ---------------------------------------------------------------------
-- The run

for _, name in ipairs(HMETHODS) do
	called["h:" .. name] = 0
end
for _, name in ipairs(MODFUNCS) do
	called["ct." .. name] = 0
end

if callbacks and chance(0.3) then
	-- a collector that runs all the time: finalizers inside every call
	if _VERSION == "Lua 5.4" then
		collectgarbage("incremental", 10, 400)
	else
		collectgarbage("setpause", 10)
		collectgarbage("setstepmul", 400)
	end
end

scene()
for _ = 1, 3 do
	local h = ct.open()
	keep("handle", h)
end
for _, e in ipairs(SH:list() or {}) do
	keep("entry", e)
end

-- An error of a callback that escaped every checked call (a finalizer
-- raising where the collector happened to run: 5.1, 5.3 and LuaJIT pass
-- such errors on) is counted as such; any other is the fuzzer's own bug.
local function escaped(err)
	if (type(err) == "table" and rawget(err, "FUZZCB")) or tostring(err):find("FUZZCB", 1, true) then
		stats.cb = stats.cb + 1
		return
	end
	error(err, 0)
end

local function step()
	incall = 0
	if callno % 200 == 0 then
		scene()
	end
	CUR = {}
	MUT = {}
	target()[2]()
	if #threads > 0 and chance(0.01) then
		threads = {}
	end
end

while stats.calls < opt.n do
	local ok, err = pcall(step)
	if not ok then
		escaped(err)
	end
end
CUR, MUT = {}, {}
for _ = 1, 10 do
	local ok, err = pcall(collectgarbage)
	if ok then
		break
	end
	escaped(err)
end

-- The report: one line per kind of problem, then the calls made, in one
-- write, so that nothing on stderr lands in the middle of a line.
local out = {}
for _, sig in ipairs(reported) do
	local r = reported[sig]
	local line = r.line
	line[#line + 1] = tostring(r.count)
	out[#out + 1] = concat(line, "\t")
end
local parts = { "CALLED" }
for name, c in pairs(called) do
	parts[#parts + 1] = name .. "=" .. c
end
out[#out + 1] = concat(parts, "\t")
out[#out + 1] = ("DONE\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n"):format(stats.calls, stats.ok, stats.raised, stats.refused,
	stats.cb, stats.closed, stats.events)
local text = concat(out, "\n")
io.stdout:setvbuf("full", #text + 1)
io.stdout:write(text)
io.stdout:flush()
os.exit(0, true)
