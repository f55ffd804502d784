/*
 * Save text: the lines `conntrack -L -o save` writes and `conntrack -R`
 * reads ("-A -t 120 -u ASSURED -s 192.0.2.1 ... -p tcp --sport 1 ..."),
 * read in C, in one pass over each line.  A line's options become spec
 * fields through the same reader as a table's (build.c), so a line and the
 * table it stands for are checked alike.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lct.h"

#define LCT_SAVE_LINE_MAX	4096

enum { V_STR, V_INT, V_MARK, V_PROTO, V_STATUS, V_LABELS, V_SNAT, V_DNAT, V_IGNORE };

static const struct {
	const char *opt;
	int id, kind;		/* the field (enum lct_fid), how its value reads */
} lct_save_opts[] = {
	{"-s", F_SRC, V_STR}, {"--orig-src", F_SRC, V_STR}, {"--src", F_SRC, V_STR},
	{"-d", F_DST, V_STR}, {"--orig-dst", F_DST, V_STR}, {"--dst", F_DST, V_STR},
	{"-r", F_RSRC, V_STR}, {"--reply-src", F_RSRC, V_STR},
	{"-q", F_RDST, V_STR}, {"--reply-dst", F_RDST, V_STR},
	{"-g", F_RSRC, V_DNAT}, {"--dst-nat", F_RSRC, V_DNAT},
	{"-n", F_RDST, V_SNAT}, {"--src-nat", F_RDST, V_SNAT},
	{"-p", F_PROTO, V_PROTO}, {"--proto", F_PROTO, V_PROTO}, {"--protonum", F_PROTO, V_PROTO},
	{"-f", F_FAMILY, V_STR}, {"--family", F_FAMILY, V_STR},
	{"--sport", F_SPORT, V_INT}, {"--orig-port-src", F_SPORT, V_INT},
	{"--dport", F_DPORT, V_INT}, {"--orig-port-dst", F_DPORT, V_INT},
	{"--reply-port-src", F_RSPORT, V_INT}, {"--reply-port-dst", F_RDPORT, V_INT},
	{"--state", F_STATE, V_STR},
	{"--icmp-type", F_ITYPE, V_INT}, {"--icmp-code", F_ICODE, V_INT},
	{"--icmp-id", F_IID, V_INT}, {"--icmpv6-type", F_ITYPE, V_INT},
	{"--icmpv6-code", F_ICODE, V_INT}, {"--icmpv6-id", F_IID, V_INT},
	{"-t", F_TIMEOUT, V_INT}, {"--timeout", F_TIMEOUT, V_INT},
	{"-u", F_STATUS, V_STATUS}, {"--status", F_STATUS, V_STATUS},
	{"-c", F_SECMARK, V_INT}, {"--secmark", F_SECMARK, V_INT},
	{"-w", F_ZONE, V_INT}, {"--zone", F_ZONE, V_INT},
	{"--orig-zone", F_OZONE, V_INT}, {"--reply-zone", F_RZONE, V_INT},
	{"-m", F_MARK, V_MARK}, {"--mark", F_MARK, V_MARK},
	{"-l", F_LABELS, V_LABELS}, {"--label", F_LABELS, V_LABELS},
	{"--label-add", F_LABELADD, V_LABELS}, {"--label-del", F_LABELDEL, V_LABELS},
	{"--orig-vtag", F_VTAG0, V_INT}, {"--reply-vtag", F_VTAG1, V_INT},
	{"--role", F_ROLE, V_STR},
	{"--srckey", F_SRCKEY, V_INT}, {"--dstkey", F_DSTKEY, V_INT},
	{"--reply-key-src", F_RSRCKEY, V_INT}, {"--reply-key-dst", F_RDSTKEY, V_INT},
	{"--helper", F_HELPER, V_STR},
};
#define LCT_NSAVEOPTS	(sizeof(lct_save_opts) / sizeof(lct_save_opts[0]))

struct lct_tok {
	const char *p;
	size_t n;
};

static int lct_tok_is(const struct lct_tok *t, const char *s)
{
	return strlen(s) == t->n && memcmp(t->p, s, t->n) == 0;
}

/*
 * The option a token names: its index in lct_save_opts, or -1.  Short
 * options by their letter; long ones by their length, then the few of that
 * length whose third and last characters match (written from the table:
 * lct_save_open checks at load that the two agree).
 */
#define LCT_OPT(lit, k)	\
	if (t->p[2] == (lit)[2] && t->p[t->n - 1] == (lit)[sizeof(lit) - 2] && \
	    memcmp(t->p, lit, sizeof(lit) - 1) == 0) \
		return k

