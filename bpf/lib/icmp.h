/* ICMP errors (gn_nat_icmp_*): an error quotes the header of the packet it is
 * about, and that quoted header must be translated like the flow it belongs
 * to, or the sender's stack cannot match it (PMTU discovery, unreachable).
 *
 * The quoted packet travelled the other way, so its source is what the outer
 * destination stands for (and vice versa). Its address, port, IP checksum and
 * L4 checksum (TCP only when quoted far enough) are rewritten by hand
 * (lib/csum.h), and the ICMP checksum follows every change.
 */
#ifndef GN_LIB_ICMP_H
#define GN_LIB_ICMP_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/nat.h"
#include "lib/ct.h"

/* The quoted header of an ICMP error. */
struct gn_inner {
	__u32 ip_off;   /* offset of the quoted IP header */
	__u32 l4_off;   /* offset of the quoted L4 header */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;   /* ICMP echo: identifier */
	__be16 dport;   /* ICMP echo: identifier */
	__u16 ip_check; /* as in the packet */
	__u8 proto;
	__u8 has_ports;
};

/* Read the quoted header of the ICMP error @p. Returns 0, or -1 when it is too
 * short or quotes a later fragment (no ports). */
static __always_inline int gn_nat_icmp_inner(struct __sk_buff *skb, const struct gn_pkt *p,
					     struct gn_inner *in)
{
	struct iphdr ip;
	__u8 l4[8];

	in->ip_off = p->l4_off + 8;
	if (bpf_skb_load_bytes(skb, in->ip_off, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5 || (bpf_ntohs(ip.frag_off) & GN_IP_OFFSET))
		return -1;
	in->saddr = ip.saddr;
	in->daddr = ip.daddr;
	in->ip_check = ip.check;
	in->proto = ip.protocol;
	in->l4_off = in->ip_off + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, in->l4_off, l4, 8) < 0)
		return -1;
	if (gn_nat__port_proto(in->proto)) {
		__builtin_memcpy(&in->sport, &l4[0], 2);
		__builtin_memcpy(&in->dport, &l4[2], 2);
		in->has_ports = 1;
	} else if (in->proto == IPPROTO_ICMP && gn_is_echo(l4[0])) {
		__builtin_memcpy(&in->sport, &l4[4], 2);
		in->dport = in->sport;
		in->has_ports = 1;
	}
	return 0;
}

/**
 * gn_nat_icmp_rewrite - rewrite the quoted source (@inner_dst 0) or
 * destination (@inner_dst 1) of the ICMP error @p to @addr and @port, with the
 * quoted IP and L4 checksums and the ICMP checksum. Returns 0 or < 0.
 */
static __always_inline int gn_nat_icmp_rewrite(struct __sk_buff *skb, const struct gn_pkt *p,
					       const struct gn_inner *in, int inner_dst,
					       __be32 addr, __be16 port)
{
	__u32 icmp_csum = p->l4_off + 2;
	__be32 old_addr = inner_dst ? in->daddr : in->saddr;
	__be16 old_port = inner_dst ? in->dport : in->sport;
	__u16 new_check = gn_csum_replace32(in->ip_check, old_addr, addr);
	__u16 old_l4, new_l4;
	__u32 l4_csum = 0, port_off;

	if (bpf_skb_store_bytes(skb, in->ip_off + (inner_dst ? 16 : 12), &addr, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, in->ip_off + 10, &new_check, 2, 0) < 0 ||
	    gn_csum_icmp_payload(skb, icmp_csum, old_addr, addr, 4) < 0 ||
	    gn_csum_icmp_payload(skb, icmp_csum, in->ip_check, new_check, 2) < 0)
		return -1;
	if (!in->has_ports || in->proto == IPPROTO_SCTP)
		port = old_port;
	if (in->proto == IPPROTO_ICMP)
		port_off = in->l4_off + 4;
	else
		port_off = in->l4_off + (inner_dst ? 2 : 0);
	if (port != old_port &&
	    (bpf_skb_store_bytes(skb, port_off, &port, 2, 0) < 0 ||
	     gn_csum_icmp_payload(skb, icmp_csum, old_port, port, 2) < 0))
		return -1;
	/* The quoted L4 checksum: TCP/UDP cover the pseudo-header (address) and
	 * the port, a quoted echo's ICMP checksum the identifier only. */
	if (in->proto == IPPROTO_TCP || in->proto == IPPROTO_UDP || in->proto == IPPROTO_ICMP)
		l4_csum = gn_csum_l4_off(in->proto, in->l4_off);
	if (!l4_csum || bpf_skb_load_bytes(skb, l4_csum, &old_l4, 2) < 0)
		return 0; /* TCP quoted in 8 bytes only: its checksum is not there */
	if (in->proto == IPPROTO_UDP && old_l4 == 0)
		return 0;
	new_l4 = gn_csum_replace16(old_l4, old_port, port);
	if (in->proto != IPPROTO_ICMP)
		new_l4 = gn_csum_replace32(new_l4, old_addr, addr);
	if (new_l4 == old_l4)
		return 0;
	if (bpf_skb_store_bytes(skb, l4_csum, &new_l4, 2, 0) < 0 ||
	    gn_csum_icmp_payload(skb, icmp_csum, old_l4, new_l4, 2) < 0)
		return -1;
	return 0;
}

