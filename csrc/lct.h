/*
 * Internal header of conntrack.core.  The units stand in layers, each using
 * only those below it (make check proves there is no circle):
 *
 *   leaves     err.c class.c names.c attr.c addr.c
 *   netlink    nl.c
 *   middle     build.c (Lua tables to requests) match.c (the matcher)
 *              text.c (the CLI's text)
 *   objects    entry.c (entries and tuples) expect.c (expectations)
 *   operations handle.c dump.c batch.c events.c
 *   module     core.c
 *
 * One section per unit: what it offers the units above it.  Everything is
 * built with hidden visibility; core.so exports luaopen_conntrack_core alone.
 */
#ifndef LCT_H
#define LCT_H

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/linux_nfnetlink_conntrack.h>

#include "compat.h"

/* Receive buffer: the kernel hands a dump over in ~32 KiB chunks. */
#define LCT_RXBUF	(64 * 1024)
/* Send buffer of one request (the largest spec is far below). */
#define LCT_TXBUF	(4 * 1024)
/* Room for attributes newer than our headers. */
#define LCT_CTA_MAX	(CTA_MAX + 8)

/* ---- err.c: errors and the argument vocabulary ------------------------ */

/*
 * Raises "where: message", where is the position of the first caller that
 * is neither C nor one of the module's own Lua files (recorded by
 * lct_f_own as they load).  Never returns.
 */
int lct_error(lua_State *L, const char *fmt, ...) LCT_PRINTF(2, 3);
/* "fname: bad argument 'arg' (why)" */
int lct_argerror(lua_State *L, const char *fname, const char *arg,
		 const char *fmt, ...) LCT_PRINTF(4, 5);
/* Pushes nil, "op: strerror", errno; returns 3. */
int lct_pusherr(lua_State *L, const char *op, int err);
/* The message lct_pusherr would push, alone. */
const char *lct_pushmsg(lua_State *L, const char *op, int err);
/* A short printable rendering of the value at idx (for messages). */
const char *lct_shortval(lua_State *L, int idx);
/* core.own(source): records one of the module's own Lua sources. */
int lct_f_own(lua_State *L);
/* core.error(msg): raises msg as lct_error does. */
int lct_f_error(lua_State *L);

/*
 * Reading arguments.  Every option table is checked for unknown names; every
 * number is checked for type, integer value and range.  Values are read
 * with raw access, so reading runs no Lua code.
 */
void lct_check_names(lua_State *L, int t, const char *fname,
		     const char *const *names);
int64_t lct_int_arg(lua_State *L, int idx, const char *fname, const char *arg,
		    int64_t lo, int64_t hi);
/* Pushes t[key] (raw); returns its type. */
int lct_rawfield(lua_State *L, int t, const char *key);
/* t[key] as lct_int_arg: 1 and *out, or 0 when absent (nil). */
int lct_int_field(lua_State *L, int t, const char *key, const char *fname,
		  int64_t lo, int64_t hi, int64_t *out);
/* t[key], a boolean: 1 true, 0 false or absent. */
int lct_bool_field(lua_State *L, int t, const char *key, const char *fname);
void lct_check_table(lua_State *L, int idx, const char *fname, const char *arg);

/* ---- class.c: classes ------------------------------------------------- */

/*
 * A class is named by the address of a static key in its unit.  Methods
 * come from arrays (several units may add to one class: core.c merges
 * them); fields, when the class has any, are numbered by their place in
 * fields and read by its index function, which starts with lct_class_field.
 */
struct lct_class {
	const void *key;
	const char *name;		/* __name, "conntrack.handle" */
	const char *what;		/* for messages: "conntrack handle" */
	const luaL_Reg *meta;		/* __gc, __tostring, ... */
	const luaL_Reg *const *methods;	/* NULL-terminated list of arrays */
	const char *const *fields;	/* NULL-terminated, or NULL */
	lua_CFunction index;		/* with fields: their reader */
};
void lct_class_new(lua_State *L, const struct lct_class *c);
/* In an index function: the field's number and self, or -1 with the method pushed. */
int lct_class_field(lua_State *L, void **self);
/* Sets the metatable of the userdata at the top. */
void lct_class_set(lua_State *L, const void *key);
void *lct_class_test(lua_State *L, int idx, const void *key);
void *lct_class_check(lua_State *L, int idx, const struct lct_class *c,
		      const char *fname);