static int lct_opt_find(const struct lct_tok *t)
{
	if (t->n < 2 || t->p[0] != '-')
		return -1;
	if (t->n == 2) {
		switch (t->p[1]) {
		case 's': return 0;
		case 'd': return 3;
		case 'r': return 6;
		case 'q': return 8;
		case 'g': return 10;
		case 'n': return 12;
		case 'p': return 14;
		case 'f': return 17;
		case 't': return 32;
		case 'u': return 34;
		case 'c': return 36;
		case 'w': return 38;
		case 'm': return 42;
		case 'l': return 44;
		}
		return -1;
	}
	if (t->p[1] != '-')
		return -1;
	switch (t->n) {
	case 5:
		LCT_OPT("--src", 2);
		LCT_OPT("--dst", 5);
		break;
	case 6:
		LCT_OPT("--zone", 39);
		LCT_OPT("--mark", 43);
		LCT_OPT("--role", 50);
		break;
	case 7:
		LCT_OPT("--proto", 15);
		LCT_OPT("--sport", 19);
		LCT_OPT("--dport", 21);
		LCT_OPT("--state", 25);
		LCT_OPT("--label", 45);
		break;
	case 8:
		LCT_OPT("--family", 18);
		LCT_OPT("--status", 35);
		LCT_OPT("--srckey", 51);
		LCT_OPT("--dstkey", 52);
		LCT_OPT("--helper", 55);
		break;
	case 9:
		LCT_OPT("--dst-nat", 11);
		LCT_OPT("--src-nat", 13);
		LCT_OPT("--icmp-id", 28);
		LCT_OPT("--timeout", 33);
		LCT_OPT("--secmark", 37);
		break;
	case 10:
		LCT_OPT("--orig-src", 1);
		LCT_OPT("--orig-dst", 4);
		LCT_OPT("--protonum", 16);
		break;
	case 11:
		LCT_OPT("--reply-src", 7);
		LCT_OPT("--reply-dst", 9);
		LCT_OPT("--icmp-type", 26);
		LCT_OPT("--icmp-code", 27);
		LCT_OPT("--icmpv6-id", 31);
		LCT_OPT("--orig-zone", 40);
		LCT_OPT("--label-add", 46);
		LCT_OPT("--label-del", 47);
		LCT_OPT("--orig-vtag", 48);
		break;
	case 12:
		LCT_OPT("--reply-zone", 41);
		LCT_OPT("--reply-vtag", 49);
		break;
	case 13:
		LCT_OPT("--icmpv6-type", 29);
		LCT_OPT("--icmpv6-code", 30);
		break;
	case 15:
		LCT_OPT("--orig-port-src", 20);
		LCT_OPT("--orig-port-dst", 22);
		LCT_OPT("--reply-key-src", 53);
		LCT_OPT("--reply-key-dst", 54);
		break;
	case 16:
		LCT_OPT("--reply-port-src", 23);
		LCT_OPT("--reply-port-dst", 24);
		break;
	}
	return -1;
}
#undef LCT_OPT

/* "120", "0x10": an unsigned number (base 0 as the CLI's strtoul), or -1. */
static int64_t lct_num(const struct lct_tok *t, int base)
{
	char buf[24], *end;
	unsigned long long v;
	size_t i;

	/* Plain decimal digits (no octal zero in base 0): read here. */
	if (t->n > 0 && t->n <= 10 && (base == 10 || t->p[0] != '0' || t->n == 1)) {
		for (v = 0, i = 0; i < t->n && t->p[i] >= '0' && t->p[i] <= '9'; i++)
			v = v * 10 + (unsigned long long)(t->p[i] - '0');
		if (i == t->n)
			return v > 0xffffffffULL ? -1 : (int64_t)v;
		/* stopped by another character: strtoull stops there too (after the
		 * white space it skips first) */
		if (base == 10 && (i > 0 || (t->p[0] != ' ' && (t->p[0] < '\t' || t->p[0] > '\r'))))
			return -1;
	}
	if (t->n == 0 || t->n >= sizeof(buf) || t->p[0] == '-' || t->p[0] == '+')
		return -1;
	memcpy(buf, t->p, t->n);
	buf[t->n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, base);
	if (*end != '\0' || errno != 0 || v > 0xffffffffULL)
		return -1;
	return (int64_t)v;
}

struct lct_line {
	int op;			/* 'A', 'I', 'U', 'D' */
	int tables;		/* pushing table values (parse_save), not reading a spec */
	const char *fname;
	struct lct_spec *s;
	struct lct_reader r;
	struct lct_tok nat[2];	/* -n (snat), -g (dnat) values; n == 0 when absent */
	int tidx;		/* the table being filled, when tables */
	int kinds;		/* tables: what the table is read as */
	int dups;		/* tables: a field given twice (the last value counts) */
	int keys;		/* tables: the field names, interned, by id + 1 */
	int partial;		/* a -D/-U line read as a filter: any fields, none needed */
};

/*
 * tables: the value at the top into the line's table under the key below
 * it (lct_line_key).  Each value is checked as the load would read it, as
 * it goes in; when a field comes twice only the last value counts, so the
 * table is checked once whole at the end instead.
 */
