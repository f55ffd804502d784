/*
 * Internal header of conntrack.core: shared types and the functions each
 * compilation unit offers to the others.
 */
#ifndef LCT_H
#define LCT_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/linux_nfnetlink_conntrack.h>

#include "compat.h"

#define LCT_HANDLE_MT	"conntrack.handle"
#define LCT_ENTRY_MT	"conntrack.entry"
#define LCT_TUPLE_MT	"conntrack.tuple"
#define LCT_DUMP_MT	"conntrack.dump"
#define LCT_SUB_MT	"conntrack.subscription"

/* Receive buffer: the kernel hands a dump over in ~32 KiB chunks. */
#define LCT_RXBUF	(64 * 1024)
/* Send buffer of one request. */
#define LCT_TXBUF	(8 * 1024)

struct lct_handle {
	struct mnl_socket *nl;	/* NULL once closed */
	int nsfd;		/* namespace the handle is bound to, or -1 */
	uint32_t portid;
	uint32_t seq;
	char *rx;
	char *tx;
	char *batch;		/* batch buffer, made on first use, freed on close */
	int batch_ready;	/* the socket is set up for batches */
};

/* handle.c */
int lct_error(lua_State *L, const char *fmt, ...);
struct lct_handle *lct_checkhandle(lua_State *L, int idx, const char *fname);
struct mnl_socket *lct_socket_open(lua_State *L, int nsfd, int groups,
				   const char *fname, int *err);
int lct_set_rcvbuf(struct mnl_socket *nl, int bytes);
int lct_pusherr(lua_State *L, const char *op, int err);
void lct_check_opts(lua_State *L, int t, const char *fname,
		    const char *const *keys);
int lct_nsfd_open(lua_State *L, int idx, const char *fname);
void lct_handle_open(lua_State *L);

/* entry.c */
void lct_entry_push(lua_State *L, const struct nlmsghdr *nlh, int evtype);
void lct_entry_open(lua_State *L);
uint8_t lct_entry_to_ct(lua_State *L, int idx, struct nf_conntrack *ct);
int lct_is_entry(lua_State *L, int idx);
int lct_entry_put_orig(lua_State *L, int idx, struct nlmsghdr *nlh);
int lct_msg_put_orig(struct nlmsghdr *nlh, const struct nlmsghdr *m);
const char *lct_proto_name(unsigned int num);
int lct_proto_number(const char *name);
const char *lct_state_name(unsigned int proto, unsigned int state);
int lct_state_number(unsigned int proto, const char *name);
extern const char *const lct_status_names[];
int lct_status_bit(const char *name);
int lct_family_number(const char *name);
struct nfct_labelmap *lct_labelmap(lua_State *L);

/* build.c */
enum lct_build_kind {
	LCT_B_TUPLE,	/* get/delete: an original tuple */
	LCT_B_SPEC,	/* create/add: a whole entry */
	LCT_B_CHANGES,	/* update: mark, timeout, status, labels */
};
struct lct_build {
	struct nf_conntrack **box;	/* in: a box to reuse (lct_newbox), or NULL */
	struct nf_conntrack *ct;
	int has_mark_mask;
	uint32_t mark_mask;
	int has_labels;
	uint8_t labels[16], labels_mask[16];
	uint8_t family;
};
struct nf_conntrack **lct_newbox(lua_State *L);
int lct_put_ct(struct nlmsghdr *nlh, const struct lct_build *b);
void lct_build(lua_State *L, int idx, enum lct_build_kind kind,
	       const char *fname, struct lct_build *b);
void lct_build_changes(lua_State *L, int idx, const char *fname,
		       struct lct_build *b);
uint32_t lct_status_arg(lua_State *L, int idx, const char *fname,
			const char *field);
uint8_t lct_family_arg(lua_State *L, int idx, const char *fname,
		       const char *field);
uint32_t lct_u32_arg(lua_State *L, int idx, const char *fname, const char *what);
int lct_u32_field(lua_State *L, int t, const char *fname, const char *k, uint32_t *out);
int lct_proto_arg(lua_State *L, int idx, const char *fname);
int lct_addr_arg(lua_State *L, int idx, const char *fname, const char *field, void *out);

/* dump.c */
void lct_dump_open(lua_State *L);
int lct_h_dump(lua_State *L);
int lct_h_list(lua_State *L);
void *lct_dump_begin(lua_State *L, struct lct_handle *h, int idx,
		     const char *fname, int *err);
int lct_dump_next_msg(void *d, const struct nlmsghdr **m);

/* addr.c: text of an address, as inet_ntop writes it; buf of INET6_ADDRSTRLEN */
size_t lct_ntop(int family, const void *addr, char *buf);

/* format.c */
/* One direction of a flow: its tuple and counters, located in one walk. */
struct lct_dir {
	const struct nlattr *src4, *dst4, *src6, *dst6;
	const struct nlattr *num, *sport, *dport, *itype, *icode, *iid, *zone;
	const struct nlattr *packets, *bytes;
};
void lct_dir_parse(const struct nlattr *tuple, const struct nlattr *ctr,
		   struct lct_dir *d);
size_t lct_format(const struct nlmsghdr *nlh, int evtype, unsigned int flags,
		  char *buf, size_t len);

/* batch.c */
void lct_batch_open(lua_State *L);

/* events.c */
void lct_events_open(lua_State *L);

#endif
