/*
 * Attributes of netlink messages: the integer getters, one nest walker,
 * the top-level index, and the decoders of a flow's direction and of its
 * protocol information.  Every length is checked against its container.
 */
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "lct.h"

int lct_a_u64(const struct nlattr *a, uint64_t *v)
{
	uint64_t x;
	uint32_t y;

	if (a == NULL)
		return 0;
	if (lct_a_len(a) >= 8) {
		memcpy(&x, lct_a_data(a), 8);
		*v = be64toh(x);
		return 1;
	}
	if (lct_a_u32(a, &y)) {
		*v = y;
		return 1;
	}
	return 0;
}

const char *lct_a_str(const struct nlattr *a, size_t *len)
{
	const char *s;

	if (a == NULL || lct_a_len(a) == 0)
		return NULL;
	s = lct_a_data(a);
	*len = strnlen(s, lct_a_len(a));
	return s;
}

/* Calls the walk body for each child of a nest whose length fits. */
#define LCT_EACH_CHILD(a, nest, end)						\
	for (a = (const struct nlattr *)((const char *)(nest) + MNL_ATTR_HDRLEN),	\
	     end = (const char *)(nest) + (nest)->nla_len;				\
	     (const char *)a + sizeof(struct nlattr) <= end &&			\
	     a->nla_len >= sizeof(struct nlattr) && (const char *)a + a->nla_len <= end; \
	     a = (const struct nlattr *)((const char *)a + MNL_ALIGN(a->nla_len)))

const struct nlattr *lct_a_child(const struct nlattr *nest, unsigned int type)
{
	const struct nlattr *a;
	const char *end;

	if (nest == NULL)
		return NULL;
	LCT_EACH_CHILD(a, nest, end)
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a;
	return NULL;
}

/* One walk over the top-level attributes, written out: it runs per message. */
void lct_a_index(const struct nlmsghdr *nlh, size_t hdrlen, uint16_t *off,
		 unsigned int max)
{
	const char *base = (const char *)nlh;
	size_t pos = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(hdrlen);
	size_t end = nlh->nlmsg_len;

	while (pos + sizeof(struct nlattr) <= end) {
		const struct nlattr *a = (const struct nlattr *)(base + pos);
		unsigned int t = a->nla_type & NLA_TYPE_MASK;

		if (a->nla_len < sizeof(struct nlattr) || pos + a->nla_len > end)
			break;
		if (t <= max && off[t] == 0)
			off[t] = (uint16_t)pos;
		pos += MNL_ALIGN(a->nla_len);
	}
}

/* The same walk, into pointers (the first of each type, as lct_a_index). */
void lct_a_table(const struct nlmsghdr *nlh, size_t hdrlen,
		 const struct nlattr **at, unsigned int max)
{
	const char *base = (const char *)nlh;
	size_t pos = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(hdrlen);
	size_t end = nlh->nlmsg_len;

	memset(at, 0, sizeof(at[0]) * (max + 1));
	while (pos + sizeof(struct nlattr) <= end) {
		const struct nlattr *a = (const struct nlattr *)(base + pos);
		unsigned int t = a->nla_type & NLA_TYPE_MASK;

		if (a->nla_len < sizeof(struct nlattr) || pos + a->nla_len > end)
			break;
		if (t <= max && at[t] == NULL)
			at[t] = a;
		pos += MNL_ALIGN(a->nla_len);
	}
}

void lct_dir_parse(const struct nlattr *tuple, const struct nlattr *ctr,
		   struct lct_dir *d)
{
	const struct nlattr *a, *b;
	const char *e1, *e2;

