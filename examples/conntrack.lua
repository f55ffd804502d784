#!/usr/bin/env lua5.4
--[[ conntrack.lua: the conntrack command of conntrack-tools (1.4.7), written
on lua-conntrack's public API.  `make install` installs it as lua-conntrack.

  lua5.4 examples/conntrack.lua -L -p tcp --dport 443 -o extended
  lua5.4 examples/conntrack.lua -D -s 192.0.2.0/24
  lua5.4 examples/conntrack.lua -U -p udp -m 0x10/0xf0
  lua5.4 examples/conntrack.lua -E -e NEW,DESTROY -o timestamp
  lua5.4 examples/conntrack.lua -L expect
  lua5.4 examples/conntrack.lua -L -o save | lua5.4 examples/conntrack.lua -R -

It takes the same command lines (GNU getopt_long: options among operands,
abbreviated long options, optional arguments), checks them with the same
rules (which options each command needs or refuses), prints the same lines
and exits with the same status (0 on success; 1 when -G, -D, -U, -I find or
make nothing, or the kernel refuses; 2 for a bad command line), so that a
script written for conntrack runs unchanged: the conntrack table, the
expectation table (expect), the dying and unconfirmed lists.  Its own name
and version stand where conntrack prints "conntrack v1.4.7 (conntrack-tools)":

  lua-conntrack v0.2.0 (conntrack-tools compatible): 3 flow entries have been shown.

Where it differs on purpose (README, "The conntrack command"), mostly where
conntrack 1.4.7 is wrong:
  * -D, -U and -R go to the kernel in batches, not one request per entry;
    -R runs the lines -o save writes through the module's own reader.
  * -U prints every entry it changed, as a dump shows them (use=1);
    conntrack prints only some (it reads one answer per request and falls
    behind) and reads them back with a get (use=2).
  * -U works without an address family (conntrack 1.4.7 sends family 0 and
    the kernel answers "Operation not supported").
  * -m and -u together: conntrack overwrites the mark with the status bits;
    here each keeps its own value.
  * --src-nat/--dst-nat/--any-nat filters: the kind of NAT is the kernel's
    SRC_NAT / DST_NAT status bit, the address compared whole (IPv6
    included); conntrack compares 32 bits and calls un-NATed ICMP flows
    NATed.
  * SCTP vtags: -I, -U and -o save take and write them as the kernel
    holds them (conntrack swaps their bytes both ways).  -U changes the
    tags it is given and keeps the entry's state and other tag (the kernel
    takes the three together); conntrack drops a change of tags unless
    the state changes too, and then fails in the kernel ("invalid
    parameters") unless both tags are given, yet counts the entry updated.
  * -I expect: the expected tuple gets the protocol of -p and its ports
    (conntrack takes the protocol from a byte of the port and drops the
    ports, for TCP, SCTP and DCCP).
  * -D expect says "1 expectations have been deleted." and exits 0
    (conntrack: "0 expectations have been shown.", exit 1).
  * -G by the reply tuple alone finds the flow (conntrack: "invalid
    parameters").
  * --srckey/--dstkey (GRE) and -c select entries (conntrack's comparison
    leaves them out).
  * An optional argument in the same word ("-Lexpect", "-n192.0.2.1",
    "--label-del=foo") is used; conntrack drops it.
  * Numbers are checked: "--dport abc" or "-t 1x" is an error, not 0.
  * -E: the module's 32 MiB buffer by default, so a burst is not lost; -b
    sets the buffer of the event socket (conntrack sets another socket's).
]]

-- Run from a checkout (after `make`): this tree's module, unless LUA_PATH /
-- LUA_CPATH already say where to look.
do
	local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")
	if here and io.open(here .. "/../lua/conntrack.lua") then
		local function tree(field, env, p)
			package[field] = os.getenv(env) and (package[field] .. ";" .. p) or (p .. ";" .. package[field])
		end
		local build = type(jit) == "table" and "jit" or _VERSION:match("%d+%.%d+")
		tree("path", "LUA_PATH", here .. "/../lua/?.lua")
		tree("cpath", "LUA_CPATH", here .. "/../build/" .. build .. "/?.so")
	end
end

-- loadfile(this)({library = true}) returns the tool's parts instead of
-- running it; {library = "getopt"} only the command-line grammar, which
-- needs no module.
local LIB = ...

local floor, concat, format = math.floor, table.concat, string.format
local unpack = table.unpack or unpack

-- Failures unwind to main() as {code =, msg =}: 2 a bad command line (the
-- "Try ... -h" hint follows), 1 anything else.
local PARAM, OTHER = 2, 1
local function fail(code, msg, ...)
	error({ code = code, msg = select("#", ...) > 0 and format(msg, ...) or msg }, 0)
end

-- While -R runs a file, commands print no summary line.
local state = { loading = false }

local function warn(msg)
	io.stderr:write(msg, "\n")
end
-- ---------------------------------------------------------------------
-- Command-line grammar: GNU getopt_long, as the conntrack command uses it.
--
-- getopt_new(argv, shortopts, longopts) returns a parser p; p:next() returns
-- the next option as (key, optarg) -- key is the option's short letter, or
-- ":" (a missing argument) or "?" (unknown or ambiguous); nil at the end --
-- and p.optind, p.argv are what getopt_long leaves in optind and argv (the
-- tool reads p.argv[p.optind] for the CLI's optional arguments).
-- p:extend(more) adds long options while parsing (the CLI adds a protocol's
-- options when it meets -p).  longopts: { {name, has_arg, key}, ... }, has_arg
-- 0, 1 or 2 (none, required, optional), key a one-character string.
--
-- Two implementations with one behaviour: luaposix's posix.getopt (the C
-- library's getopt_long itself; Debian 12's lua-posix 33.4 is built for Lua
-- 5.1 - 5.3) where it loads, else the same algorithm in Lua: options in any
-- order among operands (argv is permuted as glibc does, operands last),
-- "--" ends the options, clustered short options, short and long optional
-- arguments only attached ("-Lexpect", "--dump=expect"), unambiguous
-- prefixes of long options, a prefix shared by different options an error.
-- POSIXLY_CORRECT in the environment stops at the first operand, as glibc.
-- spec/50-cli_spec.lua runs both on the same command lines.

local GetoptLua = {}
GetoptLua.__index = GetoptLua

local function nonoption(s)
	return s:sub(1, 1) ~= "-" or s == "-"
end

local function getopt_lua(argv, shortopts, longopts)
	local order = "permute"
	local opts = shortopts
	if opts:sub(1, 1) == "+" then
		order, opts = "require", opts:sub(2)
	elseif opts:sub(1, 1) == "-" then
		order, opts = "inorder", opts:sub(2)
	elseif os.getenv("POSIXLY_CORRECT") then
		order = "require"
	end
	local argc = #argv + 1 -- argv[0] is the program
	local copy = {}
	for i = 0, argc - 1 do
		copy[i] = argv[i]
	end
	local long = {}
	for i, o in ipairs(longopts or {}) do
		long[i] = o
	end
	return setmetatable({ argv = copy, argc = argc, optind = 1, first = 1, last = 1,
		next_char = nil, short = opts, colon = opts:sub(1, 1) == ":", order = order,
		long = long }, GetoptLua)
end

-- Moves the operands argv[first..last-1] after the options argv[last..optind-1].
function GetoptLua:exchange()
	local a = self.argv
	local ops = {}
	for i = self.first, self.last - 1 do
		ops[#ops + 1] = a[i]
	end
	local j = self.first
	for i = self.last, self.optind - 1 do
		a[j] = a[i]
		j = j + 1
	end
	for _, s in ipairs(ops) do
		a[j] = s
		j = j + 1
	end
	self.first = self.first + (self.optind - self.last)
	self.last = self.optind
end

-- The word at optind is taken (an optional argument read by the caller).
function GetoptLua:skip()
	self.optind = self.optind + 1
end

function GetoptLua:extend(more)
	for _, o in ipairs(more) do
		self.long[#self.long + 1] = o
	end
end

function GetoptLua:long_option()
	local a, word = self.argv, self.next_char
	local name, value = word:match("^([^=]*)=(.*)$")
	name = name or word
	local found
	for _, o in ipairs(self.long) do
		if o[1] == name then
			found = o
			break
		end
	end
	if not found then
		local ambiguous
		for _, o in ipairs(self.long) do
			if o[1]:sub(1, #name) == name then
				if not found then
					found = o
				elseif found[2] ~= o[2] or found[3] ~= o[3] then
					ambiguous = true
				end
			end
		end
		if ambiguous or not found then
			self.next_char = nil
			self.optind = self.optind + 1
			return "?"
		end
	end
	self.optind = self.optind + 1
	self.next_char = nil
	if value then
		if found[2] == 0 then
			return "?"
		end
		return found[3], value
	elseif found[2] == 1 then
		if self.optind < self.argc then
			local v = a[self.optind]
			self.optind = self.optind + 1
			return found[3], v
		end
		return self.colon and ":" or "?"
	end
	return found[3]
end

function GetoptLua:next()
	local a = self.argv
	if self.next_char == nil or self.next_char == "" then
		if self.last > self.optind then self.last = self.optind end
		if self.first > self.optind then self.first = self.optind end
		if self.order == "permute" then
			if self.first ~= self.last and self.last ~= self.optind then
				self:exchange()
			elseif self.last ~= self.optind then
				self.first = self.optind
			end
			while self.optind < self.argc and nonoption(a[self.optind]) do
				self.optind = self.optind + 1
			end
			self.last = self.optind
		end
		if self.optind ~= self.argc and a[self.optind] == "--" then
			self.optind = self.optind + 1
			if self.first ~= self.last and self.last ~= self.optind then
				self:exchange()
			elseif self.first == self.last then
				self.first = self.optind
			end
			self.last = self.argc
			self.optind = self.argc
		end
		if self.optind == self.argc then
			if self.first ~= self.last then
				self.optind = self.first
			end
			return nil
		end
		local w = a[self.optind]
		if nonoption(w) then
			if self.order == "require" then
				return nil
			end
			self.optind = self.optind + 1
			return "\1", w
		end
		if w:sub(2, 2) == "-" and #self.long > 0 then
			self.next_char = w:sub(3)
			return self:long_option()
		end
		self.next_char = w:sub(2)
	end
	local c = self.next_char:sub(1, 1)
	self.next_char = self.next_char:sub(2)
	local pos = (c ~= ":" and c ~= ";") and self.short:find(c, 1, true) or nil
	if self.next_char == "" then
		self.optind = self.optind + 1
	end
	if not pos then
		return "?"
	end
	if self.short:sub(pos + 1, pos + 1) ~= ":" then
		return c
	end
	local rest = self.next_char
	self.next_char = nil
	if self.short:sub(pos + 2, pos + 2) == ":" then
		if rest ~= "" then
			self.optind = self.optind + 1
			return c, rest
		end
		return c
	end
	if rest ~= "" then
		self.optind = self.optind + 1
		return c, rest
	elseif self.optind == self.argc then
		return self.colon and ":" or "?"
	end
	local v = a[self.optind]
	self.optind = self.optind + 1
	return c, v
end

-- luaposix's getopt_long: an iterator over a fixed argv and option table.
-- Options added by :extend() take effect by starting a new iterator on the
-- words not read yet (getopt_long only ever permutes the words behind
-- optind, so those are still in their order), with the words before them
-- kept in front so that optind counts as in one run.
local GetoptPosix = {}
GetoptPosix.__index = GetoptPosix

-- luaposix's getopt (Debian 12's 33.4) leaves one value on the stack per
-- word and per long option without asking Lua for room (no
-- lua_checkstack): past about twenty, Lua 5.1 and 5.3 write beyond their
-- stack and corrupt the heap.  Called from a function whose frame holds
-- ROOM values, its values stay inside the stack Lua made for that frame;
-- longer command lines use the Lua getopt_long.
local ROOM = 190
local posix_getopt
do
	local ok, m = pcall(require, "posix.getopt")
	if ok and type(m) == "table" and type(m.getopt) == "function" then
		local slots = {}
		for i = 1, ROOM do slots[i] = "_" .. i end
		local call = (loadstring or load)("local getopt, a, b, c, d, e = ... local it = getopt(a, b, c, d, e) " ..
			"local " .. table.concat(slots, ", ") .. " return it")
		posix_getopt = function(...) return call(m.getopt, ...) end
	end
end

local arg_kinds = { [0] = "none", "required", "optional" }

function GetoptPosix:start()
	local rest = { [0] = self.argv[0] }
	for i = self.base, #self.argv do
		rest[#rest + 1] = self.argv[i]
	end
	local long = {}
	for i, o in ipairs(self.long) do
		long[i] = { o[1], arg_kinds[o[2]], o[3] }
	end
	self.iter = posix_getopt(rest, self.short, long, 0, 1)
end

local function getopt_posix(argv, shortopts, longopts)
	local copy = {}
	for i = 0, #argv do
		copy[i] = argv[i]
	end
	local long = {}
	for i, o in ipairs(longopts or {}) do
		long[i] = o
	end
	local p = setmetatable({ argv = copy, short = shortopts, long = long, base = 1, optind = 1 },
		GetoptPosix)
	p:start()
	return p
end

function GetoptPosix:extend(more)
	for _, o in ipairs(more) do
		self.long[#self.long + 1] = o
	end
	-- The words from optind on, in a new iterator that knows the new options.
	self.base = self.optind
	self:start()
end

function GetoptPosix:skip()
	self.optind = self.optind + 1
	self.base = self.optind
	self:start()
end

function GetoptPosix:next()
	local c, optarg, optind = self.iter()
	if c == nil then
		return nil
	end
	self.optind = self.base + optind - 1
	return c, optarg
end

local function getopt_new(argv, shortopts, longopts, impl)
	-- room for the words, the long options and those -p adds (at most 13)
	if impl == nil and posix_getopt and #argv + #(longopts or {}) + 13 + 8 > ROOM then
		impl = "lua"
	end
	if (impl == nil and posix_getopt) or impl == "posix" then
		return getopt_posix(argv, shortopts, longopts)
	end
	return getopt_lua(argv, shortopts, longopts)
end

if type(LIB) == "table" and LIB.library == "getopt" then
	return { getopt = getopt_new, posix = posix_getopt ~= nil }
end

local ct = require "conntrack"

local NAME = "lua-conntrack"
local PREFIX = NAME .. " v" .. tostring(ct.version) .. " (conntrack-tools compatible)"
local band, bor = ct.filter.band, ct.filter.bor


-- ---------------------------------------------------------------------
-- The options and the rules of the conntrack command.

-- Options that the rules speak of, in the CLI's order (its messages name
-- the first offending one in this order).
local OPTS = { "src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status", "zero",
	"event-mask", "tuple-src", "tuple-dst", "mask-src", "mask-dst", "nat-range", "mark", "id",
	"family", "src-nat", "dst-nat", "output", "secmark", "buffer-size", "any-nat", "zone",
	"label", "label-add", "label-del", "orig-zone", "reply-zone" }

-- Per command, what each of those options is: 0 refused, 1 required,
-- 2 allowed, 3 one of the address pairs (src+dst or reply-src+reply-dst)
-- is required.  One digit per option, in the order of OPTS.
local RULES = {
	list         = "22222022000220202222202220022",
	create       = "33331120000002200220000202022",
	update       = "22222220000220222222000022200",
	delete       = "22222220000220222222000220022",
	get          = "33331000000000020002000020000",
	flush        = "00000000000000002000000000000",
	event        = "22222000200220202222222220022",
	version      = "00000000000000000000000000000",
	help         = "00002000000000000000000000000",
	exp_list     = "00000000000000002002000000000",
	exp_create   = "11221120011110000000000000000",
	exp_delete   = "11221000000000000000000000000",
	exp_get      = "11221000000000000000000000000",
	exp_flush    = "00000000000000000000000000000",
	exp_event    = "00000000000000000002000000000",
	count        = "00000000000000000000000000000",
	exp_count    = "00000000000000000000000000000",
	stats        = "00000000000000000000000000000",
	exp_stats    = "00000000000000000000000000000",
	add          = "33331120000002200220000202022",
	none         = "00000000000000000000000000000",
}

-- The command letters, the command each means on the conntrack table and
-- on the expectation table (false: not there), its long name.
local COMMANDS = {
	L = { "list", "exp_list", "dump" }, I = { "create", "exp_create", "create" },
	D = { "delete", "exp_delete", "delete" }, G = { "get", "exp_get", "get" },
	F = { "flush", "exp_flush", "flush" }, E = { "event", "exp_event", "event" },
	V = { "version", "version", "version" }, h = { "help", "help", "help" },
	C = { "count", "exp_count", "counter" }, S = { "stats", "exp_stats", "stats" },
	U = { "update", false, "update" }, A = { "add", false, "add" },
}

-- Summary lines on stderr, by command.
local SUMMARY = {
	list = "%d flow entries have been shown.", create = "%d flow entries have been created.",
	update = "%d flow entries have been updated.", delete = "%d flow entries have been deleted.",
	get = "%d flow entries have been shown.", event = "%d flow events have been shown.",
	exp_list = "%d expectations have been shown.", exp_delete = "%d expectations have been shown.",
	add = "%d flow entries have been added.",
}

-- Short options (getopt syntax) and long options {name, has_arg, key}.
local SHORTOPTS = ":L::I::U::D::G::E::F::A::hVs:d:r:q:p:t:u:e:a:z[:]:{:}:m:i:f:o:n::g::c:b:C::Sj::w:l:<:>::(:):"
local LONGOPTS = {
	{ "dump", 2, "L" }, { "create", 2, "I" }, { "add", 2, "A" }, { "delete", 2, "D" },
	{ "update", 2, "U" }, { "get", 2, "G" }, { "flush", 2, "F" }, { "event", 2, "E" },
	{ "counter", 2, "C" }, { "stats", 0, "S" }, { "version", 0, "V" }, { "help", 0, "h" },
	{ "orig-src", 1, "s" }, { "src", 1, "s" }, { "orig-dst", 1, "d" }, { "dst", 1, "d" },
	{ "reply-src", 1, "r" }, { "reply-dst", 1, "q" }, { "protonum", 1, "p" },
	{ "timeout", 1, "t" }, { "status", 1, "u" }, { "zero", 0, "z" }, { "event-mask", 1, "e" },
	{ "tuple-src", 1, "[" }, { "tuple-dst", 1, "]" }, { "mask-src", 1, "{" },
	{ "mask-dst", 1, "}" }, { "nat-range", 1, "a" }, { "mark", 1, "m" }, { "secmark", 1, "c" },
	{ "id", 2, "i" }, { "family", 1, "f" }, { "src-nat", 2, "n" }, { "dst-nat", 2, "g" },
	{ "output", 1, "o" }, { "buffer-size", 1, "b" }, { "any-nat", 2, "j" }, { "zone", 1, "w" },
	{ "label", 1, "l" }, { "label-add", 1, "<" }, { "label-del", 2, ">" },
	{ "orig-zone", 1, "(" }, { "reply-zone", 1, ")" },
}
-- Option key -> the name of its rule in OPTS.
local KEY_OPT = { s = "src", d = "dst", r = "reply-src", q = "reply-dst", p = "protonum",
	t = "timeout", u = "status", z = "zero", e = "event-mask", ["["] = "tuple-src",
	["]"] = "tuple-dst", ["{"] = "mask-src", ["}"] = "mask-dst", m = "mark", i = "id",
	f = "family", n = "src-nat", g = "dst-nat", o = "output", c = "secmark", b = "buffer-size",
	j = "any-nat", w = "zone", l = "label", ["<"] = "label-add", [">"] = "label-del",
	["("] = "orig-zone", [")"] = "reply-zone" }

-- Protocols the CLI has options for.  opts: {name, key} (all take a value);
-- flags: the option names in the order of each rule string; pairs: the
-- required alternatives (as for addresses) and their messages.
local PORTS = {
	{ "orig-port-src", "1" }, { "sport", "1" }, { "orig-port-dst", "2" }, { "dport", "2" },
	{ "reply-port-src", "3" }, { "reply-port-dst", "4" }, { "mask-port-src", "5" },
	{ "mask-port-dst", "6" } }
local function with(list, ...)
	local out = {}
	for _, o in ipairs(list) do out[#out + 1] = o end
	for _, o in ipairs({ ... }) do out[#out + 1] = o end
	return out
end
local PORT_PAIRS = { { "1", "2", "you have to specify `--sport' and `--dport'" },
	{ "3", "4", "you have to specify `--reply-src-port' and `--reply-dst-port'" } }
local TCP_STATES = { "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2" }
local SCTP_STATES = { "NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
	"SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT" }
local DCCP_STATES = { "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
	"TIMEWAIT", "IGNORE", "INVALID" }

local port_rules = {
	list = "2222", create = "3333", update = "2222", delete = "2222", get = "3333",
	event = "2222", exp_create = "1100", exp_delete = "1111", exp_get = "1111", add = "3333" }
local function rules(base, extra)
	local out = {}
	for cmd, r in pairs(base) do out[cmd] = r .. (extra[cmd] or ("0"):rep(#extra.width)) end
	return out
end

local PROTOS = {
	tcp = { num = 6, opts = with(PORTS, { "state", "7" }, { "tuple-port-src", "8" }, { "tuple-port-dst", "9" }),
		flags = { "1", "2", "3", "4", "5", "6", "7", "8", "9" },
		names = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
			"mask-port-dst", "state", "tuple-port-src", "tuple-port-dst" },
		rules = rules(port_rules, { width = "00000", list = "00200", create = "00100", update = "00200",
			delete = "00200", get = "00200", event = "00200", exp_create = "11011", add = "00100" }),
		pairs = PORT_PAIRS, states = TCP_STATES, state_what = "unknown TCP state `%s'" },
	udp = { num = 17, opts = with(PORTS, { "tuple-port-src", "8" }, { "tuple-port-dst", "9" }),
		flags = { "1", "2", "3", "4", "5", "6", "8", "9" },
		names = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
			"mask-port-dst", "tuple-port-src", "tuple-port-dst" },
		rules = rules(port_rules, { width = "0000", exp_create = "1111" }),
		pairs = PORT_PAIRS },
	sctp = { num = 132, opts = with(PORTS, { "state", "7" }, { "tuple-port-src", "8" },
			{ "tuple-port-dst", "9" }, { "orig-vtag", "v" }, { "reply-vtag", "x" }),
		flags = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "v", "x" },
		names = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
			"mask-port-dst", "state", "tuple-port-src", "tuple-port-dst", "orig-vtag", "reply-vtag" },
		rules = rules(port_rules, { width = "0000000", list = "0020000", create = "0010011",
			update = "0020022", delete = "0020000", get = "0020022", event = "0020000",
			exp_create = "1101111", add = "0010011" }),
		pairs = PORT_PAIRS, states = SCTP_STATES, state_what = "unknown SCTP state `%s'" },
	dccp = { num = 33, opts = with(PORTS, { "state", "7" }, { "tuple-port-src", "8" },
			{ "tuple-port-dst", "9" }, { "role", "R" }),
		flags = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "R" },
		names = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
			"mask-port-dst", "state", "tuple-port-src", "tuple-port-dst", "role" },
		rules = rules(port_rules, { width = "000000", list = "002000", create = "001001",
			update = "002000", delete = "002000", get = "002000", event = "002000",
			exp_create = "110111", add = "001001" }),
		pairs = { PORT_PAIRS[1], { "3", "4", "you have to specify `--reply-port-src' and `--report-port-dst'" } },
		states = DCCP_STATES, state_what = "Unknown DCCP state `%s'" },
	icmp = { num = 1, opts = { { "icmp-type", "T" }, { "icmp-code", "K" }, { "icmp-id", "Y" } },
		flags = { "T", "K", "Y" }, names = { "icmp-type", "icmp-code", "icmp-id" },
		rules = { list = "222", create = "112", update = "222", delete = "222", get = "112",
			event = "222", add = "112" } },
	icmpv6 = { num = 58, opts = { { "icmpv6-type", "T" }, { "icmpv6-code", "K" }, { "icmpv6-id", "Y" } },
		flags = { "T", "K", "Y" }, names = { "icmpv6-type", "icmpv6-code", "icmpv6-id" },
		rules = { list = "222", create = "112", update = "222", delete = "222", get = "112",
			event = "222", add = "112" } },
	gre = { num = 47, opts = { { "orig-key-src", "1" }, { "srckey", "1" }, { "orig-key-dst", "2" },
			{ "dstkey", "2" }, { "reply-key-src", "3" }, { "reply-key-dst", "4" },
			{ "mask-key-src", "5" }, { "mask-key-dst", "6" }, { "tuple-key-src", "8" },
			{ "tuple-key-dst", "9" } },
		flags = { "1", "2", "3", "4", "5", "6", "8", "9" },
		names = { "srckey", "dstkey", "reply-key-src", "reply-key-dst", "mask-key-src",
			"mask-key-dst", "tuple-key-src", "tuple-key-dst" },
		rules = rules(port_rules, { width = "0000", exp_create = "1111" }),
		pairs = { { "1", "2", "you have to specify `--srckey' and `--dstkey'" },
			{ "3", "4", "you have to specify `--reply-src-key' and `--reply-dst-key'" } } },
}
PROTOS.udplite = { num = 136, opts = PROTOS.udp.opts, flags = PROTOS.udp.flags,
	names = PROTOS.udp.names, rules = PROTOS.udp.rules, pairs = PORT_PAIRS }
PROTOS.gre.rules.exp_create = "11111111"
local PROTO_BY_NUM = {}
for name, p in pairs(PROTOS) do
	p.name = name
	PROTO_BY_NUM[p.num] = p
end
-- A protocol without options of its own (any number 0..255, or a name from
-- /etc/protocols).
local function unknown_proto(num)
	return { num = num, name = "unknown", opts = {}, flags = {}, names = {}, rules = {} }
end

-- ---------------------------------------------------------------------
-- Values

-- Decimal, as the CLI reads ports, ICMP fields and timeouts (it would take
-- "abc" as 0: here it is an error).
local function decimal(s, max, what)
	local n = s:match("^%s*%+?(%d+)$")
	n = n and tonumber(n)
	if not n or n > max then
		fail(PARAM, "invalid %s `%s'", what, s)
	end
	return n
end

-- strtoul with base 0 (decimal, 0x hex, 0 octal), as the CLI reads marks,
-- zones, secmarks, ids, GRE keys; the whole text must be a number in range.
local function number(s, max, what)
	local n
	local body = s:match("^%s*%+?(.*)$")
	if body:match("^0[xX]%x+$") then
		n = tonumber(body:sub(3), 16)
	elseif body:match("^0[0-7]*$") then
		n = tonumber(body, 8)
	elseif body:match("^[1-9]%d*$") then
		n = tonumber(body)
	end
	if not n or n > max then
		fail(PARAM, "invalid %s `%s'", what, s)
	end
	return n
end

-- Addresses: dotted-quad IPv4 or IPv6 text -> family, canonical text,
-- and the address as 16-bit words (for comparisons); nil when malformed.
local function parse4(s)
	local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
	if not a then return nil end
	if #a > 3 or #b > 3 or #c > 3 or #d > 3 then return nil end
	a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
	if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
	return { a * 256 + b, c * 256 + d }
end

local function parse6(s)
	if not s:find(":", 1, true) or s:find("[^%x:%.]") then return nil end
	local v4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
	local tail = {}
	if v4 then
		tail = parse4(v4)
		if not tail then return nil end
		s = s:sub(1, #s - #v4) .. "x"
		s = s:gsub(":x$", ":0:0")
	end
	local function groups(part)
		local out = {}
		if part == "" then return out end
		for g in (part .. ":"):gmatch("([^:]*):") do
			if #g == 0 or #g > 4 or not g:match("^%x+$") then return nil end
			out[#out + 1] = tonumber(g, 16)
		end
		return out
	end
	local w
	local head, rest = s:match("^(.-)::(.*)$")
	if head then
		if rest:find("::", 1, true) then return nil end
		local h, r = groups(head), groups(rest)
		if not h or not r or #h + #r > 7 then return nil end
		w = h
		for _ = 1, 8 - #h - #r do w[#w + 1] = 0 end
		for _, x in ipairs(r) do w[#w + 1] = x end
	else
		w = groups(s)
		if not w or #w ~= 8 then return nil end
	end
	if v4 then
		w[7], w[8] = tail[1], tail[2]
	end
	return w
end

-- The kernel's text of an address (inet_ntop), to compare with entries.
local function text6(w)
	local best, blen, cur, clen = nil, 1, nil, 0
	for i = 1, 8 do
		if w[i] == 0 then
			cur = cur or i
			clen = clen + 1
			if clen > blen then best, blen = cur, clen end
		else
			cur, clen = nil, 0
		end
	end
	if best == 1 and (blen == 6 or (blen == 5 and w[6] == 0xffff)) then
		return (blen == 6 and "::" or "::ffff:") .. format("%d.%d.%d.%d", floor(w[7] / 256),
			w[7] % 256, floor(w[8] / 256), w[8] % 256)
	end
	local hex = {}
	for i = 1, 8 do hex[i] = format("%x", w[i]) end
	if not best or blen < 2 then
		return concat(hex, ":")
	end
	return concat(hex, ":", 1, best - 1) .. "::" .. concat(hex, ":", best + blen, 8)
end

local function parse_addr(s)
	local w = parse4(s)
	if w then
		return "ipv4", format("%d.%d.%d.%d", floor(w[1] / 256), w[1] % 256, floor(w[2] / 256), w[2] % 256)
	end
	w = parse6(s)
	if w then
		return "ipv6", text6(w)
	end
	return nil
end

-- ---------------------------------------------------------------------
-- Labels: /etc/xtables/connlabel.conf ("BIT NAME" lines), as the CLI reads it.

local labelmap
local function label_bit(name)
	if labelmap == nil then
		labelmap = {}
		local f = io.open("/etc/xtables/connlabel.conf")
		if not f then
			warn("nfct_labelmap_new: No such file or directory")
		else
			for line in f:lines() do
				local bit, lname = line:match("^%s*(%d+)%s+(%S+)")
				if bit and labelmap[lname] == nil then labelmap[lname] = tonumber(bit) end
			end
			f:close()
		end
	end
	local bit = labelmap[name]
	if bit == nil then
		fail(PARAM, "unknown label '%s'", name)
	end
	return bit
end

local function parse_labels(arg, into)
	into = into or {}
	for name in (arg .. ","):gmatch("([^,]*),") do
		label_bit(name)
		into[#into + 1] = name
	end
	return into
end

-- ---------------------------------------------------------------------
-- Comma lists of words, matched as the CLI does: each word may be any
-- leading part of a name, case not minding ("-o ext", "-e new"), and a word
-- that starts SRC_NAT or DST_NAT only warns.

local STATUS_WORDS = { { "ASSURED", 4 }, { "SEEN_REPLY", 2 }, { "UNSET", 0 },
	{ "FIXED_TIMEOUT", 1024 }, { "EXPECTED", 1 }, { "OFFLOAD", 16384 }, { "HW_OFFLOAD", 32768 } }
local EVENT_WORDS = { { "ALL", 7 }, { "NEW", 1 }, { "UPDATES", 2 }, { "DESTROY", 4 } }
local OUTPUT_WORDS = { { "xml", "xml" }, { "extended", "extended" }, { "timestamp", "timestamp" },
	{ "id", "id" }, { "ktimestamp", "ktimestamp" }, { "labels", "labels" },
	{ "userspace", "userspace" }, { "save", "save" } }

local function word(w, list)
	local up = w:upper()
	if ("SRC_NAT"):sub(1, #w) == up then
		warn("WARNING: ignoring SRC_NAT, use --src-nat instead")
		return true
	elseif ("DST_NAT"):sub(1, #w) == up then
		warn("WARNING: ignoring DST_NAT, use --dst-nat instead")
		return true
	end
	for _, p in ipairs(list) do
		if p[1]:upper():sub(1, #w) == up then
			return true, p[2]
		end
	end
	return false
end

-- -> list of values; "Bad parameter" names the rest of the text from the bad word.
local function words(arg, list)
	local out, pos = {}, 1
	while true do
		local comma = arg:find(",", pos, true)
		local w = arg:sub(pos, (comma or 0) - 1)
		local ok, v = false, nil
		if w ~= "" then ok, v = word(w, list) end
		if not ok then
			fail(PARAM, "Bad parameter `%s'", arg:sub(pos))
		end
		out[#out + 1] = v
		if not comma then return out end
		pos = comma + 1
	end
end

-- -u: bits to set (status) and bits to look at (mask); "!NAME" only in the
-- mask (the bit must be clear), UNREPLIED is !SEEN_REPLY.
local function parse_status(arg, st)
	local pos = 1
	while true do
		local comma = arg:find(",", pos, true)
		local w = arg:sub(pos, (comma or 0) - 1)
		local neg = w:sub(1, 1) == "!"
		if neg then w = w:sub(2) end
		if w == "" and (comma or neg) then
			fail(PARAM, "Bad parameter `%s'", arg:sub(pos))
		end
		if not neg and w:sub(1, 9) == "UNREPLIED" then
			st.mask = bor(st.mask, 2)
		else
			local ok, v = false, nil
			if w ~= "" then ok, v = word(w, STATUS_WORDS) end
			if not ok then
				fail(PARAM, "Bad parameter `%s'", arg:sub(pos + (neg and 1 or 0)))
			end
			if v then
				if neg then st.mask = bor(st.mask, v) else st.value = bor(st.value, v) end
			end
		end
		if not comma then return end
		pos = comma + 1
	end
end

-- "ip", "ip:port", "[ipv6]:port" (the --src-nat family).
local function split_hostport(arg)
	local open = arg:find("[", 1, true)
	local addr, port
	if open then
		local close = arg:find("]", open + 1, true)
		if close == open + 1 then
			fail(PARAM, "No IPv6 address specified")
		elseif not close then
			fail(PARAM, "No closing ']' around IPv6 address")
		end
		local colon = arg:find(":", close, true)
		if colon then
			addr, port = arg:sub(open + 1, close - 1), arg:sub(colon + 1)
		else
			addr = arg
		end
	else
		local colon = arg:find(":", 1, true)
		if colon and not arg:find(":", colon + 1, true) then
			addr, port = arg:sub(1, colon - 1), arg:sub(colon + 1)
		else
			addr = arg
		end
	end
	if port then
		if port == "" then
			fail(PARAM, "No port specified after `:'")
		end
		local n = port:match("^%d+$") and tonumber(port)
		if not n or n > 65535 then
			fail(PARAM, "Invalid port `%s'", port)
		end
		port = n
	end
	return addr, port
end

-- ---------------------------------------------------------------------
-- A command line -> a command: { command =, table =, opts = {set of rule
-- names}, family =, orig = {}, reply = {}, proto =, pflags = {}, ... }.

local TABLES = { "expect", "conntrack", "dying", "unconfirmed" }

local function parse(argv)
	local p = getopt_new(argv, SHORTOPTS, LONGOPTS)
	local c = { opts = {}, orig = {}, reply = {}, nat = {}, pflags = {}, status = nil,
		output = {}, merged = {} }

	-- The CLI's optional arguments: attached ("-Lexpect"), else the next
	-- word when it does not start with "-" or "!".
	local function optional(optarg)
		if optarg then return optarg end
		local w = p.argv[p.optind]
		if w and w:sub(1, 1) ~= "-" and w:sub(1, 1) ~= "!" then
			p:skip()
			return w
		end
		return nil
	end

	local function set_family(fam)
		if c.family == nil then
			c.family = fam
		elseif c.family ~= fam then
			fail(PARAM, "mismatched address family")
		end
	end

	-- -s -d -r -q --tuple-src ...: into dir (a table), CIDR where the CLI takes it.
	local function address(key, arg, dir, field, cidr_opt)
		local a, len = arg:match("^([^/]*)/(.*)$")
		a = a or arg
		local fam, text = parse_addr(a)
		if not fam then
			fail(PARAM, "Invalid IP address `%s'", arg)
		end
		set_family(fam)
		local bits = fam == "ipv4" and 32 or 128
		if len then
			if not cidr_opt then
				local name
				for _, o in ipairs(LONGOPTS) do
					if o[3] == key then name = o[1] break end
				end
				fail(PARAM, "CIDR notation unavailable for `--%s'", name)
			end
			len = len:match("^%d+$") and tonumber(len)
			if not len or len > bits then
				fail(PARAM, "Invalid netmask")
			end
		end
		c.opts[KEY_OPT[key]] = true
		dir[field] = text
		if len and len < bits then
			dir[field .. "_len"] = len
			c.opts[cidr_opt] = true
		end
		return fam, text
	end

	local function command(key, optarg)
		local t = optional(optarg)
		local tbl = "conntrack"
		if t ~= nil then
			tbl = nil
			for _, name in ipairs(TABLES) do
				if name:sub(1, #t) == t then tbl = name break end
			end
			if not tbl then fail(PARAM, "unknown type `%s'", t) end
		end
		local def = COMMANDS[key]
		local name
		if key == "L" and (tbl == "dying" or tbl == "unconfirmed") then
			name = def[1]
		elseif tbl == "dying" or tbl == "unconfirmed" then
			fail(PARAM, "Can't do that command with tables `dying' and `unconfirmed'")
		else
			name = def[tbl == "expect" and 2 or 1]
			if not name then
				fail(PARAM, "Can't do --%s on %s", def[3], tbl == "conntrack" and "conntrack" or "expectations")
			end
		end
		if c.command then fail(PARAM, "Invalid commands combination") end
		c.command, c.table = name, tbl
	end

	local function proto_option(key, arg)
		local pr = c.proto
		c.pflags[key] = true
		if key == "1" or key == "2" or key == "3" or key == "4" then
			local dir = (key == "1" or key == "2") and c.orig or c.reply
			local field = (key == "1" or key == "3") and "sport" or "dport"
			if pr.name == "gre" then
				dir[field] = number(arg, 65535, "GRE key")
			else
				dir[field] = decimal(arg, 65535, "port")
			end
			dir.l4 = pr.num
		elseif key == "5" or key == "6" or key == "8" or key == "9" then
			c.expect_ports = c.expect_ports or {}
			c.expect_ports[key] = pr.name == "gre" and number(arg, 65535, "GRE key") or decimal(arg, 65535, "port")
		elseif key == "7" then
			local ok
			for _, s in ipairs(pr.states) do
				if s == arg then ok = true break end
			end
			if pr.name == "tcp" and arg == "LISTEN" then
				arg, ok = "SYN_SENT2", true
			end
			if not ok then fail(PARAM, pr.state_what, arg) end
			c.state = arg
		elseif key == "T" then
			c.orig.icmp_type = decimal(arg, 255, "ICMP type")
		elseif key == "K" then
			c.orig.icmp_code = decimal(arg, 255, "ICMP code")
		elseif key == "Y" then
			c.orig.icmp_id = decimal(arg, 65535, "ICMP id")
		elseif key == "v" then
			c.orig.vtag = number(arg, 4294967295, "vtag")
		elseif key == "x" then
			c.reply.vtag = number(arg, 4294967295, "vtag")
		elseif key == "R" then
			if ("client"):sub(1, #arg) == arg:lower() then
				c.role = "client"
			elseif ("server"):sub(1, #arg) == arg:lower() then
				c.role = "server"
			else
				fail(PARAM, "Unknown DCCP role `%s'", arg)
			end
		end
	end

	while true do
		local key, optarg = p:next()
		if key == nil then break end
		if COMMANDS[key] then
			command(key, optarg)
		elseif key == "s" or key == "d" then
			address(key, optarg, c.orig, key == "s" and "src" or "dst", key == "s" and "mask-src" or "mask-dst")
		elseif key == "r" or key == "q" then
			address(key, optarg, c.reply, key == "r" and "src" or "dst")
		elseif key == "[" or key == "]" then
			c.exptuple = c.exptuple or {}
			address(key, optarg, c.exptuple, key == "[" and "src" or "dst", key == "[" and "mask-src" or "mask-dst")
		elseif key == "{" or key == "}" then
			c.mask = c.mask or {}
			address(key, optarg, c.mask, key == "{" and "src" or "dst")
		elseif key == "p" then
			c.opts.protonum = true
			local name = optarg:lower()
			local pr = PROTOS[name]
			if not pr then
				local n = optarg:match("^%d+$") and tonumber(optarg)
				n = n or (optarg:match("^0[xX]%x+$") and tonumber(optarg:sub(3), 16))
				if n and n <= 255 then
					pr = PROTO_BY_NUM[n] or unknown_proto(n)
				else
					local num = ct.filter.proto_numbers and ct.filter.proto_numbers[name]
					if not num then
						-- /etc/protocols, as getprotobyname.
						local f = io.open("/etc/protocols")
						if f then
							for line in f:lines() do
								local pname, pnum, aliases = line:match("^([%w%-_%.]+)%s+(%d+)%s*([^#]*)")
								if pname and (pname == optarg or (" " .. aliases .. " "):find(" " .. optarg .. " ", 1, true)) then
									num = tonumber(pnum)
									break
								end
							end
							f:close()
						end
					end
					if not num then fail(PARAM, "`%s' unsupported protocol", optarg) end
					pr = PROTO_BY_NUM[num] or unknown_proto(num)
				end
			end
			c.proto = pr
			if not c.merged[pr] then
				c.merged[pr] = true
				local more = {}
				for _, o in ipairs(pr.opts) do more[#more + 1] = { o[1], 1, o[2] } end
				if #more > 0 then p:extend(more) end
			end
		elseif key == "t" then
			c.opts.timeout = true
			c.timeout = decimal(optarg, 4294967295, "timeout")
		elseif key == "u" then
			c.opts.status = true
			c.status = c.status or { value = 0, mask = 0 }
			parse_status(optarg, c.status)
		elseif key == "e" then
			c.opts["event-mask"] = true
			c.event_mask = c.event_mask or 0
			for _, v in ipairs(words(optarg, EVENT_WORDS)) do c.event_mask = bor(c.event_mask, v) end
		elseif key == "o" then
			c.opts.output = true
			for _, v in ipairs(words(optarg, OUTPUT_WORDS)) do c.output[v] = true end
			local o = c.output
			if o.save and (o.extended or o.timestamp or o.id or o.ktimestamp or o.labels or o.xml) then
				fail(OTHER, "cannot combine save output with any other output type, use -o save only")
			end
		elseif key == "z" then
			c.opts.zero = true
		elseif key == "n" or key == "g" or key == "j" then
			c.opts[KEY_OPT[key]] = true
			local a = optional(optarg)
			if a then
				local addr, port = split_hostport(a)
				local fam, text = parse_addr(addr)
				if not fam then fail(PARAM, "Invalid IP address `%s'", addr) end
				if addr:find("/", 1, true) then fail(PARAM, "CIDR notation unavailable for `--%s'", KEY_OPT[key]) end
				set_family(fam)
				local where = { addr = text, port = port }
				if key == "j" then
					c.nat.src, c.nat.dst = where, where
				else
					c.nat[key == "n" and "src" or "dst"] = where
				end
			end
		elseif key == "w" then
			c.opts.zone = true
			c.zone = number(optarg, 65535, "zone")
		elseif key == "(" then
			c.opts["orig-zone"] = true
			c.orig_zone = number(optarg, 65535, "zone")
		elseif key == ")" then
			c.opts["reply-zone"] = true
			c.reply_zone = number(optarg, 65535, "zone")
		elseif key == "i" then
			c.opts.id = true
			if not optarg then fail(PARAM, "option `--id' requires an argument") end
			c.id = number(optarg, 4294967295, "id")
		elseif key == "c" then
			c.opts.secmark = true
			c.secmark = number(optarg, 4294967295, "secmark")
		elseif key == "m" then
			c.opts.mark = true
			local v, m = optarg:match("^([^/]*)/(.*)$")
			c.mark = { value = number(v or optarg, 4294967295, "mark"),
				mask = m and number(m, 4294967295, "mark mask") or 4294967295 }
		elseif key == "l" or key == "<" or key == ">" then
			c.opts[KEY_OPT[key]] = true
			if c.opts["label-add"] and c.opts["label-del"] then
				fail(OTHER, "cannot use --label-add and --label-del at the same time")
			end
			if key == "l" then
				c.labels = parse_labels(optarg, c.labels)
			elseif key == "<" then
				c.label_add = parse_labels(optarg, c.label_add)
			else
				local a = optional(optarg)
				if a then
					c.label_del = parse_labels(a, c.label_del ~= true and c.label_del or nil)
				else
					c.label_del = c.label_del or true
				end
			end
		elseif key == "a" then
			warn("WARNING: ignoring -a, deprecated option.")
		elseif key == "f" then
			c.opts.family = true
			if optarg:sub(1, 4) == "ipv4" then
				set_family("ipv4")
			elseif optarg:sub(1, 4) == "ipv6" then
				set_family("ipv6")
			else
				fail(PARAM, "`%s' unsupported protocol", optarg)
			end
		elseif key == "b" then
			c.opts["buffer-size"] = true
			c.bufsize = decimal(optarg, 2147483647, "buffer size")
		elseif key == ":" then
			fail(PARAM, "option `%s' requires an argument", p.argv[p.optind - 1])
		elseif key == "?" then
			fail(PARAM, "unknown option `%s'", p.argv[p.optind - 1])
		elseif c.proto then
			proto_option(key, optarg)
		end
	end

	c.command = c.command or "none"
	if c.opts["any-nat"] and (c.opts["src-nat"] or c.opts["dst-nat"]) then
		fail(PARAM, "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
	end
	-- Which options the command needs and refuses, then one address pair.
	local function check(rule, names, present, pairs)
		if not rule then return end
		local undecided = false
		for i, name in ipairs(names) do
			local r = rule:sub(i, i)
			if not present[i] and r == "1" then
				fail(PARAM, "You need to supply the `--%s' option for this command", name)
			elseif present[i] and r == "0" then
				fail(PARAM, "Illegal option `--%s' with this command", name)
			end
			if r == "3" then undecided = true end
		end
		if not undecided then return end
		local partial
		for i, pair in ipairs(pairs) do
			local a, b = present[pair[1]], present[pair[2]]
			if a and b then return end
			if (a or b) and not partial then partial = i end
		end
		fail(PARAM, pairs[partial or 1][3])
	end
	local present = {}
	for i, name in ipairs(OPTS) do present[i] = c.opts[name] or false end
	present.s, present.d, present.r, present.q = c.opts.src, c.opts.dst, c.opts["reply-src"], c.opts["reply-dst"]
	check(RULES[c.command], OPTS, present, {
		{ "s", "d", "you have to specify `--src' and `--dst'" },
		{ "r", "q", "you have to specify `--reply-src' and `--reply-dst'" } })
	if c.command ~= "help" and c.proto then
		local pr, pp = c.proto, {}
		for i, k in ipairs(pr.flags) do
			pp[i] = c.pflags[k] or false
			pp[k] = pp[i]
		end
		check(pr.rules[c.command] or ("0"):rep(#pr.flags), pr.names, pp, pr.pairs or {})
	end
	-- The default family, for the commands that do not work on both.
	local any = { list = true, update = true, delete = true, get = true, flush = true, event = true }
	if c.family == nil and not any[c.command] then
		c.fixed_family = "ipv4"
	end
	return c
end

-- ---------------------------------------------------------------------
-- Kernel errors, in the CLI's words.

local E = ct.errno
-- The commands its "invalid parameters" covers (the first sixteen bits of
-- its command mask).
local LOW = { list = 1, create = 1, update = 1, delete = 1, get = 1, flush = 1, event = 1,
	version = 1, help = 1, exp_list = 1, exp_create = 1, exp_delete = 1, exp_get = 1,
	exp_flush = 1, exp_event = 1, count = 1 }
local ETIME, ENOTSUPP = 62, 524

local function err2str(errno, command, msg)
	local cr, add = command == "create", command == "add"
	if errno == ENOTSUPP and command == "list" then return "function not implemented" end
	if errno == E.EINVAL and LOW[command] then return "invalid parameters" end
	if errno == E.EEXIST and cr then return "Such conntrack exists, try -U to update" end
	if errno == E.ENOENT and (cr or add or command == "get" or command == "delete") then
		return "such conntrack doesn't exist"
	end
	if errno == E.ENOMEM and (cr or add or command == "get") then return "not enough memory" end
	if errno == E.EAFNOSUPPORT and command == "get" then return "protocol not supported" end
	if errno == ETIME and (cr or add) then return "conntrack has expired" end
	if errno == E.ENOENT and command == "exp_create" then return "master conntrack not found" end
	if errno == E.EPERM then return "sorry, you must be root or get CAP_NET_ADMIN capability to do this" end
	-- The module's "op: strerror": the strerror part.
	return (tostring(msg or ""):gsub("^.-(%a[%w_]*): ", "", 1):gsub(" %(CAP_NET_ADMIN is required%)$", ""))
end

local function kernel_fail(command, msg, errno)
	fail(OTHER, "Operation failed: %s", err2str(errno, command, msg))
end

-- A refusal the module raised (an iterator has no other way to say it):
-- the CLI's message for it.
local function raised(command, err)
	if type(err) == "table" then error(err, 0) end
	local msg = tostring(err)
	kernel_fail(command, msg, msg:find("not permitted", 1, true) and E.EPERM or nil)
end

-- fn(h, arg): its result, or the CLI's message for a refusal (raised or
-- returned).  add = true: false is a result too (h:add of a flow there).
local function call(command, fn, h, arg, add)
	local ok, res, msg, errno = pcall(fn, h, arg)
	if not ok then raised(command, res) end
	if res == nil or (res == false and not add) then kernel_fail(command, msg, errno) end
	return res
end

-- ---------------------------------------------------------------------
-- Output: lines gathered and written in blocks.

local out = { n = 0 }
local function flush_out()
	local n = out.n
	if n > 0 then
		out[n + 1] = ""
		io.stdout:write(concat(out, "\n", 1, n + 1))
		for i = n + 1, 1, -1 do out[i] = nil end
		out.n = 0
	end
	io.stdout:flush()
end
local function emit(line)
	local n = out.n + 1
	out[n] = line
	out.n = n
	if n >= 512 then flush_out() end
end

-- Wall-clock seconds and microseconds now: luaposix, LuaSocket, else
-- whole seconds.
local now
do
	local okp, ptime = pcall(require, "posix.sys.time")
	local oks, socket = pcall(require, "socket")
	if okp and type(ptime) == "table" and ptime.gettimeofday then
		now = function()
			local tv = ptime.gettimeofday()
			return tv.tv_sec, tv.tv_usec
		end
	elseif oks and type(socket) == "table" and socket.gettime then
		now = function()
			local t = socket.gettime()
			return floor(t), floor((t - floor(t)) * 1e6)
		end
	else
		now = function() return os.time(), 0 end
	end
end

-- fn(e) -> the line the CLI prints for e.  kind: "list" (dumps, gets,
-- events), "update" (changed entries: no ktimestamp) or "delete" (deleted
-- entries: no ktimestamp, no labels).  Labels are shown with -o labels or
-- when a label option was given (the CLI loads its label names then).
local SAVE_D, SAVE_A = { command = "-D" }, { command = "-A" }

-- The words of e:format for printer(c, kind), but -o save: a comma list.
local function format_opts(c, kind)
	local o, list = c.output, {}
	if o.xml then list[#list + 1] = "xml" end
	if o.extended then list[#list + 1] = "extended" end
	if o.id then list[#list + 1] = "id" end
	if kind == "list" and o.ktimestamp then list[#list + 1] = "ktimestamp" end
	if kind ~= "delete" and (o.labels or c.labels or c.label_add or c.label_del) then
		list[#list + 1] = "labels"
	end
	-- events only: the time each was received, before the line or in <when>
	if o.timestamp and c.command == "event" then list[#list + 1] = "timestamp" end
	return concat(list, ",")
end

local function printer(c, kind)
	if c.output.save then
		local save = ct.format.save
		if kind == "delete" then
			return function(e) return save(e, SAVE_D) end
		elseif kind == "update" then
			return function(e) return save(e, SAVE_A) end
		end
		return save
	end
	local opts = format_opts(c, kind)
	if opts == "" then
		return tostring
	end
	return function(e) return e:format(opts) end
end

local function summary(c, n)
	local s = SUMMARY[c.command]
	if s and not state.loading then
		io.stderr:write(PREFIX, ": ", format(s, n), "\n")
	end
end

-- -o xml: the document's first line goes before the first flow; the last
-- line only where the CLI writes it (-L, and -E when it ends).
local XML = {
	conntrack = { head = ct.format.xml_header(), foot = ct.format.xml_footer() },
	expect = { head = '<?xml version="1.0" encoding="utf-8"?>\n<expect>', foot = "</expect>" },
}

-- ---------------------------------------------------------------------
-- Filters: what the CLI checks on each entry, as lua-conntrack filters
-- (the module runs all but NAT, labels by name and the id in C, and sends
-- the kernel what it can).

local F = ct.filter
local PORT_PROTOS = { [6] = true, [17] = true, [136] = true, [132] = true, [33] = true }

local function bxor(a, b) return bor(a, b) - band(a, b) end
local function bnot(a) return 4294967295 - a end

-- The CLI compares an entry with the options when one of these was given.
local COMPARED = { "protonum", "src", "dst", "reply-src", "reply-dst", "mark", "secmark", "status",
	"id", "zone", "label", "orig-zone", "reply-zone" }

local function nat_filter(c)
	local sn, dn, an = c.opts["src-nat"], c.opts["dst-nat"], c.opts["any-nat"]
	if not (sn or dn or an) then return nil end
	local ws, wd = c.nat.src, c.nat.dst
	local function has_src(e)
		local st = e.status
		if not (st and st.SRC_NAT) then return false end
		if ws then
			local o, r = e.orig, e.reply
			if ws.addr and (r.dst ~= ws.addr or r.dst == o.src) then return false end
			if ws.port and (r.dport ~= ws.port or r.dport == o.sport) then return false end
		end
		return true
	end
	local function has_dst(e)
		local st = e.status
		if not (st and st.DST_NAT) then return false end
		if wd then
			local o, r = e.orig, e.reply
			if wd.addr and (r.src ~= wd.addr or r.src == o.dst) then return false end
			if wd.port and (r.sport ~= wd.port or r.sport == o.dport) then return false end
		end
		return true
	end
	if an then
		return F.where(function(e) return has_src(e) or has_dst(e) end, "any-nat")
	elseif sn and dn then
		return F.where(function(e) return has_src(e) and has_dst(e) end, "src-nat and dst-nat")
	elseif sn then
		return F.where(has_src, "src-nat")
	end
	return F.where(has_dst, "dst-nat")
end

local function addr_block(block, dir, field)
	local a = dir[field]
	if not a then return nil end
	local len = dir[field .. "_len"]
	return block(len and (a .. "/" .. len) or a)
end

-- The original or reply tuple's parts: addresses, protocol, ports or GRE
-- keys, ICMP fields (of the original direction).
local function tuple_blocks(c, parts, which)
	local t, pr = c[which], c.proto
	local add = function(f) if f then parts[#parts + 1] = f end end
	if which == "orig" then
		add(addr_block(F.src, t, "src"))
		add(addr_block(F.dst, t, "dst"))
		if pr then add(F.proto(pr.num)) end
		if t.sport then add(F.sport(t.sport)) end
		if t.dport then add(F.dport(t.dport)) end
		if t.icmp_type then add(F.icmp_type(t.icmp_type)) end
		if t.icmp_code then add(F.icmp_code(t.icmp_code)) end
		if t.icmp_id then add(F.icmp_id(t.icmp_id)) end
	else
		add(addr_block(F.reply_src, t, "src"))
		add(addr_block(F.reply_dst, t, "dst"))
		if t.l4 and pr then add(F.proto(pr.num)) end
		if t.sport then add(F.reply_sport(t.sport)) end
		if t.dport then add(F.reply_dport(t.dport)) end
	end
end

local function dir_zone(dir, v)
	if v == nil then return nil end
	return F.where(function(e)
		local t = e[dir]
		return ((t and t.zone) or 0) == v
	end, dir .. "_zone")
end

-- mode "full": what -L, -D, -G and -E check; "update": what -U checks.
-- family = false leaves the family out (the dying and unconfirmed lists,
-- where the CLI asks the kernel for no family).
local function build_filter(c, mode, family)
	local parts = {}
	local add = function(f) if f then parts[#parts + 1] = f end end
	if c.family and family ~= false then add(F.family(c.family)) end
	add(nat_filter(c))
	if c.labels then add(F.label(unpack(c.labels))) end
	if c.id then
		local id = c.id
		add(F.where(function(e) return e.id == id end, "id"))
	end
	if mode == "update" then
		if c.opts.src or c.opts.dst or c.opts.protonum then tuple_blocks(c, parts, "orig") end
		if c.opts["reply-src"] or c.opts["reply-dst"] or c.opts.protonum then tuple_blocks(c, parts, "reply") end
		return F.all(unpack(parts))
	end
	local m = c.mark
	if m then
		add(band(m.value, bnot(m.mask)) ~= 0 and F.never or F.mark(m.value, m.mask))
	end
	local st = c.status
	if st then
		local mask = st.mask == 0 and st.value or st.mask
		add(F.status(st.value, mask))
	end
	for _, o in ipairs(COMPARED) do
		if c.opts[o] then
			tuple_blocks(c, parts, "orig")
			tuple_blocks(c, parts, "reply")
			if c.state then add(F.state(c.state)) end
			if c.zone then add(F.zone(c.zone)) end
			-- a direction's own zone, as the tuple carries it (none = 0); the
			-- module's orig_zone/reply_zone blocks see the entry's zone there
			add(dir_zone("orig", c.orig_zone))
			add(dir_zone("reply", c.reply_zone))
			-- the kernel sends no secmark: none = 0
			if c.secmark then
				local v = c.secmark
				add(F.where(function(e) return (e.secmark or 0) == v end, "secmark"))
			end
			if c.timeout then add(F.timeout(c.timeout, c.timeout)) end
			break
		end
	end
	return F.all(unpack(parts))
end

-- Runs fn(e) for each entry of a dump, the module's refusals turned into
-- the CLI's messages.  The loop runs inside one pcall, not one per entry.
local function each(h, f, how, command, fn)
	local ok, err = pcall(function()
		for e in h:dump(f, how) do fn(e) end
	end)
	if not ok then raised(command, err) end
end

-- The flow's key: its original tuple and zone.
local function key_of(e)
	local o = e.orig
	return concat({ e.protonum or 0, o.src, o.dst, o.sport or o.icmp_id or "", o.dport or o.icmp_type or "",
		e.zone or 0 }, " ")
end

-- ---------------------------------------------------------------------
-- The commands on the conntrack table (and the dying and unconfirmed
-- lists).  Each returns the exit status.

local function cmd_list(h, c)
	local line = printer(c, "list")
	local xml = c.output.xml and XML.conntrack
	local how, f
	if c.table == "dying" or c.table == "unconfirmed" then
		-- the CLI sends no filter for these lists, and ignores -z
		how, f = { table = c.table }, build_filter(c, "full", false)
	else
		if c.opts.zero then
			for _, o in ipairs(COMPARED) do
				if c.opts[o] then fail(PARAM, "Can't use -z with filtering parameters") end
			end
			how = { zero = true }
		end
		-- -u UNSET alone asks the kernel for status & 0 == 0, which it refuses.
		if c.status and c.status.value == 0 and c.status.mask == 0 then
			kernel_fail("list", "Invalid argument", E.EINVAL)
		end
		f = build_filter(c, "full")
	end
	local n = 0
	each(h, f, how, "list", function(e)
		if n == 0 then
			if xml then emit(xml.head) end
			-- the entries' own __tostring, without tostring()'s lookup each time
			if line == tostring then line = getmetatable(e).__tostring end
		end
		n = n + 1
		emit(line(e))
	end)
	-- the CLI ends the document of -L, but not of -L dying or unconfirmed
	if n > 0 and xml and not (how and how.table) then emit(xml.foot) end
	flush_out()
	summary(c, n)
	return 0
end

-- The tuple -G, -I and -A name: the original direction, the reply
-- direction, or both; ports, GRE keys and ICMP fields by protocol.
local function tuple_of(c, full)
	local o, r, pr = c.orig, c.reply, c.proto
	local t = { family = c.family or c.fixed_family, proto = pr.num }
	if o.src then t.src, t.dst = o.src, o.dst end
	if r.src and (full or not o.src) then t.reply_src, t.reply_dst = r.src, r.dst end
	if pr.name == "gre" then
		t.srckey, t.dstkey = o.sport, o.dport
		if full or not o.src then t.reply_srckey, t.reply_dstkey = r.sport, r.dport end
	elseif PORT_PROTOS[pr.num] then
		t.sport, t.dport = o.sport, o.dport
		if full or not o.src then t.reply_sport, t.reply_dport = r.sport, r.dport end
	elseif pr.name == "icmp" or pr.name == "icmpv6" then
		t.icmp_type, t.icmp_code, t.icmp_id = o.icmp_type, o.icmp_code, o.icmp_id or 0
	end
	return t
end

local function cmd_get(h, c)
	local e = call("get", h.get, h, tuple_of(c))
	local n = 0
	if build_filter(c, "full"):match(e) then
		n = 1
		-- the CLI starts an XML document here and never ends it
		if c.output.xml then emit(XML.conntrack.head) end
		emit(printer(c, "list")(e))
	end
	flush_out()
	summary(c, n)
	return n == 0 and 1 or 0
end

-- "addr" or "[addr]:port" of a -n/-g value, as the module's snat/dnat take it.
local function nat_spec(w)
	if not w then return nil end
	if not w.port then return w.addr end
	return { addr = w.addr, port = w.port }
end

local function create_spec(c)
	local s = tuple_of(c, true)
	s.timeout = c.timeout
	s.state = c.state
	if c.status and c.status.value ~= 0 then s.status = c.status.value end
	if c.mark then s.mark = c.mark.value end
	s.zone, s.orig_zone, s.reply_zone = c.zone, c.orig_zone, c.reply_zone
	if c.label_add then s.labels = c.label_add end
	s.snat, s.dnat = nat_spec(c.nat.src), nat_spec(c.nat.dst)
	s.orig_vtag, s.reply_vtag, s.role = c.orig.vtag, c.reply.vtag, c.role
	return s
end

local function cmd_create(h, c)
	-- add: false when the flow was there already (left as it is)
	local n = call(c.command, c.command == "add" and h.add or h.create, h, create_spec(c), true) and 1 or 0
	summary(c, n)
	return (n == 0 and c.command ~= "add") and 1 or 0
end

-- Runs op ("delete", "update") on the entries of a dump in batches of
-- BATCH, while the dump goes on; on_done(e) for each entry done.  A
-- refusal ends the command with the CLI's message (after the entries done
-- before it); entries that vanished meanwhile are skipped.
local BATCH = 1000
local function batches(h, op, changes, on_done)
	local chunk, k, done = {}, 0, 0
	local batch = h.batch
	local function send()
		if k == 0 then return end
		local ok, miss, fails = batch(h, op, chunk, changes)
		if not ok then kernel_fail(op, miss, fails) end
		if #fails == 0 and miss == 0 then
			for i = 1, k do on_done(chunk[i]) end
		else
			local skip = {}
			for _, f in ipairs(fails) do skip[f.index] = true end
			if miss > 0 then
				-- which ones vanished: those the kernel no longer has
				for i = 1, k do
					if not skip[i] and not h:get(chunk[i]) then skip[i] = true end
				end
			end
			for i = 1, k do
				if not skip[i] then on_done(chunk[i]) end
			end
		end
		done = done + ok
		chunk, k = {}, 0
		if fails[1] then
			flush_out()
			kernel_fail(op, fails[1].message, fails[1].errno)
		end
	end
	return function(e)
		if e == nil then
			send()
			return done
		end
		k = k + 1
		chunk[k] = e
		if k >= BATCH then send() end
	end
end

-- The module deletes and writes each deleted entry's line (delete_where
-- with lines: no Lua value per flow but for the filter's Lua part); -o
-- save lines are made here, of the entries the dump gives.
local function cmd_delete(h, c)
	local f = build_filter(c, "full")
	local n
	if c.output.save then
		local line = printer(c, "delete")
		local add = batches(h, "delete", nil, function(e) emit(line(e)) end)
		each(h, f, nil, "delete", add)
		n = add(nil)
	else
		local stdout = io.stdout
		local ok, done, msg, fails = pcall(h.delete_where, h, f, {
			lines = function(text) stdout:write(text) end,
			format = format_opts(c, "delete"),
		})
		if not ok then raised("delete", done) end
		if not done then kernel_fail("delete", msg, fails) end
		if fails[1] then
			flush_out()
			kernel_fail("delete", fails[1].message, fails[1].errno)
		end
		n = done
	end
	flush_out()
	summary(c, n)
	return n == 0 and 1 or 0
end

-- -U: the changes of the command line (mark under its mask, status flags
-- added, labels added or removed, timeout, TCP state), sent for each
-- matching entry they would change; then the changed entries as a dump
-- shows them.
local function update_changes(c)
	local ch = {}
	if c.timeout then ch.timeout = c.timeout end
	if c.mark then ch.mark, ch.mark_mask = c.mark.value, c.mark.mask end
	if c.status and c.status.value ~= 0 then ch.status = c.status.value end
	if c.label_add then
		ch.label_add = c.label_add
	elseif c.label_del == true then
		ch.labels = {}
	elseif c.label_del then
		ch.label_del = c.label_del
	end
	if c.state then ch.state = c.state end
	ch.orig_vtag, ch.reply_vtag = c.orig.vtag, c.reply.vtag
	return ch
end

-- Would ch change e?  As the CLI judges (it compares the entry with the
-- entry changed).
local function alters(e, ch)
	if ch.timeout and e.timeout ~= ch.timeout then return true end
	if ch.mark then
		local old = e.mark or 0
		if bxor(band(old, bnot(ch.mark_mask)), ch.mark) ~= old then return true end
	end
	if ch.status then
		local old = 0
		for name, on in pairs(e.status or {}) do
			local v = on and ct.status_bits[name]
			if v then old = old + v end
		end
		if bor(old, ch.status) ~= old then return true end
	end
	if ch.state and e.state ~= ch.state then return true end
	-- conntrack compares no tags: a change of tags alone is dropped there
	if ch.orig_vtag and e.orig_vtag ~= ch.orig_vtag then return true end
	if ch.reply_vtag and e.reply_vtag ~= ch.reply_vtag then return true end
	local ls = e.labels
	if ch.label_add then
		for _, l in ipairs(ch.label_add) do
			if not (ls and ls[l]) then return true end
		end
	elseif ch.label_del then
		for _, l in ipairs(ch.label_del) do
			if ls and ls[l] then return true end
		end
	elseif ch.labels then
		if ls and next(ls) ~= nil then return true end
	end
	return false
end

local function cmd_update(h, c)
	local ch = update_changes(c)
	local changed, any = {}, false
	local add = batches(h, "update", ch, function(e)
		changed[key_of(e)] = true
		any = true
	end)
	each(h, build_filter(c, "update"), nil, "update", function(e)
		if next(ch) ~= nil and alters(e, ch) then add(e) end
	end)
	local n = add(nil)
	if any then
		local line = printer(c, "update")
		each(h, c.family and { family = c.family } or nil, nil, "update", function(e)
			if changed[key_of(e)] then emit(line(e)) end
		end)
	end
	flush_out()
	summary(c, n)
	return n == 0 and 1 or 0
end

-- -F and -F expect: the whole table (conntrack's family option reaches the
-- kernel, which flushes every family all the same).
local function cmd_flush(h, c)
	local exp = c.command == "exp_flush"
	local ok, msg, errno
	if exp then ok, msg, errno = h:expect_flush() else ok, msg, errno = h:flush() end
	io.stderr:write(PREFIX, exp and ": expectation table has been emptied.\n" or
		": connection tracking table has been emptied.\n")
	if not ok then kernel_fail(c.command, msg, errno) end
	return 0
end

local function cmd_count(h)
	local n, msg, errno = h:count()
	if not n then kernel_fail("count", msg, errno) end
	io.stdout:write(format("%d\n", n))
	return 0
end

-- One "cpu=N\tname=value ..." line per CPU, the counters in the order of
-- their attributes (as the CLI prints them).
local STATS_ORDER = {
	stats = { "searched", "found", "new", "invalid", "ignore", "delete", "delete_list",
		"insert", "insert_failed", "drop", "early_drop", "error", "search_restart", "clash_resolve",
		"chaintoolong" },
	exp_stats = { "new", "create", "delete" },
}
local STATS_NAME = { exp_stats = { new = "expect_new", create = "expect_create", delete = "expect_delete" } }

local function cmd_stats(h, c)
	local s, msg, errno
	if c.command == "exp_stats" then s, msg, errno = h:expect_stats() else s, msg, errno = h:stats() end
	if not s then kernel_fail(c.command, msg, errno) end
	local order, rename = STATS_ORDER[c.command], STATS_NAME[c.command] or {}
	local known = { cpu = true }
	for _, k in ipairs(order) do known[k] = true end
	for _, cpu in ipairs(s) do
		local parts = { format("cpu=%-4d\t", cpu.cpu) }
		for _, k in ipairs(order) do
			if cpu[k] then parts[#parts + 1] = format("%s=%d ", rename[k] or k, cpu[k]) end
		end
		local extra = {}
		for k in pairs(cpu) do
			if not known[k] and type(cpu[k]) == "number" then extra[#extra + 1] = k end
		end
		table.sort(extra)
		for _, k in ipairs(extra) do parts[#parts + 1] = format("%s=%d ", k, cpu[k]) end
		emit(concat(parts))
	end
	flush_out()
	return 0
end

-- ---------------------------------------------------------------------
-- The expectation table.

-- fn(x) -> the CLI's line for expectation x.  -o timestamp: an event's
-- time of receipt (x:format), for a dump the time of printing (as the CLI).
local function xprinter(c)
	local o = c.output
	if o.xml then
		local opts = o.timestamp and "xml,timestamp" or "xml"
		return function(x) return x:format(opts) end
	elseif o.timestamp then
		return function(x)
			if x.time then return x:format("timestamp") end
			local sec, usec = now()
			return format("[%-8d.%-6d]\t", sec, usec) .. tostring(x)
		end
	end
	return tostring
end

-- The tuple of -G/-D expect (the expected flow) and the spec of -I expect.
local function xtuple(c)
	local o, pr = c.orig, c.proto
	local t = { family = c.family or c.fixed_family, proto = pr.num, src = o.src, dst = o.dst }
	if PORT_PROTOS[pr.num] or pr.name == "gre" then t.sport, t.dport = o.sport, o.dport end
	return t
end

local function xspec(c)
	local s, x, m, p = xtuple(c), c.exptuple or {}, c.mask or {}, c.expect_ports or {}
	s.tuple_src, s.tuple_dst, s.mask_src, s.mask_dst = x.src, x.dst, m.src, m.dst
	if s.sport then
		s.tuple_sport, s.tuple_dport, s.mask_sport, s.mask_dport = p["8"], p["9"], p["5"], p["6"]
	end
	s.timeout = c.timeout
	return s
end

local function cmd_exp_list(h, c)
	local fam = c.family or c.fixed_family
	local line, xml = xprinter(c), c.output.xml and XML.expect
	local n = 0
	each(h, nil, { table = "expect" }, "exp_list", function(x)
		if x.family == fam then
			if n == 0 and xml then emit(xml.head) end
			n = n + 1
			emit(line(x))
		end
	end)
	if n > 0 and xml then emit(xml.foot) end
	flush_out()
	summary(c, n)
	return 0
end

local function cmd_exp_get(h, c)
	emit(tostring(call("exp_get", h.expect_get, h, xtuple(c))))
	flush_out()
	return 0
end

-- conntrack 1.4.7 says "0 expectations have been shown." and exits 1 when
-- it deleted one; here the summary says what was done, and the exit is 0.
local function cmd_exp_delete(h, c)
	call("exp_delete", h.expect_delete, h, xtuple(c))
	io.stderr:write(PREFIX, ": 1 expectations have been deleted.\n")
	return 0
end

local function cmd_exp_create(h, c)
	call("exp_create", h.expect_create, h, xspec(c))
	return 0
end

-- The CLI counts the expectations of its default family (IPv4) in a dump.
local function cmd_exp_count(h, c)
	local fam, n = c.family or c.fixed_family, 0
	each(h, nil, { table = "expect" }, "exp_count", function(x)
		if x.family == fam then n = n + 1 end
	end)
	io.stdout:write(format("%d\n", n))
	return 0
end

-- ---------------------------------------------------------------------
-- -E

-- The program behind a netlink port id, as the CLI finds it: the socket's
-- inode in /proc/net/netlink, then the process holding it (first the one
-- whose pid is the port id).  Looked up once per port id and socket.
local function read_all(path)
	local f = io.open(path)
	if not f then return nil end
	local s = f:read("*a")
	f:close()
	return s
end
local lfs_ok, lfs = pcall(require, "lfs")
-- The sockets a process holds, by inode.
local function holds(pid, inode)
	local want = "socket:[" .. inode .. "]"
	if lfs_ok then
		local ok, iter, dir = pcall(lfs.dir, "/proc/" .. pid .. "/fd")
		if not ok then return false end
		for fd in iter, dir do
			if lfs.symlinkattributes("/proc/" .. pid .. "/fd/" .. fd, "target") == want then
				return true
			end
		end
		return false
	end
	local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
	local s = p and p:read("*a") or ""
	if p then p:close() end
	return s:find(want, 1, true) ~= nil
end
local function comm(pid)
	local s = read_all("/proc/" .. pid .. "/stat")
	return s and s:match("^%d+ %((.*)%) ")
end
local function pids()
	local list = {}
	if lfs_ok then
		for name in lfs.dir("/proc") do
			if name:match("^%d+$") and tonumber(name) > 1 then list[#list + 1] = name end
		end
	else
		local p = io.popen("ls /proc 2>/dev/null")
		for name in p:lines() do
			if name:match("^%d+$") and tonumber(name) > 1 then list[#list + 1] = name end
		end
		p:close()
	end
	return list
end
local names = {}
local function progname(portid)
	local tab = read_all("/proc/net/netlink") or ""
	local inode
	for line in tab:gmatch("[^\n]+") do
		local prot, pid, ino = line:match("^%x+%s+(%d+)%s+(%d+)%s+%x+%s+%d+%s+%d+%s+%x+%s+%d+%s+%d+%s+(%d+)")
		if prot == "12" and tonumber(pid) == portid then inode = ino break end
	end
	if not inode then return nil end
	local k = portid .. ":" .. inode
	if names[k] ~= nil then return names[k] or nil end
	local found
	if holds(portid, inode) then
		found = comm(portid)
	else
		for _, pid in ipairs(pids()) do
			if tonumber(pid) ~= portid and holds(pid, inode) then
				found = comm(pid)
				break
			end
		end
	end
	names[k] = found or false
	return found
end
-- The names found, per port id: a port id seen again is looked up again
-- only when its socket changed (the kernel reuses port ids).
local by_port = {}
local function userspace(portid)
	local known = by_port[portid]
	if known == nil then
		known = progname(portid) or false
		by_port[portid] = known
	end
	return known or nil
end

-- The port id of the process that caused an event (0: the kernel): the
-- netlink header's nlmsg_pid.
local byte = string.byte
local function portid_of(ev)
	local a, b, c, d = byte(ev:raw(), 13, 16)
	if not d then return 0 end
	return a + b * 256 + c * 65536 + d * 16777216
end

-- SIGTERM ends -E as SIGINT does, where luaposix can catch it.
local function catch_term()
	local ok, psig = pcall(require, "posix.signal")
	if ok and type(psig) == "table" and psig.signal then
		psig.signal(psig.SIGTERM, function() error("terminated", 0) end)
	end
end

local function event_types(c)
	local types, mask = {}, c.event_mask or 7
	if band(mask, 1) ~= 0 then types[#types + 1] = "new" end
	if band(mask, 2) ~= 0 then types[#types + 1] = "update" end
	if band(mask, 4) ~= 0 then types[#types + 1] = "destroy" end
	return types
end

-- Reads the subscription until a signal: show(ev) for each event.
-- Returns false when the loop ended by a signal (the normal end).
local function listen(sub, show)
	catch_term()
	local wait, read = sub.wait, sub.read
	local ok, err = pcall(function()
		while true do
			wait(sub)
			local evs = read(sub)
			for i = 1, #evs do show(evs[i]) end
			flush_out()
		end
	end)
	if not ok and not tostring(err):find("interrupted", 1, true) and not tostring(err):find("terminated", 1, true) then
		error(err, 0)
	end
end

local function cmd_event(_, c)
	local sub, msg, errno = ct.subscribe{ types = event_types(c), rcvbuf = c.bufsize,
		filter = build_filter(c, "full") }
	if not sub then
		warn("mnl_socket_bind: " .. err2str(errno, "event", msg))
		fail(OTHER, "Can't open netlink socket")
	end
	if c.bufsize then
		warn(format("NOTICE: Netlink socket buffer size has been set to %d bytes.", sub.rcvbuf))
	end
	local line = printer(c, "list")
	local xml, head = c.output.xml and XML.conntrack, false
	local n = 0
	listen(sub, function(ev)
		if ev.type == "overflow" then
			flush_out()
			warn("WARNING: We have hit ENOBUFS! We are losing events.\n" ..
				"This message means that the current netlink socket buffer size is too small.\n" ..
				"Please, check --buffer-size in conntrack(8) manpage.")
			return
		end
		local s = line(ev)
		if xml and not head then
			head = true
			emit(xml.head)
		end
		local pid = portid_of(ev)
		if pid ~= 0 then
			local name = userspace(pid)
			s = s .. " [USERSPACE] portid=" .. pid .. (name and (" progname=" .. name) or "")
		end
		n = n + 1
		emit(s)
	end)
	if head then emit(xml.foot) end
	flush_out()
	sub:close()
	io.stderr:write(PREFIX, ": ", format(SUMMARY.event, n), "\n")
	return 0
end

local function cmd_exp_event(_, c)
	local sub, msg, errno = ct.subscribe{ table = "expect", types = event_types(c) }
	if not sub then
		warn(err2str(errno, "exp_event", msg))
		fail(OTHER, "Can't open handler")
	end
	local line = xprinter(c)
	local xml, head = c.output.xml and XML.expect, false
	local n = 0
	listen(sub, function(x)
		if x.type == "overflow" then return end
		if xml and not head then
			head = true
			emit(xml.head)
		end
		n = n + 1
		emit(line(x))
	end)
	if head then emit(xml.foot) end
	flush_out()
	sub:close()
	io.stderr:write(PREFIX, ": ", n, " expectation events have been shown.\n")
	return 0
end

-- ---------------------------------------------------------------------
-- -h, -V

local function usage()
	io.stdout:write(([==[
%s: the conntrack command (conntrack-tools 1.4.7) on lua-conntrack %s
Usage: %s COMMAND [TABLE] [OPTIONS]

Commands (TABLE: conntrack (default), expect, dying, unconfirmed):
  -L, --dump [TABLE]        list the entries (that match the filter options)
  -G, --get [TABLE]         show one entry, named by its tuple
  -D, --delete [TABLE]      delete every entry that matches
  -I, --create [TABLE]      create an entry (fails when it exists)
  -A, --add                 create an entry unless it exists
  -U, --update              change every entry that matches (-m, -t, -u,
                            --state, labels)
  -E, --event [TABLE]       print events as they happen, until interrupted
  -F, --flush [TABLE]       empty the table
  -C, --counter [TABLE]     print the number of entries
  -S, --stats [TABLE]       per-CPU statistics
  -R, --load-file FILE      run the -I/-A/-U/-D/-F lines of FILE ("-": stdin);
                            must come first
  -h, --help                this text (with -p PROTO: that protocol's options)
  -V, --version             the version

Tuples and filters:
  -s, --src, --orig-src ADDR[/LEN]   -d, --dst, --orig-dst ADDR[/LEN]
  -r, --reply-src ADDR               -q, --reply-dst ADDR
  -p, --protonum PROTO (name or number; then its options, see -h -p PROTO)
  -f, --family ipv4|ipv6             -w, --zone N
  --orig-zone N, --reply-zone N      -u, --status LIST (ASSURED, SEEN_REPLY,
  -m, --mark N[/MASK]                  FIXED_TIMEOUT, EXPECTED, OFFLOAD, UNSET;
  -c, --secmark N                      !NAME: clear; UNREPLIED)
  -l, --label NAME[,NAME]            -i, --id N
  -n, --src-nat [ADDR[:PORT]]        -g, --dst-nat [ADDR[:PORT]]
  -j, --any-nat [ADDR[:PORT]]        (IPv6 with a port: [ADDR]:PORT)
Expectations (-I expect): the master flow as above, and
  --tuple-src ADDR, --tuple-dst ADDR --mask-src ADDR, --mask-dst ADDR
  (ports: --tuple-port-src, --tuple-port-dst, --mask-port-src, --mask-port-dst)
Values and output:
  -t, --timeout SECONDS              --label-add NAME, --label-del [NAME]
  -o, --output LIST: extended, save, id, timestamp, ktimestamp, labels, xml, userspace
  -e, --event-mask LIST: ALL, NEW, UPDATES, DESTROY
  -b, --buffer-size BYTES            -z, --zero
]==]):format(NAME, tostring(ct.version), NAME))
end

local PORT_HELP = "--sport, --orig-port-src PORT  --dport, --orig-port-dst PORT\n" ..
	"  --reply-port-src PORT  --reply-port-dst PORT"
local EXP_PORT_HELP = "\n  --mask-port-src PORT  --mask-port-dst PORT  --tuple-port-src PORT  --tuple-port-dst PORT"
local PROTO_HELP = {
	tcp = PORT_HELP .. "  --state STATE" .. EXP_PORT_HELP,
	udp = PORT_HELP .. EXP_PORT_HELP,
	sctp = PORT_HELP .. "  --state STATE\n  --orig-vtag N  --reply-vtag N" .. EXP_PORT_HELP,
	dccp = PORT_HELP .. "  --state STATE\n  --role client|server" .. EXP_PORT_HELP,
	icmp = "--icmp-type N  --icmp-code N  --icmp-id N",
	icmpv6 = "--icmpv6-type N  --icmpv6-code N  --icmpv6-id N",
	gre = "--srckey, --orig-key-src KEY  --dstkey, --orig-key-dst KEY\n" ..
		"  --reply-key-src KEY  --reply-key-dst KEY\n" ..
		"  --mask-key-src KEY  --mask-key-dst KEY  --tuple-key-src KEY  --tuple-key-dst KEY",
}
PROTO_HELP.udplite = PROTO_HELP.udp

local function cmd_help(_, c)
	usage()
	if c.proto then
		io.stdout:write(format("Protocol `%s' options:\n  %s\n", c.proto.name,
			PROTO_HELP[c.proto.name] or "(none)"))
	end
	return 0
end

local function cmd_version()
	io.stdout:write(PREFIX, "\n")
	return 0
end

-- ---------------------------------------------------------------------
-- -R FILE: the lines of a file, each a command line.

-- A line -> words, with the CLI's quoting ("a b" is one word, \" inside).
local function split_line(line)
	local list, cur, quoted, esc, any = {}, {}, false, false, false
	for ch in line:gmatch(".") do
		if quoted then
			if esc then
				cur[#cur + 1] = ch
				esc = false
			elseif ch == "\\" then
				esc = true
			elseif ch == '"' then
				quoted = false
			else
				cur[#cur + 1] = ch
			end
		elseif ch == '"' then
			quoted, any = true, true
		elseif ch == " " or ch == "\t" or ch == "\n" then
			if #cur > 0 or any then
				list[#list + 1] = concat(cur)
				cur, any = {}, false
			end
		else
			cur[#cur + 1] = ch
		end
	end
	if #cur > 0 then list[#list + 1] = concat(cur) end
	return list
end

local LOAD_REFUSED = { list = "-L", get = "-G", event = "-E", version = "-V", help = "-h",
	exp_list = "-L expect", exp_create = "-C expect", exp_delete = "-D expect", exp_get = "-G expect",
	exp_flush = "-F expect", exp_event = "-E expect", count = "-C", exp_count = "-C expect",
	stats = "-S", exp_stats = "-S expect" }

-- Files of -A and -I lines (as -o save writes them) go to the module's
-- save-text reader as they stand, when each line means the same to it and
-- to conntrack (ct.format.save_plain says, in one pass in C): no option
-- conntrack refuses on a create that the reader would take (the reader
-- refuses the others, and every bad value: such a line then goes to the
-- command-line parser, which says what conntrack says, or reads it as
-- conntrack does), each protocol's required options present, no quoting.
-- pieces: an array of pieces of text (or one text); true and each piece's
-- number of lines, or false.
local function plain_save(pieces)
	if type(pieces) == "string" then pieces = { pieces } end
	local counts = {}
	for i, piece in ipairs(pieces) do
		local ok, n = ct.format.save_plain(piece)
		if not ok then return false end
		counts[i] = n
	end
	return true, counts
end

-- The pieces of a file, 1 MiB and the rest of a line each, each ending with
-- a newline (one added at the end when the file has none): a large file is
-- never copied whole into one string (a page fault every 4 KB, twice
-- over), pieces reuse the memory of those collected, and each holds enough
-- batches for the module to send one while it reads the next.
local PIECE = 1048576
local function pieces_of(f)
	return function()
		local piece = f:read(PIECE)
		if piece and piece:byte(-1) ~= 10 then
			piece = piece .. (f:read("*l") or "") .. "\n"
		end
		return piece
	end
end

-- The file's pieces for plain_save and then the load: a file is read
-- twice (its memory used again); what cannot seek (a pipe) is kept.
-- read() -> an iterator over its pieces, again at each call.
local function reread(f)
	if f:seek("cur") then
		return function()
			f:seek("set")
			return pieces_of(f)
		end
	end
	local kept = {}
	for piece in pieces_of(f) do kept[#kept + 1] = piece end
	return function()
		local i = 0
		return function()
			i = i + 1
			return kept[i]
		end
	end
end

-- The lines of text whose numbers are keys of want, by number.
local function lines_of(text, want)
	local found, i = {}, 0
	for line in text:gmatch("([^\n]*)\n") do
		i = i + 1
		if want[i] then found[i] = line end
	end
	return found
end

local run_command

-- The CLI's lines, each parsed as a command line before any runs.
local function parse_lines(text)
	local cmds = {}
	for line in text:gmatch("([^\n]*)\n") do
		line = line:gsub("^[ \t]+", "")
		if line ~= "" and line:sub(1, 1) ~= "#" then
			local argv = split_line(line)
			argv[0] = NAME
			local c = parse(argv)
			local kind = c.command
			if LOAD_REFUSED[kind] or kind == "none" then
				fail(PARAM, "Cannot use command `%s' with --load-file", LOAD_REFUSED[kind] or "unknown")
			end
			c.line = line
			cmds[#cmds + 1] = c
		end
	end
	return cmds
end

-- The run of creations with the same command from cmds[i] on, in one
-- batch: the index after it, and its first failure {command =, line =,
-- message =, errno =} or nil.
local function create_run(h, cmds, i)
	local specs, kind, from = {}, cmds[i].command, i
	while cmds[i] and cmds[i].command == kind do
		specs[#specs + 1] = create_spec(cmds[i])
		i = i + 1
	end
	local ok, done, miss, fails = pcall(h.batch, h, kind, specs)
	if not ok then raised(kind, done) end
	if not done then kernel_fail(kind, miss, fails) end
	local f = fails[1]
	if f then
		return i, { command = kind, line = cmds[from + f.index - 1].lineno or 0, message = f.message,
			errno = f.errno }
	end
	return i
end

local function line_command(line)
	local argv = split_line(line)
	argv[0] = NAME
	return parse(argv)
end

-- After h:load(text) of lines -o save writes: a line the module's reader
-- refused goes to the command-line parser, which gives conntrack's message
-- (exit 2; the other lines are loaded) or reads it as conntrack does, and
-- it is created from that; then the first refusal of the kernel, in file
-- order, in conntrack's words (exit 1).  lines: the failures' lines by number.
local function load_failures(h, lines, failures)
	local want = {}
	for _, f in ipairs(failures) do want[f.line or 0] = f end
	local retry, first = {}, nil
	for n, f in pairs(want) do
		local line = lines[n] or ""
		if f.message:find("^load: line %d+: ") then
			local c = line_command(line)
			c.lineno = n
			retry[#retry + 1] = c
		elseif not first or n < first.line then
			first = f
			f.command = line:match("^%s*%-I") and "create" or "add"
		end
	end
	table.sort(retry, function(x, y) return x.lineno < y.lineno end)
	local i = 1
	while i <= #retry do
		local f
		i, f = create_run(h, retry, i)
		if f and (not first or f.line < first.line) then first = f end
	end
	if first then kernel_fail(first.command, first.message, first.errno) end
end

-- Creations: runs of -I/-A lines in batches; the others one by one, in
-- file order, each as its command does.
local function load_file(name, h)
	local f
	if name == "-" then
		f = io.stdin
	else
		f = io.open(name)
		if not f then fail(PARAM, "Failed to open file %s for reading", name) end
	end
	local read = reread(f)
	state.loading = true
	-- The lines -o save writes go to the module's reader as they are, a
	-- piece at a time; the failures' line numbers made the file's.
	local plain, counts = true, {}
	for piece in read() do
		local ok, n = ct.format.save_plain(piece)
		if not ok then
			plain = false
			break
		end
		counts[#counts + 1] = n
	end
	if plain then
		local failures, lines, base, i = {}, {}, 0, 0
		for piece in read() do
			i = i + 1
			local ok, done, existing, fails = pcall(h.load, h, piece)
			if not ok then raised("create", done) end
			if not done then kernel_fail("create", existing, fails) end
			if fails[1] then
				local want = {}
				for _, fl in ipairs(fails) do want[fl.line or 0] = true end
				for n, line in pairs(lines_of(piece, want)) do lines[base + n] = line end
				for _, fl in ipairs(fails) do
					if fl.line then
						fl.line = base + fl.line
						fl.message = fl.message:gsub("^load: line %d+", "load: line " .. fl.line, 1)
					end
					failures[#failures + 1] = fl
				end
			end
			base = base + counts[i]
		end
		if f ~= io.stdin then f:close() end
		if failures[1] then load_failures(h, lines, failures) end
		return 0
	end
	local all = {}
	for piece in read() do all[#all + 1] = piece end
	if f ~= io.stdin then f:close() end
	local text = concat(all)
	local cmds = parse_lines(text)
	local i = 1
	while i <= #cmds do
		local c = cmds[i]
		if (c.command == "create" or c.command == "add") and c.table == "conntrack" then
			local failed
			i, failed = create_run(h, cmds, i)
			if failed then kernel_fail(failed.command, failed.message, failed.errno) end
		else
			run_command(h, c)
			i = i + 1
		end
	end
	flush_out()
	return 0
end

-- ---------------------------------------------------------------------
-- main

local RUN = {
	list = cmd_list, get = cmd_get, create = cmd_create, add = cmd_create, delete = cmd_delete,
	update = cmd_update, flush = cmd_flush, count = cmd_count, stats = cmd_stats,
	event = cmd_event, help = cmd_help, version = cmd_version,
	exp_list = cmd_exp_list, exp_create = cmd_exp_create, exp_delete = cmd_exp_delete,
	exp_get = cmd_exp_get, exp_flush = cmd_flush, exp_event = cmd_exp_event,
	exp_count = cmd_exp_count, exp_stats = cmd_stats,
}

local function open()
	local h = ct.open()
	if not h then fail(OTHER, "Can't open handler") end
	return h
end

run_command = function(h, c)
	if c.command == "none" then
		usage()
		return 0
	end
	return RUN[c.command](h, c)
end

local function run(argv)
	if #argv >= 2 and (argv[1] == "-R" or argv[1] == "--load-file") then
		return load_file(argv[2], open())
	end
	local c = parse(argv)
	if c.command == "none" or c.command == "help" or c.command == "version" then
		return run_command(nil, c)
	end
	return run_command(open(), c)
end

local function main(argv)
	io.stdout:setvbuf("full")
	local ok, res = pcall(run, argv)
	flush_out()
	if ok then return res end
	if type(res) == "table" and res.code then
		io.stderr:write(PREFIX, ": ", res.msg, "\n")
		if res.code == PARAM then
			io.stderr:write("Try `", NAME, " -h' or '", NAME, " --help' for more information.\n")
		end
		return res.code
	end
	io.stderr:write(PREFIX, ": ", tostring(res), "\n")
	return OTHER
end

if type(LIB) == "table" and LIB.library then
	return { parse = parse, getopt = getopt_new, split_line = split_line, plain_save = plain_save,
		build_filter = build_filter, parse_addr = parse_addr, posix = posix_getopt ~= nil, main = main }
end
local argv = { [0] = NAME }
for i = 1, select("#", ...) do argv[i] = select(i, ...) end
os.exit(main(argv))
