/*
 * Events: a socket subscribed to the conntrack multicast groups.  Reading
 * never blocks unless asked to (sub:next with a timeout); an overflow of
 * the socket buffer (ENOBUFS: the kernel dropped events) is reported as an
 * event of its own and counted, and the stream goes on.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/sock_diag.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netfilter/nfnetlink_compat.h>

#include "lct.h"

#define LCT_EV_RCVBUF	(32 * 1024 * 1024)	/* default: no loss on bursts */
#define LCT_KF_MAX	64

struct lct_kfilter {
	int nproto, nsrc4, ndst4, nsrc6, ndst6, nmark;
	uint32_t proto[LCT_KF_MAX];
	struct nfct_filter_ipv4 src4[LCT_KF_MAX], dst4[LCT_KF_MAX];
	struct nfct_filter_ipv6 src6[LCT_KF_MAX], dst6[LCT_KF_MAX];
	struct nfct_filter_dump_mark mark[LCT_KF_MAX];
};

struct lct_sub {
	struct mnl_socket *nl;		/* NULL once closed */
	int pos, len;			/* unread messages in rx */
	char *backlog;			/* what was queued when an overflow came */
	size_t bcap, blen, bpos;
	int pending_overflow;
	int rcvbuf;			/* what the kernel granted */
	int filtered;			/* a socket filter is attached */
	int kcheck;			/* re-check the kernel filter here */
	int filter_ref;			/* Lua predicate in the registry */
	uint32_t drops;			/* the socket's drop count at the last report */
	lua_Integer overflows, received, lost;
	struct lct_kfilter kf;
	char rx[LCT_RXBUF];
};

static struct lct_sub *lct_checksub(lua_State *L, int idx, const char *fname)
{
	struct lct_sub *s = luaL_testudata(L, idx, LCT_SUB_MT);

	if (s == NULL)
		lct_error(L, "%s: bad self (conntrack subscription expected, got %s)",
			  fname, luaL_typename(L, idx));
	if (s->nl == NULL)
		lct_error(L, "%s: attempt to use a closed subscription", fname);
	return s;
}

/* "192.0.2.0/24" or "2001:db8::/32" into a host-order address and mask. */
static int lct_cidr(lua_State *L, const char *s, struct lct_kfilter *k, int dst)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	unsigned char a[16];
	long bits = -1;
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	int i;

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (slash != NULL) {
		char *end;

		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || slash[1] == '\0' || bits < 0)
			return -1;
	}
	if (inet_pton(AF_INET, buf, a) == 1) {
		struct nfct_filter_ipv4 *f;
		uint32_t addr;

		if (bits < 0)
			bits = 32;
		if (bits > 32)
			return -1;
		if ((dst ? k->ndst4 : k->nsrc4) >= LCT_KF_MAX)
			return -2;
		f = dst ? &k->dst4[k->ndst4++] : &k->src4[k->nsrc4++];
		memcpy(&addr, a, 4);
		f->mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
		f->addr = ntohl(addr) & f->mask;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, a) == 1) {
		struct nfct_filter_ipv6 *f;

		if (bits < 0)
			bits = 128;
		if (bits > 128)
			return -1;
		if ((dst ? k->ndst6 : k->nsrc6) >= LCT_KF_MAX)
			return -2;
		f = dst ? &k->dst6[k->ndst6++] : &k->src6[k->nsrc6++];
		for (i = 0; i < 4; i++) {
			uint32_t w;
			int b = (int)bits - 32 * i;

			memcpy(&w, a + 4 * i, 4);
			f->mask[i] = b >= 32 ? 0xffffffffu : b <= 0 ? 0 : 0xffffffffu << (32 - b);
			f->addr[i] = ntohl(w) & f->mask[i];
		}
		return 0;
	}
	(void)L;
	return -1;
}

static void lct_kf_addrs(lua_State *L, const char *fname, int t, const char *field,
			 struct lct_kfilter *k, int dst)
{
	int i, n;

