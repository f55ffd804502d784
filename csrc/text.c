/*
 * The `conntrack -L` text of an entry, written straight from the netlink
 * attributes.  It follows libnetfilter_conntrack's default output field by
 * field (the CLI prints through that library), without building a
 * conntrack object first; spec/42-format_spec.lua holds the two together.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include "lct.h"

struct lct_out {
	char *p, *end;
};

static void lct_put(struct lct_out *o, const char *fmt, ...) LCT_PRINTF(2, 3);

static void lct_put(struct lct_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->p >= o->end)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p, (size_t)(o->end - o->p), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	o->p = n >= o->end - o->p ? o->end : o->p + n;
}

/* Appends n bytes without the cost of a format. */
static void lct_putn(struct lct_out *o, const char *s, size_t n)
{
	if (n > (size_t)(o->end - o->p))
		n = (size_t)(o->end - o->p);
	memcpy(o->p, s, n);
	o->p += n;
}

static void lct_puts(struct lct_out *o, const char *s)
{
	lct_putn(o, s, strlen(s));
}

/* A literal: its length is known at compile time. */
#define LCT_PUTL(o, lit)	lct_putn(o, lit, sizeof(lit) - 1)

/* "%-8s " */
static void lct_pad8(struct lct_out *o, const char *s)
{
	static const char blanks[] = "         ";
	size_t n = strlen(s);

	lct_putn(o, s, n);
	lct_putn(o, blanks, n < 8 ? 9 - n : 1);
}

/* tag, the number in decimal, a blank: written at once. */
static void lct_putun(struct lct_out *o, const char *tag, size_t taglen, unsigned long long v)
{
	char tmp[48], *q = tmp + sizeof(tmp);

	*--q = ' ';
	while (v >= 100) {
		unsigned int r = (unsigned int)(v % 100);

		v /= 100;
		q -= 2;
		memcpy(q, lct_digit_pairs + 2 * r, 2);
	}
	if (v >= 10) {
		q -= 2;
		memcpy(q, lct_digit_pairs + 2 * v, 2);
	} else {
		*--q = (char)('0' + v);
	}
	q -= taglen;
	memcpy(q, tag, taglen);
	lct_putn(o, q, (size_t)(tmp + sizeof(tmp) - q));
}
#define lct_putu(o, tag, v)	lct_putun(o, tag, sizeof(tag) - 1, v)

static unsigned int lct_a8(const struct nlattr *a)
{
	uint8_t v = 0;

	lct_a_u8(a, &v);
	return v;
}

static unsigned int lct_a16(const struct nlattr *a)
{
	uint16_t v = 0;

	lct_a_u16(a, &v);
	return v;
}

static uint32_t lct_a32(const struct nlattr *a)
{
	uint32_t v = 0;

	lct_a_u32(a, &v);
	return v;
}

static unsigned long long lct_a64(const struct nlattr *a)
{
	uint64_t v = 0;

	lct_a_u64(a, &v);
	return v;
}

static void lct_put_addr(struct lct_out *o, int family, const struct lct_dir *d)
{
	static const unsigned char zero[16];
	char tmp[INET6_ADDRSTRLEN];
	size_t need = family == AF_INET ? 4 : 16;
	int w;

	if (family != AF_INET && family != AF_INET6)
		return;
	for (w = 0; w < 2; w++) {
		const struct nlattr *a = family == AF_INET ? (w ? d->dst4 : d->src4) :
					 (w ? d->dst6 : d->src6);

		size_t n = lct_ntop(family, a && lct_a_len(a) >= need ?
				    lct_a_data(a) : zero, tmp);

		lct_putn(o, w ? "dst=" : "src=", 4);
		tmp[n] = ' ';
		lct_putn(o, tmp, n + 1);
	}
}

static void lct_put_l4(struct lct_out *o, const struct lct_dir *d)
{
	switch (lct_a8(d->num)) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
		lct_putu(o, "sport=", lct_a16(d->sport));
		lct_putu(o, "dport=", lct_a16(d->dport));
		break;
	case IPPROTO_GRE:
		lct_put(o, "srckey=0x%x dstkey=0x%x ", lct_a16(d->sport), lct_a16(d->dport));
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		lct_put(o, "type=%d code=%d id=%d ", (int)lct_a8(d->itype),
			(int)lct_a8(d->icode), (int)lct_a16(d->iid));
		break;
	}
}

static void lct_put_ctime(struct lct_out *o, const char *tag, unsigned long long ns)
{
	time_t t = (time_t)(ns / 1000000000ULL);
	char tmp[64];
	size_t n;

	if (ctime_r(&t, tmp) == NULL)
		return;
	n = strlen(tmp);
	if (n > 0 && tmp[n - 1] == '\n')
		tmp[n - 1] = '\0';
	lct_put(o, "[%s=%s] ", tag, tmp);
}

/*
 * Writes the line into buf (NUL-terminated) and returns its length.
 * flags: NFCT_OF_SHOW_LAYER3, NFCT_OF_ID, NFCT_OF_TIMESTAMP.
 */
