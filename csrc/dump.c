/*
 * Dumps: h:dump streams the table (or the dying or unconfirmed list)
 * through a generic for, h:list collects it.  Each dump has a socket of its
 * own, so a loop may make other requests on the handle meanwhile.  A
 * matcher selects the entries: what the kernel can apply goes into the
 * request, and every message is checked against the whole matcher in C
 * before an entry is made of it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "lct.h"

struct lct_dump {
	struct mnl_socket *nl;		/* NULL once closed */
	struct lct_xfer x;
	const struct lct_matcher *m;	/* kept alive by mref */
	int mref;
	int again;			/* a tuple filter without family: IPv6 next */
	const char *fname;		/* names the errors of st:next() */
	int unique;			/* no flow twice */
	int expect;			/* expectations, not flows */
	uint64_t *seen;			/* unique: keys of the flows yielded (pairs of hashes) */
	size_t seencap, seenn;
	int interrupted;
	uint32_t seq;
	lua_Integer count, duplicates;
	char req[1024];
	char rx[LCT_RXBUF];
};

static const char lct_dump_key = 'd';

static void lct_dump_end(struct lct_dump *d)
{
	if (d->nl != NULL) {
		lct_xfer_stop(&d->x);
		mnl_socket_close(d->nl);
		d->nl = NULL;
	}
	free(d->seen);
	d->seen = NULL;
	d->seencap = d->seenn = 0;
}

/*
 * Unique dumps.  Under heavy churn the kernel can send one flow twice in a
 * dump (its hash table moves entries between the chunks of a dump) without
 * flagging it.  A flow is its original tuple and zone: two independent
 * 64-bit hashes of those bytes are kept per flow, so that two different
 * flows are taken for one with a chance of about n^2 / 2^129.
 */
static void lct_key_hash(const struct nlmsghdr *m, uint64_t *h1, uint64_t *h2)
{
	const struct nlattr *at[LCT_CTA_MAX + 1];
	uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
	int i;

	lct_a_table(m, sizeof(struct nfgenmsg), at, LCT_CTA_MAX);
	for (i = 0; i < 2; i++) {
		const struct nlattr *x = at[i ? CTA_ZONE : CTA_TUPLE_ORIG];
		const unsigned char *p;
		size_t n, j;

		if (x == NULL)
			continue;
		p = lct_a_data(x);
		n = lct_a_len(x);
		for (j = 0; j < n; j++) {
			a = (a ^ p[j]) * 0x100000001b3ULL;
			b = (b + p[j] + 1) * 0xff51afd7ed558ccdULL;
			b ^= b >> 29;
		}
		a = (a ^ 0xff) * 0x100000001b3ULL;	/* separates the two parts */
	}
	*h1 = a | 1;	/* never 0: 0 marks a free slot */
	*h2 = b;
}

/* 1 when the flow of m is new to the dump, 0 when it was yielded, -1 out of memory. */
static int lct_seen_add(struct lct_dump *d, const struct nlmsghdr *m)
{
	uint64_t h1, h2;
	size_t i, mask;

	if (d->seenn * 2 >= d->seencap) {
		size_t cap = d->seencap ? d->seencap * 2 : 1024, j;
		uint64_t *t = calloc(cap, 2 * sizeof(uint64_t));

		if (t == NULL)
			return -1;
		for (j = 0; j < d->seencap; j++) {
			uint64_t k1 = d->seen[2 * j], k2 = d->seen[2 * j + 1];

			if (k1 == 0)
				continue;
			for (i = (size_t)k1 & (cap - 1); t[2 * i] != 0; i = (i + 1) & (cap - 1))
				;
			t[2 * i] = k1;
			t[2 * i + 1] = k2;
		}
		free(d->seen);
		d->seen = t;
		d->seencap = cap;
	}
	lct_key_hash(m, &h1, &h2);
	mask = d->seencap - 1;
	for (i = (size_t)h1 & mask; d->seen[2 * i] != 0; i = (i + 1) & mask)
		if (d->seen[2 * i] == h1 && d->seen[2 * i + 1] == h2)
			return 0;
	d->seen[2 * i] = h1;
	d->seen[2 * i + 1] = h2;
	d->seenn++;
	return 1;
}

static const char *const lct_dump_names[] = {
	"pushdown", "zero", "table", "unique", "readahead", NULL
};

struct lct_dumpopts {
	int pushdown, zero, expect, unique, readahead;
	uint8_t msgtype;
};

