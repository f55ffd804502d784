-- layers.lua OBJ...: which C units call which, from the object files' own
-- symbols (nm), and whether any two call each other in a circle.  Prints
-- the units in layers (each using only those above it) and exits 1, naming
-- the circle, when there is one.  Plain Lua 5.1 - 5.4.
local objs = { ... }
if #objs == 0 then
	io.stderr:write("usage: layers.lua OBJ...\n")
	os.exit(2)
end

local function unit(path)
	return (path:match("([^/]+)%.o$"))
end

local function nm(args, path)
	local p = assert(io.popen("nm " .. args .. " '" .. path:gsub("'", "'\\''") .. "'"))
	local out = p:read("*a")
	p:close()
	return out
end

local owner, uses = {}, {}
for _, path in ipairs(objs) do
	local u = unit(path)
	uses[u] = {}
	for kind, sym in nm("--defined-only -g", path):gmatch("%x+ (%a) ([%w_]+)") do
		if kind ~= "U" then
			owner[sym] = u
		end
	end
end
for _, path in ipairs(objs) do
	local u = unit(path)
	for sym in nm("-u", path):gmatch("U ([%w_]+)") do
		local o = owner[sym]
		if o and o ~= u then
			uses[u][o] = true
		end
	end
end

-- A circle, by depth-first search.
local state, stack = {}, {}
local function visit(u)
	state[u] = "open"
	stack[#stack + 1] = u
	for v in pairs(uses[u]) do
		if state[v] == "open" then
			local i = #stack
			while stack[i] ~= v do
				i = i - 1
			end
			local ring = {}
			for j = i, #stack do
				ring[#ring + 1] = stack[j]
			end
			ring[#ring + 1] = v
			return ring
		elseif state[v] == nil then
			local ring = visit(v)
			if ring then
				return ring
			end
		end
	end
	state[u] = "done"
	stack[#stack] = nil
	return nil
end

local names = {}
for u in pairs(uses) do
	names[#names + 1] = u
end
table.sort(names)
for _, u in ipairs(names) do
	if state[u] == nil then
		local ring = visit(u)
		if ring then
			io.stderr:write("layers: C units call each other in a circle: " ..
				table.concat(ring, " -> ") .. "\n")
			os.exit(1)
		end
	end
end

-- Layers: a unit's level is one more than the highest it uses.
local level = {}
local function lvl(u)
	if level[u] == nil then
		local l = 0
		for v in pairs(uses[u]) do
			l = math.max(l, lvl(v) + 1)
		end
		level[u] = l
	end
	return level[u]
end
local by = {}
for _, u in ipairs(names) do
	local l = lvl(u)
	by[l] = by[l] or {}
	table.insert(by[l], u)
end
local out = {}
for l = 0, #names do
	if by[l] then
		out[#out + 1] = table.concat(by[l], " ")
	end
end
print("layers: no circle; " .. table.concat(out, " | "))