static void lct_line_set(lua_State *L, struct lct_line *ln, int id)
{
	if (!ln->dups)
		lct_reader_kfield(L, ln->fname, id, ln->kinds, ln->s, &ln->r);
	lua_rawset(L, ln->tidx);
}

/* tables: the key of field id, interned (before its value is pushed). */
static void lct_line_key(lua_State *L, struct lct_line *ln, int id)
{
	if (ln->tables)
		lua_rawgeti(L, ln->keys, id + 1);
}

/*
 * tables: the value errors of an option (a malformed number), before any
 * value is read as a field, so that a line reports them first.  Notes a
 * field given twice in *seen.
 */
static void lct_line_check(lua_State *L, struct lct_line *ln, int id, int kind,
			   const struct lct_tok *v, uint64_t *seen)
{
	const char *field = lct_field_name(id);

	if ((*seen >> id) & 1)
		ln->dups = 1;
	*seen |= (uint64_t)1 << id;
	if (kind == V_INT && lct_num(v, 10) < 0)
		lct_error(L, "%s: option for '%s': number expected, got '%.*s'", ln->fname,
			  field, (int)(v->n > 40 ? 40 : v->n), v->p);
	if (kind == V_MARK) {
		const char *slash = memchr(v->p, '/', v->n);
		struct lct_tok a = { v->p, slash ? (size_t)(slash - v->p) : v->n };

		if (lct_num(&a, 0) < 0)
			lct_error(L, "%s: option -m: mark expected, got '%.*s'", ln->fname,
				  (int)(v->n > 40 ? 40 : v->n), v->p);
		if (slash != NULL && (ln->op == 'U' || ln->partial)) {
			struct lct_tok m = { slash + 1, v->n - a.n - 1 };

			if (lct_num(&m, 0) < 0)
				lct_error(L, "%s: option -m: mask expected, got '%.*s'", ln->fname,
					  (int)m.n, m.p);
			id = F_MARKMASK;
			if ((*seen >> id) & 1)
				ln->dups = 1;
			*seen |= (uint64_t)1 << id;
		}
	}
}

/*
 * tables, a filter line: -s and -d may name a prefix ("192.0.2.0/24"), as
 * conntrack's do there.  The prefix is checked, its address read as the
 * field would be (its family noted), and the prefix kept as the value (a
 * filter's src/dst take prefixes).  0 when v is no prefix of those.
 */
static int lct_line_prefix(lua_State *L, struct lct_line *ln, int id, const struct lct_tok *v)
{
	const char *slash = memchr(v->p, '/', v->n);
	struct lct_cidr c;

	if (!ln->partial || slash == NULL || (id != F_SRC && id != F_DST))
		return 0;
	lua_pushlstring(L, v->p, v->n);
	if (lct_cidr_parse(v->p, v->n, &c) < 0)
		lct_argerror(L, ln->fname, lct_field_name(id), "malformed address or prefix %s",
			     lct_shortval(L, -1));
	lua_pushlstring(L, v->p, (size_t)(slash - v->p));
	if (!ln->dups)
		lct_reader_kfield(L, ln->fname, id, ln->kinds, ln->s, &ln->r);
	lua_pop(L, 1);
	lua_rawset(L, ln->tidx);
	return 1;
}

/*
 * A value straight into the spec, no Lua value made (a load's line): 0, or
 * -1 when it goes the Lua way (a rare field or form, or a bad value, whose
 * message the reader gives there).
 */
static int lct_line_direct(struct lct_line *ln, int id, int kind, const struct lct_tok *v)
{
	int64_t n;

	switch (kind) {
	case V_INT:
		n = lct_num(v, 10);
		return n < 0 ? -1 : lct_reader_int(id, n, ln->s, &ln->r);
	case V_MARK:
		if (memchr(v->p, '/', v->n) != NULL)
			return -1;
		n = lct_num(v, 0);
		return n < 0 ? -1 : lct_reader_int(id, n, ln->s, &ln->r);
	case V_PROTO:
		n = lct_num(v, 10);
		return n >= 0 ? lct_reader_int(id, n, ln->s, &ln->r) :
				lct_reader_text(id, v->p, v->n, ln->s, &ln->r);
	case V_STATUS: {
		/* "SEEN_REPLY,ASSURED" or "UNSET": the bits, as the names' array reads */
		const char *p = v->p, *end = v->p + v->n;
		uint32_t bits = 0;
		char name[32];

		while (p < end) {
			const char *c = memchr(p, ',', (size_t)(end - p));
			size_t len = c ? (size_t)(c - p) : (size_t)(end - p);
			int bit;

			if (len > 0 && !(len == 5 && memcmp(p, "UNSET", 5) == 0)) {
				if (len >= sizeof(name) || memchr(p, '\0', len) != NULL)
					return -1;
				memcpy(name, p, len);
				name[len] = '\0';
				bit = lct_status_lookup(name);
				if (bit < 0)
					return -1;
				bits |= 1u << bit;
			}
			p += len + 1;
		}
		return lct_reader_int(id, bits, ln->s, &ln->r);
	}
	case V_STR:
		return lct_reader_text(id, v->p, v->n, ln->s, &ln->r);
	}
	return -1;
}

