/*
 * Dumps: a streaming iterator over the table.  Each dump has its own
 * socket, so requests made on the handle inside the loop do not mix with
 * the dump, and a dump left early (break, error, collection) closes it.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <arpa/inet.h>

#include "lct.h"

/*
 * Exact tuple values the kernel compares (CTA_FILTER, Linux >= 5.8): the
 * protocol, addresses and ports of either direction.  Each entry is checked
 * again here, so a kernel that ignores CTA_FILTER changes nothing but speed.
 */
struct lct_tfilter {
	int proto;			/* -1: any */
	int sport[2], dport[2];		/* [orig, reply]; -1: any */
	int af[2][2];			/* [dir][src, dst]: 0 any, else the family */
	unsigned char addr[2][2][16];
};

struct lct_dump_opts {
	uint8_t family;
	int has_mark, has_status, has_tuple;
	uint32_t mark, mark_mask, status, status_mask;
	int zone;
	struct lct_tfilter tf;
};

struct lct_dump {
	struct mnl_socket *nl;	/* NULL once finished or closed */
	uint32_t seq;
	int pos, len;		/* unread messages in rx */
	int interrupted;	/* the kernel flagged NLM_F_DUMP_INTR */
	int zone;		/* zone to keep, -1 for all (see lct_dump_keep) */
	int count;
	int has_tuple;
	int again;		/* a tuple filter without family: IPv6 after IPv4 */
	struct lct_tfilter tf;
	char req[512];		/* the request, resent for the second family */
	char rx[LCT_RXBUF];
};

static void lct_dump_end(struct lct_dump *d)
{
	if (d->nl != NULL) {
		mnl_socket_close(d->nl);
		d->nl = NULL;
	}
}

static void lct_taddr(lua_State *L, int t, const char *fname, const char *k,
		      struct lct_dump_opts *o, int dir, int which)
{
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	o->tf.af[dir][which] = lct_addr_arg(L, -1, fname, k, o->tf.addr[dir][which]);
	if (o->family && o->family != o->tf.af[dir][which])
		lct_error(L, "%s: bad argument '%s' (IPv4 and IPv6 mixed)", fname, k);
	o->family = (uint8_t)o->tf.af[dir][which];
	o->has_tuple = 1;
	lua_pop(L, 1);
}

static int lct_tport(lua_State *L, int t, const char *fname, const char *k,
		     struct lct_dump_opts *o)
{
	lua_Number v;

	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return -1;
	}
	v = lua_tonumber(L, -1);
	if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0 && v <= 65535) || v != floor(v))
		lct_error(L, "%s: bad argument '%s' (port 0..65535 expected)", fname, k);
	if (o->tf.proto != IPPROTO_TCP && o->tf.proto != IPPROTO_UDP &&
	    o->tf.proto != IPPROTO_UDPLITE && o->tf.proto != IPPROTO_SCTP &&
	    o->tf.proto != IPPROTO_DCCP)
		lct_error(L, "%s: bad argument '%s' (needs 'proto': tcp, udp, udplite, sctp or dccp)",
			  fname, k);
	lua_pop(L, 1);
	o->has_tuple = 1;
	return (int)v;
}

/* proto, src, dst, sport, dport and their reply_ forms: a tuple filter. */
static void lct_tuple_parse(lua_State *L, int t, const char *fname,
			    struct lct_dump_opts *o)
{
	o->tf.proto = -1;
	lua_getfield(L, t, "proto");
	if (!lua_isnil(L, -1))
		o->tf.proto = lct_proto_arg(L, -1, fname);
	lua_pop(L, 1);
	if (o->tf.proto >= 0)
		o->has_tuple = 1;
	lct_taddr(L, t, fname, "src", o, 0, 0);
	lct_taddr(L, t, fname, "dst", o, 0, 1);
	lct_taddr(L, t, fname, "reply_src", o, 1, 0);
	lct_taddr(L, t, fname, "reply_dst", o, 1, 1);
	o->tf.sport[0] = lct_tport(L, t, fname, "sport", o);
	o->tf.dport[0] = lct_tport(L, t, fname, "dport", o);
	o->tf.sport[1] = lct_tport(L, t, fname, "reply_sport", o);
	o->tf.dport[1] = lct_tport(L, t, fname, "reply_dport", o);
	if (o->tf.proto == IPPROTO_ICMP && o->family == AF_INET6)
		lct_error(L, "%s: bad argument 'proto' (icmp with IPv6 addresses: icmpv6?)", fname);
}

