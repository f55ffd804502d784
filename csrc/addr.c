/*
 * Addresses: to text as glibc's inet_ntop writes them (the CLI prints
 * through it), but without its sprintf calls, since a dump reads one or more
 * addresses per entry; from text; and prefixes.
 */
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "lct.h"

/* "00" to "99": two digits at a time (text.c writes its numbers with it too). */
const char lct_digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324"
	"25262728293031323334353637383940414243444546474849"
	"50515253545556575859606162636465666768697071727374"
	"75767778798081828384858687888990919293949596979899";

static char *lct_dec(char *p, unsigned int v)
{
	if (v >= 100) {
		*p++ = (char)('0' + v / 100);
		v %= 100;
		memcpy(p, lct_digit_pairs + 2 * v, 2);
		return p + 2;
	}
	if (v >= 10) {
		memcpy(p, lct_digit_pairs + 2 * v, 2);
		return p + 2;
	}
	*p++ = (char)('0' + v);
	return p;
}

char *lct_utoa(char *p, unsigned int v)
{
	char tmp[12], *q = tmp + sizeof(tmp);
	size_t n;

	do {
		*--q = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	n = (size_t)(tmp + sizeof(tmp) - q);
	memcpy(p, q, n);
	return p + n;
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

/*
 * A dotted quad as inet_pton(AF_INET) reads it: four decimal parts of at
 * most 255, no leading zeros, nothing else.  1 and the bytes, or 0.
 */
static int lct_pton4(const char *s, size_t len, unsigned char *out)
{
	const char *end = s + len;
	unsigned char a[4];
	int part;

	for (part = 0; part < 4; part++) {
		unsigned int v;

		if (s == end || (unsigned int)(*s - '0') > 9)
			return 0;
		v = (unsigned int)(*s++ - '0');
		if (s != end && (unsigned int)(*s - '0') <= 9) {
			if (v == 0)
				return 0;	/* a leading zero */
			v = v * 10 + (unsigned int)(*s++ - '0');
			if (s != end && (unsigned int)(*s - '0') <= 9) {
				v = v * 10 + (unsigned int)(*s++ - '0');
				if (v > 255)
					return 0;
			}
		}
		a[part] = (unsigned char)v;
		if (part < 3) {
			if (s == end || *s != '.')
				return 0;
			s++;
		}
	}
	if (s != end)
		return 0;
	memcpy(out, a, 4);
	return 1;
}

int lct_pton(const char *s, size_t len, void *out)
{
	char buf[INET6_ADDRSTRLEN + 1];

	/* lct_pton4 takes digits and dots alone (no NUL): try it first. */
	if (len == 0 || len >= sizeof(buf))
		return 0;
	if (lct_pton4(s, len, out))
		return AF_INET;
	if (memchr(s, '\0', len) != NULL)
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, out) == 1)
		return AF_INET6;
	return 0;
}

int lct_cidr_parse(const char *s, size_t len, struct lct_cidr *c)
{
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	int f, bits, max, i;

	memset(c, 0, sizeof(*c));
	f = lct_pton(s, alen, c->addr);
	if (f == 0)
		return -1;
	max = f == AF_INET ? 32 : 128;
	bits = max;
	if (slash != NULL) {
		const char *p = slash + 1, *end = s + len;

		if (p == end || end - p > 3)
			return -1;
		for (bits = 0; p < end; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			bits = bits * 10 + (*p - '0');
		}
		if (bits > max)
			return -1;
	}
	c->family = (uint8_t)f;
	c->plen = (uint8_t)bits;
	for (i = 0; i < max / 8; i++) {
		int keep = bits - i * 8;

		if (keep <= 0)
			c->addr[i] = 0;
		else if (keep < 8)
			c->addr[i] &= (uint8_t)(0xff << (8 - keep));
	}
	return 0;
}

int lct_cidr_match(const struct lct_cidr *c, int family, const uint8_t *a)
{
	int whole = c->plen / 8, rest = c->plen % 8;

	if (family != c->family)
		return 0;
	if (memcmp(a, c->addr, (size_t)whole) != 0)
		return 0;
	return rest == 0 || (a[whole] & (uint8_t)(0xff << (8 - rest))) == c->addr[whole];
}
