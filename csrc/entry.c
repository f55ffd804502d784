/*
 * Entries: one ctnetlink message kept as it came, decoded field by field
 * only when a script reads the field.
 */
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include "lct.h"

/* Room for attributes newer than our headers. */
#define LCT_CTA_MAX	(CTA_MAX + 8)

struct lct_entry {
	uint32_t len;			/* bytes of msg */
	uint8_t evtype;			/* 0 dump, 1 new, 2 update, 3 destroy */
	uint8_t indexed;
	uint16_t off[LCT_CTA_MAX + 1];	/* attribute offsets into msg; 0 = absent */
	uint64_t msg[];			/* the netlink message, aligned */
};

/* A copy of one direction: the tuple nest, then its counters nest. */
struct lct_tuple {
	uint8_t family;
	uint16_t tlen, clen;
	uint64_t data[];
};

/*
 * The metatables, also kept under these addresses in the registry: a
 * lookup by pointer is much cheaper than luaL_checkudata's by name, and
 * entries are made and read hundreds of thousands of times a dump.
 */
static const char lct_entry_key = 'e', lct_tuple_key = 't';

static void *lct_fastcheck(lua_State *L, int idx, const char *key, const char *tname)
{
	void *p = lua_touserdata(L, idx);

	if (p != NULL && lua_getmetatable(L, idx)) {
		int ok;

		lct_rawgetp(L, LUA_REGISTRYINDEX, key);
		ok = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
		if (ok)
			return p;
	}
	return luaL_checkudata(L, idx, tname);
}

static const char *const lct_ev_names[] = { NULL, "new", "update", "destroy" };

const char *lct_proto_name(unsigned int num)
{
	switch (num) {
	case IPPROTO_TCP: return "tcp";
	case IPPROTO_UDP: return "udp";
	case IPPROTO_UDPLITE: return "udplite";
	case IPPROTO_ICMP: return "icmp";
	case IPPROTO_ICMPV6: return "icmpv6";
	case IPPROTO_SCTP: return "sctp";
	case IPPROTO_DCCP: return "dccp";
	case IPPROTO_GRE: return "gre";
	}
	return NULL;
}

int lct_proto_number(const char *name)
{
	static const unsigned char nums[] = {
		IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_ICMP,
		IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_GRE,
	};
	size_t i;

	for (i = 0; i < sizeof(nums); i++)
		if (strcmp(name, lct_proto_name(nums[i])) == 0)
			return nums[i];
	return -1;
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

const char *lct_state_name(unsigned int proto, unsigned int state)
{
	const char *const *s = lct_states_of(proto);
	unsigned int i;

	if (s == NULL)
		return NULL;
	for (i = 0; s[i] != NULL; i++)
		if (i == state)
			return s[i];
	return NULL;
}

int lct_state_number(unsigned int proto, const char *name)
{
	const char *const *s = lct_states_of(proto);
	int i;

	if (s == NULL)
		return -1;
	for (i = 0; s[i] != NULL; i++)
		if (strcmp(s[i], name) == 0)
			return i;
	return -1;
}

/* Status bits by name, as the kernel numbers them (IPS_*_BIT). */
const char *const lct_status_names[] = {
	"EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT",
	"DST_NAT", "SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING",
	"FIXED_TIMEOUT", "TEMPLATE", "UNTRACKED", "HELPER", "OFFLOAD",
	"HW_OFFLOAD", NULL
};

int lct_status_bit(const char *name)
{
	int i;

	for (i = 0; lct_status_names[i] != NULL; i++)
		if (strcmp(lct_status_names[i], name) == 0)
			return i;
	if (strcmp(name, "NAT_CLASH") == 0)
		return 12;
	return -1;
}

int lct_family_number(const char *name)
{
	if (strcmp(name, "ipv4") == 0)
		return AF_INET;
	if (strcmp(name, "ipv6") == 0)
		return AF_INET6;
	return -1;
}

/* ---- attribute access ------------------------------------------------ */

static const struct nlmsghdr *lct_msg(const struct lct_entry *e)
{
	return (const struct nlmsghdr *)e->msg;
}

/* One walk over the top-level attributes, written out: it runs per entry. */
static void lct_index(struct lct_entry *e)
{
	const char *base = (const char *)e->msg;
	size_t off = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg));
	size_t end = e->len;

	while (off + sizeof(struct nlattr) <= end) {
		const struct nlattr *a = (const struct nlattr *)(base + off);
		unsigned int t = a->nla_type & NLA_TYPE_MASK;

		if (a->nla_len < sizeof(struct nlattr) || off + a->nla_len > end)
			break;
		if (t <= LCT_CTA_MAX && e->off[t] == 0)
			e->off[t] = (uint16_t)off;
		off += MNL_ALIGN(a->nla_len);
	}
	e->indexed = 1;
}

