/*
 * The matcher: one C program per filter, run on each conntrack message
 * before any Lua value exists for it, by dumps, bulk deletes and events
 * alike.  It also says which part of it the kernel can run (the dump
 * request's attributes, the kernel's filtered flush, the events socket
 * filter); the kernel part only ever saves work, since every message is
 * checked here again.
 *
 * A program is a tree of all/any/not nodes over leaves; a leaf tests one
 * field against a set of values (protocols, prefixes, ranges, marks...).
 * It comes from a Lua description (conntrack.filter writes it):
 *   {op = "all" | "any", node...}, {op = "not", node}, {op = "const", value = b}
 *   {field = name, values = {...}} and, for status, {field = "status", value =, mask =}
 */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "lct.h"

enum { M_CONST, M_ALL, M_ANY, M_NOT, M_LEAF };

enum lct_mfield {
	MF_FAMILY, MF_PROTO, MF_SRC, MF_DST, MF_RSRC, MF_RDST,
	MF_SPORT, MF_DPORT, MF_RSPORT, MF_RDPORT, MF_ITYPE, MF_ICODE, MF_IID,
	MF_ZONE, MF_OZONE, MF_RZONE, MF_TIMEOUT, MF_SECMARK, MF_ID, MF_USE,
	MF_MARK, MF_STATUS, MF_STATE, MF_LABELS, MF_HELPER,
	MF_N
};

static const char *const lct_mfield_names[MF_N] = {
	"family", "proto", "src", "dst", "reply_src", "reply_dst",
	"sport", "dport", "reply_sport", "reply_dport", "icmp_type", "icmp_code", "icmp_id",
	"zone", "orig_zone", "reply_zone", "timeout", "secmark", "id", "use",
	"mark", "status", "state", "labels", "helper",
};

union lct_mval {
	struct { uint32_t lo, hi; } r;		/* ranges; marks: value, mask */
	struct lct_cidr c;
	char s[20];				/* helper names */
};

struct lct_mnode {
	uint8_t op, field;
	uint8_t value;		/* M_CONST */
	uint32_t nvals;
	uint32_t first;		/* first child node, or first value */
	uint32_t next;		/* next sibling node, 0 = none */
	union {
		uint8_t protos[32];		/* MF_PROTO: a bitmap */
		uint32_t states[3];		/* MF_STATE: tcp, sctp, dccp bitmaps */
		uint8_t labels[16];		/* MF_LABELS: all of these */
		struct { uint32_t value, mask; } st;	/* MF_STATUS */
		uint8_t families;		/* MF_FAMILY: 1 ipv4, 2 ipv6 */
	} u;
};

#define LCT_M_MAXNODES	4096
#define LCT_M_MAXVALS	(1 << 20)
#define LCT_M_MAXDEPTH	64

struct lct_matcher {
	uint32_t nnodes, nvals;
	int needs;		/* what the leaves read: LCT_V_* */
	struct lct_mnode *node;
	union lct_mval *val;
};

#define LCT_V_DIR0	1
#define LCT_V_DIR1	2
#define LCT_V_PINFO	4

static const char lct_matcher_key = 'm';
extern const struct lct_class lct_matcher_class;

/* ---- building --------------------------------------------------------- */

struct lct_mbuild {
	lua_State *L;
	const char *fname;
	struct lct_matcher *m;	/* NULL while counting */
	uint32_t nnodes, nvals;
	int needs;
};

static int lct_mfield_lookup(const char *name)
{
	int i;

	for (i = 0; i < MF_N; i++)
		if (strcmp(lct_mfield_names[i], name) == 0)
			return i;
	return -1;
}

static void lct_mbad(struct lct_mbuild *b, const char *fmt, const char *what)
{
	lct_error(b->L, "%s: bad filter (%s%s)", b->fname, fmt, what ? what : "");
}

static void lct_range_val(struct lct_mbuild *b, int field, union lct_mval *v)
{
	lua_State *L = b->L;
	int64_t hi = field == MF_ITYPE || field == MF_ICODE ? 255 :
		     field <= MF_IID || field == MF_ZONE || field == MF_OZONE ||
		     field == MF_RZONE ? 65535 : 0xffffffffLL;
	const char *fn = lct_mfield_names[field];

	if (lua_type(L, -1) == LUA_TTABLE) {
		lua_rawgeti(L, -1, 1);
		lua_rawgeti(L, -2, 2);
		v->r.lo = (uint32_t)lct_int_arg(L, -2, b->fname, fn, 0, hi);
		v->r.hi = (uint32_t)lct_int_arg(L, -1, b->fname, fn, 0, hi);
		lua_pop(L, 2);
		if (v->r.lo > v->r.hi)
			lct_argerror(L, b->fname, fn, "empty range %u-%u", v->r.lo, v->r.hi);
	} else {
		v->r.lo = v->r.hi = (uint32_t)lct_int_arg(L, -1, b->fname, fn, 0, hi);
	}
}

