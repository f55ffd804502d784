/*
 * The vocabulary: names of protocols, states, status bits, families, event
 * types, statistics and labels, and the readers of arguments written in
 * it.  The Lua layer gets the same tables (module.names) and the address
 * functions, so that every name and every address is read one way.
 */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "lct.h"

static const struct {
	const char *name;
	uint8_t num;
} lct_protos[] = {
	{"tcp", IPPROTO_TCP}, {"udp", IPPROTO_UDP}, {"udplite", IPPROTO_UDPLITE},
	{"icmp", IPPROTO_ICMP}, {"icmpv6", IPPROTO_ICMPV6}, {"sctp", IPPROTO_SCTP},
	{"dccp", IPPROTO_DCCP}, {"gre", IPPROTO_GRE},
};
#define LCT_NPROTOS	(sizeof(lct_protos) / sizeof(lct_protos[0]))

const char *lct_proto_name(unsigned int num)
{
	size_t i;

	for (i = 0; i < LCT_NPROTOS; i++)
		if (lct_protos[i].num == num)
			return lct_protos[i].name;
	return NULL;
}

/* Built-in names first, then the system's protocol database (-p igmp). */
int lct_proto_lookup(const char *name)
{
	struct protoent pe, *res = NULL;
	char buf[1024];
	size_t i;

	for (i = 0; i < LCT_NPROTOS; i++)
		if (lct_protos[i].name[0] == name[0] && strcmp(lct_protos[i].name, name) == 0)
			return lct_protos[i].num;
	if (*name == '\0')
		return -1;
	if (getprotobyname_r(name, &pe, buf, sizeof(buf), &res) == 0 && res != NULL &&
	    res->p_proto >= 0 && res->p_proto <= 255)
		return res->p_proto;
	return -1;
}

int lct_proto_ports(unsigned int num)
{
	return num == IPPROTO_TCP || num == IPPROTO_UDP || num == IPPROTO_UDPLITE ||
	       num == IPPROTO_SCTP || num == IPPROTO_DCCP;
}

static const char *const lct_tcp_states[] = {
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2", NULL
};
static const char *const lct_sctp_states[] = {
	"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
	"SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT",
	"HEARTBEAT_SENT", "HEARTBEAT_ACKED", NULL
};
static const char *const lct_dccp_states[] = {
	"NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ",
	"CLOSING", "TIMEWAIT", "IGNORE", "INVALID", NULL
};

static const char *const *lct_states_of(unsigned int proto)
{
	switch (proto) {
	case IPPROTO_TCP: return lct_tcp_states;
	case IPPROTO_SCTP: return lct_sctp_states;
	case IPPROTO_DCCP: return lct_dccp_states;
	}
	return NULL;
}

int lct_proto_states(unsigned int proto)
{
	return lct_states_of(proto) != NULL;
}

const char *lct_state_name(unsigned int proto, unsigned int state)
{
	const char *const *s = lct_states_of(proto);
	unsigned int i;

	for (i = 0; s != NULL && s[i] != NULL; i++)
		if (i == state)
			return s[i];
	return NULL;
}

int lct_state_lookup(unsigned int proto, const char *name)
{
	const char *const *s = lct_states_of(proto);
	int i;

	for (i = 0; s != NULL && s[i] != NULL; i++)
		if (s[i][0] == name[0] && strcmp(s[i], name) == 0)
			return i;
	/* The CLI's name for state 9 from before Linux 2.6.31. */
	if (proto == IPPROTO_TCP && strcmp(name, "LISTEN") == 0)
		return 9;
	return -1;
}

/* Status bits as the kernel numbers them (IPS_*_BIT). */
const char *const lct_status_names[32] = {
	"EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT",
	"DST_NAT", "SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING",
	"FIXED_TIMEOUT", "TEMPLATE", "UNTRACKED", "HELPER", "OFFLOAD",
	"HW_OFFLOAD",
};

int lct_status_lookup(const char *name)
{
	int i;

	/* The first letter before strcmp: a lookup per name of every request. */
	for (i = 0; i < 32 && lct_status_names[i] != NULL; i++)
		if (lct_status_names[i][0] == name[0] && strcmp(lct_status_names[i], name) == 0)
			return i;
	if (strcmp(name, "NAT_CLASH") == 0)
		return 12;	/* the kernel's other name for bit 12 */
	return -1;
}

int lct_family_lookup(const char *name)
{
	if (strcmp(name, "ipv4") == 0)
		return AF_INET;
	if (strcmp(name, "ipv6") == 0)
		return AF_INET6;
	return -1;
}