static const struct nlattr *lct_attr(struct lct_entry *e, unsigned int type)
{
	if (!e->indexed)
		lct_index(e);
	if (type > LCT_CTA_MAX || e->off[type] == 0)
		return NULL;
	return (const struct nlattr *)((const char *)e->msg + e->off[type]);
}

/* A child of a nest, or NULL; the walk checks every length. */
static const struct nlattr *lct_child(const struct nlattr *nest, unsigned int type)
{
	const char *p, *end;

	if (nest == NULL)
		return NULL;
	p = (const char *)nest + MNL_ATTR_HDRLEN;
	end = (const char *)nest + nest->nla_len;
	while (p + sizeof(struct nlattr) <= end) {
		const struct nlattr *a = (const struct nlattr *)p;

		if (a->nla_len < sizeof(struct nlattr) || p + a->nla_len > end)
			return NULL;
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a;
		p += MNL_ALIGN(a->nla_len);
	}
	return NULL;
}

static int lct_u8(const struct nlattr *a, uint8_t *v)
{
	if (a == NULL || mnl_attr_get_payload_len(a) < 1)
		return 0;
	*v = mnl_attr_get_u8(a);
	return 1;
}

static int lct_u16(const struct nlattr *a, uint16_t *v)
{
	if (a == NULL || mnl_attr_get_payload_len(a) < 2)
		return 0;
	*v = ntohs(mnl_attr_get_u16(a));
	return 1;
}

static int lct_u32(const struct nlattr *a, uint32_t *v)
{
	if (a == NULL || mnl_attr_get_payload_len(a) < 4)
		return 0;
	*v = ntohl(mnl_attr_get_u32(a));
	return 1;
}

static int lct_u64(const struct nlattr *a, uint64_t *v)
{
	uint64_t x;

	if (a == NULL)
		return 0;
	if (mnl_attr_get_payload_len(a) >= 8) {
		memcpy(&x, mnl_attr_get_payload(a), 8);
		*v = be64toh(x);
		return 1;
	}
	if (mnl_attr_get_payload_len(a) >= 4) {
		*v = ntohl(mnl_attr_get_u32(a));
		return 1;
	}
	return 0;
}

/* ---- tuples ----------------------------------------------------------- */

static const struct nlattr *lct_t_nest(const struct lct_tuple *t)
{
	return t->tlen ? (const struct nlattr *)t->data : NULL;
}

static const struct nlattr *lct_t_counters(const struct lct_tuple *t)
{
	return t->clen ? (const struct nlattr *)((const char *)t->data + t->tlen) : NULL;
}