	lua_getfield(L, t, field);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		lua_createtable(L, 1, 0);
		lua_insert(L, -2);
		lua_rawseti(L, -2, 1);
	}
	if (!lua_istable(L, -1))
		lct_error(L, "%s: bad argument 'kernel_filter.%s' (addresses expected)", fname, field);
	n = (int)lua_rawlen(L, -1);
	for (i = 1; i <= n; i++) {
		int r;

		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) != LUA_TSTRING)
			lct_error(L, "%s: bad argument 'kernel_filter.%s' (address strings expected)", fname, field);
		r = lct_cidr(L, lua_tostring(L, -1), k, dst);
		if (r == -2)
			lct_error(L, "%s: bad argument 'kernel_filter.%s' (more than %d addresses)", fname,
				  field, LCT_KF_MAX);
		if (r < 0)
			lct_error(L, "%s: bad argument 'kernel_filter.%s' (malformed address '%s')", fname,
				  field, lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}


/*
 * opts.kernel_filter = {proto = {...}, src = {...}, dst = {...},
 * mark = {value =, mask =} or a list of them}: alternatives within a
 * field, all fields at once.  Compiled to a socket filter by the library.
 */
static int lct_kf_parse(lua_State *L, const char *fname, int t, struct lct_kfilter *k)
{
	int i, n;

	memset(k, 0, sizeof(*k));
	if (!lua_istable(L, t))
		lct_error(L, "%s: bad argument 'kernel_filter' (table expected, got %s)", fname,
			  luaL_typename(L, t));
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";

		if (strcmp(key, "proto") && strcmp(key, "src") && strcmp(key, "dst") &&
		    strcmp(key, "mark"))
			lct_error(L, "%s: bad argument 'kernel_filter.%s' (unknown field)", fname, key);
		lua_pop(L, 1);
	}
	lua_getfield(L, t, "proto");
	if (!lua_isnil(L, -1)) {
		if (!lua_istable(L, -1)) {
			lua_createtable(L, 1, 0);
			lua_insert(L, -2);
			lua_rawseti(L, -2, 1);
		}
		n = (int)lua_rawlen(L, -1);
		if (n > LCT_KF_MAX)
			lct_error(L, "%s: bad argument 'kernel_filter.proto' (too many)", fname);
		for (i = 1; i <= n; i++) {
			int p = -1;

			lua_rawgeti(L, -1, i);
			if (lua_type(L, -1) == LUA_TSTRING)
				p = lct_proto_number(lua_tostring(L, -1));
			else if (lua_type(L, -1) == LUA_TNUMBER &&
				 lua_tonumber(L, -1) >= 0 && lua_tonumber(L, -1) <= 255)
				p = (int)lua_tointeger(L, -1);
			if (p < 0)
				lct_error(L, "%s: bad argument 'kernel_filter.proto' (unknown protocol '%s')", fname,
					  lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
			k->proto[k->nproto++] = (uint32_t)p;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lct_kf_addrs(L, fname, t, "src", k, 0);
	lct_kf_addrs(L, fname, t, "dst", k, 1);
	lua_getfield(L, t, "mark");
	if (!lua_isnil(L, -1)) {
		int m = lua_gettop(L);

		if (!lua_istable(L, m))
			lct_error(L, "%s: bad argument 'kernel_filter.mark' (table expected)", fname);
		lua_getfield(L, m, "value");
		if (!lua_isnil(L, -1)) {
			/* a single {value =, mask =} */
			lua_pop(L, 1);
			lua_createtable(L, 1, 0);
			lua_pushvalue(L, m);
			lua_rawseti(L, -2, 1);
			lua_replace(L, m);
		} else {
			lua_pop(L, 1);
		}
		n = (int)lua_rawlen(L, m);
		if (n > LCT_KF_MAX)
			lct_error(L, "%s: bad argument 'kernel_filter.mark' (too many)", fname);
		for (i = 1; i <= n; i++) {
			lua_rawgeti(L, m, i);
			if (!lua_istable(L, -1))
				lct_error(L, "%s: bad argument 'kernel_filter.mark' ({value =, mask =} expected)", fname);
			lua_getfield(L, -1, "value");
			k->mark[k->nmark].val = lct_u32_arg(L, -1, fname, "kernel_filter.mark.value");
			lua_pop(L, 1);
			k->mark[k->nmark].mask = 0xffffffffu;
			lua_getfield(L, -1, "mask");
			if (!lua_isnil(L, -1))
				k->mark[k->nmark].mask = lct_u32_arg(L, -1, fname, "kernel_filter.mark.mask");
			lua_pop(L, 1);
			k->nmark++;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	return k->nproto + k->nsrc4 + k->ndst4 + k->nsrc6 + k->ndst6 + k->nmark;
}

/*
 * The socket filter libnetfilter_conntrack compiles from k.  Its address
 * tests go wrong when one field holds both families (an IPv4 destination
 * test rejects IPv6 events), so such a field stays out of the socket filter;
 * every event is checked again here against the whole of k anyway
 * (lct_kf_match), so the socket filter only ever saves work.
 * No Lua calls in here: the filter object is always freed.
 * Returns 0 (attached), -1 (nothing worth attaching) or an errno.
 */
static int lct_kf_attach(int fd, const struct lct_kfilter *k)
{
	struct nfct_filter *f;
	int i, r, n = 0, src = k->nsrc4 == 0 || k->nsrc6 == 0;
	int dst = k->ndst4 == 0 || k->ndst6 == 0;

	n = k->nproto + k->nmark + (src ? k->nsrc4 + k->nsrc6 : 0) +
	    (dst ? k->ndst4 + k->ndst6 : 0);
	if (n == 0)
		return -1;
	f = nfct_filter_create();
	if (f == NULL)
		return ENOMEM;
	for (i = 0; i < k->nproto; i++)
		nfct_filter_add_attr_u32(f, NFCT_FILTER_L4PROTO, k->proto[i]);
	for (i = 0; src && i < k->nsrc4; i++)
		nfct_filter_add_attr(f, NFCT_FILTER_SRC_IPV4, &k->src4[i]);
	for (i = 0; dst && i < k->ndst4; i++)
		nfct_filter_add_attr(f, NFCT_FILTER_DST_IPV4, &k->dst4[i]);
	for (i = 0; src && i < k->nsrc6; i++)
		nfct_filter_add_attr(f, NFCT_FILTER_SRC_IPV6, &k->src6[i]);
	for (i = 0; dst && i < k->ndst6; i++)
		nfct_filter_add_attr(f, NFCT_FILTER_DST_IPV6, &k->dst6[i]);
	for (i = 0; i < k->nmark; i++)
		nfct_filter_add_attr(f, NFCT_FILTER_MARK, &k->mark[i]);
	r = nfct_filter_attach(fd, f) < 0 ? errno : 0;
	nfct_filter_destroy(f);
	return r;
}

static int lct_kf_addr(const struct nlattr *a4, const struct nlattr *a6,
		       const struct nfct_filter_ipv4 *f4, int n4,
		       const struct nfct_filter_ipv6 *f6, int n6)
{
	int i, j;

	if (a4 != NULL && mnl_attr_get_payload_len(a4) >= 4) {
		uint32_t v = ntohl(mnl_attr_get_u32(a4));

		for (i = 0; i < n4; i++)
			if ((v & f4[i].mask) == f4[i].addr)
				return 1;
		return 0;
	}
	if (a6 != NULL && mnl_attr_get_payload_len(a6) >= 16) {
		const unsigned char *p = mnl_attr_get_payload(a6);

		for (i = 0; i < n6; i++) {
			for (j = 0; j < 4; j++) {
				uint32_t w;

				memcpy(&w, p + 4 * j, 4);
				if ((ntohl(w) & f6[i].mask[j]) != f6[i].addr[j])
					break;
			}
			if (j == 4)
				return 1;
		}
	}
	return 0;
}

/* The kernel filter's meaning, exactly, on the original tuple. */
static int lct_kf_match(const struct lct_kfilter *k, const struct nlmsghdr *m)
{
	const struct nlattr *a, *orig = NULL, *markattr = NULL;
	struct lct_dir d;
	int i, ok;

	mnl_attr_for_each(a, m, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) == CTA_TUPLE_ORIG)
			orig = a;
		else if (mnl_attr_get_type(a) == CTA_MARK)
			markattr = a;
	}
	lct_dir_parse(orig, NULL, &d);
	if (k->nproto) {
		unsigned int p = d.num && mnl_attr_get_payload_len(d.num) >= 1 ?
				 mnl_attr_get_u8(d.num) : 256;

		for (i = 0, ok = 0; i < k->nproto && !ok; i++)
			ok = k->proto[i] == p;
		if (!ok)
			return 0;
	}
	if ((k->nsrc4 || k->nsrc6) &&
	    !lct_kf_addr(d.src4, d.src6, k->src4, k->nsrc4, k->src6, k->nsrc6))
		return 0;
	if ((k->ndst4 || k->ndst6) &&
	    !lct_kf_addr(d.dst4, d.dst6, k->dst4, k->ndst4, k->dst6, k->ndst6))
		return 0;
	if (k->nmark) {
		uint32_t mark = markattr && mnl_attr_get_payload_len(markattr) >= 4 ?
				ntohl(mnl_attr_get_u32(markattr)) : 0;

		for (i = 0, ok = 0; i < k->nmark && !ok; i++)
			ok = (mark & k->mark[i].mask) == k->mark[i].val;
		if (!ok)
			return 0;
	}
	return 1;
}

static int lct_groups_arg(lua_State *L, const char *fname, int t)
{
	int groups = 0, i, n;

	lua_getfield(L, t, "types");
	if (lua_isnil(L, -1)) {
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
		lct_error(L, "%s: bad argument 'types' (array of \", fnamenew\", \"update\", \"destroy\" expected)");
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
			lct_error(L, "%s: bad argument 'types' (unknown event type '%s')", fname,
				  lua_type(L, -1) == LUA_TSTRING ? s : luaL_typename(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (groups == 0)
		lct_error(L, "%s: bad argument 'types' (empty)", fname);
	return groups;
}

static double lct_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * subscribe([opts], [fname]): opts.types, opts.rcvbuf, opts.netns,
 * opts.kernel_filter, opts.filter (a function; the Lua side turns filter
 * objects into one).  Returns the subscription or nil, msg, errno.
 */
static int lct_subscribe_ns(lua_State *L, int hnsfd)
{
	const char *fname = luaL_optstring(L, 2, "subscribe");
	struct lct_sub *s;
	int groups = NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE |
		     NF_NETLINK_CONNTRACK_DESTROY;
	int rcvbuf = LCT_EV_RCVBUF, nsfd = -1, err, usekf = 0;

	lua_settop(L, 2);
	s = lct_newuserdata(L, sizeof(*s));
	memset(s, 0, offsetof(struct lct_sub, rx));
	s->filter_ref = LUA_NOREF;
	luaL_setmetatable(L, LCT_SUB_MT);
	if (!lua_isnil(L, 1)) {
		if (!lua_istable(L, 1))
			return lct_error(L, "%s: bad argument 'opts' (table expected, got %s)",
					 fname, luaL_typename(L, 1));
		groups = lct_groups_arg(L, fname, 1);
		lua_getfield(L, 1, "rcvbuf");
		if (!lua_isnil(L, -1)) {
			lua_Number v = lua_tonumber(L, -1);

			if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 4096 && v <= 1073741824.0) ||
			    v != floor(v))
				return lct_error(L, "%s: bad argument 'rcvbuf' (bytes, 4096..2^30 expected)",
						 fname);
			rcvbuf = (int)v;
		}
		lua_pop(L, 1);
		lua_getfield(L, 1, "kernel_filter");
		if (!lua_isnil(L, -1))
			usekf = lct_kf_parse(L, fname, lua_gettop(L), &s->kf) > 0;
		lua_pop(L, 1);
		lua_getfield(L, 1, "filter");
		if (!lua_isnil(L, -1)) {
			if (lua_type(L, -1) != LUA_TFUNCTION)
				return lct_error(L, "%s: bad argument 'filter' (function or filter expected, got %s)",
						 fname, luaL_typename(L, -1));
			s->filter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		} else {
			lua_pop(L, 1);
		}
		lua_getfield(L, 1, "netns");
		if (!lua_isnil(L, -1)) {
			nsfd = lct_nsfd_open(L, lua_gettop(L), fname);
			if (nsfd < 0)
				return 3;
		}
		lua_pop(L, 1);
	}
	s->nl = lct_socket_open(L, nsfd >= 0 ? nsfd : hnsfd, groups, fname, &err);
	if (nsfd >= 0)
		close(nsfd);
	if (s->nl == NULL)
		return lct_pusherr(L, fname, err);
	s->rcvbuf = lct_set_rcvbuf(s->nl, rcvbuf);
	if (usekf) {
		s->kcheck = 1;
		err = lct_kf_attach(mnl_socket_get_fd(s->nl), &s->kf);
		if (err > 0) {
			mnl_socket_close(s->nl);
			s->nl = NULL;
			return lct_pusherr(L, fname, err);
		}
		s->filtered = err == 0;
	}
	return 1;
}

static int lct_subscribe(lua_State *L)
{
	return lct_subscribe_ns(L, -1);
}

/* h:subscribe([opts]): in the handle's namespace unless opts.netns says. */
static int lct_h_subscribe(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "subscribe");
	int nsfd = h->nsfd;

	lua_remove(L, 1);
	return lct_subscribe_ns(L, nsfd);
}

static int lct_ev_type(const struct nlmsghdr *m)
{
	if ((m->nlmsg_type & 0xff) == IPCTNL_MSG_CT_DELETE)
		return 3;
	if (m->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL))
		return 1;
	return 2;
}

/* The socket's own count of what it dropped (SO_MEMINFO), if it has one. */
static int lct_drops(struct lct_sub *s, uint32_t *drops)
{
#ifdef SO_MEMINFO
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);

	if (getsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_MEMINFO, mi, &len) == 0 &&
	    len >= sizeof(uint32_t) * (SK_MEMINFO_DROPS + 1)) {
		*drops = mi[SK_MEMINFO_DROPS];
		return 1;
	}
