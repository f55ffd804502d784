/*
 * ctdel: the floor of the bulk-delete benchmark.  A plain libmnl program
 * that dumps the table and deletes the entries it is told to, batched:
 *
 *   ctdel [PROTO]        PROTO: a protocol number (6, 17, ...); default all
 *
 * The dump runs on one socket; each matching entry's CTA_TUPLE_ORIG nest
 * (and CTA_ZONE) is copied unparsed into an IPCTNL_MSG_CT_DELETE request on
 * a second socket, up to CTD_BATCH requests per sendmsg, only the last of
 * which asks for an ack (NETLINK_CAP_ACK keeps error reports short).  The
 * deletes go out while the dump goes on, as `conntrack -D` and
 * lua-conntrack's delete_where do.
 *
 * Prints "<deleted> <missing> <elapsed_ns>" (missing: ENOENT, the entry went
 * away first), timed with CLOCK_MONOTONIC from opening the sockets to the
 * last ack.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK	270
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK	10
#endif

#define CTD_RXBUF	(64 * 1024)
#define CTD_BATCH	1000		/* requests per sendmsg */
#define CTD_TXBUF	(256 * 1024)
#define CTD_MSGMAX	512

struct ctd_out {
	struct mnl_socket *nl;
	char *buf;
	size_t off;
	uint32_t seq, first;
	int n;
	uint64_t sent, failed, missing;
	char rx[CTD_RXBUF] __attribute__((aligned(8)));
};

static int64_t ctd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void ctd_die(const char *what)
{
	fprintf(stderr, "ctdel: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct mnl_socket *ctd_socket(void)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	int opt;

	if (!nl)
		ctd_die("mnl_socket_open");
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		ctd_die("mnl_socket_bind");
	opt = 8 * 1024 * 1024;
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &opt, sizeof(opt)) < 0)
		setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &opt, sizeof(opt));
	return nl;
}

/* Sends the pending batch and reads its reports up to the final ack. */
static void ctd_flush(struct ctd_out *o)
{
	uint32_t last = o->seq - 1;
	int done = 0;

	if (o->n == 0)
		return;
	if (mnl_socket_sendto(o->nl, o->buf, o->off) < 0)
		ctd_die("sendmsg");
	while (!done) {
		ssize_t ret = mnl_socket_recvfrom(o->nl, o->rx, sizeof(o->rx));
		int len;

		if (ret < 0) {
			if (errno == EINTR)
				continue;
			ctd_die("recv");
		}
		len = (int)ret;
		for (struct nlmsghdr *nlh = (struct nlmsghdr *)o->rx;
		     mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			const struct nlmsgerr *err;

			if (nlh->nlmsg_type != NLMSG_ERROR ||
			    nlh->nlmsg_seq - o->first > last - o->first)
				continue;
			err = mnl_nlmsg_get_payload(nlh);
			if (err->error == -ENOENT)
				o->missing++;
			else if (err->error)
				o->failed++;
			if (nlh->nlmsg_seq == last)
				done = 1;
		}
	}
	o->sent += (uint64_t)o->n;
	o->n = 0;
	o->off = 0;
	o->first = o->seq;
}

/* Queues the delete of the entry in dump message m. */
static void ctd_queue(struct ctd_out *o, const struct nlmsghdr *m)
{
	const struct nfgenmsg *in = mnl_nlmsg_get_payload(m);
	const struct nlattr *a, *tuple = NULL, *zone = NULL;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;

	mnl_attr_for_each(a, m, sizeof(*in)) {
		if (mnl_attr_get_type(a) == CTA_TUPLE_ORIG)
			tuple = a;
		else if (mnl_attr_get_type(a) == CTA_ZONE)
			zone = a;
	}
	if (tuple == NULL)
		return;
	nlh = mnl_nlmsg_put_header(o->buf + o->off);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = o->seq++;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = in->nfgen_family;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	mnl_attr_put(nlh, CTA_TUPLE_ORIG, mnl_attr_get_payload_len(tuple),
		     mnl_attr_get_payload(tuple));
	if (zone != NULL)
		mnl_attr_put(nlh, CTA_ZONE, mnl_attr_get_payload_len(zone),
			     mnl_attr_get_payload(zone));
	o->off += nlh->nlmsg_len;
	o->n++;
	if (o->n == CTD_BATCH || o->off + CTD_MSGMAX > CTD_TXBUF) {
		nlh->nlmsg_flags |= NLM_F_ACK;
		ctd_flush(o);
	}
}

static int ctd_proto(const struct nlmsghdr *m)
{
	const struct nlattr *a, *b, *c;

	mnl_attr_for_each(a, m, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) != CTA_TUPLE_ORIG)
			continue;
		mnl_attr_for_each_nested(b, a) {
			if (mnl_attr_get_type(b) != CTA_TUPLE_PROTO)
				continue;
			mnl_attr_for_each_nested(c, b)
				if (mnl_attr_get_type(c) == CTA_PROTO_NUM)
					return mnl_attr_get_u8(c);
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	static char buf[CTD_RXBUF] __attribute__((aligned(8)));
	static char txbuf[CTD_TXBUF] __attribute__((aligned(8)));
	static struct ctd_out o;
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	unsigned int seq, portid;
	int64_t t0, t1;
	int done = 0, proto = -1, one = 1;
	ssize_t ret;
	int len;

	if (argc > 2 || (argc == 2 && (proto = atoi(argv[1])) <= 0)) {
		fprintf(stderr, "usage: ctdel [PROTONUM]\n");
		return 2;
	}

	t0 = ctd_now();
	nl = ctd_socket();
	portid = mnl_socket_get_portid(nl);
	o.nl = ctd_socket();
	o.buf = txbuf;
	setsockopt(mnl_socket_get_fd(o.nl), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	o.seq = o.first = (uint32_t)time(NULL);

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq = (unsigned int)time(NULL);
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_UNSPEC;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		ctd_die("mnl_socket_sendto");

	while (!done) {
		ret = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			ctd_die("mnl_socket_recvfrom");
		}
		nlh = (struct nlmsghdr *)buf;
		len = (int)ret;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid)
				continue;
			if (nlh->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);

				if (err->error) {
					errno = -err->error;
					ctd_die("dump");
				}
				continue;
			}
			if (nlh->nlmsg_type < NLMSG_MIN_TYPE)
				continue;
			if (proto < 0 || ctd_proto(nlh) == proto)
				ctd_queue(&o, nlh);
		}
	}
	if (o.n > 0) {
		/* The last request of the last batch asks for the ack. */
		struct nlmsghdr *last = (struct nlmsghdr *)o.buf, *m = last;
		size_t off = 0;

		while (off < o.off) {
			last = m;
			off += m->nlmsg_len;
			m = (struct nlmsghdr *)(o.buf + off);
		}
		last->nlmsg_flags |= NLM_F_ACK;
		ctd_flush(&o);
	}
	mnl_socket_close(nl);
	mnl_socket_close(o.nl);
	t1 = ctd_now();

	if (o.failed)
		fprintf(stderr, "ctdel: %llu deletes failed\n", (unsigned long long)o.failed);
	printf("%llu %llu %lld\n", (unsigned long long)(o.sent - o.missing - o.failed),
	       (unsigned long long)o.missing, (long long)(t1 - t0));
	return o.failed ? 1 : 0;
}
