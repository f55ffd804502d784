/*
 * Lua tables to conntrack objects: tuples for get/delete, whole specs for
 * create/add, and the changes of an update.  Every field is checked and a
 * bad one raises an error naming the function and the field.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "lct.h"

#define LCT_BOX_MT	"conntrack.build"

static int lct_box_gc(lua_State *L)
{
	struct nf_conntrack **p = lua_touserdata(L, 1);

	if (*p != NULL) {
		nfct_destroy(*p);
		*p = NULL;
	}
	return 0;
}

/* A conntrack object owned by a userdata left on the stack. */
static const char lct_box_key = 'b';
static struct nf_conntrack *lct_box(lua_State *L);

/*
 * A fresh conntrack object in b: in b's own box when the caller gave one
 * (batches reuse theirs), else in a new box left on the stack.
 */
static struct nf_conntrack *lct_fresh(lua_State *L, struct lct_build *b)
{
	if (b->box != NULL) {
		if (*b->box != NULL)
			nfct_destroy(*b->box);
		*b->box = nfct_new();
		if (*b->box == NULL)
			lct_error(L, "conntrack: out of memory");
		return *b->box;
	}
	return lct_box(L);
}

struct nf_conntrack **lct_newbox(lua_State *L)
{
	lct_box(L);
	return lua_touserdata(L, -1);
}

static struct nf_conntrack *lct_box(lua_State *L)
{
	struct nf_conntrack **p = lct_newuserdata(L, sizeof(*p));

	*p = NULL;
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_box_key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		luaL_newmetatable(L, LCT_BOX_MT);
		lua_pushcfunction(L, lct_box_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushvalue(L, -1);
		lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_box_key);
	}
	lua_setmetatable(L, -2);
	*p = nfct_new();
	if (*p == NULL)
		lct_error(L, "conntrack: out of memory");
	return *p;
}

static int lct_bad(lua_State *L, const char *fname, const char *field,
		   const char *why)
{
	return lct_error(L, "%s: bad argument '%s' (%s)", fname, field, why);
}

/* The integer at idx, 0..2^32-1; raises naming fname and what. */
uint32_t lct_u32_arg(lua_State *L, int idx, const char *fname, const char *what)
{
	lua_Number v = lua_tonumber(L, idx);

	if (lua_type(L, idx) != LUA_TNUMBER || !(v >= 0 && v <= 4294967295.0) || v != floor(v))
		lct_bad(L, fname, what, "integer 0..4294967295 expected");
	return (uint32_t)v;
}

/* Field k of the table at t, as lct_u32_arg: 1, or 0 when absent. */
int lct_u32_field(lua_State *L, int t, const char *fname, const char *k, uint32_t *out)
{
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	*out = lct_u32_arg(L, -1, fname, k);
	lua_pop(L, 1);
	return 1;
}

/* The protocol at idx, by name or number (not nil). */
int lct_proto_arg(lua_State *L, int idx, const char *fname)
{
	int proto;

	idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	if (lua_type(L, idx) == LUA_TSTRING) {
		proto = lct_proto_number(lua_tostring(L, idx));
		if (proto < 0)
			lct_bad(L, fname, "proto", lua_pushfstring(L, "unknown protocol '%s'",
								   lua_tostring(L, idx)));
		return proto;
	}
	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Number n = lua_tonumber(L, idx);

		if (!(n >= 0 && n <= 255) || n != floor(n))
			lct_bad(L, fname, "proto", "protocol number 0..255 expected");
		return (int)n;
	}
	return lct_bad(L, fname, "proto", lua_pushfstring(L, "name or number expected, got %s",
							   luaL_typename(L, idx)));
}

/*
 * The address at idx (a string): writes its 4 or 16 bytes to out and
 * returns AF_INET or AF_INET6.
 */
