-- Dumps and lists while another process changes the table at full speed:
-- a child interpreter in the same private namespace creates and deletes
-- flows with the module's batches (measured: 50 000 to 290 000 changes/s
-- on a 2-core machine, depending on its load; a loop of `conntrack -I/-D`
-- manages about 70, one process per change).  What README promises of a
-- dump under churn, checked on every entry of every dump, list and
-- filtered dump made meanwhile:
--   * every entry is whole: its fields decode, tostring and totable work;
--   * a flow that exists for the whole dump is yielded (the stable flows);
--   * h:list() and h:dump(f, {unique = true}) never yield one flow (original
--     tuple and zone) twice.
-- A plain h:dump may yield a flow twice: when the entry a dump is to resume
-- from was deleted between two of its chunks, the kernel walks that hash
-- bucket again from its start.  That takes another flow of this namespace
-- in the same bucket, so it happens about (deletions per second) / (hash
-- buckets: 262 144 here) times per second of dumping, whatever the table's
-- size: about once in three seconds at 100 000 deletions/s.  The spec
-- prints how often it saw it; it cannot count on it.
local ct = require "conntrack"
local H = require "helpers"
local hosts = require "hosts"

local F = ct.filter

-- The churner: batches of BATCH new flows in 203.0.113.0/24, each batch
-- deleted again LIVE batches later, so the table keeps changing everywhere
-- while it holds a few thousand of them.  It writes its change count to
-- progress every 20 rounds and stops when the stop file appears (or after
-- its own bound).  arg: progress file, stop file, seconds.
local CHURNER = [[
local ct = require "conntrack"
local progress, stop, secs = arg[1], arg[2], tonumber(arg[3])
local h = assert(ct.open())
local BATCH, LIVE, KINDS = 500, 4, 40
local function batch(k)
	local t = {}
	for i = 0, BATCH - 1 do
		local n = k * BATCH + i
		t[#t + 1] = { proto = "udp", src = "203.0.113." .. (n % 250 + 1),
			dst = "203.0.113." .. (math.floor(n / 250) % 4 + 251), sport = 20000 + math.floor(n / 1000),
			dport = 53, timeout = 120 }
	end
	return t
end
local creates, deletes = {}, {}
for k = 0, KINDS - 1 do
	creates[k] = batch(k)
	deletes[k] = {}
	for i, s in ipairs(creates[k]) do
		deletes[k][i] = { proto = s.proto, src = s.src, dst = s.dst, sport = s.sport, dport = s.dport }
	end
end
local function write(path, text)
	local f = assert(io.open(path .. ".tmp", "w"))
	f:write(text)
	f:close()
	assert(os.rename(path .. ".tmp", path))
end
local t0, changes, round = os.time(), 0, 0
write(progress, "0\n")
while os.time() - t0 < secs do
	local k = round % KINDS
	local ok = assert(h:batch("create", creates[k]))
	local gone = assert(h:batch("delete", deletes[(round - LIVE) % KINDS]))
	changes = changes + ok + gone
	round = round + 1
	if round % 20 == 0 then
		write(progress, changes .. "\n")
		local f = io.open(stop)
		if f then
			f:close()
			break
		end
	end
end
write(progress, changes .. " " .. (os.time() - t0) .. " done\n")
]]

