/*
 * Lua tables to requests: a table is read once (one lua_next pass) into a
 * struct lct_spec, checking every field, then written as ctnetlink
 * attributes.  The same reader serves tuples (get, delete), specs (create,
 * add, load, synthetic entries) and changes (update).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include "lct.h"

#define T LCT_K_TUPLE
#define S LCT_K_SPEC
#define C LCT_K_CHANGES
#define E LCT_K_ENTRY
static const struct {
	const char *name;
	int kinds;
} lct_fields[F_N] = {
	[F_FAMILY] = {"family", T | S | E}, [F_PROTO] = {"proto", T | S | E},
	[F_SRC] = {"src", T | S | E}, [F_DST] = {"dst", T | S | E},
	[F_SPORT] = {"sport", T | S | E}, [F_DPORT] = {"dport", T | S | E},
	[F_ITYPE] = {"icmp_type", T | S | E}, [F_ICODE] = {"icmp_code", T | S | E},
	[F_IID] = {"icmp_id", T | S | E}, [F_OZONE] = {"orig_zone", T | S | E},
	[F_SRCKEY] = {"srckey", T | S | E}, [F_DSTKEY] = {"dstkey", T | S | E},
	[F_RSRC] = {"reply_src", T | S | E}, [F_RDST] = {"reply_dst", T | S | E},
	[F_RSPORT] = {"reply_sport", T | S | E}, [F_RDPORT] = {"reply_dport", T | S | E},
	[F_RZONE] = {"reply_zone", T | S | E}, [F_RSRCKEY] = {"reply_srckey", T | S | E},
	[F_RDSTKEY] = {"reply_dstkey", T | S | E}, [F_ZONE] = {"zone", T | S | E},
	[F_TIMEOUT] = {"timeout", S | C | E}, [F_MARK] = {"mark", S | C | E},
	[F_MARKMASK] = {"mark_mask", C}, [F_STATE] = {"state", S | C | E},
	[F_STATUS] = {"status", S | C | E}, [F_LABELS] = {"labels", S | C | E},
	[F_LABELSMASK] = {"labels_mask", C}, [F_LABELADD] = {"label_add", C},
	[F_LABELDEL] = {"label_del", C}, [F_SECMARK] = {"secmark", S | E},
	[F_SNAT] = {"snat", S | E}, [F_DNAT] = {"dnat", S | E},
	[F_HELPER] = {"helper", S | E},
	[F_FLAGS0] = {"tcp_flags_orig", S | C | E}, [F_FLAGS1] = {"tcp_flags_reply", S | C | E},
	[F_WSCALE0] = {"tcp_wscale_orig", S | C | E}, [F_WSCALE1] = {"tcp_wscale_reply", S | C | E},
	[F_VTAG0] = {"orig_vtag", S | C | E}, [F_VTAG1] = {"reply_vtag", S | C | E},
	[F_ROLE] = {"role", S | E},
	[F_TYPE] = {"type", E}, [F_ID] = {"id", E}, [F_USE] = {"use", E},
	[F_PKTS0] = {"orig_packets", E}, [F_BYTES0] = {"orig_bytes", E},
	[F_PKTS1] = {"reply_packets", E}, [F_BYTES1] = {"reply_bytes", E},
};
#undef T
#undef S
#undef C
#undef E

/*
 * A field name to its id, or -1: by length, then the few names of that
 * length (a table's keys are read once per request: no Lua lookup).
 */
static int lct_field_find(const char *s, size_t n)
{
	switch (n) {
	case 2:
		if (memcmp(s, "id", 2) == 0)
			return F_ID;
		break;
	case 3:
		if (memcmp(s, "src", 3) == 0)
			return F_SRC;
		if (memcmp(s, "dst", 3) == 0)
			return F_DST;
		if (memcmp(s, "use", 3) == 0)
			return F_USE;
		break;
	case 4:
		if (memcmp(s, "zone", 4) == 0)
			return F_ZONE;
		if (memcmp(s, "mark", 4) == 0)
			return F_MARK;
		if (memcmp(s, "snat", 4) == 0)
			return F_SNAT;
		if (memcmp(s, "dnat", 4) == 0)
			return F_DNAT;
		if (memcmp(s, "role", 4) == 0)
			return F_ROLE;
		if (memcmp(s, "type", 4) == 0)
			return F_TYPE;
		break;
	case 5:
		if (memcmp(s, "proto", 5) == 0)
			return F_PROTO;
		if (memcmp(s, "sport", 5) == 0)
			return F_SPORT;
		if (memcmp(s, "dport", 5) == 0)
			return F_DPORT;
		if (memcmp(s, "state", 5) == 0)
			return F_STATE;
		break;
	case 6:
		if (memcmp(s, "family", 6) == 0)
			return F_FAMILY;
		if (memcmp(s, "srckey", 6) == 0)
			return F_SRCKEY;
		if (memcmp(s, "dstkey", 6) == 0)
			return F_DSTKEY;
		if (memcmp(s, "status", 6) == 0)
			return F_STATUS;
		if (memcmp(s, "labels", 6) == 0)
			return F_LABELS;
		if (memcmp(s, "helper", 6) == 0)
			return F_HELPER;
		break;
	case 7:
		if (memcmp(s, "icmp_id", 7) == 0)
			return F_IID;
		if (memcmp(s, "timeout", 7) == 0)
			return F_TIMEOUT;
		if (memcmp(s, "secmark", 7) == 0)
			return F_SECMARK;
		break;
	case 9:
		if (memcmp(s, "icmp_type", 9) == 0)
			return F_ITYPE;
		if (memcmp(s, "icmp_code", 9) == 0)
			return F_ICODE;
		if (memcmp(s, "orig_zone", 9) == 0)
			return F_OZONE;
		if (memcmp(s, "reply_src", 9) == 0)
			return F_RSRC;
		if (memcmp(s, "reply_dst", 9) == 0)
			return F_RDST;
		if (memcmp(s, "mark_mask", 9) == 0)
			return F_MARKMASK;
		if (memcmp(s, "label_add", 9) == 0)
			return F_LABELADD;
		if (memcmp(s, "label_del", 9) == 0)
			return F_LABELDEL;
		if (memcmp(s, "orig_vtag", 9) == 0)
			return F_VTAG0;
		break;
	case 10:
		if (memcmp(s, "reply_zone", 10) == 0)
			return F_RZONE;
		if (memcmp(s, "reply_vtag", 10) == 0)
			return F_VTAG1;
		if (memcmp(s, "orig_bytes", 10) == 0)
			return F_BYTES0;
		break;
	case 11:
		if (memcmp(s, "reply_sport", 11) == 0)
			return F_RSPORT;
		if (memcmp(s, "reply_dport", 11) == 0)
			return F_RDPORT;
		if (memcmp(s, "labels_mask", 11) == 0)
			return F_LABELSMASK;
		if (memcmp(s, "reply_bytes", 11) == 0)
			return F_BYTES1;
		break;
	case 12:
		if (memcmp(s, "reply_srckey", 12) == 0)
			return F_RSRCKEY;
		if (memcmp(s, "reply_dstkey", 12) == 0)
			return F_RDSTKEY;
		if (memcmp(s, "orig_packets", 12) == 0)
			return F_PKTS0;
		break;
	case 13:
		if (memcmp(s, "reply_packets", 13) == 0)
			return F_PKTS1;
		break;
	case 14:
		if (memcmp(s, "tcp_flags_orig", 14) == 0)
			return F_FLAGS0;
		break;
	case 15:
		if (memcmp(s, "tcp_flags_reply", 15) == 0)
			return F_FLAGS1;
		if (memcmp(s, "tcp_wscale_orig", 15) == 0)
			return F_WSCALE0;
		break;
	case 16:
		if (memcmp(s, "tcp_wscale_reply", 16) == 0)
			return F_WSCALE1;
		break;
	}
	return -1;
}

