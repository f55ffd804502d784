/*
 * Expectations: flows a helper (FTP, SIP...) expects to be opened.  The
 * objects are kept as their messages came and decoded lazily, like entries;
 * their text is the CLI's (through libnetfilter_conntrack, as `conntrack -L
 * expect` prints it).  The handle's expectation requests: get, create,
 * delete, flush, count and stats; dump.c lists them and events.c streams
 * their events.
 */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include "lct.h"

struct lct_expect {
	double time;		/* events: when received (seconds since the epoch), else 0 */
	uint32_t len;
	uint8_t evtype;
	uint8_t indexed;
	uint16_t off[CTA_EXPECT_MAX + 1];
	uint64_t msg[];
};

static const char lct_expect_key = 'x';

static const struct nlmsghdr *lct_xmsg(const struct lct_expect *x)
{
	return (const struct nlmsghdr *)x->msg;
}

static const struct nlattr *lct_xattr(struct lct_expect *x, unsigned int type)
{
	if (!x->indexed) {
		lct_a_index(lct_xmsg(x), sizeof(struct nfgenmsg), x->off, CTA_EXPECT_MAX);
		x->indexed = 1;
	}
	if (type > CTA_EXPECT_MAX || x->off[type] == 0)
		return NULL;
	return (const struct nlattr *)((const char *)x->msg + x->off[type]);
}

void lct_expect_push(lua_State *L, const struct nlmsghdr *nlh, int evtype, double time)
{
	struct lct_expect *x = lct_newuserdata(L, sizeof(*x) + nlh->nlmsg_len);

	x->time = time;
	x->len = nlh->nlmsg_len;
	x->evtype = (uint8_t)evtype;
	x->indexed = 0;
	memset(x->off, 0, sizeof(x->off));
	memcpy(x->msg, nlh, nlh->nlmsg_len);
	lct_class_set(L, &lct_expect_key);
}

const struct nlmsghdr *lct_expect_msg(lua_State *L, int idx)
{
	struct lct_expect *x = lct_class_test(L, idx, &lct_expect_key);

	return x ? lct_xmsg(x) : NULL;
}

enum {
	XF_FAMILY, XF_PROTO, XF_PROTONUM, XF_MASTER, XF_TUPLE, XF_MASK, XF_TIMEOUT,
	XF_ID, XF_HELPER, XF_ZONE, XF_FLAGS, XF_CLASS, XF_NAT_DIR, XF_NAT, XF_FN, XF_TYPE,
	XF_TIME, XF_N
};

static const char *const lct_expect_fields[] = {
	"family", "proto", "protonum", "master", "tuple", "mask", "timeout",
	"id", "helper", "zone", "flags", "class", "nat_dir", "nat", "fn", "type", "time", NULL
};

static const char *const lct_xflag_names[] = { "PERMANENT", "INACTIVE", "USERSPACE" };

