/*
 * ctdump: the floor of the dump benchmark.  One IPCTNL_MSG_CT_GET dump
 * (NLM_F_DUMP, AF_UNSPEC) over plain libmnl; messages are only counted,
 * never parsed, so nothing a binding does can be cheaper than this.
 *
 * Prints "<entries> <elapsed_ns>": the time runs from opening the socket
 * to NLMSG_DONE, measured with CLOCK_MONOTONIC inside the process.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* The kernel hands out at most 32 KiB per dump skb; twice that is ample. */
#define CTD_BUFSZ	(64 * 1024)

static int64_t ctd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void ctd_die(const char *what)
{
	fprintf(stderr, "ctdump: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	static char buf[CTD_BUFSZ] __attribute__((aligned(8)));
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	unsigned int seq, portid;
	uint64_t count = 0;
	int64_t t0, t1;
	int done = 0, intr = 0;
	ssize_t ret;
	int len;

	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: ctdump\n");
		return 2;
	}

	t0 = ctd_now();
	nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		ctd_die("mnl_socket_open");
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		ctd_die("mnl_socket_bind");
	portid = mnl_socket_get_portid(nl);

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
		/* Walk by hand: the floor does no per-message callback. */
		nlh = (struct nlmsghdr *)buf;
		len = (int)ret;
		while (mnl_nlmsg_ok(nlh, len)) {
			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid) {
				nlh = mnl_nlmsg_next(nlh, &len);
				continue;
			}
			if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = 1;
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
			} else if (nlh->nlmsg_type >= NLMSG_MIN_TYPE) {
				count++;
			}
			nlh = mnl_nlmsg_next(nlh, &len);
		}
	}
	mnl_socket_close(nl);
	t1 = ctd_now();

	if (intr)
		fprintf(stderr, "ctdump: dump interrupted (table changed), count is approximate\n");
	printf("%llu %lld\n", (unsigned long long)count, (long long)(t1 - t0));
	return 0;
}