static int lct_push_addr(lua_State *L, const struct nlattr *ip, int src)
{
	char buf[INET6_ADDRSTRLEN];
	const struct nlattr *a;

	a = lct_child(ip, src ? CTA_IP_V4_SRC : CTA_IP_V4_DST);
	if (a != NULL && mnl_attr_get_payload_len(a) >= 4) {
		lua_pushlstring(L, buf, lct_ntop(AF_INET, mnl_attr_get_payload(a), buf));
		return 1;
	}
	a = lct_child(ip, src ? CTA_IP_V6_SRC : CTA_IP_V6_DST);
	if (a != NULL && mnl_attr_get_payload_len(a) >= 16) {
		lua_pushlstring(L, buf, lct_ntop(AF_INET6, mnl_attr_get_payload(a), buf));
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

enum {
	LCT_TF_SRC, LCT_TF_DST, LCT_TF_SPORT, LCT_TF_DPORT, LCT_TF_ITYPE,
	LCT_TF_ICODE, LCT_TF_IID, LCT_TF_PACKETS, LCT_TF_BYTES, LCT_TF_ZONE,
	LCT_TF_PROTONUM, LCT_TF_NONE
};

static const char *const lct_tfield_names[] = {
	"src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
	"packets", "bytes", "zone", "protonum", NULL
};

static int lct_tfield(const char *k, size_t n)
{
	switch (n) {
	case 3:
		if (memcmp(k, "src", 3) == 0) return LCT_TF_SRC;
		if (memcmp(k, "dst", 3) == 0) return LCT_TF_DST;
		break;
	case 4:
		if (memcmp(k, "zone", 4) == 0) return LCT_TF_ZONE;
		break;
	case 5:
		if (memcmp(k, "sport", 5) == 0) return LCT_TF_SPORT;
		if (memcmp(k, "dport", 5) == 0) return LCT_TF_DPORT;
		if (memcmp(k, "bytes", 5) == 0) return LCT_TF_BYTES;
		break;
	case 7:
		if (memcmp(k, "packets", 7) == 0) return LCT_TF_PACKETS;
		if (memcmp(k, "icmp_id", 7) == 0) return LCT_TF_IID;
		break;
	case 8:
		if (memcmp(k, "protonum", 8) == 0) return LCT_TF_PROTONUM;
		break;
	case 9:
		if (memcmp(k, "icmp_type", 9) == 0) return LCT_TF_ITYPE;
		if (memcmp(k, "icmp_code", 9) == 0) return LCT_TF_ICODE;
		break;
	}
	return LCT_TF_NONE;
}

/* Pushes one field of a tuple (nil when absent). */
static void lct_t_push(lua_State *L, const struct lct_tuple *t, int f)
{
	const struct nlattr *nest = lct_t_nest(t), *proto, *a;
	uint8_t pnum = 0, u8;
	uint16_t u16;
	uint64_t u64;

	switch (f) {
	case LCT_TF_SRC:
	case LCT_TF_DST:
		lct_push_addr(L, lct_child(nest, CTA_TUPLE_IP), f == LCT_TF_SRC);
		return;
	case LCT_TF_PACKETS:
	case LCT_TF_BYTES:
		a = lct_child(lct_t_counters(t), f == LCT_TF_PACKETS ?
			      CTA_COUNTERS_PACKETS : CTA_COUNTERS_BYTES);
		if (a == NULL)
			a = lct_child(lct_t_counters(t), f == LCT_TF_PACKETS ?
				      CTA_COUNTERS32_PACKETS : CTA_COUNTERS32_BYTES);
		if (lct_u64(a, &u64))
			lct_pushu64(L, u64);
		else
			lua_pushnil(L);
		return;
	case LCT_TF_ZONE:
		if (lct_u16(lct_child(nest, CTA_TUPLE_ZONE), &u16))
			lua_pushinteger(L, u16);
		else
			lua_pushnil(L);
		return;
	}
	proto = lct_child(nest, CTA_TUPLE_PROTO);
	lct_u8(lct_child(proto, CTA_PROTO_NUM), &pnum);
	switch (f) {
	case LCT_TF_PROTONUM:
		if (proto != NULL)
			lua_pushinteger(L, pnum);
		else
			lua_pushnil(L);
		return;
	case LCT_TF_SPORT:
	case LCT_TF_DPORT:
		if (lct_u16(lct_child(proto, f == LCT_TF_SPORT ?
				      CTA_PROTO_SRC_PORT : CTA_PROTO_DST_PORT), &u16))
			lua_pushinteger(L, u16);
		else
			lua_pushnil(L);
		return;
	case LCT_TF_ITYPE:
	case LCT_TF_ICODE:
		if (pnum == IPPROTO_ICMPV6)
			a = lct_child(proto, f == LCT_TF_ITYPE ?
				      CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMPV6_CODE);
		else
			a = lct_child(proto, f == LCT_TF_ITYPE ?
				      CTA_PROTO_ICMP_TYPE : CTA_PROTO_ICMP_CODE);
		if (lct_u8(a, &u8))
			lua_pushinteger(L, u8);
		else
			lua_pushnil(L);
		return;
	case LCT_TF_IID:
		a = lct_child(proto, pnum == IPPROTO_ICMPV6 ?
			      CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID);
		if (lct_u16(a, &u16))
			lua_pushinteger(L, u16);
		else
			lua_pushnil(L);
		return;
	}
	lua_pushnil(L);
}

static void lct_dir_totable(lua_State *L, const struct nlattr *tuple,
			    const struct nlattr *ctr);

static int lct_t_totable_l(lua_State *L)
{
	const struct lct_tuple *t = luaL_checkudata(L, 1, LCT_TUPLE_MT);

	lct_dir_totable(L, lct_t_nest(t), lct_t_counters(t));
	return 1;
}

static int lct_t_index(lua_State *L)
{
	const struct lct_tuple *t = lct_fastcheck(L, 1, &lct_tuple_key, LCT_TUPLE_MT);
	size_t n;
	const char *k = lua_tolstring(L, 2, &n);
	int f;

	if (k == NULL || lua_type(L, 2) != LUA_TSTRING) {
		lua_pushnil(L);
		return 1;
	}
	f = lct_tfield(k, n);
	if (f != LCT_TF_NONE) {
		lct_t_push(L, t, f);
		return 1;
	}
	if (n == 7 && memcmp(k, "totable", 7) == 0) {
		lua_pushcfunction(L, lct_t_totable_l);
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

static int lct_t_tostring(lua_State *L)
{
	const struct lct_tuple *t = luaL_checkudata(L, 1, LCT_TUPLE_MT);
	int f, n = 0;

	for (f = 0; f < LCT_TF_NONE; f++) {
		if (f == LCT_TF_PROTONUM || f == LCT_TF_ZONE)
			continue;
		lct_t_push(L, t, f);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		lua_pushfstring(L, "%s%s=%s", n ? " " : "", lct_tfield_names[f],
				lua_tostring(L, -1));
		lua_remove(L, -2);
		n++;
	}
	lua_concat(L, n);
	return 1;
}

static void lct_push_tuple(lua_State *L, struct lct_entry *e, int reply)
{
	const struct nlattr *tn = lct_attr(e, reply ? CTA_TUPLE_REPLY : CTA_TUPLE_ORIG);
	const struct nlattr *cn = lct_attr(e, reply ? CTA_COUNTERS_REPLY : CTA_COUNTERS_ORIG);
	uint16_t tlen = tn ? MNL_ALIGN(tn->nla_len) : 0;
	uint16_t clen = cn ? MNL_ALIGN(cn->nla_len) : 0;
	struct lct_tuple *t;

	if (tn == NULL) {
		lua_pushnil(L);
		return;
	}
	/* Aligned lengths may pass the message end for the last attribute. */
	if ((const char *)tn + tlen > (const char *)e->msg + e->len)
		tlen = tn->nla_len;
	if (cn && (const char *)cn + clen > (const char *)e->msg + e->len)
		clen = cn->nla_len;
	t = lct_newuserdata(L, sizeof(*t) + tlen + clen + 8);
	t->family = ((const struct nfgenmsg *)mnl_nlmsg_get_payload(lct_msg(e)))->nfgen_family;
	t->tlen = tlen;
	t->clen = clen;
	memcpy(t->data, tn, tn->nla_len);
	if (cn)
		memcpy((char *)t->data + tlen, cn, cn->nla_len);
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_tuple_key);
	lua_setmetatable(L, -2);
}

/* ---- entries ----------------------------------------------------------- */

void lct_entry_push(lua_State *L, const struct nlmsghdr *nlh, int evtype)
{
	struct lct_entry *e;
	uint32_t len = nlh->nlmsg_len;

	e = lct_newuserdata(L, sizeof(*e) + len);
	e->len = len;
	e->evtype = (uint8_t)evtype;
	e->indexed = 0;
	memset(e->off, 0, sizeof(e->off));
	memcpy(e->msg, nlh, len);
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_entry_key);
	lua_setmetatable(L, -2);
}

static uint8_t lct_e_protonum(struct lct_entry *e, int *ok)
{
	const struct nlattr *p;
	uint8_t v = 0;

	p = lct_child(lct_child(lct_attr(e, CTA_TUPLE_ORIG), CTA_TUPLE_PROTO),
		      CTA_PROTO_NUM);
	*ok = lct_u8(p, &v);
	return v;
}

static void lct_push_family(lua_State *L, struct lct_entry *e)
{
	uint8_t f = ((const struct nfgenmsg *)mnl_nlmsg_get_payload(lct_msg(e)))->nfgen_family;

	if (f == AF_INET)
		lua_pushliteral(L, "ipv4");
	else if (f == AF_INET6)
		lua_pushliteral(L, "ipv6");
	else
		lua_pushfstring(L, "%d", (int)f);
}

static void lct_push_proto(lua_State *L, struct lct_entry *e)
{
	int ok;
	uint8_t p = lct_e_protonum(e, &ok);
	const char *name;

	if (!ok) {
		lua_pushnil(L);
		return;
	}
	name = lct_proto_name(p);
	if (name != NULL)
		lua_pushstring(L, name);
	else
		lua_pushfstring(L, "%d", (int)p);
}

static void lct_push_state(lua_State *L, struct lct_entry *e)
{
	const struct nlattr *pi = lct_attr(e, CTA_PROTOINFO), *a;
	uint8_t s;
	const char *name = NULL;

	if ((a = lct_child(pi, CTA_PROTOINFO_TCP)) != NULL) {
		if (lct_u8(lct_child(a, CTA_PROTOINFO_TCP_STATE), &s))
			name = lct_state_name(IPPROTO_TCP, s);
	} else if ((a = lct_child(pi, CTA_PROTOINFO_SCTP)) != NULL) {
		if (lct_u8(lct_child(a, CTA_PROTOINFO_SCTP_STATE), &s))
			name = lct_state_name(IPPROTO_SCTP, s);
	} else if ((a = lct_child(pi, CTA_PROTOINFO_DCCP)) != NULL) {
		if (lct_u8(lct_child(a, CTA_PROTOINFO_DCCP_STATE), &s))
			name = lct_state_name(IPPROTO_DCCP, s);
	} else {
		lua_pushnil(L);
		return;
	}
	if (name != NULL)
		lua_pushstring(L, name);
	else
		lua_pushnil(L);
}

static void lct_push_u32attr(lua_State *L, struct lct_entry *e, unsigned int type)
{
	uint32_t v;

	if (lct_u32(lct_attr(e, type), &v))
		lua_pushinteger(L, (lua_Integer)v);
	else
		lua_pushnil(L);
}

static void lct_push_status(lua_State *L, struct lct_entry *e)
{
	uint32_t v;
	int i;

	if (!lct_u32(lct_attr(e, CTA_STATUS), &v)) {
		lua_pushnil(L);
		return;
	}
	lua_createtable(L, 0, 6);
	for (i = 0; lct_status_names[i] != NULL; i++) {
		if (v & (1u << i)) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, lct_status_names[i]);
		}
	}
	for (; i < 32; i++) {
		if (v & (1u << i)) {
			lua_pushboolean(L, 1);
			lua_rawseti(L, -2, i);
		}
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
	p = mnl_attr_get_payload(a);
	n = mnl_attr_get_payload_len(a) * 8;
	map = lct_labelmap(L);
	lua_newtable(L);
	for (i = 0; i < n; i++) {
		/* The kernel stores labels as an array of unsigned longs. */
		unsigned int word = i / 32, bit = i % 32;
		uint32_t w;

		memcpy(&w, p + word * 4, 4);
		if (!(w & (1u << bit)))
			continue;
		{
			const char *name = map ? nfct_labelmap_get_name(map, i) : NULL;

			if (name != NULL && *name)
				lua_pushstring(L, name);
			else
				lua_pushinteger(L, i);
		}
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
	}
}

static void lct_push_ts(lua_State *L, struct lct_entry *e, unsigned int which)
{
	uint64_t v;

	if (lct_u64(lct_child(lct_attr(e, CTA_TIMESTAMP), which), &v))
		lct_pushu64(L, v);
	else
		lua_pushnil(L);
}

static void lct_push_str(lua_State *L, struct lct_entry *e, unsigned int type,
			 unsigned int child)
{
	const struct nlattr *a = lct_child(lct_attr(e, type), child);

	if (a == NULL || mnl_attr_get_payload_len(a) == 0) {
		lua_pushnil(L);
		return;
	}
	lua_pushlstring(L, mnl_attr_get_str(a),
			strnlen(mnl_attr_get_str(a), mnl_attr_get_payload_len(a)));
}

enum {
	LCT_EF_FAMILY, LCT_EF_PROTO, LCT_EF_PROTONUM, LCT_EF_ORIG,
	LCT_EF_REPLY, LCT_EF_STATE, LCT_EF_TIMEOUT, LCT_EF_MARK,
	LCT_EF_SECMARK, LCT_EF_USE, LCT_EF_ID, LCT_EF_ZONE, LCT_EF_STATUS,
	LCT_EF_LABELS, LCT_EF_START, LCT_EF_STOP, LCT_EF_HELPER,
	LCT_EF_SECCTX, LCT_EF_TYPE, LCT_EF_NONE
};

static const char *const lct_efield_names[] = {
	"family", "proto", "protonum", "orig", "reply", "state", "timeout",
	"mark", "secmark", "use", "id", "zone", "status", "labels", "start",
	"stop", "helper", "secctx", "type", NULL
};

static int lct_efield(const char *k, size_t n)
{
	switch (n) {
	case 2:
		if (memcmp(k, "id", 2) == 0) return LCT_EF_ID;
		break;
	case 3:
		if (memcmp(k, "use", 3) == 0) return LCT_EF_USE;
		break;
	case 4:
		if (memcmp(k, "orig", 4) == 0) return LCT_EF_ORIG;
		if (memcmp(k, "mark", 4) == 0) return LCT_EF_MARK;
		if (memcmp(k, "zone", 4) == 0) return LCT_EF_ZONE;
		if (memcmp(k, "stop", 4) == 0) return LCT_EF_STOP;
		if (memcmp(k, "type", 4) == 0) return LCT_EF_TYPE;
		break;
	case 5:
		if (memcmp(k, "proto", 5) == 0) return LCT_EF_PROTO;
		if (memcmp(k, "reply", 5) == 0) return LCT_EF_REPLY;
		if (memcmp(k, "state", 5) == 0) return LCT_EF_STATE;
		if (memcmp(k, "start", 5) == 0) return LCT_EF_START;
		break;
	case 6:
		if (memcmp(k, "family", 6) == 0) return LCT_EF_FAMILY;
		if (memcmp(k, "status", 6) == 0) return LCT_EF_STATUS;
		if (memcmp(k, "labels", 6) == 0) return LCT_EF_LABELS;
		if (memcmp(k, "helper", 6) == 0) return LCT_EF_HELPER;
		if (memcmp(k, "secctx", 6) == 0) return LCT_EF_SECCTX;
		break;
	case 7:
		if (memcmp(k, "timeout", 7) == 0) return LCT_EF_TIMEOUT;
		if (memcmp(k, "secmark", 7) == 0) return LCT_EF_SECMARK;
		break;
	case 8:
		if (memcmp(k, "protonum", 8) == 0) return LCT_EF_PROTONUM;
		break;
	}
	return LCT_EF_NONE;
}

static void lct_e_push(lua_State *L, struct lct_entry *e, int f)
{
	int ok;
	uint8_t p;
	uint16_t z;

	switch (f) {
	case LCT_EF_FAMILY: lct_push_family(L, e); return;
	case LCT_EF_PROTO: lct_push_proto(L, e); return;
	case LCT_EF_PROTONUM:
		p = lct_e_protonum(e, &ok);
		if (ok)
			lua_pushinteger(L, p);
		else
			lua_pushnil(L);
		return;
	case LCT_EF_ORIG: lct_push_tuple(L, e, 0); return;
	case LCT_EF_REPLY: lct_push_tuple(L, e, 1); return;
	case LCT_EF_STATE: lct_push_state(L, e); return;
	case LCT_EF_TIMEOUT: lct_push_u32attr(L, e, CTA_TIMEOUT); return;
	case LCT_EF_MARK: lct_push_u32attr(L, e, CTA_MARK); return;
	case LCT_EF_SECMARK: lct_push_u32attr(L, e, CTA_SECMARK); return;
	case LCT_EF_USE: lct_push_u32attr(L, e, CTA_USE); return;
	case LCT_EF_ID: lct_push_u32attr(L, e, CTA_ID); return;
	case LCT_EF_ZONE:
		if (lct_u16(lct_attr(e, CTA_ZONE), &z))
			lua_pushinteger(L, z);
		else
			lua_pushnil(L);
		return;
	case LCT_EF_STATUS: lct_push_status(L, e); return;
	case LCT_EF_LABELS: lct_push_labels(L, e); return;
	case LCT_EF_START: lct_push_ts(L, e, CTA_TIMESTAMP_START); return;
	case LCT_EF_STOP: lct_push_ts(L, e, CTA_TIMESTAMP_STOP); return;
	case LCT_EF_HELPER: lct_push_str(L, e, CTA_HELP, CTA_HELP_NAME); return;
	case LCT_EF_SECCTX: lct_push_str(L, e, CTA_SECCTX, CTA_SECCTX_NAME); return;
	case LCT_EF_TYPE:
		if (e->evtype > 0 && e->evtype < 4)
			lua_pushstring(L, lct_ev_names[e->evtype]);
		else
			lua_pushnil(L);
		return;
	}
	lua_pushnil(L);
}

static struct lct_entry *lct_checkentry(lua_State *L, int idx)
{
	return lct_fastcheck(L, idx, &lct_entry_key, LCT_ENTRY_MT);
}

static void lct_set_addr_field(lua_State *L, int family, const struct nlattr *a,
			       const char *k)
{
	char buf[INET6_ADDRSTRLEN];
	size_t need = family == AF_INET ? 4 : 16;

	if (a == NULL || mnl_attr_get_payload_len(a) < need)
		return;
	lua_pushlstring(L, buf, lct_ntop(family, mnl_attr_get_payload(a), buf));
	lua_setfield(L, -2, k);
}

static void lct_set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

/* A direction as a plain table, from one walk of its attributes. */
static void lct_dir_totable(lua_State *L, const struct nlattr *tuple,
			    const struct nlattr *ctr)
{
	struct lct_dir d;
	uint64_t u64;
	uint16_t u16;
	uint8_t u8;

	lct_dir_parse(tuple, ctr, &d);
	lua_createtable(L, 0, 6);
	if (d.src4 || d.dst4) {
		lct_set_addr_field(L, AF_INET, d.src4, "src");
		lct_set_addr_field(L, AF_INET, d.dst4, "dst");
	} else {
		lct_set_addr_field(L, AF_INET6, d.src6, "src");
		lct_set_addr_field(L, AF_INET6, d.dst6, "dst");
	}
	if (lct_u16(d.sport, &u16))
		lct_set_int(L, "sport", u16);
	if (lct_u16(d.dport, &u16))
		lct_set_int(L, "dport", u16);
	if (lct_u8(d.itype, &u8))
		lct_set_int(L, "icmp_type", u8);
	if (lct_u8(d.icode, &u8))
		lct_set_int(L, "icmp_code", u8);
	if (lct_u16(d.iid, &u16))
		lct_set_int(L, "icmp_id", u16);
	if (lct_u16(d.zone, &u16))
		lct_set_int(L, "zone", u16);
	if (lct_u64(d.packets, &u64)) {
		lct_pushu64(L, u64);
		lua_setfield(L, -2, "packets");
	}
	if (lct_u64(d.bytes, &u64)) {
		lct_pushu64(L, u64);
		lua_setfield(L, -2, "bytes");
	}
}

static int lct_e_totable(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1);
	const struct nlattr *a;
	uint32_t u32;
	uint16_t u16;
	int f, ok;
	uint8_t p;
	static const struct {
		unsigned int type;
		const char *name;
	} u32s[] = {
		{CTA_TIMEOUT, "timeout"}, {CTA_MARK, "mark"}, {CTA_SECMARK, "secmark"},
		{CTA_USE, "use"}, {CTA_ID, "id"},
	};

	lua_createtable(L, 0, 16);
	lct_push_family(L, e);
	lua_setfield(L, -2, "family");
	p = lct_e_protonum(e, &ok);
	if (ok) {
		const char *name = lct_proto_name(p);

		if (name != NULL)
			lua_pushstring(L, name);
		else
			lua_pushfstring(L, "%d", (int)p);
		lua_setfield(L, -2, "proto");
		lct_set_int(L, "protonum", p);
	}
	if ((a = lct_attr(e, CTA_TUPLE_ORIG)) != NULL) {
		lct_dir_totable(L, a, lct_attr(e, CTA_COUNTERS_ORIG));
		lua_setfield(L, -2, "orig");
	}
	if ((a = lct_attr(e, CTA_TUPLE_REPLY)) != NULL) {
		lct_dir_totable(L, a, lct_attr(e, CTA_COUNTERS_REPLY));
		lua_setfield(L, -2, "reply");
	}
	for (f = 0; f < (int)(sizeof(u32s) / sizeof(u32s[0])); f++)
		if (lct_u32(lct_attr(e, u32s[f].type), &u32))
			lct_set_int(L, u32s[f].name, (lua_Integer)u32);
	if (lct_u16(lct_attr(e, CTA_ZONE), &u16))
		lct_set_int(L, "zone", u16);
	if (lct_attr(e, CTA_PROTOINFO) != NULL) {
		lct_push_state(L, e);
		lua_setfield(L, -2, "state");
	}
	if (lct_attr(e, CTA_STATUS) != NULL) {
		lct_push_status(L, e);
		lua_setfield(L, -2, "status");
	}
	for (f = LCT_EF_LABELS; f < LCT_EF_NONE; f++) {
		lct_e_push(L, e, f);
		if (lua_isnil(L, -1))
			lua_pop(L, 1);
		else
			lua_setfield(L, -2, lct_efield_names[f]);
	}
	return 1;
}

