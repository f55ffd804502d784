/*
 * Netlink: a ctnetlink socket in a network namespace, request headers, the
 * one walk over received messages, request/answer exchanges and batches.
 * Nothing here calls Lua but lct_ns_open, which reads its argument.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
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
	x->seq = x->sentseq = req->nlmsg_seq;
	if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0)
		return errno;
	return 0;
}

/* ---- read-ahead -------------------------------------------------------- */

/*
 * The thread fills slots head, head+1... while the caller reads slot tail;
 * a slot is the caller's until it asks for the next one.  Everything the
 * two share is read and written under mu but the slots' bytes, which the
 * indices hand over.
 */
#define LCT_AHEAD_SLOTS	4
#ifndef LCT_AHEAD_SPIN
#define LCT_AHEAD_SPIN	50000	/* ns */
#endif
#define LCT_AHEAD_PARK	1	/* s the thread waits for a caller that reads nothing */

struct lct_ahead {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* a slot filled or freed, the end, stop */
	unsigned int forks;		/* lct_forks when it began */
	int fd;
	unsigned int head, tail;	/* filled: tail .. head - 1 */
	int held;			/* the caller reads slot tail */
	int stop, done, err;
	int parked;			/* the thread gave up waiting for the caller and ended */
	uint32_t seq;			/* of the exchange the thread reads */
	uint8_t then_family;
	int len[LCT_AHEAD_SLOTS];
	char req[LCT_TXBUF];
	char slot[LCT_AHEAD_SLOTS][LCT_RXBUF];
};

/*
 * Children of fork() made since: a child has no copy of the thread, and
 * must not wait for it (nor read what it had received).
 */
static unsigned int lct_forks;
static pthread_once_t lct_forks_once = PTHREAD_ONCE_INIT;

static void lct_forked(void)
{
	lct_forks++;
}

static void lct_forks_watch(void)
{
	pthread_atfork(NULL, NULL, lct_forked);
}

static unsigned long lct_threads;

int lct_thread_start(pthread_t *th, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	/* Signals stay with the caller's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(th, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r == 0)
		__atomic_add_fetch(&lct_threads, 1, __ATOMIC_RELAXED);
	return r;
}

/* core.threads() -> the threads the module has started in this process (for the specs). */
int lct_f_threads(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)__atomic_load_n(&lct_threads, __ATOMIC_RELAXED));
	return 1;
}

unsigned int lct_forks_now(void)
{
	pthread_once(&lct_forks_once, lct_forks_watch);
	return lct_forks;
}

/* 1: the exchange ended well (DONE), -1: it ended otherwise, 0: it goes on. */
static int lct_ahead_scan(const struct lct_ahead *a, const char *buf, int len)
{
	struct lct_rx rx = { buf, 0, len };
	const struct nlmsghdr *m;
	int err, r;

	while ((r = lct_rx_take(&rx, &m, &err)) != LCT_RX_EMPTY) {
		if (m->nlmsg_seq != a->seq || r == LCT_RX_DATA)
			continue;
		return r == LCT_RX_DONE && err == 0 ? 1 : -1;
	}
	return 0;
}

static void *lct_ahead_run(void *arg)
{
	struct lct_ahead *a = arg;

	for (;;) {
		int end = 0, err = 0, stop;
		unsigned int i;
		ssize_t n;

		pthread_mutex_lock(&a->mu);
		if (!a->stop && a->head - a->tail == LCT_AHEAD_SLOTS) {
			/*
			 * A caller that reads nothing for a while (a loop left
			 * with break, its state not yet collected) gets the
			 * thread back: it reads on alone when it comes back.
			 */
			struct timespec until;

			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += LCT_AHEAD_PARK;
			while (!a->stop && a->head - a->tail == LCT_AHEAD_SLOTS)
				if (pthread_cond_timedwait(&a->cv, &a->mu, &until) == ETIMEDOUT) {
					if (a->head - a->tail == LCT_AHEAD_SLOTS && !a->stop)
						a->parked = 1;
					break;
				}
		}
		stop = a->stop || a->parked;
		i = a->head % LCT_AHEAD_SLOTS;
		pthread_mutex_unlock(&a->mu);
		if (stop)
			break;
		/* The socket times out now and then, so that a stop is seen. */
		n = recv(a->fd, a->slot[i], LCT_RXBUF, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			err = errno;
			end = -1;
			n = 0;
		} else if (n > 0) {
			end = lct_ahead_scan(a, a->slot[i], (int)n);
		}
		if (end == 1 && a->then_family != 0) {
			struct nlmsghdr *nlh = (struct nlmsghdr *)a->req;

			lct_nl_family(nlh, a->then_family, NFNETLINK_V0);
			a->then_family = 0;
			nlh->nlmsg_seq = ++a->seq;
			if (send(a->fd, nlh, nlh->nlmsg_len, 0) < 0)
				err = errno;
			else
				end = 0;
		}
		pthread_mutex_lock(&a->mu);
		if (n > 0) {
			a->len[i] = (int)n;
			__atomic_store_n(&a->head, a->head + 1, __ATOMIC_RELEASE);
		}
		if (end != 0) {
			a->err = err;
			__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
		}
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		if (end != 0)
			break;
	}
	return NULL;
}

int lct_cpus(void)
{
	cpu_set_t s;

	if (sched_getaffinity(0, sizeof(s), &s) != 0)
		return 1;
	return CPU_COUNT(&s);
}

