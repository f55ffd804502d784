--- Argument checks of the Lua layer, in the C core's words (csrc/err.c):
-- "fname: bad argument 'arg' (why)", raised at the script's line; values
-- shown as the core shows them: a string quoted, cut at 40 bytes with its
-- length, unprintable bytes, quotes and backslashes as \xNN; a number as it
-- is; anything else by its type (never its __tostring).  Internal: the
-- other files of conntrack/ use it.
local core = require "conntrack.core"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local A = {}

local type, tostring, getmetatable = type, tostring, getmetatable
local format, byte, char, concat = string.format, string.byte, string.char, table.concat
local raise = core.error
A.raise = raise

local SHOWN = 40

--- v as a message shows it.
function A.show(v)
	local t = type(v)
	if t == "number" then
		return tostring(v)
	elseif t ~= "string" then
		return t
	end
	local n = #v
	local out = { "'" }
	for i = 1, n < SHOWN and n or SHOWN do
		local c = byte(v, i)
		if c >= 32 and c < 127 and c ~= 39 and c ~= 92 then
			out[#out + 1] = char(c)
		else
			out[#out + 1] = format("\\x%02x", c)
		end
	end
	out[#out + 1] = "'"
	if n > SHOWN then
		out[#out + 1] = format("... (%d bytes)", n)
	end
	return concat(out)
end

--- A table key named in a message ("bad argument 'prot' (unknown field)"):
-- a string shown, another key by its type.
function A.key(k)
	if type(k) == "string" then
		return A.show(k)
	end
	return type(k)
end

--- An argument's name, cut as the core cuts it (a field name comes from the
-- caller's table).
function A.name(arg)
	arg = tostring(arg)
	if #arg < 48 then
		return arg
	end
	return arg:sub(1, 40) .. "..."
end

--- Raises "fname: bad argument 'arg' (why)".
function A.argerr(fname, arg, why)
	raise(format("%s: bad argument '%s' (%s)", fname, A.name(arg), why))
end

-- The entry metatable, once an entry has been seen (a cheaper test than
-- core.type on each call).
local entry_mt

--- Is e a conntrack entry (a dump's, an event's or ct.entry's)?
function A.is_entry(e)
	local mt = getmetatable(e)
	if mt ~= nil and mt == entry_mt then
		return true
	end
	if type(e) == "userdata" and core.type(e) == "entry" then
		entry_mt = mt
		return true
	end
	return false
end

--- A function name given to the module (F.coerce(x, fname), f:plan(fname)):
-- nil, or a name as messages begin with one: up to 40 letters, digits, "_"
-- and ".", not starting with a digit ("dump", "mylib.find").
function A.fname(fname, what, v)
	if v ~= nil and (type(v) ~= "string" or #v > 40 or not v:find("^[%a_][%w_.]*$")) then
		A.argerr(fname, what, "function name expected, got " .. A.key(v))
	end
	return v
end

--- Checks that e is an entry, or (tables true) a table of its shape: status
-- and labels sets, orig and reply tables or tuples.  Returns e.status,
-- e.orig, e.reply, each read once.
function A.entry(fname, e, tables)
	if A.is_entry(e) then
		return e.status, e.orig, e.reply
	end
	if not tables or type(e) ~= "table" then
		A.argerr(fname, "e", (tables and "entry or table" or "entry") .. " expected, got " .. type(e))
	end
	local st, o, r, labels = e.status, e.orig, e.reply, e.labels
	if st ~= nil and type(st) ~= "table" then
		A.argerr(fname, "e.status", "table of flags expected, got " .. type(st))
	end
	if labels ~= nil and type(labels) ~= "table" then
		A.argerr(fname, "e.labels", "table of labels expected, got " .. type(labels))
	end
	if o ~= nil and type(o) ~= "table" and core.type(o) ~= "tuple" then
		A.argerr(fname, "e.orig", "table or tuple expected, got " .. type(o))
	end
	if r ~= nil and type(r) ~= "table" and core.type(r) ~= "tuple" then
		A.argerr(fname, "e.reply", "table or tuple expected, got " .. type(r))
	end
	return st, o, r
end

--- The values of list v (a table, read through its metamethods as the
-- caller's # and [] would) as a plain array and its length.  A length that
-- is not a count (a __len returning junk or raising) or more than max
-- values raises, naming fname and arg.
A.LIST_MAX = 4096
function A.list(fname, arg, v, max)
	max = max or A.LIST_MAX
	local ok, n = pcall(function() return #v end)
	if not ok or type(n) ~= "number" or n < 0 or n > max or n ~= math.floor(n) then
		A.argerr(fname, arg, "list of at most " .. max .. " values expected, its length is " ..
			(ok and A.show(n) or "an error"))
	end
	local out = {}
	for i = 1, n do
		out[i] = v[i]
	end
	return out, n
end

return A
