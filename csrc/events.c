/*
 * Events: a socket subscribed to the conntrack multicast groups.  Reading
 * never blocks unless asked to (sub:next with a timeout); an overflow of
 * the socket buffer (ENOBUFS: the kernel dropped events) is reported as an
 * event of its own and counted, and the stream goes on.
 *
 * A matcher selects events in C (and, where the library's socket filter
 * can hold it, in the kernel too); a Lua predicate, when given, runs on
 * what the matcher let through.  After the predicate, or any allocation
 * (finalizers run Lua), the subscription is checked again before use: a
 * callback may have closed it.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <linux/netfilter/nfnetlink_compat.h>

#include "lct.h"

/*
 * Default buffer: 32 MiB asked, 64 MiB granted.  The kernel charges 1280
 * bytes per waiting event (bench/stall.lua): a reader that stalls pins at
 * most 64 MiB and loses nothing for 52 428 events, one that keeps up pins
 * nothing.  With 16 MiB, a reader that formats each event (tostring) lost
 * part of a 200 000-event burst (bench/events.lua); with 32 MiB it did not.
 */
#define LCT_EV_RCVBUF	(32 * 1024 * 1024)

struct lct_evah;
struct lct_evchunk;

struct lct_sub {
	struct mnl_socket *nl;		/* NULL once closed */
	struct lct_evah *ah;		/* read ahead by a thread, or NULL */
	struct lct_evchunk *held;	/* the thread's chunk s->rx reads */
	struct lct_rx rx;		/* unread messages in buf */
	char *backlog;			/* what was queued when an overflow came; freed by __gc */
	size_t bcap, blen, bpos;
	int pending_overflow;
	int rcvbuf;			/* what the kernel granted */
	int expect;			/* expectation events, not flow events */
	int filtered;			/* a socket filter is attached */
	const struct lct_matcher *m;	/* kept alive by mref */
	int mref;
	int filter_ref;			/* Lua predicate in the registry */
	int emt_ref;			/* the entry metatable in the registry (no lookup per event) */
	uint32_t drops;			/* the socket's drop count at the last report */
	uint32_t ov_drops;		/* at the overflow pending, when ov_known */
	int ov_known;
	double rxtime;			/* when the messages in buf came */
	lua_Integer overflows, received, lost;
	char buf[LCT_RXBUF];
};

static const char lct_sub_key = 's';

static struct lct_sub *lct_sub_check(lua_State *L, int idx, const char *fname)
{
	struct lct_sub *s = idx == 1 ? lct_class_self(L, &lct_sub_class, fname) :
			     lct_class_check(L, idx, &lct_sub_class, fname);

	if (s->nl == NULL)
		lct_error(L, "%s: attempt to use a closed subscription", fname);
	return s;
}