int lct_addr_arg(lua_State *L, int idx, const char *fname, const char *field, void *out)
{
	const char *s;
	size_t n;

	idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	if (lua_type(L, idx) != LUA_TSTRING)
		lct_bad(L, fname, field, lua_pushfstring(L, "address string expected, got %s",
							   luaL_typename(L, idx)));
	s = lua_tolstring(L, idx, &n);
	if (strlen(s) != n)
		lct_bad(L, fname, field, "malformed address (embedded NUL)");
	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, out) == 1)
		return AF_INET6;
	return lct_bad(L, fname, field, lua_pushfstring(L, "malformed address '%s'", s));
}

/*
 * The fields of tuple, spec and changes tables.  lct_gather reads a table
 * once (lua_next) into stack slots, one per field, raising on a key the
 * kind does not take; the parsers then read slots, not the table.
 */
#define LCT_K_TUPLE	1
#define LCT_K_SPEC	2
#define LCT_K_CHANGE	4

static const struct {
	const char *name;
	int kinds;
} lct_fields[] = {
	{"family", LCT_K_TUPLE}, {"proto", LCT_K_TUPLE}, {"src", LCT_K_TUPLE},
	{"dst", LCT_K_TUPLE}, {"sport", LCT_K_TUPLE}, {"dport", LCT_K_TUPLE},
	{"icmp_type", LCT_K_TUPLE}, {"icmp_code", LCT_K_TUPLE},
	{"icmp_id", LCT_K_TUPLE}, {"zone", LCT_K_TUPLE},
	{"reply_src", LCT_K_SPEC}, {"reply_dst", LCT_K_SPEC},
	{"reply_sport", LCT_K_SPEC}, {"reply_dport", LCT_K_SPEC},
	{"timeout", LCT_K_SPEC | LCT_K_CHANGE}, {"mark", LCT_K_SPEC | LCT_K_CHANGE},
	{"state", LCT_K_SPEC}, {"status", LCT_K_SPEC | LCT_K_CHANGE},
	{"labels", LCT_K_SPEC | LCT_K_CHANGE}, {"secmark", LCT_K_SPEC},
	{"mark_mask", LCT_K_CHANGE}, {"labels_mask", LCT_K_CHANGE},
};
#define LCT_NFIELDS	((int)(sizeof(lct_fields) / sizeof(lct_fields[0])))

/* The index of a field name in lct_fields, or -1: a switch, as it runs per field per item. */
static int lct_fid(const char *k, size_t n)
{
#define LCT_IS(s, id) if (memcmp(k, s, n) == 0) return id
	switch (n) {
	case 3: LCT_IS("src", 2); LCT_IS("dst", 3); break;
	case 4: LCT_IS("mark", 15); LCT_IS("zone", 9); break;
	case 5: LCT_IS("proto", 1); LCT_IS("sport", 4); LCT_IS("dport", 5); LCT_IS("state", 16); break;
	case 6: LCT_IS("family", 0); LCT_IS("status", 17); LCT_IS("labels", 18); break;
	case 7: LCT_IS("icmp_id", 8); LCT_IS("timeout", 14); LCT_IS("secmark", 19); break;
	case 9:
		LCT_IS("icmp_type", 6); LCT_IS("icmp_code", 7); LCT_IS("reply_src", 10);
		LCT_IS("reply_dst", 11); LCT_IS("mark_mask", 20);
		break;
	case 11: LCT_IS("reply_sport", 12); LCT_IS("reply_dport", 13); LCT_IS("labels_mask", 21); break;
	}
	return -1;
#undef LCT_IS
}

/* Pushes the value of field k from the slots after base. */
static void lct_getf(lua_State *L, int base, const char *k)
{
	lua_pushvalue(L, base + 1 + lct_fid(k, strlen(k)));
}

/* Reads table t into LCT_NFIELDS slots; returns the base of the slots. */
static int lct_gather(lua_State *L, int t, const char *fname, int kinds)
{
	int base = lua_gettop(L);

	luaL_checkstack(L, LCT_NFIELDS + 8, "conntrack: too many fields");
	lua_settop(L, base + LCT_NFIELDS);
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		size_t n;
		const char *k;
		int id;

		if (lua_type(L, -2) != LUA_TSTRING)
			lct_bad(L, fname, "?", "field names must be strings");
		k = lua_tolstring(L, -2, &n);
		id = lct_fid(k, n);
		if (id < 0 || !(lct_fields[id].kinds & kinds))
			lct_bad(L, fname, k, "unknown field");
		lua_replace(L, base + 1 + id);
	}
	return base;
}

