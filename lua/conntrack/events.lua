--- The event stream: ct.subscribe (non-blocking, pollable) and ct.events
-- (a blocking iterator).  The C core does the socket work; this adds the
-- iterator, timeouts and filters.
local E = {}

-- A filter argument: a function, or an object with :match(e).  Objects from
-- conntrack.filter may also offer :event_pushdown(), a kernel socket filter
-- ({proto =, src =, dst =, mark =}) that stops unwanted events in the kernel.
local function predicate(f, where)
	if f == nil then
		return nil
	elseif type(f) == "function" then
		return f
	elseif (type(f) == "table" or type(f) == "userdata") and f.match then
		return function(e) return f:match(e) end
	end
	error(where .. ": bad argument 'filter' (function or filter expected, got " .. type(f) .. ")", 3)
end

local function sub_opts(opts, where)
	if opts == nil then
		return nil
	end
	if type(opts) ~= "table" then
		error(where .. ": bad argument 'opts' (table expected, got " .. type(opts) .. ")", 3)
	end
	local o = {}
	for k, v in pairs(opts) do
		if k ~= "filter" and k ~= "timeout" then
			o[k] = v
		end
	end
	local f = opts.filter
	if o.kernel_filter == nil and type(f) == "table" and f.event_pushdown then
		o.kernel_filter = f:event_pushdown()
	end
	return o
end

function E.install(M, core)
	local methods = core.handle_methods

	--- ct.subscribe([opts]) -> subscription | nil, msg, errno
	-- opts: types ({"new", "update", "destroy"}), rcvbuf (bytes; default 32 MiB),
	-- netns, kernel_filter, filter (applied by sub:read and the iterator).
	local function subscribe(h, opts)
		local o = sub_opts(opts, "subscribe")
		local sub, msg, errno
		if h then
			sub, msg, errno = h:subscribe(o)
		else
			sub, msg, errno = core.subscribe(o)
		end
		return sub, msg, errno
	end

	--- ct.events([opts]): for ev in ct.events{timeout = 5} do ... end
	-- ev.type is "new", "update", "destroy" or "overflow" (events were lost:
	-- the kernel's socket buffer filled; resynchronise with a dump).
	local function events(h, opts)
		local pred = predicate(opts and opts.filter, "events")
		local timeout = opts and opts.timeout
		if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
			error("events: bad argument 'timeout' (seconds >= 0 expected)", 3)
		end
		local sub, msg, errno = subscribe(h, opts)
		if not sub then
			error(msg, 3)
		end
		local function iter()
			while true do
				if sub.closed then
					return nil
				end
				local ev, err = sub:next(timeout)
				if ev == nil then
					sub:close()
					if err then
						error(err, 2)
					end
					return nil
				end
				if pred == nil or ev.type == "overflow" or pred(ev) then
					return ev
				end
			end
		end
		return iter, sub, nil, sub
	end

	M.subscribe = function(opts) return subscribe(nil, opts) end
	M.events = function(opts) return events(nil, opts) end
	methods.events = function(h, opts) return events(h, opts) end
	return M
end

return E