static int lct_groups_arg(lua_State *L, int t, const char *fname)
{
	int groups = 0, i, n;

	if (lct_rawfield(L, t, "types") == LUA_TNIL) {
		lua_pop(L, 1);
		return NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE |
		       NF_NETLINK_CONNTRACK_DESTROY;
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		lua_createtable(L, 1, 0);
		lua_insert(L, -2);
		lua_rawseti(L, -2, 1);
	}
	if (!lua_istable(L, -1))
		lct_argerror(L, fname, "types", "array of \"new\", \"update\", \"destroy\" expected, got %s",
			     luaL_typename(L, -1));
	n = (int)lua_rawlen(L, -1);
	for (i = 1; i <= n; i++) {
		const char *s;

		lua_rawgeti(L, -1, i);
		s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (strcmp(s, "new") == 0)
			groups |= NF_NETLINK_CONNTRACK_NEW;
		else if (strcmp(s, "update") == 0)
			groups |= NF_NETLINK_CONNTRACK_UPDATE;
		else if (strcmp(s, "destroy") == 0)
			groups |= NF_NETLINK_CONNTRACK_DESTROY;
		else
			lct_argerror(L, fname, "types", "unknown event type %s", lct_shortval(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (groups == 0)
		lct_argerror(L, fname, "types", "empty");
	return groups;
}

static double lct_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The socket's own count of what it dropped (SO_MEMINFO), if it has one. */
static int lct_drops(int fd, uint32_t *drops)
{
#ifdef SO_MEMINFO
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) == 0 &&
	    len >= sizeof(uint32_t) * (SK_MEMINFO_DROPS + 1)) {
		*drops = mi[SK_MEMINFO_DROPS];
		return 1;
	}
#endif
	(void)fd;
	(void)drops;
	return 0;
}

/* ---- read-ahead ------------------------------------------------------- */

/*
 * A subscription read ahead: a thread of its own receives the events into
 * chunks while the caller makes entries of the ones before, so that the
 * kernel's part (copying each event out of the socket, freeing it) runs on
 * another CPU.  The thread touches no Lua value and runs with every signal
 * blocked.  A chunk carries the overflows that came after its events (an
 * overflow is reported once what was queued before it has been read, as
 * without the thread).  At most LCT_EVAH_QUEUE chunks wait; beyond that
 * the socket's own buffer holds what comes, except while an overflow is
 * being drained (then everything queued is taken at once, as without the
 * thread).  The eventfd efd is readable exactly while chunks wait: the
 * caller waits on it, and getfd gives it to event loops.
 */
#define LCT_EVCHUNK	(2 * LCT_RXBUF)
#define LCT_EVAH_QUEUE	4
#ifndef LCT_EVAH_SPIN
#define LCT_EVAH_SPIN	50000	/* ns */
#endif

struct lct_evchunk {
	struct lct_evchunk *next;
	int len;
	int overflows;			/* after these events */
	int dknown;			/* drops, the socket's count then, is known */
	uint32_t drops;
	double rxtime;
	char data[LCT_EVCHUNK];
};

struct lct_evah {
	struct lct_evah *prev, *next;	/* in lct_evahs, for fork() */
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* room in the queue, or stop */
	int fd, efd, stopfd;
	struct lct_evchunk *head, *tail;	/* the queue */
	struct lct_evchunk *spare;	/* read chunks, for the thread to fill again */
	struct lct_evchunk *filling;	/* the thread's, outside the lock */
	int queued, full;		/* full: the last chunk was filled up (more is coming) */
	int stop, done, err;
	int orphan;			/* in a child of fork(): no thread (2: efd its own) */
};

/*
 * Every read-ahead of the process, so that fork() finds them consistent: it
 * takes each one's lock, and a child marks them orphans (it has no copy of
 * their threads) and reads on alone.
 */
static struct lct_evah *lct_evahs;
static pthread_mutex_t lct_evahs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t lct_evahs_once = PTHREAD_ONCE_INIT;

static void lct_evahs_prepare(void)
{
	struct lct_evah *a;

	pthread_mutex_lock(&lct_evahs_mu);
	for (a = lct_evahs; a != NULL; a = a->next)
		pthread_mutex_lock(&a->mu);
}

static void lct_evahs_parent(void)
{
	struct lct_evah *a;

	for (a = lct_evahs; a != NULL; a = a->next)
		pthread_mutex_unlock(&a->mu);
	pthread_mutex_unlock(&lct_evahs_mu);
}

static void lct_evahs_child(void)
{
	struct lct_evah *a;

	for (a = lct_evahs; a != NULL; a = a->next) {
		a->orphan = 1;
		pthread_mutex_unlock(&a->mu);
	}
	pthread_mutex_unlock(&lct_evahs_mu);
}

static void lct_evahs_watch(void)
{
	pthread_atfork(lct_evahs_prepare, lct_evahs_parent, lct_evahs_child);
}

/*
 * Receives what is queued, up to LCT_MMSG datagrams in one system call
 * (each event is a datagram of its own), packed one after the other into
 * buf (LCT_RXBUF bytes).  Returns the bytes, or -1 with errno (EAGAIN when
 * nothing is queued); *trunc counts events too large for a slot, lost.
 */
#define LCT_MMSG	16
#define LCT_SLOT	(LCT_RXBUF / LCT_MMSG)

static ssize_t lct_recv_many(int fd, char *buf, int *trunc)
{
	struct mmsghdr mm[LCT_MMSG];
	struct iovec iov[LCT_MMSG];
	size_t used = 0;
	int i, n;

	memset(mm, 0, sizeof(mm));
	for (i = 0; i < LCT_MMSG; i++) {
		iov[i].iov_base = buf + i * LCT_SLOT;
		iov[i].iov_len = LCT_SLOT;
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	*trunc = 0;
	n = recvmmsg(fd, mm, LCT_MMSG, MSG_DONTWAIT, NULL);
	if (n < 0)
		return -1;
	for (i = 0; i < n; i++) {
		size_t len = mm[i].msg_len;

		/* Larger than a slot (no event comes near 4 KiB): report it lost. */
		if (mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
			len = 0;
			(*trunc)++;
		}
		if (used != (size_t)i * LCT_SLOT && len > 0)
			memmove(buf + used, buf + i * LCT_SLOT, len);
		used = MNL_ALIGN(used + len);
	}
	return (ssize_t)used;
}

static double lct_realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Hands chunk c to the caller (under the lock). */
static void lct_evah_publish(struct lct_evah *a, struct lct_evchunk *c, int full)
{
	uint64_t one = 1;

	c->next = NULL;
	if (c->overflows > 0)
		c->dknown = lct_drops(a->fd, &c->drops);
	if (a->tail != NULL)
		a->tail->next = c;
	else
		a->head = c;
	a->tail = c;
	a->filling = NULL;
	__atomic_store_n(&a->queued, a->queued + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&a->full, full, __ATOMIC_RELAXED);
	if (a->queued == 1 && write(a->efd, &one, sizeof(one)) < 0) {
		/* a counter far from full: cannot fail */
	}
}

/* A chunk to fill (under the lock): a spare one, or a new one. */
static struct lct_evchunk *lct_evah_chunk(struct lct_evah *a)
{
	struct lct_evchunk *c = a->spare;

	if (c != NULL)
		a->spare = c->next;
	else
		c = malloc(sizeof(*c));
	if (c != NULL) {
		c->len = 0;
		c->overflows = 0;
		c->dknown = 0;
		c->next = NULL;
	}
	a->filling = c;
	return c;
}

static void *lct_evah_run(void *arg)
{
	struct lct_evah *a = arg;
	struct pollfd p[2];
	int draining = 0, err = 0;

	p[0].fd = a->fd;
	p[0].events = POLLIN;
	p[1].fd = a->stopfd;
	p[1].events = POLLIN;
	for (;;) {
		struct lct_evchunk *c;
		int stop;

		pthread_mutex_lock(&a->mu);
		while (!a->stop && !draining && a->queued >= LCT_EVAH_QUEUE)
			pthread_cond_wait(&a->cv, &a->mu);
		stop = a->stop;
		c = stop ? NULL : a->filling != NULL ? a->filling : lct_evah_chunk(a);
		pthread_mutex_unlock(&a->mu);
		if (stop)
			break;
		if (c == NULL) {
			err = ENOMEM;
			break;
		}
		for (;;) {
			int trunc;
			ssize_t n = lct_recv_many(a->fd, c->data + c->len, &trunc);

			if (n >= 0) {
				if (c->len == 0)
					c->rxtime = lct_realtime();
				c->len += (int)n;
				c->overflows += trunc;
				if (trunc == 0 && LCT_EVCHUNK - c->len >= LCT_RXBUF)
					continue;
				pthread_mutex_lock(&a->mu);
				lct_evah_publish(a, c, trunc == 0);
				pthread_mutex_unlock(&a->mu);
				break;
			}
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* the kernel dropped events: empty the queue, then report it */
				draining = 1;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				err = errno;
				break;
			}
			if (draining || c->len > 0) {
				c->overflows += draining;
				if (c->len == 0)
					c->rxtime = lct_realtime();
				draining = 0;
				pthread_mutex_lock(&a->mu);
				lct_evah_publish(a, c, 0);
				pthread_mutex_unlock(&a->mu);
				break;
			}
			if (poll(p, 2, -1) < 0 && errno != EINTR) {
				err = errno;
				break;
			}
			if (p[1].revents)
				break;	/* stop */
		}
		if (err != 0)
			break;
	}
	pthread_mutex_lock(&a->mu);
	if (err != 0) {
		uint64_t one = 1;

		/* what was received before the failure comes first */
		if (a->filling != NULL && a->filling->len > 0)
			lct_evah_publish(a, a->filling, 0);
		a->err = err;
		__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
		if (a->queued == 0 && write(a->efd, &one, sizeof(one)) < 0) {
			/* as in lct_evah_publish */
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static void lct_evah_freelist(struct lct_evchunk *c)
{
	while (c != NULL) {
		struct lct_evchunk *next = c->next;

		free(c);
		c = next;
	}
}

/* Ends the thread (joined, unless this is a child of fork()) and frees its memory. */
static void lct_evah_end(struct lct_sub *s)
{
	struct lct_evah *a = s->ah;
	uint64_t one = 1;

	if (a == NULL)
		return;
	s->ah = NULL;
	free(s->held);
	s->held = NULL;
	s->rx.buf = s->buf;
	s->rx.pos = s->rx.len = 0;
	if (!a->orphan) {
		pthread_mutex_lock(&a->mu);
		a->stop = 1;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		if (write(a->stopfd, &one, sizeof(one)) < 0) {
			/* as in lct_evah_publish */
		}
		pthread_join(a->th, NULL);
	}
	pthread_mutex_lock(&lct_evahs_mu);
	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		lct_evahs = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	pthread_mutex_unlock(&lct_evahs_mu);
	/* In a child the condition may count the parent's thread as waiting: left as it is. */
	if (!a->orphan) {
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
	}
	lct_evah_freelist(a->head);
	lct_evah_freelist(a->spare);
	free(a->filling);
	close(a->efd);
	close(a->stopfd);
	free(a);
}

/* Starts reading s ahead (where two CPUs or more may run the process); 0 if it did not. */
static int lct_evah_start(struct lct_sub *s)
{
	struct lct_evah *a;

	if (lct_cpus() < 2)
		return 0;
	pthread_once(&lct_evahs_once, lct_evahs_watch);
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return 0;
	a->fd = mnl_socket_get_fd(s->nl);
	a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	a->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->efd < 0 || a->stopfd < 0) {
		if (a->efd >= 0)
			close(a->efd);
		if (a->stopfd >= 0)
			close(a->stopfd);
		free(a);
		return 0;
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	pthread_mutex_lock(&lct_evahs_mu);
	a->next = lct_evahs;
	if (lct_evahs != NULL)
		lct_evahs->prev = a;
	lct_evahs = a;
	pthread_mutex_unlock(&lct_evahs_mu);
	s->ah = a;
	if (lct_thread_start(&a->th, lct_evah_run, a) != 0) {
		a->orphan = 1;	/* no thread to end */
		lct_evah_end(s);
		return 0;
	}
	return 1;
}

/*
 * In a child of fork(), once what the parent's thread had received is read:
 * the subscription reads on alone (and waits on its socket, not on the
 * eventfd it shares with its parent).
 */
static void lct_evah_orphaned(struct lct_sub *s)
{
	struct lct_evah *a = s->ah;
	int efd;

	if (a == NULL || !a->orphan)
		return;
	if (a->head == NULL) {
		lct_evah_end(s);
		return;
	}
	if (a->orphan == 1 && (efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0) {
		/* chunks wait: an eventfd of its own says so */
		close(a->efd);
		a->efd = efd;
		a->orphan = 2;
	}
}

/* Events received directly (no thread): bytes into s->rx, or -1 with errno. */
static ssize_t lct_recv_direct(struct lct_sub *s)
{
	int trunc;
	ssize_t n = lct_recv_many(mnl_socket_get_fd(s->nl), s->buf, &trunc);

	if (n < 0)
		return -1;
	if (trunc > 0) {
		s->overflows += trunc;
		s->pending_overflow = 1;
	}
	s->rxtime = lct_realtime();
	s->rx.buf = s->buf;
	s->rx.pos = 0;
	s->rx.len = (int)n;
	return n;
}

/*
 * The next chunk the thread received, into s->rx: its bytes (0: only an
 * overflow), or -1 with errno (EAGAIN: none yet).  The chunk read before
 * goes back to the thread: whatever is made of an event is made from a
 * copy in s->buf.
 */
static ssize_t lct_evah_take(struct lct_sub *s)
{
	struct lct_evah *a = s->ah;
	struct lct_evchunk *c;

	if (__atomic_load_n(&a->full, __ATOMIC_RELAXED) && __atomic_load_n(&a->queued, __ATOMIC_ACQUIRE) == 0) {
		/* more is coming at once: wait awake for it a little */
		struct timespec t0, t;
		unsigned int i;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (i = 1; __atomic_load_n(&a->queued, __ATOMIC_ACQUIRE) == 0 &&
			    !__atomic_load_n(&a->done, __ATOMIC_ACQUIRE); i++) {
			lct_relax();
			if (i % 64 == 0) {
				clock_gettime(CLOCK_MONOTONIC, &t);
				if ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec > LCT_EVAH_SPIN)
					break;
			}
		}
	}
	pthread_mutex_lock(&a->mu);
	if (s->held != NULL) {
		/* the chunk s->rx was reading: read */
		s->held->next = a->spare;
		a->spare = s->held;
		s->held = NULL;
		s->rx.buf = s->buf;
		s->rx.pos = s->rx.len = 0;
	}
	c = a->head;
	if (c == NULL) {
		int err = a->done ? a->err : EAGAIN, orphan = a->orphan;

		pthread_mutex_unlock(&a->mu);
		if (orphan) {
			/* a child of fork(): what the thread had received is read; on alone */
			lct_evah_end(s);
			return lct_recv_direct(s);
		}
		errno = err;
		return -1;
	}
	a->head = c->next;
	if (a->head == NULL)
		a->tail = NULL;
	__atomic_store_n(&a->queued, a->queued - 1, __ATOMIC_RELEASE);
	/* (a child shares the eventfd with its parent until it has its own) */
	if (a->queued == 0 && !a->done && a->orphan != 1) {
		uint64_t v;

		if (read(a->efd, &v, sizeof(v)) < 0) {
			/* already 0 */
		}
	}
	if (a->queued == LCT_EVAH_QUEUE - 1 && !a->orphan)
		pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	s->held = c;
	s->rx.buf = c->data;
	s->rx.pos = 0;
	s->rx.len = c->len;
	s->rxtime = c->rxtime;
	if (c->overflows > 0) {
		s->overflows += c->overflows;
		s->pending_overflow = 1;
		s->ov_known = c->dknown;
		s->ov_drops = c->drops;
	}
	return c->len;
}

static void lct_sub_close(lua_State *L, struct lct_sub *s)
{
	lct_evah_end(s);
	if (s->nl != NULL) {
		mnl_socket_close(s->nl);
		s->nl = NULL;
	}
	s->rx.len = 0;
	s->blen = s->bpos = 0;
	s->pending_overflow = 0;
	if (s->filter_ref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, s->filter_ref);
		s->filter_ref = LUA_NOREF;
	}
	if (s->mref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, s->mref);
		s->mref = LUA_NOREF;
	}
	if (s->emt_ref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, s->emt_ref);
		s->emt_ref = LUA_NOREF;
	}
	s->m = NULL;
}

static const char *const lct_sub_names[] = {
	"types", "rcvbuf", "netns", "matcher", "filter", "table", "readahead", NULL
};

/*
 * core.subscribe(handle or nil, [opts], fname): opts.types, rcvbuf, netns,
 * matcher, filter (a function).  Returns the subscription or nil, msg, errno.
 */
int lct_f_subscribe(lua_State *L)
{
	const char *fname = luaL_optstring(L, 3, "subscribe");
	struct lct_handle *h = NULL;
	struct lct_sub *s;
	int groups = NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE |
		     NF_NETLINK_CONNTRACK_DESTROY;
	int nsfd = -1, err = 0, own = 0, ahead = 0;
	int64_t rcvbuf = LCT_EV_RCVBUF;

	lua_settop(L, 3);
	if (!lua_isnil(L, 1))
		h = lct_handle_check(L, 1, fname);
	s = lct_newuserdata(L, sizeof(*s));
	memset(s, 0, offsetof(struct lct_sub, buf));
	s->filter_ref = s->mref = s->emt_ref = LUA_NOREF;
	s->rx.buf = s->buf;
	lct_class_set(L, &lct_sub_key);
	lct_entry_metatable(L);
	s->emt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (!lua_isnil(L, 2)) {
		lct_check_table(L, 2, fname, "opts");
		lct_check_names(L, 2, fname, lct_sub_names);
		groups = lct_groups_arg(L, 2, fname);
		if (lct_rawfield(L, 2, "table") != LUA_TNIL) {
			const char *t = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";

			if (strcmp(t, "expect") == 0)
				s->expect = 1;
			else if (strcmp(t, "conntrack") != 0)
				lct_argerror(L, fname, "table", "\"conntrack\" or \"expect\" expected, got %s",
					     lct_shortval(L, -1));
		}
		lua_pop(L, 1);
		/* The expectation groups are the flow groups shifted by three. */
		if (s->expect)
			groups <<= 3;
		lct_int_field(L, 2, "rcvbuf", fname, 4096, 1 << 30, &rcvbuf);
		if (lct_rawfield(L, 2, "readahead") != LUA_TNIL)
			ahead = lct_bool_field(L, 2, "readahead", fname);
		lua_pop(L, 1);
		if (lct_rawfield(L, 2, "matcher") != LUA_TNIL) {
			s->m = lct_matcher_arg(L, -1, fname);
			s->mref = luaL_ref(L, LUA_REGISTRYINDEX);
		} else {
			lua_pop(L, 1);
		}
		if (lct_rawfield(L, 2, "filter") != LUA_TNIL) {
			if (lua_type(L, -1) != LUA_TFUNCTION)
				return lct_argerror(L, fname, "filter", "function or filter expected, got %s",
						    luaL_typename(L, -1));
			s->filter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		} else {
			lua_pop(L, 1);
		}
		if (lct_rawfield(L, 2, "netns") != LUA_TNIL) {
			nsfd = lct_ns_open(L, -1, fname, &err);
			if (nsfd < 0) {
				lua_pushfstring(L, "%s: netns %s: %s", fname, lct_shortval(L, -1),
						strerror(err));
				lua_pushnil(L);
				lua_insert(L, -2);
				lua_pushinteger(L, err);
				return 3;
			}
			own = 1;
		}
		lua_pop(L, 1);
	}
	/* The options are read: the handle may only now be relied on. */
	if (!own && h != NULL) {
		lct_handle_sock(L, h, fname);
		nsfd = h->nsfd;
	}
	s->nl = lct_nl_open(nsfd, (unsigned int)groups, &err);
	if (own)
		close(nsfd);
	if (s->nl == NULL) {
		lct_sub_close(L, s);
		return lct_pusherr(L, fname, err);
	}
	s->rcvbuf = lct_nl_rcvbuf(s->nl, (int)rcvbuf);
	if (s->m != NULL && s->expect) {
		lct_sub_close(L, s);
		return lct_argerror(L, fname, "filter", "expectation events are not filtered (do it in Lua)");
	}
	if (s->m != NULL) {
		err = lct_match_attach(s->m, mnl_socket_get_fd(s->nl));
		if (err > 0) {
			lct_sub_close(L, s);
			return lct_pusherr(L, fname, err);
		}
		s->filtered = err == 0;
	}
	if (ahead)
		lct_evah_start(s);
	return 1;
}

static int lct_ev_type(const struct nlmsghdr *m)
{
	/* IPCTNL_MSG_CT_DELETE and IPCTNL_MSG_EXP_DELETE are both 2. */
	if ((m->nlmsg_type & 0xff) == IPCTNL_MSG_CT_DELETE)
		return 3;
	if (m->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL))
		return 1;
	return 2;
}