typedef char lct_fields_fit[F_N <= LCT_NFIELDS ? 1 : -1];
#define lct_pending lct_reader

static const char *lct_fname(int id)
{
	return lct_fields[id].name;
}

/* Families are checked after the table is read, in a fixed order of fields. */
static void lct_family_of(lua_State *L, const char *fname, struct lct_pending *p,
			  int f, int id)
{
	(void)L;
	(void)fname;
	p->famof[id] = (uint8_t)f;
}

static void lct_family_check(lua_State *L, const char *fname, struct lct_pending *p)
{
	static const int order[] = { F_FAMILY, F_SRC, F_DST, F_RSRC, F_RDST, F_SNAT, F_DNAT };
	size_t i;

	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		int f = p->famof[order[i]];

		if (f == 0)
			continue;
		if (p->family != 0 && p->family != f)
			lct_argerror(L, fname, lct_fname(order[i]),
				     "IPv4 and IPv6 addresses mixed in one tuple");
		p->family = f;
	}
}

static void lct_read_addr(lua_State *L, const char *fname, struct lct_pending *p,
			  int id, uint8_t *out)
{
	lct_family_of(L, fname, p, lct_addr_arg(L, -1, fname, lct_fname(id), out), id);
}

/* "198.51.100.1", "198.51.100.1:4000", "[2001:db8::1]:80", "[2001:db8::1]", ":4000" or {addr =, port =}. */
static void lct_read_nat(lua_State *L, const char *fname, struct lct_pending *p,
			 int id, struct lct_nat *n)
{
	const char *s, *colon, *a;
	size_t len, alen;
	int port = -1;

	n->port = -1;
	n->family = 0;
	if (lua_istable(L, -1)) {
		static const char *const keys[] = { "addr", "port", NULL };
		int t = lua_gettop(L);
		int64_t v;

		lct_check_names(L, t, fname, keys);
		if (lct_int_field(L, t, "port", fname, 0, 65535, &v))
			n->port = (int)v;
		if (lct_rawfield(L, t, "addr") != LUA_TNIL) {
			n->family = (uint8_t)lct_addr_arg(L, -1, fname, lct_fname(id), n->addr);
			lct_family_of(L, fname, p, n->family, id);
		}
		lua_pop(L, 1);
		if (n->family == 0 && n->port < 0)
			lct_argerror(L, fname, lct_fname(id), "address or port expected");
		return;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		lct_argerror(L, fname, lct_fname(id), "\"addr[:port]\" or {addr =, port =} expected, got %s",
			     luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &len);
	a = s;
	alen = len;
	if (len > 0 && s[0] == '[') {
		const char *end = memchr(s, ']', len);

		if (end == NULL)
			goto bad;
		a = s + 1;
		alen = (size_t)(end - a);
		colon = end + 1 < s + len ? end + 1 : NULL;
		if (colon != NULL && *colon != ':')
			goto bad;
	} else {
		colon = memchr(s, ':', len);
		/* More than one colon and no brackets: an IPv6 address alone. */
		if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
			colon = NULL;
		if (colon != NULL)
			alen = (size_t)(colon - s);
	}
	if (colon != NULL) {
		const char *d = colon + 1, *end = s + len;

		if (d == end || end - d > 5)
			goto bad;
		for (port = 0; d < end; d++) {
			if (*d < '0' || *d > '9')
				goto bad;
			port = port * 10 + (*d - '0');
		}
		if (port > 65535)
			goto bad;
	}
	n->port = port;
	if (alen > 0) {
		n->family = (uint8_t)lct_pton(a, alen, n->addr);
		if (n->family == 0)
			goto bad;
		lct_family_of(L, fname, p, n->family, id);
	} else if (port < 0) {
		goto bad;
	}
	return;
bad:
	lct_argerror(L, fname, lct_fname(id),
		     "malformed %s (\"addr\", \"addr:port\", \"[v6addr]:port\" or \":port\")",
		     lct_shortval(L, -1));
}

/* The largest value of a field that is a plain integer; 0 for the others. */
static int64_t lct_int_max(int id)
{
	switch (id) {
	case F_SPORT: case F_DPORT: case F_RSPORT: case F_RDPORT:
	case F_SRCKEY: case F_DSTKEY: case F_RSRCKEY: case F_RDSTKEY:
	case F_IID: case F_OZONE: case F_RZONE: case F_ZONE:
		return 65535;
	case F_ITYPE: case F_ICODE:
		return 255;
	case F_TIMEOUT: case F_MARK: case F_MARKMASK: case F_SECMARK: case F_VTAG0: case F_VTAG1:
		return 0xffffffffLL;
	}
	return 0;
}

/* A plain integer field's value (in its range) into s or p. */
static void lct_set_int(int id, int64_t v, struct lct_spec *s, struct lct_pending *p)
{
	switch (id) {
	case F_SPORT: p->port[0][0] = (int)v; break;
	case F_DPORT: p->port[0][1] = (int)v; break;
	case F_RSPORT: p->port[1][0] = (int)v; break;
	case F_RDPORT: p->port[1][1] = (int)v; break;
	case F_SRCKEY: p->key[0][0] = (int)v; break;
	case F_DSTKEY: p->key[0][1] = (int)v; break;
	case F_RSRCKEY: p->key[1][0] = (int)v; break;
	case F_RDSTKEY: p->key[1][1] = (int)v; break;
	case F_ITYPE: p->icmp[0] = (int)v; break;
	case F_ICODE: p->icmp[1] = (int)v; break;
	case F_IID: p->icmp[2] = (int)v; break;
	case F_OZONE:
		s->orig.zone = (uint16_t)v;
		s->orig.set |= LCT_T_ZONE;
		break;
	case F_RZONE:
		s->reply.zone = (uint16_t)v;
		s->reply.set |= LCT_T_ZONE;
		break;
	case F_ZONE:
		s->zone = (uint16_t)v;
		s->has |= LCT_S_ZONE;
		break;
	case F_TIMEOUT:
		s->timeout = (uint32_t)v;
		s->has |= LCT_S_TIMEOUT;
		break;
	case F_MARK:
		s->mark = (uint32_t)v;
		s->has |= LCT_S_MARK;
		break;
	case F_MARKMASK:
		s->mark_mask = (uint32_t)v;
		s->has |= LCT_S_MARKMASK;
		break;
	case F_SECMARK:
		s->secmark = (uint32_t)v;
		s->has |= LCT_S_SECMARK;
		break;
	case F_VTAG0:
	case F_VTAG1: {
		int d = id == F_VTAG1;

		s->vtag[d] = (uint32_t)v;
		s->has |= d ? LCT_S_VTAG1 : LCT_S_VTAG0;
		break;
	}
	}
}

/* Where address field id goes, marked given. */
static uint8_t *lct_addr_slot(int id, struct lct_spec *s)
{
	struct lct_tup *t = id == F_SRC || id == F_DST ? &s->orig : &s->reply;
	int src = id == F_SRC || id == F_RSRC;

	t->set |= src ? LCT_T_SRC : LCT_T_DST;
	return src ? t->src : t->dst;
}

static uint32_t lct_u32v(lua_State *L, const char *fname, int id)
{
	return (uint32_t)lct_int_arg(L, -1, fname, lct_fname(id), 0, 0xffffffffLL);
}

/* One field's value (at the top) into s or p. */
static void lct_read_field(lua_State *L, const char *fname, int id,
			   struct lct_spec *s, struct lct_pending *p)
{
	int64_t hi = lct_int_max(id);

	if (hi > 0) {
		lct_set_int(id, lct_int_arg(L, -1, fname, lct_fname(id), 0, hi), s, p);
		return;
	}
	switch (id) {
	case F_FAMILY:
		lct_family_of(L, fname, p, lct_family_arg(L, -1, fname, "family"), id);
		break;
	case F_PROTO:
		p->proto = lct_proto_arg(L, -1, fname, "proto");
		break;
	case F_SRC:
	case F_DST:
	case F_RSRC:
	case F_RDST:
		lct_read_addr(L, fname, p, id, lct_addr_slot(id, s));
		break;
	case F_STATUS:
		s->status = lct_status_arg(L, -1, fname, "status");
		s->has |= LCT_S_STATUS;
		break;
	case F_STATE: {
		size_t n;
		const char *v;

		if (lua_type(L, -1) != LUA_TSTRING)
			lct_argerror(L, fname, "state", "state name expected, got %s",
				     luaL_typename(L, -1));
		v = lua_tolstring(L, -1, &n);
		if (n >= sizeof(p->state) || strlen(v) != n)
			lct_argerror(L, fname, "state", "unknown state %s", lct_shortval(L, -1));
		memcpy(p->state, v, n + 1);
		break;
	}
	case F_LABELS:
		lct_labels_arg(L, -1, fname, "labels", s->labels);
		s->has |= LCT_S_LABELS;
		break;
	case F_LABELSMASK:
		lct_labels_arg(L, -1, fname, "labels_mask", s->labels_mask);
		s->has |= LCT_S_LABELMASK;
		break;
	case F_LABELADD:
	case F_LABELDEL: {
		uint8_t bits[16];
		int i;

		lct_labels_arg(L, -1, fname, lct_fname(id), bits);
		for (i = 0; i < 16; i++) {
			if (bits[i] & s->labels_mask[i])
				lct_argerror(L, fname, lct_fname(id), "a label both added and removed");
			s->labels_mask[i] |= bits[i];
			if (id == F_LABELADD)
				s->labels[i] |= bits[i];
		}
		s->has |= id == F_LABELADD ? LCT_S_LABELADD : LCT_S_LABELDEL;
		break;
	}
	case F_SNAT:
		lct_read_nat(L, fname, p, id, &s->snat);
		s->has |= LCT_S_SNAT;
		break;
	case F_DNAT:
		lct_read_nat(L, fname, p, id, &s->dnat);
		s->has |= LCT_S_DNAT;
		break;
	case F_HELPER: {
		size_t n;
		const char *v;

		if (lua_type(L, -1) != LUA_TSTRING)
			lct_argerror(L, fname, "helper", "helper name expected, got %s",
				     luaL_typename(L, -1));
		v = lua_tolstring(L, -1, &n);
		if (n == 0 || n >= sizeof(s->helper) || strlen(v) != n)
			lct_argerror(L, fname, "helper", "bad helper name %s", lct_shortval(L, -1));
		memcpy(s->helper, v, n + 1);
		s->has |= LCT_S_HELPER;
		break;
	}
	case F_FLAGS0:
	case F_FLAGS1: {
		int d = id == F_FLAGS1;

		s->tcp_flags[d] = (uint8_t)lct_int_arg(L, -1, fname, lct_fname(id), 0, 255);
		s->tcp_mask[d] = 0xff;
		s->has |= d ? LCT_S_TCPFLAGS1 : LCT_S_TCPFLAGS0;
		break;
	}
	case F_WSCALE0:
	case F_WSCALE1: {
		int d = id == F_WSCALE1;

		s->tcp_wscale[d] = (uint8_t)lct_int_arg(L, -1, fname, lct_fname(id), 0, 14);
		s->has |= d ? LCT_S_WSCALE1 : LCT_S_WSCALE0;
		break;
	}
	case F_ROLE:
		if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "client") == 0)
			p->role = 0;
		else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "server") == 0)
			p->role = 1;
		else
			p->role = (int)lct_int_arg(L, -1, fname, "role", 0, 255);
		break;
	case F_TYPE: {
		const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		int t;

		for (t = 1; t < 4; t++)
			if (strcmp(v, lct_event_name(t)) == 0)
				break;
		if (t == 4)
			lct_argerror(L, fname, "type", "\"new\", \"update\" or \"destroy\" expected, got %s",
				     lct_shortval(L, -1));
		s->evtype = (uint8_t)t;
		s->has |= LCT_S_EVTYPE;
		break;
	}
	case F_ID:
		s->id = lct_u32v(L, fname, id);
		s->has |= LCT_S_ID;
		break;
	case F_USE:
		s->use = lct_u32v(L, fname, id);
		s->has |= LCT_S_USE;
		break;
	case F_PKTS0: case F_BYTES0: case F_PKTS1: case F_BYTES1: {
		int d = id == F_PKTS1 || id == F_BYTES1;
		uint64_t v = (uint64_t)lct_int_arg(L, -1, fname, lct_fname(id), 0, INT64_MAX);

		if (id == F_PKTS0 || id == F_PKTS1)
			s->packets[d] = v;
		else
			s->bytes[d] = v;
		s->has |= d ? LCT_S_COUNTERS1 : LCT_S_COUNTERS0;
		break;
	}
	}
}