static void lct_x_push(lua_State *L, struct lct_expect *x, int f)
{
	const struct nlattr *a;
	uint32_t v;
	uint16_t z;
	uint8_t p;
	size_t n;
	const char *s;

	switch (f) {
	case XF_FAMILY:
		s = lct_family_name(lct_nl_msgfamily(lct_xmsg(x)));
		if (s != NULL)
			lua_pushstring(L, s);
		else
			lua_pushfstring(L, "%d", (int)lct_nl_msgfamily(lct_xmsg(x)));
		return;
	case XF_PROTO:
	case XF_PROTONUM:
		a = lct_a_child(lct_a_child(lct_xattr(x, CTA_EXPECT_TUPLE), CTA_TUPLE_PROTO),
				CTA_PROTO_NUM);
		if (!lct_a_u8(a, &p))
			lua_pushnil(L);
		else if (f == XF_PROTONUM)
			lua_pushinteger(L, p);
		else if (lct_proto_name(p) != NULL)
			lua_pushstring(L, lct_proto_name(p));
		else
			lua_pushfstring(L, "%d", (int)p);
		return;
	case XF_MASTER:
	case XF_TUPLE:
	case XF_MASK:
		a = lct_xattr(x, f == XF_MASTER ? CTA_EXPECT_MASTER :
			      f == XF_TUPLE ? CTA_EXPECT_TUPLE : CTA_EXPECT_MASK);
		if (a != NULL)
			lct_tuple_push(L, a, NULL);
		else
			lua_pushnil(L);
		return;
	case XF_TIMEOUT:
	case XF_ID:
	case XF_CLASS:
		if (lct_a_u32(lct_xattr(x, f == XF_TIMEOUT ? CTA_EXPECT_TIMEOUT :
					f == XF_ID ? CTA_EXPECT_ID : CTA_EXPECT_CLASS), &v))
			lua_pushinteger(L, (lua_Integer)v);
		else
			lua_pushnil(L);
		return;
	case XF_HELPER:
	case XF_FN:
		s = lct_a_str(lct_xattr(x, f == XF_HELPER ? CTA_EXPECT_HELP_NAME : CTA_EXPECT_FN), &n);
		if (s != NULL)
			lua_pushlstring(L, s, n);
		else
			lua_pushnil(L);
		return;
	case XF_ZONE:
		if (lct_a_u16(lct_xattr(x, CTA_EXPECT_ZONE), &z))
			lua_pushinteger(L, z);
		else
			lua_pushnil(L);
		return;
	case XF_FLAGS: {
		int i;

		if (!lct_a_u32(lct_xattr(x, CTA_EXPECT_FLAGS), &v)) {
			lua_pushnil(L);
			return;
		}
		lua_createtable(L, 0, 2);
		for (i = 0; i < 32; i++) {
			if (!(v & (1u << i)))
				continue;
			lua_pushboolean(L, 1);
			if (i < 3)
				lua_setfield(L, -2, lct_xflag_names[i]);
			else
				lua_rawseti(L, -2, i);
		}
		return;
	}
	case XF_NAT_DIR:
		if (lct_a_u32(lct_a_child(lct_xattr(x, CTA_EXPECT_NAT), CTA_EXPECT_NAT_DIR), &v))
			lua_pushstring(L, v == 0 ? "orig" : "reply");
		else
			lua_pushnil(L);
		return;
	case XF_NAT:
		a = lct_a_child(lct_xattr(x, CTA_EXPECT_NAT), CTA_EXPECT_NAT_TUPLE);
		if (a != NULL)
			lct_tuple_push(L, a, NULL);
		else
			lua_pushnil(L);
		return;
	case XF_TYPE:
		if (lct_event_name(x->evtype) != NULL)
			lua_pushstring(L, lct_event_name(x->evtype));
		else
			lua_pushnil(L);
		return;
	case XF_TIME:
		if (x->time > 0)
			lua_pushnumber(L, x->time);
		else
			lua_pushnil(L);
		return;
	}
	lua_pushnil(L);
}

static int lct_x_index(lua_State *L)
{
	struct lct_expect *x;
	int f = lct_class_field(L, (void **)&x);

	if (f >= 0)
		lct_x_push(L, x, f);
	return 1;
}

static int lct_x_totable(lua_State *L)
{
	struct lct_expect *x = lct_class_check(L, 1, &lct_expect_class, "totable");
	int f;

	lua_createtable(L, 0, XF_N);
	for (f = 0; f < XF_N; f++) {
		lct_x_push(L, x, f);
		if (lua_type(L, -1) == LUA_TUSERDATA) {
			/* tuples as plain tables */
			lua_getfield(L, -1, "totable");
			lua_insert(L, -2);
			lua_call(L, 1, 1);
		}
		if (lua_isnil(L, -1))
			lua_pop(L, 1);
		else
			lua_setfield(L, -2, lct_expect_fields[f]);
	}
	return 1;
}

