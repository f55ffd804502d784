/*
 * Entries: one ctnetlink message kept as it came, decoded field by field
 * only when a script reads the field; tuples, a copy of one direction.
 */
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include "lct.h"

struct lct_entry {
	double time;			/* events: when received (seconds since the epoch) */
	uint32_t len;			/* bytes of msg */
	uint8_t evtype;			/* 0 dump, 1 new, 2 update, 3 destroy */
	uint8_t indexed;
	uint16_t off[LCT_CTA_MAX + 1];	/* attribute offsets into msg; 0 = absent */
	uint64_t msg[];			/* the netlink message, aligned */
};

/* A copy of one direction: the tuple nest, then its counters nest. */
struct lct_tuple {
	uint16_t tlen, clen;
	uint64_t data[];
};

static const char lct_entry_key = 'e', lct_tuple_key = 't';

static const struct nlmsghdr *lct_msg(const struct lct_entry *e)
{
	return (const struct nlmsghdr *)e->msg;
}

static const struct nlattr *lct_attr(struct lct_entry *e, unsigned int type)
{
	if (!e->indexed) {
		lct_a_index(lct_msg(e), sizeof(struct nfgenmsg), e->off, LCT_CTA_MAX);
		e->indexed = 1;
	}
	if (type > LCT_CTA_MAX || e->off[type] == 0)
		return NULL;
	return (const struct nlattr *)((const char *)e->msg + e->off[type]);
}

static void lct_push_u8(lua_State *L, const struct nlattr *a)
{
	uint8_t v;

	if (lct_a_u8(a, &v))
		lua_pushinteger(L, v);
	else
		lua_pushnil(L);
}

static void lct_push_u16(lua_State *L, const struct nlattr *a)
{
	uint16_t v;

	if (lct_a_u16(a, &v))
		lua_pushinteger(L, v);
	else
		lua_pushnil(L);
}

static void lct_push_u32(lua_State *L, const struct nlattr *a)
{
	uint32_t v;

	if (lct_a_u32(a, &v))
		lua_pushinteger(L, (lua_Integer)v);
	else
		lua_pushnil(L);
}

static void lct_push_u64(lua_State *L, const struct nlattr *a)
{
	uint64_t v;

	if (lct_a_u64(a, &v))
		lct_pushu64(L, v);
	else
		lua_pushnil(L);
}

static void lct_push_str(lua_State *L, const struct nlattr *a)
{
	size_t n;
	const char *s = lct_a_str(a, &n);

	if (s != NULL)
		lua_pushlstring(L, s, n);
	else
		lua_pushnil(L);
}

static void lct_push_addr(lua_State *L, const struct nlattr *ip, int src)
{
	char buf[INET6_ADDRSTRLEN];
	const struct nlattr *a;

	a = lct_a_child(ip, src ? CTA_IP_V4_SRC : CTA_IP_V4_DST);
	if (a != NULL && lct_a_len(a) >= 4) {
		lua_pushlstring(L, buf, lct_ntop(AF_INET, lct_a_data(a), buf));
		return;
	}
	a = lct_a_child(ip, src ? CTA_IP_V6_SRC : CTA_IP_V6_DST);
	if (a != NULL && lct_a_len(a) >= 16) {
		lua_pushlstring(L, buf, lct_ntop(AF_INET6, lct_a_data(a), buf));
		return;
	}
	lua_pushnil(L);
}

/* ---- tuples ----------------------------------------------------------- */

enum {
	TF_SRC, TF_DST, TF_SPORT, TF_DPORT, TF_ITYPE, TF_ICODE, TF_IID,
	TF_PACKETS, TF_BYTES, TF_ZONE, TF_PROTONUM, TF_SRCKEY, TF_DSTKEY, TF_N
};

static const char *const lct_tuple_fields[] = {
	"src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
	"packets", "bytes", "zone", "protonum", "srckey", "dstkey", NULL
};

static const struct nlattr *lct_t_nest(const struct lct_tuple *t)
{
	return t->tlen ? (const struct nlattr *)t->data : NULL;
}

static const struct nlattr *lct_t_counters(const struct lct_tuple *t)
{
	return t->clen ? (const struct nlattr *)((const char *)t->data + t->tlen) : NULL;
}

/* Pushes one field of a direction (nil when absent): targeted lookups. */
static void lct_t_push(lua_State *L, const struct nlattr *nest,
		       const struct nlattr *ctr, int f)
{
	const struct nlattr *proto;
	uint8_t pnum = 0;
	int v6;

	switch (f) {
	case TF_SRC:
	case TF_DST:
		lct_push_addr(L, lct_a_child(nest, CTA_TUPLE_IP), f == TF_SRC);
		return;
	case TF_PACKETS:
	case TF_BYTES: {
		const struct nlattr *a = lct_a_child(ctr, f == TF_PACKETS ?
						     CTA_COUNTERS_PACKETS : CTA_COUNTERS_BYTES);

		if (a == NULL)
			a = lct_a_child(ctr, f == TF_PACKETS ?
					CTA_COUNTERS32_PACKETS : CTA_COUNTERS32_BYTES);
		lct_push_u64(L, a);
		return;
	}
	case TF_ZONE:
		lct_push_u16(L, lct_a_child(nest, CTA_TUPLE_ZONE));
		return;
	}
	proto = lct_a_child(nest, CTA_TUPLE_PROTO);
	lct_a_u8(lct_a_child(proto, CTA_PROTO_NUM), &pnum);
	v6 = pnum == IPPROTO_ICMPV6;
	switch (f) {
	case TF_PROTONUM:
		lct_push_u8(L, lct_a_child(proto, CTA_PROTO_NUM));
		return;
	case TF_SPORT:
	case TF_DPORT:
		lct_push_u16(L, lct_a_child(proto, f == TF_SPORT ?
				CTA_PROTO_SRC_PORT : CTA_PROTO_DST_PORT));
		return;
	case TF_SRCKEY:
	case TF_DSTKEY:
		if (pnum == IPPROTO_GRE)
			lct_push_u16(L, lct_a_child(proto, f == TF_SRCKEY ?
					CTA_PROTO_SRC_PORT : CTA_PROTO_DST_PORT));
		else
			lua_pushnil(L);
		return;
	case TF_ITYPE:
		lct_push_u8(L, lct_a_child(proto, v6 ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE));
		return;
	case TF_ICODE:
		lct_push_u8(L, lct_a_child(proto, v6 ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE));
		return;
	case TF_IID:
		lct_push_u16(L, lct_a_child(proto, v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID));
		return;
	}
	lua_pushnil(L);
}