static void lct_line_value(lua_State *L, struct lct_line *ln, int id, int kind,
			   const struct lct_tok *v)
{
	int64_t n;

	if (!ln->tables && lct_line_direct(ln, id, kind, v) == 0)
		return;
	lct_line_key(L, ln, id);
	switch (kind) {
	case V_INT:
		n = lct_num(v, 10);
		if (n < 0)
			lct_error(L, "%s: option for '%s': number expected, got '%.*s'", ln->fname,
				  lct_field_name(id), (int)(v->n > 40 ? 40 : v->n), v->p);
		lua_pushinteger(L, (lua_Integer)n);
		break;
	case V_MARK: {
		const char *slash = memchr(v->p, '/', v->n);
		struct lct_tok a = { v->p, slash ? (size_t)(slash - v->p) : v->n };

		n = lct_num(&a, 0);
		if (n < 0)
			lct_error(L, "%s: option -m: mark expected, got '%.*s'", ln->fname,
				  (int)(v->n > 40 ? 40 : v->n), v->p);
		if (slash != NULL && (ln->op == 'U' || ln->partial)) {
			struct lct_tok m = { slash + 1, v->n - a.n - 1 };
			int64_t mask = lct_num(&m, 0);

			if (mask < 0)
				lct_error(L, "%s: option -m: mask expected, got '%.*s'", ln->fname,
					  (int)m.n, m.p);
			if (ln->tables) {
				lct_line_key(L, ln, F_MARKMASK);
				lua_pushinteger(L, (lua_Integer)mask);
				lct_line_set(L, ln, F_MARKMASK);
			} else {
				lua_pushinteger(L, (lua_Integer)mask);
				lct_reader_field(L, ln->fname, F_MARKMASK, ln->s, &ln->r);
				lua_pop(L, 1);
			}
		}
		lua_pushinteger(L, (lua_Integer)n);
		break;
	}
	case V_PROTO:
		n = lct_num(v, 10);
		if (n >= 0)
			lua_pushinteger(L, (lua_Integer)n);
		else
			lua_pushlstring(L, v->p, v->n);
		break;
	case V_STATUS: {
		/* "SEEN_REPLY,ASSURED" or "UNSET": an array of names. */
		const char *p = v->p, *end = v->p + v->n;
		int i = 0;

		lua_createtable(L, 4, 0);
		while (p < end) {
			const char *c = memchr(p, ',', (size_t)(end - p));
			size_t len = c ? (size_t)(c - p) : (size_t)(end - p);

			if (!(len == 5 && memcmp(p, "UNSET", 5) == 0) && len > 0) {
				lua_pushlstring(L, p, len);
				lua_rawseti(L, -2, ++i);
			}
			p += len + 1;
		}
		break;
	}
	case V_LABELS: {
		const char *p = v->p, *end = v->p + v->n;
		int i = 0;

		lua_createtable(L, 4, 0);
		while (p < end) {
			const char *c = memchr(p, ',', (size_t)(end - p));
			struct lct_tok t = { p, c ? (size_t)(c - p) : (size_t)(end - p) };

			n = lct_num(&t, 10);
			if (n >= 0)
				lua_pushinteger(L, (lua_Integer)n);
			else
				lua_pushlstring(L, t.p, t.n);
			lua_rawseti(L, -2, ++i);
			p += t.n + 1;
		}
		break;
	}
	case V_SNAT:
	case V_DNAT:
		/* the reply address too */
		ln->nat[kind == V_DNAT] = *v;
		lua_pushlstring(L, v->p, v->n);
		break;
	default:
		if (ln->tables && lct_line_prefix(L, ln, id, v))
			return;
		lua_pushlstring(L, v->p, v->n);
	}
	if (ln->tables) {
		lct_line_set(L, ln, id);
		return;
	}
	lct_reader_field(L, ln->fname, id, ln->s, &ln->r);
	lua_pop(L, 1);
}

/*
 * NAT forms (-n/-g): the flow was translated to that address and the
 * reply's port, and the kernel is asked to set the translation up.
 */