/* The CLI's text, through the library it prints with (type: NFCT_O_*). */
static int lct_x_text(lua_State *L, struct lct_expect *x, unsigned int type, unsigned int flags)
{
	struct nf_expect *e = nfexp_new();
	char buf[2048];
	int n;

	if (e == NULL)
		return lct_error(L, "tostring: out of memory");
	nfexp_nlmsg_parse(lct_xmsg(x), e);
	n = nfexp_snprintf(buf, sizeof(buf), e, lct_nfct_msgtype(x->evtype), type, flags);
	nfexp_destroy(e);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

static int lct_x_tostring(lua_State *L)
{
	return lct_x_text(L, lct_class_check(L, 1, &lct_expect_class, "tostring"), NFCT_O_DEFAULT, 0);
}

/*
 * x:format([opts]): the CLI's -o options for expectations: "xml" (one
 * <flow> element, as `conntrack -L expect -o xml` prints it), "timestamp"
 * (events: the time of receipt before the line; in XML the library's
 * <when>, the time of printing, as the CLI's).
 */
static int lct_x_format(lua_State *L)
{
	struct lct_expect *x = lct_class_check(L, 1, &lct_expect_class, "format");
	unsigned int o = lct_output_opts(L, 2, "format", "opts", LCT_O_XML | LCT_O_TIMESTAMP);

	if (o & LCT_O_XML)
		return lct_x_text(L, x, NFCT_O_XML, o & LCT_O_TIMESTAMP ? NFCT_OF_TIME : 0);
	lct_x_text(L, x, NFCT_O_DEFAULT, 0);
	if ((o & LCT_O_TIMESTAMP) && x->time > 0)
		lct_stamp_prefix(L, x->time, 1);
	return 1;
}

static int lct_x_raw(lua_State *L)
{
	struct lct_expect *x = lct_class_check(L, 1, &lct_expect_class, "raw");

	lua_pushlstring(L, (const char *)x->msg, x->len);
	return 1;
}

static int lct_x_eq(lua_State *L)
{
	struct lct_expect *a = lct_class_test(L, 1, &lct_expect_key);
	struct lct_expect *b = lct_class_test(L, 2, &lct_expect_key);

	lua_pushboolean(L, a && b && a->len == b->len && memcmp(a->msg, b->msg, a->len) == 0);
	return 1;
}

static const luaL_Reg lct_expect_methods[] = {
	{"totable", lct_x_totable},
	{"format", lct_x_format},
	{"raw", lct_x_raw},
	{NULL, NULL}
};
static const luaL_Reg *const lct_expect_arrays[] = { lct_expect_methods, NULL };

static const luaL_Reg lct_expect_meta[] = {
	{"__tostring", lct_x_tostring},
	{"__eq", lct_x_eq},
	{NULL, NULL}
};

const struct lct_class lct_expect_class = {
	.key = &lct_expect_key, .name = "conntrack.expectation", .what = "conntrack expectation",
	.meta = lct_expect_meta, .methods = lct_expect_arrays,
	.fields = lct_expect_fields, .index = lct_x_index,
};

/* ---- requests ---------------------------------------------------------- */

static struct nlmsghdr *lct_xreq(struct lct_handle *h, uint8_t type, uint16_t flags,
				 uint8_t family)
{
	return lct_nl_req(h->tx, (NFNL_SUBSYS_CTNETLINK_EXP << 8) | type, NLM_F_ACK | flags,
			  family, lct_handle_seq(h));
}

/* The expectation named at idx: an expectation object, or a tuple table. */
static void lct_x_key(lua_State *L, int idx, const char *fname, struct nlmsghdr *nlh)
{
	const struct nlmsghdr *m = lct_expect_msg(L, idx);
	struct lct_xspec x;

	if (m != NULL) {
		const struct nlattr *at[CTA_EXPECT_MAX + 1];

		lct_a_table(m, sizeof(struct nfgenmsg), at, CTA_EXPECT_MAX);
		if (at[CTA_EXPECT_TUPLE] == NULL)
			lct_argerror(L, fname, "tuple", "the expectation has no tuple");
		mnl_attr_put(nlh, CTA_EXPECT_TUPLE, mnl_attr_get_payload_len(at[CTA_EXPECT_TUPLE]),
			     mnl_attr_get_payload(at[CTA_EXPECT_TUPLE]));
		if (at[CTA_EXPECT_ZONE] != NULL)
			mnl_attr_put(nlh, CTA_EXPECT_ZONE, mnl_attr_get_payload_len(at[CTA_EXPECT_ZONE]),
				     mnl_attr_get_payload(at[CTA_EXPECT_ZONE]));
		lct_nl_family(nlh, lct_nl_msgfamily(m), NFNETLINK_V0);
		return;
	}
	lct_xspec_read(L, idx, 0, fname, &x);
	lct_xspec_put(nlh, &x);
}

static void lct_x_got(lua_State *L, const struct nlmsghdr *m, void *ud)
{
	int *got = ud;

	if ((*got)++ == 0)
		lct_expect_push(L, m, 0, 0);
}

/* h:expect_get(tuple or expectation) -> expectation | nil, msg, errno */
static int lct_h_xget(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "expect_get");
	struct nlmsghdr *nlh = lct_xreq(h, IPCTNL_MSG_EXP_GET, 0, AF_UNSPEC);
	int got = 0, err;

	lct_x_key(L, 2, "expect_get", nlh);
	err = lct_handle_exchange(L, h, "expect_get", nlh, lct_x_got, &got);
	if (err != 0)
		return lct_pusherr(L, "expect_get", err);
	if (got == 0)
		return lct_pusherr(L, "expect_get", ENOENT);
	return 1;
}

