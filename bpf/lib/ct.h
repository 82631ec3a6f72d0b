/* The connection table of egress source translation (gn_ct_*).
 *
 * Many pods share a group's few global IPs, so new connections get a global
 * IP and port here, and both directions are remembered:
 *   GN_CT_EGRESS  key {pod IP, remote, pod port, remote port, proto}
 *                 -> {global IP, global port}   (rewrite saddr/sport going out)
 *   GN_CT_REPLY   key {remote, global IP, remote port, global port, proto}
 *                 -> {pod IP, pod port}         (rewrite daddr/dport coming back)
 * A headless target's own connections (stateless, lib/nat.h) get a reply entry
 * only (gn_ct_record_reply). ICMP echo uses its identifier as both ports. The map is an LRU hash pinned by
 * Python, so entries survive an agent restart; Python removes expired entries
 * (datapath/ebpf/ct.py, per-protocol timeouts from names.py), the LRU evicts
 * the oldest when full. Python mirrors both structs (datapath/ebpf/structs.py).
 */
#ifndef GN_LIB_CT_H
#define GN_LIB_CT_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/egress.h"
#include "lib/stats.h"

struct gn_ct_key {
	__be32 saddr;   /* network order */
	__be32 daddr;   /* network order */
	__be16 sport;   /* network order; ICMP echo: identifier */
	__be16 dport;   /* network order; ICMP echo: identifier */
	__u8 proto;     /* IPPROTO_* */
	__u8 dir;       /* GN_CT_EGRESS or GN_CT_REPLY */
	__u16 pad;      /* always 0 */
};                      /* 16 bytes, no implicit padding */

struct gn_ct_value {
	__be32 addr;    /* translated address, network order */
	__be16 port;    /* translated port or echo identifier, network order */
	__u8 flags;     /* GN_CT_F_* (host order bits) */
	__u8 pad;       /* 0 */
	__u64 last_seen; /* host order, bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last packet */
	__u64 packets;  /* host order */
	__u64 bytes;    /* host order */
};                      /* 32 bytes, no implicit padding */

GN_MAP("lru_hash", struct gn_ct_key, struct gn_ct_value, GN_MAP_CT, GN_CT_SIZE, GN_PIN_CT);

static __always_inline void gn_ct_egress_key(struct gn_ct_key *k, const struct gn_pkt *p)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->dir = GN_CT_EGRESS;
	k->pad = 0;
}

/* The reply key of a connection from @p translated to @addr:@port. */
static __always_inline void gn_ct_reply_key(struct gn_ct_key *k, const struct gn_pkt *p,
					    __be32 addr, __be16 port)
{
	k->saddr = p->daddr;
	k->daddr = addr;
	k->sport = p->proto == IPPROTO_ICMP ? port : p->dport;
	k->dport = port;
	k->proto = p->proto;
	k->dir = GN_CT_REPLY;
	k->pad = 0;
}

/* Refresh an entry for one more packet of @p. */
static __always_inline void gn_ct_touch(struct gn_ct_value *v, const struct gn_pkt *p, __u64 now)
{
	if (v->last_seen != now)
		v->last_seen = now;
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (GN_TCP_FIN | GN_TCP_RST)))
		v->flags |= GN_CT_F_CLOSING;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, p->len);
}

static __always_inline __be16 gn_ct__random_port(void)
{
	return bpf_htons(GN_PORT_MIN + bpf_get_prandom_u32() % (GN_PORT_MAX - GN_PORT_MIN + 1));
}

/**
 * gn_ct_create - a new connection from @p through group @g: pick the group's
 * global IP by the pod address (one pod keeps one address) and a free port,
 * keeping the pod's port when it is free, and record both directions.
 * @out receives the translation. Returns 0, or a GN_DROP_* reason.
 */
static __always_inline int gn_ct_create(const struct gn_pkt *p, struct gn_egress_value *g,
					__u64 now, struct gn_ct_value *out)
{
	struct gn_ct_key key = {};
	struct gn_ct_value val = {};
	__u32 count = g->count;
	__be32 addr;
	__be16 port = p->sport;
	int i;

	if (count == 0)
		return GN_DROP_NO_ADDRESS;
	addr = bpf_htonl(bpf_ntohl(g->first) + (bpf_ntohl(p->saddr) * 2654435761u) % count);
	if (p->proto != IPPROTO_SCTP && p->has_ports &&
	    (p->proto == IPPROTO_ICMP || bpf_ntohs(port) < GN_PORT_MIN))
		port = gn_ct__random_port();
	val.addr = p->saddr;
	val.port = p->sport;
	val.last_seen = now;
#pragma unroll
	for (i = 0; i < GN_PORT_TRIES; i++) {
		gn_ct_reply_key(&key, p, addr, port);
		if (GN_MAP_CT.insert(&key, &val) == 0)
			goto found;
		if (p->proto == IPPROTO_SCTP || !p->has_ports)
			return GN_DROP_NO_PORT;
		port = gn_ct__random_port();
	}
	return GN_DROP_NO_PORT;
found:
	gn_ct_egress_key(&key, p);
	out->addr = addr;
	out->port = port;
	out->last_seen = now;
	out->flags = 0;
	out->packets = 0;
	out->bytes = 0;
	GN_MAP_CT.update(&key, out);
	__sync_fetch_and_add(&g->packets, 1);
	__sync_fetch_and_add(&g->bytes, p->len);
	return 0;
}

/**
 * gn_ct_record_reply - remember that a headless target's own connection @p,
 * leaving statelessly as global IP @addr with its own port, expects replies:
 * a reply entry {remote, @addr, remote port, port} -> {pod, port}, refreshed
 * by every packet. gn_from_tunnel then admits those replies although the port
 * is not exported.
 */
static __always_inline void gn_ct_record_reply(const struct gn_pkt *p, __be32 addr, __u64 now)
{
	struct gn_ct_key key = {};
	struct gn_ct_value val = {};

	gn_ct_reply_key(&key, p, addr, p->sport);
	val.addr = p->saddr;
	val.port = p->sport;
	val.last_seen = now;
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (GN_TCP_FIN | GN_TCP_RST)))
		val.flags = GN_CT_F_CLOSING;
	GN_MAP_CT.update(&key, &val);
}

/* Recreate the reply entry of an egress entry the LRU evicted it from. */
static __always_inline void gn_ct_ensure_reply(const struct gn_pkt *p,
					       const struct gn_ct_value *fwd, __u64 now)
{
	struct gn_ct_key key = {};
	struct gn_ct_value val = {};

	gn_ct_reply_key(&key, p, fwd->addr, fwd->port);
	if (GN_MAP_CT.lookup(&key))
		return;
	val.addr = p->saddr;
	val.port = p->sport;
	val.last_seen = now;
	GN_MAP_CT.insert(&key, &val);
}

#endif /* GN_LIB_CT_H */