/* Reads the table at t; only fields allowed in kinds. */
/* A field these kinds do not take. */
static void lct_kinds_error(lua_State *L, const char *fname, const char *name, int kinds)
{
	lct_argerror(L, fname, name, "not a field of %s", kinds & LCT_K_CHANGES ? "changes" :
		     kinds & LCT_K_TUPLE ? "a tuple" : "a spec");
}

static void lct_read(lua_State *L, int t, int kinds, const char *fname,
		     struct lct_spec *s, struct lct_pending *p)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		size_t n;
		const char *k;
		int id;

		if (lua_type(L, -2) != LUA_TSTRING)
			lct_error(L, "%s: bad argument (field names must be strings, got %s)",
				  fname, luaL_typename(L, -2));
		k = lua_tolstring(L, -2, &n);
		id = lct_field_find(k, n);
		if (id < 0)
			lct_argerror(L, fname, k, "unknown field");
		if (!(lct_fields[id].kinds & kinds))
			lct_kinds_error(L, fname, k, kinds);
		p->fields |= (uint64_t)1 << id;
		lct_read_field(L, fname, id, s, p);
		lua_pop(L, 1);
	}
}

static void lct_finish(lua_State *L, int kinds, const char *fname,
		       struct lct_spec *s, struct lct_pending *p);

int lct_field_in(int id, int kinds)
{
	return id >= 0 && id < F_N && (lct_fields[id].kinds & kinds) != 0;
}

const char *lct_field_name(int id)
{
	return id >= 0 && id < F_N ? lct_fields[id].name : NULL;
}

int lct_field_id(const char *name)
{
	return lct_field_find(name, strlen(name));
}

void lct_reader_field(lua_State *L, const char *fname, int id, struct lct_spec *s,
		      struct lct_reader *r)
{
	r->fields |= (uint64_t)1 << id;
	lct_read_field(L, fname, id, s, r);
}

/*
 * Values as save text gives them, read without a Lua value: a number, or
 * text.  0 when read; -1 for a value these do not read (out of range, an
 * unknown name, a field they leave out): the caller then reads it through
 * a Lua value with lct_reader_field, which raises as for a table's field.
 */
int lct_reader_int(int id, int64_t v, struct lct_spec *s, struct lct_reader *r)
{
	int64_t hi = id == F_PROTO ? 255 : id == F_STATUS ? 0xffffffffLL : lct_int_max(id);

	if (hi == 0 || v < 0 || v > hi)
		return -1;
	r->fields |= (uint64_t)1 << id;
	if (id == F_PROTO) {
		r->proto = (int)v;
	} else if (id == F_STATUS) {
		s->status = (uint32_t)v;
		s->has |= LCT_S_STATUS;
	} else {
		lct_set_int(id, v, s, r);
	}
	return 0;
}