/*
 * totable runs as a closure whose upvalues are the class's metatable (a
 * check of self without a registry lookup), then the key strings, already
 * interned: a key costs a lua_pushvalue, not a lookup of its text.  Entry
 * fields come first, then tuple fields (their numbers in the enums), then
 * the names of the status bits.
 */
#define LCT_EF_COUNT	27
#define TKEY(f)		lua_upvalueindex(2 + LCT_EF_COUNT + (f))
#define EKEY(f)		lua_upvalueindex(2 + (f))
#define SKEY(b)		lua_upvalueindex(2 + LCT_EF_COUNT + TF_N + (b))
#define LCT_NSTATUS	16	/* status bits with names: lct_status_names */

/* t[key] = the value at the top. */
static void lct_setk(lua_State *L, int key)
{
	lua_pushvalue(L, key);
	lua_insert(L, -2);
	lua_rawset(L, -3);
}

static void lct_set_addr(lua_State *L, int family, const struct nlattr *a, int key)
{
	char buf[INET6_ADDRSTRLEN];

	if (a == NULL || lct_a_len(a) < (family == AF_INET ? 4u : 16u))
		return;
	lua_pushvalue(L, key);
	lua_pushlstring(L, buf, lct_ntop(family, lct_a_data(a), buf));
	lua_rawset(L, -3);
}

static void lct_set_int(lua_State *L, int key, lua_Integer v)
{
	lua_pushvalue(L, key);
	lua_pushinteger(L, v);
	lua_rawset(L, -3);
}

/* A direction as a plain table, from one walk of its attributes. */
static void lct_dir_totable(lua_State *L, const struct nlattr *tuple,
			    const struct nlattr *ctr)
{
	struct lct_dir d;
	uint64_t u64;
	uint16_t u16;
	uint8_t u8, pnum = 0;

	lct_dir_parse(tuple, ctr, &d);
	lct_a_u8(d.num, &pnum);
	lua_createtable(L, 0, d.packets ? 6 : 4);
	if (d.src4 || d.dst4) {
		lct_set_addr(L, AF_INET, d.src4, TKEY(TF_SRC));
		lct_set_addr(L, AF_INET, d.dst4, TKEY(TF_DST));
	} else {
		lct_set_addr(L, AF_INET6, d.src6, TKEY(TF_SRC));
		lct_set_addr(L, AF_INET6, d.dst6, TKEY(TF_DST));
	}
	if (lct_a_u16(d.sport, &u16)) {
		lct_set_int(L, TKEY(TF_SPORT), u16);
		if (pnum == IPPROTO_GRE)
			lct_set_int(L, TKEY(TF_SRCKEY), u16);
	}
	if (lct_a_u16(d.dport, &u16)) {
		lct_set_int(L, TKEY(TF_DPORT), u16);
		if (pnum == IPPROTO_GRE)
			lct_set_int(L, TKEY(TF_DSTKEY), u16);
	}
	if (lct_a_u8(d.itype, &u8))
		lct_set_int(L, TKEY(TF_ITYPE), u8);
	if (lct_a_u8(d.icode, &u8))
		lct_set_int(L, TKEY(TF_ICODE), u8);
	if (lct_a_u16(d.iid, &u16))
		lct_set_int(L, TKEY(TF_IID), u16);
	if (lct_a_u16(d.zone, &u16))
		lct_set_int(L, TKEY(TF_ZONE), u16);
	if (lct_a_u64(d.packets, &u64)) {
		lua_pushvalue(L, TKEY(TF_PACKETS));
		lct_pushu64(L, u64);
		lua_rawset(L, -3);
	}
	if (lct_a_u64(d.bytes, &u64)) {
		lua_pushvalue(L, TKEY(TF_BYTES));
		lct_pushu64(L, u64);
		lua_rawset(L, -3);
	}
}

static int lct_t_index(lua_State *L)
{
	struct lct_tuple *t;
	int f = lct_class_field(L, (void **)&t);

	if (f >= 0)
		lct_t_push(L, lct_t_nest(t), lct_t_counters(t), f);
	return 1;
}

static int lct_t_totable(lua_State *L)
{
	const struct lct_tuple *t = lct_class_self(L, &lct_tuple_class, "totable");

	lct_dir_totable(L, lct_t_nest(t), lct_t_counters(t));
	return 1;
}

static int lct_t_tostring(lua_State *L)
{
	const struct lct_tuple *t = lct_class_check(L, 1, &lct_tuple_class, "tostring");
	int f, n = 0;

	for (f = 0; f < TF_N; f++) {
		if (f == TF_PROTONUM || f == TF_ZONE || f == TF_SRCKEY || f == TF_DSTKEY)
			continue;
		lct_t_push(L, lct_t_nest(t), lct_t_counters(t), f);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		lua_pushfstring(L, "%s%s=%s", n ? " " : "", lct_tuple_fields[f],
				lua_tostring(L, -1));
		lua_remove(L, -2);
		n++;
	}
	lua_concat(L, n);
	return 1;
}