static void lct_push_overflow(lua_State *L, struct lct_sub *s)
{
	uint32_t drops = s->ov_drops, lost = 0;
	int known = s->ov_known ? 1 : lct_drops(mnl_socket_get_fd(s->nl), &drops);

	if (known) {
		lost = drops - s->drops;
		s->lost += lost;
		s->drops = drops;
	}
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "overflow");
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, s->overflows);
	lua_setfield(L, -2, "overflows");
	if (known) {
		lua_pushinteger(L, (lua_Integer)lost);
		lua_setfield(L, -2, "lost");
	}
}

/*
 * After ENOBUFS the kernel drops every event until the queue has been
 * emptied.  So empty it at once, into memory, before anything else: what
 * was queued is delivered first, then the overflow event, and events made
 * after that (during the caller's resync dump, say) are kept.
 */
static void lct_sub_drain(struct lct_sub *s)
{
	int fd = mnl_socket_get_fd(s->nl);

	if (s->bpos == s->blen)
		s->bpos = s->blen = 0;
	for (;;) {
		ssize_t n;

		if (s->bcap - s->blen < LCT_RXBUF) {
			size_t cap = s->bcap ? s->bcap * 2 : 4 * LCT_RXBUF;
			char *p = realloc(s->backlog, cap);

			if (p == NULL)
				return;	/* the rest stays in the socket */
			s->backlog = p;
			s->bcap = cap;
		}
		n = recv(fd, s->backlog + s->blen, LCT_RXBUF, MSG_DONTWAIT);
		if (n > 0) {
			s->blen = MNL_ALIGN(s->blen + (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EINTR || errno == ENOBUFS))
			continue;	/* ENOBUFS: the same overflow, still going on */
		return;
	}
}

/* The next event message of the subscription's subsystem from rx, or NULL. */
static const struct nlmsghdr *lct_take(struct lct_rx *rx, int expect)
{
	const struct nlmsghdr *m;
	int err, subsys = expect ? NFNL_SUBSYS_CTNETLINK_EXP : NFNL_SUBSYS_CTNETLINK;

	while (lct_rx_take(rx, &m, &err) != LCT_RX_EMPTY)
		if ((m->nlmsg_type >> 8) == subsys && m->nlmsg_type >= NLMSG_MIN_TYPE)
			return m;
	return NULL;
}

/*
 * The main thread: the lua command's Ctrl-C handler sets its hook there,
 * whichever coroutine is waiting.  5.1 and LuaJIT have no registry slot
 * for it: the thread that loaded the module is kept, if it was the main one.
 */
static const char lct_main_key = 'M';

void lct_events_open(lua_State *L)
{
#if LUA_VERSION_NUM < 502
	if (lua_pushthread(L) == 1)
		lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_main_key);
	else
		lua_pop(L, 1);
#else
	(void)L;
	(void)lct_main_key;
#endif
}