#endif
	(void)s;
	(void)drops;
	return 0;
}

static void lct_push_overflow(lua_State *L, struct lct_sub *s)
{
	uint32_t drops;

	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "overflow");
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, s->overflows);
	lua_setfield(L, -2, "overflows");
	if (lct_drops(s, &drops)) {
		lua_pushinteger(L, (lua_Integer)(uint32_t)(drops - s->drops));
		lua_setfield(L, -2, "lost");
		s->lost += (uint32_t)(drops - s->drops);
		s->drops = drops;
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
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOBUFS)
			continue;	/* the same overflow, still going on */
		return;
	}
}

/*
 * Receives what is queued, up to LCT_MMSG datagrams in one system call
 * (each event is a datagram of its own), packed one after the other in rx.
 * Returns the bytes, or -1 with errno (EAGAIN when nothing is queued).
 */
#define LCT_MMSG	16
#define LCT_SLOT	(LCT_RXBUF / LCT_MMSG)

static ssize_t lct_recv_many(struct lct_sub *s)
{
	struct mmsghdr mm[LCT_MMSG];
	struct iovec iov[LCT_MMSG];
	size_t used = 0;
	int i, n;

	memset(mm, 0, sizeof(mm));
	for (i = 0; i < LCT_MMSG; i++) {
		iov[i].iov_base = s->rx + i * LCT_SLOT;
		iov[i].iov_len = LCT_SLOT;
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	n = recvmmsg(mnl_socket_get_fd(s->nl), mm, LCT_MMSG, MSG_DONTWAIT, NULL);
	if (n < 0)
		return -1;
	for (i = 0; i < n; i++) {
		size_t len = mm[i].msg_len;

		/* Larger than a slot (no event comes near 4 KiB): report it lost. */
		if (mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
			len = 0;
			s->overflows++;
			s->pending_overflow = 1;
		}
		if (used != (size_t)i * LCT_SLOT && len > 0)
			memmove(s->rx + used, s->rx + i * LCT_SLOT, len);
		used = MNL_ALIGN(used + len);
	}
	return (ssize_t)used;
}

/* Takes the next message from buf; NULL when none is left. */
static const struct nlmsghdr *lct_take(const char *buf, int *pos, int *len)
{
	while (*len > 0) {
		const struct nlmsghdr *m = (const struct nlmsghdr *)(buf + *pos);
		int before = *len;

		if (!mnl_nlmsg_ok(m, *len)) {
			*len = 0;
			return NULL;
		}
		mnl_nlmsg_next(m, len);
		*pos += before - *len;
		if (m->nlmsg_type < NLMSG_MIN_TYPE ||
		    (m->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK)
			continue;
		return m;
	}
	return NULL;
}

/*
 * Waits until readable: 1; 0 when the deadline passed or the interpreter
 * wants control back (a signal handler installed a hook: Ctrl-C); or
 * -errno.  deadline < 0 waits for ever.  Other signals restart the wait.
 */
static int lct_sub_poll(lua_State *L, struct lct_sub *s, double deadline)
{
	lua_Hook hook = lua_gethook(L);
	struct pollfd p;

	p.fd = mnl_socket_get_fd(s->nl);
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
		if (lua_gethook(L) != hook)
			return 0;
	}
}

/*
 * One event pushed: 1; nothing (deadline passed, or wait == 0 and nothing
 * ready): 0; -errno on a failure.
 */
static int lct_sub_step(lua_State *L, struct lct_sub *s, int wait, double deadline)
{
	for (;;) {
		const struct nlmsghdr *m = lct_take(s->rx, &s->pos, &s->len);

		if (m == NULL && s->blen > s->bpos) {
			int pos = (int)s->bpos, len = (int)(s->blen - s->bpos);

			m = lct_take(s->backlog, &pos, &len);
			s->bpos = m ? (size_t)pos : s->blen;
		}
		if (m != NULL) {
			if (s->kcheck && !lct_kf_match(&s->kf, m))
				continue;
			lct_entry_push(L, m, lct_ev_type(m));
			s->received++;
			return 1;
		}
		if (s->pending_overflow) {
			s->pending_overflow = 0;
			lct_push_overflow(L, s);
			return 1;
		}
		for (;;) {
			ssize_t n = lct_recv_many(s);
			int r;

			if (n >= 0) {
				s->pos = 0;
				s->len = (int)n;
				break;
			}
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				s->overflows++;
				s->pending_overflow = 1;
				lct_sub_drain(s);
				break;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			if (!wait)
				return 0;
			r = lct_sub_poll(L, s, deadline);
			if (r <= 0)
				return r;
		}
	}
}

/* Runs the subscription's predicate on the event at the top; keeps it or pops it. */
static int lct_sub_keep(lua_State *L, struct lct_sub *s)
{
	int keep;

	if (s->filter_ref == LUA_NOREF || lua_istable(L, -1))
		return 1;	/* overflow events always pass */
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->filter_ref);
	lua_pushvalue(L, -2);
	lua_call(L, 1, 1);
	keep = lua_toboolean(L, -1);
	lua_pop(L, keep ? 1 : 2);
	return keep;
}

