/*
 * Handles: a ctnetlink socket (optionally in another network namespace)
 * and the single-request operations: get, create, add, update, delete,
 * flush, count, max and stats.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "lct.h"

/* A handle carries its buffers inline: nothing to free but the socket. */
struct lct_handle_ud {
	struct lct_handle h;
	char rx[LCT_RXBUF];
	char tx[LCT_TXBUF];
};

/*
 * Raises a programmer error at the first frame outside this module (its
 * Lua front calls the C functions on behalf of the script).
 */
int lct_error(lua_State *L, const char *fmt, ...)
{
	lua_Debug ar;
	va_list ap;
	int level;

	for (level = 1; lua_getstack(L, level, &ar); level++) {
		if (!lua_getinfo(L, "Sl", &ar))
			break;
		if (ar.currentline <= 0)
			continue;
		if (strstr(ar.source, "/conntrack.lua") != NULL ||
		    strstr(ar.source, "/conntrack/") != NULL)
			continue;
		lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
		break;
	}
	if (lua_getstack(L, level, &ar) == 0)
		lua_pushliteral(L, "");
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_concat(L, 2);
	return lua_error(L);
}

int lct_pusherr(lua_State *L, const char *op, int err)
{
	lua_pushnil(L);
	if (err == EPERM || err == EACCES)
		lua_pushfstring(L, "%s: %s (CAP_NET_ADMIN is required)", op,
				strerror(err));
	else
		lua_pushfstring(L, "%s: %s", op, strerror(err));
	lua_pushinteger(L, err);
	return 3;
}

struct lct_handle *lct_checkhandle(lua_State *L, int idx, const char *fname)
{
	struct lct_handle_ud *u = luaL_testudata(L, idx, LCT_HANDLE_MT);

	if (u == NULL)
		lct_error(L, "%s: bad self (conntrack handle expected, got %s)",
			   fname, luaL_typename(L, idx));
	if (u->h.nl == NULL)
		lct_error(L, "%s: attempt to use a closed handle", fname);
	return &u->h;
}

/*
 * Opens the namespace given as a name under /run/netns or as a path.
 * Returns the descriptor, or pushes nil, msg, errno and returns -1.
 */
int lct_nsfd_open(lua_State *L, int idx, const char *fname)
{
	const char *ns;
	int fd;

	if (lua_type(L, idx) != LUA_TSTRING)
		return lct_error(L, "%s: bad argument 'netns' (string expected, got %s)",
				  fname, luaL_typename(L, idx));
	ns = lua_tostring(L, idx);
	if (*ns == '\0')
		return lct_error(L, "%s: bad argument 'netns' (empty name)", fname);
	if (strchr(ns, '/') != NULL) {
		lua_pushstring(L, ns);
	} else {
		if (strcmp(ns, ".") == 0 || strcmp(ns, "..") == 0)
			return lct_error(L, "%s: bad argument 'netns' (invalid name)", fname);
		lua_pushfstring(L, "/run/netns/%s", ns);
	}
	fd = open(lua_tostring(L, -1), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		lua_pop(L, 1);
		lua_pushnil(L);
		lua_pushfstring(L, "%s: netns '%s': %s", fname, ns, strerror(err));
		lua_pushinteger(L, err);
		return -1;
	}
	lua_pop(L, 1);
	return fd;
}

/*
 * A ctnetlink socket, created inside namespace nsfd when nsfd >= 0: the
 * thread enters the namespace only for the socket() call and returns at
 * once, since a socket stays in the namespace it was made in.
 * Returns NULL with *err set on failure.
 */
struct mnl_socket *lct_socket_open(lua_State *L, int nsfd, int groups,
				   const char *fname, int *err)
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
		if (setns(self, CLONE_NEWNET) < 0) {
			/* Never leave the thread in the wrong namespace. */
			close(self);
			if (nl != NULL)
				mnl_socket_close(nl);
			lct_error(L, "%s: cannot return to the original network namespace: %s",
				   fname, strerror(errno));
			return NULL;
		}
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

/*
 * Sets the receive buffer, forcing past rmem_max when privileged.
 * Returns the size obtained (what the kernel reports), or -1.
 */
int lct_set_rcvbuf(struct mnl_socket *nl, int bytes)
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

static void lct_handle_free(struct lct_handle *h)
{
	free(h->batch);
	h->batch = NULL;
	h->batch_ready = 0;
	if (h->nl != NULL) {
		mnl_socket_close(h->nl);
		h->nl = NULL;
	}
	if (h->nsfd >= 0) {
		close(h->nsfd);
		h->nsfd = -1;
	}
}