/* An integer field in [lo, hi]; returns 0 when absent. */
static int lct_int(lua_State *L, int t, const char *fname, const char *field,
		   double lo, double hi, double *out)
{
	double v;
	int isnum;

	lct_getf(L, t, field);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) != LUA_TNUMBER)
		lct_bad(L, fname, field, lua_pushfstring(L, "number expected, got %s",
							   luaL_typename(L, -1)));
	v = (double)lua_tonumber(L, -1);
	isnum = v == floor(v);
	if (!isnum)
		lct_bad(L, fname, field, "integer expected");
	if (v < lo || v > hi) {
		char why[64];

		snprintf(why, sizeof(why), "out of range %.0f..%.0f", lo, hi);
		lct_bad(L, fname, field, why);
	}
	lua_pop(L, 1);
	*out = v;
	return 1;
}

struct lct_addr {
	int family;	/* 0 absent */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} a;
};

static void lct_addr(lua_State *L, int t, const char *fname, const char *field,
		     struct lct_addr *out)
{
	out->family = 0;
	lct_getf(L, t, field);
	if (!lua_isnil(L, -1))
		out->family = lct_addr_arg(L, -1, fname, field, &out->a);
	lua_pop(L, 1);
}

uint8_t lct_family_arg(lua_State *L, int idx, const char *fname, const char *field)
{
	int f;

	if (lua_type(L, idx) != LUA_TSTRING)
		lct_bad(L, fname, field, lua_pushfstring(L, "\"ipv4\" or \"ipv6\" expected, got %s",
							   luaL_typename(L, idx)));
	f = lct_family_number(lua_tostring(L, idx));
	if (f < 0)
		lct_bad(L, fname, field, lua_pushfstring(L, "unknown family '%s' (\"ipv4\" or \"ipv6\")",
							   lua_tostring(L, idx)));
	return (uint8_t)f;
}

/* Status flags: an integer, an array of names or a set of names. */
uint32_t lct_status_arg(lua_State *L, int idx, const char *fname, const char *field)
{
	uint32_t v = 0;

	idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Number n = lua_tonumber(L, idx);

		if (n < 0 || n > 4294967295.0 || n != floor(n))
			lct_bad(L, fname, field, "integer 0..4294967295 expected");
		return (uint32_t)n;
	}
	if (lua_type(L, idx) == LUA_TSTRING) {
		int bit = lct_status_bit(lua_tostring(L, idx));

		if (bit < 0)
			lct_bad(L, fname, field, lua_pushfstring(L, "unknown status flag '%s'",
								   lua_tostring(L, idx)));
		return 1u << bit;
	}
	if (!lua_istable(L, idx))
		lct_bad(L, fname, field, lua_pushfstring(L, "table of flag names expected, got %s",
							   luaL_typename(L, idx)));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		const char *name = NULL;
		int bit;

		if (lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) == LUA_TSTRING)
			name = lua_tostring(L, -1);
		else if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TBOOLEAN) {
			if (!lua_toboolean(L, -1)) {
				lua_pop(L, 1);
				continue;
			}
			name = lua_tostring(L, -2);
		} else {
			lct_bad(L, fname, field, "flag names expected ({\"ASSURED\"} or {ASSURED = true})");
		}
		bit = lct_status_bit(name);
		if (bit < 0)
			lct_bad(L, fname, field, lua_pushfstring(L, "unknown status flag '%s'", name));
		v |= 1u << bit;
		lua_pop(L, 1);
	}
	return v;
}

