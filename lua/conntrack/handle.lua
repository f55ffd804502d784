--- The handle's Lua methods, installed over the C core's by name (one file,
-- one place).  Each query takes one route: coerce the argument to a filter,
-- plan it (the C matcher and the Lua residual), run it.
--
--   h:dump([filter [, how]])  -> iterator, state, nil, state
--   h:list([filter [, how]])  -> array of entries | nil, msg, errno
--   h:flush([filter [, how]]) -> true | nil, msg, errno
--   h:delete_where(filter [, how])          -> deleted, missing, failures | nil, msg, errno
--   h:update_where(filter, changes [, how]) -> updated, missing, failures | nil, msg, errno
--   h:load(specs or save text [, how])      -> created, existing, failures | nil, msg, errno
--   h:expect_flush([{family =, helper =}])  -> true | nil, msg, errno
--   h:subscribe([opts]), h:events([opts])
--
-- how (every field optional): pushdown = false (the kernel gets no filter:
-- C and Lua do all of it), batch = n (requests per batch of the bulk
-- operations, 1..1024), mode = "create" | "add" (load), zero = true (dump:
-- read and zero the counters), table = "conntrack" | "dying" | "unconfirmed",
-- lines = fn, format = opts (delete_where: fn(text) after each batch, with
-- the deleted entries' lines as e:format(opts) writes them), readahead =
-- false (the dump is read by the calling thread alone).
local core = require "conntrack.core"
local F = require "conntrack.filter"
local args = require "conntrack.args"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local raise, key, show = core.error, args.key, args.show
local type, pairs, ipairs, tostring, floor = type, pairs, ipairs, tostring, math.floor

local H = {}

local how_keys = {
	dump = { pushdown = "boolean", zero = "boolean", table = "string", unique = "boolean", readahead = "boolean" },
	list = { pushdown = "boolean", zero = "boolean", table = "string", readahead = "boolean" },
	flush = { pushdown = "boolean", batch = "number", readahead = "boolean" },
	delete_where = { pushdown = "boolean", batch = "number", lines = "function", format = "string",
		readahead = "boolean" },
	update_where = { pushdown = "boolean", batch = "number", readahead = "boolean" },
	load = { mode = "string", batch = "number" },
}

-- Checks how for fname; returns what it holds, read once (a plain table),
-- and the part the core's dump takes.
local function check_how(fname, how)
	if how == nil then
		return {}, nil
	end
	if type(how) ~= "table" then
		raise(fname .. ": bad argument 'how' (table expected, got " .. type(how) .. ")")
	end
	local keys, out, dump = how_keys[fname], {}, nil
	for k, v in pairs(how) do
		local want = keys[k]
		if want == nil then
			raise(fname .. ": bad argument " .. key(k) .. " (unknown option)")
		end
		if type(v) ~= want then
			raise(fname .. ": bad argument '" .. k .. "' (" .. want .. " expected, got " .. type(v) .. ")")
		end
		if k == "batch" and (v < 1 or v > 1024 or v ~= floor(v)) then
			raise(fname .. ": bad argument 'batch' (integer 1..1024 expected, got " .. tostring(v) .. ")")
		end
		out[k] = v
		if k ~= "batch" and k ~= "mode" and k ~= "lines" and k ~= "format" then
			dump = dump or {}
			dump[k] = v
		end
	end
	return out, dump
end

-- Raises unless h is an open handle (checked again after Lua code ran:
-- an option table's metamethods may have closed it).
local function check_open(fname, h)
	local t = core.type(h)
	if t == "closed handle" then
		raise(fname .. ": attempt to use a closed handle")
	elseif t ~= "handle" then
		raise(fname .. ": bad self (conntrack handle expected, got " .. type(h) .. ")")
	end
end

-- Would changes alter entry e?  As `conntrack -U` judges: the mark
-- ((old & ~mask) ~ value), status flags (added to the entry's), labels and
-- the protocol state; a new timeout always counts as a change.
local status_bits = core.status_bits
local function bits(v)
	if type(v) == "number" then
		return v
	elseif type(v) == "string" then
		return status_bits[v] or 0
	end
	local n = 0
	for k, x in pairs(v) do
		local name = type(k) == "number" and x or (x and k)
		if name then
			n = n + (status_bits[name] or 0)
		end
	end
	return n
end

local function set_bits(set)
	local out = {}
	for k, v in pairs(set or {}) do
		if type(k) == "number" and type(v) ~= "boolean" then
			out[tostring(v)] = true
		elseif v then
			out[tostring(k)] = true
		end
	end
	return out
end

local function alters(e, c)
	if c.timeout ~= nil or c.tcp_flags_orig ~= nil or c.tcp_flags_reply ~= nil or
		c.tcp_wscale_orig ~= nil or c.tcp_wscale_reply ~= nil then
		return true
	end
	if c.state ~= nil and c.state ~= e.state then
		return true
	end
	if c.orig_vtag ~= nil and c.orig_vtag ~= e.orig_vtag or
		c.reply_vtag ~= nil and c.reply_vtag ~= e.reply_vtag then
		return true
	end
	if c.mark ~= nil then
		local old, mask = e.mark or 0, c.mark_mask or 4294967295
		if F.bxor(F.band(old, 4294967295 - mask), c.mark) ~= old then
			return true
		end
	end
	if c.status ~= nil then
		local old = 0
		for name in pairs(e.status or {}) do
			old = old + (status_bits[name] or 0)
		end
		if F.bor(old, bits(c.status)) ~= old then
			return true
		end
	end
	if c.labels ~= nil or c.label_add ~= nil or c.label_del ~= nil then
		local have = set_bits(e.labels)
		for l in pairs(set_bits(c.label_add)) do
			if not have[l] then
				return true
			end
		end
		for l in pairs(set_bits(c.label_del)) do
			if have[l] then
				return true
			end
		end
		if c.labels ~= nil then
			local want, mask = set_bits(c.labels), c.labels_mask and set_bits(c.labels_mask)
			for l in pairs(want) do
				if not have[l] then
					return true
				end
			end
			for l in pairs(have) do
				if not want[l] and (mask == nil or mask[l]) then
					return true
				end
			end
		end
	end
	return false
end

-- The changes alters() reads, checked as the C update checks them (a bad
-- one raises, as h:update raises, instead of failing in alters).
local function check_changes(fname, c)
	local function int(k, v, max)
		if v ~= nil and (type(v) ~= "number" or v < 0 or v > max or v ~= floor(v)) then
			raise(fname .. ": bad argument '" .. k .. "' (integer 0.." .. max .. " expected, got "
				.. (type(v) == "number" and show(v) or type(v)) .. ")")
		end
	end
	for _, k in ipairs { "mark", "mark_mask", "orig_vtag", "reply_vtag" } do
		int(k, c[k], 4294967295)
	end
	int("tcp_flags_orig", c.tcp_flags_orig, 255)
	int("tcp_flags_reply", c.tcp_flags_reply, 255)
	int("tcp_wscale_orig", c.tcp_wscale_orig, 14)
	int("tcp_wscale_reply", c.tcp_wscale_reply, 14)
	local st = c.status
	if type(st) == "number" then
		int("status", st, 4294967295)
	elseif st ~= nil and type(st) ~= "string" and type(st) ~= "table" then
		raise(fname .. ": bad argument 'status' (flag names expected, got " .. type(st) .. ")")
	end
	for _, k in ipairs { "labels", "labels_mask", "label_add", "label_del" } do
		local v = c[k]
		if v ~= nil and type(v) ~= "table" then
			raise(fname .. ": bad argument '" .. k .. "' (table of label names or bits expected, got "
				.. type(v) .. ")")
		end
	end
end

-- The filter at hand, planned: the matcher and the Lua residual.
local function plan(fname, filter)
	local p = F.coerce(filter, fname):plan(fname)
	return p.matcher, p.residual
end

-- The kernel zeroes the counters of every entry it sends: with a filter it
-- cannot apply whole, C or Lua would drop entries already zeroed and their
-- counts would be lost unseen (the CLI refuses -z with any filter).
local function check_zero(fname, dhow, m, pred)
	if not (dhow and dhow.zero) or (m == nil and pred == nil) then
		return
	end
	if pred or dhow.pushdown == false or not m:kernel().dump_exact then
		raise(fname .. ": bad argument 'zero' (the kernel zeroes every entry it sends, and this filter "
			.. "is not all in the kernel: f:explain() says which part is)")
	end
end

function H.install(methods)
	local cdump, clist, cflush = methods.dump, methods.list, methods.flush
	-- h:batch, naming the method the user called in its messages
	local cbatch = core.batch

	function methods.dump(h, filter, how)
		local _, dhow = check_how("dump", how)
		local m, pred = plan("dump", filter)
		check_zero("dump", dhow, m, pred)
		local it, st, ctl, closer = cdump(h, m, dhow)
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
		local _, dhow = check_how("list", how)
		local m, pred = plan("list", filter)
		check_zero("list", dhow, m, pred)
		local all, msg, errno = clist(h, m, dhow)
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
	local function bulk(h, fname, op, filter, changes, how, dhow)
		local m, pred = plan(fname, filter)
		-- All of the filter in the kernel and C: the core deletes straight
		-- from the dump's messages, with no Lua value per entry (but for
		-- the filter's Lua part); and it alone knows which entries the
		-- kernel deleted, for lines.
		if op == "delete" and (how.lines or (not pred and not how.batch)) then
			return core.purge(h, m, dhow, fname, pred, how.lines, how.format, how.batch)
		end
		local size = how.batch or 1000
		local st, qmsg, qerr = core.query(h, m, dhow, fname)
		if not st then
			return nil, qmsg, qerr
		end
		local res = { done = 0, missing = 0, failures = {}, unchanged = 0 }
		local function send(chunk, n, seen)
			local ok, miss, fails = cbatch(h, op, chunk, changes, fname)
			if not ok then
				return nil, miss, fails
			end
			res.done, res.missing = res.done + ok, res.missing + miss
			local failures = res.failures
			for i = 1, #fails do
				local f = fails[i]
				f.entry = chunk[f.index]
				f.index = seen - n + f.index
				f.message = f.message:gsub("^batch: item %d+: ", "")
				failures[#failures + 1] = f
			end
			return true
		end
		local function drain()
			local chunk, n, seen = {}, 0, 0
			local snext = st.next
			while true do
				local e, dmsg, derr = snext(st)
				if e == nil then
					return nil, dmsg, derr
				elseif e == false then
					break
				end
				-- the predicate runs once per entry: it may have effects
				local take = not pred or pred(e)
				if take and changes and not alters(e, changes) then
					res.unchanged = res.unchanged + 1
				elseif take then
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
		if changes then
			return res.done, res.missing, res.failures, res.unchanged
		end
		return res.done, res.missing, res.failures
	end

	local function delete_where(fname, h, filter, how)
		local hw, dhow = check_how(fname, how)
		if filter == nil then
			raise(fname .. ": bad argument 'filter' (a filter is required; " ..
				"ct.filter.all() matches every entry)")
		end
		if hw.format ~= nil and hw.lines == nil then
			raise(fname .. ": bad argument 'format' (only with 'lines')")
		end
		return bulk(h, fname, "delete", filter, nil, hw, dhow)
	end

	function methods.delete_where(h, filter, how)
		return delete_where("delete_where", h, filter, how)
	end

	local change_keys = { mark = true, mark_mask = true, timeout = true, status = true, labels = true,
		labels_mask = true, label_add = true, label_del = true, state = true, orig_vtag = true, reply_vtag = true,
		tcp_flags_orig = true, tcp_flags_reply = true, tcp_wscale_orig = true, tcp_wscale_reply = true }

	function methods.update_where(h, filter, changes, how)
		local hw, dhow = check_how("update_where", how)
		if filter == nil then
			raise("update_where: bad argument 'filter' (a filter is required; " ..
				"ct.filter.all() matches every entry)")
		end
		if type(changes) ~= "table" or next(changes) == nil then
			raise("update_where: bad argument 'changes' (table of changes expected)")
		end
		-- Checked here too, so that a mistake shows even when nothing
		-- matches; read once, as the C update reads them (raw).
		local c = {}
		for k, v in next, changes do
			if not change_keys[k] then
				raise("update_where: bad argument " .. key(k) .. " (unknown field)")
			end
			c[k] = v
		end
		check_changes("update_where", c)
		return bulk(h, "update_where", "update", filter, c, hw, dhow)
	end

	-- A -D or -U line that does not name one flow (its tuple is partial,
	-- a prefix stands for an address (-s 192.0.2.0/24), or a -D line gives
	-- more than the tuple): its fields as a filter, and
	-- for -U the changes apart.  nil for a line that names one flow (the C
	-- batch runs it as a single delete or update) or one the reader refuses
	-- (the C reader gives its message).
	local parse_save = core.parse_save
	local function filter_line(line)
		local strict, serr = parse_save(line)
		local loose = parse_save(line, true)
		local fields = loose[1]
		if not fields then
			return nil
		end
		if strict[1] then
			local extra = false
			for k in pairs(fields) do
				if strict[1][k] == nil then
					extra = true
					break
				end
			end
			if not extra then
				return nil
			end
		elseif not (serr[1] and serr[1].message:find("%(missing%)$")) and
			not (tostring(fields.src):find("/", 1, true) or tostring(fields.dst):find("/", 1, true)) then
			return nil
		end
		return fields
	end

	-- The line's op, when it is a -D or -U line.
	local function du_op(line)
		local op = line:match("^[ \t]*(%-%-?%a+)")
		if op == "-D" or op == "--delete" then
			return "D"
		elseif op == "-U" or op == "--update" then
			return "U"
		end
	end

	-- load of text with -D/-U lines that act on every flow they match (as
	-- conntrack -R runs them): the lines between them go to the C reader as
	-- they are, in order; each such line runs as delete_where/update_where.
	local function load_filtered(h, text, mode, batch)
		local done, existing, failures = 0, 0, {}
		local seg, seg_line, seg_item = {}, 1, 0
		local lineno, item = 0, 0
		local function flush_seg()
			if seg[1] == nil then
				return true
			end
			local n, ex, fails = core.load_text(h, table.concat(seg, "\n") .. "\n", mode, batch)
			seg = {}
			if not n then
				return nil, ex, fails
			end
			done, existing = done + n, existing + ex
			for _, f in ipairs(fails) do
				if f.line then
					local real = f.line + seg_line - 1
					f.message = f.message:gsub("^load: line %d+", "load: line " .. real, 1)
					f.line = real
				end
				f.index = f.index + seg_item
				failures[#failures + 1] = f
			end
			return true
		end
		local pos, len = 1, #text
		while pos <= len do
			local nl = text:find("\n", pos, true) or len + 1
			local line = text:sub(pos, nl - 1)
			pos = nl + 1
			lineno = lineno + 1
			local blank = line:find("^[ \t\r]*$") or line:find("^[ \t\r]*#")
			local op = not blank and du_op(line)
			local fields = op and filter_line(line)
			if fields then
				local ok, msg, errno = flush_seg()
				if not ok then
					return nil, msg, errno
				end
				item = item + 1
				local n, fails
				local okc, err = pcall(function()
					if op == "D" then
						n, msg, fails = delete_where("load", h, fields)
					else
						local filter, changes = {}, {}
						for k, v in pairs(fields) do
							if change_keys[k] then
								changes[k] = v
							else
								filter[k] = v
							end
						end
						if next(changes) == nil then
							error("load: line " .. lineno .. ": an update line changes nothing", 0)
						end
						n, msg, fails = methods.update_where(h, filter, changes)
					end
				end)
				if not okc then
					local m = tostring(err)
					if not m:find("^load: line %d+: ") then
						m = "load: line " .. lineno .. ": " .. m:gsub("^[%a_]+: ", "", 1)
					end
					failures[#failures + 1] = { index = item, line = lineno, errno = core.errno.EINVAL,
						message = m }
				elseif not n then
					return nil, msg, fails
				else
					done = done + n
					for _, f in ipairs(fails) do
						failures[#failures + 1] = { index = item, line = lineno, errno = f.errno,
							message = "load: line " .. lineno .. ": " .. f.message }
					end
				end
				seg_line, seg_item = lineno + 1, item
			else
				if seg[1] == nil then
					seg_line, seg_item = lineno, item
				end
				seg[#seg + 1] = line
				if not blank then
					item = item + 1
				end
			end
		end
		local ok, msg, errno = flush_seg()
		if not ok then
			return nil, msg, errno
		end
		table.sort(failures, function(a, b) return a.index < b.index end)
		return done, existing, failures
	end

	-- Does the text hold a -D or -U line (its first word)?  Read in C: a
	-- search in Lua for "-D" at every line costs more than the load.
	local has_du = core.save_has_du

	-- load(specs or save text [, how]) -> done, existing, failures
	-- Text goes straight from the C reader to batched requests; each line
	-- runs as its command says (-I create, -A add, -U update, -D delete),
	-- unless how.mode says "create", "add" or "put" for the -I and -A lines.
	-- A -D/-U line that does not name one flow acts on every flow it matches.
	function methods.load(h, specs, how)
		local hw = check_how("load", how)
		local mode = hw.mode
		if mode ~= nil and mode ~= "create" and mode ~= "add" and mode ~= "put" then
			raise("load: bad argument 'mode' (\"create\", \"add\" or \"put\" expected, got " .. show(mode) .. ")")
		end
		if type(specs) == "string" then
			check_open("load", h)
			if has_du(specs) then
				return load_filtered(h, specs, mode, hw.batch)
			end
			return core.load_text(h, specs, mode, hw.batch)
		elseif type(specs) ~= "table" then
			raise("load: bad argument 'specs' (array of specs or save-format text expected, got " ..
				type(specs) .. ")")
		end
		check_open("load", h)
		local size = hw.batch or 512
		local ok, existing, failures = 0, 0, {}
		local count = #specs
		if type(count) ~= "number" or count < 0 or count > 2147483647 or count ~= floor(count) then
			raise("load: bad argument 'specs' (array of specs expected, its length is " .. show(count) .. ")")
		end
		if getmetatable(specs) == nil then
			-- a plain array: the core reads it whole, size requests a batch
			-- (and sends each batch while it reads the next, where it can)
			local n, miss, fails = cbatch(h, mode or "create", specs, nil, "load", size)
			if not n then
				return nil, miss, fails
			end
			for _, f in ipairs(fails) do
				f.message = f.message:gsub("^batch: item %d+: %a+", "load")
			end
			return n, miss, fails
		end
		for first = 1, count, size do
			local last = first + size - 1
			if last > count then
				last = count
			end
			local part, k = {}, 0
			for i = first, last do
				local spec = specs[i]
				if spec ~= nil then
					k = k + 1
					part[k] = spec
				end
			end
			local n, miss, fails = cbatch(h, mode or "create", part, nil, "load")
			if not n then
				return nil, miss, fails
			end
			ok, existing = ok + n, existing + miss
			for _, f in ipairs(fails) do
				f.index = first + f.index - 1
				f.message = f.message:gsub("^batch: item %d+: %a+", "load")
				failures[#failures + 1] = f
			end
		end
		return ok, existing, failures
	end

	function methods.flush(h, filter, how)
		local hw = check_how("flush", how)
		if filter == nil then
			return cflush(h)
		end
		local f = F.coerce(filter, "flush")
		local p = f:plan("flush")
		if p.matcher and not p.residual and hw.pushdown ~= false and p.matcher:kernel().flush_exact then
			return cflush(h, p.matcher)
		end
		local ok, msg, errno = delete_where("flush", h, f, how)
		if not ok then
			return nil, msg, errno
		end
		return true
	end

	-- ---- expectations --------------------------------------------------------

	-- Linux flushes every expectation whatever the request's family: one
	-- family is flushed as a dump and a delete of each expectation of it.
	local cxflush, cxdelete = methods.expect_flush, methods.expect_delete
	-- A C method run for expect_flush: when it raises because the handle
	-- was closed meanwhile (a finalizer may run while C allocates), the
	-- message names expect_flush.
	local function as_expect_flush(h, fn, ...)
		local r = { pcall(fn, ...) }
		if not r[1] then
			check_open("expect_flush", h)
			error(r[2], 0)
		end
		return r[2], r[3], r[4]
	end
	function methods.expect_flush(h, opts)
		if type(opts) ~= "table" or rawget(opts, "family") == nil then
			return cxflush(h, opts)
		end
		check_open("expect_flush", h)
		for k in pairs(opts) do
			if k ~= "family" and k ~= "helper" then
				raise("expect_flush: bad argument " .. key(k) .. " (unknown option)")
			end
		end
		local family, helper = rawget(opts, "family"), rawget(opts, "helper")
		if family ~= "ipv4" and family ~= "ipv6" then
			raise("expect_flush: bad argument 'family' (\"ipv4\" or \"ipv6\" expected, got "
				.. key(family) .. ")")
		end
		if helper ~= nil and (type(helper) ~= "string" or #helper == 0 or #helper > 15) then
			raise("expect_flush: bad argument 'helper' (helper name expected, got " .. type(helper) .. ")")
		end
		check_open("expect_flush", h)
		local all, msg, errno = as_expect_flush(h, clist, h, nil, { table = "expect" })
		if not all then
			return nil, (msg:gsub("^list", "expect_flush")), errno
		end
		for i = 1, #all do
			local x = all[i]
			if x.family == family and (helper == nil or x.helper == helper) then
				local ok, dmsg, derr = as_expect_flush(h, cxdelete, h, x)
				-- one that ended meanwhile is flushed all the same
				if not ok and derr ~= core.errno.ENOENT then
					return nil, (dmsg:gsub("^expect_delete", "expect_flush")), derr
				end
			end
		end
		return true
	end

	-- ---- events ----------------------------------------------------------

	local event_keys = { types = true, rcvbuf = true, netns = true, filter = true,
		kernel_filter = true, timeout = true, table = true, readahead = true }

	-- kernel_filter = {proto = {...}, src = {...}, dst = {...}, mark = {value =, mask =} or a list}:
	-- the filter all(proto(...), src(...), dst(...), marks); its errors name
	-- the option ("subscribe: bad argument 'kernel_filter.src' (...)").
	local kernel_filter_of
	local function kernel_filter(fname, kf)
		local ok, f = pcall(kernel_filter_of, fname, kf)
		if ok then
			return f
		end
		local k, arg, why = tostring(f):match("filter%.(%a+): bad argument '([%w_]+)' (%(.*%))$")
		if k then
			local name = (k == "mark" or k == "marks") and (arg == "mark_mask" and "mark.mask"
				or arg == "mark" and "mark.value" or "mark") or k
			raise(fname .. ": bad argument 'kernel_filter." .. name .. "' " .. why)
		end
		error(f, 0)
	end
	function kernel_filter_of(fname, kf)
		if type(kf) ~= "table" then
			raise(fname .. ": bad argument 'kernel_filter' (table expected, got " .. type(kf) .. ")")
		end
		local parts = {}
		local function list(v, k)
			if type(v) ~= "table" then
				return { v }
			end
			return (args.list(fname, "kernel_filter." .. k, v))
		end
		for k, v in pairs(kf) do
			if k == "proto" then
				parts[#parts + 1] = F.proto((table.unpack or unpack)(list(v, k)))
			elseif k == "src" or k == "dst" then
				parts[#parts + 1] = F[k]((table.unpack or unpack)(list(v, k)))
			elseif k == "mark" then
				if type(v) ~= "table" then
					raise(fname .. ": bad argument 'kernel_filter.mark' ({value =, mask =} expected)")
				end
				local marks = v.value ~= nil and { v } or v
				local any = {}
				for i, mk in ipairs(marks) do
					if type(mk) ~= "table" then
						raise(fname .. ": bad argument 'kernel_filter.mark' ({value =, mask =} expected)")
					end
					any[i] = F.mark(mk.value, mk.mask)
				end
				parts[#parts + 1] = F.marks(any)
			else
				raise(fname .. ": bad argument 'kernel_filter." .. (type(k) == "string" and args.name(k) or type(k))
					.. "' (unknown field)")
			end
		end
		return F.all((table.unpack or unpack)(parts))
	end

	local function subscribe(h, opts, fname)
		-- ct.events reads ahead unless told not to; a subscription when told to
		if opts == nil then
			return core.subscribe(h, fname == "events" and { readahead = true } or nil, fname)
		end
		if type(opts) ~= "table" then
			raise(fname .. ": bad argument 'opts' (table expected, got " .. type(opts) .. ")")
		end
		local o = {}
		for k, v in pairs(opts) do
			if not event_keys[k] or (k == "timeout" and fname ~= "events") then
				raise(fname .. ": bad argument " .. key(k) .. " (unknown option)")
			end
			if k ~= "filter" and k ~= "kernel_filter" and k ~= "timeout" then
				o[k] = v
			end
		end
		local f = opts.filter
		if f ~= nil and type(f) ~= "function" and not F.is(f) and type(f) ~= "table" then
			raise(fname .. ": bad argument 'filter' (function or filter expected, got " .. type(f) .. ")")
		end
		local c, lua
		if f ~= nil and opts.table == "expect" then
			if type(f) ~= "function" then
				raise(fname .. ": bad argument 'filter' (a function, for expectation events)")
			end
			lua = f
		elseif f ~= nil then
			local p = F.coerce(f, fname):plan(fname)
			c, lua = p.c, p.residual
		end
		if opts.kernel_filter ~= nil then
			c = c and F.all(kernel_filter(fname, opts.kernel_filter), c) or
				kernel_filter(fname, opts.kernel_filter)
		end
		local desc = c and c:description()
		if desc then
			o.matcher = core.matcher(desc, fname)
		end
		o.filter = lua
		if o.readahead == nil and fname == "events" then
			o.readahead = true
		end
		return core.subscribe(h, o, fname)
	end

	function methods.subscribe(h, opts)
		return subscribe(h, opts, "subscribe")
	end

	local function events(h, opts)
		local timeout = type(opts) == "table" and opts.timeout or nil
		if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
			raise("events: bad argument 'timeout' (seconds >= 0 expected, got "
				.. (type(timeout) == "number" and tostring(timeout) or type(timeout)) .. ")")
		end
		local sub, msg = subscribe(h, opts, "events")
		if not sub then
			raise(msg)
		end
		-- sub:next(timeout) until it returns nil; then the subscription is
		-- closed (and a failure raised).  In C: no Lua call per event.
		return core.events_iter(sub, timeout), sub, nil, sub
	end

	methods.events = events
	H.subscribe = subscribe
	H.events = events
end

return H
