/*
 * Handles: a ctnetlink socket (optionally in another network namespace)
 * and the single-request operations: get, create, add, update, delete,
 * flush, count, max and stats.  dump.c, batch.c and events.c add their
 * methods to the same class (core.c merges the arrays).
 *
 * A handle's buffers live as long as its userdata; close() closes only the
 * socket and the namespace descriptor.  Code that runs Lua (allocating may
 * run finalizers, and they may close the handle) asks for the socket again
 * through lct_handle_sock before it uses it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "lct.h"

static const char lct_handle_key = 'h';

static const char *const lct_handle_fields[] = { "closed", NULL };

static int lct_h_index(lua_State *L)
{
	struct lct_handle *h;

	if (lct_class_field(L, (void **)&h) == 0)
		lua_pushboolean(L, h->nl == NULL);
	return 1;
}

struct lct_handle *lct_handle_check(lua_State *L, int idx, const char *fname)
{
	struct lct_handle *h = idx == 1 ? lct_class_self(L, &lct_handle_class, fname) :
				lct_class_check(L, idx, &lct_handle_class, fname);

	if (h->nl == NULL)
		lct_error(L, "%s: attempt to use a closed handle", fname);
	return h;
}

struct mnl_socket *lct_handle_sock(lua_State *L, struct lct_handle *h, const char *fname)
{
	if (h->nl == NULL)
		lct_error(L, "%s: attempt to use a closed handle", fname);
	return h->nl;
}

uint32_t lct_handle_seq(struct lct_handle *h)
{
	if (++h->seq == 0)
		h->seq = 1;
	return h->seq;
}

static void lct_handle_close(struct lct_handle *h)
{
	if (h->nl != NULL) {
		mnl_socket_close(h->nl);
		h->nl = NULL;
	}
	if (h->nsfd >= 0) {
		close(h->nsfd);
		h->nsfd = -1;
	}
}

static const char *const lct_open_names[] = { "netns", "rcvbuf", NULL };

int lct_f_open(lua_State *L)
{
	struct lct_handle *h;
	int nsfd = -1, err = 0;
	int64_t rcvbuf = 0;

	if (!lua_isnoneornil(L, 1)) {
		lct_check_table(L, 1, "open", "opts");
		lct_check_names(L, 1, "open", lct_open_names);
		lct_int_field(L, 1, "rcvbuf", "open", 4096, 1 << 30, &rcvbuf);
		if (lct_rawfield(L, 1, "netns") != LUA_TNIL) {
			nsfd = lct_ns_open(L, -1, "open", &err);
			if (nsfd < 0) {
				lua_pushfstring(L, "open: netns %s: %s", lct_shortval(L, -1),
						strerror(err));
				lua_pushnil(L);
				lua_insert(L, -2);
				lua_pushinteger(L, err);
				return 3;
			}
		}
		lua_pop(L, 1);
	}
	h = lct_newuserdata(L, sizeof(*h));
	memset(h, 0, offsetof(struct lct_handle, rx));
	memset(h->tx, 0, sizeof(h->tx));	/* attribute padding is never written */
	h->nsfd = nsfd;
	lct_class_set(L, &lct_handle_key);
	/* From here on __gc owns nsfd. */
	h->nl = lct_nl_open(nsfd, 0, &err);
	if (h->nl == NULL) {
		lct_handle_close(h);
		return lct_pusherr(L, "open", err);
	}
	if (rcvbuf > 0)
		lct_nl_rcvbuf(h->nl, (int)rcvbuf);
	return 1;
}

static int lct_h_close(lua_State *L)
{
	struct lct_handle *h = lct_class_check(L, 1, &lct_handle_class, "close");

	lct_handle_close(h);
	lua_pushboolean(L, 1);
	return 1;
}

static int lct_h_gc(lua_State *L)
{
	struct lct_handle *h = lct_class_test(L, 1, &lct_handle_key);

	if (h == NULL)
		return 0;
	lct_handle_close(h);
	if (h->batch != NULL) {
		lct_batch_free(h->batch);
		free(h->batch);
		h->batch = NULL;
	}
	free(h->batchbuf);
	h->batchbuf = NULL;
	return 0;
}

