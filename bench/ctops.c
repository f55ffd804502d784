/*
 * ctops: the C reference of the single-operation benchmark (bench/ops.lua).
 * Plain libmnl, one request at a time, each acknowledged (NLM_F_ACK) and
 * its answer read with mnl_cb_run before the next is sent, as a C program
 * that creates, reads, changes or deletes one flow at a time does.
 *
 *   ctops N
 *
 * Four phases over flows 0..N-1 (the tuples of bench/ctfill: IPv4 TCP from
 * 192.0.2.0/24 or 198.51.100.0/24 to 203.0.113.0/24, source port from the
 * index): create each (ESTABLISHED, SEEN_REPLY|ASSURED, timeout 3600), get
 * each, update each (mark = its index), delete each.  The table must not
 * hold these flows before.  Prints "<N> <create_ns> <get_ns> <update_ns>
 * <delete_ns>", each phase timed alone (CLOCK_MONOTONIC).  Any refusal, or
 * a get that brings no entry, ends it with an error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>

enum { OP_CREATE, OP_GET, OP_UPDATE, OP_DELETE, OP_N };

static const char *const op_names[OP_N] = { "create", "get", "update", "delete" };

static int64_t cto_now(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void cto_die(const char *what, uint64_t i)
{
	fprintf(stderr, "ctops: %s of flow %llu: %s\n", what, (unsigned long long)i,
		strerror(errno));
	exit(1);
}

/* The flow of index i, as bench/ctfill makes it (tcp). */
static void cto_flow(uint64_t i, uint32_t *src, uint32_t *dst, uint16_t *sport,
		     uint16_t *dport)
{
	static const uint16_t ports[] = { 80, 443, 22, 8080, 25, 993 };
	uint32_t s = (uint32_t)(i % 512);

	*src = s < 256 ? (0xc0000200u | s) : (0xc6336400u | (s - 256));
	*dst = 0xcb007100u | (uint32_t)((i / 512) % 256);
	*sport = (uint16_t)(1024 + (i / (512 * 256)) % 64512);
	*dport = ports[(i / 7) % (sizeof(ports) / sizeof(ports[0]))];
}

static void cto_tuple(struct nlmsghdr *nlh, uint16_t type, uint32_t src, uint32_t dst,
		      uint16_t sport, uint16_t dport)
{
	struct nlattr *tuple, *nest;

	tuple = mnl_attr_nest_start(nlh, type);
	nest = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, htonl(src));
	mnl_attr_put_u32(nlh, CTA_IP_V4_DST, htonl(dst));
	mnl_attr_nest_end(nlh, nest);
	nest = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_TCP);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(sport));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(dport));
	mnl_attr_nest_end(nlh, nest);
	mnl_attr_nest_end(nlh, tuple);
}

static struct nlmsghdr *cto_request(char *buf, int op, uint64_t i, uint32_t seq)
{
	static const uint8_t types[OP_N] = {
		IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE
	};
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfh;
	uint32_t src, dst;
	uint16_t sport, dport;

	cto_flow(i, &src, &dst, &sport, &dport);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | types[op];
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	if (op == OP_CREATE)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_INET;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	cto_tuple(nlh, CTA_TUPLE_ORIG, src, dst, sport, dport);
	if (op == OP_CREATE) {
		struct nlattr *pi, *tcp;

		cto_tuple(nlh, CTA_TUPLE_REPLY, dst, src, dport, sport);
		mnl_attr_put_u32(nlh, CTA_STATUS,
				 htonl(IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED));
		mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(3600));
		pi = mnl_attr_nest_start(nlh, CTA_PROTOINFO);
		tcp = mnl_attr_nest_start(nlh, CTA_PROTOINFO_TCP);
		mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
		mnl_attr_nest_end(nlh, tcp);
		mnl_attr_nest_end(nlh, pi);
	} else if (op == OP_UPDATE) {
		mnl_attr_put_u32(nlh, CTA_MARK, htonl((uint32_t)i));
	}
	return nlh;
}

static int cto_data(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(*(int *)data)++;
	return MNL_CB_OK;
}

/* One request, its answer read to the ack. */
static void cto_one(struct mnl_socket *nl, char *buf, size_t size, int op, uint64_t i,
		    uint32_t seq, unsigned int portid)
{
	struct nlmsghdr *nlh = cto_request(buf, op, i, seq);
	int got = 0, ret;
	ssize_t n;

	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		cto_die(op_names[op], i);
	do {
		n = mnl_socket_recvfrom(nl, buf, size);
		if (n < 0)
			cto_die(op_names[op], i);
		ret = mnl_cb_run(buf, (size_t)n, seq, portid, cto_data, &got);
	} while (ret > MNL_CB_STOP);
	if (ret < 0)
		cto_die(op_names[op], i);
	if (op == OP_GET && got != 1) {
		errno = ENOENT;
		cto_die("get", i);
	}
}

int main(int argc, char **argv)
{
	static char buf[64 * 1024] __attribute__((aligned(8)));
	struct mnl_socket *nl;
	unsigned int portid;
	int64_t ns[OP_N], cpu[OP_N];
	uint32_t seq = (uint32_t)time(NULL);
	uint64_t n, i;
	char *end;
	int op;

	if (argc != 2 || (n = strtoull(argv[1], &end, 10)) == 0 || *end ||
	    n > 512ULL * 256 * 64512) {
		fprintf(stderr, "usage: ctops N\n");
		return 2;
	}
	nl = mnl_socket_open(NETLINK_NETFILTER);
	if (nl == NULL || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		cto_die("socket", 0);
	portid = mnl_socket_get_portid(nl);
	for (op = 0; op < OP_N; op++) {
		int64_t t0 = cto_now(CLOCK_MONOTONIC), c0 = cto_now(CLOCK_PROCESS_CPUTIME_ID);

		for (i = 0; i < n; i++)
			cto_one(nl, buf, sizeof(buf), op, i, ++seq, portid);
		ns[op] = cto_now(CLOCK_MONOTONIC) - t0;
		cpu[op] = cto_now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	}
	mnl_socket_close(nl);
	printf("%llu", (unsigned long long)n);
	for (op = 0; op < OP_N; op++)
		printf(" %lld %lld", (long long)ns[op], (long long)cpu[op]);
	printf("\n");
	return 0;
}
