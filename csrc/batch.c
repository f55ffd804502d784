/*
 * Batches: many create/add/update/delete/put requests per sendmsg, only
 * failures acknowledged (and the last message, to know where the kernel got
 * to), so a batch of thousands costs a few system calls.  An item that
 * cannot be read becomes a failure like a kernel refusal: a batch never
 * raises after it has sent part of its work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lct.h"

/* The handle's batch object and buffer, made once (freed by its __gc). */
static struct lct_batch *lct_batch_of(lua_State *L, struct lct_handle *h, const char *fname)
{
	struct mnl_socket *nl = lct_handle_sock(L, h, fname);

	if (h->batchbuf == NULL) {
		h->batchbuf = malloc(LCT_BATCH_BYTES);
		if (h->batchbuf == NULL)
			return NULL;
	}
	if (h->batch == NULL) {
		struct lct_batch *bt = malloc(sizeof(*bt));

		if (bt == NULL || lct_batch_init(bt, h->batchbuf) != 0) {
			free(bt);
			return NULL;
		}
		h->batch = bt;
	}
	if (!h->batch_ready) {
		lct_batch_setsock(nl);
		h->batch_ready = 1;
	}
	lct_batch_reset(h->batch);
	return h->batch;
}

struct lct_brun {
	struct lct_handle *h;
	struct lct_batch *bt;
	const char *fname;	/* the function the user called */
	const char *op;		/* create, add, update, delete, put */
	int ft;			/* the failures table */
	int items;		/* put: the items' table */
	int put;		/* put: 1 creating, 2 updating, 3 updating without a field */
	const char *text;	/* load_text: the save text (put reads a line again) */
	int ok, missing, failed;
	int item[LCT_BATCH_MAX];	/* item index of each message in the batch */
	int line[LCT_BATCH_MAX];	/* load_text: its line */
	char kind[LCT_BATCH_MAX];	/* load_text: its command ('I', 'A', 'U', 'D', 'P' put) */
	size_t off[LCT_BATCH_MAX], len[LCT_BATCH_MAX];	/* load_text put: its line in text */
};

/* An item put found there (EEXIST), or refused a field of (EBUSY, EPERM). */
struct lct_again {
	int index, err, line;
	size_t off, len;
};

static void lct_brun_fail(lua_State *L, struct lct_brun *r, int index, int err, int msgidx)
{
	r->failed++;
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, index);
	lua_setfield(L, -2, "index");
	lua_pushinteger(L, err);
	lua_setfield(L, -2, "errno");
	if (msgidx != 0) {
		/* The reader's message, without the script position it carries. */
		const char *msg = lua_tostring(L, msgidx), *p = msg ? strstr(msg, "batch: item") : NULL;

		lua_pushstring(L, p ? p : msg ? msg : "batch: bad item");
	} else
		lct_pushmsg(L, r->op, err);
	lua_setfield(L, -2, "message");
	lua_rawseti(L, r->ft, r->failed);
}

/* The line of the last failure recorded (load_text). */
static void lct_brun_line(lua_State *L, struct lct_brun *r, int line)
{
	lua_rawgeti(L, r->ft, r->failed);
	lua_pushinteger(L, line);
	lua_setfield(L, -2, "line");
	lua_pop(L, 1);
}

/* "batch: item I: op", the name an item's errors carry (48 bytes will do). */
static void lct_item_name(char *buf, int i, const char *op)
{
	char *p = lct_utoa(buf + 12, (unsigned int)i);

	memcpy(buf, "batch: item ", 12);
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, op, strlen(op) + 1);
}

static int lct_brun_put_updates(lua_State *L, struct lct_brun *r,
				const struct lct_again *items, int n);

static int lct_brun_answers(lua_State *L, struct lct_brun *r, const struct lct_batch *bt,
			    const int *items, const int *lines, const char *kinds, int sent);

/* Sends what is collected; records failures.  0 or an errno for the whole batch. */
static int lct_brun_flush(lua_State *L, struct lct_brun *r)
{
	struct lct_batch *bt = r->bt;
	int sent = bt->count, err;
	int items[LCT_BATCH_MAX], lines[LCT_BATCH_MAX];

	if (sent == 0)
		return 0;
	memcpy(items, r->item, sizeof(int) * (size_t)sent);
	memcpy(lines, r->line, sizeof(int) * (size_t)sent);
	err = lct_batch_flush(bt, lct_handle_sock(L, r->h, r->fname), r->h->rx, sizeof(r->h->rx));
	if (err != 0)
		return err;
	return lct_brun_answers(L, r, bt, items, lines, r->kind, sent);
}

/*
 * The failures of a batch answered (sent messages, of items items and, for
 * load_text, lines lines and kinds kinds): counted, recorded, or (put) sent
 * again as updates.  Only now Lua values: the exchange is over.
 */
