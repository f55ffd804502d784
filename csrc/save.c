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
	const char *opt, *field;
	int kind;
} lct_save_opts[] = {
	{"-s", "src", V_STR}, {"--orig-src", "src", V_STR}, {"--src", "src", V_STR},
	{"-d", "dst", V_STR}, {"--orig-dst", "dst", V_STR}, {"--dst", "dst", V_STR},
	{"-r", "reply_src", V_STR}, {"--reply-src", "reply_src", V_STR},
	{"-q", "reply_dst", V_STR}, {"--reply-dst", "reply_dst", V_STR},
	{"-g", "reply_src", V_DNAT}, {"--dst-nat", "reply_src", V_DNAT},
	{"-n", "reply_dst", V_SNAT}, {"--src-nat", "reply_dst", V_SNAT},
	{"-p", "proto", V_PROTO}, {"--proto", "proto", V_PROTO}, {"--protonum", "proto", V_PROTO},
	{"-f", "family", V_STR}, {"--family", "family", V_STR},
	{"--sport", "sport", V_INT}, {"--orig-port-src", "sport", V_INT},
	{"--dport", "dport", V_INT}, {"--orig-port-dst", "dport", V_INT},
	{"--reply-port-src", "reply_sport", V_INT}, {"--reply-port-dst", "reply_dport", V_INT},
	{"--state", "state", V_STR},
	{"--icmp-type", "icmp_type", V_INT}, {"--icmp-code", "icmp_code", V_INT},
	{"--icmp-id", "icmp_id", V_INT}, {"--icmpv6-type", "icmp_type", V_INT},
	{"--icmpv6-code", "icmp_code", V_INT}, {"--icmpv6-id", "icmp_id", V_INT},
	{"-t", "timeout", V_INT}, {"--timeout", "timeout", V_INT},
	{"-u", "status", V_STATUS}, {"--status", "status", V_STATUS},
	{"-c", "secmark", V_INT}, {"--secmark", "secmark", V_INT},
	{"-w", "zone", V_INT}, {"--zone", "zone", V_INT},
	{"--orig-zone", "orig_zone", V_INT}, {"--reply-zone", "reply_zone", V_INT},
	{"-m", "mark", V_MARK}, {"--mark", "mark", V_MARK},
	{"-l", "labels", V_LABELS}, {"--label", "labels", V_LABELS},
	{"--label-add", "label_add", V_LABELS}, {"--label-del", "label_del", V_LABELS},
	{"--orig-vtag", "orig_vtag", V_INT}, {"--reply-vtag", "reply_vtag", V_INT},
	{"--role", "role", V_STR},
	{"--srckey", "srckey", V_INT}, {"--dstkey", "dstkey", V_INT},
	{"--reply-key-src", "reply_srckey", V_INT}, {"--reply-key-dst", "reply_dstkey", V_INT},
	{"--helper", "helper", V_STR},
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
 * The option a token names: its index in lct_save_opts, or -1.  A switch on
 * the length, then the few options of that length (written from the
 * table: lct_save_open checks at load that the two agree).
 */
static int lct_opt_find(const struct lct_tok *t)
{
	switch (t->n) {
	case 2:
		if (memcmp(t->p, "-s", 2) == 0)
			return 0;
		if (memcmp(t->p, "-d", 2) == 0)
			return 3;
		if (memcmp(t->p, "-r", 2) == 0)
			return 6;
		if (memcmp(t->p, "-q", 2) == 0)
			return 8;
		if (memcmp(t->p, "-g", 2) == 0)
			return 10;
		if (memcmp(t->p, "-n", 2) == 0)
			return 12;
		if (memcmp(t->p, "-p", 2) == 0)
			return 14;
		if (memcmp(t->p, "-f", 2) == 0)
			return 17;
		if (memcmp(t->p, "-t", 2) == 0)
			return 32;
		if (memcmp(t->p, "-u", 2) == 0)
			return 34;
		if (memcmp(t->p, "-c", 2) == 0)
			return 36;
		if (memcmp(t->p, "-w", 2) == 0)
			return 38;
		if (memcmp(t->p, "-m", 2) == 0)
			return 42;
		if (memcmp(t->p, "-l", 2) == 0)
			return 44;
		break;
	case 5:
		if (memcmp(t->p, "--src", 5) == 0)
			return 2;
		if (memcmp(t->p, "--dst", 5) == 0)
			return 5;
		break;
	case 6:
		if (memcmp(t->p, "--zone", 6) == 0)
			return 39;
		if (memcmp(t->p, "--mark", 6) == 0)
			return 43;
		if (memcmp(t->p, "--role", 6) == 0)
			return 50;
		break;
	case 7:
		if (memcmp(t->p, "--proto", 7) == 0)
			return 15;
		if (memcmp(t->p, "--sport", 7) == 0)
			return 19;
		if (memcmp(t->p, "--dport", 7) == 0)
			return 21;
		if (memcmp(t->p, "--state", 7) == 0)
			return 25;
		if (memcmp(t->p, "--label", 7) == 0)
			return 45;
		break;
	case 8:
		if (memcmp(t->p, "--family", 8) == 0)
			return 18;
		if (memcmp(t->p, "--status", 8) == 0)
			return 35;
		if (memcmp(t->p, "--srckey", 8) == 0)
			return 51;
		if (memcmp(t->p, "--dstkey", 8) == 0)
			return 52;
		if (memcmp(t->p, "--helper", 8) == 0)
			return 55;
		break;
	case 9:
		if (memcmp(t->p, "--dst-nat", 9) == 0)
			return 11;
		if (memcmp(t->p, "--src-nat", 9) == 0)
			return 13;
		if (memcmp(t->p, "--icmp-id", 9) == 0)
			return 28;
		if (memcmp(t->p, "--timeout", 9) == 0)
			return 33;
		if (memcmp(t->p, "--secmark", 9) == 0)
			return 37;
		break;
	case 10:
		if (memcmp(t->p, "--orig-src", 10) == 0)
			return 1;
		if (memcmp(t->p, "--orig-dst", 10) == 0)
			return 4;
		if (memcmp(t->p, "--protonum", 10) == 0)
			return 16;
		break;
	case 11:
		if (memcmp(t->p, "--reply-src", 11) == 0)
			return 7;
		if (memcmp(t->p, "--reply-dst", 11) == 0)
			return 9;
		if (memcmp(t->p, "--icmp-type", 11) == 0)
			return 26;
		if (memcmp(t->p, "--icmp-code", 11) == 0)
			return 27;
		if (memcmp(t->p, "--icmpv6-id", 11) == 0)
			return 31;
		if (memcmp(t->p, "--orig-zone", 11) == 0)
			return 40;
		if (memcmp(t->p, "--label-add", 11) == 0)
			return 46;
		if (memcmp(t->p, "--label-del", 11) == 0)
			return 47;
		if (memcmp(t->p, "--orig-vtag", 11) == 0)
			return 48;
		break;
	case 12:
		if (memcmp(t->p, "--reply-zone", 12) == 0)
			return 41;
		if (memcmp(t->p, "--reply-vtag", 12) == 0)
			return 49;
		break;
	case 13:
		if (memcmp(t->p, "--icmpv6-type", 13) == 0)
			return 29;
		if (memcmp(t->p, "--icmpv6-code", 13) == 0)
			return 30;
		break;
	case 15:
		if (memcmp(t->p, "--orig-port-src", 15) == 0)
			return 20;
		if (memcmp(t->p, "--orig-port-dst", 15) == 0)
			return 22;
		if (memcmp(t->p, "--reply-key-src", 15) == 0)
			return 53;
		if (memcmp(t->p, "--reply-key-dst", 15) == 0)
			return 54;
		break;
	case 16:
		if (memcmp(t->p, "--reply-port-src", 16) == 0)
			return 23;
		if (memcmp(t->p, "--reply-port-dst", 16) == 0)
			return 24;
		break;
	}
	return -1;
}

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
static void lct_line_check(lua_State *L, struct lct_line *ln, int id, const char *field, int kind,
			   const struct lct_tok *v, uint64_t *seen)
{
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
			id = lct_field_id("mark_mask");
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
static int lct_line_prefix(lua_State *L, struct lct_line *ln, int id, const char *field,
			   const struct lct_tok *v)
{
	const char *slash = memchr(v->p, '/', v->n);
	struct lct_cidr c;

	if (!ln->partial || slash == NULL || (strcmp(field, "src") != 0 && strcmp(field, "dst") != 0))
		return 0;
	lua_pushlstring(L, v->p, v->n);
	if (lct_cidr_parse(v->p, v->n, &c) < 0)
		lct_argerror(L, ln->fname, field, "malformed address or prefix %s", lct_shortval(L, -1));
	lua_pushlstring(L, v->p, (size_t)(slash - v->p));
	if (!ln->dups)
		lct_reader_kfield(L, ln->fname, id, ln->kinds, ln->s, &ln->r);
	lua_pop(L, 1);
	lua_rawset(L, ln->tidx);
	return 1;
}

static void lct_line_value(lua_State *L, struct lct_line *ln, int id, const char *field, int kind,
			   const struct lct_tok *v)
{
	int64_t n;

	lct_line_key(L, ln, id);
	switch (kind) {
	case V_INT:
		n = lct_num(v, 10);
		if (n < 0)
			lct_error(L, "%s: option for '%s': number expected, got '%.*s'", ln->fname,
				  field, (int)(v->n > 40 ? 40 : v->n), v->p);
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
				lct_line_key(L, ln, lct_field_id("mark_mask"));
				lua_pushinteger(L, (lua_Integer)mask);
				lct_line_set(L, ln, lct_field_id("mark_mask"));
			} else {
				lua_pushinteger(L, (lua_Integer)mask);
				lct_reader_field(L, ln->fname, lct_field_id("mark_mask"), ln->s, &ln->r);
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
		if (ln->tables && lct_line_prefix(L, ln, id, field, v))
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
	const char *field = dnat ? "dnat" : "snat";

	if (ln->tables) {
		/* the reply's port, as the table holds it */
		lct_rawfield(L, ln->tidx, dnat ? "reply_sport" : "reply_dport");
		port = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
		lua_pop(L, 1);
	}
	lct_line_key(L, ln, lct_field_id(field));
	lua_pushlstring(L, v->p, v->n);
	if (port >= 0)
		lua_pushfstring(L, v6 ? "[%s]:%d" : "%s:%d", lua_tostring(L, -1), port);
	if (ln->tables) {
		if (port >= 0)
			lua_remove(L, -2);
		lct_line_set(L, ln, lct_field_id(field));
		return;
	}
	lct_reader_field(L, ln->fname, lct_field_id(field), ln->s, &ln->r);
	lua_pop(L, port >= 0 ? 2 : 1);
}

/* ' ', '\t', '\r': one test for the common case (a printable character) */
#define LCT_BLANK(c)	((unsigned char)(c) <= ' ' && ((c) == ' ' || (c) == '\t' || (c) == '\r'))

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
	if (ln->op == 'D' && !ln->partial && !lct_field_in(lct_field_id(lct_save_opts[k].field), LCT_K_TUPLE))
		return -1;	/* a delete names the flow: the rest is left out */
	return k;
}

/* Protected: parses one line (tokens, then the options and their values). */
static int lct_line_parse(lua_State *L)
{
	struct lct_lineargs *a = lua_touserdata(L, 1);
	struct lct_line *ln = a->ln;
	struct lct_tok tok[256];
	int opt[256], fid[256];
	const char *p = a->p, *end = a->p + a->n;
	int nt = 0, i = 0, first;

	while (p < end) {
		while (p < end && LCT_BLANK(*p))
			p++;
		if (p == end)
			break;
		if (nt == 256)
			return lct_error(L, "%s: too many options", ln->fname);
		tok[nt].p = p;
		while (p < end && !LCT_BLANK(*p))
			p++;
		tok[nt].n = (size_t)(p - tok[nt].p);
		nt++;
	}
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
				fid[i] = lct_field_id(lct_save_opts[opt[i]].field);
				lct_line_check(L, ln, fid[i], lct_save_opts[opt[i]].field,
					       lct_save_opts[opt[i]].kind, &tok[i + 1], &seen);
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
			lct_line_value(L, ln, ln->tables ? fid[i] : lct_field_id(lct_save_opts[k].field),
				       lct_save_opts[k].field, lct_save_opts[k].kind, &tok[i + 1]);
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

static const luaL_Reg lct_save_funcs[] = {
	{"parse_save", lct_f_parse_save},
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
