/* Drop accounting (gn_stats_*): one counter per drop reason.
 *
 * The reasons are GN_DROP_* from datapath/ebpf/names.py (class Drop), the one
 * table of them; index 0 is unused so that a zeroed counter array reads as
 * "nothing dropped".
 *
 * Map GN_MAP_STATS: array, key __u32 reason (host order), value __u64 count
 * (host order), updated atomically from every CPU.
 */
#ifndef GN_LIB_STATS_H
#define GN_LIB_STATS_H

#include "lib/common.h"

GN_MAP("array", __u32, __u64, GN_MAP_STATS, GN_STATS_SIZE, GN_PIN_STATS);

/* Count a drop for @reason and return the verdict that drops the packet. */
static __always_inline int gn_stats_drop(__u32 reason)
{
	__u64 *count = GN_MAP_STATS.lookup(&reason);

	if (count)
		__sync_fetch_and_add(count, 1);
	return TC_ACT_SHOT;
}

#endif /* GN_LIB_STATS_H */
