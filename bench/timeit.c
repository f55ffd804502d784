/*
 * timeit: run a command, report its wall-clock time and peak RSS.
 *
 *   timeit [-o FILE] CMD [ARG...]
 *
 * The command's stdout goes to FILE (e.g. /dev/null) when -o is given.
 * When it ends, timeit prints "<wall_ns> <maxrss_kib> <exit> <cpu_ns> <user_ns>
 * <sys_ns>" on its own stdout, where exit is the exit code, or 128+signal,
 * and cpu_ns the child's user and system time together.  The time runs from
 * just before fork to just after wait4; ru_maxrss is the child's own.  On a
 * shared machine the CPU time varies less than the wall time: other programs
 * delay a process without charging it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

static int64_t ti_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *out = NULL;
	struct rusage ru;
	int64_t t0, t1;
	pid_t pid;
	int opt, status, code;

	while ((opt = getopt(argc, argv, "+o:")) != -1) {
		if (opt != 'o') {
			fprintf(stderr, "usage: timeit [-o FILE] CMD [ARG...]\n");
			return 2;
		}
		out = optarg;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: timeit [-o FILE] CMD [ARG...]\n");
		return 2;
	}
	fflush(stdout);

	t0 = ti_now();
	pid = fork();
	if (pid < 0) {
		perror("timeit: fork");
		return 1;
	}
	if (pid == 0) {
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

			if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) {
				fprintf(stderr, "timeit: %s: %s\n", out, strerror(errno));
				_exit(127);
			}
			close(fd);
		}
		execvp(argv[optind], argv + optind);
		fprintf(stderr, "timeit: %s: %s\n", argv[optind], strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("timeit: wait4");
			return 1;
		}
	}
	t1 = ti_now();

	if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else
		code = 128 + WTERMSIG(status);
	printf("%lld %ld %d %lld %lld %lld\n", (long long)(t1 - t0), ru.ru_maxrss, code,
	       (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	       (long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL,
	       (long long)ru.ru_utime.tv_sec * 1000000000LL + (long long)ru.ru_utime.tv_usec * 1000LL,
	       (long long)ru.ru_stime.tv_sec * 1000000000LL + (long long)ru.ru_stime.tv_usec * 1000LL);
	return 0;
}