static void lct_line_nat(lua_State *L, struct lct_line *ln, int dnat)
{
	const struct lct_tok *v = &ln->nat[dnat];
	int port = dnat ? ln->r.port[1][0] : ln->r.port[1][1];
	int v6 = memchr(v->p, ':', v->n) != NULL;
	int id = dnat ? F_DNAT : F_SNAT;

	if (ln->tables) {
		/* the reply's port, as the table holds it */
		lct_rawfield(L, ln->tidx, dnat ? "reply_sport" : "reply_dport");
		port = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
		lua_pop(L, 1);
	}
	lct_line_key(L, ln, id);
	lua_pushlstring(L, v->p, v->n);
	if (port >= 0)
		lua_pushfstring(L, v6 ? "[%s]:%d" : "%s:%d", lua_tostring(L, -1), port);
	if (ln->tables) {
		if (port >= 0)
			lua_remove(L, -2);
		lct_line_set(L, ln, id);
		return;
	}
	lct_reader_field(L, ln->fname, id, ln->s, &ln->r);
	lua_pop(L, port >= 0 ? 2 : 1);
}

/* ' ', '\t', '\r': one test for the common case (a printable character) */
#define LCT_BLANK(c)	((unsigned char)(c) <= ' ' && ((c) == ' ' || (c) == '\t' || (c) == '\r'))

#define LCT_LINE_TOKS	256

#define LCT_ONES	UINT64_C(0x0101010101010101)

static int lct_ctz64(uint64_t m)
{
#ifdef __GNUC__
	return __builtin_ctzll(m);
#else
	int i = 0;

	while (!(m & 1)) {
		m >>= 1;
		i++;
	}
	return i;
#endif
}

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The bytes of x equal to c: their top bits. */
static uint64_t lct_eq8(uint64_t x, unsigned int c)
{
	uint64_t z = x ^ (LCT_ONES * c);

	return ~(((z & (LCT_ONES * 0x7f)) + LCT_ONES * 0x7f) | z) & (LCT_ONES * 0x80);
}
#endif

/* Bit i set when byte i of the 64 at p is a blank (LCT_BLANK). */
static uint64_t lct_blanks64(const char *p)
{
	uint64_t m = 0;
	int i;

#if defined(__SSE2__)
	/* sixteen bytes at a time */
	const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'), cr = _mm_set1_epi8('\r');

	for (i = 0; i < 4; i++) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
		__m128i b = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, sp), _mm_cmpeq_epi8(x, tab)),
					 _mm_cmpeq_epi8(x, cr));

		m |= (uint64_t)(uint16_t)_mm_movemask_epi8(b) << (16 * i);
	}
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* eight bytes at a time, no branch: their top bits gathered by a multiply */
	for (i = 0; i < 8; i++) {
		uint64_t x, b;

		memcpy(&x, p + 8 * i, 8);
		b = lct_eq8(x, ' ') | lct_eq8(x, '\t') | lct_eq8(x, '\r');
		m |= ((b * UINT64_C(0x0002040810204081)) >> 56) << (8 * i);
	}
#else
	for (i = 0; i < 64; i++)
		m |= (uint64_t)LCT_BLANK(p[i]) << i;
#endif
	return m;
}

/*
 * The words of a line into tok (at most LCT_LINE_TOKS): their count, or -1
 * for more.  64 bytes at a time as a mask of blanks, whose edges are the
 * words' starts and ends: no branch per byte.
 */
static int lct_tokens(const char *p, size_t n, struct lct_tok *tok)
{
	char pad[64];
	uint64_t prev = 1;	/* what comes before the line counts as a blank */
	size_t off;
	int ns = 0, ne = 0;

	for (off = 0; off < n; off += 64) {
		const char *b = p + off;
		uint64_t blank, starts, ends;

		if (n - off < 64) {
			/* the last bytes, the rest blanks (no read past the text) */
			memcpy(pad, b, n - off);
			memset(pad + (n - off), ' ', 64 - (n - off));
			b = pad;
		}
		blank = lct_blanks64(b);
		starts = ~blank & ((blank << 1) | prev);
		ends = blank & ~((blank << 1) | prev);
		prev = blank >> 63;
		for (; starts != 0; starts &= starts - 1) {
			if (ns == LCT_LINE_TOKS)
				return -1;
			tok[ns++].p = p + off + lct_ctz64(starts);
		}
		for (; ends != 0; ends &= ends - 1, ne++)
			tok[ne].n = (size_t)(p + off + lct_ctz64(ends) - tok[ne].p);
	}
	if (ne < ns)
		tok[ne].n = (size_t)(p + n - tok[ne].p);
	return ns;
}

struct lct_lineargs {
	const char *p;
	size_t n;
	struct lct_line *ln;
};

/*
 * The option at tok[i] (its index in lct_save_opts), raising when unknown
 * or without a value; -1 for an option a delete leaves out.
 */
