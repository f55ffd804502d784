-- Every example (examples/*.lua) and every Lua tool (tools/*.lua) compiles
-- on the interpreter under test: the suite runs on 5.1, 5.3, 5.4 and
-- LuaJIT, so this holds on each (5.4-only syntax would fail here).
-- spec/36-events-examples_spec.lua and `make demo` run them for real.
local lfs = require "lfs"

local function lua_files(dir)
	local t = {}
	for name in lfs.dir(dir) do
		if name:match("%.lua$") then t[#t + 1] = dir .. "/" .. name end
	end
	table.sort(t)
	return t
end

describe("sources compile on this Lua", function()
	for _, dir in ipairs{ "examples", "tools" } do
		local files = lua_files(dir)

		it(dir .. "/ has Lua files", function()
			assert.is_true(#files > 0)
		end)

		for _, path in ipairs(files) do
			it(path, function()
				local chunk, err = loadfile(path)
				assert.is_function(chunk, err)
			end)
		end
	end
end)
