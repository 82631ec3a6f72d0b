/* TCP MSS clamping toward the other clusters (gn_nat_clamp_mss).
 *
 * The cable's MTU is below the pods' (VXLAN costs 50 bytes), so SYN and
 * SYN-ACK leaving toward a remote cluster get their MSS option lowered to
 * what the device carries, and TCP never needs fragmentation there.
 *
 * Map GN_MAP_MSS: hash __u32 ifindex (host order) -> __u16 largest MSS (host
 * order), written by Python for every device the programs are attached to
 * (its MTU - 40). A device without an entry is left alone.
 */
#ifndef GN_LIB_MSS_H
#define GN_LIB_MSS_H

#include "lib/common.h"

GN_MAP("hash", __u32, __u16, GN_MAP_MSS, GN_MSS_SIZE, GN_PIN_MSS);

/**
 * gn_nat_clamp_mss - lower the MSS option of the TCP SYN @p to the device's
 * largest MSS, with the TCP checksum. Returns 1 when it was lowered, else 0.
 */
static __always_inline int gn_nat_clamp_mss(struct __sk_buff *skb, const struct gn_pkt *p)
{
	__u32 ifindex = skb->ifindex;
	__u16 *max = GN_MAP_MSS.lookup(&ifindex);
	__u8 doff, kl[2];
	__be16 old, new;
	__u32 opt, end;
	int i;

	if (!max || bpf_skb_load_bytes(skb, p->l4_off + 12, &doff, 1) < 0)
		return 0;
	end = p->l4_off + (doff >> 4) * 4;
	opt = p->l4_off + 20;
	for (i = 0; i < 12; i++) {
		if (opt + 4 > end || bpf_skb_load_bytes(skb, opt, kl, 2) < 0 || kl[0] == 0)
			return 0;
		if (kl[0] == 1) { /* NOP */
			opt += 1;
			continue;
		}
		if (kl[0] == 2 && kl[1] == 4)
			break;
		if (kl[1] < 2)
			return 0;
		opt += kl[1];
	}
	if (i == 12 || bpf_skb_load_bytes(skb, opt + 2, &old, 2) < 0 || bpf_ntohs(old) <= *max)
		return 0;
	new = bpf_htons(*max);
	if (bpf_l4_csum_replace(skb, p->l4_off + 16, old, new, 2) < 0 ||
	    bpf_skb_store_bytes(skb, opt + 2, &new, 2, 0) < 0)
		return 0;
	return 1;
}

#endif /* GN_LIB_MSS_H */
