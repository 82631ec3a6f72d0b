/* Packets arriving from the other clusters.
 *
 * gn_from_tunnel attaches at tc ingress (clsact, direct action) of the
 * gateway's device toward the other clusters (the cable or underlay device
 * that routes their global CIDRs), and runs for every packet received on it,
 * before the stack: before conntrack, kube-proxy and routing, so they see the
 * ClusterIP or pod IP and never our global IPs.
 *
 * For a destination inside our global CIDR, in order:
 *   1. a reply to a connection we source-translated (lib/ct.h): back to the pod;
 *   2. from a remote global CIDR, a mapped global IP (lib/nat.h), the exported
 *      port's entry before the every-port entry, in one lookup while the
 *      port hint is right - the every-port entry from its slot, an array
 *      element, not a hash lookup (a headless target admits new TCP/UDP/SCTP
 *      connections on its exported ports only: GN_DROP_NOT_EXPORTED):
 *      destination rewritten to the ClusterIP / pod IP,
 *      and GN_MARK_INGRESS set so the masquerade bit kube-proxy sets on such
 *      a connection can be cleared before its postrouting masquerade;
 *   3. ICMP echo to a health-check global IP: answered here;
 *   4. anything else is dropped (GN_DROP_UNMAPPED).
 * ICMP errors follow the flow they quote (lib/icmp.h). Later fragments carry
 * no ports: they are translated by an every-port mapping, else dropped
 * (GN_DROP_FRAGMENT). Everything not for our global CIDR passes untouched.
 */
#include "lib/common.h"
#include "lib/csum.h"
#include "lib/stats.h"
#include "lib/nat.h"
#include "lib/egress.h"
#include "lib/ct.h"
#include "lib/icmp.h"

int gn_from_tunnel(struct __sk_buff *skb)
{
	struct gn_pkt p = {};
	struct gn_ct_key key = {};
	struct gn_ct_value *ct;
	struct gn_nat_value *m;

	if (gn_parse(skb, &p) < 0)
		return TC_ACT_OK;
	if (gn_nat_cidr_kind(p.daddr) != GN_CIDR_OURS)
		return TC_ACT_OK;
	if (p.proto == IPPROTO_ICMP && p.icmp_error)
		return gn_nat_icmp_from_tunnel(skb, &p);
	if (p.first_frag && p.has_ports) {
		key.saddr = p.saddr;
		key.daddr = p.daddr;
		key.sport = p.sport;
		key.dport = p.dport;
		key.proto = p.proto;
		key.dir = GN_CT_REPLY;
		ct = GN_MAP_CT.lookup(&key);
		if (ct) {
			gn_ct_touch(ct, &p, bpf_ktime_get_ns());
			if (gn_nat_rewrite(skb, &p, 1, ct->addr, ct->port, 1) < 0)
				return gn_stats_drop(GN_DROP_REWRITE);
			return TC_ACT_OK;
		}
	}
	if (gn_nat_cidr_kind(p.saddr) == GN_CIDR_REMOTE) {
		m = gn_nat_ingress_lookup(p.daddr, p.proto, p.dport, p.first_frag);
		if (m && (m->flags & GN_NAT_F_ADMIT_PORTS) && p.first_frag &&
		    gn_nat__port_proto(p.proto))
			return gn_stats_drop(GN_DROP_NOT_EXPORTED);
		if (m) {
			if (gn_nat_rewrite(skb, &p, 1, m->addr, 0, 0) < 0)
				return gn_stats_drop(GN_DROP_REWRITE);
			gn_nat_count(m, p.len);
			skb->mark |= GN_MARK_INGRESS;
			return TC_ACT_OK;
		}
	}
	if (!p.first_frag)
		return gn_stats_drop(GN_DROP_FRAGMENT);
	if (p.proto == IPPROTO_ICMP && p.icmp_type == ICMP_ECHO && gn_nat_is_health_check(p.daddr))
		return gn_nat_answer_echo(skb, &p);
	return gn_stats_drop(GN_DROP_UNMAPPED);
}
