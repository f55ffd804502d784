--- Helpers of the Lua-layer specs (spec/40..49): a private network namespace
-- with its own conntrack table, the conntrack CLI run inside it, and set
-- comparisons of entries.  require "40-helpers" (spec/?.lua is on LUA_PATH).
local H = {}

local nsn = 0

local function q(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.quote = q

-- stdout of cmd (stderr dropped), ok.
function H.sh(cmd)
	local f = assert(io.popen("(" .. cmd .. ") 2>/dev/null; echo \"@@rc=$?\""))
	local out = f:read("*a")
	f:close()
	local body, rc = out:match("^(.-)@@rc=(%d+)%s*$")
	return body or out, tonumber(rc) == 0
end

--- A fresh namespace: ns.name, ns:conntrack(args) -> stdout lines text,
-- ns:exec(cmd) -> stdout, ok; ns:destroy() (idempotent).
function H.netns(tag)
	nsn = nsn + 1
	local pidf = io.open("/proc/self/stat")
	local pid = pidf and pidf:read("*l"):match("^(%d+)") or tostring(os.time())
	if pidf then
		pidf:close()
	end
	local name = string.format("lct4x-%s-%d-%s", pid, nsn, tag or "t")
	local _, ok = H.sh("ip netns add " .. q(name) .. " && ip -n " .. q(name) .. " link set lo up")
	assert(ok, "cannot create namespace " .. name)
	local ns = { name = name }
	function ns:exec(cmd)
		return H.sh("ip netns exec " .. q(name) .. " sh -c " .. q(cmd))
	end
	function ns:conntrack(args)
		return (self:exec("conntrack " .. args))
	end
	function ns:destroy()
		if not self.gone then
			self.gone = true
			H.sh("ip netns pids " .. q(name) .. " | xargs -r kill; ip netns del " .. q(name))
		end
	end
	return ns
end

--- Non-empty lines of a text.
function H.lines(text)
	local out = {}
	for l in text:gmatch("[^\n]+") do
		out[#out + 1] = l
	end
	return out
end

--- The set of ids of an array of entries.
function H.ids(list)
	local s, n = {}, 0
	for _, e in ipairs(list) do
		s[e.id] = true
		n = n + 1
	end
	return s, n
end

--- Sorted ids, for readable assertion messages.
function H.idlist(list)
	local ids = {}
	for _, e in ipairs(list) do
		ids[#ids + 1] = e.id
	end
	table.sort(ids)
	return ids
end

--- Entries of list for which pred holds.
function H.select(list, pred)
	local out = {}
	for _, e in ipairs(list) do
		if pred(e) then
			out[#out + 1] = e
		end
	end
	return out
end

--- The kernel's dump options evaluated in Lua (for checking pushdown).
function H.spec_match(spec, e)
	local F = require "conntrack.filter"
	if spec == nil then
		return true
	end
	if spec.family and e.family ~= spec.family then
		return false
	end
	if spec.zone and (e.zone or 0) ~= spec.zone then
		return false
	end
	if spec.mark then
		local mask = spec.mark_mask or 4294967295
		if F.band(e.mark or 0, mask) ~= spec.mark then
			return false
		end
	end
	if spec.status then
		local v = 0
		for name, on in pairs(e.status or {}) do
			local b = F.status_bits[name] or (type(name) == "number" and name)
			if on and b then
				v = v + 2 ^ b
			end
		end
		if F.band(v, spec.status_mask) ~= spec.status then
			return false
		end
	end
	-- the tuple filter (CTA_FILTER): exact values
	local pnum = { tcp = 6, udp = 17, udplite = 136, icmp = 1, icmpv6 = 58, sctp = 132, dccp = 33, gre = 47 }
	if spec.proto and e.protonum ~= (pnum[spec.proto] or spec.proto) then
		return false
	end
	for _, k in ipairs{ "src", "dst", "sport", "dport" } do
		if spec[k] ~= nil and e.orig[k] ~= spec[k] then
			return false
		end
		if spec["reply_" .. k] ~= nil and e.reply[k] ~= spec["reply_" .. k] then
			return false
		end
	end
	return true
end

--- A `conntrack -L` line with what moves with the clock blanked: the
-- timeout column (it counts down) as "T", delta-time=N as delta-time=D.
function H.untimed(line)
	line = line:gsub("^(%S+%s+%d+%s+)%d+", "%1T")
	return (line:gsub("delta%-time=%d+", "delta-time=D"))
end

return H
