/* Stateless 1:1 translation (gn_nat_*): global IP <-> ClusterIP / pod IP,
 * the CIDR classification and the health-check addresses.
 *
 * Maps (names, sizes and pin paths from datapath/ebpf/names.py):
 *   GN_MAP_INGRESS  hash  gn_nat_key{global IP, proto, port} -> gn_nat_value{target}
 *   GN_MAP_REVERSE  hash  gn_nat_key{target, proto, port}    -> gn_nat_value{global IP}
 *   GN_MAP_CIDRS    LPM   gn_cidr_key -> gn_cidr_value{GN_CIDR_OURS | GN_CIDR_REMOTE}
 *   GN_MAP_HEALTH   hash  __be32 global IP -> __u32 (1)
 *   GN_MAP_PORT_HINT array __u32 word -> __u64 bits: which addresses may have
 *                   exported-port entries (see gn_nat__maybe_ports)
 *   GN_MAP_INGRESS_SLOT array __u32 low 16 bits of a global IP (host order)
 *                   -> gn_nat_slot: a copy of one every-port GN_MAP_INGRESS entry
 *                   with those low bits, read without hashing (gn_nat__every_port)
 * A mapping for every port has proto 0 and port 0; a ClusterIP mapping
 * restricted to its exported ports has one key per protocol and port. A
 * headless target (pod, selector-less endpoint) has both: it is rewritten on
 * every port, since its own connections leave 1:1 through the same global IP
 * and their replies must come back, but its every-port entry carries
 * GN_NAT_F_ADMIT_PORTS: new connections to it are admitted on the exported
 * ports only, and the replies of its own connections are recognised by the
 * connection-table entry gn_to_tunnel records for them (lib/ct.h). Python mirrors these
 * structs in datapath/ebpf/structs.py (tests/unit/test_ebpf_structs.py and
 * tests/netns/test_bpf_layout.py check the layouts agree).
 */
#ifndef GN_LIB_NAT_H
#define GN_LIB_NAT_H

#include "lib/common.h"
#include "lib/csum.h"

struct gn_nat_key {
	__be32 addr;    /* network order */
	__u8 proto;     /* IPPROTO_TCP/UDP/SCTP, or 0: every protocol and port */
	__u8 pad;       /* always 0 */
	__be16 port;    /* network order; 0 with proto 0 */
};                      /* 8 bytes, no implicit padding */

struct gn_nat_value {
	__be32 addr;    /* the translated address, network order */
	__u32 flags;    /* host order: GN_NAT_F_ADMIT_PORTS on the every-port entry of a
	                 * headless target, whose exported ports have their own entries */
	__u64 packets;  /* host order, counted by the programs */
	__u64 bytes;    /* host order, counted by the programs (skb->len) */
};                      /* 24 bytes, no implicit padding */

/* One slot of GN_MAP_INGRESS_SLOT: the every-port entry of global IP `global_ip`
 * (proto 0, port 0 in GN_MAP_INGRESS), which stays the authoritative copy;
 * Python writes both (datapath/ebpf/backend.py). global_ip 0: an empty slot. */
struct gn_nat_slot {
	__be32 global_ip;           /* network order; 0: empty */
	__u32 pad;                  /* always 0 */
	struct gn_nat_value value;  /* addr and flags as in GN_MAP_INGRESS; the counters
	                             * count the packets translated through the slot */
};                                  /* 32 bytes, no implicit padding */

struct gn_cidr_key {
	__u32 prefixlen; /* host order, as BPF_MAP_TYPE_LPM_TRIE requires */
	__be32 addr;     /* network order */
};                       /* 8 bytes */

struct gn_cidr_value {
	__u32 kind;      /* host order: GN_CIDR_OURS or GN_CIDR_REMOTE */
};                       /* 4 bytes */

GN_MAP("hash", struct gn_nat_key, struct gn_nat_value, GN_MAP_INGRESS, GN_INGRESS_SIZE,
       GN_PIN_INGRESS);
GN_MAP("hash", struct gn_nat_key, struct gn_nat_value, GN_MAP_REVERSE, GN_INGRESS_SIZE,
       GN_PIN_REVERSE);
GN_MAP_FLAGS("lpm_trie", struct gn_cidr_key, struct gn_cidr_value, GN_MAP_CIDRS, GN_CIDRS_SIZE,
	     GN_PIN_CIDRS, BPF_F_NO_PREALLOC);
