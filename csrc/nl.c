/*
 * Netlink: a ctnetlink socket in a network namespace, request headers, the
 * one walk over received messages, request/answer exchanges and batches.
 * Nothing here calls Lua but lct_ns_open, which reads its argument.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include "lct.h"

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

/*
 * The namespace at idx: a name under /run/netns or a path.  Returns the
 * descriptor, or -1 with *err set (the file could not be opened); raises
 * on a malformed argument.
 */
int lct_ns_open(lua_State *L, int idx, const char *fname, int *err)
{
	char path[4096];
	const char *ns;
	size_t n;
	int fd;

	if (lua_type(L, idx) != LUA_TSTRING)
		return lct_argerror(L, fname, "netns", "string expected, got %s",
				    luaL_typename(L, idx));
	ns = lua_tolstring(L, idx, &n);
	if (n == 0)
		return lct_argerror(L, fname, "netns", "empty name");
	if (memchr(ns, '\0', n) != NULL)
		return lct_argerror(L, fname, "netns", "embedded NUL in %s", lct_shortval(L, idx));
	if (n >= sizeof(path) - 16)
		return lct_argerror(L, fname, "netns", "name too long");
	if (strchr(ns, '/') != NULL) {
		memcpy(path, ns, n + 1);
	} else {
		if (strcmp(ns, ".") == 0 || strcmp(ns, "..") == 0)
			return lct_argerror(L, fname, "netns", "invalid name %s", lct_shortval(L, idx));
		memcpy(path, "/run/netns/", 11);
		memcpy(path + 11, ns, n + 1);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		*err = errno;
	return fd;
}

/*
 * The thread enters the namespace only for the socket() call and returns
 * at once: a socket stays in the namespace it was made in.  If it cannot
 * return, it must not go on in the wrong namespace: abort.
 */
struct mnl_socket *lct_nl_open(int nsfd, unsigned int groups, int *err)
{
	struct mnl_socket *nl;
	int self = -1;

	if (nsfd >= 0) {
		self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (self < 0)
			self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (self < 0) {
			*err = errno;
			return NULL;
		}
		if (setns(nsfd, CLONE_NEWNET) < 0) {
			*err = errno;
			close(self);
			return NULL;
		}
	}
	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	*err = errno;
	if (self >= 0) {
		if (setns(self, CLONE_NEWNET) < 0)
			abort();
		close(self);
	}
	if (nl == NULL)
		return NULL;
	if (mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) {
		*err = errno;
		mnl_socket_close(nl);
		return NULL;
	}
	return nl;
}

/* Forces past rmem_max when privileged. */
int lct_nl_rcvbuf(struct mnl_socket *nl, int bytes)
{
	int fd = mnl_socket_get_fd(nl), got = 0;
	socklen_t len = sizeof(got);

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) < 0)
		return -1;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0)
		return -1;
	return got;
}

struct nlmsghdr *lct_nl_req(void *buf, uint16_t type, uint16_t flags,
			    uint8_t family, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfg;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	return nlh;
}

void lct_nl_family(struct nlmsghdr *nlh, uint8_t family, uint8_t version)
{
	struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);

	nfg->nfgen_family = family;
	nfg->version = version;
}

uint8_t lct_nl_msgfamily(const struct nlmsghdr *nlh)
{
	return ((const struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family;
}

int lct_rx_take(struct lct_rx *rx, const struct nlmsghdr **out, int *err)
{
	while (rx->len > 0) {
		const struct nlmsghdr *m = (const struct nlmsghdr *)(rx->buf + rx->pos);
		const char *payload;
		uint32_t mlen;

		/* libmnl's mnl_nlmsg_ok and _next, inline: every message passes here. */
		if (rx->len < (int)sizeof(*m) || (mlen = m->nlmsg_len) < sizeof(*m) ||
		    mlen > (uint32_t)rx->len) {
			rx->len = 0;
			break;
		}
		rx->len -= (int)MNL_ALIGN(mlen);
		rx->pos += (int)MNL_ALIGN(mlen);
		payload = (const char *)m + MNL_NLMSG_HDRLEN;
		*out = m;
		*err = 0;
		if (m->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = (const struct nlmsgerr *)payload;

			if (mlen < MNL_NLMSG_HDRLEN + sizeof(*e)) {
				*err = EBADMSG;
				return LCT_RX_ERROR;
			}
			*err = -e->error;
			return e->error == 0 ? LCT_RX_ACK : LCT_RX_ERROR;
		}
		if (m->nlmsg_type == NLMSG_DONE) {
			if (mlen - MNL_NLMSG_HDRLEN >= sizeof(int)) {
				int e;

				memcpy(&e, payload, sizeof(e));
				*err = e < 0 ? -e : 0;
			}
			return LCT_RX_DONE;
		}
		if (m->nlmsg_type < NLMSG_MIN_TYPE ||
		    mlen < MNL_NLMSG_HDRLEN + sizeof(struct nfgenmsg))
			continue;	/* NOOP, OVERRUN, or too short to be ours */
		return LCT_RX_DATA;
	}
	rx->pos = rx->len = 0;
	return LCT_RX_EMPTY;
}

int lct_xfer_send(struct lct_xfer *x, struct mnl_socket *nl, char *buf,
		  size_t cap, const struct nlmsghdr *req)
{
	memset(x, 0, sizeof(*x));
	x->nl = nl;
	x->buf = buf;
	x->cap = cap;
	x->rx.buf = buf;
	x->seq = req->nlmsg_seq;
	if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0)
		return errno;
	return 0;
}

/* The same request again, as a new exchange on the same socket. */
int lct_xfer_resend(struct lct_xfer *x, struct nlmsghdr *req, uint32_t seq)
{
	req->nlmsg_seq = seq;
	x->seq = seq;
	x->end = 0;
	x->rx.pos = x->rx.len = 0;
	if (mnl_socket_sendto(x->nl, req, req->nlmsg_len) < 0)
		return errno;
	return 0;
}

int lct_xfer_next(struct lct_xfer *x, const struct nlmsghdr **m)
{
	while (!x->end) {
		int err, r = lct_rx_take(&x->rx, m, &err);
		ssize_t n;

		if (r == LCT_RX_EMPTY) {
			n = mnl_socket_recvfrom(x->nl, x->buf, x->cap);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				x->end = 1;
				return -errno;
			}
			x->rx.pos = 0;
			x->rx.len = (int)n;
			continue;
		}
		if ((*m)->nlmsg_seq != x->seq)
			continue;	/* a stale answer of an interrupted exchange */
		if ((*m)->nlmsg_flags & NLM_F_DUMP_INTR)
			x->intr = 1;
		switch (r) {
		case LCT_RX_DATA:
			return 1;
		case LCT_RX_DONE:
		case LCT_RX_ACK:
		case LCT_RX_ERROR:
			x->end = 1;
			return err ? -err : 0;
		}
	}
	return 0;
}

