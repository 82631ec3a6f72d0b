"""The fixed part of our table: sets, maps and base chains, declared as data.

No rule here names a global IP: every per-object fact is a map or set element,
so a packet costs one hash lookup whatever the number of mappings, and a change
is an element update. The rules are written in the canonical form `nft list`
prints them in, so the kernel's listing can be compared line by line.

Packet walk (see datapath/README.md for the full picture):

* ingress, remote -> global IP: `raw-prerouting` rewrites daddr to the ClusterIP
  or pod IP before conntrack; kube-proxy DNATs the ClusterIP as usual;
  `nat-postrouting` clears kube-proxy's masquerade bit so the backend sees the
  remote global source; replies get saddr rewritten back to the global IP in
  `filter-postrouting`, after conntrack undid kube-proxy's DNAT. A new connection
  still addressed to a global IP of ours after `raw-prerouting` (no mapping, or
  an unexported port) is dropped in `nat-prerouting`. A headless pod or endpoint
  is rewritten on every port (its own connections leave 1:1 through the same
  global IP), so `nat-prerouting` drops new connections from remote clusters to
  it on any port it does not export (`ingress-admit-targets`/`-ports`).
* egress, pod -> remote global CIDR: `nat-postrouting` SNATs to the group's
  range (pod map first, then the cluster fallback); conntrack does the rest.
  A headless pod is not SNATed: its 1:1 global IP is written statelessly by
  `filter-postrouting` (and its replies by `raw-prerouting`), exactly like its
  ingress flows, so conntrack only ever sees the pod IP. This needs the pod's
  ingress rewrite to cover all ports; new connections to it are admitted on the
  exported ports only (`nat-prerouting`).
* health check: `nat-prerouting` redirects ICMP for the health-check IP to the
  gateway itself.
* MSS clamping: `filter-postrouting`, for SYNs and SYN-ACKs toward remote clusters.

Only two base chains see every forwarded packet (`raw-prerouting`,
`filter-postrouting`), each with one set lookup before its early `return`; the
nat chains see a connection's first packet only.
"""

from __future__ import annotations

from datapath.nftables import names as n
from datapath.nftables.model import ChainSpec, SetSpec, quote

SETS: tuple[SetSpec, ...] = (
    SetSpec(n.REMOTE_GLOBAL_CIDRS, "ipv4_addr", interval=True,
            comment="global CIDRs of the other clusters: only this traffic is translated"),
    SetSpec(n.GLOBAL_CIDR, "ipv4_addr", interval=True,
            comment="this cluster's global CIDR"),
    SetSpec(n.HEALTH_CHECK_IPS, "ipv4_addr",
            comment="global IPs the gateway answers ICMP for (gateway health checks)"),
    SetSpec(n.INGRESS_IPS, "ipv4_addr", data_type="ipv4_addr",
            comment="ingress: global IP -> ClusterIP or pod IP, all ports"),
    SetSpec(n.INGRESS_PORTS, "ipv4_addr . inet_proto . inet_service", data_type="ipv4_addr",
            comment="ingress: global IP . protocol . port -> ClusterIP or pod IP"),
    SetSpec(n.REVERSE_IPS, "ipv4_addr", data_type="ipv4_addr",
            comment="ingress replies: ClusterIP or pod IP -> global IP, all ports"),
    SetSpec(n.REVERSE_PORTS, "ipv4_addr . inet_proto . inet_service", data_type="ipv4_addr",
            comment="ingress replies: ClusterIP or pod IP . protocol . port -> global IP"),
    SetSpec(n.ADMIT_TARGETS, "ipv4_addr",
            comment="headless targets: new connections from remote clusters on exported "
                    "ports only"),
    SetSpec(n.ADMIT_PORTS, "ipv4_addr . inet_proto . inet_service",
            comment="headless target . protocol . port: the exported ports"),
    SetSpec(n.EGRESS_PODS, "ipv4_addr", data_type="interval ipv4_addr",
            comment="egress: pod IP -> global IP range (pod-selector and namespace groups)"),
    SetSpec(n.EGRESS_HEADLESS, "ipv4_addr", data_type="ipv4_addr",
            comment="egress: headless pod IP -> its own global IP (1:1, stateless, no SNAT)"),
    SetSpec(n.EGRESS_CIDRS, "ipv4_addr", data_type="interval ipv4_addr", interval=True,
            comment="egress: local CIDR -> cluster global egress IPs (fallback)"),
)

