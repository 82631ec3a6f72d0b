/* Checksum upkeep for every rewrite the programs make (gn_csum_*).
 *
 * Packet fields go through the kernel's helpers (bpf_l3_csum_replace,
 * bpf_l4_csum_replace), which also handle CHECKSUM_PARTIAL skbs (veth keeps
 * them across namespaces): with BPF_F_PSEUDO_HDR an address change reaches the
 * TCP/UDP pseudo-header sum whatever the skb's checksum state. A UDP checksum
 * of zero means "none" and stays zero (BPF_F_MARK_MANGLED_0). ICMP has no
 * pseudo-header: an address change touches the IP header checksum only.
 *
 * Fields inside an ICMP error's quoted packet are plain payload to the
 * kernel, so their checksums are updated by hand (RFC 1624) and the ICMP
 * checksum follows each change.
 */
#ifndef GN_LIB_CSUM_H
#define GN_LIB_CSUM_H

#include "lib/common.h"

static __always_inline __u16 gn_csum__fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/**
 * gn_csum_replace16 - RFC 1624 (eqn. 3) update of checksum @check when a
 * 16-bit word changes from @from to @to. All three as read from the packet.
 */
static __always_inline __u16 gn_csum_replace16(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~from;
	sum += to;
	return (__u16)~gn_csum__fold(sum);
}

/* The same for a 32-bit field (an address), word by word. */
static __always_inline __u16 gn_csum_replace32(__u16 check, __u32 from, __u32 to)
{
	check = gn_csum_replace16(check, (__u16)(from >> 16), (__u16)(to >> 16));
	return gn_csum_replace16(check, (__u16)from, (__u16)to);
}

/* Offset of the L4 checksum of a TCP, UDP or ICMP header at @l4_off; 0 if none. */
static __always_inline __u32 gn_csum_l4_off(__u8 proto, __u32 l4_off)
{
	switch (proto) {
	case IPPROTO_TCP:
		return l4_off + 16;
	case IPPROTO_UDP:
		return l4_off + 6;
	case IPPROTO_ICMP:
		return l4_off + 2;
	}
	return 0;
}

/**
 * gn_csum_set_addr - write IPv4 address @to over @from at @addr_off (the
 * outer saddr or daddr) and update the IP checksum and, when this packet
 * carries the L4 header, the TCP/UDP pseudo-header checksum.
 * Returns 0, or a negative error from the helpers.
 */
static __always_inline int gn_csum_set_addr(struct __sk_buff *skb, const struct gn_pkt *p,
					    __u32 addr_off, __be32 from, __be32 to)
{
	int ret;

	if (from == to)
		return 0;
	if (p->first_frag && p->proto == IPPROTO_TCP)
		ret = bpf_l4_csum_replace(skb, p->l4_off + 16, from, to, BPF_F_PSEUDO_HDR | 4);
	else if (p->first_frag && p->proto == IPPROTO_UDP)
		ret = bpf_l4_csum_replace(skb, p->l4_off + 6, from, to,
					  BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	else
		ret = 0;
	if (ret < 0)
		return ret;
	ret = bpf_l3_csum_replace(skb, GN_IP_CSUM_OFF, from, to, 4);
	if (ret < 0)
		return ret;
	return bpf_skb_store_bytes(skb, addr_off, &to, 4, 0);
}

/**
 * gn_csum_set_port - write port (or ICMP echo identifier) @to over @from at
 * @port_off and update the L4 checksum. SCTP ports are never rewritten (its
 * CRC32c covers them): callers keep SCTP ports unchanged.
 */
static __always_inline int gn_csum_set_port(struct __sk_buff *skb, const struct gn_pkt *p,
					    __u32 port_off, __be16 from, __be16 to)
{
	__u32 csum_off = gn_csum_l4_off(p->proto, p->l4_off);
	__u64 flags = 2;
	int ret;

	if (from == to)
		return 0;
	if (!csum_off)
		return -1;
	if (p->proto == IPPROTO_UDP)
		flags |= BPF_F_MARK_MANGLED_0;
	ret = bpf_l4_csum_replace(skb, csum_off, from, to, flags);
	if (ret < 0)
		return ret;
	return bpf_skb_store_bytes(skb, port_off, &to, 2, 0);
}

/* Account for a change of the ICMP payload at the ICMP checksum at @icmp_csum_off. */
static __always_inline int gn_csum_icmp_payload(struct __sk_buff *skb, __u32 icmp_csum_off,
						__u32 from, __u32 to, __u64 size)
{
	if (from == to)
		return 0;
	return bpf_l4_csum_replace(skb, icmp_csum_off, from, to, size);
}

#endif /* GN_LIB_CSUM_H */
