-- bench/bulkop.lua OP [ARG]: one timed bulk operation of lua-conntrack, for
-- bench/bulk.lua.  OP is
--   delete_all          h:delete_where(ct.filter.all())
--   delete_proto NAME   h:delete_where(ct.filter.proto(NAME))
--   load FILE           h:load(specs) of the specs parsed from FILE (save format);
--                       the parse is not timed (printed on stderr)
--   load_text FILE      h:load(text) of FILE's text (read before the timing)
--   parse FILE          ct.format.parse_save of FILE alone
-- Prints "<count> <elapsed_ns>" (count: entries deleted / created), timed
-- with bench/benchclock.so around the operation alone.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
require("benchlib").use_tree(here)

local clock = require "benchclock"
local ct = require "conntrack"

local op, a = arg[1], arg[2]
local h = assert(ct.open())

local function slurp(path)
	local f = assert(io.open(path))
	local s = f:read("*a")
	f:close()
	return s
end

local n, t0, t1
if op == "delete_all" then
	t0 = clock.now()
	local ok, missing, fails = h:delete_where(ct.filter.all())
	t1 = clock.now()
	assert(ok, missing)
	assert(#fails == 0, fails[1] and fails[1].message)
	n = ok
elseif op == "delete_proto" then
	t0 = clock.now()
	local ok, missing, fails = h:delete_where(ct.filter.proto(a))
	t1 = clock.now()
	assert(ok, missing)
	assert(#fails == 0, fails[1] and fails[1].message)
	n = ok
elseif op == "load_text" then
	local text = slurp(a)
	t0 = clock.now()
	local ok, existing, fails = h:load(text)
	t1 = clock.now()
	assert(ok, existing)
	assert(#fails == 0, fails[1] and fails[1].message)
	n = ok
elseif op == "load" or op == "parse" then
	local text = slurp(a)
	local p0 = clock.now()
	local specs, errs = ct.format.parse_save(text)
	local p1 = clock.now()
	assert(#errs == 0, errs[1] and errs[1].message)
	if op == "parse" then
		n, t0, t1 = #specs, p0, p1
	else
		io.stderr:write(string.format("parse: %d lines in %.1f ms\n", #specs, (p1 - p0) / 1e6))
		t0 = clock.now()
		local ok, existing, fails = h:load(specs)
		t1 = clock.now()
		assert(ok, existing)
		assert(#fails == 0, fails[1] and fails[1].message)
		n = ok
	end
else
	io.stderr:write("usage: bulkop.lua delete_all | delete_proto NAME | load FILE | load_text FILE | parse FILE\n")
	os.exit(2)
end
print(string.format("%d %d", n, t1 - t0))