_L4 = "meta l4proto { tcp, udp, sctp }"


def _rule(text: str, comment: str) -> str:
    return f"{text} comment {quote(comment)}"


CHAINS: tuple[ChainSpec, ...] = (
    # Cheap tests first (protocol, ct state), set lookups after, early `return`s: every
    # packet the gateway forwards crosses these chains.
    ChainSpec(
        n.RAW_PREROUTING, "filter", "prerouting", n.PRIO_RAW_PREROUTING,
        comment="ingress: stateless global IP -> local rewrite, before conntrack",
        rules=(
            _rule(f"ip saddr != @{n.REMOTE_GLOBAL_CIDRS} return",
                  "only traffic from remote clusters is translated"),
            _rule(f"ip daddr set ip daddr map @{n.INGRESS_IPS} accept",
                  "to one of our global IPs: all ports"),
            _rule(f"{_L4} ip daddr set ip daddr . meta l4proto . th dport map @{n.INGRESS_PORTS}",
                  "to one of our global IPs: exported ports only"),
        ),
    ),
    ChainSpec(
        n.NAT_PREROUTING, "nat", "prerouting", n.PRIO_NAT_PREROUTING,
        comment="new connections to our global IPs: health checks, nothing unmapped",
        rules=(
            _rule(f"meta l4proto icmp ip daddr @{n.HEALTH_CHECK_IPS} redirect",
                  "ping to the health-check IP is answered by this gateway"),
            _rule(f"ip daddr @{n.GLOBAL_CIDR} drop",
                  "a global IP of ours without a mapping (or an unexported port) goes no further"),
            _rule(f"ip saddr @{n.REMOTE_GLOBAL_CIDRS} {_L4} ip daddr @{n.ADMIT_TARGETS} "
                  f"ip daddr . meta l4proto . th dport != @{n.ADMIT_PORTS} drop",
                  "headless targets: only the exported ports admit new connections"),
        ),
    ),
    ChainSpec(
        n.NAT_POSTROUTING, "nat", "postrouting", n.PRIO_NAT_POSTROUTING,
        comment="egress: SNAT pods to their global egress IPs; ingress: keep the remote source",
        rules=(
            _rule(f"ip saddr @{n.REMOTE_GLOBAL_CIDRS} "
                  f"meta mark set meta mark & 0x{n.KEEP_MARK_MASK:08x} return",
                  "ingress: clear kube-proxy's masquerade bit 0x4000, the backend sees the "
                  "remote source"),
            _rule(f"ip daddr != @{n.REMOTE_GLOBAL_CIDRS} return",
                  "local and non-clusterset traffic is never translated"),
            _rule(f"ip saddr @{n.EGRESS_HEADLESS} return",
                  "headless pods: 1:1 global IP, rewritten statelessly in filter-postrouting"),
            _rule(f"snat ip to ip saddr map @{n.EGRESS_PODS}",
                  "pod-selector and namespace groups, precedence resolved per pod"),
            _rule(f"snat ip to ip saddr map @{n.EGRESS_CIDRS}",
                  "everything else in the cluster: cluster global egress IPs"),
        ),
    ),
    ChainSpec(
        n.FILTER_POSTROUTING, "filter", "postrouting", n.PRIO_FILTER_POSTROUTING,
        comment="toward remote clusters: MSS clamping, stateless local -> global IP rewrite",
        rules=(
            _rule(f"ip daddr != @{n.REMOTE_GLOBAL_CIDRS} return",
                  "only traffic toward remote clusters is translated"),
            _rule("tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
                  "clamp MSS toward remote clusters (tunnel MTU)"),
            _rule(f"ip saddr set ip saddr map @{n.REVERSE_IPS} accept",
                  "from a mapped target (replies, headless pods): all ports"),
            _rule(f"{_L4} ip saddr set ip saddr . meta l4proto . th sport map @{n.REVERSE_PORTS}",
                  "replies from a mapped target: exported ports only"),
        ),
    ),
)

SETS_BY_NAME = {s.name: s for s in SETS}
CHAINS_BY_NAME = {c.name: c for c in CHAINS}