/*
 * Argument 1 as lct_class_check, first compared with upvalue 1, which a
 * method of the class holds (its metatable).  Only for functions whose
 * first upvalue is c's metatable, or is no metatable at all (none, a
 * methods table, a state): never another class's metatable.
 */
void *lct_class_self(lua_State *L, const struct lct_class *c, const char *fname);

/* ---- names.c: the vocabulary ------------------------------------------ */

const char *lct_proto_name(unsigned int num);		/* built-in, or NULL */
int lct_proto_lookup(const char *name);			/* also /etc/protocols; -1 */
int lct_proto_ports(unsigned int num);			/* has source/destination ports */
const char *lct_state_name(unsigned int proto, unsigned int state);
int lct_state_lookup(unsigned int proto, const char *name);	/* -1 */
int lct_proto_states(unsigned int proto);		/* has states */
extern const char *const lct_status_names[32];
int lct_status_lookup(const char *name);		/* bit, or -1 */
int lct_family_lookup(const char *name);		/* AF_INET/AF_INET6, or -1 */
const char *lct_family_name(int family);
const char *lct_event_name(int evtype);			/* 1 new, 2 update, 3 destroy */
const char *lct_stat_name(unsigned int type);		/* per-CPU counters */
const char *lct_exp_stat_name(unsigned int type);
struct nfct_labelmap *lct_labelmap(lua_State *L);
/* The protocol at idx (name or number), the status at idx (integer, name,
 * array or set of names), the family at idx: raise on bad values. */
int lct_proto_arg(lua_State *L, int idx, const char *fname, const char *arg);
uint32_t lct_status_arg(lua_State *L, int idx, const char *fname, const char *arg);
int lct_family_arg(lua_State *L, int idx, const char *fname, const char *arg);
/* Labels (array or set of names or bits 0..127) into a 16-byte bitmap. */
void lct_labels_arg(lua_State *L, int idx, const char *fname, const char *arg,
		    uint8_t out[16]);
/* The address at idx: its bytes in out, returns AF_INET or AF_INET6. */
int lct_addr_arg(lua_State *L, int idx, const char *fname, const char *arg,
		 void *out);
/* Pushes module.names, module.status_bits and the vocabulary functions. */
void lct_names_open(lua_State *L);

/* ---- attr.c: attributes ---------------------------------------------- */

/*
 * An attribute's payload and its length, inline: libmnl's getters are
 * calls into the library, and these run several times per entry.
 */
static inline const void *lct_a_data(const struct nlattr *a)
{
	return (const char *)a + MNL_ATTR_HDRLEN;
}

static inline size_t lct_a_len(const struct nlattr *a)
{
	return a->nla_len >= MNL_ATTR_HDRLEN ? (size_t)a->nla_len - MNL_ATTR_HDRLEN : 0;
}

/* The value of an integer attribute: 1, or 0 when a is NULL or too short. */
static inline int lct_a_u8(const struct nlattr *a, uint8_t *v)
{
	if (a == NULL || lct_a_len(a) < 1)
		return 0;
	*v = *(const uint8_t *)lct_a_data(a);
	return 1;
}

/* network order in, host out */
static inline int lct_a_u16(const struct nlattr *a, uint16_t *v)
{
	uint16_t x;

	if (a == NULL || lct_a_len(a) < 2)
		return 0;
	memcpy(&x, lct_a_data(a), 2);
	*v = ntohs(x);
	return 1;
}

static inline int lct_a_u32(const struct nlattr *a, uint32_t *v)
{
	uint32_t x;

	if (a == NULL || lct_a_len(a) < 4)
		return 0;
	memcpy(&x, lct_a_data(a), 4);
	*v = ntohl(x);
	return 1;
}

int lct_a_u64(const struct nlattr *a, uint64_t *v);	/* 8 bytes, or 4 */
/* A child of a nest, or NULL; lengths checked. */
const struct nlattr *lct_a_child(const struct nlattr *nest, unsigned int type);
/* A string attribute: its text and length (without the NUL). */
const char *lct_a_str(const struct nlattr *a, size_t *len);
/* Top-level attributes after hdrlen bytes of extra header: off[type] = offset, 0 absent. */
void lct_a_index(const struct nlmsghdr *nlh, size_t hdrlen, uint16_t *off,
		 unsigned int max);
/* Pointers to the top-level attributes of a message. */
void lct_a_table(const struct nlmsghdr *nlh, size_t hdrlen,
		 const struct nlattr **at, unsigned int max);