int lct_reader_text(int id, const char *v, size_t n, struct lct_spec *s, struct lct_reader *r)
{
	char buf[sizeof(r->state)];
	uint8_t a[16];
	int f;

	switch (id) {
	case F_SRC:
	case F_DST:
	case F_RSRC:
	case F_RDST:
		f = lct_pton(v, n, a);
		if (f == 0)
			return -1;
		memcpy(lct_addr_slot(id, s), a, f == AF_INET ? 4 : 16);
		r->famof[id] = (uint8_t)f;
		break;
	case F_PROTO:
	case F_STATE:
		/* a Lua string's C view ends at a NUL: such text goes that way */
		if (n >= sizeof(buf) || memchr(v, '\0', n) != NULL)
			return -1;
		memcpy(buf, v, n);
		buf[n] = '\0';
		if (id == F_STATE) {
			memcpy(r->state, buf, n + 1);
			break;
		}
		f = lct_proto_lookup(buf);
		if (f < 0)
			return -1;
		r->proto = f;
		break;
	default:
		return -1;
	}
	r->fields |= (uint64_t)1 << id;
	return 0;
}

void lct_reader_kfield(lua_State *L, const char *fname, int id, int kinds,
		       struct lct_spec *s, struct lct_reader *r)
{
	if (!lct_field_in(id, kinds))
		lct_kinds_error(L, fname, lct_fields[id].name, kinds);
	lct_reader_field(L, fname, id, s, r);
}

void lct_reader_finish(lua_State *L, int kinds, const char *fname, struct lct_spec *s,
		       struct lct_reader *r)
{
	lct_finish(L, kinds, fname, s, r);
}

void lct_reader_init(struct lct_reader *p)
{
	memset(p, 0, sizeof(*p));
	p->proto = -1;
	p->role = -1;
	memset(p->port, 0xff, sizeof(p->port));
	memset(p->key, 0xff, sizeof(p->key));
	p->icmp[0] = p->icmp[1] = p->icmp[2] = -1;
}

static int lct_seen(const struct lct_pending *p, int id)
{
	return (p->fields >> id) & 1;
}

static uint8_t lct_icmp_inverse(int proto, uint8_t type)
{
	static const uint8_t v4[][2] = { {8, 0}, {13, 14}, {15, 16}, {17, 18} };
	static const uint8_t v6[][2] = { {128, 129}, {139, 140} };
	size_t i;

	if (proto == IPPROTO_ICMP) {
		for (i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
			if (v4[i][0] == type)
				return v4[i][1];
			if (v4[i][1] == type)
				return v4[i][0];
		}
	} else {
		for (i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
			if (v6[i][0] == type)
				return v6[i][1];
			if (v6[i][1] == type)
				return v6[i][0];
		}
	}
	return type;
}

/* The reverse direction of a whole tuple, as the kernel would set it up. */
static void lct_invert(const struct lct_tup *in, struct lct_tup *out, int proto)
{
	uint8_t zone_set = out->set & LCT_T_ZONE;
	uint16_t zone = out->zone;

	*out = *in;
	memcpy(out->src, in->dst, 16);
	memcpy(out->dst, in->src, 16);
	out->sport = in->dport;
	out->dport = in->sport;
	if (in->set & LCT_T_ICMP)
		out->itype = lct_icmp_inverse(proto, in->itype);
	out->set = (uint8_t)((in->set & ~LCT_T_ZONE) | zone_set);
	out->zone = zone;
}

/*
 * The tuples, checked across their fields, with the values that needed the
 * protocol; has[dir]: a direction was given.
 */
static void lct_tuples(lua_State *L, const char *fname, struct lct_spec *s,
		       struct lct_pending *p, int has[2])
{
	int proto = p->proto, dir, w, ports;

	lct_family_check(L, fname, p);
	s->family = (uint8_t)p->family;
	if (s->family == 0)
		lct_argerror(L, fname, "src", "missing");
	if (proto < 0)
		lct_argerror(L, fname, "proto", "missing");
	if (proto == IPPROTO_ICMP && s->family == AF_INET6)
		proto = IPPROTO_ICMPV6;
	if (proto == IPPROTO_ICMPV6 && s->family == AF_INET)
		lct_argerror(L, fname, "proto", "icmpv6 with IPv4 addresses");
	s->orig.proto = s->reply.proto = (uint8_t)proto;
	ports = lct_proto_ports((unsigned int)proto);

	for (dir = 0; dir < 2; dir++) {
		struct lct_tup *t = dir ? &s->reply : &s->orig;
		static const int pf[2][2] = { {F_SPORT, F_DPORT}, {F_RSPORT, F_RDPORT} };
		static const int kf[2][2] = { {F_SRCKEY, F_DSTKEY}, {F_RSRCKEY, F_RDSTKEY} };

		for (w = 0; w < 2; w++) {
			int port = p->port[dir][w], key = p->key[dir][w];

			if (port >= 0 && !ports)
				lct_argerror(L, fname, lct_fname(pf[dir][w]), "protocol %d has no ports",
					     proto);
			if (key >= 0 && proto != IPPROTO_GRE)
				lct_argerror(L, fname, lct_fname(kf[dir][w]), "only for gre");
			if (key >= 0)
				port = key;
			if (port < 0)
				continue;
			if (w == 0)
				t->sport = (uint16_t)port;
			else
				t->dport = (uint16_t)port;
			t->set |= w == 0 ? LCT_T_SPORT : LCT_T_DPORT;
		}
		has[dir] = (t->set & (LCT_T_SRC | LCT_T_DST | LCT_T_SPORT | LCT_T_DPORT)) != 0;
	}
	if (!has[0] && !has[1])
		lct_argerror(L, fname, "src", "missing");
	/* ICMP fields name the original direction (as the CLI's do). */
	if (p->icmp[0] >= 0 || p->icmp[1] >= 0 || p->icmp[2] >= 0) {
		static const char *const f[] = { "icmp_type", "icmp_code", "icmp_id" };

		for (w = 0; w < 3; w++)
			if (p->icmp[w] >= 0 && proto != IPPROTO_ICMP && proto != IPPROTO_ICMPV6)
				lct_argerror(L, fname, f[w], "only for icmp and icmpv6");
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		struct lct_tup *t = has[0] ? &s->orig : &s->reply;

		if (p->icmp[0] < 0)
			lct_argerror(L, fname, "icmp_type", "missing");
		if (p->icmp[2] < 0)
			lct_argerror(L, fname, "icmp_id", "missing");
		/* icmp_type names the original direction's type. */
		t->itype = has[0] ? (uint8_t)p->icmp[0] : lct_icmp_inverse(proto, (uint8_t)p->icmp[0]);
		t->icode = (uint8_t)(p->icmp[1] < 0 ? 0 : p->icmp[1]);
		t->iid = (uint16_t)p->icmp[2];
		t->set |= LCT_T_ICMP;
	}

	/* A request names the flow by one whole tuple. */
	for (dir = 0; dir < 2; dir++) {
		struct lct_tup *t = dir ? &s->reply : &s->orig;
		static const char *const srcf[] = { "src", "reply_src" }, *const dstf[] = { "dst", "reply_dst" };
		static const char *const spf[] = { "sport", "reply_sport" }, *const dpf[] = { "dport", "reply_dport" };

		if (!has[dir] || (dir == 1 && has[0]))
			continue;
		if (!(t->set & LCT_T_SRC))
			lct_argerror(L, fname, srcf[dir], "missing");
		if (!(t->set & LCT_T_DST))
			lct_argerror(L, fname, dstf[dir], "missing");
		if (ports || proto == IPPROTO_GRE) {
			int gre = proto == IPPROTO_GRE;

			if (!(t->set & LCT_T_SPORT) && !gre)
				lct_argerror(L, fname, spf[dir], "missing");
			if (!(t->set & LCT_T_DPORT) && !gre)
				lct_argerror(L, fname, dpf[dir], "missing");
			t->set |= LCT_T_PORTS;
		}
	}
	s->orig.set |= LCT_T_PROTO;
	s->reply.set |= LCT_T_PROTO;
	if (ports || proto == IPPROTO_GRE) {
		if (s->orig.set & (LCT_T_SPORT | LCT_T_DPORT))
			s->orig.set |= LCT_T_PORTS;
		if (s->reply.set & (LCT_T_SPORT | LCT_T_DPORT))
			s->reply.set |= LCT_T_PORTS;
	}
}