const char *lct_family_name(int family)
{
	return family == AF_INET ? "ipv4" : family == AF_INET6 ? "ipv6" : NULL;
}

const char *lct_event_name(int evtype)
{
	static const char *const names[] = { NULL, "new", "update", "destroy" };

	return evtype > 0 && evtype < 4 ? names[evtype] : NULL;
}

/* Per-CPU counters, in the kernel's attribute order. */
static const char *const lct_stat_names[] = {
	[CTA_STATS_SEARCHED] = "searched",
	[CTA_STATS_FOUND] = "found",
	[CTA_STATS_NEW] = "new",
	[CTA_STATS_INVALID] = "invalid",
	[CTA_STATS_IGNORE] = "ignore",
	[CTA_STATS_DELETE] = "delete",
	[CTA_STATS_DELETE_LIST] = "delete_list",
	[CTA_STATS_INSERT] = "insert",
	[CTA_STATS_INSERT_FAILED] = "insert_failed",
	[CTA_STATS_DROP] = "drop",
	[CTA_STATS_EARLY_DROP] = "early_drop",
	[CTA_STATS_ERROR] = "error",
	[CTA_STATS_SEARCH_RESTART] = "search_restart",
	[CTA_STATS_CLASH_RESOLVE] = "clash_resolve",
	[CTA_STATS_CHAIN_TOOLONG] = "chaintoolong",
};

const char *lct_stat_name(unsigned int type)
{
	if (type < sizeof(lct_stat_names) / sizeof(lct_stat_names[0]))
		return lct_stat_names[type];
	return NULL;
}

static const char *const lct_exp_stat_names[] = {
	[CTA_STATS_EXP_NEW] = "new",
	[CTA_STATS_EXP_CREATE] = "create",
	[CTA_STATS_EXP_DELETE] = "delete",
};

const char *lct_exp_stat_name(unsigned int type)
{
	if (type < sizeof(lct_exp_stat_names) / sizeof(lct_exp_stat_names[0]))
		return lct_exp_stat_names[type];
	return NULL;
}

/* Per-Lua-state label map, loaded once from the default file (or absent). */
static const char lct_labelmap_key = 'l';

static int lct_labelmap_gc(lua_State *L)
{
	struct nfct_labelmap **m = lua_touserdata(L, 1);

	if (*m != NULL) {
		nfct_labelmap_destroy(*m);
		*m = NULL;
	}
	return 0;
}

struct nfct_labelmap *lct_labelmap(lua_State *L)
{
	struct nfct_labelmap **m;

	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_labelmap_key);
	if (lua_isuserdata(L, -1)) {
		m = lua_touserdata(L, -1);
		lua_pop(L, 1);
		return *m;
	}
	lua_pop(L, 1);
	m = lct_newuserdata(L, sizeof(*m));
	*m = NULL;
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, lct_labelmap_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	*m = nfct_labelmap_new(NULL);
	lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_labelmap_key);
	return *m;
}

/* ---- arguments written in the vocabulary ----------------------------- */

int lct_proto_arg(lua_State *L, int idx, const char *fname, const char *arg)
{
	int proto;

	if (lua_type(L, idx) == LUA_TSTRING) {
		proto = lct_proto_lookup(lua_tostring(L, idx));
		if (proto < 0)
			lct_argerror(L, fname, arg, "unknown protocol %s", lct_shortval(L, idx));
		return proto;
	}
	if (lua_type(L, idx) == LUA_TNUMBER)
		return (int)lct_int_arg(L, idx, fname, arg, 0, 255);
	return lct_argerror(L, fname, arg, "protocol name or number expected, got %s",
			    luaL_typename(L, idx));
}

int lct_family_arg(lua_State *L, int idx, const char *fname, const char *arg)
{
	int f = -1;

	if (lua_type(L, idx) == LUA_TSTRING)
		f = lct_family_lookup(lua_tostring(L, idx));
	if (f < 0)
		lct_argerror(L, fname, arg, "\"ipv4\" or \"ipv6\" expected, got %s",
			     lct_shortval(L, idx));
	return f;
}

static int lct_status_name_arg(lua_State *L, int idx, const char *fname,
			       const char *arg)
{
	int bit = lct_status_lookup(lua_tostring(L, idx));

	if (bit < 0)
		lct_argerror(L, fname, arg, "unknown status flag %s", lct_shortval(L, idx));
	return bit;
}