static double lct_deadline(lua_State *L, int idx, const char *fname)
{
	lua_Number t;

	if (lua_isnoneornil(L, idx))
		return -1;
	t = lua_tonumber(L, idx);
	if (lua_type(L, idx) != LUA_TNUMBER || !(t >= 0))
		return lct_error(L, "%s: bad argument 'timeout' (seconds >= 0 expected)", fname);
	return lct_now() + (t > 1e9 ? 1e9 : t);
}

/* sub:next([timeout]) -> event, or nil when the timeout passed. */
static int lct_sub_next(lua_State *L)
{
	struct lct_sub *s = lct_checksub(L, 1, "next");
	double deadline = lct_deadline(L, 2, "next");
	int r;

	for (;;) {
		r = lct_sub_step(L, s, 1, deadline);
		if (r < 0)
			return lct_pusherr(L, "next", -r);
		if (r == 0) {
			lua_pushnil(L);
			return 1;
		}
		if (lct_sub_keep(L, s))
			return 1;
	}
}

/* sub:read([max]) -> array of what is there now (never blocks). */
static int lct_sub_read(lua_State *L)
{
	struct lct_sub *s = lct_checksub(L, 1, "read");
	lua_Integer max = 0;
	int n = 0, r;

	if (!lua_isnoneornil(L, 2)) {
		lua_Number v = lua_tonumber(L, 2);

		if (lua_type(L, 2) != LUA_TNUMBER || !(v >= 1) || v != floor(v))
			return lct_error(L, "read: bad argument 'max' (positive integer expected)");
		max = v > 1e9 ? 1000000000 : (lua_Integer)v;
	}
	lua_newtable(L);
	while (max == 0 || n < max) {
		r = lct_sub_step(L, s, 0, 0);
		if (r < 0) {
			if (n > 0)
				break;
			return lct_pusherr(L, "read", -r);
		}
		if (r == 0)
			break;
		if (lct_sub_keep(L, s))
			lua_rawseti(L, -2, ++n);
	}
	return 1;
}