/* The fields of the tuples (F_FAMILY to F_RDSTKEY); a plain tuple has these. */
#define LCT_TUPLE_FIELDS	((UINT64_C(1) << (F_RDSTKEY + 1)) - 1)
#define LCT_PLAIN_FIELDS	(UINT64_C(1) << F_SRC | UINT64_C(1) << F_DST | UINT64_C(1) << F_PROTO | \
				 UINT64_C(1) << F_SPORT | UINT64_C(1) << F_DPORT)

/*
 * The common tuple, src, dst, proto of a protocol with ports, sport, dport
 * and no other field of a tuple, every address (NAT's too) of one family:
 * what lct_tuples makes of it, without its checks.  0 for any other.
 */
static int lct_plain_tuple(struct lct_spec *s, struct lct_pending *p)
{
	int f = p->famof[F_SRC];

	if ((p->fields & LCT_TUPLE_FIELDS) != LCT_PLAIN_FIELDS || f != p->famof[F_DST] ||
	    (p->famof[F_SNAT] != 0 && p->famof[F_SNAT] != f) ||
	    (p->famof[F_DNAT] != 0 && p->famof[F_DNAT] != f) ||
	    !lct_proto_ports((unsigned int)p->proto))
		return 0;
	p->family = f;
	s->family = (uint8_t)f;
	s->orig.proto = s->reply.proto = (uint8_t)p->proto;
	s->orig.sport = (uint16_t)p->port[0][0];
	s->orig.dport = (uint16_t)p->port[0][1];
	s->orig.set |= LCT_T_SPORT | LCT_T_DPORT | LCT_T_PORTS | LCT_T_PROTO;
	s->reply.set |= LCT_T_PROTO;
	return 1;
}

/* Cross-field checks and the values that needed the protocol. */
static void lct_finish(lua_State *L, int kinds, const char *fname,
		       struct lct_spec *s, struct lct_pending *p)
{
	int proto, ports, spec = kinds & (LCT_K_SPEC | LCT_K_ENTRY);
	int has[2] = { 1, 0 };

	if (!lct_plain_tuple(s, p))
		lct_tuples(L, fname, s, p, has);
	proto = s->orig.proto;
	ports = lct_proto_ports((unsigned int)proto);

	if (spec) {
		/* The missing direction, or missing parts: from the other one.
		 * With NAT asked for, the kernel translates the plain inverse. */
		if (has[0] && (s->has & (LCT_S_SNAT | LCT_S_DNAT))) {
			lct_invert(&s->orig, &s->reply, proto);
		} else if (has[0]) {
			struct lct_tup given = s->reply;

			lct_invert(&s->orig, &s->reply, proto);
			if (given.set & LCT_T_SRC)
				memcpy(s->reply.src, given.src, 16);
			if (given.set & LCT_T_DST)
				memcpy(s->reply.dst, given.dst, 16);
			if (given.set & LCT_T_SPORT)
				s->reply.sport = given.sport;
			if (given.set & LCT_T_DPORT)
				s->reply.dport = given.dport;
		} else {
			lct_invert(&s->reply, &s->orig, proto);
		}
		s->has |= LCT_S_ORIG | LCT_S_REPLY;
		if (kinds & LCT_K_SPEC && !(s->has & LCT_S_TIMEOUT))
			lct_argerror(L, fname, "timeout", "missing (seconds the entry lives)");
	} else {
		s->has |= has[0] ? LCT_S_ORIG : LCT_S_REPLY;
		if (has[0] && has[1])
			s->has |= LCT_S_REPLY;
	}

	if (p->state[0] != '\0') {
		int st = lct_state_lookup((unsigned int)proto, p->state);

		if (!lct_proto_states((unsigned int)proto))
			lct_argerror(L, fname, "state", "only tcp, sctp and dccp have states");
		if (st < 0)
			lct_argerror(L, fname, "state", "unknown %s state '%s'",
				     lct_proto_name((unsigned int)proto), p->state);
		s->state = (uint8_t)st;
		s->has |= LCT_S_STATE;
	}
	if (s->has & (LCT_S_TCPFLAGS0 | LCT_S_TCPFLAGS1 | LCT_S_WSCALE0 | LCT_S_WSCALE1) &&
	    proto != IPPROTO_TCP)
		lct_argerror(L, fname, lct_seen(p, F_FLAGS0) ? "tcp_flags_orig" :
			     lct_seen(p, F_FLAGS1) ? "tcp_flags_reply" :
			     lct_seen(p, F_WSCALE0) ? "tcp_wscale_orig" : "tcp_wscale_reply",
			     "only for tcp");
	if (s->has & (LCT_S_VTAG0 | LCT_S_VTAG1) && proto != IPPROTO_SCTP)
		lct_argerror(L, fname, s->has & LCT_S_VTAG0 ? "orig_vtag" : "reply_vtag",
			     "only for sctp");
	if (p->role >= 0) {
		if (proto != IPPROTO_DCCP)
			lct_argerror(L, fname, "role", "only for dccp");
		s->role = (uint8_t)p->role;
		s->has |= LCT_S_ROLE;
	}
	if (s->has & (LCT_S_SNAT | LCT_S_DNAT)) {
		int i;

		for (i = 0; i < 2; i++) {
			const struct lct_nat *n = i ? &s->dnat : &s->snat;

			if ((s->has & (i ? LCT_S_DNAT : LCT_S_SNAT)) && n->port >= 0 && !ports)
				lct_argerror(L, fname, i ? "dnat" : "snat", "a port needs tcp, udp, udplite, sctp or dccp");
		}
	}
	if ((s->has & LCT_S_LABELS) && !(s->has & LCT_S_LABELMASK))
		memset(s->labels_mask, 0xff, sizeof(s->labels_mask));
}

void lct_spec_read(lua_State *L, int idx, int kinds, const char *fname,
		   struct lct_spec *s)
{
	struct lct_pending p;
	int t = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;

	memset(s, 0, sizeof(*s));
	if (!lua_istable(L, t))
		lct_argerror(L, fname, kinds & (LCT_K_SPEC | LCT_K_ENTRY) ? "spec" : "tuple",
			     "table expected, got %s", luaL_typename(L, t));
	lct_reader_init(&p);
	lct_read(L, t, kinds, fname, s, &p);
	lct_finish(L, kinds, fname, s, &p);
}