static int lct_x_change(lua_State *L, const char *op, struct nlmsghdr *nlh,
			struct lct_handle *h)
{
	int err = lct_handle_exchange(L, h, op, nlh, NULL, NULL);

	if (err != 0)
		return lct_pusherr(L, op, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* h:expect_create(spec) -> true | nil, msg, errno */
static int lct_h_xcreate(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "expect_create");
	struct nlmsghdr *nlh = lct_xreq(h, IPCTNL_MSG_EXP_NEW, NLM_F_CREATE | NLM_F_EXCL, AF_UNSPEC);
	struct lct_xspec x;

	lct_xspec_read(L, 2, 1, "expect_create", &x);
	lct_xspec_put(nlh, &x);
	return lct_x_change(L, "expect_create", nlh, h);
}

/* h:expect_delete(tuple or expectation) -> true | nil, msg, errno */
static int lct_h_xdelete(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "expect_delete");
	struct nlmsghdr *nlh = lct_xreq(h, IPCTNL_MSG_EXP_DELETE, 0, AF_UNSPEC);

	lct_x_key(L, 2, "expect_delete", nlh);
	return lct_x_change(L, "expect_delete", nlh, h);
}

/*
 * h:expect_flush([{family =, helper =}]) -> true | nil, msg, errno: every
 * expectation, those of one family, or those of one helper.
 */
static int lct_h_xflush(lua_State *L)
{
	static const char *const names[] = { "family", "helper", NULL };
	struct lct_handle *h = lct_handle_check(L, 1, "expect_flush");
	int family = AF_UNSPEC;
	const char *helper = NULL;
	struct nlmsghdr *nlh;

	if (!lua_isnoneornil(L, 2)) {
		lct_check_table(L, 2, "expect_flush", "opts");
		lct_check_names(L, 2, "expect_flush", names);
		if (lct_rawfield(L, 2, "family") != LUA_TNIL)
			family = lct_family_arg(L, -1, "expect_flush", "family");
		lua_pop(L, 1);
		if (lct_rawfield(L, 2, "helper") != LUA_TNIL) {
			if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
			    lua_rawlen(L, -1) > 15)
				lct_argerror(L, "expect_flush", "helper", "helper name expected, got %s",
					     lct_shortval(L, -1));
			helper = lua_tostring(L, -1);
		}
	}
	nlh = lct_xreq(h, IPCTNL_MSG_EXP_DELETE, 0, (uint8_t)family);
	if (family != AF_UNSPEC)
		lct_nl_family(nlh, (uint8_t)family, 1);
	if (helper != NULL)
		mnl_attr_put_strz(nlh, CTA_EXPECT_HELP_NAME, helper);
	return lct_x_change(L, "expect_flush", nlh, h);
}

/* h:expect_count() -> the number of expectations (a dump: the kernel keeps no count to ask). */
static void lct_x_count1(lua_State *L, const struct nlmsghdr *m, void *ud)
{
	(void)L;
	(void)m;
	(*(lua_Integer *)ud)++;
}

static int lct_h_xcount(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "expect_count");
	struct nlmsghdr *nlh = lct_nl_req(h->tx, (NFNL_SUBSYS_CTNETLINK_EXP << 8) | IPCTNL_MSG_EXP_GET,
					  NLM_F_DUMP, AF_UNSPEC, lct_handle_seq(h));
	lua_Integer n = 0;
	int err = lct_handle_exchange(L, h, "expect_count", nlh, lct_x_count1, &n);

	if (err != 0)
		return lct_pusherr(L, "expect_count", err);
	lua_pushinteger(L, n);
	return 1;
}

static int lct_h_xstats(lua_State *L)
{
	return lct_stats(L, "expect_stats", 1);
}

const luaL_Reg lct_expect_handle_methods[] = {
	{"expect_get", lct_h_xget},
	{"expect_create", lct_h_xcreate},
	{"expect_delete", lct_h_xdelete},
	{"expect_flush", lct_h_xflush},
	{"expect_count", lct_h_xcount},
	{"expect_stats", lct_h_xstats},
	{NULL, NULL}
};