/* ---- batches ---------------------------------------------------------- */

int lct_batch_init(struct lct_batch *bt, char *buf)
{
	memset(bt, 0, offsetof(struct lct_batch, fail));
	/* libmnl 1.0.4 leaves attribute padding as it finds it: zeroes, so
	 * that no uninitialised byte goes to the kernel */
	memset(buf, 0, LCT_BATCH_BYTES);
	bt->b = mnl_nlmsg_batch_start(buf, LCT_BATCH_BYTES);
	return bt->b == NULL ? ENOMEM : 0;
}

void lct_batch_free(struct lct_batch *bt)
{
	if (bt->b != NULL)
		mnl_nlmsg_batch_stop(bt->b);
	bt->b = NULL;
}

void lct_batch_reset(struct lct_batch *bt)
{
	mnl_nlmsg_batch_reset(bt->b);
	bt->count = 0;
	bt->nfail = 0;
}

struct nlmsghdr *lct_batch_cur(struct lct_batch *bt)
{
	return mnl_nlmsg_batch_current(bt->b);
}

/*
 * The batch goes as soon as one more message (at most LCT_TXBUF) might not
 * fit, so mnl_nlmsg_batch_next never overflows.
 */
int lct_batch_add(struct lct_batch *bt, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_batch_current(bt->b);

	nlh->nlmsg_seq = seq;
	if (bt->count == 0)
		bt->seq0 = seq;
	bt->last = nlh;
	bt->count++;
	mnl_nlmsg_batch_next(bt->b);
	return mnl_nlmsg_batch_size(bt->b) + LCT_TXBUF > LCT_BATCH_BYTES ||
	       bt->count == LCT_BATCH_MAX;
}

int lct_batch_setsock(struct mnl_socket *nl)
{
	static const int one = 1;

	/* Acks without the request copied back, and room for many of them. */
	setsockopt(mnl_socket_get_fd(nl), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	lct_nl_rcvbuf(nl, 8 * 1024 * 1024);
	return 0;
}

/*
 * The last message asks for the ack that marks where the kernel got to;
 * the others are acknowledged only when they fail.
 */
int lct_batch_flush(struct lct_batch *bt, struct mnl_socket *nl, char *rx,
		    size_t cap)
{
	struct lct_rx r;
	uint32_t lastseq;
	int done = 0;

	bt->nfail = 0;
	if (bt->count == 0)
		return 0;
	bt->last->nlmsg_flags |= NLM_F_ACK;
	lastseq = bt->last->nlmsg_seq;
	bt->count = 0;
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(bt->b), mnl_nlmsg_batch_size(bt->b)) < 0) {
		mnl_nlmsg_batch_reset(bt->b);
		return errno;
	}
	mnl_nlmsg_batch_reset(bt->b);
	r.buf = rx;
	r.pos = r.len = 0;
	while (!done) {
		const struct nlmsghdr *m;
		int err, t = lct_rx_take(&r, &m, &err);

		if (t == LCT_RX_EMPTY) {
			ssize_t n = mnl_socket_recvfrom(nl, rx, cap);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				return errno;
			}
			r.pos = 0;
			r.len = (int)n;
			continue;
		}
		if (t != LCT_RX_ERROR && t != LCT_RX_ACK)
			continue;
		if (m->nlmsg_seq < bt->seq0 || m->nlmsg_seq > lastseq)
			continue;
		if (t == LCT_RX_ERROR && bt->nfail < LCT_BATCH_MAX) {
			bt->fail[bt->nfail].index = (int)(m->nlmsg_seq - bt->seq0);
			bt->fail[bt->nfail].err = err;
			bt->nfail++;
		}
		if (m->nlmsg_seq == lastseq)
			done = 1;
	}
	return 0;
}