void lct_changes_read(lua_State *L, int idx, const char *fname, struct lct_spec *s)
{
	struct lct_pending p;
	int t = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
	int proto = s->orig.proto;

	if (!lua_istable(L, t))
		lct_argerror(L, fname, "changes", "table expected, got %s", luaL_typename(L, t));
	lct_reader_init(&p);
	lct_read(L, t, LCT_K_CHANGES, fname, s, &p);
	if (p.fields == 0)
		lct_argerror(L, fname, "changes", "nothing to change");
	if ((s->has & LCT_S_MARKMASK) && !(s->has & LCT_S_MARK))
		lct_argerror(L, fname, "mark_mask", "needs 'mark'");
	if ((s->has & LCT_S_LABELMASK) && !(s->has & LCT_S_LABELS))
		lct_argerror(L, fname, "labels_mask", "needs 'labels'");
	if ((s->has & LCT_S_LABELS) && (s->has & (LCT_S_LABELADD | LCT_S_LABELDEL)))
		lct_argerror(L, fname, "labels", "set the labels, or add and remove some, not both");
	if (s->has & (LCT_S_LABELADD | LCT_S_LABELDEL))
		s->has |= LCT_S_LABELS | LCT_S_LABELMASK;
	else if ((s->has & LCT_S_LABELS) && !(s->has & LCT_S_LABELMASK))
		memset(s->labels_mask, 0xff, sizeof(s->labels_mask));
	if (p.state[0] != '\0') {
		int st = lct_state_lookup((unsigned int)proto, p.state);

		if (!lct_proto_states((unsigned int)proto))
			lct_argerror(L, fname, "state", "only tcp, sctp and dccp have states");
		if (st < 0)
			lct_argerror(L, fname, "state", "unknown %s state '%s'",
				     lct_proto_name((unsigned int)proto), p.state);
		s->state = (uint8_t)st;
		s->has |= LCT_S_STATE;
	}
	if ((s->has & (LCT_S_TCPFLAGS0 | LCT_S_TCPFLAGS1 | LCT_S_WSCALE0 | LCT_S_WSCALE1)) &&
	    proto != IPPROTO_TCP)
		lct_argerror(L, fname, "tcp_flags_orig", "only for tcp");
	if ((s->has & (LCT_S_VTAG0 | LCT_S_VTAG1)) && proto != IPPROTO_SCTP)
		lct_argerror(L, fname, s->has & LCT_S_VTAG0 ? "orig_vtag" : "reply_vtag",
			     "only for sctp");
}

/* Safe forms: errors become a message on the stack (return -1). */
struct lct_readargs {
	int idx, kinds, changes;
	const char *fname;
	struct lct_spec *s;
};

static int lct_read_p(lua_State *L)
{
	struct lct_readargs *a = lua_touserdata(L, 1);

	if (a->changes)
		lct_changes_read(L, a->idx, a->fname, a->s);
	else
		lct_spec_read(L, a->idx, a->kinds, a->fname, a->s);
	return 0;
}

int lct_spec_read_p(lua_State *L, int idx, int kinds, const char *fname,
		    struct lct_spec *s, int changes)
{
	struct lct_readargs a;
	int top;

	idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
	a.idx = 2;
	a.kinds = kinds;
	a.changes = changes;
	a.fname = fname;
	a.s = s;
	top = lua_gettop(L);
	lua_pushcfunction(L, lct_read_p);
	lua_pushlightuserdata(L, &a);
	lua_pushvalue(L, idx);
	if (lua_pcall(L, 2, 0, 0) != 0)
		return -1;
	lua_settop(L, top);
	return 0;
}

/* ---- writing --------------------------------------------------------- */

void lct_put_tuple(struct nlmsghdr *nlh, int type, const struct lct_tup *t,
		   int family)
{
	struct nlattr *nest = lct_attr_nest(nlh, type), *n;
	size_t alen = family == AF_INET ? 4 : 16;

	n = lct_attr_nest(nlh, CTA_TUPLE_IP);
	if (t->set & LCT_T_SRC)
		lct_attr_put(nlh, family == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, alen, t->src);
	if (t->set & LCT_T_DST)
		lct_attr_put(nlh, family == AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST, alen, t->dst);
	lct_attr_end(nlh, n);
	n = lct_attr_nest(nlh, CTA_TUPLE_PROTO);
	lct_attr_u8(nlh, CTA_PROTO_NUM, t->proto);
	if (t->set & LCT_T_PORTS) {
		if (t->set & LCT_T_SPORT || t->proto == IPPROTO_GRE)
			lct_attr_u16(nlh, CTA_PROTO_SRC_PORT, htons(t->sport));
		if (t->set & LCT_T_DPORT || t->proto == IPPROTO_GRE)
			lct_attr_u16(nlh, CTA_PROTO_DST_PORT, htons(t->dport));
	}
	if (t->set & LCT_T_ICMP) {
		int v6 = t->proto == IPPROTO_ICMPV6;

		lct_attr_u8(nlh, v6 ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE, t->itype);
		lct_attr_u8(nlh, v6 ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE, t->icode);
		lct_attr_u16(nlh, v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID, htons(t->iid));
	}
	lct_attr_end(nlh, n);
	if (t->set & LCT_T_ZONE)
		lct_attr_u16(nlh, CTA_TUPLE_ZONE, htons(t->zone));
	lct_attr_end(nlh, nest);
}

static void lct_put_nat(struct nlmsghdr *nlh, int type, const struct lct_nat *n)
{
	struct nlattr *nest = lct_attr_nest(nlh, type);

	if (n->family == AF_INET) {
		lct_attr_put(nlh, CTA_NAT_V4_MINIP, 4, n->addr);
		lct_attr_put(nlh, CTA_NAT_V4_MAXIP, 4, n->addr);
	} else if (n->family == AF_INET6) {
		lct_attr_put(nlh, CTA_NAT_V6_MINIP, 16, n->addr);
		lct_attr_put(nlh, CTA_NAT_V6_MAXIP, 16, n->addr);
	}
	if (n->port >= 0) {
		struct nlattr *p = lct_attr_nest(nlh, CTA_NAT_PROTO);

		lct_attr_u16(nlh, CTA_PROTONAT_PORT_MIN, htons((uint16_t)n->port));
		lct_attr_u16(nlh, CTA_PROTONAT_PORT_MAX, htons((uint16_t)n->port));
		lct_attr_end(nlh, p);
	}
	lct_attr_end(nlh, nest);
}

static void lct_put_protoinfo(struct nlmsghdr *nlh, const struct lct_spec *s)
{
	struct nlattr *nest, *n;
	int proto = s->orig.proto, d;

	if (!(s->has & (LCT_S_STATE | LCT_S_TCPFLAGS0 | LCT_S_TCPFLAGS1 | LCT_S_WSCALE0 |
			LCT_S_WSCALE1 | LCT_S_VTAG0 | LCT_S_VTAG1 | LCT_S_ROLE)))
		return;
	nest = lct_attr_nest(nlh, CTA_PROTOINFO);
	if (proto == IPPROTO_TCP) {
		n = lct_attr_nest(nlh, CTA_PROTOINFO_TCP);
		if (s->has & LCT_S_STATE)
			lct_attr_u8(nlh, CTA_PROTOINFO_TCP_STATE, s->state);
		for (d = 0; d < 2; d++) {
			if (s->has & (d ? LCT_S_WSCALE1 : LCT_S_WSCALE0))
				lct_attr_u8(nlh, d ? CTA_PROTOINFO_TCP_WSCALE_REPLY :
						CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, s->tcp_wscale[d]);
			if (s->has & (d ? LCT_S_TCPFLAGS1 : LCT_S_TCPFLAGS0)) {
				uint8_t f[2] = { s->tcp_flags[d], s->tcp_mask[d] };

				lct_attr_put(nlh, d ? CTA_PROTOINFO_TCP_FLAGS_REPLY :
					     CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, 2, f);
			}
		}
		lct_attr_end(nlh, n);
	} else if (proto == IPPROTO_SCTP) {
		n = lct_attr_nest(nlh, CTA_PROTOINFO_SCTP);
		if (s->has & LCT_S_STATE)
			lct_attr_u8(nlh, CTA_PROTOINFO_SCTP_STATE, s->state);
		if (s->has & LCT_S_VTAG0)
			lct_attr_u32(nlh, CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, htonl(s->vtag[0]));
		if (s->has & LCT_S_VTAG1)
			lct_attr_u32(nlh, CTA_PROTOINFO_SCTP_VTAG_REPLY, htonl(s->vtag[1]));
		lct_attr_end(nlh, n);
	} else if (proto == IPPROTO_DCCP) {
		n = lct_attr_nest(nlh, CTA_PROTOINFO_DCCP);
		if (s->has & LCT_S_STATE)
			lct_attr_u8(nlh, CTA_PROTOINFO_DCCP_STATE, s->state);
		if (s->has & LCT_S_ROLE)
			lct_attr_u8(nlh, CTA_PROTOINFO_DCCP_ROLE, s->role);
		lct_attr_end(nlh, n);
	}
	lct_attr_end(nlh, nest);
}