GN_MAP("hash", __be32, __u32, GN_MAP_HEALTH, GN_HEALTH_SIZE, GN_PIN_HEALTH);
GN_MAP("array", __u32, __u64, GN_MAP_PORT_HINT, GN_PORT_HINT_SIZE, GN_PIN_PORT_HINT);
GN_MAP("array", __u32, struct gn_nat_slot, GN_MAP_INGRESS_SLOT, GN_INGRESS_SLOT_SIZE,
       GN_PIN_INGRESS_SLOT);

/* GN_CIDR_OURS or GN_CIDR_REMOTE for @addr, 0 when it is neither. */
static __always_inline __u32 gn_nat_cidr_kind(__be32 addr)
{
	struct gn_cidr_key key = { .prefixlen = 32, .addr = addr };
	struct gn_cidr_value *v = GN_MAP_CIDRS.lookup(&key);

	return v ? v->kind : 0;
}

static __always_inline int gn_nat__port_proto(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/**
 * gn_nat__maybe_ports - whether @addr may have exported-port entries in the
 * ingress (@reverse 0) or reverse map (@reverse 1).
 *
 * One bit per low 16 bits of the address (host order), GN_HINT_WORDS words
 * per map, set by Python while any port entry of such an address is
 * installed: 16 KiB that stay in cache, read without hashing. It only orders
 * the lookups below (exported port's entry first, or the every-port entry
 * first), so that a packet costs one hash lookup for either kind of mapping;
 * the answer never depends on it (a wrong bit costs one more lookup, never
 * a wrong translation).
 */
static __always_inline int gn_nat__maybe_ports(__be32 addr, __u32 reverse)
{
	__u32 low = bpf_ntohl(addr) & 0xffff;
	__u32 idx = reverse * GN_HINT_WORDS + (low >> 6);
	__u64 *word = GN_MAP_PORT_HINT.lookup(&idx);

	return word && ((*word >> (low & 63)) & 1);
}

/**
 * gn_nat__every_port - the every-port entry of global IP @addr in the ingress
 * map: from its slot (GN_MAP_INGRESS_SLOT, indexed by the low 16 bits of the
 * address, host order) when the slot holds @addr, else from the hash.
 *
 * The slot is a flat array (2 MiB, no buckets, no key compare beyond one
 * word), so with 50,000 mappings a packet costs one cache line instead of a
 * hash bucket and an element scattered over 8 MiB: what made the hash lookup's
 * cost grow with the number of mappings. Python keeps at most one address per
 * slot (the others, with the same low 16 bits in a global CIDR larger than a
 * /16, stay in the hash only) and writes a slot's address last and clears it
 * first, so a slot never claims an address whose entry it does not copy.
 * Counters of packets translated through a slot are in the slot.
 */
static __always_inline struct gn_nat_value *gn_nat__every_port(__be32 addr)
{
	__u32 idx = bpf_ntohl(addr) & (GN_INGRESS_SLOT_SIZE - 1);
	struct gn_nat_slot *slot = GN_MAP_INGRESS_SLOT.lookup(&idx);
	struct gn_nat_key key = { .addr = addr };

	if (slot && slot->global_ip == addr)
		return &slot->value;
	return GN_MAP_INGRESS.lookup(&key);
}

/**
 * gn_nat_ingress_lookup - the mapping of global IP @addr for a packet of
 * @proto to @port: the exported port's entry, else the every-port entry.
 * @have_port is 0 for a later fragment (no L4 header: every-port entry only).
 * Returns the value (counters updatable in place) or NULL.
 *
 * With the port hint set, the exported port's entry is looked up first,
 * else the every-port entry, and the port's entry only when there is no
 * every-port entry (a ClusterIP restricted to its ports) or that entry says
 * port entries exist (GN_NAT_F_ADMIT_PORTS). Both orders find the port's
 * entry when there is one, else the every-port entry: an every-port entry
 * without GN_NAT_F_ADMIT_PORTS never has port entries beside it
 * (datapath/ebpf/elements.py). One hash lookup per packet for either kind
 * of mapping while the hint is right; the every-port entry comes from its
 * slot (gn_nat__every_port) when it has one.
 */
static __always_inline struct gn_nat_value *gn_nat_ingress_lookup(__be32 addr, __u8 proto,
								   __be16 port, int have_port)
{
	struct gn_nat_key key = { .addr = addr };
	struct gn_nat_value *v, *w;
	int ports = have_port && gn_nat__port_proto(proto);
	int hint = ports && gn_nat__maybe_ports(addr, 0);

	if (hint) {
		key.proto = proto;
		key.port = port;
		v = GN_MAP_INGRESS.lookup(&key);
		if (v)
			return v;
	}
	v = gn_nat__every_port(addr);
	if (!ports || hint || (v && !(v->flags & GN_NAT_F_ADMIT_PORTS)))
		return v;
	key.proto = proto;
	key.port = port;
	w = GN_MAP_INGRESS.lookup(&key);
	return w ? w : v;
}

/* The same for the reverse map: target @addr sending from @port. (Two copies:
 * bcc needs each map call spelled with its map's name, not through a macro.) */
static __always_inline struct gn_nat_value *gn_nat_reverse_lookup(__be32 addr, __u8 proto,
								   __be16 port, int have_port)
{
	struct gn_nat_key key = { .addr = addr };
	struct gn_nat_value *v, *w;
	int ports = have_port && gn_nat__port_proto(proto);
	int hint = ports && gn_nat__maybe_ports(addr, 1);

	if (hint) {
		key.proto = proto;
		key.port = port;
		v = GN_MAP_REVERSE.lookup(&key);
		if (v)
			return v;
		key.proto = 0;
		key.port = 0;
	}
	v = GN_MAP_REVERSE.lookup(&key);
	if (!ports || hint || (v && !(v->flags & GN_NAT_F_ADMIT_PORTS)))
		return v;
	key.proto = proto;
	key.port = port;
	w = GN_MAP_REVERSE.lookup(&key);
	return w ? w : v;
}

static __always_inline int gn_nat_is_health_check(__be32 addr)
{
	return GN_MAP_HEALTH.lookup(&addr) != NULL;
}

static __always_inline void gn_nat_count(struct gn_nat_value *v, __u32 len)
{
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, len);
}