/* One value of a leaf, at the top of the stack. */
static void lct_leaf_val(struct lct_mbuild *b, struct lct_mnode *n, union lct_mval *v)
{
	lua_State *L = b->L;
	const char *fn = lct_mfield_names[n->field];

	switch (n->field) {
	case MF_FAMILY:
		n->u.families |= lct_family_arg(L, -1, b->fname, fn) == AF_INET ? 1 : 2;
		break;
	case MF_PROTO: {
		int p = lct_proto_arg(L, -1, b->fname, fn);

		n->u.protos[p / 8] |= (uint8_t)(1u << (p % 8));
		break;
	}
	case MF_SRC: case MF_DST: case MF_RSRC: case MF_RDST: {
		size_t len;
		const char *s;

		if (lua_type(L, -1) != LUA_TSTRING)
			lct_argerror(L, b->fname, fn, "address or prefix expected, got %s",
				     luaL_typename(L, -1));
		s = lua_tolstring(L, -1, &len);
		if (lct_cidr_parse(s, len, &v->c) < 0)
			lct_argerror(L, b->fname, fn, "malformed address or prefix %s",
				     lct_shortval(L, -1));
		break;
	}
	case MF_MARK:
		if (lua_type(L, -1) == LUA_TTABLE) {
			lua_rawgeti(L, -1, 1);
			lua_rawgeti(L, -2, 2);
			v->r.lo = (uint32_t)lct_int_arg(L, -2, b->fname, "mark", 0, 0xffffffffLL);
			v->r.hi = lua_isnil(L, -1) ? 0xffffffffu :
				  (uint32_t)lct_int_arg(L, -1, b->fname, "mark_mask", 0, 0xffffffffLL);
			lua_pop(L, 2);
		} else {
			v->r.lo = (uint32_t)lct_int_arg(L, -1, b->fname, "mark", 0, 0xffffffffLL);
			v->r.hi = 0xffffffffu;
		}
		v->r.lo &= v->r.hi;
		break;
	case MF_STATE: {
		static const int protos[3] = { IPPROTO_TCP, IPPROTO_SCTP, IPPROTO_DCCP };
		int i, any = 0;

		if (lua_type(L, -1) != LUA_TSTRING)
			lct_argerror(L, b->fname, fn, "state name expected, got %s", luaL_typename(L, -1));
		for (i = 0; i < 3; i++) {
			int st = lct_state_lookup((unsigned int)protos[i], lua_tostring(L, -1));

			if (st >= 0 && st < 32) {
				n->u.states[i] |= 1u << st;
				any = 1;
			}
		}
		if (!any)
			lct_argerror(L, b->fname, fn, "unknown state %s", lct_shortval(L, -1));
		break;
	}
	case MF_LABELS: {
		int bit = (int)lct_int_arg(L, -1, b->fname, fn, 0, 127);
		uint32_t w;

		memcpy(&w, n->u.labels + (bit / 32) * 4, 4);
		w |= 1u << (bit % 32);
		memcpy(n->u.labels + (bit / 32) * 4, &w, 4);
		break;
	}
	case MF_HELPER: {
		size_t len;
		const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;

		if (s == NULL || len == 0 || len >= sizeof(v->s) || strlen(s) != len)
			lct_argerror(L, b->fname, fn, "helper name expected, got %s", lct_shortval(L, -1));
		memcpy(v->s, s, len + 1);
		break;
	}
	default:
		lct_range_val(b, n->field, v);
	}
}

static int lct_field_has_vals(int field)
{
	return field != MF_FAMILY && field != MF_PROTO && field != MF_STATE &&
	       field != MF_LABELS && field != MF_STATUS;
}