/* Labels: an array of names or bit numbers, or a set of them. */
static void lct_labels_arg(lua_State *L, int idx, const char *fname,
			   const char *field, uint8_t out[16])
{
	memset(out, 0, 16);
	idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	if (!lua_istable(L, idx))
		lct_bad(L, fname, field, lua_pushfstring(L, "table of label names or bits expected, got %s",
							   luaL_typename(L, idx)));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		int kv = lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) != LUA_TBOOLEAN;
		int vi = kv ? -1 : -2;	/* the label itself */
		int bit = -1;

		if (!kv && !lua_toboolean(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		if (lua_type(L, vi) == LUA_TNUMBER) {
			lua_Number n = lua_tonumber(L, vi);

			if (n < 0 || n > 127 || n != floor(n))
				lct_bad(L, fname, field, "label bits are 0..127");
			bit = (int)n;
		} else if (lua_type(L, vi) == LUA_TSTRING) {
			struct nfct_labelmap *map = lct_labelmap(L);

			bit = map ? nfct_labelmap_get_bit(map, lua_tostring(L, vi)) : -1;
			if (bit < 0 || bit > 127)
				lct_bad(L, fname, field, lua_pushfstring(L, "unknown label '%s'",
									   lua_tostring(L, vi)));
		} else {
			lct_bad(L, fname, field, "label names or bit numbers expected");
		}
		{
			uint32_t w;

			memcpy(&w, out + (bit / 32) * 4, 4);
			w |= 1u << (bit % 32);
			memcpy(out + (bit / 32) * 4, &w, 4);
		}
		lua_pop(L, 1);
	}
}

static int lct_needs_ports(int proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP ||
	       proto == IPPROTO_UDPLITE || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_DCCP;
}

static void lct_set_addr(struct nf_conntrack *ct, const struct lct_addr *a,
			 int v4attr, int v6attr)
{
	if (a->family == AF_INET)
		nfct_set_attr_u32(ct, v4attr, a->a.v4.s_addr);
	else
		nfct_set_attr(ct, v6attr, &a->a.v6);
}

static void lct_mixed(lua_State *L, const char *fname, const char *field,
		      int *family, int f)
{
	if (f == 0)
		return;
	if (*family != 0 && *family != f)
		lct_bad(L, fname, field, "IPv4 and IPv6 addresses mixed in one tuple");
	*family = f;
}

/* Fields shared by specs and changes: timeout, mark, status, labels. */
static void lct_common(lua_State *L, int t, const char *fname, struct lct_build *b,
		       int changes)
{
	double v;

	if (lct_int(L, t, fname, "timeout", 0, 4294967295.0, &v))
		nfct_set_attr_u32(b->ct, ATTR_TIMEOUT, (uint32_t)v);
	if (lct_int(L, t, fname, "mark", 0, 4294967295.0, &v))
		nfct_set_attr_u32(b->ct, ATTR_MARK, (uint32_t)v);
	if (changes && lct_int(L, t, fname, "mark_mask", 0, 4294967295.0, &v)) {
		if (!nfct_attr_is_set(b->ct, ATTR_MARK))
			lct_bad(L, fname, "mark_mask", "needs 'mark'");
		b->has_mark_mask = 1;
		b->mark_mask = (uint32_t)v;
	}
	lct_getf(L, t, "status");
	if (!lua_isnil(L, -1))
		nfct_set_attr_u32(b->ct, ATTR_STATUS, lct_status_arg(L, -1, fname, "status"));
	lua_pop(L, 1);
	lct_getf(L, t, "labels");
	if (!lua_isnil(L, -1)) {
		lct_labels_arg(L, -1, fname, "labels", b->labels);
		memset(b->labels_mask, 0xff, sizeof(b->labels_mask));
		b->has_labels = 1;
	}
	lua_pop(L, 1);
	if (changes) {
		lct_getf(L, t, "labels_mask");
		if (!lua_isnil(L, -1)) {
			if (!b->has_labels)
				lct_bad(L, fname, "labels_mask", "needs 'labels'");
			lct_labels_arg(L, -1, fname, "labels_mask", b->labels_mask);
		}
		lua_pop(L, 1);
	}
}