/*
 * The CTA_FILTER part of a dump request.  IPv6 addresses stay out of it:
 * the kernels tried (up to 6.18) select nothing for them, whatever the
 * address; lct_dump_keep compares them instead.
 */
static void lct_tuple_put(struct nlmsghdr *nlh, const struct lct_tfilter *tf)
{
	uint32_t flags[2] = { 0, 0 };
	int dir;

	for (dir = 0; dir < 2; dir++) {
		struct nlattr *nest, *n2;
		int w, v4 = tf->af[dir][0] == AF_INET || tf->af[dir][1] == AF_INET;

		if (tf->proto < 0 && !v4)
			continue;
		nest = mnl_attr_nest_start(nlh, dir ? CTA_TUPLE_REPLY : CTA_TUPLE_ORIG);
		if (v4) {
			n2 = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
			for (w = 0; w < 2; w++) {
				if (tf->af[dir][w] != AF_INET)
					continue;
				mnl_attr_put(nlh, w ? CTA_IP_V4_DST : CTA_IP_V4_SRC, 4,
					     tf->addr[dir][w]);
				flags[dir] |= 1u << w;	/* IP_SRC, IP_DST */
			}
			mnl_attr_nest_end(nlh, n2);
		}
		if (tf->proto >= 0) {
			n2 = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
			mnl_attr_put_u8(nlh, CTA_PROTO_NUM, (uint8_t)tf->proto);
			flags[dir] |= 1u << 3;		/* PROTO_NUM */
			if (tf->sport[dir] >= 0) {
				mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons((uint16_t)tf->sport[dir]));
				flags[dir] |= 1u << 4;	/* PROTO_SRC_PORT */
			}
			if (tf->dport[dir] >= 0) {
				mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons((uint16_t)tf->dport[dir]));
				flags[dir] |= 1u << 5;	/* PROTO_DST_PORT */
			}
			mnl_attr_nest_end(nlh, n2);
		}
		mnl_attr_nest_end(nlh, nest);
	}
	{
		struct nlattr *f = mnl_attr_nest_start(nlh, CTA_FILTER);

		mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS, flags[0]);
		mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, flags[1]);
		mnl_attr_nest_end(nlh, f);
	}
}

/* The tuple filter, on one direction of a message. */
static int lct_tuple_ok(const struct lct_tfilter *tf, int dir, const struct lct_dir *d)
{
	const struct nlattr *a;
	int w;

	if (tf->proto >= 0 &&
	    (d->num == NULL || mnl_attr_get_payload_len(d->num) < 1 ||
	     mnl_attr_get_u8(d->num) != tf->proto))
		return 0;
	for (w = 0; w < 2; w++) {
		size_t n = tf->af[dir][w] == AF_INET ? 4 : 16;

		if (!tf->af[dir][w])
			continue;
		if (tf->af[dir][w] == AF_INET)
			a = w ? d->dst4 : d->src4;
		else
			a = w ? d->dst6 : d->src6;
		if (a == NULL || mnl_attr_get_payload_len(a) < n ||
		    memcmp(mnl_attr_get_payload(a), tf->addr[dir][w], n) != 0)
			return 0;
	}
	if (tf->sport[dir] >= 0 &&
	    (d->sport == NULL || mnl_attr_get_payload_len(d->sport) < 2 ||
	     ntohs(mnl_attr_get_u16(d->sport)) != tf->sport[dir]))
		return 0;
	if (tf->dport[dir] >= 0 &&
	    (d->dport == NULL || mnl_attr_get_payload_len(d->dport) < 2 ||
	     ntohs(mnl_attr_get_u16(d->dport)) != tf->dport[dir]))
		return 0;
	return 1;
}