static void lct_put_counters(struct nlmsghdr *nlh, int type, uint64_t pk, uint64_t by)
{
	struct nlattr *n = lct_attr_nest(nlh, type);

	lct_attr_u64(nlh, CTA_COUNTERS_PACKETS, htobe64(pk));
	lct_attr_u64(nlh, CTA_COUNTERS_BYTES, htobe64(by));
	lct_attr_end(nlh, n);
}

void lct_spec_put(struct nlmsghdr *nlh, const struct lct_spec *s, int kind)
{
	lct_nl_family(nlh, s->family, NFNETLINK_V0);
	if (s->has & LCT_S_ORIG)
		lct_put_tuple(nlh, CTA_TUPLE_ORIG, &s->orig, s->family);
	if (s->has & LCT_S_REPLY)
		lct_put_tuple(nlh, CTA_TUPLE_REPLY, &s->reply, s->family);
	if (s->has & LCT_S_STATUS)
		/* The kernel refuses to clear CONFIRMED: it is always sent set. */
		lct_attr_u32(nlh, CTA_STATUS, htonl(s->status |
				 (kind == LCT_K_ENTRY ? 0 : IPS_CONFIRMED)));
	if (s->has & LCT_S_TIMEOUT)
		lct_attr_u32(nlh, CTA_TIMEOUT, htonl(s->timeout));
	if (s->has & LCT_S_MARK)
		lct_attr_u32(nlh, CTA_MARK, htonl(s->mark));
	if (s->has & LCT_S_MARKMASK)
		lct_attr_u32(nlh, CTA_MARK_MASK, htonl(s->mark_mask));
	if (s->has & LCT_S_SECMARK)
		lct_attr_u32(nlh, CTA_SECMARK, htonl(s->secmark));
	lct_put_protoinfo(nlh, s);
	if (s->has & LCT_S_SNAT)
		lct_put_nat(nlh, CTA_NAT_SRC, &s->snat);
	if (s->has & LCT_S_DNAT)
		lct_put_nat(nlh, CTA_NAT_DST, &s->dnat);
	if (s->has & LCT_S_HELPER) {
		struct nlattr *n = lct_attr_nest(nlh, CTA_HELP);

		mnl_attr_put_strz(nlh, CTA_HELP_NAME, s->helper);
		lct_attr_end(nlh, n);
	}
	if (s->has & LCT_S_ZONE)
		lct_attr_u16(nlh, CTA_ZONE, htons(s->zone));
	if (s->has & LCT_S_LABELS) {
		lct_attr_put(nlh, CTA_LABELS, sizeof(s->labels), s->labels);
		if (kind != LCT_K_ENTRY)
			lct_attr_put(nlh, CTA_LABELS_MASK, sizeof(s->labels_mask), s->labels_mask);
	}
	if (kind != LCT_K_ENTRY)
		return;
	/* What a synthetic entry carries that only dumps and events have. */
	if (s->has & LCT_S_COUNTERS0)
		lct_put_counters(nlh, CTA_COUNTERS_ORIG, s->packets[0], s->bytes[0]);
	if (s->has & LCT_S_COUNTERS1)
		lct_put_counters(nlh, CTA_COUNTERS_REPLY, s->packets[1], s->bytes[1]);
	if (s->has & LCT_S_USE)
		lct_attr_u32(nlh, CTA_USE, htonl(s->use));
	if (s->has & LCT_S_ID)
		lct_attr_u32(nlh, CTA_ID, htonl(s->id));
}

int lct_put_key(struct nlmsghdr *nlh, const struct nlmsghdr *m)
{
	const struct nlattr *at[LCT_CTA_MAX + 1];

	lct_a_table(m, sizeof(struct nfgenmsg), at, LCT_CTA_MAX);
	if (at[CTA_TUPLE_ORIG] == NULL)
		return -1;
	lct_attr_put(nlh, CTA_TUPLE_ORIG, mnl_attr_get_payload_len(at[CTA_TUPLE_ORIG]),
		     mnl_attr_get_payload(at[CTA_TUPLE_ORIG]));
	if (at[CTA_ZONE] != NULL)
		lct_attr_put(nlh, CTA_ZONE, mnl_attr_get_payload_len(at[CTA_ZONE]),
			     mnl_attr_get_payload(at[CTA_ZONE]));
	lct_nl_family(nlh, lct_nl_msgfamily(m), NFNETLINK_V0);
	return lct_nl_msgfamily(m);
}

/* ---- expectations ------------------------------------------------------ */

static const char *const lct_xkey_names[] = {
	"family", "proto", "src", "dst", "sport", "dport", "zone", NULL
};
static const char *const lct_xspec_names[] = {
	"family", "proto", "src", "dst", "sport", "dport", "zone",
	"tuple_src", "tuple_dst", "tuple_sport", "tuple_dport",
	"mask_src", "mask_dst", "mask_sport", "mask_dport",
	"timeout", "helper", "flags", "class", "fn",
	"nat_dir", "nat_src", "nat_dst", "nat_sport", "nat_dport", NULL
};

/* One tuple of an expectation: prefix "" (master or lookup), "tuple_", "mask_", "nat_". */
static int lct_xtuple(lua_State *L, int t, const char *fname, const char *prefix,
		      struct lct_tup *tup, int *family, int need, int mask)
{
	char key[32];
	int w, any = 0;

	memset(tup, 0, sizeof(*tup));
	for (w = 0; w < 2; w++) {
		snprintf(key, sizeof(key), "%s%s", prefix, w ? "dst" : "src");
		if (lct_rawfield(L, t, key) != LUA_TNIL) {
			int f = lct_addr_arg(L, -1, fname, key, w ? tup->dst : tup->src);

			if (*family != 0 && *family != f)
				lct_argerror(L, fname, key, "IPv4 and IPv6 addresses mixed in one tuple");
			*family = f;
			tup->set |= w ? LCT_T_DST : LCT_T_SRC;
			any = 1;
		} else if (need) {
			lct_argerror(L, fname, key, "missing");
		}
		lua_pop(L, 1);
	}
	for (w = 0; w < 2; w++) {
		int64_t v;

		snprintf(key, sizeof(key), "%s%s", prefix, w ? "dport" : "sport");
		if (lct_int_field(L, t, key, fname, 0, 65535, &v)) {
			if (w)
				tup->dport = (uint16_t)v;
			else
				tup->sport = (uint16_t)v;
			tup->set |= w ? LCT_T_DPORT : LCT_T_SPORT;
			any = 1;
		} else if (mask) {
			/* an absent mask port: the port must match exactly */
			if (w)
				tup->dport = 0xffff;
			else
				tup->sport = 0xffff;
			tup->set |= w ? LCT_T_DPORT : LCT_T_SPORT;
		}
	}
	return any;
}

void lct_xspec_read(lua_State *L, int idx, int create, const char *fname,
		    struct lct_xspec *x)
{
	int t = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
	int family = 0, i;
	int64_t v;