/* Text through the library, so that it is the CLI's text exactly. */
static int lct_e_text(lua_State *L, struct lct_entry *e, unsigned int type,
		      unsigned int flags, struct nfct_labelmap *map, int lib)
{
	struct nf_conntrack *ct;
	char buf[4096];
	unsigned int msgtype = NFCT_T_UNKNOWN;
	int n;

	if (type == NFCT_O_DEFAULT && map == NULL && !lib) {
		size_t len = lct_format(lct_msg(e), e->evtype, flags, buf, sizeof(buf));

		lua_pushlstring(L, buf, len);
		return 1;
	}
	ct = nfct_new();
	if (ct == NULL)
		return lct_error(L, "tostring: out of memory");
	switch (e->evtype) {
	case 1: msgtype = NFCT_T_NEW; break;
	case 2: msgtype = NFCT_T_UPDATE; break;
	case 3: msgtype = NFCT_T_DESTROY; break;
	}
	nfct_nlmsg_parse(lct_msg(e), ct);
	n = nfct_snprintf_labels(buf, sizeof(buf), ct, msgtype, type, flags, map);
	nfct_destroy(ct);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

static int lct_e_tostring(lua_State *L)
{
	return lct_e_text(L, lct_checkentry(L, 1), NFCT_O_DEFAULT, 0, NULL, 0);
}

/*
 * e:format([opts]): the CLI's -o options as a comma list: "extended",
 * "id", "ktimestamp", "labels", "xml".
 */
static int lct_e_format(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1);
	const char *o = luaL_optstring(L, 2, "");
	unsigned int type = NFCT_O_DEFAULT, flags = 0;
	struct nfct_labelmap *map = NULL;
	int lib = 0;

	while (*o) {
		size_t n = strcspn(o, ",");

		if (n == 8 && memcmp(o, "extended", 8) == 0)
			flags |= NFCT_OF_SHOW_LAYER3;
		else if (n == 2 && memcmp(o, "id", 2) == 0)
			flags |= NFCT_OF_ID;
		else if (n == 10 && memcmp(o, "ktimestamp", 10) == 0)
			flags |= NFCT_OF_TIMESTAMP;
		else if (n == 6 && memcmp(o, "labels", 6) == 0)
			map = lct_labelmap(L);
		else if (n == 3 && memcmp(o, "xml", 3) == 0)
			type = NFCT_O_XML;
		else if (n == 7 && memcmp(o, "default", 7) == 0)
			;
		else if (n == 7 && memcmp(o, "library", 7) == 0)
			lib = 1;	/* through libnetfilter_conntrack, for checks */
		else if (n > 0) {
			lua_pushlstring(L, o, n);
			return lct_error(L, "format: bad argument 'opts' (unknown output option '%s')",
					  lua_tostring(L, -1));
		}
		o += n;
		if (*o == ',')
			o++;
	}
	return lct_e_text(L, e, type, flags, map, lib);
}