/* Waits until readable: true, or false when the timeout passed. */
static int lct_sub_wait(lua_State *L)
{
	struct lct_sub *s = lct_checksub(L, 1, "wait");
	double deadline = lct_deadline(L, 2, "wait");
	int r;

	if (s->len > 0 || s->blen > s->bpos || s->pending_overflow) {
		lua_pushboolean(L, 1);
		return 1;
	}
	r = lct_sub_poll(L, s, deadline);
	if (r < 0)
		return lct_pusherr(L, "wait", -r);
	lua_pushboolean(L, r > 0);
	return 1;
}

static int lct_sub_getfd(lua_State *L)
{
	struct lct_sub *s = lct_checksub(L, 1, "getfd");

	lua_pushinteger(L, mnl_socket_get_fd(s->nl));
	return 1;
}

static int lct_sub_pollfd(lua_State *L)
{
	struct lct_sub *s = lct_checksub(L, 1, "pollfd");

	lua_pushinteger(L, mnl_socket_get_fd(s->nl));
	return 1;
}

static int lct_sub_events(lua_State *L)
{
	lct_checksub(L, 1, "events");
	lua_pushliteral(L, "r");
	return 1;
}

static int lct_sub_timeout(lua_State *L)
{
	lct_checksub(L, 1, "timeout");
	lua_pushnil(L);
	return 1;
}

