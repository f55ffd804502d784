/*
 * The `conntrack -L` text of an entry, written straight from the netlink
 * attributes.  It follows libnetfilter_conntrack's default output field by
 * field (the CLI prints through that library), without building a
 * conntrack object first; spec/14-format_spec.lua holds the two together.
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

/* Appends a literal without the cost of a format. */
static void lct_puts(struct lct_out *o, const char *s)
{
	size_t n = strlen(s);

	if (n > (size_t)(o->end - o->p))
		n = (size_t)(o->end - o->p);
	memcpy(o->p, s, n);
	o->p += n;
}

/* "%-8s " */
static void lct_pad8(struct lct_out *o, const char *s)
{
	size_t n = strlen(s);

	lct_puts(o, s);
	for (; n < 8; n++)
		lct_puts(o, " ");
	lct_puts(o, " ");
}

static void lct_putu(struct lct_out *o, const char *tag, unsigned long long v)
{
	char tmp[24], *q = tmp + sizeof(tmp);

	*--q = '\0';
	do {
		*--q = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	lct_puts(o, tag);
	lct_puts(o, q);
	lct_puts(o, " ");
}

void lct_dir_parse(const struct nlattr *tuple, const struct nlattr *ctr,
			  struct lct_dir *d)
{
	const struct nlattr *a, *b;

	memset(d, 0, sizeof(*d));
	if (tuple != NULL) {
		mnl_attr_for_each_nested(a, tuple) {
			switch (mnl_attr_get_type(a)) {
			case CTA_TUPLE_IP:
				mnl_attr_for_each_nested(b, a) {
					switch (mnl_attr_get_type(b)) {
					case CTA_IP_V4_SRC: d->src4 = b; break;
					case CTA_IP_V4_DST: d->dst4 = b; break;
					case CTA_IP_V6_SRC: d->src6 = b; break;
					case CTA_IP_V6_DST: d->dst6 = b; break;
					}
				}
				break;
			case CTA_TUPLE_PROTO:
				mnl_attr_for_each_nested(b, a) {
					switch (mnl_attr_get_type(b)) {
					case CTA_PROTO_NUM: d->num = b; break;
					case CTA_PROTO_SRC_PORT: d->sport = b; break;
					case CTA_PROTO_DST_PORT: d->dport = b; break;
					case CTA_PROTO_ICMP_TYPE:
					case CTA_PROTO_ICMPV6_TYPE: d->itype = b; break;
					case CTA_PROTO_ICMP_CODE:
					case CTA_PROTO_ICMPV6_CODE: d->icode = b; break;
					case CTA_PROTO_ICMP_ID:
					case CTA_PROTO_ICMPV6_ID: d->iid = b; break;
					}
				}
				break;
			case CTA_TUPLE_ZONE:
				d->zone = a;
				break;
			}
		}
	}
	if (ctr != NULL) {
		mnl_attr_for_each_nested(a, ctr) {
			switch (mnl_attr_get_type(a)) {
			case CTA_COUNTERS_PACKETS:
			case CTA_COUNTERS32_PACKETS: d->packets = a; break;
			case CTA_COUNTERS_BYTES:
			case CTA_COUNTERS32_BYTES: d->bytes = a; break;
			}
		}
	}
}

static unsigned int lct_a8(const struct nlattr *a)
{
	return a && mnl_attr_get_payload_len(a) >= 1 ? mnl_attr_get_u8(a) : 0;
}

static unsigned int lct_a16(const struct nlattr *a)
{
	return a && mnl_attr_get_payload_len(a) >= 2 ? ntohs(mnl_attr_get_u16(a)) : 0;
}

static uint32_t lct_a32(const struct nlattr *a)
{
	return a && mnl_attr_get_payload_len(a) >= 4 ? ntohl(mnl_attr_get_u32(a)) : 0;
}

static unsigned long long lct_a64(const struct nlattr *a)
{
	uint64_t v;

	if (a == NULL)
		return 0;
	if (mnl_attr_get_payload_len(a) >= 8) {
		memcpy(&v, mnl_attr_get_payload(a), 8);
		return be64toh(v);
	}
	return lct_a32(a);
}

static void lct_put_addr(struct lct_out *o, int family, const struct lct_dir *d)
{
	char tmp[INET6_ADDRSTRLEN];
	unsigned char zero[16] = { 0 };

	if (family == AF_INET) {
		lct_ntop(AF_INET, d->src4 && mnl_attr_get_payload_len(d->src4) >= 4 ?
			  mnl_attr_get_payload(d->src4) : zero, tmp);
		lct_puts(o, "src=");
		lct_puts(o, tmp);
		lct_ntop(AF_INET, d->dst4 && mnl_attr_get_payload_len(d->dst4) >= 4 ?
			  mnl_attr_get_payload(d->dst4) : zero, tmp);
		lct_puts(o, " dst=");
		lct_puts(o, tmp);
		lct_puts(o, " ");
	} else if (family == AF_INET6) {
		lct_ntop(AF_INET6, d->src6 && mnl_attr_get_payload_len(d->src6) >= 16 ?
			  mnl_attr_get_payload(d->src6) : zero, tmp);
		lct_puts(o, "src=");
		lct_puts(o, tmp);
		lct_ntop(AF_INET6, d->dst6 && mnl_attr_get_payload_len(d->dst6) >= 16 ?
			  mnl_attr_get_payload(d->dst6) : zero, tmp);
		lct_puts(o, " dst=");
		lct_puts(o, tmp);
		lct_puts(o, " ");
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
size_t lct_format(const struct nlmsghdr *nlh, int evtype, unsigned int flags,
		  char *buf, size_t len)
{
	const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a, *at[CTA_MAX + 1];
	const struct nlattr *tcp = NULL, *sctp = NULL, *dccp = NULL;
	const struct nlattr *ts_start = NULL, *ts_stop = NULL, *helper = NULL, *secctx = NULL;
	struct lct_dir orig, repl;
	struct lct_out o = { buf, buf + len - 1 };
	int family = nfg->nfgen_family;
	uint32_t status = 0;

	memset(at, 0, sizeof(at));
	mnl_attr_for_each(a, nlh, sizeof(*nfg)) {
		unsigned int t = mnl_attr_get_type(a);

		if (t <= CTA_MAX && at[t] == NULL)
			at[t] = a;
	}
	lct_dir_parse(at[CTA_TUPLE_ORIG], at[CTA_COUNTERS_ORIG], &orig);
	lct_dir_parse(at[CTA_TUPLE_REPLY], at[CTA_COUNTERS_REPLY], &repl);
	if (at[CTA_PROTOINFO]) {
		const struct nlattr *b;

		mnl_attr_for_each_nested(a, at[CTA_PROTOINFO]) {
			unsigned int t = mnl_attr_get_type(a);

			if (t != CTA_PROTOINFO_TCP && t != CTA_PROTOINFO_SCTP &&
			    t != CTA_PROTOINFO_DCCP)
				continue;
			mnl_attr_for_each_nested(b, a) {
				if (t == CTA_PROTOINFO_TCP &&
				    mnl_attr_get_type(b) == CTA_PROTOINFO_TCP_STATE)
					tcp = b;
				else if (t == CTA_PROTOINFO_SCTP &&
					 mnl_attr_get_type(b) == CTA_PROTOINFO_SCTP_STATE)
					sctp = b;
				else if (t == CTA_PROTOINFO_DCCP &&
					 mnl_attr_get_type(b) == CTA_PROTOINFO_DCCP_STATE)
					dccp = b;
			}
		}
	}
	if (at[CTA_TIMESTAMP]) {
		mnl_attr_for_each_nested(a, at[CTA_TIMESTAMP]) {
			if (mnl_attr_get_type(a) == CTA_TIMESTAMP_START)
				ts_start = a;
			else if (mnl_attr_get_type(a) == CTA_TIMESTAMP_STOP)
				ts_stop = a;
		}
	}
	if (at[CTA_HELP])
		mnl_attr_for_each_nested(a, at[CTA_HELP])
			if (mnl_attr_get_type(a) == CTA_HELP_NAME)
				helper = a;
	if (at[CTA_SECCTX])
		mnl_attr_for_each_nested(a, at[CTA_SECCTX])
			if (mnl_attr_get_type(a) == CTA_SECCTX_NAME)
				secctx = a;
	status = lct_a32(at[CTA_STATUS]);

	switch (evtype) {
	case 1: lct_puts(&o, "    [NEW] "); break;
	case 2: lct_puts(&o, " [UPDATE] "); break;
	case 3: lct_puts(&o, "[DESTROY] "); break;
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
	if (tcp) {
		const char *s = lct_state_name(IPPROTO_TCP, lct_a8(tcp));
		lct_puts(&o, s ? s : "NONE");
		lct_puts(&o, " ");
	}
	if (sctp) {
		const char *s = lct_state_name(IPPROTO_SCTP, lct_a8(sctp));
		lct_puts(&o, s ? s : "NONE");
		lct_puts(&o, " ");
	}
	if (dccp) {
		const char *s = lct_state_name(IPPROTO_DCCP, lct_a8(dccp));
		lct_puts(&o, s ? s : "NONE");
		lct_puts(&o, " ");
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
		lct_puts(&o, "[UNREPLIED] ");
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
			lct_puts(&o, "[HW_OFFLOAD] ");
		else if (status & (1u << 14))
			lct_puts(&o, "[OFFLOAD] ");
		else if (status & IPS_ASSURED)
			lct_puts(&o, "[ASSURED] ");
	}
	if (at[CTA_MARK])
		lct_putu(&o, "mark=", lct_a32(at[CTA_MARK]));
	if (at[CTA_SECMARK])
		lct_putu(&o, "secmark=", lct_a32(at[CTA_SECMARK]));
	if (secctx)
		lct_put(&o, "secctx=%.*s ", (int)strnlen(mnl_attr_get_payload(secctx),
			mnl_attr_get_payload_len(secctx)), (const char *)mnl_attr_get_payload(secctx));
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
		lct_put(&o, "helper=%.*s ", (int)strnlen(mnl_attr_get_payload(helper),
			mnl_attr_get_payload_len(helper)), (const char *)mnl_attr_get_payload(helper));
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