/* One direction of a flow: its tuple and counters, located in one walk. */
struct lct_dir {
	const struct nlattr *src4, *dst4, *src6, *dst6;
	const struct nlattr *num, *sport, *dport, *itype, *icode, *iid, *zone;
	const struct nlattr *packets, *bytes;
};
void lct_dir_parse(const struct nlattr *tuple, const struct nlattr *ctr,
		   struct lct_dir *d);
/* The address of a direction: its bytes and family (0 when absent). */
int lct_dir_addr(const struct lct_dir *d, int dst, const uint8_t **a);

/* Protocol information (CTA_PROTOINFO). */
struct lct_pinfo {
	int proto;			/* IPPROTO_TCP/SCTP/DCCP, or 0 */
	int has_state;
	uint8_t state;
	int has_flags[2], has_wscale[2], has_vtag[2], has_role;
	uint8_t flags[2], fmask[2], wscale[2];
	uint32_t vtag[2];
	uint8_t role;
};
void lct_pinfo_parse(const struct nlattr *pi, struct lct_pinfo *p);

/* ---- addr.c: addresses ------------------------------------------------ */

/* "00" to "99": the two digits of n at lct_digit_pairs + 2 * n. */
extern const char lct_digit_pairs[201];
/* v in decimal at p (no NUL); returns the end. */
char *lct_utoa(char *p, unsigned int v);
/* Text of an address, as inet_ntop writes it; buf of INET6_ADDRSTRLEN. */
size_t lct_ntop(int family, const void *addr, char *buf);
/* Text to bytes: AF_INET/AF_INET6, or 0 when malformed (len: no NUL inside). */
int lct_pton(const char *s, size_t len, void *out);
/* A prefix: "192.0.2.0/24", "2001:db8::/32", or one address. */
struct lct_cidr {
	uint8_t family, plen;
	uint8_t addr[16];	/* bits past plen cleared */
};
int lct_cidr_parse(const char *s, size_t len, struct lct_cidr *c);	/* 0, or -1 */
int lct_cidr_match(const struct lct_cidr *c, int family, const uint8_t *a);

/* ---- nl.c: netlink ---------------------------------------------------- */

/* Opens the namespace at idx (a name under /run/netns or a path). */
int lct_ns_open(lua_State *L, int idx, const char *fname, int *err);
/* A ctnetlink socket in namespace nsfd (or here, nsfd < 0); NULL and *err. */
struct mnl_socket *lct_nl_open(int nsfd, unsigned int groups, int *err);
int lct_nl_rcvbuf(struct mnl_socket *nl, int bytes);	/* size granted, or -1 */
/* Starts a ctnetlink request in buf. */
struct nlmsghdr *lct_nl_req(void *buf, uint16_t type, uint16_t flags,
			    uint8_t family, uint32_t seq);
/* The family / version of a request or message. */
void lct_nl_family(struct nlmsghdr *nlh, uint8_t family, uint8_t version);
uint8_t lct_nl_msgfamily(const struct nlmsghdr *nlh);

/*
 * Attributes written in place, as libmnl's mnl_attr_put* write them (type,
 * length, payload, zeroed padding), but inline: a request writes a dozen,
 * and with a constant length the copy is a store or two.  The caller
 * knows the request fits (LCT_TXBUF).
 */
static inline void lct_attr_put(struct nlmsghdr *nlh, uint16_t type, size_t len, const void *data)
{
	struct nlattr *a = (struct nlattr *)((char *)nlh + MNL_ALIGN(nlh->nlmsg_len));
	size_t al = MNL_ALIGN(len);

	a->nla_type = type;
	a->nla_len = (uint16_t)(MNL_ATTR_HDRLEN + len);
	memcpy(a + 1, data, len);
	if (al != len)
		memset((char *)(a + 1) + len, 0, al - len);
	nlh->nlmsg_len = (uint32_t)(MNL_ALIGN(nlh->nlmsg_len) + MNL_ATTR_HDRLEN + al);
}

static inline void lct_attr_u8(struct nlmsghdr *nlh, uint16_t type, uint8_t v)
{
	lct_attr_put(nlh, type, sizeof(v), &v);
}

static inline void lct_attr_u16(struct nlmsghdr *nlh, uint16_t type, uint16_t v)
{
	lct_attr_put(nlh, type, sizeof(v), &v);
}

static inline void lct_attr_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t v)
{
	lct_attr_put(nlh, type, sizeof(v), &v);
}

static inline void lct_attr_u64(struct nlmsghdr *nlh, uint16_t type, uint64_t v)
{
	lct_attr_put(nlh, type, sizeof(v), &v);
}