/* <close> closes, as close() does; only __gc frees the buffers. */
static int lct_h_closemm(lua_State *L)
{
	struct lct_handle *h = lct_class_test(L, 1, &lct_handle_key);

	if (h != NULL)
		lct_handle_close(h);
	return 0;
}

static int lct_h_tostring(lua_State *L)
{
	struct lct_handle *h = lct_class_check(L, 1, &lct_handle_class, "tostring");

	if (h->nl == NULL)
		lua_pushliteral(L, "conntrack.handle (closed)");
	else
		lua_pushfstring(L, "conntrack.handle (%p)", (void *)h);
	return 1;
}

static int lct_h_getfd(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "getfd");

	lua_pushinteger(L, mnl_socket_get_fd(h->nl));
	return 1;
}

/*
 * Sends nlh on h and reads the answer.  Data messages are pushed by push
 * (which may run Lua); the handle is checked again after each.  Returns 0
 * or an errno value.
 */
int lct_handle_exchange(lua_State *L, struct lct_handle *h, const char *fname,
			struct nlmsghdr *nlh, lct_push_fn push, void *ud)
{
	struct lct_xfer x;
	const struct nlmsghdr *m;
	int r;

	r = lct_xfer_send(&x, lct_handle_sock(L, h, fname), h->rx, sizeof(h->rx), nlh);
	if (r != 0)
		return r;
	while ((r = lct_xfer_next(&x, &m)) == 1) {
		if (push != NULL)
			push(L, m, ud);
		if (h->nl != x.nl)
			lct_handle_sock(L, h, fname);	/* closed meanwhile: raises */
	}
	return -r;
}

/*
 * Sends a single request without asking for an ack.  The kernel handles a
 * request inside sendmsg and has queued its answer when that returns: a
 * refusal, or the flow asked for (get); nothing for a change made.  So a
 * read that finds nothing says the change was made: the kernel makes and
 * delivers no ack, and the process copies none.  The first data message
 * answering the request is pushed by push (which may run Lua).  Returns 0
 * or an errno value.
 */
static int lct_handle_quiet(lua_State *L, struct lct_handle *h, const char *fname,
			    struct nlmsghdr *nlh, lct_push_fn push, void *ud)
{
	struct mnl_socket *nl = lct_handle_sock(L, h, fname);
	int fd = mnl_socket_get_fd(nl);

	nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return errno;
	for (;;) {
		struct lct_rx rx = { h->rx, 0, 0 };
		const struct nlmsghdr *m;
		ssize_t n = recv(fd, h->rx, sizeof(h->rx), MSG_DONTWAIT);
		int err, r;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno;
		}
		rx.len = (int)n;
		/* what else is there: stale answers of an exchange a Lua error cut short */
		while ((r = lct_rx_take(&rx, &m, &err)) != LCT_RX_EMPTY) {
			if (m->nlmsg_seq != nlh->nlmsg_seq)
				continue;
			if (r == LCT_RX_DATA && push != NULL) {
				push(L, m, ud);
				return 0;
			}
			if (r != LCT_RX_DATA)
				return err;
		}
	}
}

static void lct_get_push(lua_State *L, const struct nlmsghdr *m, void *ud)
{
	int *got = ud;

	if ((*got)++ == 0)
		lct_entry_push(L, m, 0);
}

/* The flow named at idx (an entry, or a tuple table) into nlh. */
static void lct_put_flow(lua_State *L, int idx, const char *fname, struct nlmsghdr *nlh,
			 struct lct_spec *s)
{
	const struct nlmsghdr *msg = lct_entry_msg(L, idx);

	if (msg != NULL) {
		struct lct_dir d;
		const struct nlattr *at[LCT_CTA_MAX + 1];

		memset(s, 0, sizeof(*s));
		if (lct_put_key(nlh, msg) < 0)
			lct_argerror(L, fname, "tuple", "the entry has no tuple");
		lct_a_table(msg, sizeof(struct nfgenmsg), at, LCT_CTA_MAX);
		lct_dir_parse(at[CTA_TUPLE_ORIG], NULL, &d);
		lct_a_u8(d.num, &s->orig.proto);
		s->family = lct_nl_msgfamily(msg);
		return;
	}
	lct_spec_read(L, idx, LCT_K_TUPLE, fname, s);	/* clears s first */
	lct_spec_put(nlh, s, LCT_K_TUPLE);
}