size_t lct_text(const struct nlmsghdr *nlh, int evtype, unsigned int flags,
		char *buf, size_t len)
{
	const struct nlattr *at[LCT_CTA_MAX + 1];
	const struct nlattr *ts_start, *ts_stop, *helper, *secctx;
	struct lct_dir orig, repl;
	struct lct_pinfo pi;
	struct lct_out o = { buf, buf + len - 1 };
	int family = lct_nl_msgfamily(nlh);
	uint32_t status = 0;

	lct_a_table(nlh, sizeof(struct nfgenmsg), at, LCT_CTA_MAX);
	lct_dir_parse(at[CTA_TUPLE_ORIG], at[CTA_COUNTERS_ORIG], &orig);
	lct_dir_parse(at[CTA_TUPLE_REPLY], at[CTA_COUNTERS_REPLY], &repl);
	lct_pinfo_parse(at[CTA_PROTOINFO], &pi);
	ts_start = lct_a_child(at[CTA_TIMESTAMP], CTA_TIMESTAMP_START);
	ts_stop = lct_a_child(at[CTA_TIMESTAMP], CTA_TIMESTAMP_STOP);
	helper = lct_a_child(at[CTA_HELP], CTA_HELP_NAME);
	secctx = lct_a_child(at[CTA_SECCTX], CTA_SECCTX_NAME);
	status = lct_a32(at[CTA_STATUS]);

	switch (evtype) {
	case 1: LCT_PUTL(&o, "    [NEW] "); break;
	case 2: LCT_PUTL(&o, " [UPDATE] "); break;
	case 3: LCT_PUTL(&o, "[DESTROY] "); break;
	}
	if (flags & NFCT_OF_SHOW_LAYER3) {
		lct_pad8(&o, family == AF_INET ? "ipv4" :
			 family == AF_INET6 ? "ipv6" : "unknown");
		lct_putu(&o, "", (unsigned int)family);
	}
	if (orig.num) {
		const char *pn = lct_proto_name(lct_a8(orig.num));

		lct_pad8(&o, pn ? pn : "unknown");
		lct_putu(&o, "", lct_a8(orig.num));
	}
	if (at[CTA_TIMEOUT])
		lct_putu(&o, "", lct_a32(at[CTA_TIMEOUT]));
	if (pi.has_state) {
		const char *s = lct_state_name((unsigned int)pi.proto, pi.state);

		lct_puts(&o, s ? s : "NONE");
		LCT_PUTL(&o, " ");
	}
	lct_put_addr(&o, family, &orig);
	lct_put_l4(&o, &orig);
	if (orig.zone)
		lct_putu(&o, "zone-orig=", lct_a16(orig.zone));
	if (orig.packets && orig.bytes) {
		lct_putu(&o, "packets=", lct_a64(orig.packets));
		lct_putu(&o, "bytes=", lct_a64(orig.bytes));
	}
	if (at[CTA_STATUS] && !(status & IPS_SEEN_REPLY))
		LCT_PUTL(&o, "[UNREPLIED] ");
	lct_put_addr(&o, family, &repl);
	lct_put_l4(&o, &repl);
	if (repl.zone)
		lct_putu(&o, "zone-reply=", lct_a16(repl.zone));
	if (repl.packets && repl.bytes) {
		lct_putu(&o, "packets=", lct_a64(repl.packets));
		lct_putu(&o, "bytes=", lct_a64(repl.bytes));
	}
	if (at[CTA_STATUS]) {
		if (status & (1u << 15))
			LCT_PUTL(&o, "[HW_OFFLOAD] ");
		else if (status & (1u << 14))
			LCT_PUTL(&o, "[OFFLOAD] ");
		else if (status & IPS_ASSURED)
			LCT_PUTL(&o, "[ASSURED] ");
	}
	if (at[CTA_MARK])
		lct_putu(&o, "mark=", lct_a32(at[CTA_MARK]));
	if (at[CTA_SECMARK])
		lct_putu(&o, "secmark=", lct_a32(at[CTA_SECMARK]));
	if (secctx)
		lct_put(&o, "secctx=%.*s ", (int)strnlen(lct_a_data(secctx),
			lct_a_len(secctx)), (const char *)lct_a_data(secctx));
	if (at[CTA_ZONE])
		lct_putu(&o, "zone=", lct_a16(at[CTA_ZONE]));
	if (ts_start) {
		unsigned long long start = lct_a64(ts_start), stop = lct_a64(ts_stop);
		time_t end = stop == 0 ? time(NULL) : (time_t)(stop / 1000000000ULL);

		lct_putu(&o, "delta-time=", (unsigned long long)(end - (time_t)(start / 1000000000ULL)));
	}
	if (flags & NFCT_OF_TIMESTAMP) {
		if (ts_start)
			lct_put_ctime(&o, "start", lct_a64(ts_start));
		if (ts_stop)
			lct_put_ctime(&o, "stop", lct_a64(ts_stop));
	}
	if (helper)
		lct_put(&o, "helper=%.*s ", (int)strnlen(lct_a_data(helper),
			lct_a_len(helper)), (const char *)lct_a_data(helper));
	if (at[CTA_USE])
		lct_putu(&o, "use=", lct_a32(at[CTA_USE]));
	if ((flags & NFCT_OF_ID) && at[CTA_ID])
		lct_putu(&o, "id=", lct_a32(at[CTA_ID]));
	/* Like the library: drop the last blank. */
	if (o.p > buf && o.p[-1] == ' ')
		o.p--;
	*o.p = '\0';
	return (size_t)(o.p - buf);
}