static int lct_brun_answers(lua_State *L, struct lct_brun *r, const struct lct_batch *bt,
			    const int *items, const int *lines, const char *kinds, int sent)
{
	int i, bad = 0, nagain = 0;
	struct lct_again again[LCT_BATCH_MAX];

	for (i = 0; i < bt->nfail; i++) {
		int e = bt->fail[i].err, at = bt->fail[i].index, idx = items[at];
		char k = kinds[at];

		bad++;
		if (r->put != 0 && (k == 0 || k == 'P')) {
			/* there: update it; or again, without what the kernel refused */
			if ((r->put == 1 && e == EEXIST) || (r->put == 2 && (e == EBUSY || e == EPERM))) {
				struct lct_again *a = &again[nagain++];

				a->index = idx;
				a->err = e;
				a->line = lines[at];
				a->off = r->off[at];
				a->len = r->len[at];
			} else {
				lct_brun_fail(L, r, idx, e, 0);
				if (k != 0)
					lct_brun_line(L, r, lines[at]);
			}
			continue;
		}
		if (k == 0 && e == ENOENT && strcmp(r->op, "create") != 0 && strcmp(r->op, "add") != 0)
			r->missing++;
		else if (k == 0 && e == EEXIST && strcmp(r->op, "add") == 0)
			r->missing++;	/* for add: already there, left as it is */
		else if (k != 0 && ((k == 'A' && e == EEXIST) || ((k == 'U' || k == 'D') && e == ENOENT)))
			r->missing++;
		else {
			lct_brun_fail(L, r, idx, e, 0);
			if (k != 0)
				lct_brun_line(L, r, lines[at]);
		}
	}
	r->ok += sent - bad;
	if (r->put >= 2)
		r->missing += sent - bad;	/* updated: flows that were there */
	if (nagain > 0)
		return lct_brun_put_updates(L, r, again, nagain);
	return 0;
}

/*
 * put: the items that were there, updated with what an update can change
 * (timeout, mark, status, labels, protocol state and window fields): NAT,
 * helper and secmark are the kernel's once a flow exists.  The kernel
 * stops an update at a field it refuses, and the fields it takes after it
 * (protocol info, mark, labels) stay as they were: a status that lacks
 * SEEN_REPLY or ASSURED where the flow has them (EBUSY), the timeout of a
 * FIXED_TIMEOUT flow (EPERM).  Such items go once more without that field.
 */
static int lct_brun_put_updates(lua_State *L, struct lct_brun *r,
				const struct lct_again *items, int n)
{
	static const uint64_t changeable = LCT_S_ORIG | LCT_S_ZONE | LCT_S_TIMEOUT | LCT_S_MARK |
		LCT_S_STATUS | LCT_S_LABELS | LCT_S_LABELMASK | LCT_S_STATE | LCT_S_TCPFLAGS0 |
		LCT_S_TCPFLAGS1 | LCT_S_WSCALE0 | LCT_S_WSCALE1 | LCT_S_VTAG0 | LCT_S_VTAG1 | LCT_S_ROLE;
	int phase = r->put, i, err = 0;

	r->put = phase + 1;
	for (i = 0; i < n; i++) {
		struct nlmsghdr *nlh = lct_batch_cur(r->bt);
		struct lct_spec s;
		int idx = items[i].index, bad;

		/* read once already: it reads the same again (raw access, no Lua code) */
		if (r->text != NULL) {
			char fname[48];
			int op;

			lct_save_fname(fname, items[i].line);
			bad = lct_save_line(L, r->text + items[i].off, items[i].len, fname, &s, &op, 0, 0);
			if (bad != 0)
				lua_pushstring(L, lct_save_msg(L, -1, "load: line"));
		} else {
			char iname[48];

			lct_item_name(iname, idx, "put");
			lua_rawgeti(L, r->items, idx);
			bad = lct_spec_read_p(L, -1, LCT_K_SPEC, iname, &s, 0);
		}
		if (bad != 0) {
			lct_brun_fail(L, r, idx, EINVAL, lua_gettop(L));
			if (r->text != NULL)
				lct_brun_line(L, r, items[i].line);
			lua_pop(L, 2);
			continue;
		}
		if (r->text == NULL)
			lua_pop(L, 1);
		s.has &= changeable;
		if (r->put == 3) {
			uint64_t refused = items[i].err == EPERM ? LCT_S_TIMEOUT : LCT_S_STATUS;

			if (!(s.has & refused)) {
				/* refused for another reason: the answer stands */
				lct_brun_fail(L, r, idx, items[i].err, 0);
				if (r->text != NULL)
					lct_brun_line(L, r, items[i].line);
				continue;
			}
			s.has &= ~refused;
		}
		lct_nl_req(nlh, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW, 0, AF_UNSPEC, 0);
		lct_spec_put(nlh, &s, LCT_K_CHANGES);
		r->item[r->bt->count] = idx;
		r->kind[r->bt->count] = r->text != NULL ? 'P' : 0;
		r->line[r->bt->count] = items[i].line;
		r->off[r->bt->count] = items[i].off;
		r->len[r->bt->count] = items[i].len;
		if (lct_batch_add(r->bt, lct_handle_seq(r->h))) {
			err = lct_brun_flush(L, r);
			if (err != 0)
				break;
		}
	}
	err = i < n ? err : lct_brun_flush(L, r);
	r->put = phase;
	return err;
}

