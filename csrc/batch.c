/*
 * Batches: many create/add/update/delete requests per sendmsg.  Only
 * failures are acknowledged (plus the last message of each batch, to know
 * where the kernel got to), so a batch of thousands costs a few syscalls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include "lct.h"

#define LCT_BATCH_BYTES	(128 * 1024)
#define LCT_BATCH_MAX	1024		/* messages per sendmsg */
#define LCT_BATCH_RCVBUF (8 * 1024 * 1024)

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

struct lct_batch_res {
	int ok, missing, failed;
};

/* Records failure of item idx (1-based) in the table at index ft. */
static void lct_batch_fail(lua_State *L, int ft, int idx, int err,
			   const char *op, struct lct_batch_res *r)
{
	if (err == ENOENT && strcmp(op, "create") != 0 && strcmp(op, "add") != 0) {
		r->missing++;
		return;
	}
	r->failed++;
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, idx);
	lua_setfield(L, -2, "index");
	lua_pushinteger(L, err);
	lua_setfield(L, -2, "errno");
	lua_pushfstring(L, "%s: %s%s", op, strerror(err),
			err == EPERM ? " (CAP_NET_ADMIN is required)" : "");
	lua_setfield(L, -2, "message");
	lua_rawseti(L, ft, r->failed);
}

/*
 * The handle's batch buffer (its own: a Lua error in the middle of a batch
 * leaks nothing) and the socket options batches want: acks without the
 * request copied back, and room for many of them.  0, or -1 out of memory.
 */