void lct_build(lua_State *L, int idx, enum lct_build_kind kind,
	       const char *fname, struct lct_build *b)
{
	struct lct_addr src, dst, rsrc, rdst;
	int family = 0, proto = -1, t = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	double v, sport = -1, dport = -1;

	{
		struct nf_conntrack **box = b->box;

		memset(b, 0, sizeof(*b));
		b->box = box;
	}
	if ((kind == LCT_B_TUPLE || kind == LCT_B_CHANGES) && lct_is_entry(L, t)) {
		b->ct = lct_fresh(L, b);
		b->family = lct_entry_to_ct(L, t, b->ct);
		return;
	}
	if (!lua_istable(L, t))
		lct_error(L, "%s: bad argument '%s' (table expected, got %s)", fname,
			   kind == LCT_B_SPEC ? "spec" : "tuple", luaL_typename(L, t));
	b->ct = lct_fresh(L, b);
	t = lct_gather(L, t, fname, LCT_K_TUPLE | LCT_K_SPEC);

	/* Family: given, or read off the addresses, which must agree. */
	lct_addr(L, t, fname, "src", &src);
	lct_addr(L, t, fname, "dst", &dst);
	lct_addr(L, t, fname, "reply_src", &rsrc);
	lct_addr(L, t, fname, "reply_dst", &rdst);
	lct_getf(L, t, "family");
	if (!lua_isnil(L, -1))
		family = lct_family_arg(L, -1, fname, "family");
	lua_pop(L, 1);
	lct_mixed(L, fname, "src", &family, src.family);
	lct_mixed(L, fname, "dst", &family, dst.family);
	if (kind == LCT_B_SPEC) {
		lct_mixed(L, fname, "reply_src", &family, rsrc.family);
		lct_mixed(L, fname, "reply_dst", &family, rdst.family);
	}
	if (src.family == 0)
		lct_bad(L, fname, "src", "missing");
	if (dst.family == 0)
		lct_bad(L, fname, "dst", "missing");
	b->family = (uint8_t)family;
	nfct_set_attr_u8(b->ct, ATTR_L3PROTO, (uint8_t)family);
	lct_set_addr(b->ct, &src, ATTR_IPV4_SRC, ATTR_IPV6_SRC);
	lct_set_addr(b->ct, &dst, ATTR_IPV4_DST, ATTR_IPV6_DST);

	lct_getf(L, t, "proto");
	if (lua_isnil(L, -1))
		lct_bad(L, fname, "proto", "missing");
	proto = lct_proto_arg(L, -1, fname);
	lua_pop(L, 1);
	if (proto == IPPROTO_ICMP && family == AF_INET6)
		proto = IPPROTO_ICMPV6;
	if (proto == IPPROTO_ICMPV6 && family == AF_INET)
		lct_bad(L, fname, "proto", "icmpv6 with IPv4 addresses");
	nfct_set_attr_u8(b->ct, ATTR_L4PROTO, (uint8_t)proto);

	if (lct_int(L, t, fname, "sport", 0, 65535, &v))
		sport = v;
	if (lct_int(L, t, fname, "dport", 0, 65535, &v))
		dport = v;
	if (lct_needs_ports(proto)) {
		if (sport < 0)
			lct_bad(L, fname, "sport", "missing");
		if (dport < 0)
			lct_bad(L, fname, "dport", "missing");
		nfct_set_attr_u16(b->ct, ATTR_PORT_SRC, htons((uint16_t)sport));
		nfct_set_attr_u16(b->ct, ATTR_PORT_DST, htons((uint16_t)dport));
	} else if (sport >= 0 || dport >= 0) {
		lct_bad(L, fname, sport >= 0 ? "sport" : "dport",
			lua_pushfstring(L, "protocol %d has no ports", proto));
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		if (!lct_int(L, t, fname, "icmp_type", 0, 255, &v))
			lct_bad(L, fname, "icmp_type", "missing");
		nfct_set_attr_u8(b->ct, ATTR_ICMP_TYPE, (uint8_t)v);
		if (!lct_int(L, t, fname, "icmp_code", 0, 255, &v))
			v = 0;
		nfct_set_attr_u8(b->ct, ATTR_ICMP_CODE, (uint8_t)v);
		if (!lct_int(L, t, fname, "icmp_id", 0, 65535, &v))
			lct_bad(L, fname, "icmp_id", "missing");
		nfct_set_attr_u16(b->ct, ATTR_ICMP_ID, htons((uint16_t)v));
	} else {
		static const char *const icmpf[] = { "icmp_type", "icmp_code", "icmp_id" };
		int i;

		for (i = 0; i < 3; i++)
			if (lct_int(L, t, fname, icmpf[i], 0, 65535, &v))
				lct_bad(L, fname, icmpf[i], "only for icmp and icmpv6");
	}
	if (lct_int(L, t, fname, "zone", 0, 65535, &v))
		nfct_set_attr_u16(b->ct, ATTR_ZONE, (uint16_t)v);

	if (kind != LCT_B_SPEC)
		return;

	/* The reply: the inverted original, then whatever was given. */
	if (nfct_setobjopt(b->ct, NFCT_SOPT_SETUP_REPLY) < 0)
		lct_bad(L, fname, "spec", "cannot derive the reply tuple");
	if (rsrc.family)
		lct_set_addr(b->ct, &rsrc, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
	if (rdst.family)
		lct_set_addr(b->ct, &rdst, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
	if (lct_int(L, t, fname, "reply_sport", 0, 65535, &v)) {
		if (!lct_needs_ports(proto))
			lct_bad(L, fname, "reply_sport", "protocol has no ports");
		nfct_set_attr_u16(b->ct, ATTR_REPL_PORT_SRC, htons((uint16_t)v));
	}
	if (lct_int(L, t, fname, "reply_dport", 0, 65535, &v)) {
		if (!lct_needs_ports(proto))
			lct_bad(L, fname, "reply_dport", "protocol has no ports");
		nfct_set_attr_u16(b->ct, ATTR_REPL_PORT_DST, htons((uint16_t)v));
	}

	lct_common(L, t, fname, b, 0);
	if (lct_int(L, t, fname, "secmark", 0, 4294967295.0, &v))
		nfct_set_attr_u32(b->ct, ATTR_SECMARK, (uint32_t)v);
	if (!nfct_attr_is_set(b->ct, ATTR_TIMEOUT))
		lct_bad(L, fname, "timeout", "missing (seconds the entry lives)");

	lct_getf(L, t, "state");
	if (!lua_isnil(L, -1)) {
		int st;

		if (lua_type(L, -1) != LUA_TSTRING)
			lct_bad(L, fname, "state", "state name expected");
		st = lct_state_number((unsigned int)proto, lua_tostring(L, -1));
		if (st < 0)
			lct_bad(L, fname, "state",
				lct_state_name((unsigned int)proto, 0) == NULL ?
				"only tcp, sctp and dccp have states" :
				lua_pushfstring(L, "unknown state '%s'", lua_tostring(L, -1)));
		if (proto == IPPROTO_TCP)
			nfct_set_attr_u8(b->ct, ATTR_TCP_STATE, (uint8_t)st);
		else if (proto == IPPROTO_SCTP)
			nfct_set_attr_u8(b->ct, ATTR_SCTP_STATE, (uint8_t)st);
		else
			nfct_set_attr_u8(b->ct, ATTR_DCCP_STATE, (uint8_t)st);
	}
	lua_pop(L, 1);
}

void lct_build_changes(lua_State *L, int idx, const char *fname,
		       struct lct_build *b)
{
	int t = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	int n;

	if (!lua_istable(L, t))
		lct_error(L, "%s: bad argument 'changes' (table expected, got %s)",
			   fname, luaL_typename(L, t));
	lua_pushnil(L);
	n = lua_next(L, t);
	if (n)
		lua_pop(L, 2);
	else
		lct_bad(L, fname, "changes", "nothing to change");
	t = lct_gather(L, t, fname, LCT_K_CHANGE);
	lct_common(L, t, fname, b, 1);
}