static lua_State *lct_main_thread(lua_State *L)
{
	lua_State *m;

#if LUA_VERSION_NUM < 502
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_main_key);
#else
	lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
#endif
	m = lua_tothread(L, -1);
	lua_pop(L, 1);
	return m != NULL ? m : L;
}

/*
 * Waits until readable: 1; 0 when the deadline passed or the interpreter
 * wants control back (a signal handler installed a hook on the main
 * thread: Ctrl-C); or -errno.  deadline < 0 waits for ever.  Other signals
 * restart the wait.
 */
static int lct_sub_poll(lua_State *L, struct lct_sub *s, double deadline)
{
	lua_State *main = lct_main_thread(L);
	lua_Hook hook = lua_gethook(main), chook = lua_gethook(L);
	struct pollfd p;

	lct_evah_orphaned(s);
	p.fd = s->ah != NULL ? s->ah->efd : mnl_socket_get_fd(s->nl);
	p.events = POLLIN;
	for (;;) {
		int ms = -1, r;

		if (deadline >= 0) {
			double left = deadline - lct_now();

			if (left <= 0)
				return 0;
			ms = left > 2e6 ? 2000000000 : (int)ceil(left * 1000.0);
		}
		r = poll(&p, 1, ms);
		if (r > 0)
			return 1;
		if (r == 0)
			continue;	/* the deadline check above decides */
		if (errno != EINTR)
			return -errno;
		if (lua_gethook(main) != hook || lua_gethook(L) != chook)
			return 0;
	}
}