static const char *const lct_open_keys[] = { "netns", "rcvbuf", NULL };
static const char *const lct_flush_keys[] = {
	"family", "mark", "mark_mask", "zone", "status", "status_mask", NULL
};

/* Unknown option names are mistakes: raise rather than ignore them. */
void lct_check_opts(lua_State *L, int t, const char *fname,
		    const char *const *keys)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int i, ok = 0;

		for (i = 0; k != NULL && keys[i] != NULL; i++)
			ok |= strcmp(k, keys[i]) == 0;
		if (!ok)
			lct_error(L, "%s: bad argument '%s' (unknown option)", fname,
				  k ? k : luaL_typename(L, -2));
		lua_pop(L, 1);
	}
}

static int lct_open(lua_State *L)
{
	struct lct_handle_ud *u;
	int nsfd = -1, rcvbuf = 0, err;

	if (!lua_isnoneornil(L, 1)) {
		if (!lua_istable(L, 1))
			return lct_error(L, "open: bad argument 'opts' (table expected, got %s)",
					  luaL_typename(L, 1));
		lct_check_opts(L, 1, "open", lct_open_keys);
		lua_getfield(L, 1, "rcvbuf");
		if (!lua_isnil(L, -1)) {
			lua_Number v = lua_tonumber(L, -1);

			if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 1 && v <= (1 << 30)))
				return lct_error(L, "open: bad argument 'rcvbuf' (positive size in bytes expected)");
			rcvbuf = (int)lua_tointeger(L, -1);
		}
		lua_pop(L, 1);
		lua_getfield(L, 1, "netns");
		if (!lua_isnil(L, -1)) {
			nsfd = lct_nsfd_open(L, -1, "open");
			if (nsfd < 0)
				return 3;
		}
		lua_pop(L, 1);
	}
	u = lct_newuserdata(L, sizeof(*u));
	u->h.nl = NULL;
	u->h.nsfd = nsfd;
	u->h.rx = u->rx;
	u->h.tx = u->tx;
	u->h.seq = 0;
	u->h.batch = NULL;
	u->h.batch_ready = 0;
	luaL_setmetatable(L, LCT_HANDLE_MT);
	/* From here on __gc owns nsfd. */
	u->h.nl = lct_socket_open(L, nsfd, 0, "open", &err);
	if (u->h.nl == NULL) {
		lct_handle_free(&u->h);
		return lct_pusherr(L, "open", err);
	}
	u->h.portid = mnl_socket_get_portid(u->h.nl);
	if (rcvbuf > 0)
		lct_set_rcvbuf(u->h.nl, rcvbuf);
	return 1;
}

static int lct_h_close(lua_State *L)
{
	struct lct_handle_ud *u = luaL_testudata(L, 1, LCT_HANDLE_MT);

	if (u == NULL)
		return lct_error(L, "close: bad self (conntrack handle expected, got %s)",
				  luaL_typename(L, 1));
	lct_handle_free(&u->h);
	lua_pushboolean(L, 1);
	return 1;
}

static int lct_h_gc(lua_State *L)
{
	struct lct_handle_ud *u = luaL_testudata(L, 1, LCT_HANDLE_MT);

	if (u != NULL)
		lct_handle_free(&u->h);
	return 0;
}

static int lct_h_tostring(lua_State *L)
{
	struct lct_handle_ud *u = luaL_checkudata(L, 1, LCT_HANDLE_MT);

	if (u->h.nl == NULL)
		lua_pushliteral(L, "conntrack.handle (closed)");
	else
		lua_pushfstring(L, "conntrack.handle (%p)", (void *)u);
	return 1;
}

static int lct_h_getfd(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "getfd");

	lua_pushinteger(L, mnl_socket_get_fd(h->nl));
	return 1;
}

static struct nlmsghdr *lct_req(struct lct_handle *h, uint8_t type,
				uint16_t flags, uint8_t family)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(h->tx);
	struct nfgenmsg *nfg;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	if (++h->seq == 0)
		h->seq = 1;
	nlh->nlmsg_seq = h->seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	return nlh;
}

typedef void (*lct_msg_fn)(lua_State *L, const struct nlmsghdr *nlh, void *ud);

/*
 * Sends nlh and reads the answer up to its ack, NLMSG_DONE or error.
 * Data messages go to fn, outside any libmnl callback, so fn may use the
 * Lua API: the buffers belong to the handle, a Lua error leaks nothing,
 * and stale replies of an interrupted exchange are skipped by sequence.
 * Returns 0 or an errno value.
 */