static void lct_tuple_pushm(lua_State *L, const struct nlattr *tn, const struct nlattr *cn,
			    int mt);

/* mt: where the tuple metatable is (0: the registry). */
static void lct_push_tuple(lua_State *L, struct lct_entry *e, int reply, int mt)
{
	const struct nlattr *tn = lct_attr(e, reply ? CTA_TUPLE_REPLY : CTA_TUPLE_ORIG);

	if (tn == NULL)
		lua_pushnil(L);
	else
		lct_tuple_pushm(L, tn, lct_attr(e, reply ? CTA_COUNTERS_REPLY : CTA_COUNTERS_ORIG), mt);
}

void lct_tuple_push(lua_State *L, const struct nlattr *tn, const struct nlattr *cn)
{
	lct_tuple_pushm(L, tn, cn, 0);
}

static void lct_setmt(lua_State *L, int mt, const void *key)
{
	if (mt == 0) {
		lct_class_set(L, key);
	} else {
		lua_pushvalue(L, mt);
		lua_setmetatable(L, -2);
	}
}

static void lct_tuple_pushm(lua_State *L, const struct nlattr *tn, const struct nlattr *cn, int mt)
{
	uint16_t tlen, clen;
	struct lct_tuple *t;

	tlen = (uint16_t)MNL_ALIGN(tn->nla_len);
	clen = cn ? (uint16_t)MNL_ALIGN(cn->nla_len) : 0;
	t = lct_newuserdata(L, sizeof(*t) + tlen + clen);
	t->tlen = tlen;
	t->clen = clen;
	memset(t->data, 0, tlen + clen);
	memcpy(t->data, tn, tn->nla_len);
	if (cn)
		memcpy((char *)t->data + tlen, cn, cn->nla_len);
	lct_setmt(L, mt, &lct_tuple_key);
}

/* ---- entries ----------------------------------------------------------- */

void lct_entry_pushm(lua_State *L, const struct nlmsghdr *nlh, int evtype, double time, int mt)
{
	struct lct_entry *e;
	uint32_t len = nlh->nlmsg_len;

	e = lct_newuserdata(L, sizeof(*e) + len);
	e->len = len;
	e->time = time;
	e->evtype = (uint8_t)evtype;
	e->indexed = 0;
	memset(e->off, 0, sizeof(e->off));
	memcpy(e->msg, nlh, len);
	lct_setmt(L, mt, &lct_entry_key);
}

void lct_entry_push(lua_State *L, const struct nlmsghdr *nlh, int evtype)
{
	lct_entry_pushm(L, nlh, evtype, 0, 0);
}

void lct_entry_metatable(lua_State *L)
{
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_entry_key);
}

const struct nlmsghdr *lct_entry_msg(lua_State *L, int idx)
{
	struct lct_entry *e = lct_class_test(L, idx, &lct_entry_key);

	return e ? lct_msg(e) : NULL;
}

enum {
	EF_FAMILY, EF_PROTO, EF_PROTONUM, EF_ORIG, EF_REPLY, EF_STATE, EF_TIMEOUT,
	EF_MARK, EF_SECMARK, EF_USE, EF_ID, EF_ZONE, EF_STATUS, EF_LABELS,
	EF_START, EF_STOP, EF_HELPER, EF_SECCTX, EF_TYPE,
	EF_OVTAG, EF_RVTAG, EF_ROLE, EF_FLAGS0, EF_FLAGS1, EF_WSCALE0, EF_WSCALE1,
	EF_TIME, EF_N
};
typedef char lct_ef_count_ok[EF_N == LCT_EF_COUNT ? 1 : -1];

static const char *const lct_entry_fields[] = {
	"family", "proto", "protonum", "orig", "reply", "state", "timeout",
	"mark", "secmark", "use", "id", "zone", "status", "labels",
	"start", "stop", "helper", "secctx", "type",
	"orig_vtag", "reply_vtag", "role", "tcp_flags_orig", "tcp_flags_reply",
	"tcp_wscale_orig", "tcp_wscale_reply", "time", NULL
};

static int lct_e_protonum(struct lct_entry *e, uint8_t *p)
{
	return lct_a_u8(lct_a_child(lct_a_child(lct_attr(e, CTA_TUPLE_ORIG), CTA_TUPLE_PROTO),
				    CTA_PROTO_NUM), p);
}

static void lct_push_proto(lua_State *L, struct lct_entry *e)
{
	uint8_t p;
	const char *name;

	if (!lct_e_protonum(e, &p)) {
		lua_pushnil(L);
		return;
	}
	name = lct_proto_name(p);
	if (name != NULL)
		lua_pushstring(L, name);
	else
		lua_pushfstring(L, "%d", (int)p);
}

static void lct_push_status(lua_State *L, struct lct_entry *e)
{
	uint32_t v;
	int i;

	if (!lct_a_u32(lct_attr(e, CTA_STATUS), &v)) {
		lua_pushnil(L);
		return;
	}
	lua_createtable(L, 0, 6);
	for (i = 0; i < 32; i++) {
		if (!(v & (1u << i)))
			continue;
		lua_pushboolean(L, 1);
		if (lct_status_names[i] != NULL)
			lua_setfield(L, -2, lct_status_names[i]);
		else
			lua_rawseti(L, -2, i);
	}
}