/*
 * The line of nlh as e:format(opts) writes it, o its LCT_O_* words (of
 * LCT_O_TIMESTAMP only XML's <when>; map: the label names of
 * LCT_O_LABELS, or NULL), into buf, NUL-terminated: its length, or
 * (size_t)-1 out of memory.  The default text is written here, the rest
 * through the library, as the CLI prints it.
 */
size_t lct_text_o(const struct nlmsghdr *nlh, int evtype, unsigned int o,
		  struct nfct_labelmap *map, char *buf, size_t len)
{
	unsigned int type = o & LCT_O_XML ? NFCT_O_XML : NFCT_O_DEFAULT, flags = 0;
	struct nf_conntrack *ct;
	int n;

	if (o & LCT_O_EXTENDED)
		flags |= NFCT_OF_SHOW_LAYER3;
	if (o & LCT_O_ID)
		flags |= NFCT_OF_ID;
	if (o & LCT_O_KTIMESTAMP)
		flags |= NFCT_OF_TIMESTAMP;
	if ((o & LCT_O_TIMESTAMP) && type == NFCT_O_XML)
		flags |= NFCT_OF_TIME;
	if (type == NFCT_O_DEFAULT && map == NULL && !(o & LCT_O_LIBRARY))
		return lct_text(nlh, evtype, flags, buf, len);
	ct = nfct_new();
	if (ct == NULL)
		return (size_t)-1;
	nfct_nlmsg_parse(nlh, ct);
	n = nfct_snprintf_labels(buf, len, ct, lct_nfct_msgtype(evtype), type, flags, map);
	nfct_destroy(ct);
	if (n < 0)
		n = 0;
	if ((size_t)n >= len)
		n = (int)len - 1;
	buf[n] = '\0';
	return (size_t)n;
}

/* ---- output options --------------------------------------------------- */

static const struct {
	const char *word;
	unsigned int bit;
} lct_output_words[] = {
	{"default", 0}, {"extended", LCT_O_EXTENDED}, {"id", LCT_O_ID},
	{"ktimestamp", LCT_O_KTIMESTAMP}, {"labels", LCT_O_LABELS}, {"xml", LCT_O_XML},
	{"timestamp", LCT_O_TIMESTAMP}, {"library", LCT_O_LIBRARY},
};

unsigned int lct_output_opts(lua_State *L, int idx, const char *fname, const char *arg,
			     unsigned int allowed)
{
	const char *o;
	unsigned int bits = 0;

	if (!lua_isnoneornil(L, idx) && lua_type(L, idx) != LUA_TSTRING)
		return (unsigned int)lct_argerror(L, fname, arg, "string expected, got %s",
						  luaL_typename(L, idx));
	o = luaL_optstring(L, idx, "");
	while (*o) {
		size_t n = strcspn(o, ","), i;

		for (i = 0; n > 0 && i < sizeof(lct_output_words) / sizeof(lct_output_words[0]); i++) {
			if (strlen(lct_output_words[i].word) == n &&
			    memcmp(o, lct_output_words[i].word, n) == 0 &&
			    (lct_output_words[i].bit & ~allowed) == 0)
				break;
		}
		if (n > 0 && i == sizeof(lct_output_words) / sizeof(lct_output_words[0])) {
			lua_pushlstring(L, o, n);
			return (unsigned int)lct_argerror(L, fname, arg, "unknown output option %s",
							  lct_shortval(L, -1));
		}
		if (n > 0)
			bits |= lct_output_words[i].bit;
		o += n;
		if (*o == ',')
			o++;
	}
	return bits;
}

void lct_stamp_prefix(lua_State *L, double t, int blanks)
{
	long sec = (long)t;
	long usec = (long)((t - (double)sec) * 1e6 + 0.5);
	char pre[48];
	int k;

	if (usec >= 1000000) {
		sec += 1;
		usec -= 1000000;
	}
	if (blanks)
		k = snprintf(pre, sizeof(pre), "[%-8ld.%-6ld]\t", sec, usec);
	else
		k = snprintf(pre, sizeof(pre), "[%-.8ld.%-.6ld]\t", sec, usec);
	lua_pushlstring(L, pre, (size_t)k);
	lua_insert(L, -2);
	lua_concat(L, 2);
}

unsigned int lct_nfct_msgtype(int evtype)
{
	switch (evtype) {
	case 1: return NFCT_T_NEW;
	case 2: return NFCT_T_UPDATE;
	case 3: return NFCT_T_DESTROY;
	}
	return NFCT_T_UNKNOWN;
}