static int lct_transact(lua_State *L, struct lct_handle *h,
			struct nlmsghdr *nlh, lct_msg_fn fn, void *ud)
{
	uint32_t seq = nlh->nlmsg_seq;

	if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0)
		return errno;
	for (;;) {
		const struct nlmsghdr *m;
		ssize_t n;
		int len;

		n = mnl_socket_recvfrom(h->nl, h->rx, LCT_RXBUF);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		len = (int)n;
		for (m = (const struct nlmsghdr *)h->rx; mnl_nlmsg_ok(m, len);
		     m = mnl_nlmsg_next(m, &len)) {
			if (m->nlmsg_seq != seq)
				continue;
			if (m->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);

				if (m->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
					return EBADMSG;
				return -e->error;
			}
			if (m->nlmsg_type == NLMSG_DONE) {
				if (mnl_nlmsg_get_payload_len(m) >= sizeof(int)) {
					int e = *(const int *)mnl_nlmsg_get_payload(m);
					return e < 0 ? -e : 0;
				}
				return 0;
			}
			if (m->nlmsg_type < NLMSG_MIN_TYPE)
				continue;
			if (fn != NULL)
				fn(L, m, ud);
		}
	}
}

/* The whole flow from a one-entry reply; counts replies in *ud. */
static void lct_get_cb(lua_State *L, const struct nlmsghdr *nlh, void *ud)
{
	int *got = ud;

	if (*got == 0)
		lct_entry_push(L, nlh, 0);
	(*got)++;
}

/* Builds from argument idx and returns the box-owned conntrack object. */
/*
 * Appends what b holds to the request nlh, and sets its family.  Returns 0,
 * or the errno of a conntrack object the library cannot write.
 */
int lct_put_ct(struct nlmsghdr *nlh, const struct lct_build *b)
{
	struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);

	nfg->nfgen_family = b->family;
	if (nfct_nlmsg_build(nlh, b->ct) < 0)
		return errno;
	if (b->has_mark_mask)
		mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(b->mark_mask));
	if (b->has_labels) {
		/* The library only writes labels with a full-width mask. */
		mnl_attr_put(nlh, CTA_LABELS, sizeof(b->labels), b->labels);
		mnl_attr_put(nlh, CTA_LABELS_MASK, sizeof(b->labels_mask),
			     b->labels_mask);
	}
	return 0;
}

static int lct_h_get(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "get");
	struct lct_build b = { NULL, NULL, 0, 0, 0, {0}, {0}, 0 };
	struct nlmsghdr *nlh;
	int got = 0, err;

	lct_build(L, 2, LCT_B_TUPLE, "get", &b);
	nlh = lct_req(h, IPCTNL_MSG_CT_GET, NLM_F_ACK, b.family);
	err = lct_put_ct(nlh, &b);
	if (err != 0)
		return lct_error(L, "conntrack: cannot build request: %s", strerror(err));
	err = lct_transact(L, h, nlh, lct_get_cb, &got);
	if (err != 0)
		return lct_pusherr(L, "get", err);
	if (got == 0)
		return lct_pusherr(L, "get", ENOENT);
	return 1;
}

static int lct_change(lua_State *L, const char *op, uint8_t type,
		      uint16_t flags, enum lct_build_kind kind)
{
	struct lct_handle *h = lct_checkhandle(L, 1, op);
	struct lct_build b = { NULL, NULL, 0, 0, 0, {0}, {0}, 0 };
	struct nlmsghdr *nlh;
	int err;

	if (kind == LCT_B_CHANGES) {
		/* update(tuple, changes): the tuple first, then the changes. */
		if (lua_gettop(L) < 3)
			return lct_error(L, "%s: bad argument 'changes' (table expected, got no value)", op);
		lua_settop(L, 3);
		lct_build(L, 2, LCT_B_TUPLE, op, &b);
		lct_build_changes(L, 3, op, &b);
	} else {
		lct_build(L, 2, kind, op, &b);
	}
	nlh = lct_req(h, type, NLM_F_ACK | flags, b.family);
	err = lct_put_ct(nlh, &b);
	if (err != 0)
		return lct_error(L, "conntrack: cannot build request: %s", strerror(err));
	err = lct_transact(L, h, nlh, NULL, NULL);
	if (err != 0)
		return lct_pusherr(L, op, err);
	lua_pushboolean(L, 1);
	return 1;
}

static int lct_h_create(lua_State *L)
{
	return lct_change(L, "create", IPCTNL_MSG_CT_NEW,
			  NLM_F_CREATE | NLM_F_EXCL, LCT_B_SPEC);
}