static const char *const lct_dump_keys[] = {
	"family", "mark", "mark_mask", "zone", "status", "status_mask", "proto",
	"src", "dst", "sport", "dport", "reply_src", "reply_dst", "reply_sport",
	"reply_dport", NULL
};

static void lct_dump_parse(lua_State *L, int t, const char *fname, struct lct_dump_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->zone = -1;
	o->mark_mask = o->status_mask = 0xffffffffu;
	if (lua_isnoneornil(L, t))
		return;
	if (!lua_istable(L, t))
		lct_error(L, "%s: bad argument 'opts' (table expected, got %s)", fname,
			   luaL_typename(L, t));
	lct_check_opts(L, t, fname, lct_dump_keys);
	lua_getfield(L, t, "family");
	if (!lua_isnil(L, -1))
		o->family = lct_family_arg(L, -1, fname, "family");
	lua_pop(L, 1);
	o->has_mark = lct_u32_field(L, t, fname, "mark", &o->mark);
	if (lct_u32_field(L, t, fname, "mark_mask", &o->mark_mask) && !o->has_mark)
		lct_error(L, "%s: bad argument 'mark_mask' (needs 'mark')", fname);
	lua_getfield(L, t, "zone");
	if (!lua_isnil(L, -1)) {
		lua_Number v = lua_tonumber(L, -1);

		if (lua_type(L, -1) != LUA_TNUMBER || v < 0 || v > 65535 || v != floor(v))
			lct_error(L, "%s: bad argument 'zone' (integer 0..65535 expected)", fname);
		o->zone = (int)v;
	}
	lua_pop(L, 1);
	lua_getfield(L, t, "status");
	if (!lua_isnil(L, -1)) {
		o->status = lct_status_arg(L, -1, fname, "status");
		o->has_status = 1;
		o->status_mask = o->status;
	}
	lua_pop(L, 1);
	lua_getfield(L, t, "status_mask");
	if (!lua_isnil(L, -1)) {
		if (!o->has_status)
			lct_error(L, "%s: bad argument 'status_mask' (needs 'status')", fname);
		o->status_mask = lct_status_arg(L, -1, fname, "status_mask");
	}
	lua_pop(L, 1);
	o->status &= o->status_mask;
	o->mark &= o->mark_mask;
	lct_tuple_parse(L, t, fname, o);
}

/*
 * Starts a dump on a fresh socket in the handle's namespace; pushes the
 * state userdata.  Returns 0 or an errno value (then nothing is pushed).
 */
static int lct_dump_start(lua_State *L, struct lct_handle *h,
			  const struct lct_dump_opts *o)
{
	struct lct_dump *d;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfg;
	int err;

	d = lct_newuserdata(L, sizeof(*d));
	d->nl = NULL;
	d->pos = d->len = 0;
	d->interrupted = 0;
	d->count = 0;
	d->zone = o->zone;
	d->has_tuple = o->has_tuple;
	d->tf = o->tf;
	/* The kernel takes a tuple filter only with a family: do both. */
	d->again = o->has_tuple && o->family == AF_UNSPEC;
	luaL_setmetatable(L, LCT_DUMP_MT);
	d->nl = lct_socket_open(L, h->nsfd, 0, "dump", &err);
	if (d->nl == NULL) {
		lua_pop(L, 1);
		return err;
	}
	nlh = mnl_nlmsg_put_header(d->req);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = d->seq = ++h->seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = d->again ? AF_INET : o->family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	if (o->has_tuple)
		lct_tuple_put(nlh, &o->tf);
	if (o->has_mark) {
		mnl_attr_put_u32(nlh, CTA_MARK, htonl(o->mark));
		mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(o->mark_mask));
	}
	if (o->has_status) {
		mnl_attr_put_u32(nlh, CTA_STATUS, htonl(o->status));
		mnl_attr_put_u32(nlh, CTA_STATUS_MASK, htonl(o->status_mask));
	}
	/* The kernel filters by zone, but reads zone 0 as "any zone". */
	if (o->zone > 0)
		mnl_attr_put_u16(nlh, CTA_ZONE, htons((uint16_t)o->zone));
	if (mnl_socket_sendto(d->nl, nlh, nlh->nlmsg_len) < 0) {
		err = errno;
		lct_dump_end(d);
		lua_pop(L, 1);
		return err;
	}
	return 0;
}