/*
 * The end of a wait, read from the clock only when first needed: an event
 * that is ready at once costs no clock read.  It is read before anything
 * that takes time (a system call, an event the filter drops), so the
 * deadline still counts from the call.
 */
struct lct_until {
	double timeout;		/* seconds; < 0: for ever */
	double deadline;	/* < 0: for ever */
	int known;
};

static void lct_until_start(struct lct_until *u)
{
	if (!u->known) {
		u->deadline = u->timeout < 0 ? -1 : lct_now() + u->timeout;
		u->known = 1;
	}
}

/*
 * One event pushed: 1; nothing (deadline passed, or wait == 0 and nothing
 * ready): 0; -errno on a failure.  mt: where the entry metatable is.
 */
static int lct_sub_step(lua_State *L, struct lct_sub *s, int wait, struct lct_until *u,
			const char *fname, int mt)
{
	for (;;) {
		const struct nlmsghdr *m;

		/* Lua ran since the last check (finalizers, a predicate): closed? */
		if (s->nl == NULL)
			lct_error(L, "%s: attempt to use a closed subscription", fname);
		m = lct_take(&s->rx, s->expect);
		if (m == NULL && s->blen > s->bpos) {
			struct lct_rx b;

			b.buf = s->backlog;
			b.pos = (int)s->bpos;
			b.len = (int)(s->blen - s->bpos);
			m = lct_take(&b, s->expect);
			s->bpos = m ? (size_t)b.pos : s->blen;
		}
		if (m != NULL) {
			if (s->ah != NULL && m->nlmsg_len <= LCT_SLOT) {
				/*
				 * The entry is made from a copy: making it may run
				 * Lua (finalizers) that reads on, and the chunk
				 * goes back to the thread.
				 */
				memcpy(s->buf, m, m->nlmsg_len);
				m = (const struct nlmsghdr *)s->buf;
			}
			if (s->expect) {
				lct_expect_push(L, m, lct_ev_type(m), s->rxtime);
				s->received++;
				return 1;
			}
			if (s->m != NULL && !lct_match(s->m, m)) {
				lct_until_start(u);
				continue;
			}
			lct_entry_pushm(L, m, lct_ev_type(m), s->rxtime, mt);
			s->received++;
			return 1;
		}
		if (s->pending_overflow) {
			s->pending_overflow = 0;
			lct_push_overflow(L, s);
			s->ov_known = 0;
			return 1;
		}
		lct_until_start(u);
		for (;;) {
			ssize_t n = s->ah != NULL ? lct_evah_take(s) : lct_recv_direct(s);
			int r;

			if (n >= 0)
				break;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS && s->ah == NULL) {
				s->overflows++;
				s->pending_overflow = 1;
				lct_sub_drain(s);
				break;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			if (!wait)
				return 0;
			r = lct_sub_poll(L, s, u->deadline);
			if (r <= 0)
				return r;
		}
	}
}