static inline struct nlattr *lct_attr_nest(struct nlmsghdr *nlh, uint16_t type)
{
	struct nlattr *a = (struct nlattr *)((char *)nlh + MNL_ALIGN(nlh->nlmsg_len));

	a->nla_type = (uint16_t)(NLA_F_NESTED | type);
	nlh->nlmsg_len = (uint32_t)(MNL_ALIGN(nlh->nlmsg_len) + MNL_ATTR_HDRLEN);
	return a;
}

static inline void lct_attr_end(struct nlmsghdr *nlh, struct nlattr *a)
{
	a->nla_len = (uint16_t)((char *)nlh + nlh->nlmsg_len - (char *)a);
}

/* Messages in a buffer, taken one at a time with every length checked. */
struct lct_rx {
	const char *buf;
	int pos, len;
};
enum {
	LCT_RX_EMPTY,		/* nothing left: receive more */
	LCT_RX_DATA,		/* a message of the subsystem */
	LCT_RX_DONE,		/* NLMSG_DONE; *err its error, if any */
	LCT_RX_ACK,		/* NLMSG_ERROR with error 0 */
	LCT_RX_ERROR,		/* NLMSG_ERROR; *err the errno */
};
int lct_rx_take(struct lct_rx *rx, const struct nlmsghdr **m, int *err);

/*
 * One request and its answer: lct_xfer_next yields the data messages of
 * the answer one at a time, outside any callback, until the ack or
 * NLMSG_DONE.  Replies of other sequence numbers are skipped.
 */
struct lct_ahead;
struct lct_xfer {
	struct mnl_socket *nl;
	char *buf;
	size_t cap;
	struct lct_rx rx;
	uint32_t seq;
	int end;		/* the answer is complete */
	int intr;		/* NLM_F_DUMP_INTR was seen */
	struct lct_ahead *ah;	/* a dump read ahead by a thread, or NULL */
	struct lct_ahead *ahdone;	/* its memory once the thread ended */
	uint32_t sentseq;	/* the last request sent (by the thread, too) */
};
int lct_xfer_send(struct lct_xfer *x, struct mnl_socket *nl, char *buf,
		  size_t cap, const struct nlmsghdr *req);	/* 0 or errno */
int lct_xfer_next(struct lct_xfer *x, const struct nlmsghdr **m);	/* 1, 0 end, -errno */
/*
 * The same request again as a new exchange; with family != 0, in that
 * family.  A dump read ahead has already been asked again by its thread
 * when the first one ended well: only its sequence number moves on.
 */
int lct_xfer_resend(struct lct_xfer *x, struct nlmsghdr *req, uint32_t seq);
/*
 * Read-ahead of a dump just sent: a thread of its own receives the
 * kernel's next chunks (the kernel builds them in that thread's recvmsg,
 * on another CPU) while the caller works on the ones before.  With
 * then_family, the thread asks for the dump again in that family, with the
 * next sequence number, once the first one is DONE without error.  Starts
 * nothing (and returns 0) where the process may run on one CPU only, or
 * when the thread cannot be made: the exchange then reads as before.
 */
int lct_xfer_ahead(struct lct_xfer *x, const struct nlmsghdr *req, uint8_t then_family);
/* Ends the thread, if any (before its socket is closed); its chunks stay. */
void lct_xfer_stop(struct lct_xfer *x);
/* Ends the thread and frees its chunks (the exchange's owner is collected). */
void lct_xfer_free(struct lct_xfer *x);
/* CPUs this process may run on. */
int lct_cpus(void);
/* A pause inside a loop that waits awake for another thread. */
static inline void lct_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}
/*
 * Children of fork() made since the module first asked (a child has no
 * copy of the threads its parent started: what waits for one must not).
 */
unsigned int lct_forks_now(void);
/*
 * Starts fn(arg) in a thread of the module's (a small stack, every signal
 * blocked: signals stay with the caller's threads); 0 or an errno.
 * core.threads() counts them.
 */
int lct_thread_start(pthread_t *th, void *(*fn)(void *), void *arg);
int lct_f_threads(lua_State *L);

/*
 * Batches: requests collected with libmnl's batch helper, sent in one
 * sendmsg, only failures and the last message acknowledged.
 */