/* Node at the top of the stack; returns its index. */
static uint32_t lct_mnode_build(struct lct_mbuild *b, int depth)
{
	lua_State *L = b->L;
	int t = lua_gettop(L);
	uint32_t idx = b->nnodes++;
	struct lct_mnode *n = b->m ? &b->m->node[idx] : NULL;
	const char *op;

	if (depth > LCT_M_MAXDEPTH)
		lct_mbad(b, "nested too deep", NULL);
	if (b->nnodes > LCT_M_MAXNODES)
		lct_mbad(b, "too many parts", NULL);
	if (b->m != NULL && b->nnodes > b->m->nnodes)
		lct_mbad(b, "changed while being read", NULL);
	if (!lua_istable(L, t))
		lct_mbad(b, "node expected, got ", luaL_typename(L, t));
	luaL_checkstack(L, 8, "filter");
	if (n != NULL)
		memset(n, 0, sizeof(*n));
	lct_rawfield(L, t, "op");
	op = lua_tostring(L, -1);
	lua_pop(L, 1);
	if (op != NULL && strcmp(op, "const") == 0) {
		if (n != NULL) {
			n->op = M_CONST;
			n->value = (uint8_t)lct_bool_field(L, t, "value", b->fname);
		}
		return idx;
	}
	if (op != NULL) {
		int kind = strcmp(op, "all") == 0 ? M_ALL : strcmp(op, "any") == 0 ? M_ANY :
			   strcmp(op, "not") == 0 ? M_NOT : -1;
		int i, len = (int)lua_rawlen(L, t);
		uint32_t prev = 0;

		if (kind < 0)
			lct_mbad(b, "unknown op ", op);
		if (kind == M_NOT && len != 1)
			lct_mbad(b, "not takes one node", NULL);
		if (n != NULL) {
			n->op = (uint8_t)kind;
			n->nvals = (uint32_t)len;
		}
		for (i = 1; i <= len; i++) {
			uint32_t c;

			lua_rawgeti(L, t, i);
			c = lct_mnode_build(b, depth + 1);
			lua_pop(L, 1);
			if (b->m != NULL) {
				if (i == 1)
					b->m->node[idx].first = c;
				else
					b->m->node[prev].next = c;
			}
			prev = c;
		}
		return idx;
	}
	/* A leaf. */
	{
		int field, i, len;

		if (lct_rawfield(L, t, "field") != LUA_TSTRING)
			lct_mbad(b, "leaf without a field name", NULL);
		field = lct_mfield_lookup(lua_tostring(L, -1));
		if (field < 0)
			lct_mbad(b, "unknown field ", lua_tostring(L, -1));
		lua_pop(L, 1);
		if (field == MF_SRC || field == MF_DST || field == MF_SPORT || field == MF_DPORT ||
		    field == MF_PROTO || field == MF_ITYPE || field == MF_ICODE || field == MF_IID ||
		    field == MF_OZONE)
			b->needs |= LCT_V_DIR0;
		if (field == MF_RSRC || field == MF_RDST || field == MF_RSPORT ||
		    field == MF_RDPORT || field == MF_RZONE)
			b->needs |= LCT_V_DIR1;
		if (field == MF_STATE)
			b->needs |= LCT_V_PINFO;
		if (n != NULL) {
			n->op = M_LEAF;
			n->field = (uint8_t)field;
			n->first = b->nvals;
		}
		if (field == MF_STATUS) {
			int64_t v = 0, m = 0xffffffffLL;

			if (lct_rawfield(L, t, "value") == LUA_TNIL)
				lct_mbad(b, "status without a value", NULL);
			v = lct_status_arg(L, -1, b->fname, "status");
			lua_pop(L, 1);
			if (lct_rawfield(L, t, "mask") != LUA_TNIL)
				m = lct_status_arg(L, -1, b->fname, "status_mask");
			else
				m = v;
			lua_pop(L, 1);
			if (n != NULL) {
				n->u.st.value = (uint32_t)(v & m);
				n->u.st.mask = (uint32_t)m;
			}
			return idx;
		}
		if (lct_rawfield(L, t, "values") != LUA_TTABLE)
			lct_mbad(b, "leaf without values: ", lct_mfield_names[field]);
		len = (int)lua_rawlen(L, -1);
		if (len == 0)
			lct_mbad(b, "no values for ", lct_mfield_names[field]);
		if (b->nvals + (uint32_t)len > LCT_M_MAXVALS)
			lct_mbad(b, "too many values", NULL);
		if (b->m != NULL && lct_field_has_vals(field) && b->nvals + (uint32_t)len > b->m->nvals)
			lct_mbad(b, "changed while being read", NULL);
		for (i = 1; i <= len; i++) {
			union lct_mval tmp, *v = b->m && lct_field_has_vals(field) ?
						 &b->m->val[b->nvals + (uint32_t)(i - 1)] : &tmp;
			struct lct_mnode scratch;

			lua_rawgeti(L, -1, i);
			memset(v, 0, sizeof(*v));
			if (n == NULL) {
				memset(&scratch, 0, sizeof(scratch));
				scratch.field = (uint8_t)field;
				lct_leaf_val(b, &scratch, v);
			} else {
				lct_leaf_val(b, n, v);
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
		if (lct_field_has_vals(field)) {
			if (n != NULL)
				n->nvals = (uint32_t)len;
			b->nvals += (uint32_t)len;
		}
		return idx;
	}
}

/* core.matcher(desc) -> a matcher; raises naming fname (opt. arg 2). */
static int lct_f_matcher(lua_State *L)
{
	const char *fname = luaL_optstring(L, 2, "filter");
	struct lct_mbuild b;
	struct lct_matcher *m;
	size_t size;

	lua_settop(L, 1);
	memset(&b, 0, sizeof(b));
	b.L = L;
	b.fname = fname;
	lct_mnode_build(&b, 0);		/* count, and check */
	size = sizeof(*m) + b.nnodes * sizeof(struct lct_mnode) +
	       b.nvals * sizeof(union lct_mval);
	m = lct_newuserdata(L, size);
	memset(m, 0, size);
	m->node = (struct lct_mnode *)(m + 1);
	m->val = (union lct_mval *)(m->node + b.nnodes);
	m->nnodes = b.nnodes;
	m->nvals = b.nvals;
	lct_class_set(L, &lct_matcher_key);
	lua_pushvalue(L, 1);
	b.m = m;
	b.nnodes = b.nvals = 0;
	b.needs = 0;
	lct_mnode_build(&b, 0);
	lua_pop(L, 1);
	m->needs = b.needs;
	return 1;
}

struct lct_matcher *lct_matcher_arg(lua_State *L, int idx, const char *fname)
{
	struct lct_matcher *m;

	if (lua_isnoneornil(L, idx))
		return NULL;
	m = lct_class_test(L, idx, &lct_matcher_key);
	if (m == NULL)
		lct_argerror(L, fname, "filter", "matcher expected, got %s", luaL_typename(L, idx));
	return m;
}

/* ---- matching --------------------------------------------------------- */

struct lct_view {
	const struct nlmsghdr *nlh;
	const struct nlattr *at[LCT_CTA_MAX + 1];
	struct lct_dir dir[2];
	struct lct_pinfo pi;
};

static int lct_ranges(const struct lct_matcher *m, const struct lct_mnode *n, uint32_t x)
{
	const union lct_mval *v = m->val + n->first;
	uint32_t i;

	for (i = 0; i < n->nvals; i++)
		if (x >= v[i].r.lo && x <= v[i].r.hi)
			return 1;
	return 0;
}

static int lct_u16_of(const struct nlattr *a, uint32_t *x)
{
	uint16_t v;

	if (!lct_a_u16(a, &v))
		return 0;
	*x = v;
	return 1;
}

static int lct_u8_of(const struct nlattr *a, uint32_t *x)
{
	uint8_t v;

	if (!lct_a_u8(a, &v))
		return 0;
	*x = v;
	return 1;
}

/* The zone of a direction: its tuple's, else the entry's, else 0. */
static uint32_t lct_dirzone(const struct lct_view *v, int d)
{
	uint32_t z = 0;

	if (!lct_u16_of(v->dir[d].zone, &z))
		lct_u16_of(v->at[CTA_ZONE], &z);
	return z;
}

static int lct_leaf(const struct lct_matcher *m, const struct lct_mnode *n,
		    const struct lct_view *v)
{
	uint32_t x = 0, i;
	int d;

	switch (n->field) {
	case MF_FAMILY: {
		uint8_t f = lct_nl_msgfamily(v->nlh);

		return (f == AF_INET && (n->u.families & 1)) || (f == AF_INET6 && (n->u.families & 2));
	}
	case MF_PROTO:
		return lct_u8_of(v->dir[0].num, &x) && (n->u.protos[x / 8] >> (x % 8)) & 1;
	case MF_SRC: case MF_DST: case MF_RSRC: case MF_RDST: {
		const uint8_t *a;
		int f;

		d = n->field == MF_RSRC || n->field == MF_RDST;
		f = lct_dir_addr(&v->dir[d], n->field == MF_DST || n->field == MF_RDST, &a);
		if (f == 0)
			return 0;
		for (i = 0; i < n->nvals; i++)
			if (lct_cidr_match(&m->val[n->first + i].c, f, a))
				return 1;
		return 0;
	}
	case MF_SPORT: return lct_u16_of(v->dir[0].sport, &x) && lct_ranges(m, n, x);
	case MF_DPORT: return lct_u16_of(v->dir[0].dport, &x) && lct_ranges(m, n, x);
	case MF_RSPORT: return lct_u16_of(v->dir[1].sport, &x) && lct_ranges(m, n, x);
	case MF_RDPORT: return lct_u16_of(v->dir[1].dport, &x) && lct_ranges(m, n, x);
	case MF_ITYPE: return lct_u8_of(v->dir[0].itype, &x) && lct_ranges(m, n, x);
	case MF_ICODE: return lct_u8_of(v->dir[0].icode, &x) && lct_ranges(m, n, x);
	case MF_IID: return lct_u16_of(v->dir[0].iid, &x) && lct_ranges(m, n, x);
	case MF_ZONE:
		lct_u16_of(v->at[CTA_ZONE], &x);
		return lct_ranges(m, n, x);
	case MF_OZONE: return lct_ranges(m, n, lct_dirzone(v, 0));
	case MF_RZONE: return lct_ranges(m, n, lct_dirzone(v, 1));
	case MF_TIMEOUT: return lct_a_u32(v->at[CTA_TIMEOUT], &x) && lct_ranges(m, n, x);
	case MF_SECMARK: return lct_a_u32(v->at[CTA_SECMARK], &x) && lct_ranges(m, n, x);
	case MF_ID: return lct_a_u32(v->at[CTA_ID], &x) && lct_ranges(m, n, x);
	case MF_USE: return lct_a_u32(v->at[CTA_USE], &x) && lct_ranges(m, n, x);
	case MF_MARK:
		lct_a_u32(v->at[CTA_MARK], &x);
		for (i = 0; i < n->nvals; i++)
			if ((x & m->val[n->first + i].r.hi) == m->val[n->first + i].r.lo)
				return 1;
		return 0;
	case MF_STATUS:
		lct_a_u32(v->at[CTA_STATUS], &x);
		return (x & n->u.st.mask) == n->u.st.value;
	case MF_STATE:
		if (!v->pi.has_state || v->pi.state >= 32)
			return 0;
		d = v->pi.proto == IPPROTO_TCP ? 0 : v->pi.proto == IPPROTO_SCTP ? 1 : 2;
		return (n->u.states[d] >> v->pi.state) & 1;
	case MF_LABELS: {
		const struct nlattr *a = v->at[CTA_LABELS];
		uint8_t have[16];
		size_t len;

		memset(have, 0, sizeof(have));
		if (a != NULL) {
			len = lct_a_len(a);
			memcpy(have, lct_a_data(a), len < 16 ? len : 16);
		}
		for (i = 0; i < 16; i++)
			if ((have[i] & n->u.labels[i]) != n->u.labels[i])
				return 0;
		return 1;
	}
	case MF_HELPER: {
		size_t len;
		const char *s = lct_a_str(lct_a_child(v->at[CTA_HELP], CTA_HELP_NAME), &len);

		for (i = 0; s != NULL && i < n->nvals; i++)
			if (strlen(m->val[n->first + i].s) == len &&
			    memcmp(m->val[n->first + i].s, s, len) == 0)
				return 1;
		return 0;
	}
	}
	return 0;
}

static int lct_eval(const struct lct_matcher *m, uint32_t idx, const struct lct_view *v)
{
	const struct lct_mnode *n = &m->node[idx];
	uint32_t c, i;

	switch (n->op) {
	case M_CONST:
		return n->value;
	case M_LEAF:
		return lct_leaf(m, n, v);
	case M_NOT:
		return !lct_eval(m, n->first, v);
	case M_ALL:
		for (i = 0, c = n->first; i < n->nvals; i++, c = m->node[c].next)
			if (!lct_eval(m, c, v))
				return 0;
		return 1;
	case M_ANY:
		for (i = 0, c = n->first; i < n->nvals; i++, c = m->node[c].next)
			if (lct_eval(m, c, v))
				return 1;
		return 0;
	}
	return 0;
}

int lct_match(const struct lct_matcher *m, const struct nlmsghdr *msg)
{
	struct lct_view v;

	v.nlh = msg;
	lct_a_table(msg, sizeof(struct nfgenmsg), v.at, LCT_CTA_MAX);
	if (m->needs & LCT_V_DIR0)
		lct_dir_parse(v.at[CTA_TUPLE_ORIG], NULL, &v.dir[0]);
	if (m->needs & LCT_V_DIR1)
		lct_dir_parse(v.at[CTA_TUPLE_REPLY], NULL, &v.dir[1]);
	if (m->needs & LCT_V_PINFO)
		lct_pinfo_parse(v.at[CTA_PROTOINFO], &v.pi);
	return lct_eval(m, 0, &v);
}

/* ---- what the kernel can do ------------------------------------------ */

/* The leaves that must all hold: the root, or the children of a root all(). */
static int lct_conj(const struct lct_matcher *m, const struct lct_mnode **out, int max)
{
	const struct lct_mnode *r = &m->node[0];
	uint32_t i, c;
	int k = 0;

	if (r->op == M_LEAF) {
		out[k++] = r;
		return k;
	}
	if (r->op != M_ALL)
		return 0;
	for (i = 0, c = r->first; i < r->nvals && k < max; i++, c = m->node[c].next)
		if (m->node[c].op == M_LEAF)
			out[k++] = &m->node[c];
	return k;
}

static int lct_proto_of(const struct lct_mnode *n)
{
	int p, found = -1;

	for (p = 0; p < 256; p++) {
		if (!((n->u.protos[p / 8] >> (p % 8)) & 1))
			continue;
		if (found >= 0)
			return -1;
		found = p;
	}
	return found;
}

void lct_match_kpart(const struct lct_matcher *m, int pushdown, struct lct_kpart *k)
{
	const struct lct_mnode *leaf[64];
	int i, n, other = 0, dother = 0, ports = 0;

	memset(k, 0, sizeof(*k));
	k->proto = -1;
	k->zone = -1;
	memset(k->port, 0xff, sizeof(k->port));
	if (m == NULL) {
		k->flush_exact = k->dump_exact = 1;
		return;
	}
	if (!pushdown)
		return;
	n = lct_conj(m, leaf, 64);
	if (m->node[0].op != M_LEAF && m->node[0].op != M_ALL)
		other = dother = 1;
	if (m->node[0].op == M_ALL && (uint32_t)n != m->node[0].nvals)
		other = dother = 1;
	for (i = 0; i < n; i++) {
		const struct lct_mnode *l = leaf[i];
		const union lct_mval *v = m->val + l->first;
		int f = 0, d, w;

		switch (l->field) {
		case MF_FAMILY:
			f = l->u.families == 1 ? AF_INET : l->u.families == 2 ? AF_INET6 : 0;
			break;
		case MF_SRC: case MF_DST: case MF_RSRC: case MF_RDST: {
			uint32_t j;

			f = v[0].c.family;
			for (j = 1; j < l->nvals; j++)
				if (v[j].c.family != f)
					f = 0;
			d = l->field == MF_RSRC || l->field == MF_RDST;
			w = l->field == MF_DST || l->field == MF_RDST;
			/* One IPv4 address: CTA_FILTER (IPv6 selects nothing on 6.18). */
			if (l->nvals == 1 && f == AF_INET && v[0].c.plen == 32) {
				k->af[d][w] = AF_INET;
				memcpy(k->addr[d][w], v[0].c.addr, 4);
				k->has_tuple = 1;
			} else {
				dother = 1;
			}
			other = 1;
			break;
		}
		case MF_PROTO:
			k->proto = lct_proto_of(l);
			if (k->proto >= 0)
				k->has_tuple = 1;
			else
				dother = 1;
			other = 1;
			break;
		case MF_SPORT: case MF_DPORT: case MF_RSPORT: case MF_RDPORT:
			d = l->field == MF_RSPORT || l->field == MF_RDPORT;
			w = l->field == MF_DPORT || l->field == MF_RDPORT;
			if (l->nvals == 1 && v[0].r.lo == v[0].r.hi) {
				k->port[d][w] = (int)v[0].r.lo;
				ports = 1;
			} else {
				dother = 1;
			}
			other = 1;
			break;
		case MF_MARK:
			if (l->nvals == 1 && !k->has_mark) {
				k->has_mark = 1;
				k->mark = v[0].r.lo;
				k->mark_mask = v[0].r.hi;
			} else {
				other = dother = 1;
			}
			break;
		case MF_STATUS:
			if (!k->has_status) {
				k->has_status = 1;
				k->status = l->u.st.value;
				k->status_mask = l->u.st.mask;
			} else {
				other = dother = 1;
			}
			break;
		case MF_ZONE:
			/* The kernel reads zone 0 as "any zone": only others go there. */
			if (l->nvals == 1 && v[0].r.lo == v[0].r.hi && v[0].r.lo > 0 && k->zone < 0)
				k->zone = (int)v[0].r.lo;
			else
				other = dother = 1;
			break;
		default:
			other = dother = 1;
		}
		if (f != 0) {
			if (k->family != 0 && k->family != f)
				return;		/* matches nothing; C says so */
			k->family = (uint8_t)f;
		}
	}
	/* The kernel compares ports only under a protocol that has them. */
	if (k->proto < 0 || !lct_proto_ports((unsigned int)k->proto)) {
		memset(k->port, 0xff, sizeof(k->port));
		if (ports)
			dother = 1;
	}
	for (i = 0; i < 4; i++)
		if (k->port[i / 2][i % 2] >= 0)
			k->has_tuple = 1;
	k->flush_exact = !other;
	k->dump_exact = !dother;
}

/*
 * The request's filter attributes.  With tuple set, CTA_FILTER for what
 * the kernel compares exactly (protocol, IPv4 addresses, ports).
 */
void lct_kpart_put(struct nlmsghdr *nlh, const struct lct_kpart *k, int tuple)
{
	uint32_t flags[2] = { 0, 0 };
	int dir, w;

	if (tuple && k->has_tuple) {
		for (dir = 0; dir < 2; dir++) {
			struct nlattr *nest, *n2;
			int v4 = k->af[dir][0] == AF_INET || k->af[dir][1] == AF_INET;

			if (k->proto < 0 && !v4)
				continue;
			nest = mnl_attr_nest_start(nlh, dir ? CTA_TUPLE_REPLY : CTA_TUPLE_ORIG);
			if (v4) {
				n2 = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
				for (w = 0; w < 2; w++) {
					if (k->af[dir][w] != AF_INET)
						continue;
					mnl_attr_put(nlh, w ? CTA_IP_V4_DST : CTA_IP_V4_SRC, 4,
						     k->addr[dir][w]);
					flags[dir] |= 1u << w;		/* IP_SRC, IP_DST */
				}
				mnl_attr_nest_end(nlh, n2);
			}
			if (k->proto >= 0) {
				n2 = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
				mnl_attr_put_u8(nlh, CTA_PROTO_NUM, (uint8_t)k->proto);
				flags[dir] |= 1u << 3;			/* PROTO_NUM */
				for (w = 0; w < 2; w++) {
					if (k->port[dir][w] < 0)
						continue;
					mnl_attr_put_u16(nlh, w ? CTA_PROTO_DST_PORT : CTA_PROTO_SRC_PORT,
							 htons((uint16_t)k->port[dir][w]));
					flags[dir] |= 1u << (4 + w);	/* PROTO_SRC_PORT, _DST_PORT */
				}
				mnl_attr_nest_end(nlh, n2);
			}
			mnl_attr_nest_end(nlh, nest);
		}
		{
			struct nlattr *f = mnl_attr_nest_start(nlh, CTA_FILTER);

			mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS, flags[0]);
			mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, flags[1]);
			mnl_attr_nest_end(nlh, f);
		}
	}
	if (k->has_mark) {
		mnl_attr_put_u32(nlh, CTA_MARK, htonl(k->mark));
		mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(k->mark_mask));
	}
	if (k->has_status) {
		mnl_attr_put_u32(nlh, CTA_STATUS, htonl(k->status));
		mnl_attr_put_u32(nlh, CTA_STATUS_MASK, htonl(k->status_mask));
	}
	if (k->zone > 0)
		mnl_attr_put_u16(nlh, CTA_ZONE, htons((uint16_t)k->zone));
}

