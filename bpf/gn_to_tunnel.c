/* Packets leaving toward the other clusters.
 *
 * gn_to_tunnel attaches at tc egress (clsact, direct action) of the same
 * device as gn_from_tunnel, and runs for every packet sent on it, after the
 * stack: after netfilter's postrouting, so conntrack has already undone
 * kube-proxy's DNAT of replies (their source is the ClusterIP again).
 *
 * For a destination inside a remote global CIDR, in order:
 *   1. a connection we source-translated (lib/ct.h): same global IP and port;
 *   2. from a mapped ClusterIP / pod IP (lib/nat.h reverse map; replies of
 *      ingress flows and headless pods' own traffic): the source becomes its
 *      global IP, statelessly, ports unchanged; a headless target's own
 *      connection (not from an exported port) also records its reply entry,
 *      so that gn_from_tunnel lets the replies in - unless a pod-selector
 *      group claims the pod, which then translates it as in 3.;
 *   3. a pod of an egress group (lib/egress.h): a new connection gets a
 *      global IP and port of its group and both directions are recorded;
 *   4. anything else passes untouched (e.g. the gateway's health-check reply).
 * ICMP errors follow the flow they quote (lib/icmp.h). Later fragments carry
 * no ports: stateless entries translate them, connections cannot
 * (GN_DROP_FRAGMENT). TCP SYNs and SYN-ACKs get their MSS clamped to the
 * device (lib/mss.h).
 */
#include "lib/common.h"
#include "lib/csum.h"
#include "lib/stats.h"
#include "lib/nat.h"
#include "lib/egress.h"
#include "lib/ct.h"
#include "lib/icmp.h"
#include "lib/mss.h"

int gn_to_tunnel(struct __sk_buff *skb)
{
	struct gn_pkt p = {};
	struct gn_ct_key key = {};
	struct gn_ct_value *ct, fresh = {};
	struct gn_nat_value *m;
	struct gn_egress_value *g;
	__u64 now;
	int reason;

	if (gn_parse(skb, &p) < 0)
		return TC_ACT_OK;
	if (gn_nat_cidr_kind(p.daddr) != GN_CIDR_REMOTE)
		return TC_ACT_OK;
	if (p.proto == IPPROTO_ICMP && p.icmp_error)
		return gn_nat_icmp_to_tunnel(skb, &p);
	now = bpf_ktime_get_ns();
	if (p.first_frag && p.proto == IPPROTO_TCP && (p.tcp_flags & GN_TCP_SYN))
		gn_nat_clamp_mss(skb, &p);
	if (p.first_frag) {
		gn_ct_egress_key(&key, &p);
		ct = GN_MAP_CT.lookup(&key);
		if (ct) {
			gn_ct_touch(ct, &p, now);
			gn_ct_ensure_reply(&p, ct, now);
			if (gn_nat_rewrite(skb, &p, 0, ct->addr, ct->port, 1) < 0)
				return gn_stats_drop(GN_DROP_REWRITE);
			return TC_ACT_OK;
		}
	}
	m = gn_nat_reverse_lookup(p.saddr, p.proto, p.sport, p.first_frag);
	if (m && (m->flags & GN_NAT_F_ADMIT_PORTS) && p.first_frag && p.has_ports &&
	    gn_nat__port_proto(p.proto)) {
		/* A headless target's own connection: a pod-selector group that claims
		 * the pod wins (Python put it in the pod map), else its own global IP. */
		if (GN_MAP_EGRESS_PODS.lookup(&p.saddr))
			m = NULL;
		else
			gn_ct_record_reply(&p, m->addr, now);
	}
	if (m) {
		if (gn_nat_rewrite(skb, &p, 0, m->addr, 0, 0) < 0)
			return gn_stats_drop(GN_DROP_REWRITE);
		gn_nat_count(m, p.len);
		return TC_ACT_OK;
	}
	g = gn_egress_group(p.saddr);
	if (!g)
		return TC_ACT_OK;
	if (!p.first_frag)
		return gn_stats_drop(GN_DROP_FRAGMENT);
	if (p.proto == IPPROTO_ICMP && !p.has_ports)
		return gn_stats_drop(GN_DROP_PROTO);
	reason = gn_ct_create(&p, g, now, &fresh);
	if (reason)
		return gn_stats_drop(reason);
	if (gn_nat_rewrite(skb, &p, 0, fresh.addr, fresh.port, 1) < 0)
		return gn_stats_drop(GN_DROP_REWRITE);
	return TC_ACT_OK;
}