/*
 * Sending ahead.  Where a run has several batches to send and the process
 * may use two CPUs, a thread of the run's own sends each batch and reads
 * its answers (the kernel does the work inside that sendmsg, on the other
 * CPU) while the caller fills the next batch from Lua values.  A batch's
 * answers are read before the next one goes, so the items meet the kernel
 * in their order.  A userdata: a Lua error ends the thread (__gc).
 */
struct lct_bpipe {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int inited;		/* mu and cv */
	int running;		/* th made and not joined */
	unsigned int forks;	/* lct_forks_now() when th was made */
	struct lct_handle *owner;	/* the handle it sends for */
	const char *fname;	/* the function the user called */
	struct mnl_socket *nl;	/* the thread's own socket */
	int stop;
	int state;		/* 0: nothing in flight, 1: the thread's, 2: answered */
	int flying;		/* which batch is in flight */
	int err;		/* its lct_batch_flush */
	int sent[2];
	struct lct_batch bt[2];
	int item[2][LCT_BATCH_MAX];
	int line[2][LCT_BATCH_MAX];
	char kind[2][LCT_BATCH_MAX];
	char rx[LCT_RXBUF];
	char buf[2][LCT_BATCH_BYTES];
};

static const char lct_bpipe_key = 'p';

static void *lct_bpipe_run(void *arg)
{
	struct lct_bpipe *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		int b, err;

		while (!p->stop && p->state != 1)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		b = p->flying;
		pthread_mutex_unlock(&p->mu);
		err = lct_batch_flush(&p->bt[b], p->nl, p->rx, sizeof(p->rx));
		pthread_mutex_lock(&p->mu);
		p->err = err;
		p->state = 2;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void lct_bpipe_end(struct lct_bpipe *p)
{
	/* a child of fork() has no copy of the thread to end */
	int here = p->forks == lct_forks_now();

	if (p->running && here) {
		pthread_mutex_lock(&p->mu);
		p->stop = 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->th, NULL);
	}
	p->running = 0;
	if (p->inited && here) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
	}
	p->inited = 0;
	if (p->nl != NULL) {
		mnl_socket_close(p->nl);
		p->nl = NULL;
	}
	lct_batch_free(&p->bt[0]);
	lct_batch_free(&p->bt[1]);
}

static int lct_bpipe_gc(lua_State *L)
{
	lct_bpipe_end(lua_touserdata(L, 1));
	return 0;
}

/* Pushes a sender for h's namespace; NULL (nothing pushed) where none will do. */
static struct lct_bpipe *lct_bpipe_new(lua_State *L, struct lct_handle *h, const char *fname)
{
	struct lct_bpipe *p;
	int err, r;

	if (lct_cpus() < 2)
		return NULL;
	p = lct_newuserdata(L, sizeof(*p));
	memset(p, 0, offsetof(struct lct_bpipe, item));
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_bpipe_key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_createtable(L, 0, 1);
		lua_pushcfunction(L, lct_bpipe_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushvalue(L, -1);
		lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_bpipe_key);
	}
	lua_setmetatable(L, -2);
	p->forks = lct_forks_now();
	p->owner = h;
	p->fname = fname;
	p->nl = lct_nl_open(h->nsfd, 0, &err);
	if (p->nl == NULL || lct_batch_init(&p->bt[0], p->buf[0]) != 0 ||
	    lct_batch_init(&p->bt[1], p->buf[1]) != 0) {
		lct_bpipe_end(p);
		lua_pop(L, 1);
		return NULL;
	}
	lct_batch_setsock(p->nl);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->inited = 1;
	r = lct_thread_start(&p->th, lct_bpipe_run, p);
	if (r != 0) {
		lct_bpipe_end(p);
		lua_pop(L, 1);
		return NULL;
	}
	p->running = 1;
	return p;
}

/*
 * The answers of the batch in flight, if any: 0 or an errno for the whole
 * batch; *which (if given) the batch answered, or -1.
 */