static void lct_dump_opts(lua_State *L, int idx, const char *fname, int unique,
			  struct lct_dumpopts *o)
{
	o->pushdown = 1;
	o->readahead = 1;
	o->zero = 0;
	o->expect = 0;
	o->unique = unique;
	o->msgtype = IPCTNL_MSG_CT_GET;
	if (lua_isnoneornil(L, idx))
		return;
	lct_check_table(L, idx, fname, "how");
	lct_check_names(L, idx, fname, lct_dump_names);
	if (lct_rawfield(L, idx, "pushdown") != LUA_TNIL)
		o->pushdown = lct_bool_field(L, idx, "pushdown", fname);
	lua_pop(L, 1);
	if (lct_rawfield(L, idx, "readahead") != LUA_TNIL)
		o->readahead = lct_bool_field(L, idx, "readahead", fname);
	lua_pop(L, 1);
	o->zero = lct_bool_field(L, idx, "zero", fname);
	if (lct_rawfield(L, idx, "unique") != LUA_TNIL)
		o->unique = lct_bool_field(L, idx, "unique", fname);
	lua_pop(L, 1);
	if (lct_rawfield(L, idx, "table") != LUA_TNIL) {
		const char *t = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";

		if (strcmp(t, "dying") == 0)
			o->msgtype = IPCTNL_MSG_CT_GET_DYING;
		else if (strcmp(t, "unconfirmed") == 0)
			o->msgtype = IPCTNL_MSG_CT_GET_UNCONFIRMED;
		else if (strcmp(t, "expect") == 0)
			o->expect = 1;
		else if (strcmp(t, "conntrack") != 0)
			lct_argerror(L, fname, "table",
				     "\"conntrack\", \"expect\", \"dying\" or \"unconfirmed\" expected, got %s",
				     lct_shortval(L, -1));
	}
	lua_pop(L, 1);
	if (o->zero && o->msgtype == IPCTNL_MSG_CT_GET && !o->expect)
		o->msgtype = IPCTNL_MSG_CT_GET_CTRZERO;
	else if (o->zero)
		lct_argerror(L, fname, "zero", "only for the conntrack table");
}

/*
 * Starts a dump on a fresh socket in the handle's namespace; pushes the
 * state.  Returns it, or NULL with *err (nothing pushed).
 */
struct lct_dump *lct_dump_begin(lua_State *L, struct lct_handle *h, int midx,
				int oidx, const char *fname, int unique, int *err)
{
	const struct lct_matcher *m = lct_matcher_arg(L, midx, fname);
	struct lct_dumpopts o;
	struct lct_kpart k;
	struct lct_dump *d;
	struct nlmsghdr *nlh;
	int nsfd;

	lct_dump_opts(L, oidx, fname, unique, &o);
	if (o.expect && m != NULL)
		lct_argerror(L, fname, "filter", "expectations are listed whole (filter them in Lua)");
	lct_match_kpart(m, o.pushdown && o.msgtype != IPCTNL_MSG_CT_GET_DYING &&
			o.msgtype != IPCTNL_MSG_CT_GET_UNCONFIRMED, &k);
	d = lct_newuserdata(L, sizeof(*d));
	memset(d, 0, offsetof(struct lct_dump, rx));
	d->mref = LUA_NOREF;
	lct_class_set(L, &lct_dump_key);
	if (m != NULL) {
		lua_pushvalue(L, midx);
		d->mref = luaL_ref(L, LUA_REGISTRYINDEX);
		d->m = m;
	}
	/* The options are read: the handle may only now be relied on. */
	lct_handle_sock(L, h, fname);
	nsfd = h->nsfd;
	d->nl = lct_nl_open(nsfd, 0, err);
	if (d->nl == NULL) {
		lua_pop(L, 1);
		return NULL;
	}
	/* The kernel takes a tuple filter only with a family: do both. */
	d->again = k.has_tuple && k.family == AF_UNSPEC;
	d->seq = lct_handle_seq(h);
	d->expect = o.expect;
	d->unique = o.unique && !o.expect;
	if (o.expect) {
		nlh = lct_nl_req(d->req, (NFNL_SUBSYS_CTNETLINK_EXP << 8) | IPCTNL_MSG_EXP_GET,
				 NLM_F_DUMP, AF_UNSPEC, d->seq);
	} else {
		nlh = lct_nl_req(d->req, (NFNL_SUBSYS_CTNETLINK << 8) | o.msgtype, NLM_F_DUMP,
				 d->again ? AF_INET : k.family, d->seq);
		lct_kpart_put(nlh, &k, 1);
	}
	d->fname = fname;
	*err = lct_xfer_send(&d->x, d->nl, d->rx, sizeof(d->rx), nlh);
	if (*err != 0) {
		lct_dump_end(d);
		lua_pop(L, 1);
		return NULL;
	}
	if (o.readahead)
		lct_xfer_ahead(&d->x, nlh, d->again ? AF_INET6 : 0);
	return d;
}

