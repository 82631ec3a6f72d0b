"""Every name and magic number of the nftables datapath, in one place.

Everything lives in one table of ours, so names carry no prefix. Base chains are
named `<type>-<hook>` after what they are, as kube-proxy's nftables mode does;
sets and maps are named after what they hold. Other components (kube-proxy, the
CNI, an admin) must never touch this table; `datapath/README.md` lists the hooks
and priorities they may rely on.
"""

from __future__ import annotations

# The table. `inet` so IPv6 maps and rules can join the same table later; every
# rule that matters names its family (`ip saddr`, `snat ip to`).
FAMILY = "inet"
TABLE = "globalnet"
TABLE_REF = f"{FAMILY} {TABLE}"  # what to pass to `nft list table`
TABLE_COMMENT = (
    "Globalnet gateway NAT (global IP <-> local address); owned by globalnet, never edit"
)

# Sets: address ranges the rules match on.
REMOTE_GLOBAL_CIDRS = "remote-global-cidrs"  # other clusters' global CIDRs (clusterset traffic)
GLOBAL_CIDR = "global-cidr"  # this cluster's own global CIDR
HEALTH_CHECK_IPS = "health-check-ips"  # global IPs the gateway itself answers (ICMP)

# Ingress maps: stateless 1:1 rewrite global IP <-> local target (ClusterIP or pod IP).
INGRESS_IPS = "ingress-ips"  # global IP -> target, every port
INGRESS_PORTS = "ingress-ports"  # global IP . proto . port -> target, exported ports only
REVERSE_IPS = "ingress-reverse-ips"  # target -> global IP (replies), every port
REVERSE_PORTS = "ingress-reverse-ports"  # target . proto . port -> global IP (replies)
# Headless targets (pod, selector-less endpoint) are rewritten on every port - their
# own connections leave 1:1 through the same global IP, and the replies must come
# back - but new connections from other clusters reach them on the exported ports only.
ADMIT_TARGETS = "ingress-admit-targets"  # headless target IPs with exported ports
ADMIT_PORTS = "ingress-admit-ports"  # headless target . proto . port admitted

# Egress maps: stateful SNAT to an address range (port translation when many-to-few).
EGRESS_PODS = "egress-pods"  # pod IP -> range; pod-selector, headless-pod, namespace groups
EGRESS_CIDRS = "egress-cidrs"  # local CIDR -> cluster egress range (the fallback)
# Headless pods leave by their own 1:1 global IP *statelessly*, like the replies of
# their ingress flows: SNAT would create conntrack state that the stateless ingress
# rewrite of the replies (daddr global IP -> pod IP, before conntrack) cannot match.
EGRESS_HEADLESS = "egress-headless"  # pod IP -> its own global IP; SNAT skips these

# Base chains, `<type>-<hook>`.
RAW_PREROUTING = "raw-prerouting"
NAT_PREROUTING = "nat-prerouting"
NAT_POSTROUTING = "nat-postrouting"
FILTER_POSTROUTING = "filter-postrouting"

# Priorities, as nft prints them (the text is compared with the kernel's listing).
# raw (-300): before conntrack (-200), so conntrack and kube-proxy's DNAT at
#   dstnat (-100) only ever see the ClusterIP / pod IP, never the global IP.
PRIO_RAW_PREROUTING = "raw"
# dstnat (-100): new connections only (nat): health-check redirect to the
#   gateway's own address, drop whatever else still heads for a global IP of ours.
#   Replies to our SNAT never get here (not new), so no conntrack lookup is needed.
PRIO_NAT_PREROUTING = "dstnat"
# srcnat - 10 (90): our SNAT decides before other srcnat chains (kube-proxy's
#   KUBE-POSTROUTING, CNI masquerade at 100) can claim the connection, and we clear
#   kube-proxy's masquerade bit on ingress connections before KUBE-POSTROUTING
#   reads it - but after filter FORWARD (0), where KUBE-FORWARD accepts on it.
PRIO_NAT_POSTROUTING = "srcnat - 10"
# srcnat + 10 (110): after conntrack has undone kube-proxy's DNAT on replies
#   (saddr is the ClusterIP again), rewrite it to the global IP; MSS clamping here
#   sees every SYN and SYN-ACK toward a remote cluster, forwarded or the node's own.
PRIO_FILTER_POSTROUTING = "srcnat + 10"

# kube-proxy (iptables and nftables modes) marks connections it wants to
# masquerade with this bit (KUBE-MARK-MASQ, `--masquerade-bit` 14). A ClusterIP
# packet from outside the cluster CIDR - every remote cluster's global egress IP -
# gets it, and KUBE-POSTROUTING would then hide the remote source behind the
# node address. We clear it for traffic from remote global CIDRs.
KUBE_MASQ_MARK = 0x4000
KEEP_MARK_MASK = 0xFFFFFFFF ^ KUBE_MASQ_MARK

# The kernel keeps at most 128 bytes of comment per object (NFTNL_UDATA_COMMENT_MAXLEN).
COMMENT_MAX = 128