/* The single requests take a handle already checked: by their method, or by
 * lct_default_call for the module-level functions. */
static int lct_get_on(lua_State *L, struct lct_handle *h)
{
	struct lct_spec s;
	struct nlmsghdr *nlh;
	int got = 0, err;

	nlh = lct_nl_req(h->tx, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
			 NLM_F_ACK, AF_UNSPEC, lct_handle_seq(h));
	lct_put_flow(L, 2, "get", nlh, &s);
	err = lct_handle_quiet(L, h, "get", nlh, lct_get_push, &got);
	if (err != 0)
		return lct_pusherr(L, "get", err);
	if (got == 0)
		return lct_pusherr(L, "get", ENOENT);
	return 1;
}

static int lct_h_get(lua_State *L)
{
	return lct_get_on(L, lct_handle_check(L, 1, "get"));
}

/* What an update takes from the flow as it is: its status and protocol info. */
struct lct_current {
	uint32_t status;
	struct lct_pinfo pi;
};

static void lct_current_got(lua_State *L, const struct nlmsghdr *m, void *ud)
{
	struct lct_current *c = ud;
	const struct nlattr *at[LCT_CTA_MAX + 1];

	(void)L;
	lct_a_table(m, sizeof(struct nfgenmsg), at, LCT_CTA_MAX);
	lct_a_u32(at[CTA_STATUS], &c->status);
	lct_pinfo_parse(at[CTA_PROTOINFO], &c->pi);
}

#define LCT_S_SCTP	(LCT_S_STATE | LCT_S_VTAG0 | LCT_S_VTAG1)

/*
 * Completes an update from the flow as it is.  The status flags are added
 * to the entry's, as `conntrack -U -u` does (the kernel refuses to clear
 * some, and clears the others when they are left out).  SCTP: the kernel
 * takes the state and both verification tags together or refuses them all
 * (nlattr_to_sctp: EINVAL), so what the changes leave out of the three is
 * the entry's.  The entry's own message serves, else a get of the tuple
 * at idx (0: of the tuple in s itself).  Returns 0 or an errno.
 */
int lct_update_fill(lua_State *L, struct lct_handle *h, const char *fname, int idx,
		    struct lct_spec *s)
{
	const struct nlmsghdr *msg = idx != 0 ? lct_entry_msg(L, idx) : NULL;
	uint64_t sctp = s->orig.proto == IPPROTO_SCTP ? s->has & LCT_S_SCTP : 0;
	int pi = sctp != 0 && sctp != LCT_S_SCTP, d;
	struct lct_current cur;

	if (!(s->has & LCT_S_STATUS) && !pi)
		return 0;
	memset(&cur, 0, sizeof(cur));
	if (msg != NULL)
		lct_current_got(L, msg, &cur);
	/* an event's entry may lack the tags (a destroy carries none) */
	if (msg == NULL || (pi && !(cur.pi.has_state && cur.pi.has_vtag[0] && cur.pi.has_vtag[1]))) {
		char buf[LCT_TXBUF] = { 0 };	/* padding included */
		struct nlmsghdr *nlh = lct_nl_req(buf, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
						  NLM_F_ACK, AF_UNSPEC, lct_handle_seq(h));
		int err;

		if (msg != NULL) {
			lct_put_key(nlh, msg);
		} else if (idx == 0) {
			lct_spec_put(nlh, s, LCT_K_TUPLE);	/* s holds the tuple too */
		} else {
			struct lct_spec t;

			lct_spec_read(L, idx, LCT_K_TUPLE, fname, &t);
			lct_spec_put(nlh, &t, LCT_K_TUPLE);
		}
		memset(&cur, 0, sizeof(cur));
		err = lct_handle_exchange(L, h, fname, nlh, lct_current_got, &cur);
		if (err != 0)
			return err;
	}
	if (s->has & LCT_S_STATUS)
		s->status |= cur.status;
	if (!pi)
		return 0;
	if (!(s->has & LCT_S_STATE) && cur.pi.has_state) {
		s->state = cur.pi.state;
		s->has |= LCT_S_STATE;
	}
	for (d = 0; d < 2; d++) {
		if (!(s->has & (d ? LCT_S_VTAG1 : LCT_S_VTAG0)) && cur.pi.has_vtag[d]) {
			s->vtag[d] = cur.pi.vtag[d];
			s->has |= d ? LCT_S_VTAG1 : LCT_S_VTAG0;
		}
	}
	return 0;
}