void lct_dump_stop(struct lct_dump *d)
{
	lct_dump_end(d);
}

int lct_dump_ahead(const struct lct_dump *d)
{
	return d->x.ah != NULL;
}

/* The next matching message: 1, 0 at the end, or -errno (the dump is then closed). */
int lct_dump_msg(struct lct_dump *d, const struct nlmsghdr **m)
{
	for (;;) {
		int r;

		if (d->nl == NULL)
			return 0;
		r = lct_xfer_next(&d->x, m);
		if (d->x.intr)
			d->interrupted = 1;
		if (r == 1) {
			if (d->m != NULL && !lct_match(d->m, *m))
				continue;
			if (d->unique) {
				int u = lct_seen_add(d, *m);

				if (u == 0) {
					d->duplicates++;
					continue;
				}
				if (u < 0) {
					lct_dump_end(d);
					return -ENOMEM;
				}
			}
			d->count++;
			return 1;
		}
		if (r == 0 && d->again) {
			struct nlmsghdr *nlh = (struct nlmsghdr *)d->req;

			d->again = 0;
			lct_nl_family(nlh, AF_INET6, NFNETLINK_V0);
			r = -lct_xfer_resend(&d->x, nlh, ++d->seq);
			if (r == 0)
				continue;
		}
		lct_dump_end(d);
		return r;
	}
}

static struct lct_dump *lct_dump_state(lua_State *L, int idx, const char *fname);

/*
 * mt: where the entry metatable is (0: the registry).  A message the
 * read-ahead received is copied into the dump's own buffer first: making
 * the entry may run finalizers, which may read or close the dump and so
 * hand its chunk back to the thread.
 */
static void lct_dump_push(lua_State *L, struct lct_dump *d, const struct nlmsghdr *m, int mt)
{
	if ((const char *)m < d->rx || (const char *)m >= d->rx + sizeof(d->rx)) {
		memcpy(d->rx, m, m->nlmsg_len);
		m = (const struct nlmsghdr *)d->rx;
	}
	if (d->expect)
		lct_expect_push(L, m, 0, 0);
	else
		lct_entry_pushm(L, m, 0, 0, mt);
}

/*
 * The iterator function of a generic for: next(state) -> entry | nil.  A
 * closure over its dump's state and the entry metatable, so that an entry
 * costs no registry lookup; given another dump's state, it reads that one.
 */
static int lct_dump_iter(lua_State *L)
{
	struct lct_dump *d = lua_touserdata(L, lua_upvalueindex(1));
	const struct nlmsghdr *m;
	int r;

	if (lua_touserdata(L, 1) != d)
		d = lct_dump_state(L, 1, "dump");
	r = lct_dump_msg(d, &m);
	if (r < 0)
		return lct_error(L, "%s", lct_pushmsg(L, "dump", -r));
	if (r == 0)
		lua_pushnil(L);
	else
		lct_dump_push(L, d, m, lua_upvalueindex(2));
	return 1;
}

/* st:next() -> entry, false at the end, or nil, msg, errno (a kernel refusal). */
static int lct_dump_next(lua_State *L)
{
	struct lct_dump *d = lct_dump_state(L, 1, "next");
	const struct nlmsghdr *m;
	int r = lct_dump_msg(d, &m);

	if (r < 0)
		return lct_pusherr(L, d->fname, -r);
	if (r == 0)
		lua_pushboolean(L, 0);
	else
		lct_dump_push(L, d, m, 0);
	return 1;
}

/*
 * core.query(h, matcher, how, fname) -> state | nil, msg, errno: a dump for
 * the Lua layer's bulk operations, read with st:next(), every kernel
 * refusal a value named after fname (a static name: "delete_where"...).
 */