static int lct_dump_keep(const struct lct_dump *d, const struct nlmsghdr *m)
{
	const struct nlattr *a, *orig = NULL, *reply = NULL;
	int zone = 0;

	if (d->zone < 0 && !d->has_tuple)
		return 1;
	mnl_attr_for_each(a, m, sizeof(struct nfgenmsg)) {
		switch (mnl_attr_get_type(a)) {
		case CTA_ZONE:
			if (mnl_attr_get_payload_len(a) >= 2)
				zone = ntohs(mnl_attr_get_u16(a));
			break;
		case CTA_TUPLE_ORIG:
			orig = a;
			break;
		case CTA_TUPLE_REPLY:
			reply = a;
			break;
		}
	}
	if (d->zone >= 0 && zone != d->zone)
		return 0;
	if (d->has_tuple) {
		struct lct_dir od, rd;

		lct_dir_parse(orig, NULL, &od);
		lct_dir_parse(reply, NULL, &rd);
		if (!lct_tuple_ok(&d->tf, 0, &od) || !lct_tuple_ok(&d->tf, 1, &rd))
			return 0;
	}
	return 1;
}

/* The same request again for IPv6, on the same socket. */
static int lct_dump_again(struct lct_dump *d)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)d->req;
	struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);

	d->again = 0;
	nfg->nfgen_family = AF_INET6;
	nlh->nlmsg_seq = ++d->seq;
	if (mnl_socket_sendto(d->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	return 0;
}

/*
 * The next entry pushed on the stack: returns 1, 0 at the end, or -errno
 * on a failure (the dump is then closed).
 */
static int lct_dump_msg(struct lct_dump *d, const struct nlmsghdr **out)
{
	for (;;) {
		while (d->len > 0) {
			const struct nlmsghdr *m = (const struct nlmsghdr *)(d->rx + d->pos);
			int before = d->len;

			if (!mnl_nlmsg_ok(m, d->len)) {
				d->len = 0;
				break;
			}
			mnl_nlmsg_next(m, &d->len);
			d->pos += before - d->len;
			if (m->nlmsg_seq != d->seq)
				continue;
			if (m->nlmsg_flags & NLM_F_DUMP_INTR)
				d->interrupted = 1;
			if (m->nlmsg_type == NLMSG_DONE) {
				int e = 0;

				if (mnl_nlmsg_get_payload_len(m) >= sizeof(int))
					e = *(const int *)mnl_nlmsg_get_payload(m);
				if (e >= 0 && d->again) {
					e = lct_dump_again(d);
					if (e == 0) {
						d->len = 0;
						break;
					}
				}
				lct_dump_end(d);
				return e < 0 ? e : 0;
			}
			if (m->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);

				lct_dump_end(d);
				return e->error < 0 ? e->error : 0;
			}
			if (m->nlmsg_type < NLMSG_MIN_TYPE || !lct_dump_keep(d, m))
				continue;
			d->count++;
			*out = m;
			return 1;
		}
		if (d->nl == NULL)
			return 0;
		for (;;) {
			ssize_t n = mnl_socket_recvfrom(d->nl, d->rx, LCT_RXBUF);

			if (n >= 0) {
				d->pos = 0;
				d->len = (int)n;
				break;
			}
			if (errno == EINTR)
				continue;
			n = errno;
			lct_dump_end(d);
			return -(int)n;
		}
	}
}

static const char lct_dump_key = 'd';

/* The next message of the dump (1), the end (0) or -errno. */
int lct_dump_next_msg(void *d, const struct nlmsghdr **m)
{
	return lct_dump_msg(d, m);
}

static int lct_dump_step(lua_State *L, struct lct_dump *d)
{
	const struct nlmsghdr *m;
	int r = lct_dump_msg(d, &m);

	if (r == 1)
		lct_entry_push(L, m, 0);
	return r;
}

/*
 * Parses dump options at idx and starts a dump; pushes its state and
 * returns it, or pushes nothing and returns NULL with *err set.
 */