describe("a table that changes during dumps", function()
	local topo, h
	H.private(function(t, _, hh) topo, h = t, hh end)

	-- The stable flows: they exist for the whole test.
	local STABLE_UDP, STABLE_TCP = 1500, 500
	local stable = {}
	for _, s in ipairs(H.specs(STABLE_UDP)) do stable[#stable + 1] = s end
	for _, s in ipairs(H.specs(STABLE_TCP, STABLE_UDP, "tcp")) do stable[#stable + 1] = s end

	local function key_of_spec(s)
		return table.concat({ s.proto, s.src, s.dst, tostring(s.sport), tostring(s.dport), "0" }, " ")
	end

	-- nil when e is whole, else what is wrong with it
	local function broken(e)
		local ok, why = pcall(function()
			if e.family ~= "ipv4" then return "family " .. tostring(e.family) end
			local p = e.proto
			if p ~= "udp" and p ~= "tcp" then return "proto " .. tostring(p) end
			local o, r = e.orig, e.reply
			if not (o and r and o.src and o.dst and o.sport and o.dport and r.src and r.dst and r.sport
				and r.dport) then
				return "a tuple field is missing"
			end
			if r.dst ~= o.src or r.src ~= o.dst or r.dport ~= o.sport or r.sport ~= o.dport then
				return "reply tuple is not the original inverted"
			end
			if type(e.timeout) ~= "number" or type(e.status) ~= "table" then return "timeout or status" end
			local text = tostring(e)
			if not text:find("^" .. p .. " +%d+ %d+ ") or not text:find("src=" .. o.src .. " ", 1, true) then
				return "text " .. text
			end
			local t = e:totable()
			if t.orig.src ~= o.src or t.reply.dport ~= r.dport or t.proto ~= p then return "totable" end
			return nil
		end)
		if not ok then return "raised " .. tostring(why) end
		return why
	end

	it("keeps every entry whole, yields every stable flow, and list and unique dumps no flow twice", function()
		assert(h:flush())
		local created, existing, failures = h:load(stable)
		assert.same({}, failures)
		assert.equals(0, existing)
		assert.equals(#stable, created)
		local stable_keys = {}
		for _, s in ipairs(stable) do stable_keys[key_of_spec(s)] = s end

		-- the churner, in the same namespace
		local dir = os.tmpname()
		os.remove(dir)
		assert(os.execute("mkdir -p " .. dir) ~= false)
		finally(function() os.execute("rm -rf " .. dir) end)
		local script, progress, stop = dir .. "/churner.lua", dir .. "/progress", dir .. "/stop"
		local f = assert(io.open(script, "w"))
		f:write(CHURNER)
		f:close()
		-- topo:spawn drops an LD_PRELOAD; the churner runs the suite's own
		-- build, which under make check-asan needs the ASan runtime it names
		local pre = os.getenv("LD_PRELOAD")
		local keep = pre and pre ~= "" and ("env LD_PRELOAD=" .. hosts.quote(pre) .. " ") or ""
		topo:spawn("host", ("%stimeout 60 %s %s %s %s 40"):format(keep, H.lua, script, progress, stop))
		local function changes()
			local text = H.read(progress)
			return text and tonumber(text:match("^(%d+)")), text
		end
		local t0 = H.now()
		while (changes() or 0) == 0 and H.now() - t0 < 10 do
			os.execute("sleep 0.05")
		end
		local before = changes()
		assert.is_true((before or 0) > 0, "the churner did not start: " .. tostring(H.read(progress))
			.. " " .. topo:log())

		local problems, seen_plain, removed, dumps, entries = {}, 0, 0, 0, 0
		local function problem(what)
			if #problems < 20 then problems[#problems + 1] = what end
		end
		-- What one dump or list yields (take() gives its entries one at a
		-- time, the dump's as they come): every entry whole, no flow twice
		-- (unless dups_ok), every stable flow that want(spec) selects present.
		local function check(name, take, dups_ok, want)
			local keys, n = {}, 0
			for e in take do
				n = n + 1
				local why = broken(e)
				if why then
					problem(name .. ": broken entry: " .. why)
				else
					local k = H.key(e)
					if keys[k] then
						if dups_ok then
							seen_plain = seen_plain + 1
						else
							problem(name .. ": flow twice: " .. k)
						end
					end
					keys[k] = true
				end
			end
			for k, s in pairs(stable_keys) do
				if not keys[k] and (want == nil or want(s)) then
					problem(name .. ": stable flow missing: " .. k)
					break
				end
			end
			dumps, entries = dumps + 1, entries + n
		end
		local function list(name, filter, dups_ok, want)
			local l, msg = h:list(filter)
			if not l then
				problem(name .. ": " .. tostring(msg))
				return
			end
			local i = 0
			check(name, function() i = i + 1 return l[i] end, dups_ok, want)
		end
		local function dump(name, filter, how, dups_ok, want)
			local it, st = h:dump(filter, how)
			check(name, function() return it(st) end, dups_ok, want)
			removed = removed + st.duplicates
		end

		-- Bounded: about 8 s of dumps (at least 3 rounds, at most 200).
		local udp = function(s) return s.proto == "udp" end
		local filtered = {
			function() list("h:list(src 192.0.2.0/24)", F.src "192.0.2.0/24", false) end,
			function()
				dump("h:dump(udp dport 53, unique)", F.proto "udp" * F.dport(53), { unique = true }, false, udp)
			end,
			function()
				dump("h:dump(Lua filter, unique)", F.where(function(e) return e.orig.sport >= 1024 end),
					{ unique = true }, false)
			end,
			-- the churner's flows only: no stable flow expected
			function() list("h:list{src = 203.0.113.0/24}", { src = "203.0.113.0/24" }, false, function() return false end) end,
		}
		local rounds, start = 0, H.now()
		while rounds < 3 or (H.now() - start < 8 and rounds < 200) do
			rounds = rounds + 1
			list("h:list()", nil, false)
			dump("h:dump(nil, {unique = true})", nil, { unique = true }, false)
			dump("h:dump()", nil, nil, true)
			filtered[rounds % #filtered + 1]()
		end
		local after = changes()
		assert(io.open(stop, "w")):close()
		local t1 = H.now()
		local final
		repeat
			os.execute("sleep 0.05")
			final = H.read(progress)
		until (final and final:find("done", 1, true)) or H.now() - t1 > 10

		local total, secs = (final or ""):match("^(%d+) (%d+) done")
		print(("\n80-churn: %s: %d dumps and lists (%d entries) while the churner made %s changes in %s s" ..
			" (%.0f/s); %d flows twice in plain dumps, %d left out by unique dumps")
			:format(H.version, dumps, entries, tostring(total), tostring(secs),
				(tonumber(total) or 0) / math.max(tonumber(secs) or 1, 1), seen_plain, removed))
		-- the churn went on during the dumps, not only before or after them
		assert.is_true(after > before, "the churner made no change while the dumps ran")
		assert.same({}, problems)
	end)
end)