static void lct_sub_free(lua_State *L, struct lct_sub *s)
{
	if (s->nl != NULL) {
		mnl_socket_close(s->nl);
		s->nl = NULL;
	}
	free(s->backlog);
	s->backlog = NULL;
	s->bcap = s->blen = s->bpos = 0;
	s->len = 0;
	s->pending_overflow = 0;
	if (s->filter_ref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, s->filter_ref);
		s->filter_ref = LUA_NOREF;
	}
}

static int lct_sub_close(lua_State *L)
{
	struct lct_sub *s = luaL_testudata(L, 1, LCT_SUB_MT);

	if (s == NULL)
		return lct_error(L, "close: bad self (conntrack subscription expected, got %s)",
				 luaL_typename(L, 1));
	lct_sub_free(L, s);
	lua_pushboolean(L, 1);
	return 1;
}

static int lct_sub_gc(lua_State *L)
{
	struct lct_sub *s = luaL_testudata(L, 1, LCT_SUB_MT);

	if (s != NULL)
		lct_sub_free(L, s);
	return 0;
}

static int lct_sub_tostring(lua_State *L)
{
	struct lct_sub *s = luaL_checkudata(L, 1, LCT_SUB_MT);

	if (s->nl == NULL)
		lua_pushliteral(L, "conntrack.subscription (closed)");
	else
		lua_pushfstring(L, "conntrack.subscription (fd %d)", mnl_socket_get_fd(s->nl));
	return 1;
}

