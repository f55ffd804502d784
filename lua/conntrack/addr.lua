--- Addresses in the Lua layer: what the C core's vocabulary does not give
-- directly.  Parsing and the kernel's text form come from the core
-- (core.pton, core.ntop, core.cidr), so there is one reading of an address.
--
--   addr.parse(s)          -> "ipv4"|"ipv6", bytes | nil, why
--   addr.canonical(s)      -> the text the kernel prints for s (inet_ntop form), family | nil, why
--   addr.matcher(spec)     -> fn(text) -> boolean, family, canonical spec
--                             spec: "192.0.2.1", "192.0.2.0/24", "2001:db8::/32"
--   addr.split_hostport(s) -> addr|nil, port|nil, why|nil
--                             ("ip", "ip:port", "[v6]:port", "[v6]", ":port";
--                             the address may be a prefix: "192.0.2.0/24")
local core = require "conntrack.core"
local args = require "conntrack.args"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local A = {}

local byte, floor = string.byte, math.floor
local show = args.show

function A.parse(s)
	if type(s) ~= "string" then
		return nil, "address string expected"
	end
	return core.pton(s)
end

function A.canonical(s)
	if type(s) ~= "string" then
		return nil, "address string expected"
	end
	local fam, bytes = core.pton(s)
	if not fam then
		return nil, bytes
	end
	return core.ntop(bytes), fam
end

-- Cache of parsed entry texts, kept while it stays small.
local cache, cached = {}, 0
local function bytes_of(s)
	local b = cache[s]
	if b == nil then
		local _, v = core.pton(s)
		b = v or false
		if cached >= 4096 then
			cache, cached = {}, 0
		end
		cache[s] = b
		cached = cached + 1
	end
	return b
end

--- A matcher for one address or prefix over address texts.  Raises
-- "addr.matcher: bad argument 'what' (...)" on a malformed spec (what, the
-- name of the argument in the message, "address" by default).
function A.matcher(spec, what)
	if what ~= nil and type(what) ~= "string" then
		args.argerr("addr.matcher", "what", "string expected, got " .. type(what))
	end
	what = what or "address"
	if type(spec) ~= "string" then
		args.argerr("addr.matcher", what, "address or prefix string expected, got " .. type(spec))
	end
	local fam, canon, plen = core.cidr(spec)
	if not fam then
		args.argerr("addr.matcher", what, "malformed address or prefix " .. args.show(spec))
	end
	local _, net = core.pton((canon:gsub("/%d+$", "")))
	local whole, rest = floor(plen / 8), plen % 8
	local size = #net
	local last = rest > 0 and byte(net, whole + 1) or nil
	local div = 2 ^ (8 - rest)
	local head = net:sub(1, whole)
	return function(s)
		if type(s) ~= "string" then
			return false
		end
		local b = bytes_of(s)
		if not b or #b ~= size or b:sub(1, whole) ~= head then
			return false
		end
		return last == nil or floor(byte(b, whole + 1) / div) == floor(last / div)
	end, fam, canon
end

--- "ip", "ip:port", "[v6]:port", "[v6]", ":port" -> addr|nil, port|nil; a
-- third value says why when the text is malformed.
function A.split_hostport(s)
	if type(s) ~= "string" then
		return nil, nil, "\"addr\", \"addr:port\", \"[v6addr]:port\" or \":port\" expected, got " .. type(s)
	end
	local a, p = s:match("^%[([^%]]+)%](.*)$")
	if a then
		if p ~= "" then
			p = p:match("^:(%d+)$")
			if not p then
				return nil, nil, "malformed " .. show(s)
			end
		end
	elseif s:find(":", 1, true) and not s:find("^[^:]*:[^:]*$") then
		a, p = s, ""          -- a bare IPv6 address
	else
		a, p = s:match("^([^:]*):?(.*)$")
		if s:find(":", 1, true) and not p:match("^%d+$") then
			return nil, nil, "malformed port in " .. show(s)
		end
	end
	local port
	if p ~= "" then
		port = tonumber(p)
		if not port or port > 65535 then
			return nil, nil, "port 0..65535 expected in " .. show(s)
		end
	end
	if a == "" then
		a = nil
	end
	if a and not core.cidr(a) then
		return nil, nil, "malformed address " .. show(a)
	end
	if a == nil and port == nil then
		return nil, nil, "\"addr\", \"addr:port\", \"[v6addr]:port\" or \":port\" expected"
	end
	return a, port
end

return A
