/*
 * ctlisten: the floor for bench/events.lua, a plain libmnl conntrack event
 * listener that counts events and losses.
 *
 *   ctlisten [-b BYTES] [-n WANT] [-q IDLE_MS] [-t MAX_S]
 *   ctlisten -x [-n WANT] [-q IDLE_MS] [-t MAX_S] CMD [ARG...]
 *
 * Listener mode: joins the NEW, UPDATE and DESTROY groups with a receive
 * buffer of BYTES (default 8 MiB; SO_RCVBUFFORCE, else SO_RCVBUF), runs
 * mnl_cb_run over what arrives with a callback that counts the messages, and
 * counts ENOBUFS.  Ends once WANT events arrived (default: never), or IDLE_MS
 * (default 2000) after the last event, or after MAX_S seconds (default 120).
 *
 * Line mode (-x): runs CMD with its stdout into a pipe and counts lines, as
 * `CMD | wc -l` would, timing each; when done it reads the Drops column of
 * CMD's netlink socket from /proc/net/netlink, then
 * ends CMD with SIGTERM.  CMD's stderr is left alone.  (Run one listener at a
 * time: the socket is told by being the only subscribed one.)
 *
 * Prints one line: "events N enobufs E drops D first_ns F last_ns L cpu_ns C" where
 * E is -1 in line mode (CMD's ENOBUFS are its own business), drops is the kernel's count of events dropped for this socket (SO_MEMINFO;
 * in line mode /proc/net/netlink, or -1 when not found) and F, L are the
 * CLOCK_MONOTONIC times of the first and the last event, and C the
 * listener's CPU time from its first event to its end (-1 in line mode).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_compat.h>
#include <linux/sock_diag.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO	55
#endif

struct cl_count {
	uint64_t events;
	long long enobufs;		/* -1: not seen from here (line mode) */
	int64_t first, last;
	long long drops;
	int64_t cpu;			/* at the first event, then from it to the end */
};

static int64_t cl_clock(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t cl_now(void)
{
	return cl_clock(CLOCK_MONOTONIC);
}

static void cl_die(const char *what)
{
	fprintf(stderr, "ctlisten: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void cl_usage(void)
{
	fprintf(stderr, "usage: ctlisten [-b BYTES] [-n WANT] [-q IDLE_MS] [-t MAX_S]\n"
			"       ctlisten -x [-n WANT] [-q IDLE_MS] [-t MAX_S] CMD [ARG...]\n");
	exit(2);
}

static long long cl_number(const char *s)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		cl_usage();
	return v;
}

static void cl_seen(struct cl_count *c, uint64_t n)
{
	int64_t t = cl_now();

	if (c->events == 0) {
		c->first = t;
		c->cpu = cl_clock(CLOCK_PROCESS_CPUTIME_ID);
	}
	c->last = t;
	c->events += n;
}

static int cl_cb(const struct nlmsghdr *nlh, void *data)
{
	struct cl_count *c = data;

	if ((nlh->nlmsg_type >> 8) == NFNL_SUBSYS_CTNETLINK)
		cl_seen(c, 1);
	return MNL_CB_OK;
}

/* Waits for readability until the idle or the overall limit; 0 when due. */
static int cl_wait(int fd, const struct cl_count *c, int idle_ms, int64_t end)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t now = cl_now(), due = end;
	int r;

	if (c->events > 0 && c->last + (int64_t)idle_ms * 1000000 < due)
		due = c->last + (int64_t)idle_ms * 1000000;
	if (now >= due)
		return 0;
	r = poll(&p, 1, (int)((due - now) / 1000000) + 1);
	if (r < 0 && errno != EINTR)
		cl_die("poll");
	return 1;
}

static void cl_listen(int bytes, uint64_t want, int idle_ms, int64_t end,
		      struct cl_count *c)
{
	static char buf[64 * 1024] __attribute__((aligned(8)));
	struct mnl_socket *nl;
	unsigned int mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);
	int fd;

	nl = mnl_socket_open(NETLINK_NETFILTER);
	if (nl == NULL)
		cl_die("mnl_socket_open");
	if (mnl_socket_bind(nl, NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE |
			    NF_NETLINK_CONNTRACK_DESTROY, MNL_SOCKET_AUTOPID) < 0)
		cl_die("mnl_socket_bind");
	fd = mnl_socket_get_fd(nl);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) < 0)
		cl_die("SO_RCVBUF");

	while (want == 0 || c->events < want) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0) {
			if (errno == ENOBUFS) {
				c->enobufs++;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				cl_die("recv");
			if (!cl_wait(fd, c, idle_ms, end))
				break;
			continue;
		}
		if (mnl_cb_run(buf, (size_t)n, 0, 0, cl_cb, c) < 0 && errno != ENOENT)
			cl_die("mnl_cb_run");
	}
	c->drops = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) == 0)
		c->drops = mi[SK_MEMINFO_DROPS];
	mnl_socket_close(nl);
}