/* Runs the subscription's predicate on the event at the top; keeps it or pops it. */
static int lct_sub_keep(lua_State *L, struct lct_sub *s, const char *fname)
{
	int keep;

	if (s->filter_ref == LUA_NOREF || lua_istable(L, -1))
		return 1;	/* overflow events always pass */
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->filter_ref);
	lua_pushvalue(L, -2);
	lua_call(L, 1, 1);
	keep = lua_toboolean(L, -1);
	lua_pop(L, keep ? 1 : 2);
	lct_sub_check(L, 1, fname);	/* the predicate may have closed it */
	return keep;
}

/* A wait of the timeout at idx (seconds, nil for ever), not yet started. */
static void lct_until_arg(lua_State *L, int idx, const char *fname, struct lct_until *u)
{
	lua_Number t;

	u->known = 0;
	u->timeout = -1;
	if (lua_isnoneornil(L, idx))
		return;
	t = lua_tonumber(L, idx);
	if (lua_type(L, idx) != LUA_TNUMBER || !(t >= 0))
		lct_argerror(L, fname, "timeout", "seconds >= 0 expected, got %s",
			     lct_shortval(L, idx));
	u->timeout = t > 1e9 ? 1e9 : t;
}

/*
 * sub:next of s (at index 1) with the timeout at index 2: what next returns.
 * fname names the call in messages ("next", or "events" for its iterator).
 */