/*
 * The events socket filter libnetfilter_conntrack compiles, from the
 * leaves that must all hold, within what the library can hold (it drops
 * silently what does not fit: 20 IPv6 prefixes, 127 IPv4 prefixes or
 * marks); the rest is left to lct_match.  Its address tests go wrong when
 * one field holds both families, and events leave out a zero mark, so such
 * leaves stay out too.  No Lua here: the filter object is always freed.
 */
int lct_match_attach(const struct lct_matcher *m, int fd)
{
	const struct lct_mnode *leaf[64];
	struct nfct_filter *f;
	int i, n, used = 0, r;

	if (m == NULL)
		return -1;
	n = lct_conj(m, leaf, 64);
	f = nfct_filter_create();
	if (f == NULL)
		return ENOMEM;
	for (i = 0; i < n; i++) {
		const struct lct_mnode *l = leaf[i];
		const union lct_mval *v = m->val + l->first;
		uint32_t j;
		int fam = 0, p, ok = 1;

		switch (l->field) {
		case MF_PROTO:
			for (p = 0; p < 256; p++)
				if ((l->u.protos[p / 8] >> (p % 8)) & 1)
					nfct_filter_add_attr_u32(f, NFCT_FILTER_L4PROTO, (uint32_t)p);
			used = 1;
			break;
		case MF_SRC:
		case MF_DST:
			for (j = 0; j < l->nvals; j++) {
				if (fam && v[j].c.family != fam)
					ok = 0;
				fam = v[j].c.family;
			}
			if (!ok || (fam == AF_INET && l->nvals > 127) ||
			    (fam == AF_INET6 && l->nvals > 20))
				break;
			for (j = 0; j < l->nvals; j++) {
				if (fam == AF_INET) {
					struct nfct_filter_ipv4 a;
					uint32_t x;

					memcpy(&x, v[j].c.addr, 4);
					a.addr = ntohl(x);
					a.mask = v[j].c.plen == 0 ? 0 : 0xffffffffu << (32 - v[j].c.plen);
					nfct_filter_add_attr(f, l->field == MF_SRC ?
							     NFCT_FILTER_SRC_IPV4 : NFCT_FILTER_DST_IPV4, &a);
				} else {
					struct nfct_filter_ipv6 a;
					int w;

					for (w = 0; w < 4; w++) {
						int bits = (int)v[j].c.plen - 32 * w;
						uint32_t x;

						memcpy(&x, v[j].c.addr + 4 * w, 4);
						a.addr[w] = ntohl(x);
						a.mask[w] = bits >= 32 ? 0xffffffffu : bits <= 0 ? 0 :
							    0xffffffffu << (32 - bits);
					}
					nfct_filter_add_attr(f, l->field == MF_SRC ?
							     NFCT_FILTER_SRC_IPV6 : NFCT_FILTER_DST_IPV6, &a);
				}
			}
			used = 1;
			break;
		case MF_MARK:
			if (l->nvals > 127)
				break;
			for (j = 0; j < l->nvals; j++)
				if (v[j].r.lo == 0)
					ok = 0;
			if (!ok)
				break;
			for (j = 0; j < l->nvals; j++) {
				struct nfct_filter_dump_mark mk;

				mk.val = v[j].r.lo;
				mk.mask = v[j].r.hi;
				nfct_filter_add_attr(f, NFCT_FILTER_MARK, &mk);
			}
			used = 1;
			break;
		}
	}
	if (!used) {
		nfct_filter_destroy(f);
		return -1;
	}
	r = nfct_filter_attach(fd, f) < 0 ? errno : 0;
	nfct_filter_destroy(f);
	return r;
}