/*
 * Drops of the one subscribed NETLINK_NETFILTER socket in this namespace,
 * or -1 when there is not exactly one (conntrack -E subscribes from a second
 * socket whose port id is not its pid, so the pid cannot tell it).
 */
static long long cl_proc_drops(void)
{
	FILE *f = fopen("/proc/net/netlink", "r");
	char line[512];
	long long drops = -1;
	int found = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long sk, inode;
		int eth, rmem, wmem, dump, locks;
		unsigned int portid, groups;
		long long d;

		if (sscanf(line, "%llx %d %u %x %d %d %d %d %lld %llu", &sk, &eth,
			   &portid, &groups, &rmem, &wmem, &dump, &locks, &d, &inode) != 10)
			continue;
		if (eth == NETLINK_NETFILTER && groups != 0) {
			drops = d;
			found++;
		}
	}
	fclose(f);
	return found == 1 ? drops : -1;
}

static void cl_lines(char **argv, uint64_t want, int idle_ms, int64_t end,
		     struct cl_count *c)
{
	static char buf[256 * 1024];
	int p[2], status;
	pid_t pid;

	if (pipe(p) < 0)
		cl_die("pipe");
	pid = fork();
	if (pid < 0)
		cl_die("fork");
	if (pid == 0) {
		close(p[0]);
		if (dup2(p[1], STDOUT_FILENO) < 0)
			_exit(127);
		close(p[1]);
		execvp(argv[0], argv);
		fprintf(stderr, "ctlisten: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	while (want == 0 || c->events < want) {
		ssize_t n = read(p[0], buf, sizeof(buf));
		uint64_t k = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			cl_die("read");
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			k += buf[i] == '\n';
		if (k > 0)
			cl_seen(c, k);
		/* Nothing more for a while: done.  Poll the pipe for that. */
		for (;;) {
			struct pollfd q = { .fd = p[0], .events = POLLIN };
			int64_t due = c->events > 0 ? c->last + (int64_t)idle_ms * 1000000 : end;
			int64_t now = cl_now();
			int r;

			if (due > end)
				due = end;
			if (now >= due)
				goto done;
			r = poll(&q, 1, (int)((due - now) / 1000000) + 1);
			if (r > 0)
				break;
			if (r < 0 && errno != EINTR)
				cl_die("poll");
		}
	}
done:
	c->drops = cl_proc_drops();
	kill(pid, SIGTERM);
	/* Drain so the child is never stuck writing, then reap it. */
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (read(p[0], buf, sizeof(buf)) <= 0)
			usleep(1000);
	}
	close(p[0]);
}

int main(int argc, char **argv)
{
	struct cl_count c = { 0, 0, 0, 0, -1, 0 };
	long long bytes = 8 * 1024 * 1024, want = 0, idle = 2000, max = 120;
	int opt, lines = 0;
	int64_t end;

	while ((opt = getopt(argc, argv, "+b:n:q:t:x")) != -1) {
		switch (opt) {
		case 'b': bytes = cl_number(optarg); break;
		case 'n': want = cl_number(optarg); break;
		case 'q': idle = cl_number(optarg); break;
		case 't': max = cl_number(optarg); break;
		case 'x': lines = 1; break;
		default: cl_usage();
		}
	}
	if (lines != (optind < argc) || bytes > (1 << 30) || idle > 3600000 || max > 86400)
		cl_usage();
	signal(SIGPIPE, SIG_IGN);
	end = cl_now() + max * 1000000000LL;
	if (lines) {
		c.enobufs = -1;
		cl_lines(argv + optind, (uint64_t)want, (int)idle, end, &c);
	}
	else
		cl_listen((int)bytes, (uint64_t)want, (int)idle, end, &c);
	if (lines || c.events == 0)
		c.cpu = -1;
	else
		c.cpu = cl_clock(CLOCK_PROCESS_CPUTIME_ID) - c.cpu;
	printf("events %llu enobufs %lld drops %lld first_ns %lld last_ns %lld cpu_ns %lld\n",
	       (unsigned long long)c.events, c.enobufs, c.drops,
	       (long long)c.first, (long long)c.last, (long long)c.cpu);
	return 0;
}
