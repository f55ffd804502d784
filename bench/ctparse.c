/*
 * ctparse: the "typical C user" of the dump benchmark.  The same dump as
 * ctdump, but each message goes through libnetfilter_conntrack as its
 * documentation shows: nfct_new, nfct_nlmsg_parse, nfct_get_attr of the
 * original source, inet_ntop of it, nfct_destroy.  It is what a C program
 * reading e.orig.src of every flow does.
 *
 * Prints "<entries> <elapsed_ns>" as ctdump does.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
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
	fprintf(stderr, "ctparse: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	static char buf[CTD_BUFSZ] __attribute__((aligned(8)));
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	unsigned int seq, portid;
	uint64_t count = 0, chars = 0;
	int64_t t0, t1;
	int done = 0, intr = 0;
	ssize_t ret;
	int len;

	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: ctparse\n");
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
				struct nf_conntrack *ct = nfct_new();
				char text[INET6_ADDRSTRLEN];

				if (ct == NULL)
					ctd_die("nfct_new");
				nfct_nlmsg_parse(nlh, ct);
				if (nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) == AF_INET6)
					inet_ntop(AF_INET6, nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC), text, sizeof(text));
				else
					inet_ntop(AF_INET, nfct_get_attr(ct, ATTR_ORIG_IPV4_SRC), text, sizeof(text));
				chars += strlen(text);
				nfct_destroy(ct);
				count++;
			}
			nlh = mnl_nlmsg_next(nlh, &len);
		}
	}
	mnl_socket_close(nl);
	t1 = ctd_now();

	if (intr)
		fprintf(stderr, "ctparse: dump interrupted (table changed), count is approximate\n");
	if (chars == 0 && count > 0)
		fprintf(stderr, "ctparse: no address text made\n");
	printf("%llu %lld\n", (unsigned long long)count, (long long)(t1 - t0));
	return 0;
}