static int lct_next(lua_State *L, struct lct_sub *s, const char *fname)
{
	struct lct_until u;
	int r;

	lct_until_arg(L, 2, fname, &u);
	lua_settop(L, 2);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->emt_ref);
	for (;;) {
		r = lct_sub_step(L, s, 1, &u, fname, 3);
		if (r < 0)
			return lct_pusherr(L, fname, -r);
		if (r == 0) {
			lua_pushnil(L);
			return 1;
		}
		if (lct_sub_keep(L, s, fname))
			return 1;
		lct_until_start(&u);	/* the predicate took its time */
	}
}

/* sub:next([timeout]) -> event, or nil when the timeout passed. */
static int lct_s_next(lua_State *L)
{
	return lct_next(L, lct_sub_check(L, 1, "next"), "next");
}

/*
 * The iterator ct.events returns: a closure over (subscription, timeout,
 * done).  Each call is sub:next(timeout); at the end (timeout, or a
 * failure) the subscription is closed, a failure raised, and every later
 * call returns nil.
 */
static int lct_events_iter(lua_State *L)
{
	struct lct_sub *s;
	int n;

	if (lua_toboolean(L, lua_upvalueindex(3))) {
		lua_pushnil(L);
		return 1;
	}
	lua_settop(L, 0);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, lua_upvalueindex(2));
	s = lua_touserdata(L, 1);	/* checked by core.events_iter */
	if (s->nl == NULL)
		return lct_error(L, "events: attempt to use a closed subscription");
	n = lct_next(L, s, "events");
	if (!lua_isnil(L, -n))
		return 1;
	lua_pushboolean(L, 1);
	lua_replace(L, lua_upvalueindex(3));
	lct_sub_close(L, s);
	if (n > 1)
		return lct_error(L, "%s", lua_tostring(L, -n + 1));
	return 1;
}

/* core.events_iter(sub, timeout) -> the iterator of ct.events. */
int lct_f_events_iter(lua_State *L)
{
	lct_class_check(L, 1, &lct_sub_class, "events");
	lua_settop(L, 2);
	lua_pushboolean(L, 0);
	lua_pushcclosure(L, lct_events_iter, 3);
	return 1;
}

