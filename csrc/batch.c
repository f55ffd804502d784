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
 * Sends the batch and reads the errors of its messages; seq0 is the
 * sequence number of item first.  Returns 0 or an errno for the batch.
 */
static int lct_batch_flush(lua_State *L, struct lct_handle *h,
			   const char *buf, size_t size, uint32_t seq0,
			   uint32_t last, int first, int ft, const char *op,
			   struct lct_batch_res *r, int sent)
{
	int done = 0;

	if (mnl_socket_sendto(h->nl, buf, size) < 0)
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
			if (m->nlmsg_seq < seq0 || m->nlmsg_seq > last)
				continue;
			e = mnl_nlmsg_get_payload(m);
			if (e->error != 0)
				lct_batch_fail(L, ft, first + (int)(m->nlmsg_seq - seq0),
					       -e->error, op, r);
			if (m->nlmsg_seq == last)
				done = 1;
		}
	}
	r->ok += sent;
	return 0;
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
	struct lct_batch_res r = { 0, 0, 0 };
	size_t used = 0;
	struct nf_conntrack **box;
	enum lct_build_kind kind;
	uint8_t type;
	uint16_t flags;
	char *buf;
	int n, i, first = 1, ft, inbatch = 0, err, before_fail;
	uint32_t seq0 = 0;

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
	ft = lua_gettop(L);

	if (lct_batch_setup(h) != 0)
		return lct_pusherr(L, op, ENOMEM);
	buf = h->batch;
	/* One conntrack object, remade for each item, owned by a box too. */
	box = lct_newbox(L);
	for (i = 1; i <= n; i++) {
		struct nlmsghdr *nlh;
		struct nfgenmsg *nfg;
		struct lct_build b = { NULL, NULL, 0, 0, 0, {0}, {0}, 0 };
		int top = lua_gettop(L);

		b.box = box;
		lua_rawgeti(L, 3, i);
		nlh = mnl_nlmsg_put_header(buf + used);
		nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
		nlh->nlmsg_flags = NLM_F_REQUEST | flags;
		if (++h->seq == 0)
			h->seq = 1;
		if (inbatch == 0)
			seq0 = h->seq;
		nlh->nlmsg_seq = h->seq;
		nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
		nfg->version = NFNETLINK_V0;
		nfg->res_id = 0;
		if (kind == LCT_B_TUPLE && lct_is_entry(L, -1)) {
			/* Deleting an entry: its tuple as it came, nothing parsed. */
			int fam = lct_entry_put_orig(L, -1, nlh);

			if (fam < 0)
				return lct_error(L, "%s: bad argument 'items' (entry %d has no tuple)", op, i);
			nfg->nfgen_family = (uint8_t)fam;
			b.has_mark_mask = b.has_labels = 0;
		} else {
			lct_build(L, -1, kind, op, &b);
			if (kind == LCT_B_CHANGES)
				lct_build_changes(L, 4, op, &b);
			nfg->nfgen_family = b.family;
			if (nfct_nlmsg_build(nlh, b.ct) < 0)
				return lct_pusherr(L, op, errno);
		}
		if (b.has_mark_mask)
			mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(b.mark_mask));
		if (b.has_labels) {
			mnl_attr_put(nlh, CTA_LABELS, sizeof(b.labels), b.labels);
			mnl_attr_put(nlh, CTA_LABELS_MASK, sizeof(b.labels_mask), b.labels_mask);
		}
		lua_settop(L, top);
		inbatch++;
		/* Room for one more message of any size is kept at all times. */
		used += MNL_ALIGN(nlh->nlmsg_len);
		if (used + LCT_TXBUF > LCT_BATCH_BYTES ||
		    inbatch == LCT_BATCH_MAX || i == n) {
			/* The last one asks for an ack: the end of this batch. */
			nlh->nlmsg_flags |= NLM_F_ACK;
			before_fail = r.failed + r.missing;
			err = lct_batch_flush(L, h, buf, used, seq0, h->seq, first, ft, op, &r, inbatch);
			if (err != 0)
				return lct_pusherr(L, op, err);
			r.ok -= (r.failed + r.missing) - before_fail;
			first = i + 1;
			inbatch = 0;
			used = 0;
		}
	}
	lua_pushinteger(L, r.ok);
	lua_pushinteger(L, r.missing);
	lua_pushvalue(L, ft);
	return 3;
}

/* Copies a dumped entry's original tuple and zone into a delete request. */
static int lct_put_delete(struct nlmsghdr *nlh, const struct nlmsghdr *m)
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
	mnl_attr_put(nlh, CTA_TUPLE_ORIG, mnl_attr_get_payload_len(t), mnl_attr_get_payload(t));
	if (z != NULL)
		mnl_attr_put(nlh, CTA_ZONE, mnl_attr_get_payload_len(z), mnl_attr_get_payload(z));
	return ((const struct nfgenmsg *)mnl_nlmsg_get_payload(m))->nfgen_family;
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
	struct lct_batch_res r = { 0, 0, 0 };
	const struct nlmsghdr *m;
	size_t used = 0;
	uint32_t seq0 = 0;
	int first = 1, i = 0, inbatch = 0, ft, err, rc, before_fail;
	struct nlmsghdr *last = NULL;
	void *d;

	lua_settop(L, 2);
	lua_newtable(L);
	ft = lua_gettop(L);
	if (lct_batch_setup(h) != 0)
		return lct_pusherr(L, "delete_where", ENOMEM);
	d = lct_dump_begin(L, h, 2, "delete_where", &err);
	if (d == NULL)
		return lct_pusherr(L, "delete_where", err);
	for (;;) {
		struct nlmsghdr *nlh;
		struct nfgenmsg *nfg;
		int fam;

		rc = lct_dump_next_msg(d, &m);
		if (rc < 0)
			return lct_pusherr(L, "delete_where", -rc);
		if (rc == 1) {
			nlh = mnl_nlmsg_put_header(h->batch + used);
			nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
			nlh->nlmsg_flags = NLM_F_REQUEST;
			nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
			nfg->version = NFNETLINK_V0;
			nfg->res_id = 0;
			fam = lct_put_delete(nlh, m);
			if (fam < 0)
				continue;
			nfg->nfgen_family = (uint8_t)fam;
			if (++h->seq == 0)
				h->seq = 1;
			if (inbatch == 0)
				seq0 = h->seq;
			nlh->nlmsg_seq = h->seq;
			used += MNL_ALIGN(nlh->nlmsg_len);
			last = nlh;
			inbatch++;
			i++;
		}
		if (inbatch > 0 && (rc == 0 || used + LCT_TXBUF > LCT_BATCH_BYTES ||
				    inbatch == LCT_BATCH_MAX)) {
			/* The last message of the batch asks for the ack. */
			last->nlmsg_flags |= NLM_F_ACK;
			before_fail = r.failed + r.missing;
			err = lct_batch_flush(L, h, h->batch, used, seq0, h->seq, first, ft,
					      "delete", &r, inbatch);
			if (err != 0)
				return lct_pusherr(L, "delete_where", err);
			r.ok -= (r.failed + r.missing) - before_fail;
			first = i + 1;
			inbatch = 0;
			used = 0;
		}
		if (rc == 0)
			break;
	}
	lua_pushinteger(L, r.ok);
	lua_pushinteger(L, r.missing);
	lua_pushvalue(L, ft);
	return 3;
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