/* Labels as a set: the name where the label map has one, else the bit. */
static void lct_push_labels(lua_State *L, struct lct_entry *e)
{
	const struct nlattr *a = lct_attr(e, CTA_LABELS);
	const uint8_t *p;
	unsigned int i, n;
	struct nfct_labelmap *map;

	if (a == NULL) {
		lua_pushnil(L);
		return;
	}
	p = lct_a_data(a);
	n = (lct_a_len(a) / 4) * 32;
	map = lct_labelmap(L);
	lua_newtable(L);
	for (i = 0; i < n; i++) {
		uint32_t w;
		const char *name;

		memcpy(&w, p + (i / 32) * 4, 4);
		if (!(w & (1u << (i % 32))))
			continue;
		name = map ? nfct_labelmap_get_name(map, i) : NULL;
		if (name != NULL && *name)
			lua_pushstring(L, name);
		else
			lua_pushinteger(L, i);
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
	}
}

static void lct_push_pinfo(lua_State *L, const struct lct_pinfo *pp, int f)
{
	const struct lct_pinfo pi = *pp;
	const char *name;

	switch (f) {
	case EF_STATE:
		name = pi.has_state ? lct_state_name((unsigned int)pi.proto, pi.state) : NULL;
		if (name != NULL)
			lua_pushstring(L, name);
		else if (pi.has_state)
			lua_pushfstring(L, "%d", (int)pi.state);
		else
			lua_pushnil(L);
		return;
	case EF_OVTAG:
	case EF_RVTAG:
		if (pi.has_vtag[f == EF_RVTAG])
			lua_pushinteger(L, (lua_Integer)pi.vtag[f == EF_RVTAG]);
		else
			lua_pushnil(L);
		return;
	case EF_ROLE:
		if (!pi.has_role)
			lua_pushnil(L);
		else if (pi.role <= 1)
			lua_pushstring(L, pi.role ? "server" : "client");
		else
			lua_pushinteger(L, pi.role);
		return;
	case EF_FLAGS0:
	case EF_FLAGS1:
		if (pi.has_flags[f == EF_FLAGS1])
			lua_pushinteger(L, pi.flags[f == EF_FLAGS1]);
		else
			lua_pushnil(L);
		return;
	case EF_WSCALE0:
	case EF_WSCALE1:
		if (pi.has_wscale[f == EF_WSCALE1])
			lua_pushinteger(L, pi.wscale[f == EF_WSCALE1]);
		else
			lua_pushnil(L);
		return;
	}
}

/* tmt: where the tuple metatable is (0: the registry). */
static void lct_e_push(lua_State *L, struct lct_entry *e, int f, int tmt)
{
	uint8_t p;

	switch (f) {
	case EF_FAMILY: {
		const char *name = lct_family_name(lct_nl_msgfamily(lct_msg(e)));

		if (name != NULL)
			lua_pushstring(L, name);
		else
			lua_pushfstring(L, "%d", (int)lct_nl_msgfamily(lct_msg(e)));
		return;
	}
	case EF_PROTO: lct_push_proto(L, e); return;
	case EF_PROTONUM:
		if (lct_e_protonum(e, &p))
			lua_pushinteger(L, p);
		else
			lua_pushnil(L);
		return;
	case EF_ORIG: lct_push_tuple(L, e, 0, tmt); return;
	case EF_REPLY: lct_push_tuple(L, e, 1, tmt); return;
	case EF_TIMEOUT: lct_push_u32(L, lct_attr(e, CTA_TIMEOUT)); return;
	case EF_MARK: lct_push_u32(L, lct_attr(e, CTA_MARK)); return;
	case EF_SECMARK: lct_push_u32(L, lct_attr(e, CTA_SECMARK)); return;
	case EF_USE: lct_push_u32(L, lct_attr(e, CTA_USE)); return;
	case EF_ID: lct_push_u32(L, lct_attr(e, CTA_ID)); return;
	case EF_ZONE: lct_push_u16(L, lct_attr(e, CTA_ZONE)); return;
	case EF_STATUS: lct_push_status(L, e); return;
	case EF_LABELS: lct_push_labels(L, e); return;
	case EF_START:
		lct_push_u64(L, lct_a_child(lct_attr(e, CTA_TIMESTAMP), CTA_TIMESTAMP_START));
		return;
	case EF_STOP:
		lct_push_u64(L, lct_a_child(lct_attr(e, CTA_TIMESTAMP), CTA_TIMESTAMP_STOP));
		return;
	case EF_HELPER: lct_push_str(L, lct_a_child(lct_attr(e, CTA_HELP), CTA_HELP_NAME)); return;
	case EF_SECCTX: lct_push_str(L, lct_a_child(lct_attr(e, CTA_SECCTX), CTA_SECCTX_NAME)); return;
	case EF_TIME:
		if (e->time > 0)
			lua_pushnumber(L, e->time);
		else
			lua_pushnil(L);
		return;
	case EF_TYPE:
		if (lct_event_name(e->evtype) != NULL)
			lua_pushstring(L, lct_event_name(e->evtype));
		else
			lua_pushnil(L);
		return;
	default: {
		struct lct_pinfo pi;

		lct_pinfo_parse(lct_attr(e, CTA_PROTOINFO), &pi);
		lct_push_pinfo(L, &pi, f);
	}
	}
}

/* __index: upvalues of lct_class_field, then the tuple metatable. */
static int lct_e_index(lua_State *L)
{
	struct lct_entry *e;
	int f = lct_class_field(L, (void **)&e);

	if (f >= 0)
		lct_e_push(L, e, f, lua_upvalueindex(4));
	return 1;
}

static struct lct_entry *lct_checkentry(lua_State *L, int idx, const char *fname)
{
	if (idx == 1)
		return lct_class_self(L, &lct_entry_class, fname);
	return lct_class_check(L, idx, &lct_entry_class, fname);
}