/* An integer, a name, an array of names or a set {NAME = true}. */
uint32_t lct_status_arg(lua_State *L, int idx, const char *fname, const char *arg)
{
	uint32_t v = 0;

	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		idx = lua_gettop(L) + idx + 1;
	if (lua_type(L, idx) == LUA_TNUMBER)
		return (uint32_t)lct_int_arg(L, idx, fname, arg, 0, 0xffffffffLL);
	if (lua_type(L, idx) == LUA_TSTRING)
		return 1u << lct_status_name_arg(L, idx, fname, arg);
	if (!lua_istable(L, idx))
		lct_argerror(L, fname, arg, "flag names expected, got %s", luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		int kt = lua_type(L, -2), vt = lua_type(L, -1);

		if (kt == LUA_TNUMBER && vt == LUA_TSTRING) {
			v |= 1u << lct_status_name_arg(L, -1, fname, arg);
		} else if (kt == LUA_TSTRING && vt == LUA_TBOOLEAN) {
			if (lua_toboolean(L, -1))
				v |= 1u << lct_status_name_arg(L, -2, fname, arg);
		} else {
			lct_argerror(L, fname, arg,
				     "flag names expected ({\"ASSURED\"} or {ASSURED = true})");
		}
		lua_pop(L, 1);
	}
	return v;
}