	memset(d, 0, sizeof(*d));
	if (tuple != NULL) {
		LCT_EACH_CHILD(a, tuple, e1) {
			switch (a->nla_type & NLA_TYPE_MASK) {
			case CTA_TUPLE_IP:
				LCT_EACH_CHILD(b, a, e2) {
					switch (b->nla_type & NLA_TYPE_MASK) {
					case CTA_IP_V4_SRC: d->src4 = b; break;
					case CTA_IP_V4_DST: d->dst4 = b; break;
					case CTA_IP_V6_SRC: d->src6 = b; break;
					case CTA_IP_V6_DST: d->dst6 = b; break;
					}
				}
				break;
			case CTA_TUPLE_PROTO:
				LCT_EACH_CHILD(b, a, e2) {
					switch (b->nla_type & NLA_TYPE_MASK) {
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
		LCT_EACH_CHILD(a, ctr, e1) {
			switch (a->nla_type & NLA_TYPE_MASK) {
			case CTA_COUNTERS_PACKETS:
			case CTA_COUNTERS32_PACKETS: d->packets = a; break;
			case CTA_COUNTERS_BYTES:
			case CTA_COUNTERS32_BYTES: d->bytes = a; break;
			}
		}
	}
}

int lct_dir_addr(const struct lct_dir *d, int dst, const uint8_t **a)
{
	const struct nlattr *v4 = dst ? d->dst4 : d->src4;
	const struct nlattr *v6 = dst ? d->dst6 : d->src6;

	if (v4 != NULL && lct_a_len(v4) >= 4) {
		*a = lct_a_data(v4);
		return AF_INET;
	}
	if (v6 != NULL && lct_a_len(v6) >= 16) {
		*a = lct_a_data(v6);
		return AF_INET6;
	}
	return 0;
}

void lct_pinfo_parse(const struct nlattr *pi, struct lct_pinfo *p)
{
	const struct nlattr *n, *a;
	const char *e1, *e2;

	memset(p, 0, sizeof(*p));
	if (pi == NULL)
		return;
	LCT_EACH_CHILD(n, pi, e1) {
		unsigned int t = n->nla_type & NLA_TYPE_MASK;

		if (t == CTA_PROTOINFO_TCP)
			p->proto = IPPROTO_TCP;
		else if (t == CTA_PROTOINFO_SCTP)
			p->proto = IPPROTO_SCTP;
		else if (t == CTA_PROTOINFO_DCCP)
			p->proto = IPPROTO_DCCP;
		else
			continue;
		LCT_EACH_CHILD(a, n, e2) {
			unsigned int c = a->nla_type & NLA_TYPE_MASK;
			size_t len = lct_a_len(a);
			const uint8_t *v = lct_a_data(a);

			if (t == CTA_PROTOINFO_TCP) {
				if (c == CTA_PROTOINFO_TCP_STATE)
					p->has_state = lct_a_u8(a, &p->state);
				else if (c == CTA_PROTOINFO_TCP_WSCALE_ORIGINAL)
					p->has_wscale[0] = lct_a_u8(a, &p->wscale[0]);
				else if (c == CTA_PROTOINFO_TCP_WSCALE_REPLY)
					p->has_wscale[1] = lct_a_u8(a, &p->wscale[1]);
				else if ((c == CTA_PROTOINFO_TCP_FLAGS_ORIGINAL ||
					  c == CTA_PROTOINFO_TCP_FLAGS_REPLY) && len >= 2) {
					int d = c == CTA_PROTOINFO_TCP_FLAGS_REPLY;

					/* struct nf_ct_tcp_flags: flags, mask */
					p->flags[d] = v[0];
					p->fmask[d] = v[1];
					p->has_flags[d] = 1;
				}
			} else if (t == CTA_PROTOINFO_SCTP) {
				if (c == CTA_PROTOINFO_SCTP_STATE)
					p->has_state = lct_a_u8(a, &p->state);
				else if (c == CTA_PROTOINFO_SCTP_VTAG_ORIGINAL)
					p->has_vtag[0] = lct_a_u32(a, &p->vtag[0]);
				else if (c == CTA_PROTOINFO_SCTP_VTAG_REPLY)
					p->has_vtag[1] = lct_a_u32(a, &p->vtag[1]);
			} else {
				if (c == CTA_PROTOINFO_DCCP_STATE)
					p->has_state = lct_a_u8(a, &p->state);
				else if (c == CTA_PROTOINFO_DCCP_ROLE)
					p->has_role = lct_a_u8(a, &p->role);
			}
		}
	}
}
