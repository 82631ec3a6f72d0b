/* Egress groups (gn_egress_*): which global IPs a pod's cross-cluster
 * connections leave with, precedence already resolved by Python.
 *
 * Maps (names, sizes and pin paths from datapath/ebpf/names.py):
 *   GN_MAP_EGRESS_PODS   hash  __be32 pod IP -> gn_egress_value
 *                        (pod-selector and namespace groups)
 *   GN_MAP_EGRESS_CIDRS  LPM   gn_cidr_key local CIDR -> gn_egress_value
 *                        (the cluster's egress IPs, for every other local source)
 * Headless pods are in neither: their own 1:1 global IP is written statelessly
 * from the reverse map (lib/nat.h).
 */
#ifndef GN_LIB_EGRESS_H
#define GN_LIB_EGRESS_H

#include "lib/common.h"
#include "lib/nat.h"

struct gn_egress_value {
	__be32 first;   /* first global IP of the group's contiguous range, network order */
	__u32 count;    /* host order: how many addresses from `first` (at least 1) */
	__u64 packets;  /* host order, connections' packets leaving through the group */
	__u64 bytes;    /* host order */
};                      /* 24 bytes, no implicit padding */

GN_MAP("hash", __be32, struct gn_egress_value, GN_MAP_EGRESS_PODS, GN_EGRESS_PODS_SIZE,
       GN_PIN_EGRESS_PODS);
GN_MAP_FLAGS("lpm_trie", struct gn_cidr_key, struct gn_egress_value, GN_MAP_EGRESS_CIDRS,
	     GN_CIDRS_SIZE, GN_PIN_EGRESS_CIDRS, BPF_F_NO_PREALLOC);

/* The group @saddr's new connections leave through, or NULL: not ours to translate. */
static __always_inline struct gn_egress_value *gn_egress_group(__be32 saddr)
{
	struct gn_cidr_key key = { .prefixlen = 32, .addr = saddr };
	struct gn_egress_value *g = GN_MAP_EGRESS_PODS.lookup(&saddr);

	if (g)
		return g;
	return GN_MAP_EGRESS_CIDRS.lookup(&key);
}

#endif /* GN_LIB_EGRESS_H */
