/*
 * ctfill: fill the conntrack table fast with distinct synthetic entries.
 *
 *   ctfill [-s START] N [tcp|udp|mix]
 *
 * Entry i (START <= i < START+N) is IPv4 from 192.0.2.0/24 or
 * 198.51.100.0/24 to 203.0.113.0/24 with the source address, destination
 * address and source port all derived from i, so the tuples never clash.
 * "mix" (the default) makes every fourth entry udp and the rest tcp.  tcp
 * entries are ESTABLISHED; all have status SEEN_REPLY|ASSURED and a 3600 s
 * timeout so nothing expires during a benchmark.
 *
 * Messages are packed into large buffers, one sendmsg each.  Only the last
 * message of a batch asks for an ack; the kernel reports any other failure
 * on its own.  ctnetlink handles the whole batch inside sendmsg, so when it
 * returns every report is already queued and can be drained without
 * blocking.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK	270
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK	10
#endif

#define CTF_BATCH	(256 * 1024)
#define CTF_MSGMAX	512		/* generous bound on one message */
#define CTF_RCVBUF	(16 * 1024 * 1024)
#define CTF_TIMEOUT	3600
#define CTF_SPACE	(512ULL * 256 * 64512)	/* distinct tuples on offer */
#define CTF_NERR	8

enum ctf_mode { CTF_MIX, CTF_TCP, CTF_UDP };

struct ctf_errs {
	uint64_t total;
	int nkinds;
	int code[CTF_NERR];
	uint64_t count[CTF_NERR];
};

static void ctf_die(const char *what)
{
	fprintf(stderr, "ctfill: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double ctf_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ctf_err_add(struct ctf_errs *e, int code)
{
	int i;

	e->total++;
	for (i = 0; i < e->nkinds; i++) {
		if (e->code[i] == code) {
			e->count[i]++;
			return;
		}
	}
	if (e->nkinds < CTF_NERR) {
		e->code[e->nkinds] = code;
		e->count[e->nkinds++] = 1;
	}
}

static void ctf_put_tuple(struct nlmsghdr *nlh, uint16_t type, uint32_t src,
			  uint32_t dst, uint8_t proto, uint16_t sport,
			  uint16_t dport)
{
	struct nlattr *tuple, *nest;

	tuple = mnl_attr_nest_start(nlh, type);
	nest = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, src);
	mnl_attr_put_u32(nlh, CTA_IP_V4_DST, dst);
	mnl_attr_nest_end(nlh, nest);
	nest = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, proto);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(sport));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(dport));
	mnl_attr_nest_end(nlh, nest);
	mnl_attr_nest_end(nlh, tuple);
}

/* Append the CT_NEW message for entry i at buf; returns its length. */
static uint32_t ctf_put_entry(char *buf, uint64_t i, enum ctf_mode mode,
			      uint32_t seq, int ack)
{
	static const uint16_t tcp_ports[] = { 80, 443, 22, 8080, 25, 993 };
	static const uint16_t udp_ports[] = { 53, 123, 443, 5353 };
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	struct nlattr *nest, *tcp;
	uint32_t s = (uint32_t)(i % 512), src, dst;
	uint16_t sport, dport;
	int is_udp;

	if (mode == CTF_MIX)
		is_udp = i % 4 == 3;
	else
		is_udp = mode == CTF_UDP;
	src = s < 256 ? (0xc0000200u | s) : (0xc6336400u | (s - 256));
	dst = 0xcb007100u | (uint32_t)((i / 512) % 256);
	sport = (uint16_t)(1024 + (i / (512 * 256)) % 64512);
	if (is_udp)
		dport = udp_ports[(i / 7) % (sizeof(udp_ports) / sizeof(udp_ports[0]))];
	else
		dport = tcp_ports[(i / 7) % (sizeof(tcp_ports) / sizeof(tcp_ports[0]))];

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
	if (ack)
		nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_INET;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;

	ctf_put_tuple(nlh, CTA_TUPLE_ORIG, htonl(src), htonl(dst),
		      is_udp ? IPPROTO_UDP : IPPROTO_TCP, sport, dport);
	ctf_put_tuple(nlh, CTA_TUPLE_REPLY, htonl(dst), htonl(src),
		      is_udp ? IPPROTO_UDP : IPPROTO_TCP, dport, sport);
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(CTF_TIMEOUT));
	/* CONFIRMED as conntrack -I sends it: the kernel refuses to clear it. */
	mnl_attr_put_u32(nlh, CTA_STATUS,
			 htonl(IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED));
	if (!is_udp) {
		nest = mnl_attr_nest_start(nlh, CTA_PROTOINFO);
		tcp = mnl_attr_nest_start(nlh, CTA_PROTOINFO_TCP);
		mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_STATE,
				TCP_CONNTRACK_ESTABLISHED);
		mnl_attr_nest_end(nlh, tcp);
		mnl_attr_nest_end(nlh, nest);
	}
	return nlh->nlmsg_len;
}

/*
 * Read every report queued for the batch [first, last].  Returns 1 when the
 * last message's answer was seen, 0 when reports were lost to an overrun.
 */