#define LCT_BATCH_BYTES	(128 * 1024)
#define LCT_BATCH_MAX	1024		/* messages per sendmsg */
struct lct_batchfail {
	int index;		/* in the batch, from 0 */
	int err;
};
struct lct_batch {
	struct mnl_nlmsg_batch *b;
	uint32_t seq0;		/* sequence of the first message */
	int count;
	struct nlmsghdr *last;
	int nfail;
	struct lct_batchfail fail[LCT_BATCH_MAX];
};
int lct_batch_init(struct lct_batch *bt, char *buf);	/* 0, or ENOMEM */
void lct_batch_free(struct lct_batch *bt);
void lct_batch_reset(struct lct_batch *bt);
struct nlmsghdr *lct_batch_cur(struct lct_batch *bt);
/* Makes the current message part of the batch; 1 when the batch should go. */
int lct_batch_add(struct lct_batch *bt, uint32_t seq);
/* Sends the batch and reads its acks: failures in bt->fail; 0 or errno. */
int lct_batch_flush(struct lct_batch *bt, struct mnl_socket *nl, char *rx,
		    size_t cap);
int lct_batch_setsock(struct mnl_socket *nl);

/* ---- build.c: Lua tables to requests ---------------------------------- */

enum lct_kind {
	LCT_K_TUPLE = 1,	/* get / delete: a flow's tuple */
	LCT_K_SPEC = 2,		/* create / add: a whole entry */
	LCT_K_CHANGES = 4,	/* update: what to change */
	LCT_K_ENTRY = 8,	/* a synthetic entry: a spec and what dumps add */
};

struct lct_tup {
	uint8_t set;		/* LCT_T_* */
	uint8_t proto;
	uint8_t itype, icode;
	uint16_t sport, dport, iid, zone;
	uint8_t src[16], dst[16];
};
#define LCT_T_SRC	0x01
#define LCT_T_DST	0x02
#define LCT_T_PORTS	0x04
#define LCT_T_ICMP	0x08
#define LCT_T_ZONE	0x10
#define LCT_T_PROTO	0x20
#define LCT_T_SPORT	0x40
#define LCT_T_DPORT	0x80

struct lct_nat {
	uint8_t family;		/* 0: none */
	int port;		/* -1: none */
	uint8_t addr[16];
};

struct lct_spec {
	uint64_t has;		/* LCT_S_* */
	uint8_t family;
	struct lct_tup orig, reply;
	uint32_t timeout, mark, mark_mask, status, secmark, id, use;
	uint16_t zone;
	uint8_t state;
	uint8_t tcp_flags[2], tcp_mask[2], tcp_wscale[2];
	uint32_t vtag[2];
	uint8_t role;
	uint8_t labels[16], labels_mask[16];
	struct lct_nat snat, dnat;
	char helper[32];
	uint8_t evtype;
	uint64_t packets[2], bytes[2];
};
#define LCT_S_TIMEOUT	(1u << 0)
#define LCT_S_MARK	(1u << 1)
#define LCT_S_MARKMASK	(1u << 2)
#define LCT_S_STATUS	(1u << 3)
#define LCT_S_SECMARK	(1u << 4)
#define LCT_S_ZONE	(1u << 5)
#define LCT_S_STATE	(1u << 6)
#define LCT_S_TCPFLAGS0	(1u << 7)
#define LCT_S_TCPFLAGS1	(1u << 8)
#define LCT_S_WSCALE0	(1u << 9)
#define LCT_S_WSCALE1	(1u << 10)
#define LCT_S_VTAG0	(1u << 11)
#define LCT_S_VTAG1	(1u << 12)
#define LCT_S_ROLE	(1u << 13)
#define LCT_S_LABELS	(1u << 14)
#define LCT_S_LABELMASK	(1u << 15)
#define LCT_S_SNAT	(1u << 16)
#define LCT_S_DNAT	(1u << 17)
#define LCT_S_HELPER	(1u << 18)
#define LCT_S_ORIG	(1u << 19)
#define LCT_S_REPLY	(1u << 20)
#define LCT_S_LABELADD	(1u << 21)
#define LCT_S_LABELDEL	(1u << 22)
#define LCT_S_ID	(1u << 23)
#define LCT_S_USE	(1u << 24)
#define LCT_S_COUNTERS0	(1u << 25)
#define LCT_S_COUNTERS1	(1u << 26)
#define LCT_S_EVTYPE	(1u << 27)

/*
 * Reads the table at idx as kinds allows (LCT_K_* ored); raises on any bad
 * or unknown field, naming fname.  A request needs only one of its tuples.
 */