static int lct_f_query(lua_State *L)
{
	static const char *const fnames[] = { "delete_where", "update_where", "flush", "dump", "list", NULL };
	const char *fname = luaL_optstring(L, 4, "dump");
	struct lct_handle *h;
	struct lct_dump *d;
	int i, err;

	for (i = 0; fnames[i] != NULL && strcmp(fnames[i], fname) != 0; i++)
		;
	fname = fnames[i] ? fnames[i] : "dump";
	h = lct_handle_check(L, 1, fname);
	lua_settop(L, 3);
	d = lct_dump_begin(L, h, 2, 3, fname, 0, &err);
	if (d == NULL)
		return lct_pusherr(L, fname, err);
	return 1;
}

/* h:dump([matcher [, how]]) -> iterator, state, nil, state (the closing value). */
static int lct_h_dump(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "dump");
	int err;

	lua_settop(L, 3);
	if (lct_dump_begin(L, h, 2, 3, "dump", 0, &err) == NULL)
		return lct_error(L, "%s", lct_pushmsg(L, "dump", err));
	lua_pushvalue(L, -1);
	lct_entry_metatable(L);
	lua_pushcclosure(L, lct_dump_iter, 2);
	lua_insert(L, -2);
	lua_pushnil(L);
	lua_pushvalue(L, -2);
	return 4;
}

/* All of a dump in an array; a dump the kernel flags as interrupted is redone. */
static int lct_h_list(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "list");
	int tries, err, r;

	lua_settop(L, 3);
	for (tries = 0; tries < 3; tries++) {
		const struct nlmsghdr *m;
		struct lct_dump *d;
		int n = 0;

		lct_entry_metatable(L);
		lua_newtable(L);
		d = lct_dump_begin(L, h, 2, 3, "list", 1, &err);
		if (d == NULL)
			return lct_pusherr(L, "list", err);
		while ((r = lct_dump_msg(d, &m)) == 1) {
			lct_dump_push(L, d, m, 4);
			lua_rawseti(L, -3, ++n);
		}
		if (r < 0)
			return lct_pusherr(L, "list", -r);
		if (!d->interrupted) {
			lua_pop(L, 1);
			return 1;
		}
		lua_pop(L, 3);
	}
	return lct_pusherr(L, "list", EINTR);
}

static int lct_dump_close(lua_State *L)
{
	struct lct_dump *d = lct_dump_state(L, 1, "close");

	lct_dump_end(d);
	return 0;
}

static int lct_dump_gc(lua_State *L)
{
	struct lct_dump *d = lct_class_test(L, 1, &lct_dump_key);

	if (d != NULL) {
		lct_dump_end(d);
		lct_xfer_free(&d->x);
		luaL_unref(L, LUA_REGISTRYINDEX, d->mref);
		d->mref = LUA_NOREF;
	}
	return 0;
}

static const char *const lct_dump_fields[] = {
	"interrupted", "count", "closed", "duplicates", NULL
};

static int lct_dump_index(lua_State *L)
{
	struct lct_dump *d;

	switch (lct_class_field(L, (void **)&d)) {
	case 0: lua_pushboolean(L, d->interrupted); break;
	case 1: lua_pushinteger(L, d->count); break;
	case 2: lua_pushboolean(L, d->nl == NULL); break;
	case 3: lua_pushinteger(L, d->duplicates); break;
	}
	return 1;
}

static const luaL_Reg lct_dump_methods[] = {
	{"close", lct_dump_close},
	{"next", lct_dump_next},
	{NULL, NULL}
};
static const luaL_Reg *const lct_dump_arrays[] = { lct_dump_methods, NULL };

static const luaL_Reg lct_dump_meta[] = {
	{"__gc", lct_dump_gc},
	{"__close", lct_dump_close},
	{NULL, NULL}
};

const struct lct_class lct_dump_class = {
	.key = &lct_dump_key, .name = "conntrack.dump", .what = "conntrack dump",
	.meta = lct_dump_meta, .methods = lct_dump_arrays,
	.fields = lct_dump_fields, .index = lct_dump_index,
};

static struct lct_dump *lct_dump_state(lua_State *L, int idx, const char *fname)
{
	if (idx == 1)
		return lct_class_self(L, &lct_dump_class, fname);
	return lct_class_check(L, idx, &lct_dump_class, fname);
}

const luaL_Reg lct_dump_funcs[] = {
	{"query", lct_f_query},
	{NULL, NULL}
};

const luaL_Reg lct_dump_handle_methods[] = {
	{"dump", lct_h_dump},
	{"list", lct_h_list},
	{NULL, NULL}
};