static int lct_change(lua_State *L, struct lct_handle *h, const char *op, uint8_t type,
		      uint16_t flags, int kind)
{
	struct lct_spec s;
	struct nlmsghdr *nlh;
	int err;

	nlh = lct_nl_req(h->tx, (NFNL_SUBSYS_CTNETLINK << 8) | type, NLM_F_ACK | flags,
			 AF_UNSPEC, lct_handle_seq(h));
	if (kind == LCT_K_CHANGES) {
		/* update(tuple, changes): the tuple first, then the changes. */
		if (lua_gettop(L) < 3)
			return lct_argerror(L, op, "changes", "table expected, got no value");
		lua_settop(L, 3);
		lct_put_flow(L, 2, op, nlh, &s);
		s.has &= (uint64_t)~(LCT_S_ORIG | LCT_S_REPLY | LCT_S_ZONE);
		lct_changes_read(L, 3, op, &s);
		err = lct_update_fill(L, h, op, 2, &s);
		if (err != 0)
			return lct_pusherr(L, op, err);
		lct_spec_put(nlh, &s, LCT_K_CHANGES);
	} else if (kind == LCT_K_TUPLE) {
		lct_put_flow(L, 2, op, nlh, &s);
	} else {
		lct_spec_read(L, 2, LCT_K_SPEC, op, &s);
		lct_spec_put(nlh, &s, LCT_K_SPEC);
	}
	err = lct_handle_quiet(L, h, op, nlh, NULL, NULL);
	/* add: an entry already there is no error, and is left as it is. */
	if (err == EEXIST && strcmp(op, "add") == 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (err != 0)
		return lct_pusherr(L, op, err);
	lua_pushboolean(L, 1);
	return 1;
}

static int lct_create_on(lua_State *L, struct lct_handle *h)
{
	return lct_change(L, h, "create", IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, LCT_K_SPEC);
}

static int lct_add_on(lua_State *L, struct lct_handle *h)
{
	return lct_change(L, h, "add", IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, LCT_K_SPEC);
}

static int lct_update_on(lua_State *L, struct lct_handle *h)
{
	return lct_change(L, h, "update", IPCTNL_MSG_CT_NEW, 0, LCT_K_CHANGES);
}

static int lct_delete_on(lua_State *L, struct lct_handle *h)
{
	return lct_change(L, h, "delete", IPCTNL_MSG_CT_DELETE, 0, LCT_K_TUPLE);
}

static int lct_h_create(lua_State *L)
{
	return lct_create_on(L, lct_handle_check(L, 1, "create"));
}

static int lct_h_add(lua_State *L)
{
	return lct_add_on(L, lct_handle_check(L, 1, "add"));
}

static int lct_h_update(lua_State *L)
{
	return lct_update_on(L, lct_handle_check(L, 1, "update"));
}

static int lct_h_delete(lua_State *L)
{
	return lct_delete_on(L, lct_handle_check(L, 1, "delete"));
}

/*
 * flush([matcher]): the whole table, or what the matcher selects when the
 * kernel's filtered flush can do all of it (family, mark, status, a zone
 * other than 0); the Lua layer sends anything else to delete_where.
 */
static int lct_h_flush(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "flush");
	const struct lct_matcher *m = lct_matcher_arg(L, 2, "flush");
	struct lct_kpart k;
	struct nlmsghdr *nlh;
	int err;

	lct_match_kpart(m, 1, &k);
	if (!k.flush_exact)
		return lct_argerror(L, "flush", "filter",
				    "the kernel's flush cannot apply it (use delete_where)");
	nlh = lct_nl_req(h->tx, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
			 NLM_F_ACK, k.family, lct_handle_seq(h));
	/* The kernel honours the family of a flush only from version 1 on. */
	if (k.family != AF_UNSPEC)
		lct_nl_family(nlh, k.family, 1);
	lct_kpart_put(nlh, &k, 0);
	err = lct_handle_exchange(L, h, "flush", nlh, NULL, NULL);
	if (err != 0)
		return lct_pusherr(L, "flush", err);
	lua_pushboolean(L, 1);
	return 1;
}

struct lct_global {
	int64_t entries, max;
};

