/*
 * lct_ntop (csrc/addr.c) must write every address exactly as glibc's
 * inet_ntop does, since tostring(e) must equal the CLI's text.  Compares
 * the two on two million addresses rich in zero runs, v4-mapped and
 * v4-compatible forms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

size_t lct_ntop(int family, const void *addr, char *buf);

int main(void)
{
	unsigned char a[16];
	char want[64], got[64];
	int bad = 0, it, i;

	srand(1);
	for (it = 0; it < 2000000; it++) {
		int fam = it % 3 == 0 ? AF_INET : AF_INET6;
		size_t n;

		for (i = 0; i < 16; i++) {
			int r = rand() % 8;
			a[i] = r < 5 ? 0 : r == 5 ? 0xff : (unsigned char)rand();
		}
		if (it % 7 == 0) {
			memset(a, 0, 10);
			a[10] = a[11] = 0xff;
		}
		if (it % 11 == 0)
			memset(a, 0, 12);
		if (it % 13 == 0) {
			memset(a, 0, 15);
			a[15] = (unsigned char)(rand() % 3);
		}
		inet_ntop(fam, a, want, sizeof(want));
		n = lct_ntop(fam, a, got);
		if (strcmp(want, got) != 0 || n != strlen(want)) {
			if (bad++ < 10)
				fprintf(stderr, "inet_ntop %s, lct_ntop %s\n", want, got);
		}
	}
	printf("addr_test: %d addresses written as inet_ntop writes them, %d different\n", it - bad, bad);
	return bad != 0;
}
