--- Address helpers of the Lua layer: parsing IPv4/IPv6 text, the kernel's
-- (glibc inet_ntop's) canonical text form, and CIDR matchers that work on
-- the text entries carry.  Plain Lua 5.1 - 5.4 and LuaJIT.
--
--   addr.parse(s)        -> "ipv4", n (0..2^32-1) | "ipv6", {w1..w8} | nil, why
--   addr.canonical(s)    -> the text the kernel prints for s (inet_ntop form) | nil, why
--   addr.matcher(spec)   -> fn(text) -> boolean, family, canonical spec
--                           spec: "192.0.2.1", "192.0.2.0/24", "2001:db8::/32"
--   addr.split_hostport(s) -> addr|nil, port|nil ("ip", "ip:port", "[v6]:port", ":port")
--   addr.parse4(s), addr.parse6(s), addr.format4(n), addr.format6(words)
local A = {}

local tonumber, floor, concat = tonumber, math.floor, table.concat
local format = string.format

local function parse4(s)
	local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
	if not a then
		return nil
	end
	a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
	if a > 255 or b > 255 or c > 255 or d > 255 then
		return nil
	end
	return ((a * 256 + b) * 256 + c) * 256 + d
end
A.parse4 = parse4

-- Eight 16-bit words, or nil.
local function parse6(s)
	if not s:find(":", 1, true) or s:find("[^%x:%.]") then
		return nil
	end
	local tail4
	local v4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
	if v4 then
		tail4 = parse4(v4)
		if not tail4 then
			return nil
		end
		s = s:sub(1, #s - #v4) .. "0:0"
	end
	local head, rest = s:match("^(.-)::(.*)$")
	local function groups(part, out)
		if part == "" then
			return out
		end
		for g in (part .. ":"):gmatch("([^:]*):") do
			if #g == 0 or #g > 4 then
				return nil
			end
			out[#out + 1] = tonumber(g, 16)
		end
		return out
	end
	local w
	if head then
		if rest:find("::", 1, true) then
			return nil
		end
		local h, r = groups(head, {}), groups(rest, {})
		if not h or not r or #h + #r > 7 then
			return nil
		end
		w = h
		for _ = 1, 8 - #h - #r do
			w[#w + 1] = 0
		end
		for i = 1, #r do
			w[#w + 1] = r[i]
		end
	else
		w = groups(s, {})
		if not w or #w ~= 8 then
			return nil
		end
	end
	if tail4 then
		w[7] = floor(tail4 / 65536)
		w[8] = tail4 % 65536
	end
	return w
end
A.parse6 = parse6

function A.parse(s)
	if type(s) ~= "string" then
		return nil, "address string expected"
	end
	local n = parse4(s)
	if n then
		return "ipv4", n
	end
	local w = parse6(s)
	if w then
		return "ipv6", w
	end
	return nil, "malformed address '" .. s .. "'"
end

local function fmt4(n)
	return format("%d.%d.%d.%d", floor(n / 16777216), floor(n / 65536) % 256,
		floor(n / 256) % 256, n % 256)
end
A.format4 = fmt4

-- glibc's inet_ntop: the longest run (two words or more, the first of
-- equals) of zero words becomes "::"; ::a.b.c.d and ::ffff:a.b.c.d keep
-- the embedded IPv4 address.
local function fmt6(w)
	local best, bestlen, cur, curlen = nil, 0, nil, 0
	for i = 1, 8 do
		if w[i] == 0 then
			if not cur then
				cur, curlen = i, 0
			end
			curlen = curlen + 1
			if curlen > bestlen then
				best, bestlen = cur, curlen
			end
		else
			cur = nil
		end
	end
	if bestlen < 2 then
		best = nil
	end
	local out = {}
	local i = 1
	while i <= 8 do
		if best and i == best then
			out[#out + 1] = (i == 1) and "::" or ":"
			i = i + bestlen
		else
			if i == 7 and best == 1 and (bestlen == 6 or (bestlen == 5 and w[6] == 0xffff)) then
				out[#out + 1] = fmt4(w[7] * 65536 + w[8])
				break
			end
			out[#out + 1] = format("%x", w[i])
			if i < 8 then
				out[#out + 1] = ":"
			end
			i = i + 1
		end
	end
	return concat(out)
end
A.format6 = fmt6

function A.canonical(s)
	local fam, v = A.parse(s)
	if not fam then
		return nil, v
	end
	if fam == "ipv4" then
		return fmt4(v), fam
	end
	return fmt6(v), fam
end

-- Parsed IPv6 texts of entries, kept while the cache stays small.
local cache6, cached = {}, 0
local function words6(s)
	local w = cache6[s]
	if w == nil then
		w = parse6(s) or false
		if cached >= 4096 then
			cache6, cached = {}, 0
		end
		cache6[s] = w
		cached = cached + 1
	end
	return w
end

--- A matcher for one address or prefix: fn(text) -> boolean.
-- Also returns the family and the canonical text of the spec
-- ("192.0.2.0/24"), or raises naming `what` when the spec is malformed.
function A.matcher(spec, what)
	what = what or "address"
	if type(spec) ~= "string" then
		error(format("bad argument '%s' (address or prefix string expected, got %s)",
			what, type(spec)), 0)
	end
	local a, len = spec:match("^([^/]+)/(%d+)$")
	if not a then
		a = spec
	end
	local fam, v = A.parse(a)
	if not fam then
		error(format("bad argument '%s' (%s)", what, v), 0)
	end
	local bits = fam == "ipv4" and 32 or 128
	len = len and tonumber(len) or bits
	if len > bits then
		error(format("bad argument '%s' (prefix length %d > %d)", what, len, bits), 0)
	end
	if fam == "ipv4" then
		local size = 2 ^ (32 - len)
		local net = v - v % size
		local canon = fmt4(net) .. (len < 32 and "/" .. len or "")
		if len == 32 then
			local text = fmt4(v)
			return function(s) return s == text end, fam, canon
		end
		if len == 0 then
			return function(s) return s ~= nil and parse4(s) ~= nil end, fam, canon
		end
		if len % 8 == 0 then
			-- Whole octets: a plain prefix of the text.
			local prefix = fmt4(net):match("^(" .. ("%d+%."):rep(len / 8) .. ")")
			local n = #prefix
			return function(s)
				return s ~= nil and s:sub(1, n) == prefix and not s:find(":", 1, true)
			end, fam, canon
		end
		return function(s)
			local x = s and parse4(s)
			return x ~= nil and x - x % size == net
		end, fam, canon
	end
	-- IPv6: compare whole words, then the high bits of the last one.
	local full, part = floor(len / 16), len % 16
	local net = {}
	for i = 1, 8 do
		if i <= full then
			net[i] = v[i]
		elseif i == full + 1 and part > 0 then
			local size = 2 ^ (16 - part)
			net[i] = v[i] - v[i] % size
		else
			net[i] = 0
		end
	end
	local canon = fmt6(net) .. (len < 128 and "/" .. len or "")
	if len == 128 then
		local text = fmt6(v)
		return function(s) return s == text end, fam, canon
	end
	local psize = 2 ^ (16 - part)
	return function(s)
		if s == nil then
			return false
		end
		local w = words6(s)
		if not w then
			return false
		end
		for i = 1, full do
			if w[i] ~= net[i] then
				return false
			end
		end
		if part > 0 then
			local x = w[full + 1]
			return x - x % psize == net[full + 1]
		end
		return true
	end, fam, canon
end

--- "ip", "ip:port", "[v6]:port", "[v6]", ":port" -> addr|nil, port|nil.
function A.split_hostport(s)
	if type(s) ~= "string" then
		return nil, nil
	end
	local a, p = s:match("^%[([^%]]+)%]:?(%d*)$")
	if not a then
		if s:find(":", 1, true) and not s:find("^[^:]*:%d*$") then
			a, p = s, ""          -- a bare IPv6 address
		else
			a, p = s:match("^([^:]*):?(%d*)$")
		end
	end
	if a == "" then
		a = nil
	end
	return a, tonumber(p)
end

return A