/**
 * gn_nat_answer_echo - turn the ICMP echo request in @skb into its reply and
 * send it back out of the device it came in on (the health check answer).
 * Addresses and MACs are swapped (the IP checksum covers the same words);
 * the type changes from 8 to 0 with the ICMP checksum.
 */
static __always_inline int gn_nat_answer_echo(struct __sk_buff *skb, const struct gn_pkt *p)
{
	__u8 macs[12], swapped[12];
	__be32 saddr = p->saddr, daddr = p->daddr;
	__u16 old_word, new_word;
	__u8 *w = (__u8 *)&new_word;
	int i;

	if (bpf_skb_load_bytes(skb, 0, macs, 12) < 0)
		return TC_ACT_SHOT;
#pragma unroll
	for (i = 0; i < 6; i++) {
		swapped[i] = macs[i + 6];
		swapped[i + 6] = macs[i];
	}
	if (bpf_skb_store_bytes(skb, 0, swapped, 12, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, GN_IP_SRC_OFF, &daddr, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, GN_IP_DST_OFF, &saddr, 4, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, p->l4_off, &old_word, 2) < 0)
		return TC_ACT_SHOT;
	new_word = old_word;
	w[0] = ICMP_ECHOREPLY;
	if (bpf_l4_csum_replace(skb, p->l4_off + 2, old_word, new_word, 2) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off, &new_word, 2, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* Offset of the port (or echo identifier) field of @p: source or destination. */
static __always_inline __u32 gn_nat__port_off(const struct gn_pkt *p, int dst)
{
	if (p->proto == IPPROTO_ICMP)
		return p->l4_off + 4;
	return p->l4_off + (dst ? 2 : 0);
}

/**
 * gn_nat_rewrite - rewrite the source (@dst 0) or destination (@dst 1) of @p
 * to @addr and, when @port_too and the L4 header is here, the port to @port,
 * with every checksum. Returns 0 or a negative helper error.
 */
static __always_inline int gn_nat_rewrite(struct __sk_buff *skb, const struct gn_pkt *p, int dst,
					  __be32 addr, __be16 port, int port_too)
{
	int ret = gn_csum_set_addr(skb, p, dst ? GN_IP_DST_OFF : GN_IP_SRC_OFF,
				   dst ? p->daddr : p->saddr, addr);

	if (ret < 0 || !port_too || !p->first_frag || !p->has_ports || p->proto == IPPROTO_SCTP)
		return ret;
	return gn_csum_set_port(skb, p, gn_nat__port_off(p, dst), dst ? p->dport : p->sport, port);
}

#endif /* GN_LIB_NAT_H */