static int lct_line_opt(lua_State *L, struct lct_line *ln, const struct lct_tok *tok,
			int i, int nt)
{
	int k = lct_opt_find(&tok[i]);

	if (k < 0)
		lct_error(L, "%s: unsupported option %.*s", ln->fname,
			  (int)(tok[i].n > 40 ? 40 : tok[i].n), tok[i].p);
	if (i + 1 >= nt)
		lct_error(L, "%s: option %.*s needs a value", ln->fname,
			  (int)tok[i].n, tok[i].p);
	if (ln->op == 'D' && !ln->partial && !lct_field_in(lct_save_opts[k].id, LCT_K_TUPLE))
		return -1;	/* a delete names the flow: the rest is left out */
	return k;
}

/* Protected: parses one line (tokens, then the options and their values). */
static int lct_line_parse(lua_State *L)
{
	struct lct_lineargs *a = lua_touserdata(L, 1);
	struct lct_line *ln = a->ln;
	struct lct_tok tok[LCT_LINE_TOKS];
	int opt[LCT_LINE_TOKS], fid[LCT_LINE_TOKS];
	int nt = lct_tokens(a->p, a->n, tok), i = 0, first;

	if (nt < 0)
		return lct_error(L, "%s: too many options", ln->fname);
	ln->keys = 2;
	ln->op = 'A';
	if (nt > 0) {
		if (lct_tok_is(&tok[0], "-A") || lct_tok_is(&tok[0], "--add"))
			ln->op = 'A', i = 1;
		else if (lct_tok_is(&tok[0], "-I") || lct_tok_is(&tok[0], "--create"))
			ln->op = 'I', i = 1;
		else if (lct_tok_is(&tok[0], "-U") || lct_tok_is(&tok[0], "--update"))
			ln->op = 'U', i = 1;
		else if (lct_tok_is(&tok[0], "-D") || lct_tok_is(&tok[0], "--delete"))
			ln->op = 'D', i = 1;
	}
	if (ln->op != 'U' && ln->op != 'D')
		ln->partial = 0;
	first = i;
	if (ln->tables) {
		uint64_t seen = 0;

		/* the options and their numbers first: those errors come first */
		for (; i < nt; i += 2) {
			opt[i] = lct_line_opt(L, ln, tok, i, nt);
			if (opt[i] >= 0) {
				fid[i] = lct_save_opts[opt[i]].id;
				lct_line_check(L, ln, fid[i], lct_save_opts[opt[i]].kind, &tok[i + 1], &seen);
			}
		}
		ln->kinds = ln->partial ? LCT_K_SPEC | LCT_K_CHANGES :
			    ln->op == 'U' ? LCT_K_TUPLE | LCT_K_CHANGES :
			    ln->op == 'D' ? LCT_K_TUPLE : LCT_K_SPEC;
		lua_createtable(L, 0, 16);
		ln->tidx = lua_gettop(L);
	}
	for (i = first; i < nt; i += 2) {
		int k = ln->tables ? opt[i] : lct_line_opt(L, ln, tok, i, nt);

		if (k >= 0)
			lct_line_value(L, ln, lct_save_opts[k].id, lct_save_opts[k].kind, &tok[i + 1]);
	}
	for (i = 0; i < 2; i++)
		if (ln->nat[i].n > 0 && ln->op != 'D')
			lct_line_nat(L, ln, i);
	if (ln->tables) {
		/* checked as the load would read it; a filter line needs no field */
		if (ln->partial)
			return 1;
		if (ln->dups)
			lct_spec_read(L, ln->tidx, ln->kinds, ln->fname, ln->s);
		else
			lct_reader_finish(L, ln->kinds, ln->fname, ln->s, &ln->r);
		return 1;
	}
	lct_reader_finish(L, ln->op == 'U' ? LCT_K_TUPLE : ln->op == 'D' ? LCT_K_TUPLE : LCT_K_SPEC,
			  ln->fname, ln->s, &ln->r);
	return 0;
}

/*
 * One line into s (and *op), or a message on the stack (-1).  A delete
 * line's non-tuple fields (-t, -u...) are left out, as they mean nothing.
 * keys: 0, or (parse_save) the index of its field names: the line's table
 * is pushed.
 */
int lct_save_line(lua_State *L, const char *p, size_t n, const char *fname,
		  struct lct_spec *s, int *op, int keys, int partial)
{
	int tables = keys != 0;
	struct lct_lineargs a;
	struct lct_line ln;
	int top = lua_gettop(L);

	memset(&ln, 0, sizeof(ln));
	memset(s, 0, sizeof(*s));
	ln.fname = fname;
	ln.s = s;
	ln.tables = tables;
	ln.partial = tables && partial;
	lct_reader_init(&ln.r);
	a.p = p;
	a.n = n;
	a.ln = &ln;
	if (n > LCT_SAVE_LINE_MAX) {
		lua_pushfstring(L, "%s: line too long (%d bytes; at most %d)", fname, (int)n,
				LCT_SAVE_LINE_MAX);
		return -1;
	}
	lua_pushcfunction(L, lct_line_parse);
	lua_pushlightuserdata(L, &a);
	if (tables)
		lua_pushvalue(L, keys);
	if (lua_pcall(L, tables ? 2 : 1, tables ? 1 : 0, 0) != 0)
		return -1;
	*op = ln.op;
	if (!tables)
		lua_settop(L, top);
	return 0;
}