void *lct_dump_begin(lua_State *L, struct lct_handle *h, int idx,
		     const char *fname, int *err)
{
	struct lct_dump_opts o;

	lct_dump_parse(L, idx, fname, &o);
	*err = lct_dump_start(L, h, &o);
	return *err ? NULL : lua_touserdata(L, -1);
}

/* The iterator function of a generic for: next(state) -> entry | nil. */
static int lct_dump_next(lua_State *L)
{
	struct lct_dump *d = lua_touserdata(L, 1);

	/* Called once per entry: check the state by pointer, not by name. */
	if (d == NULL || !lua_getmetatable(L, 1))
		d = luaL_checkudata(L, 1, LCT_DUMP_MT);
	else {
		lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_dump_key);
		if (!lua_rawequal(L, -1, -2))
			d = luaL_checkudata(L, 1, LCT_DUMP_MT);
		lua_pop(L, 2);
	}
	int r;

	if (d->nl == NULL && d->len == 0)
		return 0;
	r = lct_dump_step(L, d);
	if (r < 0)
		return lct_error(L, "dump: %s%s", strerror(-r),
				 -r == EPERM ? " (CAP_NET_ADMIN is required)" : "");
	if (r == 0) {
		lua_pushnil(L);
		return 1;
	}
	return 1;
}

static int lct_dump_close(lua_State *L)
{
	struct lct_dump *d = luaL_checkudata(L, 1, LCT_DUMP_MT);

	lct_dump_end(d);
	d->len = 0;
	return 0;
}

static int lct_dump_index(lua_State *L)
{
	struct lct_dump *d = luaL_checkudata(L, 1, LCT_DUMP_MT);
	const char *k = luaL_checkstring(L, 2);

	if (strcmp(k, "interrupted") == 0)
		lua_pushboolean(L, d->interrupted);
	else if (strcmp(k, "count") == 0)
		lua_pushinteger(L, d->count);
	else if (strcmp(k, "closed") == 0)
		lua_pushboolean(L, d->nl == NULL);
	else if (strcmp(k, "close") == 0)
		lua_pushcfunction(L, lct_dump_close);
	else
		lua_pushnil(L);
	return 1;
}

int lct_h_dump(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "dump");
	struct lct_dump_opts o;
	int err;

	lct_dump_parse(L, 2, "dump", &o);
	err = lct_dump_start(L, h, &o);
	if (err != 0)
		return lct_error(L, "dump: %s%s", strerror(err),
				  err == EPERM ? " (CAP_NET_ADMIN is required)" : "");
	lua_pushcfunction(L, lct_dump_next);
	lua_insert(L, -2);
	lua_pushnil(L);
	lua_pushvalue(L, -2);	/* the closing value (Lua 5.4) */
	return 4;
}

/* All of a dump in an array; a dump the kernel flags as interrupted is redone. */
int lct_h_list(lua_State *L)
{
	struct lct_handle *h = lct_checkhandle(L, 1, "list");
	struct lct_dump_opts o;
	int tries, err, r;

	lct_dump_parse(L, 2, "list", &o);
	for (tries = 0; tries < 3; tries++) {
		struct lct_dump *d;
		int n = 0;

		lua_newtable(L);
		err = lct_dump_start(L, h, &o);
		if (err != 0)
			return lct_pusherr(L, "list", err);
		d = lua_touserdata(L, -1);
		while ((r = lct_dump_step(L, d)) == 1)
			lua_rawseti(L, -3, ++n);
		if (r < 0)
			return lct_pusherr(L, "list", -r);
		lua_pop(L, 1);
		if (!d->interrupted)
			return 1;
		lua_pop(L, 1);
	}
	return lct_pusherr(L, "list", EINTR);
}

void lct_dump_open(lua_State *L)
{
	luaL_newmetatable(L, LCT_DUMP_MT);
	lua_pushvalue(L, -1);
	lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_dump_key);
	lua_pushcfunction(L, lct_dump_close);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, lct_dump_close);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, lct_dump_index);
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, LCT_DUMP_MT);
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}