/* sub:read([max]) -> array of what is there now (never blocks). */
static int lct_s_read(lua_State *L)
{
	struct lct_sub *s = lct_sub_check(L, 1, "read");
	struct lct_until u = { -1, -1, 1 };
	int64_t max = 0;
	int n = 0, r;

	if (!lua_isnoneornil(L, 2))
		max = lct_int_arg(L, 2, "read", "max", 1, INT32_MAX);
	lua_settop(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->emt_ref);
	lua_newtable(L);
	while (max == 0 || n < max) {
		r = lct_sub_step(L, s, 0, &u, "read", 2);
		if (r < 0) {
			if (n > 0)
				break;
			return lct_pusherr(L, "read", -r);
		}
		if (r == 0)
			break;
		if (lct_sub_keep(L, s, "read"))
			lua_rawseti(L, -2, ++n);
	}
	return 1;
}

/* Waits until readable: true, or false when the timeout passed. */
static int lct_s_wait(lua_State *L)
{
	struct lct_sub *s = lct_sub_check(L, 1, "wait");
	struct lct_until u;
	int r;

	lct_until_arg(L, 2, "wait", &u);
	lct_until_start(&u);
	if (s->rx.len > 0 || s->blen > s->bpos || s->pending_overflow ||
	    (s->ah != NULL && __atomic_load_n(&s->ah->queued, __ATOMIC_ACQUIRE) > 0)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	r = lct_sub_poll(L, s, u.deadline);
	if (r < 0)
		return lct_pusherr(L, "wait", -r);
	lua_pushboolean(L, r > 0);
	return 1;
}

/* getfd and pollfd: the same method under the names luv and cqueues use. */
static int lct_s_getfd(lua_State *L)
{
	struct lct_sub *s = lct_sub_check(L, 1, "getfd");

	lct_evah_orphaned(s);
	lua_pushinteger(L, s->ah != NULL ? s->ah->efd : mnl_socket_get_fd(s->nl));
	return 1;
}

static int lct_s_events(lua_State *L)
{
	lct_sub_check(L, 1, "events");
	lua_pushliteral(L, "r");
	return 1;
}

static int lct_s_timeout(lua_State *L)
{
	lct_sub_check(L, 1, "timeout");
	lua_pushnil(L);
	return 1;
}

static int lct_s_close(lua_State *L)
{
	struct lct_sub *s = lct_class_check(L, 1, &lct_sub_class, "close");

	lct_sub_close(L, s);
	lua_pushboolean(L, 1);
	return 1;
}

static int lct_s_closemm(lua_State *L)
{
	struct lct_sub *s = lct_class_test(L, 1, &lct_sub_key);

	if (s != NULL)
		lct_sub_close(L, s);
	return 0;
}

static int lct_s_gc(lua_State *L)
{
	struct lct_sub *s = lct_class_test(L, 1, &lct_sub_key);

	if (s != NULL) {
		lct_sub_close(L, s);
		free(s->backlog);
		s->backlog = NULL;
		s->bcap = 0;
	}
	return 0;
}

static int lct_s_tostring(lua_State *L)
{
	struct lct_sub *s = lct_class_check(L, 1, &lct_sub_class, "tostring");

	if (s->nl == NULL)
		lua_pushliteral(L, "conntrack.subscription (closed)");
	else
		lua_pushfstring(L, "conntrack.subscription (fd %d)", mnl_socket_get_fd(s->nl));
	return 1;
}

static const char *const lct_sub_fields[] = {
	"overflows", "received", "lost", "rcvbuf", "kernel_filtered", "closed", NULL
};

static int lct_s_index(lua_State *L)
{
	struct lct_sub *s;

	switch (lct_class_field(L, (void **)&s)) {
	case 0: lua_pushinteger(L, s->overflows); break;
	case 1: lua_pushinteger(L, s->received); break;
	case 2: lua_pushinteger(L, s->lost); break;
	case 3: lua_pushinteger(L, s->rcvbuf); break;
	case 4: lua_pushboolean(L, s->filtered); break;
	case 5: lua_pushboolean(L, s->nl == NULL); break;
	}
	return 1;
}

static const luaL_Reg lct_sub_methods[] = {
	{"next", lct_s_next},
	{"read", lct_s_read},
	{"wait", lct_s_wait},
	{"getfd", lct_s_getfd},
	{"pollfd", lct_s_getfd},
	{"events", lct_s_events},
	{"timeout", lct_s_timeout},
	{"close", lct_s_close},
	{NULL, NULL}
};
static const luaL_Reg *const lct_sub_arrays[] = { lct_sub_methods, NULL };

static const luaL_Reg lct_sub_meta[] = {
	{"__gc", lct_s_gc},
	{"__close", lct_s_closemm},
	{"__tostring", lct_s_tostring},
	{NULL, NULL}
};

const struct lct_class lct_sub_class = {
	.key = &lct_sub_key, .name = "conntrack.subscription", .what = "conntrack subscription",
	.meta = lct_sub_meta, .methods = lct_sub_arrays,
	.fields = lct_sub_fields, .index = lct_s_index,
};