/* The next line of text from *pos: its start and length (no newline); 0 at the end. */
int lct_save_next(const char *text, size_t len, size_t *pos, const char **line, size_t *n)
{
	const char *nl;

	if (*pos >= len)
		return 0;
	*line = text + *pos;
	nl = memchr(*line, '\n', len - *pos);
	*n = nl ? (size_t)(nl - *line) : len - *pos;
	*pos += *n + 1;
	return 1;
}

/* "load: line N", the name a line's errors carry, into fname (at least 32 bytes). */
void lct_save_fname(char *fname, int lineno)
{
	memcpy(fname, "load: line ", 11);
	*lct_utoa(fname + 11, (unsigned int)lineno) = '\0';
}

/* A line with nothing to do: blank, or a comment. */
int lct_save_blank(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '#')
			return 1;
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return 0;
	}
	return 1;
}

/* Strips the script position a raised message starts with. */
const char *lct_save_msg(lua_State *L, int idx, const char *fname)
{
	const char *m = lua_tostring(L, idx), *p = m ? strstr(m, fname) : NULL;

	return p ? p : m ? m : fname;
}

/*
 * core.parse_save(text [, filters]) -> specs, errors, lines, ops: the lines
 * as spec tables; errors {line =, errno = EINVAL, message =}; lines[i] the
 * line number of specs[i]; ops[i] "-A", "-I", "-U" or "-D".  filters: the
 * -D and -U lines as the fields of a filter (and of the changes): every
 * option kept, none required.
 */
static int lct_f_parse_save(lua_State *L)
{
	size_t len, pos = 0, n;
	const char *text = luaL_checklstring(L, 1, &len), *line;
	int lineno = 0, nspec = 0, nerr = 0, filters = lua_toboolean(L, 2);

	lua_settop(L, 1);
	lua_newtable(L);	/* 2 specs */
	lua_newtable(L);	/* 3 errors */
	lua_newtable(L);	/* 4 lines */
	lua_newtable(L);	/* 5 ops */
	while (lct_save_next(text, len, &pos, &line, &n)) {
		char fname[48];
		struct lct_spec s;
		int op;

		lineno++;
		if (lct_save_blank(line, n))
			continue;
		lct_save_fname(fname, lineno);
		if (lct_save_line(L, line, n, fname, &s, &op, lua_upvalueindex(1), filters) != 0) {
			lua_createtable(L, 0, 3);
			lua_pushinteger(L, lineno);
			lua_setfield(L, -2, "line");
			lua_pushinteger(L, EINVAL);
			lua_setfield(L, -2, "errno");
			lua_pushstring(L, lct_save_msg(L, -2, "load: line"));
			lua_setfield(L, -2, "message");
			lua_rawseti(L, 3, ++nerr);
			lua_pop(L, 1);
			continue;
		}
		lua_rawseti(L, 2, ++nspec);
		lua_pushinteger(L, lineno);
		lua_rawseti(L, 4, nspec);
		lua_pushstring(L, op == 'I' ? "-I" : op == 'U' ? "-U" : op == 'D' ? "-D" : "-A");
		lua_rawseti(L, 5, nspec);
	}
	return 4;
}

/*
 * core.save_has_du(text) -> does a line begin with -D, --delete, -U or
 * --update (after blanks)?  load reads such text line by line in Lua.
 */
static int lct_f_save_has_du(lua_State *L)
{
	size_t len, pos = 0, n;
	const char *text = luaL_checklstring(L, 1, &len), *line;

	while (lct_save_next(text, len, &pos, &line, &n)) {
		const char *p = line, *end = line + n;
		struct lct_tok t;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end || *p != '-')
			continue;
		t.p = p;
		while (p < end && !LCT_BLANK(*p))
			p++;
		t.n = (size_t)(p - t.p);
		if (lct_tok_is(&t, "-D") || lct_tok_is(&t, "--delete") || lct_tok_is(&t, "-U") ||
		    lct_tok_is(&t, "--update")) {
			lua_pushboolean(L, 1);
			return 1;
		}
	}
	lua_pushboolean(L, 0);
	return 1;
}

/* The options in lct_save_opts named in list, as a mask of their indices. */
static uint64_t lct_opt_mask(const char *const *list, size_t n)
{
	uint64_t m = 0;
	size_t i;

	for (i = 0; i < n && list[i] != NULL; i++) {
		struct lct_tok t = { list[i], strlen(list[i]) };

		m |= (uint64_t)1 << lct_opt_find(&t);
	}
	return m;
}