static int lct_e_index(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1);
	size_t n;
	const char *k;
	int f;

	if (lua_type(L, 2) != LUA_TSTRING) {
		lua_pushnil(L);
		return 1;
	}
	k = lua_tolstring(L, 2, &n);
	f = lct_efield(k, n);
	if (f != LCT_EF_NONE) {
		lct_e_push(L, e, f);
		return 1;
	}
	/* Methods, then the table Lua-side code may extend. */
	lua_getmetatable(L, 1);
	lua_getfield(L, -1, "methods");
	lua_pushvalue(L, 2);
	lua_rawget(L, -2);
	return 1;
}

static int lct_e_eq(lua_State *L)
{
	struct lct_entry *a = luaL_testudata(L, 1, LCT_ENTRY_MT);
	struct lct_entry *b = luaL_testudata(L, 2, LCT_ENTRY_MT);

	lua_pushboolean(L, a && b && a->len == b->len &&
			memcmp(a->msg, b->msg, a->len) == 0);
	return 1;
}

/* The message itself, for code that wants to decode it another way. */
static int lct_e_raw(lua_State *L)
{
	struct lct_entry *e = lct_checkentry(L, 1);

	lua_pushlstring(L, (const char *)e->msg, e->len);
	return 1;
}

/* Per-Lua-state label map, loaded once from the default file (or absent). */
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

	lua_getfield(L, LUA_REGISTRYINDEX, "conntrack.labelmap");
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
	lua_setfield(L, LUA_REGISTRYINDEX, "conntrack.labelmap");
	return *m;
}