	memset(x, 0, sizeof(*x));
	if (!lua_istable(L, t))
		lct_argerror(L, fname, create ? "spec" : "tuple", "table expected, got %s",
			     luaL_typename(L, t));
	lct_check_names(L, t, fname, create ? lct_xspec_names : lct_xkey_names);
	if (lct_rawfield(L, t, "family") != LUA_TNIL)
		family = lct_family_arg(L, -1, fname, "family");
	lua_pop(L, 1);
	if (lct_rawfield(L, t, "proto") == LUA_TNIL)
		lct_argerror(L, fname, "proto", "missing");
	x->proto = (uint8_t)lct_proto_arg(L, -1, fname, "proto");
	lua_pop(L, 1);
	lct_xtuple(L, t, fname, "", &x->master, &family, 1, 0);
	if (create) {
		lct_xtuple(L, t, fname, "tuple_", &x->tuple, &family, 1, 0);
		lct_xtuple(L, t, fname, "mask_", &x->mask, &family, 0, 1);
		/* An absent mask address: the address must match exactly. */
		if (!(x->mask.set & LCT_T_SRC))
			memset(x->mask.src, 0xff, 16);
		if (!(x->mask.set & LCT_T_DST))
			memset(x->mask.dst, 0xff, 16);
		x->mask.set |= LCT_T_SRC | LCT_T_DST;
		if (lct_xtuple(L, t, fname, "nat_", &x->nat, &family, 0, 0))
			x->has_nat = 1;
	}
	x->family = (uint8_t)family;
	for (i = 0; i < 4; i++) {
		static const char *const sp[] = { "sport", "tuple_sport", "mask_sport", "nat_sport" };
		static const char *const dp[] = { "dport", "tuple_dport", "mask_dport", "nat_dport" };
		struct lct_tup *tp = i == 0 ? &x->master : i == 1 ? &x->tuple : i == 2 ? &x->mask : &x->nat;
		int ports = lct_proto_ports(x->proto) || x->proto == IPPROTO_GRE;
		int used = i == 0 || create;

		tp->proto = x->proto;
		tp->set |= LCT_T_PROTO;
		if (!ports) {
			if (i != 2 && (tp->set & LCT_T_SPORT))
				lct_argerror(L, fname, sp[i], "protocol %d has no ports", x->proto);
			if (i != 2 && (tp->set & LCT_T_DPORT))
				lct_argerror(L, fname, dp[i], "protocol %d has no ports", x->proto);
			tp->set &= (uint8_t)~(LCT_T_SPORT | LCT_T_DPORT);
			continue;
		}
		if (used && i < 2 && !(tp->set & LCT_T_SPORT))
			lct_argerror(L, fname, sp[i], "missing");
		if (used && i < 2 && !(tp->set & LCT_T_DPORT))
			lct_argerror(L, fname, dp[i], "missing");
		tp->set |= LCT_T_PORTS;
	}
	if (lct_int_field(L, t, "zone", fname, 0, 65535, &v)) {
		x->zone = (uint16_t)v;
		x->has |= LCT_X_ZONE;
	}
	if (!create)
		return;
	if (lct_int_field(L, t, "timeout", fname, 0, 0xffffffffLL, &v)) {
		x->timeout = (uint32_t)v;
		x->has |= LCT_X_TIMEOUT;
	} else {
		lct_argerror(L, fname, "timeout", "missing (seconds the expectation lives)");
	}
	if (lct_int_field(L, t, "class", fname, 0, 0xffffffffLL, &v)) {
		x->class = (uint32_t)v;
		x->has |= LCT_X_CLASS;
	}
	if (lct_rawfield(L, t, "flags") != LUA_TNIL) {
		if (lua_type(L, -1) == LUA_TNUMBER) {
			x->flags = (uint32_t)lct_int_arg(L, -1, fname, "flags", 0, 0xffffffffLL);
		} else if (lua_istable(L, -1)) {
			static const char *const fl[] = { "PERMANENT", "INACTIVE", "USERSPACE" };
			int n = (int)lua_rawlen(L, -1), j, k;

			for (j = 1; j <= n; j++) {
				lua_rawgeti(L, -1, j);
				for (k = 0; k < 3; k++)
					if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), fl[k]) == 0)
						break;
				if (k == 3)
					lct_argerror(L, fname, "flags", "unknown flag %s (PERMANENT, INACTIVE, USERSPACE)",
						     lct_shortval(L, -1));
				x->flags |= 1u << k;
				lua_pop(L, 1);
			}
		} else {
			lct_argerror(L, fname, "flags", "array of flag names or a number expected, got %s",
				     luaL_typename(L, -1));
		}
		x->has |= LCT_X_FLAGS;
	}
	lua_pop(L, 1);
	for (i = 0; i < 2; i++) {
		const char *k = i ? "fn" : "helper";
		char *out = i ? x->fn : x->helper;
		size_t room = i ? sizeof x->fn : sizeof x->helper;

		if (lct_rawfield(L, t, k) != LUA_TNIL) {
			size_t n;
			const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;

			if (s == NULL || n == 0 || n >= room || strlen(s) != n)
				lct_argerror(L, fname, k, "name expected, got %s", lct_shortval(L, -1));
			memcpy(out, s, n + 1);
			x->has |= i ? LCT_X_FN : LCT_X_HELPER;
		}
		lua_pop(L, 1);
	}
	if (lct_rawfield(L, t, "nat_dir") != LUA_TNIL) {
		const char *d = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";

		if (strcmp(d, "orig") == 0)
			x->nat_dir = 0;
		else if (strcmp(d, "reply") == 0)
			x->nat_dir = 1;
		else
			lct_argerror(L, fname, "nat_dir", "\"orig\" or \"reply\" expected, got %s",
				     lct_shortval(L, -1));
		if (!x->has_nat)
			lct_argerror(L, fname, "nat_dir", "needs the nat tuple (nat_src, nat_dst...)");
	} else if (x->has_nat) {
		lct_argerror(L, fname, "nat_dir", "missing (the nat tuple needs a direction)");
	}
	lua_pop(L, 1);
}

void lct_xspec_put(struct nlmsghdr *nlh, const struct lct_xspec *x)
{
	lct_nl_family(nlh, x->family, NFNETLINK_V0);
	/* A lookup names the expected tuple; a create, the master and the rest. */
	if (x->tuple.set & (LCT_T_SRC | LCT_T_DST)) {
		lct_put_tuple(nlh, CTA_EXPECT_MASTER, &x->master, x->family);
		lct_put_tuple(nlh, CTA_EXPECT_TUPLE, &x->tuple, x->family);
		lct_put_tuple(nlh, CTA_EXPECT_MASK, &x->mask, x->family);
	} else {
		lct_put_tuple(nlh, CTA_EXPECT_TUPLE, &x->master, x->family);
	}
	if (x->has & LCT_X_TIMEOUT)
		mnl_attr_put_u32(nlh, CTA_EXPECT_TIMEOUT, htonl(x->timeout));
	if (x->has & LCT_X_ZONE)
		mnl_attr_put_u16(nlh, CTA_EXPECT_ZONE, htons(x->zone));
	if (x->has & LCT_X_FLAGS)
		mnl_attr_put_u32(nlh, CTA_EXPECT_FLAGS, htonl(x->flags));
	if (x->has & LCT_X_CLASS)
		mnl_attr_put_u32(nlh, CTA_EXPECT_CLASS, htonl(x->class));
	if (x->has & LCT_X_HELPER)
		mnl_attr_put_strz(nlh, CTA_EXPECT_HELP_NAME, x->helper);
	if (x->has & LCT_X_FN)
		mnl_attr_put_strz(nlh, CTA_EXPECT_FN, x->fn);
	if (x->has_nat) {
		struct nlattr *n = mnl_attr_nest_start(nlh, CTA_EXPECT_NAT);

		mnl_attr_put_u32(nlh, CTA_EXPECT_NAT_DIR, htonl((uint32_t)x->nat_dir));
		lct_put_tuple(nlh, CTA_EXPECT_NAT_TUPLE, &x->nat, x->family);
		mnl_attr_nest_end(nlh, n);
	}
}