static int lct_bpipe_wait(lua_State *L, struct lct_brun *r, struct lct_bpipe *p, int *which)
{
	int b, err;

	if (which != NULL)
		*which = -1;
	if (p->forks != lct_forks_now())
		return ECHILD;
	pthread_mutex_lock(&p->mu);
	if (p->state == 0) {
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	while (p->state == 1)
		pthread_cond_wait(&p->cv, &p->mu);
	b = p->flying;
	err = p->err;
	p->state = 0;
	pthread_mutex_unlock(&p->mu);
	if (which != NULL)
		*which = b;
	if (err != 0)
		return err;
	return lct_brun_answers(L, r, &p->bt[b], p->item[b], p->line[b], p->kind[b], p->sent[b]);
}

/*
 * lct_brun_flush through the sender: the batch in flight answered, the
 * collected one handed over, r->bt the other one.  With last, waits for
 * its answers too.
 */
static void lct_bpipe_submit(struct lct_brun *r, struct lct_bpipe *p);

static int lct_bpipe_flush(lua_State *L, struct lct_brun *r, struct lct_bpipe *p, int last)
{
	int err = lct_bpipe_wait(L, r, p, NULL);

	if (err != 0 || r->bt->count == 0)
		return err;
	lct_bpipe_submit(r, p);
	return last ? lct_bpipe_wait(L, r, p, NULL) : 0;
}

/* Hands r->bt (nothing in flight) to the thread; r->bt becomes the other batch. */
static void lct_bpipe_submit(struct lct_brun *r, struct lct_bpipe *p)
{
	int b = r->bt == &p->bt[0] ? 0 : 1;

	memcpy(p->item[b], r->item, sizeof(int) * (size_t)r->bt->count);
	memcpy(p->line[b], r->line, sizeof(int) * (size_t)r->bt->count);
	memcpy(p->kind[b], r->kind, (size_t)r->bt->count);
	p->sent[b] = r->bt->count;
	pthread_mutex_lock(&p->mu);
	p->flying = b;
	p->state = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	r->bt = &p->bt[b ^ 1];
	lct_batch_reset(r->bt);
}

static int lct_brun_result(lua_State *L, const struct lct_brun *r)
{
	lua_pushinteger(L, r->ok);
	lua_pushinteger(L, r->missing);
	lua_pushvalue(L, r->ft);
	return 3;
}

/*
 * h:batch(op, items [, changes]) -> ok, missing, failures | nil, msg, errno
 * op is "create", "add", "update", "delete" or "put"; items an array of
 * specs, tuples or entries.  failures: array of {index, errno, message}.
 * Entries gone before their update/delete count as missing, not failed;
 * put counts in missing the flows that were there (and were updated).  fname:
 * the method the user called, in the messages of a closed or bad handle,
 * of bad arguments and of the kernel's refusal of a whole batch.
 */
static int lct_batch_run(lua_State *L, const char *fname, int size)
{
	struct lct_handle *h = lct_handle_check(L, 1, fname);
	struct lct_bpipe *pipe = NULL;
	struct lct_brun r;
	const char *op;
	uint8_t type;
	uint16_t flags;
	int n, i, kind, err = 0, load = strcmp(fname, "load") == 0;

	if (lua_type(L, 2) != LUA_TSTRING)
		return lct_argerror(L, fname, "op", "\"create\", \"add\", \"update\", \"delete\" or \"put\" expected, got %s",
				    luaL_typename(L, 2));
	op = lua_tostring(L, 2);
	if (strcmp(op, "create") == 0) {
		kind = LCT_K_SPEC; type = IPCTNL_MSG_CT_NEW; flags = NLM_F_CREATE | NLM_F_EXCL; op = "create";
	} else if (strcmp(op, "add") == 0) {
		kind = LCT_K_SPEC; type = IPCTNL_MSG_CT_NEW; flags = NLM_F_CREATE | NLM_F_EXCL; op = "add";
	} else if (strcmp(op, "update") == 0) {
		kind = LCT_K_CHANGES; type = IPCTNL_MSG_CT_NEW; flags = 0; op = "update";
	} else if (strcmp(op, "delete") == 0) {
		kind = LCT_K_TUPLE; type = IPCTNL_MSG_CT_DELETE; flags = 0; op = "delete";
	} else if (strcmp(op, "put") == 0) {
		kind = LCT_K_SPEC; type = IPCTNL_MSG_CT_NEW; flags = NLM_F_CREATE | NLM_F_EXCL; op = "put";
	} else {
		return lct_argerror(L, fname, "op", "unknown operation %s", lct_shortval(L, 2));
	}
	lct_check_table(L, 3, fname, "items");
	if (kind == LCT_K_CHANGES)
		lct_check_table(L, 4, fname, "changes");
	else if (!lua_isnoneornil(L, 4))
		return lct_argerror(L, fname, "changes", "only for \"update\"");
	n = (int)lua_rawlen(L, 3);
	lua_settop(L, 4);
	lua_newtable(L);
	memset(&r, 0, sizeof(r));
	r.h = h;
	r.fname = fname;
	r.op = op;
	r.ft = lua_gettop(L);
	r.items = 3;
	r.put = strcmp(op, "put") == 0;
	r.bt = lct_batch_of(L, h, fname);
	if (r.bt == NULL)
		return lct_pusherr(L, fname, ENOMEM);
	/* More than a batch, and nothing read from the table meanwhile: send ahead. */
	if (!r.put && kind != LCT_K_CHANGES && n > 256) {
		pipe = lct_bpipe_new(L, h, fname);
		if (pipe != NULL)
			r.bt = &pipe->bt[0];
	}
	for (i = 1; i <= n; i++) {
		struct nlmsghdr *nlh = lct_batch_cur(r.bt);
		const struct nlmsghdr *msg;
		struct lct_spec s;
		int top = lua_gettop(L), bad = 0;

		lct_nl_req(nlh, (NFNL_SUBSYS_CTNETLINK << 8) | type, flags, AF_UNSPEC, 0);
		lua_rawgeti(L, 3, i);
		if (load && lua_isnil(L, -1)) {
			lua_pop(L, 1);	/* load skips the holes of its array */
			continue;
		}
		msg = kind != LCT_K_SPEC ? lct_entry_msg(L, -1) : NULL;
		memset(&s, 0, sizeof(s));
		if (msg != NULL) {
			/* An entry: its tuple as it came, nothing parsed. */
			if (lct_put_key(nlh, msg) < 0) {
				lua_pushfstring(L, "batch: item %d: the entry has no tuple", i);
				bad = 1;
			} else if (kind == LCT_K_CHANGES) {
				struct lct_dir d;
				const struct nlattr *at[LCT_CTA_MAX + 1];

				lct_a_table(msg, sizeof(struct nfgenmsg), at, LCT_CTA_MAX);
				lct_dir_parse(at[CTA_TUPLE_ORIG], NULL, &d);
				lct_a_u8(d.num, &s.orig.proto);
				s.family = lct_nl_msgfamily(msg);
			}
		} else {
			char iname[48];

			lct_item_name(iname, i, op);
			bad = lct_spec_read_p(L, -1, kind == LCT_K_SPEC ? LCT_K_SPEC : LCT_K_TUPLE,
					      iname, &s, 0) != 0;
			if (!bad)
				lct_spec_put(nlh, &s, kind == LCT_K_SPEC ? LCT_K_SPEC : LCT_K_TUPLE);
		}
		if (!bad && kind == LCT_K_CHANGES) {
			char iname[48];

			lct_item_name(iname, i, op);
			s.has &= (uint64_t)~(LCT_S_ORIG | LCT_S_REPLY | LCT_S_ZONE);
			bad = lct_spec_read_p(L, 4, 0, iname, &s, 1) != 0;
			if (!bad) {
				/* completed from the entry as update does (status, SCTP tags) */
				err = lct_update_fill(L, h, fname, -1, &s);
				if (err == ENOENT) {
					r.missing++;
					lua_settop(L, top);
					continue;
				}
				if (err != 0) {
					lct_brun_fail(L, &r, i, err, 0);
					lua_settop(L, top);
					continue;
				}
			}
			if (!bad)
				lct_spec_put(nlh, &s, LCT_K_CHANGES);
		}
		if (bad) {
			lct_brun_fail(L, &r, i, EINVAL, lua_gettop(L));
			lua_settop(L, top);
			continue;
		}
		lua_settop(L, top);
		r.item[r.bt->count] = i;
		if (lct_batch_add(r.bt, lct_handle_seq(h)) || r.bt->count >= size) {
			err = pipe != NULL ? lct_bpipe_flush(L, &r, pipe, 0) : lct_brun_flush(L, &r);
			if (err != 0)
				break;
		}
	}
	if (i > n)
		err = pipe != NULL ? lct_bpipe_flush(L, &r, pipe, 1) : lct_brun_flush(L, &r);
	if (pipe != NULL)
		lct_bpipe_end(pipe);
	if (err != 0)
		return lct_pusherr(L, fname, err);
	return lct_brun_result(L, &r);
}

static int lct_h_batch(lua_State *L)
{
	return lct_batch_run(L, "batch", LCT_BATCH_MAX);
}

/*
 * core.batch(h, op, items, changes, fname [, size]): h:batch for the Lua
 * layer's bulk methods, at most size requests a batch; for load, nil items
 * are skipped.
 */
int lct_f_batch(lua_State *L)
{
	static const char *const fnames[] = { "delete_where", "update_where", "flush", "load", NULL };
	const char *fname = luaL_optstring(L, 5, "batch");
	int i, size = LCT_BATCH_MAX;

	for (i = 0; fnames[i] != NULL && strcmp(fnames[i], fname) != 0; i++)
		;
	if (!lua_isnoneornil(L, 6))
		size = (int)lct_int_arg(L, 6, fnames[i] ? fnames[i] : "batch", "batch", 1, LCT_BATCH_MAX);
	lua_settop(L, 5);
	return lct_batch_run(L, fnames[i] ? fnames[i] : "batch", size);
}

/*
 * purge with lines: the text of each entry of the batch on its way, made
 * from its dump message (gone once the dump reads on) and kept until the
 * kernel has answered.  A userdata: a Lua error frees it.
 */
#define LCT_PTEXT_BYTES	(256 * 1024)
#define LCT_LINE_MAX	4096	/* e:format's longest line, and its newline */
struct lct_ptext {
	size_t used;
	size_t off[LCT_BATCH_MAX], len[LCT_BATCH_MAX];
	char buf[LCT_PTEXT_BYTES];
};

/* The line of m (o: LCT_O_* words) as the text of batch message at: 0 or ENOMEM. */
static int lct_ptext_add(struct lct_ptext *t, int at, const struct nlmsghdr *m,
			 unsigned int o, struct nfct_labelmap *map)
{
	size_t n = lct_text_o(m, 0, o, map, t->buf + t->used, LCT_LINE_MAX);

	if (n == (size_t)-1)
		return ENOMEM;
	t->buf[t->used + n] = '\n';
	t->off[at] = t->used;
	t->len[at] = n + 1;
	t->used += n + 1;
	return 0;
}

/*
 * Calls a Lua function of purge (nargs and it pushed); an error closes the
 * dump and ends the sender p (the batch in flight answered), then goes on.
 */
static void lct_purge_call(lua_State *L, struct lct_dump *d, struct lct_bpipe *p, int nargs,
			   int nret)
{
	if (lua_pcall(L, nargs, nret, 0) != 0) {
		lct_dump_stop(d);
		if (p != NULL)
			lct_bpipe_end(p);
		lua_error(L);
	}
	if (p != NULL && p->owner->nl == NULL) {
		/* closed by the function: the sender's socket is not the handle's */
		lct_dump_stop(d);
		lct_bpipe_end(p);
		lct_error(L, "%s: attempt to use a closed handle", p->fname);
	}
}

static void lct_purge_lines(lua_State *L, const struct lct_batch *bt, int sent,
			    struct lct_ptext *t, int fn, struct lct_dump *d, struct lct_bpipe *p);

/*
 * Sends the batch (lct_brun_flush); then, with t, calls the function at fn
 * with the lines of the entries the kernel deleted, in order (those it
 * did not find or refused are left out).  0 or an errno for the whole batch.
 */
static int lct_purge_flush(lua_State *L, struct lct_brun *r, struct lct_ptext *t, int fn,
			   struct lct_dump *d)
{
	int sent = r->bt->count, err = lct_brun_flush(L, r);

	if (t == NULL || err != 0 || sent == 0) {
		if (t != NULL)
			t->used = 0;
		return err;
	}
	lct_purge_lines(L, r->bt, sent, t, fn, d, NULL);
	return 0;
}

/*
 * The same through a sender: the batch in flight answered (and its lines
 * given), then r->bt handed over (with last, answered too).  t: the two
 * batches' texts, or NULL.
 */
static int lct_purge_pflush(lua_State *L, struct lct_brun *r, struct lct_bpipe *p,
			    struct lct_ptext **t, int fn, struct lct_dump *d, int last)
{
	for (;;) {
		int b, err = lct_bpipe_wait(L, r, p, &b);

		if (err != 0)
			return err;
		if (b >= 0 && t != NULL)
			lct_purge_lines(L, &p->bt[b], p->sent[b], t[b], fn, d, p);
		if (r->bt->count == 0)
			return 0;
		lct_bpipe_submit(r, p);
		if (!last)
			return 0;
	}
}

/* The lines of the entries of an answered batch the kernel deleted, to fn; t emptied. */
static void lct_purge_lines(lua_State *L, const struct lct_batch *bt, int sent,
			    struct lct_ptext *t, int fn, struct lct_dump *d, struct lct_bpipe *p)
{
	char bad[LCT_BATCH_MAX];
	size_t w = 0;
	int i;

	memset(bad, 0, (size_t)sent);
	for (i = 0; i < bt->nfail; i++) {
		int at = bt->fail[i].index;

		if (at >= 0 && at < sent)
			bad[at] = 1;
	}
	for (i = 0; i < sent; i++) {
		if (bad[i])
			continue;
		if (t->off[i] != w)
			memmove(t->buf + w, t->buf + t->off[i], t->len[i]);
		w += t->len[i];
	}
	t->used = 0;
	if (w > 0) {
		lua_pushvalue(L, fn);
		lua_pushlstring(L, t->buf, w);
		lct_purge_call(L, d, p, 1, 0);
	}
}

/*
 * core.purge(h, matcher, how, fname [, pred [, lines [, format [, batch]]]])
 * -> deleted, missing, failures: deletes every entry a dump with this
 * matcher returns, straight from the dump's messages to batched delete
 * requests.  pred (the filter's Lua part) is called with an entry of each
 * message the matcher passes; without it no Lua value is made per entry.
 * lines(text) is called after each batch with the lines of the entries
 * the kernel deleted, each as e:format(format) writes it and a newline.
 * For delete_where (and flush: fname).
 */
int lct_f_purge(lua_State *L)
{
	const char *fname = lua_type(L, 4) == LUA_TSTRING && strcmp(lua_tostring(L, 4), "flush") == 0
		? "flush" : "delete_where";
	struct lct_handle *h = lct_handle_check(L, 1, fname);
	struct nfct_labelmap *map = NULL;
	const struct nlmsghdr *m;
	struct lct_ptext *text = NULL, *texts[2] = { NULL, NULL };
	struct lct_bpipe *pipe = NULL;
	struct lct_dump *d;
	struct lct_brun r;
	unsigned int o = 0;
	int64_t size = LCT_BATCH_MAX;
	int err, rc, pred, mt, queued = 0;

	lua_settop(L, 8);	/* (fname is a static string) */
	pred = !lua_isnil(L, 5);
	if (pred && lua_type(L, 5) != LUA_TFUNCTION)
		return lct_argerror(L, fname, "filter", "a Lua part that is a function expected");
	if (!lua_isnil(L, 6)) {
		if (lua_type(L, 6) != LUA_TFUNCTION)
			return lct_argerror(L, fname, "lines", "function expected, got %s",
					    luaL_typename(L, 6));
		o = lct_output_opts(L, 7, fname, "format", ~0u);
		if (o & LCT_O_LABELS)
			map = lct_labelmap(L);
	} else if (!lua_isnil(L, 7)) {
		return lct_argerror(L, fname, "format", "only with 'lines'");
	}
	if (!lua_isnil(L, 8))
		size = lct_int_arg(L, 8, fname, "batch", 1, LCT_BATCH_MAX);
	lct_entry_metatable(L);
	mt = lua_gettop(L);
	lua_newtable(L);
	memset(&r, 0, sizeof(r));
	r.h = h;
	r.fname = fname;
	r.op = "delete";
	r.ft = lua_gettop(L);
	if (!lua_isnil(L, 6)) {
		text = texts[0] = lct_newuserdata(L, sizeof(*text));
		text->used = 0;
	}
	d = lct_dump_begin(L, h, 2, 3, fname, 0, &err);
	if (d == NULL)
		return lct_pusherr(L, fname, err);
	r.bt = lct_batch_of(L, h, fname);
	if (r.bt == NULL)
		return lct_pusherr(L, fname, ENOMEM);
	/*
	 * Deletes sent ahead while the dump is read on: the kernel deletes on
	 * one CPU while the caller's thread reads and builds on the other.
	 * Not with the read-ahead off (the caller wants one thread).
	 */
	if (lct_dump_ahead(d)) {
		pipe = lct_bpipe_new(L, h, fname);
		if (pipe != NULL) {
			r.bt = &pipe->bt[0];
			if (text != NULL) {
				texts[1] = lct_newuserdata(L, sizeof(*text));
				texts[1]->used = 0;
			}
		}
	}
	while ((rc = lct_dump_msg(d, &m)) == 1) {
		struct nlmsghdr *nlh;

		if (pipe != NULL && text != NULL)
			text = texts[r.bt == &pipe->bt[0] ? 0 : 1];
		if (pred) {
			int pending = r.bt->count, take;

			lua_pushvalue(L, 5);
			lct_entry_pushm(L, m, 0, 0, mt);
			lct_purge_call(L, d, pipe, 1, 1);
			take = lua_toboolean(L, -1);
			lua_pop(L, 1);
			/* the requests collected are in the handle's batch */
			if (pending > 0 && pipe == NULL && (h->batch != r.bt || r.bt->count != pending)) {
				lct_dump_stop(d);
				return lct_error(L, "%s: the filter used the handle's batches while it deleted", fname);
			}
			if (!take)
				continue;
		}
		nlh = lct_batch_cur(r.bt);
		lct_nl_req(nlh, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, 0,
			   AF_UNSPEC, 0);
		if (lct_put_key(nlh, m) < 0)
			continue;
		if (text != NULL && lct_ptext_add(text, r.bt->count, m, o, map) != 0)
			return lct_pusherr(L, fname, ENOMEM);
		r.item[r.bt->count] = ++queued;
		if (lct_batch_add(r.bt, lct_handle_seq(h)) || r.bt->count >= size ||
		    (text != NULL && text->used > LCT_PTEXT_BYTES - LCT_LINE_MAX)) {
			err = pipe != NULL ? lct_purge_pflush(L, &r, pipe, text ? texts : NULL, 6, d, 0) :
					     lct_purge_flush(L, &r, text, 6, d);
			if (err != 0)
				break;
		}
	}
	if (rc < 0)
		err = -rc;
	else if (err == 0)
		err = pipe != NULL ? lct_purge_pflush(L, &r, pipe, text ? texts : NULL, 6, d, 1) :
				     lct_purge_flush(L, &r, text, 6, d);
	if (pipe != NULL)
		lct_bpipe_end(pipe);
	if (err != 0) {
		lct_dump_stop(d);
		return lct_pusherr(L, fname, err);
	}
	return lct_brun_result(L, &r);
}

/*
 * core.load_text(h, text [, mode [, batch]]) -> done, existing, failures:
 * save text straight to batched requests, no Lua table per line.  Each
 * line runs as its command says (-I create, -A add, -U update, -D delete),
 * or mode ("create", "add", "put") decides for -I and -A lines.  existing counts
 * adds of flows already there and updates and deletes of flows gone;
 * failures {index =, line =, errno =, message =}.
 */
int lct_f_load_text(lua_State *L)
{
	struct lct_handle *h = lct_handle_check(L, 1, "load");
	size_t len, pos = 0, n;
	const char *text, *line, *mode;
	struct lct_bpipe *pipe = NULL;
	struct lct_brun r;
	int lineno = 0, nspec = 0, err = 0;
	int64_t size = 512;

	if (lua_type(L, 2) != LUA_TSTRING)
		return lct_argerror(L, "load", "specs", "save text expected, got %s", luaL_typename(L, 2));
	text = lua_tolstring(L, 2, &len);
	mode = luaL_optstring(L, 3, "");
	if (!lua_isnoneornil(L, 4))
		size = lct_int_arg(L, 4, "load", "batch", 1, LCT_BATCH_MAX);
	lua_settop(L, 4);
	lua_newtable(L);
	memset(&r, 0, sizeof(r));
	r.h = h;
	r.fname = "load";
	r.op = "load";
	r.ft = lua_gettop(L);
	r.put = strcmp(mode, "put") == 0;
	r.text = text;
	r.bt = lct_batch_of(L, h, "load");
	if (r.bt == NULL)
		return lct_pusherr(L, "load", ENOMEM);
	/* Text of more than a few batches, without put's second pass: send ahead. */
	if (!r.put && len > 64 * 1024) {
		pipe = lct_bpipe_new(L, h, "load");
		if (pipe != NULL)
			r.bt = &pipe->bt[0];
	}
	while (lct_save_next(text, len, &pos, &line, &n)) {
		char fname[48];
		struct lct_spec s;
		struct nlmsghdr *nlh;
		int op, top = lua_gettop(L), ferr;
		uint8_t type = IPCTNL_MSG_CT_NEW;
		uint16_t flags = 0;

		lineno++;
		if (lct_save_blank(line, n))
			continue;
		nspec++;
		lct_save_fname(fname, lineno);
		if (lct_save_line(L, line, n, fname, &s, &op, 0, 0) != 0) {
			lua_pushstring(L, lct_save_msg(L, -1, "load: line"));
			lct_brun_fail(L, &r, nspec, EINVAL, lua_gettop(L));
			lct_brun_line(L, &r, lineno);
			lua_settop(L, top);
			continue;
		}
		if (op == 'A' || op == 'I') {
			int create = strcmp(mode, "create") == 0 || (mode[0] == '\0' && op == 'I');

			flags = NLM_F_CREATE | NLM_F_EXCL;
			r.kind[r.bt->count] = r.put ? 'P' : create ? 'I' : 'A';
			r.off[r.bt->count] = (size_t)(line - text);
			r.len[r.bt->count] = n;
		} else if (op == 'D') {
			type = IPCTNL_MSG_CT_DELETE;
			s.has &= (uint64_t)(LCT_S_ORIG | LCT_S_REPLY | LCT_S_ZONE);
			r.kind[r.bt->count] = 'D';
		} else {
			/*
			 * Completed from the flow as update does (status, SCTP
			 * tags), read after the lines before it took effect.
			 */
			if ((s.has & (LCT_S_STATUS | LCT_S_STATE | LCT_S_VTAG0 | LCT_S_VTAG1)) &&
			    (r.bt->count > 0 || pipe != NULL)) {
				err = pipe != NULL ? lct_bpipe_flush(L, &r, pipe, 1) : lct_brun_flush(L, &r);
				if (err != 0)
					break;
			}
			ferr = lct_update_fill(L, h, "load", 0, &s);
			if (ferr == ENOENT) {
				r.missing++;
				continue;
			}
			if (ferr != 0) {
				lct_brun_fail(L, &r, nspec, ferr, 0);
				lct_brun_line(L, &r, lineno);
				lua_settop(L, top);
				continue;
			}
			r.kind[r.bt->count] = 'U';
		}
		nlh = lct_nl_req(lct_batch_cur(r.bt), (NFNL_SUBSYS_CTNETLINK << 8) | type, flags,
				 AF_UNSPEC, 0);
		lct_spec_put(nlh, &s, op == 'U' ? LCT_K_CHANGES : op == 'D' ? LCT_K_TUPLE : LCT_K_SPEC);
		r.item[r.bt->count] = nspec;
		r.line[r.bt->count] = lineno;
		if (lct_batch_add(r.bt, lct_handle_seq(h)) || r.bt->count >= size) {
			err = pipe != NULL ? lct_bpipe_flush(L, &r, pipe, 0) : lct_brun_flush(L, &r);
			if (err != 0)
				break;
		}
	}
	if (err == 0)
		err = pipe != NULL ? lct_bpipe_flush(L, &r, pipe, 1) : lct_brun_flush(L, &r);
	if (pipe != NULL)
		lct_bpipe_end(pipe);
	if (err != 0)
		return lct_pusherr(L, "load", err);
	return lct_brun_result(L, &r);
}

const luaL_Reg lct_batch_handle_methods[] = {
	{"batch", lct_h_batch},
	{NULL, NULL}
};