/* t[key] = the attribute's value, when it has one (totable). */
static void lct_set_u32(lua_State *L, int key, const struct nlattr *a)
{
	uint32_t v;

	if (lct_a_u32(a, &v))
		lct_set_int(L, key, (lua_Integer)v);
}

static void lct_set_u64(lua_State *L, int key, const struct nlattr *a)
{
	uint64_t v;

	if (lct_a_u64(a, &v)) {
		lua_pushvalue(L, key);
		lct_pushu64(L, v);
		lua_rawset(L, -3);
	}
}

static void lct_set_str(lua_State *L, int key, const struct nlattr *a)
{
	size_t n;
	const char *v = lct_a_str(a, &n);

	if (v != NULL) {
		lua_pushvalue(L, key);
		lua_pushlstring(L, v, n);
		lua_rawset(L, -3);
	}
}

/* The status set of totable, its names from the upvalues (as lct_push_status). */
static void lct_set_status(lua_State *L, const struct nlattr *a)
{
	uint32_t v, n;
	int i;

	if (!lct_a_u32(a, &v))
		return;
	for (i = 0, n = v; n != 0; n &= n - 1)
		i++;	/* the set's size: one slot a flag */
	lua_pushvalue(L, EKEY(EF_STATUS));
	lua_createtable(L, 0, i);
	for (i = 0; i < 32; i++) {
		if (!(v & (1u << i)))
			continue;
		if (i < LCT_NSTATUS && lct_status_names[i] != NULL) {
			lua_pushvalue(L, SKEY(i));
			lua_pushboolean(L, 1);
			lua_rawset(L, -3);
		} else {
			lua_pushboolean(L, 1);
			lua_rawseti(L, -2, i);
		}
	}
	lua_rawset(L, -3);
}

/*
 * e:totable(): every field in one table, from one walk of the message.
 * The keys go in the order of the entry's fields (the same table every
 * time, so pairs() walks it the same way).
 */
static int lct_e_totable(lua_State *L)
{
	struct lct_entry *e = lct_class_self(L, &lct_entry_class, "totable");
	const struct nlattr *a;
	struct lct_pinfo pi;
	uint8_t p;

	lct_pinfo_parse(lct_attr(e, CTA_PROTOINFO), &pi);
	lua_createtable(L, 0, 16);
	lct_e_push(L, e, EF_FAMILY, 0);
	lct_setk(L, EKEY(EF_FAMILY));
	if (lct_e_protonum(e, &p)) {
		lct_push_proto(L, e);
		lct_setk(L, EKEY(EF_PROTO));
		lct_set_int(L, EKEY(EF_PROTONUM), p);
	}
	if ((a = lct_attr(e, CTA_TUPLE_ORIG)) != NULL) {
		lct_dir_totable(L, a, lct_attr(e, CTA_COUNTERS_ORIG));
		lct_setk(L, EKEY(EF_ORIG));
	}
	if ((a = lct_attr(e, CTA_TUPLE_REPLY)) != NULL) {
		lct_dir_totable(L, a, lct_attr(e, CTA_COUNTERS_REPLY));
		lct_setk(L, EKEY(EF_REPLY));
	}
	lct_set_u32(L, EKEY(EF_TIMEOUT), lct_attr(e, CTA_TIMEOUT));
	lct_set_u32(L, EKEY(EF_MARK), lct_attr(e, CTA_MARK));
	lct_set_u32(L, EKEY(EF_SECMARK), lct_attr(e, CTA_SECMARK));
	lct_set_u32(L, EKEY(EF_USE), lct_attr(e, CTA_USE));
	lct_set_u32(L, EKEY(EF_ID), lct_attr(e, CTA_ID));
	if ((a = lct_attr(e, CTA_ZONE)) != NULL && lct_a_len(a) >= 2)
		lct_set_int(L, EKEY(EF_ZONE), ntohs(mnl_attr_get_u16(a)));
	if (pi.proto && pi.has_state) {
		lua_pushvalue(L, EKEY(EF_STATE));
		lct_push_pinfo(L, &pi, EF_STATE);
		lua_rawset(L, -3);
	}
	lct_set_status(L, lct_attr(e, CTA_STATUS));
	if (lct_attr(e, CTA_LABELS) != NULL) {
		lua_pushvalue(L, EKEY(EF_LABELS));
		lct_push_labels(L, e);
		lua_rawset(L, -3);
	}
	if ((a = lct_attr(e, CTA_TIMESTAMP)) != NULL) {
		lct_set_u64(L, EKEY(EF_START), lct_a_child(a, CTA_TIMESTAMP_START));
		lct_set_u64(L, EKEY(EF_STOP), lct_a_child(a, CTA_TIMESTAMP_STOP));
	}
	if ((a = lct_attr(e, CTA_HELP)) != NULL)
		lct_set_str(L, EKEY(EF_HELPER), lct_a_child(a, CTA_HELP_NAME));
	if ((a = lct_attr(e, CTA_SECCTX)) != NULL)
		lct_set_str(L, EKEY(EF_SECCTX), lct_a_child(a, CTA_SECCTX_NAME));
	if (lct_event_name(e->evtype) != NULL) {
		lua_pushvalue(L, EKEY(EF_TYPE));
		lua_pushstring(L, lct_event_name(e->evtype));
		lua_rawset(L, -3);
	}
	if (e->time > 0) {
		lua_pushvalue(L, EKEY(EF_TIME));
		lua_pushnumber(L, e->time);
		lua_rawset(L, -3);
	}
	if (pi.proto) {
		if (pi.has_vtag[0])
			lct_set_int(L, EKEY(EF_OVTAG), (lua_Integer)pi.vtag[0]);
		if (pi.has_vtag[1])
			lct_set_int(L, EKEY(EF_RVTAG), (lua_Integer)pi.vtag[1]);
		if (pi.has_role) {
			lua_pushvalue(L, EKEY(EF_ROLE));
			lct_push_pinfo(L, &pi, EF_ROLE);
			lua_rawset(L, -3);
		}
		if (pi.has_flags[0])
			lct_set_int(L, EKEY(EF_FLAGS0), pi.flags[0]);
		if (pi.has_flags[1])
			lct_set_int(L, EKEY(EF_FLAGS1), pi.flags[1]);
		if (pi.has_wscale[0])
			lct_set_int(L, EKEY(EF_WSCALE0), pi.wscale[0]);
		if (pi.has_wscale[1])
			lct_set_int(L, EKEY(EF_WSCALE1), pi.wscale[1]);
	}
	return 1;
}

