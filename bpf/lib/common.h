/* Shared definitions of the Globalnet tc programs: headers, packet parsing.
 *
 * Nothing Python must also know is written here. Pin paths, sizes, drop
 * codes, marks and flags arrive as -D defines from datapath/ebpf/names.py
 * (`defines()`), map names by substitution (datapath/ebpf/loader.py);
 * compiling without them stops at the #error below.
 *
 * IPv4 over Ethernet framing only (veth, VXLAN, bridges): the IP header starts
 * at ETH_HLEN. Every address and port in these programs is in network byte
 * order, as on the wire; counters and sizes are in host order.
 */
#ifndef GN_LIB_COMMON_H
#define GN_LIB_COMMON_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/icmp.h>
#include <uapi/linux/pkt_cls.h>

#ifndef GN_CONFIG
#error "compile through datapath/ebpf/loader.py: it passes the -D configuration"
#endif

/* A pinned map, sized and pinned by Python (-D). Its name is written
 * GN_MAP_<X>: the loader replaces that token with the name from
 * datapath/ebpf/names.py before compiling (bcc cannot rewrite map calls on a
 * name that comes from a macro). */
#define GN_MAP(type, key, value, name, size, pin) \
	BPF_TABLE_PINNED(type, key, value, name, size, pin)
#define GN_MAP_FLAGS(type, key, value, name, size, pin, flags) \
	BPF_TABLE_PINNED(type, key, value, name, size, pin, flags)

#define GN_IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define GN_IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define GN_IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

/* IPv4 fragment bits of iphdr.frag_off, host order. */
#define GN_IP_MF 0x2000
#define GN_IP_OFFSET 0x1fff

#define GN_TCP_FIN 0x01
#define GN_TCP_SYN 0x02
#define GN_TCP_RST 0x04
#define GN_TCP_ACK 0x10

/* What the programs need of one IPv4 packet, read once by gn_parse(). */
struct gn_pkt {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;     /* TCP/UDP source port; ICMP echo: the identifier */
	__be16 dport;     /* TCP/UDP destination port; ICMP echo: the identifier */
	__u32 l4_off;     /* offset of the L4 header from the start of the frame */
	__u32 len;        /* skb->len, for the byte counters */
	__u8 proto;
	__u8 first_frag;  /* the L4 header is in this packet (unfragmented or offset 0) */
	__u8 icmp_type;
	__u8 icmp_error;  /* ICMP destination unreachable, time exceeded, parameter problem */
	__u8 tcp_flags;
	__u8 has_ports;   /* TCP, UDP, SCTP or ICMP echo: sport/dport identify the flow */
};

static __always_inline int gn_is_echo(__u8 type)
{
	return type == ICMP_ECHO || type == ICMP_ECHOREPLY;
}

static __always_inline int gn_is_icmp_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/**
 * gn_parse - read the IPv4 and L4 facts of the packet in @skb into @p.
 * Returns 0 for an IPv4 packet, -1 for anything else (passed untouched).
 */
static __always_inline int gn_parse(struct __sk_buff *skb, struct gn_pkt *p)
{
	struct iphdr ip;
	__u8 l4[14];
	__u16 frag;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->proto = ip.protocol;
	p->l4_off = ETH_HLEN + ip.ihl * 4;
	p->len = skb->len;
	frag = bpf_ntohs(ip.frag_off);
	p->first_frag = (frag & GN_IP_OFFSET) == 0;
	if (!p->first_frag)
		return 0;
	switch (p->proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, p->l4_off, l4, 14) < 0)
			return -1;
		p->tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, p->l4_off, l4, 4) < 0)
			return -1;
		break;
	case IPPROTO_ICMP:
		if (bpf_skb_load_bytes(skb, p->l4_off, l4, 8) < 0)
			return -1;
		p->icmp_type = l4[0];
		p->icmp_error = gn_is_icmp_error(l4[0]);
		if (gn_is_echo(l4[0])) {
			__builtin_memcpy(&p->sport, &l4[4], 2);
			p->dport = p->sport;
			p->has_ports = 1;
		}
		return 0;
	default:
		return 0;
	}
	__builtin_memcpy(&p->sport, &l4[0], 2);
	__builtin_memcpy(&p->dport, &l4[2], 2);
	p->has_ports = 1;
	return 0;
}

#endif /* GN_LIB_COMMON_H */