static int ctf_drain(struct mnl_socket *nl, char *buf, size_t bufsz,
		     uint32_t first, uint32_t last, struct ctf_errs *errs)
{
	int seen_last = 0, overrun = 0;
	ssize_t ret;
	int len;

	for (;;) {
		ret = recv(mnl_socket_get_fd(nl), buf, bufsz, MSG_DONTWAIT);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == ENOBUFS) {
				overrun = 1;
				continue;
			}
			ctf_die("recv");
		}
		len = (int)ret;
		for (struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
		     mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			const struct nlmsgerr *err;

			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (nlh->nlmsg_seq - first > last - first)
				continue;	/* not ours */
			err = mnl_nlmsg_get_payload(nlh);
			if (err->error)
				ctf_err_add(errs, -err->error);
			if (nlh->nlmsg_seq == last)
				seen_last = 1;
		}
	}
	if (!seen_last && !overrun) {
		fprintf(stderr, "ctfill: batch ended without its ack\n");
		exit(1);
	}
	return !overrun;
}

static void ctf_usage(void)
{
	fprintf(stderr, "usage: ctfill [-s START] N [tcp|udp|mix]\n");
	exit(2);
}

static uint64_t ctf_number(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		ctf_usage();
	return v;
}

int main(int argc, char **argv)
{
	static char batch[CTF_BATCH] __attribute__((aligned(8)));
	static char rbuf[64 * 1024] __attribute__((aligned(8)));
	struct ctf_errs errs = { 0 };
	enum ctf_mode mode = CTF_MIX;
	struct mnl_socket *nl;
	uint64_t start = 0, n, i, sent = 0;
	uint32_t seq, first;
	size_t batchsz = CTF_BATCH, off;
	socklen_t optlen;
	int fd, opt, lost = 0;
	double t0;

	while ((opt = getopt(argc, argv, "s:")) != -1) {
		if (opt != 's')
			ctf_usage();
		start = ctf_number(optarg);
	}
	if (optind >= argc || argc - optind > 2)
		ctf_usage();
	n = ctf_number(argv[optind]);
	if (argc - optind == 2) {
		const char *p = argv[optind + 1];

		if (!strcmp(p, "tcp"))
			mode = CTF_TCP;
		else if (!strcmp(p, "udp"))
			mode = CTF_UDP;
		else if (strcmp(p, "mix"))
			ctf_usage();
	}
	if (start > CTF_SPACE || n > CTF_SPACE - start) {
		fprintf(stderr, "ctfill: at most %llu distinct entries\n",
			CTF_SPACE);
		return 2;
	}

	nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		ctf_die("mnl_socket_open");
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		ctf_die("mnl_socket_bind");
	fd = mnl_socket_get_fd(nl);

	/*
	 * A batch must fit the send buffer whole, and the error reports of a
	 * batch that fails throughout must fit the receive buffer.  The
	 * FORCE variants need CAP_NET_ADMIN, which ctnetlink wants anyway;
	 * fall back to the plain ones (capped by net.core.*mem_max).
	 */
	opt = 2 * CTF_BATCH;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &opt, sizeof(opt)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt, sizeof(opt));
	opt = CTF_RCVBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &opt, sizeof(opt)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt, sizeof(opt));
	opt = 1;
	/* Error reports need not echo the whole request back. */
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &opt, sizeof(opt));
	optlen = sizeof(opt);
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt, &optlen) == 0 &&
	    (size_t)opt / 2 < batchsz)
		batchsz = (size_t)opt / 2;
	if (batchsz < 2 * CTF_MSGMAX)
		batchsz = 2 * CTF_MSGMAX;

	t0 = ctf_now();
	seq = (uint32_t)time(NULL);
	for (i = start; i < start + n; ) {
		first = seq;
		off = 0;
		while (i < start + n && off + CTF_MSGMAX <= batchsz) {
			int last = i + 1 == start + n ||
				   off + 2 * CTF_MSGMAX > batchsz;

			off += ctf_put_entry(batch + off, i, mode, seq, last);
			i++;
			seq++;
		}
		if (mnl_socket_sendto(nl, batch, off) < 0)
			ctf_die("sendmsg");
		sent += seq - first;
		if (!ctf_drain(nl, rbuf, sizeof(rbuf), first, seq - 1, &errs))
			lost = 1;
	}
	mnl_socket_close(nl);

	printf("ctfill: created %llu of %llu in %.2f s, errors %llu",
	       (unsigned long long)(sent - errs.total), (unsigned long long)n,
	       ctf_now() - t0, (unsigned long long)errs.total);
	for (int k = 0; k < errs.nkinds; k++)
		printf("%s%s %llu", k ? ", " : " (", strerror(errs.code[k]),
		       (unsigned long long)errs.count[k]);
	printf("%s\n", errs.nkinds ? ")" : "");
	if (lost)
		printf("ctfill: some error reports were lost (receive buffer overrun); check with conntrack -C\n");
	return errs.total || lost ? 1 : 0;
}