static void lct_global_push(lua_State *L, const struct nlmsghdr *m, void *ud)
{
	const struct nlattr *at[CTA_STATS_GLOBAL_MAX + 1];
	struct lct_global *g = ud;
	uint32_t v;

	(void)L;
	lct_a_table(m, sizeof(struct nfgenmsg), at, CTA_STATS_GLOBAL_MAX);
	if (lct_a_u32(at[CTA_STATS_GLOBAL_ENTRIES], &v))
		g->entries = v;
	if (lct_a_u32(at[CTA_STATS_GLOBAL_MAX_ENTRIES], &v))
		g->max = v;
}

static int lct_global(lua_State *L, const char *op, struct lct_global *g)
{
	struct lct_handle *h = lct_handle_check(L, 1, op);
	struct nlmsghdr *nlh;

	g->entries = g->max = -1;
	nlh = lct_nl_req(h->tx, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS,
			 NLM_F_ACK, AF_UNSPEC, lct_handle_seq(h));
	return lct_handle_exchange(L, h, op, nlh, lct_global_push, g);
}

static int lct_h_count(lua_State *L)
{
	struct lct_global g;
	int err = lct_global(L, "count", &g);

	if (err != 0)
		return lct_pusherr(L, "count", err);
	if (g.entries < 0)
		return lct_pusherr(L, "count", EOPNOTSUPP);
	lua_pushinteger(L, (lua_Integer)g.entries);
	return 1;
}

static int lct_h_max(lua_State *L)
{
	struct lct_global g;
	int err = lct_global(L, "max", &g);

	if (err != 0)
		return lct_pusherr(L, "max", err);
	if (g.max < 0)
		lua_pushnil(L);
	else
		lua_pushinteger(L, (lua_Integer)g.max);
	return 1;
}

#define LCT_NSTATS	64

struct lct_stats {
	int ncpu;
	const char *(*name)(unsigned int);
	uint64_t total[LCT_NSTATS];
	unsigned char seen[LCT_NSTATS];
};

static void lct_stat_key(lua_State *L, const struct lct_stats *s, unsigned int t)
{
	const char *name = s->name(t);

	if (name != NULL)
		lua_pushstring(L, name);
	else
		lua_pushfstring(L, "stat_%d", (int)t);
}

/* Pushes {cpu = n, name = value...} into the array below the top. */
static void lct_stats_push(lua_State *L, const struct nlmsghdr *m, void *ud)
{
	struct lct_stats *s = ud;
	const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(m);
	const struct nlattr *a;

	lua_createtable(L, 0, 16);
	lua_pushinteger(L, ntohs(nfg->res_id));
	lua_setfield(L, -2, "cpu");
	mnl_attr_for_each(a, m, sizeof(*nfg)) {
		unsigned int t = mnl_attr_get_type(a);
		uint32_t v;

		if (mnl_attr_get_payload_len(a) != sizeof(uint32_t))
			continue;
		v = ntohl(mnl_attr_get_u32(a));
		lct_stat_key(L, s, t);
		lua_pushinteger(L, (lua_Integer)v);
		lua_rawset(L, -3);
		if (t < LCT_NSTATS) {
			s->total[t] += v;
			s->seen[t] = 1;
		}
	}
	lua_rawseti(L, -2, ++s->ncpu);
}