int lct_xfer_ahead(struct lct_xfer *x, const struct nlmsghdr *req, uint8_t then_family)
{
	struct timeval tv = { 0, 100 * 1000 };
	struct lct_ahead *a;
	pthread_condattr_t cattr;
	int r;

	if (lct_cpus() < 2 || req->nlmsg_len > sizeof(a->req))
		return 0;
	a = malloc(sizeof(*a));
	if (a == NULL)
		return 0;
	memset(a, 0, offsetof(struct lct_ahead, slot));
	a->forks = lct_forks_now();
	a->fd = mnl_socket_get_fd(x->nl);
	a->seq = x->seq;
	a->then_family = then_family;
	memcpy(a->req, req, req->nlmsg_len);
	if (setsockopt(a->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		free(a);
		return 0;
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cv, &cattr);
	pthread_condattr_destroy(&cattr);
	r = lct_thread_start(&a->th, lct_ahead_run, a);
	if (r != 0) {
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		free(a);
		tv.tv_usec = 0;
		setsockopt(mnl_socket_get_fd(x->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		return 0;
	}
	x->ah = a;
	return 0;
}

void lct_xfer_stop(struct lct_xfer *x)
{
	struct lct_ahead *a = x->ah;

	if (a == NULL)
		return;
	x->ah = NULL;
	x->end = 1;
	x->rx.pos = x->rx.len = 0;
	/* In a child forked meanwhile the thread is not there to end. */
	if (a->forks == lct_forks) {
		pthread_mutex_lock(&a->mu);
		a->stop = 1;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->th, NULL);
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
	}
	/*
	 * The chunks stay until lct_xfer_free: a message taken from one may
	 * still be read (an entry being made when a finalizer closed the dump).
	 */
	free(x->ahdone);
	x->ahdone = a;
}

void lct_xfer_free(struct lct_xfer *x)
{
	lct_xfer_stop(x);
	free(x->ahdone);
	x->ahdone = NULL;
}

/* The next slot into x->rx: 1, 0 when the thread has ended, or -errno. */
static int lct_ahead_take(struct lct_xfer *x)
{
	struct lct_ahead *a = x->ah;
	int r;

	pthread_mutex_lock(&a->mu);
	if (a->held) {
		a->held = 0;
		a->tail++;
		pthread_cond_broadcast(&a->cv);
	}
	if (a->head == a->tail && !a->done) {
		/*
		 * The kernel builds a chunk in about 200 us: wait a little
		 * awake, which saves the wake-up (tens of us) each chunk when
		 * the caller keeps up with the kernel.
		 */
		struct timespec t0, t;
		unsigned int i;

		pthread_mutex_unlock(&a->mu);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (i = 1; __atomic_load_n(&a->head, __ATOMIC_ACQUIRE) == a->tail &&
			    !__atomic_load_n(&a->done, __ATOMIC_ACQUIRE) &&
			    !__atomic_load_n(&a->parked, __ATOMIC_ACQUIRE); i++) {
			lct_relax();
			if (i % 64 == 0) {
				clock_gettime(CLOCK_MONOTONIC, &t);
				if ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec >
				    LCT_AHEAD_SPIN)
					break;
			}
		}
		pthread_mutex_lock(&a->mu);
	}
	while (a->head == a->tail && !a->done && !a->parked)
		pthread_cond_wait(&a->cv, &a->mu);
	if (a->head != a->tail) {
		unsigned int i = a->tail % LCT_AHEAD_SLOTS;

		x->rx.buf = a->slot[i];
		x->rx.pos = 0;
		x->rx.len = a->len[i];
		a->held = 1;
		r = 1;
	} else if (a->done) {
		r = -a->err;
	} else {
		r = 2;		/* parked, all it received read: on alone */
	}
	pthread_mutex_unlock(&a->mu);
	return r;
}

/* The same request again, as a new exchange on the same socket. */
int lct_xfer_resend(struct lct_xfer *x, struct nlmsghdr *req, uint32_t seq)
{
	req->nlmsg_seq = seq;
	x->seq = seq;
	x->end = 0;
	if (x->ah != NULL || seq == x->sentseq)
		return 0;	/* the thread has sent it */
	x->sentseq = seq;
	x->rx.pos = x->rx.len = 0;
	if (mnl_socket_sendto(x->nl, req, req->nlmsg_len) < 0)
		return errno;
	return 0;
}

int lct_xfer_next(struct lct_xfer *x, const struct nlmsghdr **m)
{
	if (x->ah != NULL && x->ah->forks != lct_forks) {
		x->end = 1;
		return -ECHILD;
	}
	while (!x->end) {
		int err, r = lct_rx_take(&x->rx, m, &err);
		ssize_t n;

		if (r == LCT_RX_EMPTY && x->ah != NULL) {
			r = lct_ahead_take(x);
			if (r == 1)
				continue;
			if (r == 2) {
				struct timeval tv = { 0, 0 };
				uint32_t sent = x->ah->seq;

				lct_xfer_stop(x);
				x->end = 0;
				x->sentseq = sent;	/* the thread may have asked again */
				x->rx.buf = x->buf;
				setsockopt(mnl_socket_get_fd(x->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
				continue;
			}
			x->end = 1;
			return r;
		}
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