void lct_spec_read(lua_State *L, int idx, int kinds, const char *fname,
		   struct lct_spec *s);
/* Reads changes (LCT_K_CHANGES) from idx into a spec that holds a tuple. */
void lct_changes_read(lua_State *L, int idx, const char *fname, struct lct_spec *s);
/* A tuple nest of type (CTA_TUPLE_ORIG...) from t. */
void lct_put_tuple(struct nlmsghdr *nlh, int type, const struct lct_tup *t, int family);
/* Writes the spec's attributes into nlh (and its family into the header). */
void lct_spec_put(struct nlmsghdr *nlh, const struct lct_spec *s, int kind);
/* A delete or get of the flow message m names: its tuple and zone as they came. */
int lct_put_key(struct nlmsghdr *nlh, const struct nlmsghdr *m);	/* family, or -1 */
/* Reading a spec field by field, without a table (save text does). */
/* The fields of specs, tuples and changes, by id (build.c names them). */
enum lct_fid {
	F_FAMILY, F_PROTO, F_SRC, F_DST, F_SPORT, F_DPORT, F_ITYPE, F_ICODE, F_IID,
	F_OZONE, F_SRCKEY, F_DSTKEY,
	F_RSRC, F_RDST, F_RSPORT, F_RDPORT, F_RZONE, F_RSRCKEY, F_RDSTKEY,
	F_ZONE, F_TIMEOUT, F_MARK, F_MARKMASK, F_STATE, F_STATUS, F_LABELS,
	F_LABELSMASK, F_LABELADD, F_LABELDEL, F_SECMARK, F_SNAT, F_DNAT, F_HELPER,
	F_FLAGS0, F_FLAGS1, F_WSCALE0, F_WSCALE1, F_VTAG0, F_VTAG1, F_ROLE,
	F_TYPE, F_ID, F_USE, F_PKTS0, F_BYTES0, F_PKTS1, F_BYTES1,
	F_N
};

#define LCT_NFIELDS	64
struct lct_reader {
	int proto;			/* -1 */
	int family;			/* 0 */
	uint8_t famof[LCT_NFIELDS];	/* the family each address field gave */
	int port[2][2];			/* [dir][src,dst]: -1 none */
	int key[2][2];			/* GRE keys */
	int icmp[3];			/* type, code, id */
	char state[24];
	int role;			/* -1 */
	uint64_t fields;		/* ids seen */
};
int lct_field_id(const char *name);	/* -1 when not a spec field */
const char *lct_field_name(int id);	/* NULL past the last */
int lct_field_in(int id, int kinds);	/* does a field of these kinds have that id? */
void lct_reader_init(struct lct_reader *r);
/* The value at the top as field id (as a table's field would be read). */
void lct_reader_field(lua_State *L, const char *fname, int id, struct lct_spec *s,
		      struct lct_reader *r);
/* Save text's values without a Lua value: 0, or -1 to read them with lct_reader_field. */
int lct_reader_int(int id, int64_t v, struct lct_spec *s, struct lct_reader *r);
int lct_reader_text(int id, const char *v, size_t n, struct lct_spec *s, struct lct_reader *r);
/* The same for a table read with kinds: a field they do not take raises as there. */
void lct_reader_kfield(lua_State *L, const char *fname, int id, int kinds,
		       struct lct_spec *s, struct lct_reader *r);
void lct_reader_finish(lua_State *L, int kinds, const char *fname, struct lct_spec *s,
		       struct lct_reader *r);
/* Safe forms for batches: 0, or a Lua error message left on the stack. */
int lct_spec_read_p(lua_State *L, int idx, int kinds, const char *fname,
		    struct lct_spec *s, int changes);

/* Expectations: the master, expected and mask tuples and the rest. */
struct lct_xspec {
	uint32_t has;		/* LCT_X_* */
	uint8_t family, proto;
	struct lct_tup master, tuple, mask, nat;
	int has_nat, nat_dir;
	uint32_t timeout, flags, class;
	uint16_t zone;
	char helper[16], fn[32];	/* fn: "nat-follow-master" is 17 */
};
#define LCT_X_TIMEOUT	1
#define LCT_X_ZONE	2
#define LCT_X_FLAGS	4
#define LCT_X_CLASS	8
#define LCT_X_HELPER	16
#define LCT_X_FN	32
/* create: a whole expectation (master, tuple_*, mask_*...); else a lookup (src, dst...). */
void lct_xspec_read(lua_State *L, int idx, int create, const char *fname,
		    struct lct_xspec *x);
