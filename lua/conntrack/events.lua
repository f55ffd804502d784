--- The event stream: ct.subscribe (non-blocking, pollable) and ct.events
-- (a blocking iterator).  The C core does the socket work, the filtering
-- and the waiting; this turns options into what the core takes.
local E = {}

-- A filter argument: a function, or an object with :match(e).  Objects from
-- conntrack.filter also offer :event_pushdown(), a kernel socket filter
-- ({proto =, src =, dst =, mark =}) that stops unwanted events before they
-- reach the process; the object itself still decides.
local function predicate(f, where)
	if f == nil or type(f) == "function" then
		return f
	elseif (type(f) == "table" or type(f) == "userdata") and f.match then
		return function(e) return f:match(e) end
	end
	error(where .. ": bad argument 'filter' (function or filter expected, got " .. type(f) .. ")", 4)
end

local function core_opts(opts, where)
	if opts == nil then
		return nil
	end
	if type(opts) ~= "table" then
		error(where .. ": bad argument 'opts' (table expected, got " .. type(opts) .. ")", 4)
	end
	local o = {}
	for k, v in pairs(opts) do
		if k ~= "timeout" or where ~= "events" then
			o[k] = v
		end
	end
	local f = opts.filter
	if o.kernel_filter == nil and type(f) == "table" and f.event_pushdown then
		o.kernel_filter = f:event_pushdown()
	end
	o.filter = predicate(f, where)
	return o
end

function E.install(M, core)
	local methods = core.handle_methods

	local function subscribe(h, opts, where)
		local o = core_opts(opts, where)
		if h then
			return h:subscribe(o, where)
		end
		return core.subscribe(o, where)
	end

	--- ct.subscribe([opts]) -> subscription | nil, msg, errno
	-- opts: types ({"new", "update", "destroy"}), rcvbuf (bytes; default
	-- 32 MiB), netns, kernel_filter, filter (applied by sub:read/sub:next).
	M.subscribe = function(opts)
		return subscribe(nil, opts, "subscribe")
	end

	--- ct.events([opts]): for ev in ct.events{timeout = 5} do ... end
	-- ev.type is "new", "update", "destroy" or "overflow" (events were lost:
	-- the kernel's socket buffer filled; resynchronise with a dump).
	-- opts.timeout: the loop ends after that many seconds without an event
	-- that passes the filter.
	local function events(h, opts)
		local timeout = type(opts) == "table" and opts.timeout or nil
		if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
			error("events: bad argument 'timeout' (seconds >= 0 expected)", 3)
		end
		local sub, msg = subscribe(h, opts, "events")
		if not sub then
			error(msg, 3)
		end
		-- Looked up once: each lookup on the subscription is a metamethod call.
		local nextev, close, done = sub.next, sub.close, false
		local function iter()
			if done then
				return nil
			end
			local ev, err = nextev(sub, timeout)
			if ev == nil then
				done = true
				close(sub)
				if err then
					error(err, 2)
				end
			end
			return ev
		end
		return iter, sub, nil, sub
	end

	M.events = function(opts) return events(nil, opts) end
	methods.events = function(h, opts) return events(h, opts) end
	return M
end

return E