void lct_labels_arg(lua_State *L, int idx, const char *fname, const char *arg,
		    uint8_t out[16])
{
	memset(out, 0, 16);
	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		idx = lua_gettop(L) + idx + 1;
	if (!lua_istable(L, idx))
		lct_argerror(L, fname, arg, "table of label names or bits expected, got %s",
			     luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		/* {"name", 3} or {name = true, [3] = true} */
		int list = lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) != LUA_TBOOLEAN;
		int vi = list ? -1 : -2, bit = -1;
		uint32_t w;

		if (!list && !lua_toboolean(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		if (lua_type(L, vi) == LUA_TNUMBER) {
			bit = (int)lct_int_arg(L, vi, fname, arg, 0, 127);
		} else if (lua_type(L, vi) == LUA_TSTRING) {
			struct nfct_labelmap *map = lct_labelmap(L);

			bit = map ? nfct_labelmap_get_bit(map, lua_tostring(L, vi)) : -1;
			if (bit < 0 || bit > 127)
				lct_argerror(L, fname, arg, "unknown label %s", lct_shortval(L, vi));
		} else {
			lct_argerror(L, fname, arg, "label names or bit numbers expected");
		}
		/* The kernel keeps labels as host-order 32-bit words. */
		memcpy(&w, out + (bit / 32) * 4, 4);
		w |= 1u << (bit % 32);
		memcpy(out + (bit / 32) * 4, &w, 4);
		lua_pop(L, 1);
	}
}

int lct_addr_arg(lua_State *L, int idx, const char *fname, const char *arg, void *out)
{
	const char *s;
	size_t n;
	int f;

	if (lua_type(L, idx) != LUA_TSTRING)
		return lct_argerror(L, fname, arg, "address string expected, got %s",
				    luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &n);
	f = lct_pton(s, n, out);
	if (f == 0)
		lct_argerror(L, fname, arg, "malformed address %s", lct_shortval(L, idx));
	return f;
}

/* ---- the vocabulary for the Lua layer --------------------------------- */

/* core.pton(text) -> "ipv4"|"ipv6", bytes | nil, why */
static int lct_f_pton(lua_State *L)
{
	unsigned char a[16];
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	int f = lct_pton(s, n, a);

	if (f == 0) {
		lua_pushfstring(L, "malformed address %s", lct_shortval(L, 1));
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	lua_pushstring(L, lct_family_name(f));
	lua_pushlstring(L, (const char *)a, f == AF_INET ? 4 : 16);
	return 2;
}

/* core.ntop(bytes) -> text (4 or 16 bytes) */
static int lct_f_ntop(lua_State *L)
{
	char buf[INET6_ADDRSTRLEN];
	size_t n;
	const char *a = luaL_checklstring(L, 1, &n);

	if (n != 4 && n != 16)
		return luaL_argerror(L, 1, "4 or 16 bytes expected");
	lua_pushlstring(L, buf, lct_ntop(n == 4 ? AF_INET : AF_INET6, a, buf));
	return 1;
}

/* core.cidr(text) -> family, canonical text, prefix length | nil, why */
static int lct_f_cidr(lua_State *L)
{
	char buf[INET6_ADDRSTRLEN];
	struct lct_cidr c;
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);

	if (lct_cidr_parse(s, n, &c) < 0) {
		lua_pushfstring(L, "malformed address or prefix %s", lct_shortval(L, 1));
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	lua_pushstring(L, lct_family_name(c.family));
	lct_ntop(c.family, c.addr, buf);
	if (c.plen != (c.family == AF_INET ? 32 : 128))
		lua_pushfstring(L, "%s/%d", buf, (int)c.plen);
	else
		lua_pushstring(L, buf);
	lua_pushinteger(L, c.plen);
	return 3;
}

/* core.proto(name or number) -> number, name | nil */
static int lct_f_proto(lua_State *L)
{
	int p = -1;

	if (lua_type(L, 1) == LUA_TNUMBER) {
		lua_Number v = lua_tonumber(L, 1);

		if (v >= 0 && v <= 255 && v == (lua_Number)(int)v)
			p = (int)v;
	} else if (lua_type(L, 1) == LUA_TSTRING) {
		p = lct_proto_lookup(lua_tostring(L, 1));
	}
	if (p < 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushinteger(L, p);
	if (lct_proto_name((unsigned int)p) != NULL)
		lua_pushstring(L, lct_proto_name((unsigned int)p));
	else
		lua_pushfstring(L, "%d", p);
	return 2;
}

static void lct_push_states(lua_State *L, unsigned int proto)
{
	const char *const *s = lct_states_of(proto);
	int i;

	lua_newtable(L);
	for (i = 0; s[i] != NULL; i++) {
		lua_pushstring(L, s[i]);
		lua_rawseti(L, -2, i);
		lua_pushinteger(L, i);
		lua_setfield(L, -2, s[i]);
	}
	if (proto == IPPROTO_TCP) {
		lua_pushinteger(L, 9);
		lua_setfield(L, -2, "LISTEN");
	}
}

static const luaL_Reg lct_names_funcs[] = {
	{"pton", lct_f_pton},
	{"ntop", lct_f_ntop},
	{"cidr", lct_f_cidr},
	{"proto", lct_f_proto},
	{NULL, NULL}
};

/*
 * module.names = {protocols = {tcp = 6, [6] = "tcp", ...}, ports = {[6] =
 * true, ...}, states = {tcp = {ESTABLISHED = 3, [3] = "ESTABLISHED"}, ...},
 * status = {[0] = "EXPECTED", ..., EXPECTED = 0, ...} (bit numbers)}, and
 * module.status_bits = {ASSURED = 4, ...}: masks, the one meaning of that name.
 */
void lct_names_open(lua_State *L)
{
	size_t i;
	int b;

	lct_setfuncs(L, lct_names_funcs, 0);
	lua_newtable(L);

	lua_newtable(L);
	for (i = 0; i < LCT_NPROTOS; i++) {
		lua_pushinteger(L, lct_protos[i].num);
		lua_setfield(L, -2, lct_protos[i].name);
		lua_pushstring(L, lct_protos[i].name);
		lua_rawseti(L, -2, lct_protos[i].num);
	}
	lua_setfield(L, -2, "protocols");

	lua_newtable(L);
	for (b = 0; b < 256; b++) {
		if (!lct_proto_ports((unsigned int)b))
			continue;
		lua_pushboolean(L, 1);
		lua_rawseti(L, -2, b);
	}
	lua_setfield(L, -2, "ports");

	lua_newtable(L);
	lct_push_states(L, IPPROTO_TCP);
	lua_setfield(L, -2, "tcp");
	lct_push_states(L, IPPROTO_SCTP);
	lua_setfield(L, -2, "sctp");
	lct_push_states(L, IPPROTO_DCCP);
	lua_setfield(L, -2, "dccp");
	lua_setfield(L, -2, "states");

	lua_newtable(L);
	for (b = 0; b < 32; b++) {
		if (lct_status_names[b] == NULL)
			continue;
		lua_pushstring(L, lct_status_names[b]);
		lua_rawseti(L, -2, b);
		lua_pushinteger(L, b);
		lua_setfield(L, -2, lct_status_names[b]);
	}
	lua_pushinteger(L, 12);
	lua_setfield(L, -2, "NAT_CLASH");
	lua_setfield(L, -2, "status");

	lua_setfield(L, -2, "names");

	lua_newtable(L);
	for (b = 0; b < 32; b++) {
		if (lct_status_names[b] == NULL)
			continue;
		lua_pushinteger(L, (lua_Integer)1 << b);
		lua_setfield(L, -2, lct_status_names[b]);
	}
	lua_pushinteger(L, 1 << 12);
	lua_setfield(L, -2, "NAT_CLASH");
	lua_setfield(L, -2, "status_bits");
}