void lct_xspec_put(struct nlmsghdr *nlh, const struct lct_xspec *x);

/* ---- save.c: save text (conntrack -o save, -R) -------------------------- */

/*
 * One line into s and *op ('A', 'I', 'U', 'D'); -1 with a message on the
 * stack.  keys: 0, or the index of the field names (parse_save's): the
 * line's table is pushed.  partial (with keys): a -D/-U line's table holds
 * every option given and needs none (a filter).
 */
int lct_save_line(lua_State *L, const char *p, size_t n, const char *fname,
		  struct lct_spec *s, int *op, int keys, int partial);
int lct_save_next(const char *text, size_t len, size_t *pos, const char **line, size_t *n);
int lct_save_blank(const char *p, size_t n);
void lct_save_fname(char *fname, int lineno);	/* "load: line N" (32 bytes will do) */
const char *lct_save_msg(lua_State *L, int idx, const char *fname);
void lct_save_open(lua_State *L);

/* ---- match.c: the matcher -------------------------------------------- */

struct lct_matcher;
extern const struct lct_class lct_matcher_class;
extern const luaL_Reg lct_matcher_methods[];
/* The matcher at idx (or NULL when nil); raises on anything else. */
struct lct_matcher *lct_matcher_arg(lua_State *L, int idx, const char *fname);
/* Does the conntrack message m match?  Pure C, no Lua. */
int lct_match(const struct lct_matcher *m, const struct nlmsghdr *msg);
/* The dump request parts the kernel applies (a subset: C still checks). */
struct lct_kpart {
	uint8_t family;			/* 0 any */
	int has_tuple;
	int proto;			/* -1 */
	uint8_t af[2][2];		/* [dir][src, dst]: AF_INET when given */
	uint8_t addr[2][2][4];
	int port[2][2];			/* -1 */
	int has_mark, has_status, zone;	/* zone: -1 none */
	uint32_t mark, mark_mask, status, status_mask;
	int flush_exact;		/* the kernel's flush can do all of it */
	int dump_exact;			/* the kernel's dump request selects exactly it */
};
void lct_match_kpart(const struct lct_matcher *m, int pushdown, struct lct_kpart *k);
void lct_kpart_put(struct nlmsghdr *nlh, const struct lct_kpart *k, int tuple);
/* The events socket filter: attaches what the library can hold; 0, -1 none, errno. */
int lct_match_attach(const struct lct_matcher *m, int fd);
void lct_match_open(lua_State *L);

/* ---- text.c: the CLI's text ------------------------------------------- */

/* flags: NFCT_OF_SHOW_LAYER3, NFCT_OF_ID, NFCT_OF_TIMESTAMP */
size_t lct_text(const struct nlmsghdr *nlh, int evtype, unsigned int flags,
		char *buf, size_t len);

/* The words of format(opts), the CLI's -o options, as bits. */
#define LCT_O_EXTENDED		0x01
#define LCT_O_ID		0x02
#define LCT_O_KTIMESTAMP	0x04
#define LCT_O_LABELS		0x08
#define LCT_O_XML		0x10
#define LCT_O_TIMESTAMP		0x20
#define LCT_O_LIBRARY		0x40	/* through libnetfilter_conntrack, for checks */
/* opts at idx (a comma list, or none) as bits; a word not in allowed raises, naming arg. */
unsigned int lct_output_opts(lua_State *L, int idx, const char *fname, const char *arg,
			     unsigned int allowed);
/*
 * nlh's line as e:format(opts) writes it (o: LCT_O_* bits; map for labels,
 * or NULL), NUL-terminated in buf: its length, (size_t)-1 out of memory.
 */
size_t lct_text_o(const struct nlmsghdr *nlh, int evtype, unsigned int o,
		  struct nfct_labelmap *map, char *buf, size_t len);
/*
 * The string at the top prefixed with time t as -o timestamp writes it:
 * "[sec.usec]\t", the microseconds zero-padded (flows), or padded with
 * blanks after them (blanks: expectations, as conntrack 1.4.7 prints them).
 */
void lct_stamp_prefix(lua_State *L, double t, int blanks);
/* An event type (0 dump, 1 new, 2 update, 3 destroy) as the library's NFCT_T_*. */
unsigned int lct_nfct_msgtype(int evtype);

/* ---- entry.c: entries ------------------------------------------------- */