/**
 * gn_nat_icmp_from_tunnel - an ICMP error arriving for one of our global IPs:
 * about a connection we source-translated (connection table) or a reply of an
 * ingress mapping (ingress map). Outer destination and quoted source become
 * the local ones. Returns the tc verdict.
 */
static __always_inline int gn_nat_icmp_from_tunnel(struct __sk_buff *skb, const struct gn_pkt *p)
{
	struct gn_inner in = {};
	struct gn_ct_key key = {};
	struct gn_ct_value *ct;
	struct gn_nat_value *m;

	if (gn_nat_icmp_inner(skb, p, &in) < 0 || in.saddr != p->daddr)
		return gn_stats_drop(GN_DROP_ICMP_ERROR);
	if (in.has_ports) {
		key.saddr = in.daddr;
		key.daddr = in.saddr;
		key.sport = in.proto == IPPROTO_ICMP ? in.sport : in.dport;
		key.dport = in.sport;
		key.proto = in.proto;
		key.dir = GN_CT_REPLY;
		ct = GN_MAP_CT.lookup(&key);
		if (ct) {
			if (gn_csum_set_addr(skb, p, GN_IP_DST_OFF, p->daddr, ct->addr) < 0 ||
			    gn_nat_icmp_rewrite(skb, p, &in, 0, ct->addr, ct->port) < 0)
				return gn_stats_drop(GN_DROP_REWRITE);
			return TC_ACT_OK;
		}
	}
	m = gn_nat_ingress_lookup(in.saddr, in.proto, in.sport, in.has_ports);
	if (!m)
		return gn_stats_drop(GN_DROP_UNMAPPED);
	if (gn_csum_set_addr(skb, p, GN_IP_DST_OFF, p->daddr, m->addr) < 0 ||
	    gn_nat_icmp_rewrite(skb, p, &in, 0, m->addr, in.sport) < 0)
		return gn_stats_drop(GN_DROP_REWRITE);
	gn_nat_count(m, p->len);
	skb->mark |= GN_MARK_INGRESS;
	return TC_ACT_OK;
}

/**
 * gn_nat_icmp_to_tunnel - an ICMP error leaving toward a remote cluster about
 * a packet that came from it: to a pod we source-translated (connection
 * table) or to a mapped target (reverse map). Quoted destination and, when it
 * is the same host, the outer source become the global ones.
 */
static __always_inline int gn_nat_icmp_to_tunnel(struct __sk_buff *skb, const struct gn_pkt *p)
{
	struct gn_inner in = {};
	struct gn_ct_key key = {};
	struct gn_ct_value *ct;
	struct gn_nat_value *m;
	__be32 addr;

	if (gn_nat_icmp_inner(skb, p, &in) < 0)
		return TC_ACT_OK;
	if (in.has_ports) {
		key.saddr = in.daddr;
		key.daddr = in.saddr;
		key.sport = in.dport;
		key.dport = in.sport;
		key.proto = in.proto;
		key.dir = GN_CT_EGRESS;
		ct = GN_MAP_CT.lookup(&key);
		if (ct) {
			if (gn_nat_icmp_rewrite(skb, p, &in, 1, ct->addr, ct->port) < 0 ||
			    (p->saddr == in.daddr &&
			     gn_csum_set_addr(skb, p, GN_IP_SRC_OFF, p->saddr, ct->addr) < 0))
				return gn_stats_drop(GN_DROP_REWRITE);
			return TC_ACT_OK;
		}
	}
	m = gn_nat_reverse_lookup(in.daddr, in.proto, in.dport, in.has_ports);
	if (!m)
		return TC_ACT_OK;
	addr = m->addr;
	if (gn_nat_icmp_rewrite(skb, p, &in, 1, addr, in.dport) < 0)
		return gn_stats_drop(GN_DROP_REWRITE);
	if (p->saddr != in.daddr) {
		m = gn_nat_reverse_lookup(p->saddr, 0, 0, 0);
		if (!m)
			return TC_ACT_OK;
		addr = m->addr;
	}
	if (gn_csum_set_addr(skb, p, GN_IP_SRC_OFF, p->saddr, addr) < 0)
		return gn_stats_drop(GN_DROP_REWRITE);
	return TC_ACT_OK;
}

#endif /* GN_LIB_ICMP_H */
