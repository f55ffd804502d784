/*
 * lct_ntop (csrc/addr.c) must write every address exactly as glibc's
 * inet_ntop does, since tostring(e) must equal the CLI's text.  Compares
 * the two on two million addresses rich in zero runs, v4-mapped and
 * v4-compatible forms.  And lct_pton, which reads dotted quads itself,
 * must read text as inet_pton does: compared on two million strings of
 * digits, dots and colons.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

size_t lct_ntop(int family, const void *addr, char *buf);
int lct_pton(const char *s, size_t len, void *out);

/* Text near an address: digits (zeros often), dots, sometimes a colon or a letter. */
static int pton_test(void)
{
	static const char alphabet[] = "0123456789......0002552:a ";
	unsigned char want[16], got[16];
	char s[24];
	int bad = 0, it;

	for (it = 0; it < 2000000; it++) {
		int len = 1 + rand() % 18, i, wf, gf;

		for (i = 0; i < len; i++)
			s[i] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
		s[len] = '\0';
		if (it % 3 == 0)	/* a well-formed quad, sometimes out of range */
			len = snprintf(s, sizeof(s), "%d.%d.%d.%d", rand() % 300, rand() % 256,
				       rand() % 256, rand() % 260);
		wf = inet_pton(AF_INET, s, want) == 1 ? AF_INET :
		     inet_pton(AF_INET6, s, want) == 1 ? AF_INET6 : 0;
		gf = lct_pton(s, (size_t)len, got);
		if (wf != gf || (wf != 0 && memcmp(want, got, wf == AF_INET ? 4 : 16) != 0)) {
			if (bad++ < 10)
				fprintf(stderr, "inet_pton and lct_pton differ on '%s'\n", s);
		}
	}
	printf("addr_test: %d strings read as inet_pton reads them, %d different\n", it - bad, bad);
	return bad;
}

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
	bad += pton_test();
	return bad != 0;
}
