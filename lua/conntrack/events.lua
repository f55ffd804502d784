--- Event stream helpers (filled in by the events work).
local E = {}

function E.install(M, core)
	return M
end

return E