/*
 * core.save_plain(text) -> true, lines | false, line, why: is every line one that
 * conntrack -R and load read alike?  That is a creation as -o save writes
 * it: "-A " or "-I " first, words split by spaces (no quote, tab or CR),
 * -p, and what conntrack requires on a create of that protocol (tcp
 * --state; sctp --state and both vtags; dccp --state and --role; icmp and
 * icmpv6 the type and code), none of the options conntrack refuses there
 * (-f, -l, --label-del, --helper, -c) and load takes.  Empty lines and
 * comments ("#" first) pass.
 */
static int lct_f_save_plain(lua_State *L)
{
	static const char *const refused[] = { "-f", "--family", "-l", "--label", "--label-del",
		"--helper", "-c", "--secmark" };
	static const struct {
		const char *proto, *needs[3];
	} needs[] = {
		{ "tcp", { "--state" } }, { "sctp", { "--state", "--orig-vtag", "--reply-vtag" } },
		{ "dccp", { "--state", "--role" } }, { "icmp", { "--icmp-type", "--icmp-code" } },
		{ "icmpv6", { "--icmpv6-type", "--icmpv6-code" } },
	};
	uint64_t bad = lct_opt_mask(refused, sizeof(refused) / sizeof(refused[0]));
	size_t len, pos = 0, n, k;
	const char *text = luaL_checklstring(L, 1, &len), *line, *why = NULL;
	int lineno = 0, odd;

	/* lines are searched for these only when the text has one */
	odd = memchr(text, '"', len) || memchr(text, '\t', len) || memchr(text, '\r', len);

	while (why == NULL && lct_save_next(text, len, &pos, &line, &n)) {
		struct lct_tok tok[LCT_LINE_TOKS], name;
		uint64_t after = 0;	/* the options after -p's value, with a value */
		int nt, i, p = -1;

		lineno++;
		if (n == 0 || line[0] == '#')
			continue;
		if (n < 3 || line[0] != '-' || (line[1] != 'A' && line[1] != 'I') || line[2] != ' ') {
			why = "not -A or -I";
			break;
		}
		if (odd && (memchr(line, '"', n) || memchr(line, '\t', n) || memchr(line, '\r', n))) {
			why = "a quote, a tab or a CR";
			break;
		}
		nt = lct_tokens(line, n, tok);
		if (nt < 0) {
			why = "too many words";
			break;
		}
		for (i = 1; i < nt; i++) {
			int o = lct_opt_find(&tok[i]);

			if (o < 0)
				continue;
			if ((bad >> o) & 1) {
				why = "an option conntrack refuses on a create";
				break;
			}
			if (p < 0 && o == 14 && i + 1 < nt)	/* -p */
				p = i;
			else if (p >= 0 && i > p + 1 && i + 1 < nt)
				after |= (uint64_t)1 << o;
		}
		if (why != NULL)
			break;
		if (p < 0) {
			why = "no -p";
			break;
		}
		/* the protocol: the letters and digits its value starts with */
		name = tok[p + 1];
		for (k = 0; k < name.n && ((name.p[k] >= 'a' && name.p[k] <= 'z') ||
		     (name.p[k] >= 'A' && name.p[k] <= 'Z') || (name.p[k] >= '0' && name.p[k] <= '9')); k++)
			;
		name.n = k;
		for (k = 0; k < sizeof(needs) / sizeof(needs[0]); k++) {
			uint64_t m;

			if (!lct_tok_is(&name, needs[k].proto))
				continue;
			m = lct_opt_mask(needs[k].needs, 3);
			if ((after & m) != m)
				why = "an option conntrack requires on a create is missing";
		}
	}
	if (why == NULL) {
		lua_pushboolean(L, 1);
		lua_pushinteger(L, lineno);
		return 2;
	}
	lua_pushboolean(L, 0);
	lua_pushinteger(L, lineno);
	lua_pushstring(L, why);
	return 3;
}

static const luaL_Reg lct_save_funcs[] = {
	{"parse_save", lct_f_parse_save},
	{"save_has_du", lct_f_save_has_du},
	{"save_plain", lct_f_save_plain},
	{NULL, NULL}
};

void lct_save_open(lua_State *L)
{
	size_t k;

	/* lct_opt_find was written from lct_save_opts: they must agree. */
	for (k = 0; k < LCT_NSAVEOPTS; k++) {
		struct lct_tok t = { lct_save_opts[k].opt, strlen(lct_save_opts[k].opt) };

		if (lct_opt_find(&t) != (int)k)
			luaL_error(L, "conntrack.core: save option %s not found", t.p);
	}
	/* parse_save's upvalue: the field names by id + 1, interned once */
	lua_newtable(L);
	for (k = 0; lct_field_name((int)k) != NULL; k++) {
		lua_pushstring(L, lct_field_name((int)k));
		lua_rawseti(L, -2, (int)k + 1);
	}
	lct_setfuncs(L, lct_save_funcs, 1);
}