/* Per-CPU counters of the table or (expect) of the expectations. */
int lct_stats(lua_State *L, const char *op, int expect)
{
	struct lct_handle *h = lct_handle_check(L, 1, op);
	struct nlmsghdr *nlh;
	struct lct_stats s;
	unsigned int t;
	int err;

	memset(&s, 0, sizeof(s));
	s.name = expect ? lct_exp_stat_name : lct_stat_name;
	lua_settop(L, 1);
	lua_newtable(L);
	nlh = lct_nl_req(h->tx, expect ?
			 (NFNL_SUBSYS_CTNETLINK_EXP << 8) | IPCTNL_MSG_EXP_GET_STATS_CPU :
			 (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU,
			 NLM_F_DUMP, AF_UNSPEC, lct_handle_seq(h));
	err = lct_handle_exchange(L, h, op, nlh, lct_stats_push, &s);
	if (err != 0)
		return lct_pusherr(L, op, err);
	lua_newtable(L);
	for (t = 0; t < LCT_NSTATS; t++) {
		if (!s.seen[t])
			continue;
		lct_stat_key(L, &s, t);
		lct_pushu64(L, s.total[t]);
		lua_rawset(L, -3);
	}
	lua_setfield(L, -2, "total");
	return 1;
}

static int lct_h_stats(lua_State *L)
{
	return lct_stats(L, "stats", 0);
}

/* The single requests by method, for lct_default_call. */
static const struct {
	lua_CFunction method;
	int (*on)(lua_State *L, struct lct_handle *h);
} lct_hops[] = {
	{lct_h_get, lct_get_on}, {lct_h_create, lct_create_on}, {lct_h_add, lct_add_on},
	{lct_h_update, lct_update_on}, {lct_h_delete, lct_delete_on},
};
#define LCT_NHOPS	((int)(sizeof(lct_hops) / sizeof(lct_hops[0])))

/*
 * The module-level form of a handle method written in C (ct.get for h:get):
 * upvalues (metatable, box, method, opener, hop).  box[1] is the default
 * handle; while it is missing or closed, opener() gives one (or nil, msg,
 * errno, returned as they are).  The handle goes in front of the arguments
 * and the method runs in this call: one Lua->C hop, no metamethod for
 * h.closed.  A single request (hop, an index in lct_hops, >= 0) skips the
 * check of self as well: the handle is the box's.
 */
static int lct_default_call(lua_State *L)
{
	struct lct_handle *h;
	int hop;

	/* box[1] is nil or a handle: conntrack.lua stores only what core.open made. */
	lua_rawgeti(L, lua_upvalueindex(2), 1);
	h = lua_touserdata(L, -1);
	if (h == NULL || h->nl == NULL) {
		lua_pop(L, 1);
		lua_pushvalue(L, lua_upvalueindex(4));
		lua_call(L, 0, 3);
		if (lua_isnil(L, -3))
			return 3;
		lua_pop(L, 2);
		h = lua_touserdata(L, -1);
	}
	lua_insert(L, 1);
	hop = (int)lua_tointeger(L, lua_upvalueindex(5));
	if (hop >= 0 && hop < LCT_NHOPS)
		return lct_hops[hop].on(L, h);
	return lua_tocfunction(L, lua_upvalueindex(3))(L);
}

/*
 * core.on_default(box, method, opener): lct_default_call over a method of
 * the handle class written in C (its only upvalue the class's metatable),
 * or nil for any other function (a Lua method keeps a Lua wrapper).
 */
int lct_f_on_default(lua_State *L)
{
	lua_CFunction fn;
	int ok, hop;

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 3, LUA_TFUNCTION);
	lua_settop(L, 3);
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_handle_key);
	fn = lua_tocfunction(L, 2);
	ok = fn != NULL && lua_getupvalue(L, 2, 1) != NULL;
	if (ok) {
		ok = lua_rawequal(L, -1, 4) && lua_getupvalue(L, 2, 2) == NULL;
		lua_pop(L, 1);
	}
	if (!ok) {
		lua_pushnil(L);
		return 1;
	}
	for (hop = 0; hop < LCT_NHOPS && lct_hops[hop].method != fn; hop++)
		;
	lua_insert(L, 1);		/* metatable, box, method, opener */
	lua_pushinteger(L, hop < LCT_NHOPS ? hop : -1);
	lua_pushcclosure(L, lct_default_call, 5);
	return 1;
}

const luaL_Reg lct_handle_methods[] = {
	{"close", lct_h_close},
	{"getfd", lct_h_getfd},
	{"get", lct_h_get},
	{"create", lct_h_create},
	{"add", lct_h_add},
	{"update", lct_h_update},
	{"delete", lct_h_delete},
	{"flush", lct_h_flush},
	{"count", lct_h_count},
	{"max", lct_h_max},
	{"stats", lct_h_stats},
	{NULL, NULL}
};

static const luaL_Reg lct_handle_meta[] = {
	{"__gc", lct_h_gc},
	{"__close", lct_h_closemm},
	{"__tostring", lct_h_tostring},
	{NULL, NULL}
};

const struct lct_class lct_handle_class = {
	.key = &lct_handle_key, .name = "conntrack.handle", .what = "conntrack handle",
	.meta = lct_handle_meta, .fields = lct_handle_fields, .index = lct_h_index,
};