/* ---- e:spec() ---------------------------------------------------------- */

/* t[name] = the address a of family f (a table at the top). */
static void lct_spec_addr(lua_State *L, const char *name, int f, const uint8_t *a)
{
	char buf[INET6_ADDRSTRLEN];

	lua_pushlstring(L, buf, lct_ntop(f, a, buf));
	lua_setfield(L, -2, name);
}

static void lct_spec_int(lua_State *L, const char *name, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, name);
}

/* snat or dnat = {addr =, port =}: what the kernel made of the flow's source or destination. */
static void lct_spec_nat(lua_State *L, const char *name, int f, const uint8_t *a,
			 const struct nlattr *port, int ports)
{
	uint16_t v;

	lua_createtable(L, 0, 2);
	if (a != NULL)
		lct_spec_addr(L, "addr", f, a);
	if (ports && lct_a_u16(port, &v))
		lct_spec_int(L, "port", v);
	lua_setfield(L, -2, name);
}

/* Two optional 16-bit attributes differ (one absent: no). */
static int lct_u16_differ(const struct nlattr *a, const struct nlattr *b, uint16_t *va)
{
	uint16_t vb;

	return lct_a_u16(a, va) && lct_a_u16(b, &vb) && *va != vb;
}

/*
 * e:spec(): the flow as a create spec, from one walk of the message: the
 * keys ct.create takes, and only those, so that ct.create(e:spec()) (in
 * another table) makes the same flow.  NAT becomes snat/dnat where the
 * SRC_NAT/DST_NAT bits say the kernel translates (the translation read
 * from the reply tuple); without them a reply tuple other than the
 * inverse becomes reply_*.  Only the status bits a program may set go.
 */
