-- luacheck (Debian's lua-check) for `make lint`: lua/, spec/, examples/,
-- bench/ and tools/*.lua.
--
-- The code runs on Lua 5.1, 5.3, 5.4 and LuaJIT (bench/ on 5.4), choosing
-- per version where they differ (table.unpack or unpack, math.type where it
-- exists, jit): "max" admits every version's standard globals, and
-- `make check-all-lua` proves by running the suite that each version
-- really works.
std = "max"

-- busted's globals (describe, it, pending, setup, finally, assert, ...)
-- in the specs; spec/smoke.lua is a plain script.
files["spec"] = { std = "+busted" }
files["spec/smoke.lua"] = { std = "max" }

-- plain text: readable in CI logs
color = false