static const luaL_Reg lct_entry_methods[] = {
	{"totable", lct_e_totable},
	{"format", lct_e_format},
	{"raw", lct_e_raw},
	{NULL, NULL}
};

void lct_entry_open(lua_State *L)
{
	luaL_newmetatable(L, LCT_ENTRY_MT);
	lua_pushvalue(L, -1);
	lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_entry_key);
	lua_pushcfunction(L, lct_e_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, lct_e_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushcfunction(L, lct_e_eq);
	lua_setfield(L, -2, "__eq");
	lua_pushliteral(L, LCT_ENTRY_MT);
	lua_setfield(L, -2, "__name");
	lua_newtable(L);
	luaL_setfuncs(L, lct_entry_methods, 0);
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "methods");
	lua_setfield(L, -3, "entry_methods");
	lua_pop(L, 1);

	luaL_newmetatable(L, LCT_TUPLE_MT);
	lua_pushvalue(L, -1);
	lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_tuple_key);
	lua_pushcfunction(L, lct_t_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, lct_t_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, LCT_TUPLE_MT);
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}

/*
 * For get/delete/update given an entry: its original tuple and zone, in a
 * fresh object.  Returns the family.
 */
uint8_t lct_entry_to_ct(lua_State *L, int idx, struct nf_conntrack *ct)
{
	struct lct_entry *e = lct_checkentry(L, idx);
	struct nf_conntrack *tmp = nfct_new();
	uint8_t family;

	if (tmp == NULL)
		return (uint8_t)lct_error(L, "conntrack: out of memory");
	nfct_nlmsg_parse(lct_msg(e), tmp);
	nfct_copy(ct, tmp, NFCT_CP_ORIG);
	if (nfct_attr_is_set(tmp, ATTR_ZONE))
		nfct_set_attr_u16(ct, ATTR_ZONE, nfct_get_attr_u16(tmp, ATTR_ZONE));
	family = nfct_get_attr_u8(tmp, ATTR_ORIG_L3PROTO);
	nfct_destroy(tmp);
	return family;
}