static const luaL_Reg lct_sub_methods[] = {
	{"next", lct_sub_next},
	{"read", lct_sub_read},
	{"wait", lct_sub_wait},
	{"getfd", lct_sub_getfd},
	{"pollfd", lct_sub_pollfd},
	{"events", lct_sub_events},
	{"timeout", lct_sub_timeout},
	{"close", lct_sub_close},
	{NULL, NULL}
};

static int lct_sub_index(lua_State *L)
{
	struct lct_sub *s = luaL_checkudata(L, 1, LCT_SUB_MT);
	const char *k = lua_tostring(L, 2);

	if (k == NULL || lua_type(L, 2) != LUA_TSTRING) {
		lua_pushnil(L);
		return 1;
	}
	if (strcmp(k, "overflows") == 0)
		lua_pushinteger(L, s->overflows);
	else if (strcmp(k, "received") == 0)
		lua_pushinteger(L, s->received);
	else if (strcmp(k, "lost") == 0)
		lua_pushinteger(L, s->lost);
	else if (strcmp(k, "rcvbuf") == 0)
		lua_pushinteger(L, s->rcvbuf);
	else if (strcmp(k, "kernel_filtered") == 0)
		lua_pushboolean(L, s->filtered);
	else if (strcmp(k, "closed") == 0)
		lua_pushboolean(L, s->nl == NULL);
	else {
		lua_getmetatable(L, 1);
		lua_getfield(L, -1, "methods");
		lua_getfield(L, -1, k);
	}
	return 1;
}

void lct_events_open(lua_State *L)
{
	luaL_newmetatable(L, LCT_SUB_MT);
	lua_pushcfunction(L, lct_sub_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, lct_sub_gc);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, lct_sub_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushcfunction(L, lct_sub_index);
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, LCT_SUB_MT);
	lua_setfield(L, -2, "__name");
	lua_newtable(L);
	luaL_setfuncs(L, lct_sub_methods, 0);
	lua_setfield(L, -2, "methods");
	lua_pop(L, 1);

	lua_pushcfunction(L, lct_subscribe);
	lua_setfield(L, -2, "subscribe");
	lua_getfield(L, -1, "handle_methods");
	lua_pushcfunction(L, lct_h_subscribe);
	lua_setfield(L, -2, "subscribe");
	lua_pop(L, 1);
}