/* ---- Lua side --------------------------------------------------------- */

/* m:kernel([pushdown]) -> what a dump request would carry, as a table. */
static int lct_m_kernel(lua_State *L)
{
	struct lct_matcher *m = lct_class_check(L, 1, &lct_matcher_class, "kernel");
	struct lct_kpart k;
	char buf[INET6_ADDRSTRLEN];
	int d, w;
	static const char *const an[2][2] = { {"src", "dst"}, {"reply_src", "reply_dst"} };
	static const char *const pn[2][2] = { {"sport", "dport"}, {"reply_sport", "reply_dport"} };

	lct_match_kpart(m, lua_isnone(L, 2) || lua_toboolean(L, 2), &k);
	lua_newtable(L);
	if (k.family) {
		lua_pushstring(L, lct_family_name(k.family));
		lua_setfield(L, -2, "family");
	}
	if (k.proto >= 0) {
		lua_pushinteger(L, k.proto);
		lua_setfield(L, -2, "proto");
	}
	for (d = 0; d < 2; d++) {
		for (w = 0; w < 2; w++) {
			if (k.af[d][w] == AF_INET) {
				lua_pushlstring(L, buf, lct_ntop(AF_INET, k.addr[d][w], buf));
				lua_setfield(L, -2, an[d][w]);
			}
			if (k.port[d][w] >= 0) {
				lua_pushinteger(L, k.port[d][w]);
				lua_setfield(L, -2, pn[d][w]);
			}
		}
	}
	if (k.has_mark) {
		lua_pushinteger(L, k.mark);
		lua_setfield(L, -2, "mark");
		lua_pushinteger(L, k.mark_mask);
		lua_setfield(L, -2, "mark_mask");
	}
	if (k.has_status) {
		lua_pushinteger(L, k.status);
		lua_setfield(L, -2, "status");
		lua_pushinteger(L, k.status_mask);
		lua_setfield(L, -2, "status_mask");
	}
	if (k.zone > 0) {
		lua_pushinteger(L, k.zone);
		lua_setfield(L, -2, "zone");
	}
	lua_pushboolean(L, k.flush_exact);
	lua_setfield(L, -2, "flush_exact");
	lua_pushboolean(L, k.dump_exact);
	lua_setfield(L, -2, "dump_exact");
	return 1;
}

static int lct_m_tostring(lua_State *L)
{
	struct lct_matcher *m = lct_class_check(L, 1, &lct_matcher_class, "tostring");

	lua_pushfstring(L, "conntrack.matcher (%d nodes, %d values)", (int)m->nnodes,
			(int)m->nvals);
	return 1;
}

const luaL_Reg lct_matcher_methods[] = {
	{"kernel", lct_m_kernel},
	{NULL, NULL}
};

static const luaL_Reg lct_matcher_meta[] = {
	{"__tostring", lct_m_tostring},
	{NULL, NULL}
};

/* Its methods are merged by core.c (entry.c adds m:match(e)). */
const struct lct_class lct_matcher_class = {
	.key = &lct_matcher_key, .name = "conntrack.matcher", .what = "conntrack matcher",
	.meta = lct_matcher_meta,
};

static const luaL_Reg lct_match_funcs[] = {
	{"matcher", lct_f_matcher},
	{NULL, NULL}
};

void lct_match_open(lua_State *L)
{
	lct_setfuncs(L, lct_match_funcs, 0);
}