static int lct_batch_setup(struct lct_handle *h)
{
	static const int one = 1;

	if (h->batch == NULL) {
		h->batch = malloc(LCT_BATCH_BYTES);
		if (h->batch == NULL)
			return -1;
	}
	if (!h->batch_ready) {
		setsockopt(mnl_socket_get_fd(h->nl), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
		lct_set_rcvbuf(h->nl, LCT_BATCH_RCVBUF);
		h->batch_ready = 1;
	}
	return 0;
}

/*
 * A batch being filled in the handle's buffer.  Item indexes (for the
 * failures table at ft) follow the sequence numbers: the first message of
 * the batch in the buffer is item `first`, sent as sequence `seq0`.
 */
struct lct_batch {
	struct lct_handle *h;
	const char *op;
	int ft, first, count;
	size_t used;
	uint32_t seq0;
	struct nlmsghdr *last;
	struct lct_batch_res r;
};

static void lct_batch_init(struct lct_batch *bt, struct lct_handle *h,
			   const char *op, int ft)
{
	memset(bt, 0, sizeof(*bt));
	bt->h = h;
	bt->op = op;
	bt->ft = ft;
	bt->first = 1;
}

/* The next request, in the buffer but not yet part of the batch. */
static struct nlmsghdr *lct_batch_msg(struct lct_batch *bt, uint8_t type,
				      uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(bt->h->batch + bt->used);
	struct nfgenmsg *nfg;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	return nlh;
}

/*
 * Makes nlh (from lct_batch_msg, complete) part of the batch.  Returns
 * true when the batch should go now: one more message of any size must
 * always fit, and LCT_BATCH_MAX is the most per sendmsg.
 */
static int lct_batch_add(struct lct_batch *bt, struct nlmsghdr *nlh)
{
	if (++bt->h->seq == 0)
		bt->h->seq = 1;
	nlh->nlmsg_seq = bt->h->seq;
	if (bt->count == 0)
		bt->seq0 = nlh->nlmsg_seq;
	bt->used += MNL_ALIGN(nlh->nlmsg_len);
	bt->last = nlh;
	bt->count++;
	return bt->used + LCT_TXBUF > LCT_BATCH_BYTES || bt->count == LCT_BATCH_MAX;
}

/*
 * Sends the batch, the last message asking for the ack that marks where
 * the kernel got to, and reads the errors of its messages.  Returns 0 or
 * an errno for the batch as a whole.
 */
static int lct_batch_send(lua_State *L, struct lct_batch *bt)
{
	struct lct_handle *h = bt->h;
	uint32_t last;
	int done = 0, before = bt->r.failed + bt->r.missing;

	if (bt->count == 0)
		return 0;
	bt->last->nlmsg_flags |= NLM_F_ACK;
	last = bt->last->nlmsg_seq;
	if (mnl_socket_sendto(h->nl, h->batch, bt->used) < 0)
		return errno;
	while (!done) {
		const struct nlmsghdr *m;
		ssize_t n = mnl_socket_recvfrom(h->nl, h->rx, LCT_RXBUF);
		int len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		len = (int)n;
		for (m = (const struct nlmsghdr *)h->rx; mnl_nlmsg_ok(m, len);
		     m = mnl_nlmsg_next(m, &len)) {
			const struct nlmsgerr *e;

			if (m->nlmsg_type != NLMSG_ERROR)
				continue;
			if (m->nlmsg_seq < bt->seq0 || m->nlmsg_seq > last)
				continue;
			e = mnl_nlmsg_get_payload(m);
			if (e->error != 0)
				lct_batch_fail(L, bt->ft, bt->first + (int)(m->nlmsg_seq - bt->seq0),
					       -e->error, bt->op, &bt->r);
			if (m->nlmsg_seq == last)
				done = 1;
		}
	}
	bt->r.ok += bt->count - (bt->r.failed + bt->r.missing - before);
	bt->first += bt->count;
	bt->count = 0;
	bt->used = 0;
	return 0;
}

static int lct_batch_result(lua_State *L, const struct lct_batch *bt)
{
	lua_pushinteger(L, bt->r.ok);
	lua_pushinteger(L, bt->r.missing);
	lua_pushvalue(L, bt->ft);
	return 3;
}

/*
 * h:batch(op, items [, changes]) -> ok, missing, failures
 * op is "create", "add", "update" or "delete"; items an array of tuples,
 * specs or entries.  failures: array of {index, errno, message}.
 * Entries gone before their update/delete count as missing, not failed.
 */
static int lct_h_batch(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "batch");
	const char *op = luaL_checkstring(L, 2);
	struct lct_batch bt;
	struct nf_conntrack **box;
	enum lct_build_kind kind;
	uint8_t type;
	uint16_t flags;
	int n, i, err;

	if (strcmp(op, "create") == 0) {
		kind = LCT_B_SPEC; type = IPCTNL_MSG_CT_NEW; flags = NLM_F_CREATE | NLM_F_EXCL;
	} else if (strcmp(op, "add") == 0) {
		kind = LCT_B_SPEC; type = IPCTNL_MSG_CT_NEW; flags = NLM_F_CREATE;
	} else if (strcmp(op, "update") == 0) {
		kind = LCT_B_CHANGES; type = IPCTNL_MSG_CT_NEW; flags = 0;
	} else if (strcmp(op, "delete") == 0) {
		kind = LCT_B_TUPLE; type = IPCTNL_MSG_CT_DELETE; flags = 0;
	} else {
		return lct_error(L, "batch: bad argument 'op' (unknown operation '%s')", op);
	}
	if (!lua_istable(L, 3))
		return lct_error(L, "batch: bad argument 'items' (table expected, got %s)",
				 luaL_typename(L, 3));
	if (kind == LCT_B_CHANGES && !lua_istable(L, 4))
		return lct_error(L, "batch: bad argument 'changes' (table expected, got %s)",
				 luaL_typename(L, 4));
	n = (int)lua_rawlen(L, 3);
	lua_settop(L, 4);
	lua_newtable(L);
	lct_batch_init(&bt, h, op, lua_gettop(L));

	if (lct_batch_setup(h) != 0)
		return lct_pusherr(L, op, ENOMEM);
	/* One conntrack object, remade for each item, owned by a box too. */
	box = lct_newbox(L);
	for (i = 1; i <= n; i++) {
		struct nlmsghdr *nlh = lct_batch_msg(&bt, type, flags);
		struct lct_build b = { NULL, NULL, 0, 0, 0, {0}, {0}, 0 };
		int top = lua_gettop(L);

		b.box = box;
		lua_rawgeti(L, 3, i);
		if (kind == LCT_B_TUPLE && lct_is_entry(L, -1)) {
			/* Deleting an entry: its tuple as it came, nothing parsed. */
			int fam = lct_entry_put_orig(L, -1, nlh);

			if (fam < 0)
				return lct_error(L, "%s: bad argument 'items' (entry %d has no tuple)", op, i);
			((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family = (uint8_t)fam;
		} else {
			lct_build(L, -1, kind, op, &b);
			if (kind == LCT_B_CHANGES)
				lct_build_changes(L, 4, op, &b);
			err = lct_put_ct(nlh, &b);
			if (err != 0)
				return lct_pusherr(L, op, err);
		}
		lua_settop(L, top);
		if (lct_batch_add(&bt, nlh) || i == n) {
			err = lct_batch_send(L, &bt);
			if (err != 0)
				return lct_pusherr(L, op, err);
		}
	}
	return lct_batch_result(L, &bt);
}

/*
 * h:purge([opts]) -> deleted, missing, failures: deletes every entry a dump
 * with these options (as for h:dump) returns, straight from the dump's
 * messages to batched delete requests, with no Lua value made per entry.
 * For delete_where when the kernel and C do all of the filtering.
 */
static int lct_h_purge(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "delete_where");
	struct lct_batch bt;
	const struct nlmsghdr *m;
	int err, rc;
	void *d;

	lua_settop(L, 2);
	lua_newtable(L);
	lct_batch_init(&bt, h, "delete", lua_gettop(L));
	if (lct_batch_setup(h) != 0)
		return lct_pusherr(L, "delete_where", ENOMEM);
	d = lct_dump_begin(L, h, 2, "delete_where", &err);
	if (d == NULL)
		return lct_pusherr(L, "delete_where", err);
	while ((rc = lct_dump_next_msg(d, &m)) == 1) {
		struct nlmsghdr *nlh = lct_batch_msg(&bt, IPCTNL_MSG_CT_DELETE, 0);
		int fam = lct_msg_put_orig(nlh, m);

		if (fam < 0)
			continue;
		((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family = (uint8_t)fam;
		if (lct_batch_add(&bt, nlh)) {
			err = lct_batch_send(L, &bt);
			if (err != 0)
				return lct_pusherr(L, "delete_where", err);
		}
	}
	if (rc < 0)
		return lct_pusherr(L, "delete_where", -rc);
	err = lct_batch_send(L, &bt);
	if (err != 0)
		return lct_pusherr(L, "delete_where", err);
	return lct_batch_result(L, &bt);
}

void lct_batch_open(lua_State *L)
{
	/* Expects the handle method table at module.handle_methods. */
	lua_getfield(L, -1, "handle_methods");
	lua_pushcfunction(L, lct_h_batch);
	lua_setfield(L, -2, "batch");
	lua_pushcfunction(L, lct_h_purge);
	lua_setfield(L, -2, "purge");
	lua_pop(L, 1);
}
