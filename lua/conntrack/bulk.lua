--- Filtered dumps and bulk operations, added to the handle methods by
-- lua/conntrack.lua (so h:delete_where(...) and ct.delete_where(...) both work).
--
--   h:dump([filter [, how]])  -> iterator (as the core's h:dump)
--   h:list([filter [, how]])  -> array of entries | nil, msg, errno
--        filter: a filter (conntrack.filter), a table of filter fields, a
--        function, or the core's plain dump options {family, mark, mark_mask,
--        zone, status, status_mask} (passed on unchanged).  What the kernel
--        can do goes into the dump request (f:pushdown()); the rest runs on
--        each entry in Lua.  how.pushdown = false evaluates all of it in Lua.
--   h:delete_where(filter [, how])          -> deleted, missing, failures | nil, msg, errno
--   h:update_where(filter, changes [, how]) -> updated, missing, failures | nil, msg, errno
--        changes: as for h:update (mark, mark_mask, timeout, status, labels, labels_mask).
--        missing counts entries that vanished between the dump and the request
--        (not errors); failures is an array of {entry=, index=, errno=, message=}
--        (index: the matching entry's position in dump order; a delete whose
--        filter runs whole in the kernel and C goes through h:purge, straight
--        from the dump's messages, and its failures have no entry).  Matching entries
--        go to the kernel in batches of `how.batch` (default 1000) requests, one
--        sendmsg each with only errors acknowledged, while the dump goes on.
--   h:load(specs [, how])     -> created, failures | nil, msg, errno
--        specs: an array of specs (as for h:create) or text in the
--        `conntrack -L -o save` format.  how.mode = "create" (default; existing
--        entries fail with EEXIST) or "add" (existing ones are updated).
--        failures: {index=, errno=, message=, line=} (line for text input; a line
--        that does not parse, or a spec the core refuses, has errno EINVAL).
--   h:flush([filter])         -> true | nil, msg, errno
--        a filter the kernel can run whole (family, mark/mask, status/mask, a zone
--        other than 0) goes to the kernel's filtered flush; any other filter runs
--        as delete_where.
local F = require "conntrack.filter"
local raise = F.raise

local B = {}

local type, pairs, pcall, tostring = type, pairs, pcall, tostring
local EINVAL = 22

local change_keys = { mark = true, mark_mask = true, timeout = true, status = true, labels = true,
	labels_mask = true }
local dump_opt_keys = { family = true, mark = true, mark_mask = true, zone = true, status = true,
	status_mask = true }
-- The core's tuple filter takes these when exact: one address, one port.
local tuple_opt_keys = { proto = true, src = true, dst = true, reply_src = true, reply_dst = true,
	sport = true, dport = true, reply_sport = true, reply_dport = true }

local function core_value(k, v)
	if dump_opt_keys[k] then
		return true
	end
	if not tuple_opt_keys[k] then
		return false
	end
	if k:find("port", 1, true) then
		return type(v) == "number"
	end
	return (type(v) == "string" and not v:find("/", 1, true)) or (k == "proto" and type(v) == "number")
end

-- What the core should judge itself (and refuse with its own messages):
-- nil, anything that is neither a table nor a function, and plain tables
-- of its own options only.  A plain table with a field neither the core
-- nor the filters know goes to the core reduced to those fields, so that
-- the error names them.  Returns true, the value for the core; or false.
local function for_core(x)
	local tx = type(x)
	if x == nil or (tx ~= "table" and tx ~= "function") then
		return true, x
	end
	if tx ~= "table" or getmetatable(x) ~= nil then
		return false
	end
	local own, unknown = true, nil
	for k, v in pairs(x) do
		if not core_value(k, v) then
			own = false
			if not F.is_field(k) then
				unknown = unknown or {}
				unknown[k] = v
			end
		end
	end
	if unknown then
		return true, unknown
	end
	return own, x
end

-- -> kernel options, residual predicate (function or nil)
local function plan(filter, how)
	local f = F.coerce(filter)
	if how and how.pushdown == false then
		if f == F.always then
			return nil, nil
		end
		return nil, f:compile()
	end
	local spec, rest = f:pushdown(how and how.caps)
	return spec, rest and rest:compile()
end
B.plan = plan

--- How h:flush(filter) runs: "kernel", options (the kernel's filtered
-- flush: family, mark/mask, status/mask, zone > 0) or "delete_where".
function B.flush_plan(filter, how)
	local caps = {}
	for k, v in pairs(how and how.caps or {}) do
		caps[k] = v
	end
	caps.tuple = false -- the kernel's filtered flush takes no tuple filter here
	local spec, rest = F.coerce(filter):pushdown(caps)
	if rest or (how and how.pushdown == false) or (spec and spec.zone == 0) then
		return "delete_where"
	end
	return "kernel", spec
end

function B.install(methods)
	local cdump, clist, cflush, cbatch = methods.dump, methods.list, methods.flush, methods.batch

	function methods.dump(h, filter, how)
		local core, opts = for_core(filter)
		if core then
			return cdump(h, opts)
		end
		local spec, pred = plan(filter, how)
		local it, st, ctl, closer = cdump(h, spec)
		if not pred then
			return it, st, ctl, closer
		end
		return function(s)
			local e = it(s)
			while e ~= nil and not pred(e) do
				e = it(s)
			end
			return e
		end, st, ctl, closer
	end

	function methods.list(h, filter, how)
		local core, opts = for_core(filter)
		if core then
			return clist(h, opts)
		end
		local spec, pred = plan(filter, how)
		local all, msg, errno = clist(h, spec)
		if not all or not pred then
			return all, msg, errno
		end
		local out, n = {}, 0
		for i = 1, #all do
			local e = all[i]
			if pred(e) then
				n = n + 1
				out[n] = e
			end
		end
		return out
	end

	-- Streams the matching entries to op in batches, while the dump goes on
	-- (on a socket of its own): the batches only touch entries already read.
	local function bulk(h, op, filter, changes, how)
		local spec, pred = plan(filter, how)
		-- All of the filter in the kernel and C: the core deletes straight
		-- from the dump's messages, with no Lua value per entry (failures
		-- then carry no entry).
		if op == "delete" and not pred and methods.purge and not (how and how.batch) then
			return methods.purge(h, spec)
		end
		local size = how and how.batch or 1000
		local it, st = cdump(h, spec)
		local res = { done = 0, missing = 0, failures = {} }
		local function send(chunk, n, seen)
			local ok, miss, fails = cbatch(h, op, chunk, changes)
			if not ok then
				return nil, miss, fails
			end
			res.done, res.missing = res.done + ok, res.missing + miss
			local failures = res.failures
			for i = 1, #fails do
				local f = fails[i]
				f.entry = chunk[f.index]
				f.index = seen - n + f.index
				failures[#failures + 1] = f
			end
			return true
		end
		local function drain()
			local chunk, n, seen = {}, 0, 0
			for e in it, st do
				if not pred or pred(e) then
					n, seen = n + 1, seen + 1
					chunk[n] = e
					if n >= size then
						local ok, msg, errno = send(chunk, n, seen)
						if not ok then
							return nil, msg, errno
						end
						chunk, n = {}, 0
					end
				end
			end
			if n > 0 then
				return send(chunk, n, seen)
			end
			return true
		end
		local okc, ok, msg, errno = pcall(drain)
		if not okc or not ok then
			st:close()
			if not okc then
				error(ok, 0)
			end
			return nil, msg, errno
		end
		return res.done, res.missing, res.failures
	end

	function methods.delete_where(h, filter, how)
		if filter == nil then
			raise("delete_where: bad argument 'filter' (a filter is required; " ..
				"ct.filter.all() matches every entry)")
		end
		return bulk(h, "delete", filter, nil, how)
	end

	function methods.update_where(h, filter, changes, how)
		if filter == nil then
			raise("update_where: bad argument 'filter' (a filter is required; " ..
				"ct.filter.all() matches every entry)")
		end
		if type(changes) ~= "table" or next(changes) == nil then
			raise("update_where: bad argument 'changes' (table of changes expected)")
		end
		-- Checked here too, so that a mistake shows even when nothing matches.
		for k in pairs(changes) do
			if not change_keys[k] then
				raise("update_where: bad argument '" .. tostring(k) .. "' (unknown field)")
			end
		end
		return bulk(h, "update", filter, changes, how)
	end

	-- Loads specs[first..last] in one batch call; a spec the core refuses
	-- (it raises before sending anything) is found by halving.
	local function load_range(h, op, specs, first, last, res)
		local part = {}
		for i = first, last do
			part[#part + 1] = specs[i]
		end
		local okc, ok, miss, fails = pcall(cbatch, h, op, part)
		if okc then
			if not ok then
				return nil, miss, fails
			end
			res.ok = res.ok + ok
			for _, f in ipairs(fails) do
				f.index = first + f.index - 1
				res.failures[#res.failures + 1] = f
			end
			return true
		end
		if first == last then
			res.failures[#res.failures + 1] = { index = first, errno = EINVAL,
				message = tostring(ok):gsub("^[^:]*:%d+: ", "") }
			return true
		end
		local mid = first + math.floor((last - first) / 2)
		local r, msg, errno = load_range(h, op, specs, first, mid, res)
		if not r then
			return nil, msg, errno
		end
		return load_range(h, op, specs, mid + 1, last, res)
	end

	function methods.load(h, specs, how)
		local mode = how and how.mode or "create"
		if mode ~= "create" and mode ~= "add" then
			raise("load: bad argument 'mode' (\"create\" or \"add\" expected)")
		end
		local lines, perr
		if type(specs) == "string" then
			specs, perr, lines = require("conntrack.format").parse_save(specs)
		elseif type(specs) ~= "table" then
			raise("load: bad argument 'specs' (array of specs or save-format text expected)")
		end
		-- Batches small enough to stay within one sendmsg of the core
		-- (128 KiB), so that a refused spec leaves its batch unsent.
		local size = how and how.batch or 512
		local res = { ok = 0, failures = {} }
		for first = 1, #specs, size do
			local last = math.min(first + size - 1, #specs)
			local ok, msg, errno = load_range(h, mode, specs, first, last, res)
			if not ok then
				return nil, msg, errno
			end
		end
		if lines then
			for _, f in ipairs(res.failures) do
				f.line = lines[f.index]
			end
			for _, pe in ipairs(perr) do
				res.failures[#res.failures + 1] = pe
			end
			table.sort(res.failures, function(a, b) return (a.line or 0) < (b.line or 0) end)
		end
		return res.ok, res.failures
	end

	function methods.flush(h, filter, how)
		local core, opts = for_core(filter)
		if core then
			return cflush(h, opts)
		end
		local f = F.coerce(filter)
		local way, spec = B.flush_plan(f, how)
		if way == "kernel" then
			return cflush(h, spec)
		end
		local ok, msg, errno = methods.delete_where(h, f, how)
		if not ok then
			return nil, msg, errno
		end
		return true
	end
end

return B