/*
 * Appends the entry's CTA_TUPLE_ORIG and CTA_ZONE to nlh as they came, for
 * a delete of the entry without going through a conntrack object.
 * Returns the entry's family, or -1 when it has no tuple.
 */
int lct_entry_put_orig(lua_State *L, int idx, struct nlmsghdr *nlh)
{
	return lct_msg_put_orig(nlh, lct_msg(lct_checkentry(L, idx)));
}

/*
 * The same from a conntrack message m itself (h:purge deletes what a dump
 * returns without making entries).
 */
int lct_msg_put_orig(struct nlmsghdr *nlh, const struct nlmsghdr *m)
{
	const struct nlattr *a, *t = NULL, *z = NULL;

	mnl_attr_for_each(a, m, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) == CTA_TUPLE_ORIG && t == NULL)
			t = a;
		else if (mnl_attr_get_type(a) == CTA_ZONE && z == NULL)
			z = a;
	}
	if (t == NULL)
		return -1;
	mnl_attr_put(nlh, CTA_TUPLE_ORIG, mnl_attr_get_payload_len(t),
		     mnl_attr_get_payload(t));
	if (z != NULL)
		mnl_attr_put(nlh, CTA_ZONE, mnl_attr_get_payload_len(z),
			     mnl_attr_get_payload(z));
	return ((const struct nfgenmsg *)mnl_nlmsg_get_payload(m))->nfgen_family;
}

int lct_is_entry(lua_State *L, int idx)
{
	int ok = 0;

	if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
		lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_entry_key);
		ok = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	return ok;
}