static int lct_h_add(lua_State *L)
{
	return lct_change(L, "add", IPCTNL_MSG_CT_NEW, NLM_F_CREATE, LCT_B_SPEC);
}

static int lct_h_update(lua_State *L)
{
	return lct_change(L, "update", IPCTNL_MSG_CT_NEW, 0, LCT_B_CHANGES);
}

static int lct_h_delete(lua_State *L)
{
	return lct_change(L, "delete", IPCTNL_MSG_CT_DELETE, 0, LCT_B_TUPLE);
}

/*
 * flush([opts]): the whole table, or what matches opts (family, mark and
 * mark_mask, status and status_mask, zone), filtered by the kernel.
 */
static int lct_h_flush(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "flush");
	struct nlmsghdr *nlh;
	uint8_t family = AF_UNSPEC;
	int err, has_mark = 0, has_status = 0, has_zone = 0;
	uint32_t mark = 0, mask = 0xffffffffu, status = 0, smask = 0, zone = 0;

	if (!lua_isnoneornil(L, 2)) {
		if (!lua_istable(L, 2))
			return lct_error(L, "flush: bad argument 'opts' (table expected, got %s)",
					 luaL_typename(L, 2));
		lct_check_opts(L, 2, "flush", lct_flush_keys);
		lua_getfield(L, 2, "family");
		if (!lua_isnil(L, -1))
			family = lct_family_arg(L, -1, "flush", "family");
		lua_pop(L, 1);
		has_mark = lct_u32_field(L, 2, "flush", "mark", &mark);
		if (lct_u32_field(L, 2, "flush", "mark_mask", &mask) && !has_mark)
			return lct_error(L, "flush: bad argument 'mark_mask' (needs 'mark')");
		lua_getfield(L, 2, "status");
		if (!lua_isnil(L, -1)) {
			status = smask = lct_status_arg(L, -1, "flush", "status");
			has_status = 1;
		}
		lua_pop(L, 1);
		lua_getfield(L, 2, "status_mask");
		if (!lua_isnil(L, -1)) {
			if (!has_status)
				return lct_error(L, "flush: bad argument 'status_mask' (needs 'status')");
			smask = lct_status_arg(L, -1, "flush", "status_mask");
		}
		lua_pop(L, 1);
		has_zone = lct_u32_field(L, 2, "flush", "zone", &zone);
		if (has_zone && zone > 65535)
			return lct_error(L, "flush: bad argument 'zone' (integer 0..65535 expected)");
		if (has_zone && zone == 0)
			return lct_error(L, "flush: bad argument 'zone' (the kernel reads zone 0 as any zone; "
					 "use delete_where to remove zone 0 alone)");
	}
	nlh = lct_req(h, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, family);
	/* The kernel honours the family of a flush only from version 1 on. */
	if (family != AF_UNSPEC)
		((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->version = 1;
	if (has_mark) {
		mnl_attr_put_u32(nlh, CTA_MARK, htonl(mark & mask));
		mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(mask));
	}
	if (has_status) {
		mnl_attr_put_u32(nlh, CTA_STATUS, htonl(status & smask));
		mnl_attr_put_u32(nlh, CTA_STATUS_MASK, htonl(smask));
	}
	if (has_zone)
		mnl_attr_put_u16(nlh, CTA_ZONE, htons((uint16_t)zone));
	err = lct_transact(L, h, nlh, NULL, NULL);
	if (err != 0)
		return lct_pusherr(L, "flush", err);
	lua_pushboolean(L, 1);
	return 1;
}

struct lct_global {
	int64_t entries, max;
};

static int lct_global_attr(const struct nlattr *a, void *data)
{
	struct lct_global *g = data;

	if (mnl_attr_get_payload_len(a) < sizeof(uint32_t))
		return MNL_CB_OK;
	if (mnl_attr_get_type(a) == CTA_STATS_GLOBAL_ENTRIES)
		g->entries = ntohl(mnl_attr_get_u32(a));
	else if (mnl_attr_get_type(a) == CTA_STATS_GLOBAL_MAX_ENTRIES)
		g->max = ntohl(mnl_attr_get_u32(a));
	return MNL_CB_OK;
}

static void lct_global_cb(lua_State *L, const struct nlmsghdr *nlh, void *ud)
{
	(void)L;
	mnl_attr_parse(nlh, sizeof(struct nfgenmsg), lct_global_attr, ud);
}

