/*
 * Addresses to text, as glibc's inet_ntop writes them (the CLI prints
 * through it), but without its sprintf calls: a dump reads one or more
 * addresses per entry.
 */
#include <string.h>

#include "lct.h"

static char *lct_dec(char *p, unsigned int v)
{
	if (v >= 100) {
		*p++ = (char)('0' + v / 100);
		v %= 100;
		*p++ = (char)('0' + v / 10);
	} else if (v >= 10) {
		*p++ = (char)('0' + v / 10);
	}
	*p++ = (char)('0' + v % 10);
	return p;
}

static char *lct_v4(char *p, const unsigned char *a)
{
	int i;

	for (i = 0; i < 4; i++) {
		if (i)
			*p++ = '.';
		p = lct_dec(p, a[i]);
	}
	*p = '\0';
	return p;
}

static char *lct_hex16(char *p, unsigned int w)
{
	static const char hex[] = "0123456789abcdef";
	int shift, started = 0;

	for (shift = 12; shift >= 0; shift -= 4) {
		unsigned int d = (w >> shift) & 0xf;

		if (d || started || shift == 0) {
			*p++ = hex[d];
			started = 1;
		}
	}
	return p;
}

/* Writes the address at a (4 or 16 bytes) into buf; returns the length. */
size_t lct_ntop(int family, const void *addr, char *buf)
{
	const unsigned char *a = addr;
	unsigned int w[8];
	int i, best = -1, bestlen = 0, cur = -1, curlen = 0;
	char *p = buf;

	if (family == AF_INET)
		return (size_t)(lct_v4(buf, a) - buf);
	for (i = 0; i < 8; i++)
		w[i] = (unsigned int)a[2 * i] << 8 | a[2 * i + 1];
	/* The longest run of zero words, the first of equals, if >= 2. */
	for (i = 0; i < 8; i++) {
		if (w[i] == 0) {
			if (cur < 0) {
				cur = i;
				curlen = 0;
			}
			curlen++;
			if (curlen > bestlen) {
				best = cur;
				bestlen = curlen;
			}
		} else {
			cur = -1;
		}
	}
	if (bestlen < 2)
		best = -1;
	for (i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + bestlen) {
			if (i == best)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		/* IPv4-compatible and IPv4-mapped forms end in dotted quad. */
		if (i == 6 && best == 0 &&
		    (bestlen == 6 || (bestlen == 7 && w[7] != 1) ||
		     (bestlen == 5 && w[5] == 0xffff))) {
			p = lct_v4(p, a + 12);
			return (size_t)(p - buf);
		}
		p = lct_hex16(p, w[i]);
	}
	if (best >= 0 && best + bestlen == 8)
		*p++ = ':';
	*p = '\0';
	return (size_t)(p - buf);
}