static int lct_e_spec(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1, "spec");
	const struct nlattr *a, *ot = lct_attr(e, CTA_TUPLE_ORIG), *rt = lct_attr(e, CTA_TUPLE_REPLY);
	struct lct_dir o, r;
	struct lct_pinfo pi;
	const uint8_t *osrc = NULL, *odst = NULL, *rsrc = NULL, *rdst = NULL;
	const char *name;
	uint32_t status = 0, v32;
	uint16_t v16;
	uint8_t proto = 0, v8;
	int f, fr, ports, gre, nat;

	lct_dir_parse(ot, NULL, &o);
	lct_dir_parse(rt, NULL, &r);
	lct_a_u8(o.num, &proto);
	if (proto == 0)
		lct_a_u8(r.num, &proto);
	ports = lct_proto_ports(proto);
	gre = proto == IPPROTO_GRE;
	lct_a_u32(lct_attr(e, CTA_STATUS), &status);
	nat = status & (IPS_SRC_NAT | IPS_DST_NAT);

	lua_createtable(L, 0, 16);
	name = lct_family_name(lct_nl_msgfamily(lct_msg(e)));
	if (name != NULL) {
		lua_pushstring(L, name);
		lua_setfield(L, -2, "family");
	}
	if (o.num != NULL || r.num != NULL) {
		name = lct_proto_name(proto);
		if (name != NULL)
			lua_pushstring(L, name);
		else
			lua_pushinteger(L, proto);
		lua_setfield(L, -2, "proto");
	}
	f = lct_dir_addr(&o, 0, &osrc);
	if (f)
		lct_spec_addr(L, "src", f, osrc);
	f = lct_dir_addr(&o, 1, &odst);
	if (f)
		lct_spec_addr(L, "dst", f, odst);
	if (ports || gre) {
		if (lct_a_u16(o.sport, &v16))
			lct_spec_int(L, gre ? "srckey" : "sport", v16);
		if (lct_a_u16(o.dport, &v16))
			lct_spec_int(L, gre ? "dstkey" : "dport", v16);
	}
	if (lct_a_u8(o.itype, &v8))
		lct_spec_int(L, "icmp_type", v8);
	if (lct_a_u8(o.icode, &v8))
		lct_spec_int(L, "icmp_code", v8);
	if (lct_a_u16(o.iid, &v16))
		lct_spec_int(L, "icmp_id", v16);
	if (lct_a_u16(o.zone, &v16))
		lct_spec_int(L, "orig_zone", v16);
	if (lct_a_u16(r.zone, &v16))
		lct_spec_int(L, "reply_zone", v16);
	if (lct_a_u16(lct_attr(e, CTA_ZONE), &v16))
		lct_spec_int(L, "zone", v16);

	/* The reply tuple: a translation, or a rewritten inverse, or nothing to say. */
	fr = lct_dir_addr(&r, 0, &rsrc);
	lct_dir_addr(&r, 1, &rdst);
	if (nat && rt != NULL) {
		if (status & IPS_SRC_NAT)
			lct_spec_nat(L, "snat", fr, rdst, r.dport, ports);
		if (status & IPS_DST_NAT)
			lct_spec_nat(L, "dnat", fr, rsrc, r.sport, ports);
	} else if (rt != NULL) {
		size_t alen = fr == AF_INET ? 4 : 16;

		if (rsrc != NULL && (odst == NULL || memcmp(rsrc, odst, alen) != 0))
			lct_spec_addr(L, "reply_src", fr, rsrc);
		if (rdst != NULL && (osrc == NULL || memcmp(rdst, osrc, alen) != 0))
			lct_spec_addr(L, "reply_dst", fr, rdst);
		if ((ports || gre) && lct_u16_differ(r.sport, o.dport, &v16))
			lct_spec_int(L, gre ? "reply_srckey" : "reply_sport", v16);
		if ((ports || gre) && lct_u16_differ(r.dport, o.sport, &v16))
			lct_spec_int(L, gre ? "reply_dstkey" : "reply_dport", v16);
	}

	status &= ~(uint32_t)IPS_UNCHANGEABLE_MASK;
	if (status != 0) {
		int i, n = 0;

		lua_createtable(L, 4, 0);
		for (i = 0; i < 32; i++) {
			if (!(status & (1u << i)))
				continue;
			if (lct_status_names[i] != NULL)
				lua_pushstring(L, lct_status_names[i]);
			else
				lua_pushinteger(L, i);
			lua_rawseti(L, -2, ++n);
		}
		lua_setfield(L, -2, "status");
	}
	if (lct_a_u32(lct_attr(e, CTA_TIMEOUT), &v32))
		lct_spec_int(L, "timeout", (lua_Integer)v32);
	if (lct_a_u32(lct_attr(e, CTA_MARK), &v32))
		lct_spec_int(L, "mark", (lua_Integer)v32);
	if (lct_a_u32(lct_attr(e, CTA_SECMARK), &v32) && v32 != 0)
		lct_spec_int(L, "secmark", (lua_Integer)v32);
	if ((a = lct_attr(e, CTA_LABELS)) != NULL) {
		const uint8_t *p = lct_a_data(a);
		unsigned int i, n = 0, bits = (unsigned int)(lct_a_len(a) / 4) * 32;

		/* bit numbers: they mean the same on a host with another label map */
		lua_createtable(L, 2, 0);
		for (i = 0; i < bits && i < 128; i++) {
			uint32_t w;

			memcpy(&w, p + (i / 32) * 4, 4);
			if (w & (1u << (i % 32))) {
				lua_pushinteger(L, i);
				lua_rawseti(L, -2, (int)++n);
			}
		}
		if (n > 0)
			lua_setfield(L, -2, "labels");
		else
			lua_pop(L, 1);
	}
	if ((a = lct_attr(e, CTA_HELP)) != NULL) {
		size_t n;
		const char *s = lct_a_str(lct_a_child(a, CTA_HELP_NAME), &n);

		if (s != NULL && n > 0) {
			lua_pushlstring(L, s, n);
			lua_setfield(L, -2, "helper");
		}
	}

	lct_pinfo_parse(lct_attr(e, CTA_PROTOINFO), &pi);
	if (pi.proto != 0 && pi.proto == proto) {
		if (pi.has_state && (name = lct_state_name(proto, pi.state)) != NULL) {
			lua_pushstring(L, name);
			lua_setfield(L, -2, "state");
		}
		if (pi.has_flags[0])
			lct_spec_int(L, "tcp_flags_orig", pi.flags[0]);
		if (pi.has_flags[1])
			lct_spec_int(L, "tcp_flags_reply", pi.flags[1]);
		if (pi.has_wscale[0])
			lct_spec_int(L, "tcp_wscale_orig", pi.wscale[0]);
		if (pi.has_wscale[1])
			lct_spec_int(L, "tcp_wscale_reply", pi.wscale[1]);
		if (pi.has_vtag[0])
			lct_spec_int(L, "orig_vtag", (lua_Integer)pi.vtag[0]);
		if (pi.has_vtag[1])
			lct_spec_int(L, "reply_vtag", (lua_Integer)pi.vtag[1]);
		if (pi.has_role) {
			if (pi.role <= 1)
				lua_pushstring(L, pi.role ? "server" : "client");
			else
				lua_pushinteger(L, pi.role);
			lua_setfield(L, -2, "role");
		}
	}
	return 1;
}

/* The CLI's text of e (o: LCT_O_* words, map: label names or NULL). */
static int lct_e_text(lua_State *L, struct lct_entry *e, unsigned int o,
		      struct nfct_labelmap *map)
{
	char buf[4096];
	size_t n = lct_text_o(lct_msg(e), e->evtype, o, map, buf, sizeof(buf));

	if (n == (size_t)-1)
		return lct_error(L, "format: out of memory");
	lua_pushlstring(L, buf, n);
	return 1;
}

/* __tostring: its upvalue is the entry metatable (lct_class_new). */
static int lct_e_tostring(lua_State *L)
{
	return lct_e_text(L, lct_class_self(L, &lct_entry_class, "tostring"), 0, NULL);
}

/*
 * e:format([opts]): the CLI's -o options as a comma list: "extended",
 * "id", "ktimestamp", "labels", "xml", "timestamp" (events: the time of
 * receipt before the line, "[seconds.micros]\t", as -E -o timestamp; in
 * XML the library's <when>).
 */
static int lct_e_format(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1, "format");
	unsigned int o = lct_output_opts(L, 2, "format", "opts", ~0u);

	lct_e_text(L, e, o, o & LCT_O_LABELS ? lct_labelmap(L) : NULL);
	if ((o & LCT_O_TIMESTAMP) && !(o & LCT_O_XML) && e->time > 0)
		lct_stamp_prefix(L, e->time, 0);
	return 1;
}