static int lct_global(lua_State *L, const char *op, struct lct_global *g)
{
	struct lct_handle *h = lct_checkhandle(L, 1, op);
	struct nlmsghdr *nlh;

	g->entries = g->max = -1;
	nlh = lct_req(h, IPCTNL_MSG_CT_GET_STATS, NLM_F_ACK, AF_UNSPEC);
	return lct_transact(L, h, nlh, lct_global_cb, g);
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

/* Per-CPU counters, in the kernel's attribute order; NULL = not sent. */
static const char *const lct_stat_names[] = {
	[CTA_STATS_SEARCHED] = "searched",
	[CTA_STATS_FOUND] = "found",
	[CTA_STATS_NEW] = "new",
	[CTA_STATS_INVALID] = "invalid",
	[CTA_STATS_IGNORE] = "ignore",
	[CTA_STATS_DELETE] = "delete",
	[CTA_STATS_DELETE_LIST] = "delete_list",
	[CTA_STATS_INSERT] = "insert",
	[CTA_STATS_INSERT_FAILED] = "insert_failed",
	[CTA_STATS_DROP] = "drop",
	[CTA_STATS_EARLY_DROP] = "early_drop",
	[CTA_STATS_ERROR] = "error",
	[CTA_STATS_SEARCH_RESTART] = "search_restart",
	[CTA_STATS_CLASH_RESOLVE] = "clash_resolve",
	[CTA_STATS_CHAIN_TOOLONG] = "chaintoolong",
};
#define LCT_NSTATS	64

struct lct_stats {
	int ncpu;
	uint64_t total[LCT_NSTATS];
	unsigned char seen[LCT_NSTATS];
};

/* Pushes {cpu = n, name = value...} into the array at the stack top. */
static void lct_stats_cb(lua_State *L, const struct nlmsghdr *nlh, void *ud)
{
	struct lct_stats *s = ud;
	const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;

	lua_createtable(L, 0, 12);
	lua_pushinteger(L, ntohs(nfg->res_id));
	lua_setfield(L, -2, "cpu");
	mnl_attr_for_each(a, nlh, sizeof(*nfg)) {
		unsigned int t = mnl_attr_get_type(a);
		uint32_t v;

		if (mnl_attr_get_payload_len(a) != sizeof(uint32_t))
			continue;
		v = ntohl(mnl_attr_get_u32(a));
		if (t < sizeof(lct_stat_names) / sizeof(lct_stat_names[0]) &&
		    lct_stat_names[t] != NULL)
			lua_pushstring(L, lct_stat_names[t]);
		else
			lua_pushfstring(L, "stat_%d", (int)t);
		lua_pushinteger(L, v);
		lua_rawset(L, -3);
		if (t < LCT_NSTATS) {
			s->total[t] += v;
			s->seen[t] = 1;
		}
	}
	lua_rawseti(L, -2, ++s->ncpu);
}

static int lct_h_stats(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "stats");
	struct nlmsghdr *nlh;
	struct lct_stats s;
	unsigned int t;
	int err;

	memset(&s, 0, sizeof(s));
	lua_newtable(L);
	nlh = lct_req(h, IPCTNL_MSG_CT_GET_STATS_CPU, NLM_F_DUMP, AF_UNSPEC);
	err = lct_transact(L, h, nlh, lct_stats_cb, &s);
	if (err != 0)
		return lct_pusherr(L, "stats", err);
	lua_newtable(L);
	for (t = 0; t < LCT_NSTATS; t++) {
		if (!s.seen[t])
			continue;
		if (t < sizeof(lct_stat_names) / sizeof(lct_stat_names[0]) &&
		    lct_stat_names[t] != NULL)
			lua_pushstring(L, lct_stat_names[t]);
		else
			lua_pushfstring(L, "stat_%d", (int)t);
		lct_pushu64(L, s.total[t]);
		lua_rawset(L, -3);
	}
	lua_setfield(L, -2, "total");
	return 1;
}

static const luaL_Reg lct_handle_methods[] = {
	{"close", lct_h_close},
	{"getfd", lct_h_getfd},
	{"dump", lct_h_dump},
	{"list", lct_h_list},
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
	{"__close", lct_h_gc},
	{"__tostring", lct_h_tostring},
	{NULL, NULL}
};

/* Registers the handle class; leaves the method table in module.handle. */
void lct_handle_open(lua_State *L)
{
	luaL_newmetatable(L, LCT_HANDLE_MT);
	luaL_setfuncs(L, lct_handle_meta, 0);
	lua_newtable(L);
	luaL_setfuncs(L, lct_handle_methods, 0);
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "__index");
	lua_setfield(L, -3, "handle_methods");
	lua_pushliteral(L, LCT_HANDLE_MT);
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
	lua_pushcfunction(L, lct_open);
	lua_setfield(L, -2, "open");
}