/* Pushes a new entry holding a copy of nlh (evtype 0 for dumps). */
void lct_entry_push(lua_State *L, const struct nlmsghdr *nlh, int evtype);
/*
 * The same, with time (events: when received, else 0), the entry metatable
 * taken from index mt (a dump's or a subscription's copy: no registry
 * lookup per entry).
 */
void lct_entry_pushm(lua_State *L, const struct nlmsghdr *nlh, int evtype, double time, int mt);
/* Pushes the entry metatable. */
void lct_entry_metatable(lua_State *L);
/* The message of the entry at idx, or NULL when it is not an entry. */
const struct nlmsghdr *lct_entry_msg(lua_State *L, int idx);
void lct_entry_open(lua_State *L);
extern const struct lct_class lct_entry_class, lct_tuple_class;
extern const luaL_Reg lct_matcher_entry_methods[];
/* Pushes a tuple object: a copy of a tuple nest (and its counters, or NULL). */
void lct_tuple_push(lua_State *L, const struct nlattr *tuple, const struct nlattr *ctr);

/* ---- handle.c: handles and single requests ---------------------------- */


struct lct_handle {
	struct mnl_socket *nl;	/* NULL once closed */
	int nsfd;		/* namespace the handle is bound to, or -1 */
	uint32_t seq;
	int batch_ready;	/* the socket is set up for batches */
	char *batchbuf;		/* made on first use; freed by __gc only */
	struct lct_batch *batch;
	char rx[LCT_RXBUF];
	char tx[LCT_TXBUF];
};
extern const struct lct_class lct_handle_class;
extern const luaL_Reg lct_handle_methods[];
struct lct_handle *lct_handle_check(lua_State *L, int idx, const char *fname);
/* The open socket of h, or raises "fname: attempt to use a closed handle". */
struct mnl_socket *lct_handle_sock(lua_State *L, struct lct_handle *h, const char *fname);
uint32_t lct_handle_seq(struct lct_handle *h);
int lct_f_open(lua_State *L);
/* core.on_default(box, method, opener): the module-level form of a C method. */
int lct_f_on_default(lua_State *L);
/* Sends nlh on h and reads the answer, data messages to push (which may run Lua). */
typedef void (*lct_push_fn)(lua_State *L, const struct nlmsghdr *m, void *ud);
int lct_handle_exchange(lua_State *L, struct lct_handle *h, const char *fname,
			struct nlmsghdr *nlh, lct_push_fn push, void *ud);
/*
 * Completes an update from the flow at idx as it is: its status added to the
 * update's (as the CLI does), SCTP state and tags the kernel wants together.
 */
int lct_update_fill(lua_State *L, struct lct_handle *h, const char *fname, int idx,
		    struct lct_spec *s);
/* Per-CPU statistics of the table, or of the expectations (expect). */
int lct_stats(lua_State *L, const char *op, int expect);

/* ---- expect.c: expectations ------------------------------------------ */

/* Pushes a new expectation holding a copy of nlh (time: events, when received; else 0). */
void lct_expect_push(lua_State *L, const struct nlmsghdr *nlh, int evtype, double time);
const struct nlmsghdr *lct_expect_msg(lua_State *L, int idx);
extern const struct lct_class lct_expect_class;
extern const luaL_Reg lct_expect_handle_methods[];

/* ---- dump.c: dumps ---------------------------------------------------- */

extern const luaL_Reg lct_dump_handle_methods[];
extern const luaL_Reg lct_dump_funcs[];
extern const struct lct_class lct_dump_class;
/* Starts a dump for h:purge and the like: the state is pushed, or NULL and *err. */
struct lct_dump;
struct lct_dump *lct_dump_begin(lua_State *L, struct lct_handle *h, int midx,
				int oidx, const char *fname, int unique, int *err);
int lct_dump_msg(struct lct_dump *d, const struct nlmsghdr **m);	/* 1, 0, -errno */
int lct_dump_ahead(const struct lct_dump *d);	/* read ahead by a thread */
void lct_dump_stop(struct lct_dump *d);		/* closes its socket now (the state stays) */

/* ---- batch.c: batched requests ---------------------------------------- */

extern const luaL_Reg lct_batch_handle_methods[];
int lct_f_purge(lua_State *L);
int lct_f_batch(lua_State *L);
int lct_f_load_text(lua_State *L);

/* ---- events.c: subscriptions ------------------------------------------ */

extern const struct lct_class lct_sub_class;
int lct_f_subscribe(lua_State *L);
int lct_f_events_iter(lua_State *L);
void lct_events_open(lua_State *L);

#endif