static int lct_e_eq(lua_State *L)
{
	struct lct_entry *a = lct_class_test(L, 1, &lct_entry_key);
	struct lct_entry *b = lct_class_test(L, 2, &lct_entry_key);

	lua_pushboolean(L, a && b && a->len == b->len &&
			memcmp(a->msg, b->msg, a->len) == 0);
	return 1;
}

/* The message itself, for code that wants to decode it another way. */
static int lct_e_raw(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1, "raw");

	lua_pushlstring(L, (const char *)e->msg, e->len);
	return 1;
}

/* m:match(e): does the entry match the matcher? */
static int lct_m_match(lua_State *L)
{
	const struct lct_matcher *m = lct_matcher_arg(L, 1, "match");
	const struct nlmsghdr *msg = lct_entry_msg(L, 2);

	if (m == NULL)
		return lct_error(L, "match: bad self (conntrack matcher expected, got nil)");
	if (msg == NULL)
		return lct_argerror(L, "match", "entry", "conntrack entry expected, got %s",
				    luaL_typename(L, 2));
	lua_pushboolean(L, lct_match(m, msg));
	return 1;
}

/* core.entry(spec): a synthetic entry, made as the kernel would send it. */
static int lct_f_entry(lua_State *L)
{
	struct lct_spec s;
	struct nlmsghdr *nlh;
	char buf[LCT_TXBUF];

	lct_spec_read(L, 1, LCT_K_ENTRY, "entry", &s);
	nlh = lct_nl_req(buf, (NFNL_SUBSYS_CTNETLINK << 8) |
			 (s.evtype == 3 ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW),
			 s.evtype == 1 ? NLM_F_CREATE | NLM_F_EXCL : 0, s.family, 0);
	lct_spec_put(nlh, &s, LCT_K_ENTRY);
	nlh->nlmsg_flags &= (uint16_t)~NLM_F_REQUEST;
	lct_entry_push(L, nlh, s.evtype);
	return 1;
}

static const luaL_Reg lct_entry_methods[] = {
	{"format", lct_e_format},
	{"raw", lct_e_raw},
	{"spec", lct_e_spec},
	{NULL, NULL}
};
static const luaL_Reg *const lct_entry_arrays[] = { lct_entry_methods, NULL };

static const luaL_Reg lct_entry_meta[] = {
	{"__tostring", lct_e_tostring},
	{"__eq", lct_e_eq},
	{NULL, NULL}
};

const struct lct_class lct_entry_class = {
	.key = &lct_entry_key, .name = "conntrack.entry", .what = "conntrack entry",
	.meta = lct_entry_meta, .methods = lct_entry_arrays,
	.fields = lct_entry_fields, .index = lct_e_index,
};

static const luaL_Reg lct_tuple_methods[] = {
	{NULL, NULL}
};
static const luaL_Reg *const lct_tuple_arrays[] = { lct_tuple_methods, NULL };

static const luaL_Reg lct_tuple_meta[] = {
	{"__tostring", lct_t_tostring},
	{NULL, NULL}
};

const struct lct_class lct_tuple_class = {
	.key = &lct_tuple_key, .name = "conntrack.tuple", .what = "conntrack tuple",
	.meta = lct_tuple_meta, .methods = lct_tuple_arrays,
	.fields = lct_tuple_fields, .index = lct_t_index,
};

const luaL_Reg lct_matcher_entry_methods[] = {
	{"match", lct_m_match},
	{NULL, NULL}
};

static const luaL_Reg lct_entry_funcs[] = {
	{"entry", lct_f_entry},
	{NULL, NULL}
};

/* methods.totable of a class: a closure over its metatable and the key strings. */
static void lct_totable_closure(lua_State *L, const struct lct_class *c, lua_CFunction fn)
{
	int i;

	luaL_checkstack(L, LCT_EF_COUNT + TF_N + LCT_NSTATUS + 4, "conntrack: totable");
	luaL_getmetatable(L, c->name);
	lua_getfield(L, -1, "methods");
	lua_pushvalue(L, -2);
	for (i = 0; i < LCT_EF_COUNT; i++)
		lua_pushstring(L, lct_entry_fields[i]);
	for (i = 0; i < TF_N; i++)
		lua_pushstring(L, lct_tuple_fields[i]);
	for (i = 0; i < LCT_NSTATUS; i++)
		lua_pushstring(L, lct_status_names[i]);
	lua_pushcclosure(L, fn, 1 + LCT_EF_COUNT + TF_N + LCT_NSTATUS);
	lua_setfield(L, -2, "totable");
	lua_pop(L, 2);
}

/* The entry's __index gets the tuple metatable as a fourth upvalue (e.orig makes a tuple). */
static void lct_entry_bind(lua_State *L)
{
	luaL_getmetatable(L, lct_entry_class.name);
	lua_getfield(L, -1, "__index");
	lua_getupvalue(L, -1, 1);
	lua_getupvalue(L, -2, 2);
	lua_getupvalue(L, -3, 3);
	luaL_getmetatable(L, lct_tuple_class.name);
	lua_pushcclosure(L, lct_e_index, 4);
	lua_setfield(L, -3, "__index");
	lua_pop(L, 2);
}

void lct_entry_open(lua_State *L)
{
	lct_class_new(L, &lct_entry_class);
	lct_class_new(L, &lct_tuple_class);
	lct_totable_closure(L, &lct_entry_class, lct_e_totable);
	lct_totable_closure(L, &lct_tuple_class, lct_t_totable);
	lct_entry_bind(L);
	lct_setfuncs(L, lct_entry_funcs, 0);
}
