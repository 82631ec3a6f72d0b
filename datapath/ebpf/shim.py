"""The one netfilter rule the eBPF datapath needs: keep the remote source.

kube-proxy marks every new connection to a ClusterIP from outside the cluster
CIDR (which a remote cluster's global egress IP always is) with its masquerade
bit 0x4000, and masquerades it in nat postrouting (srcnat, 100); the backend
would then see the gateway's address. No BPF hook runs between kube-proxy's
nat prerouting, where the bit is set, and that decision, so gn_from_tunnel marks
the packets it translated (`names.MARK_INGRESS`) and this static rule, in a
filter chain at srcnat - 10, clears both bits on them. It holds no address
and no per-mapping state: it never changes with the intent.

Table `ip globalnet-ebpf` is ours alone; cleanup deletes it.
"""

from __future__ import annotations

from datapath.ebpf import names as n
from datapath.ebpf import tc

TABLE = "globalnet-ebpf"
CHAIN = "filter-postrouting"


def _rule() -> str:
    keep = 0xFFFF_FFFF & ~(n.MARK_INGRESS | n.KUBE_MASQ_MARK)
    return (f"meta mark & 0x{n.MARK_INGRESS:08x} == 0x{n.MARK_INGRESS:08x} "
            f"meta mark set meta mark & 0x{keep:08x}")


def script() -> str:
    return "\n".join([
        f"add table ip {TABLE} {{ comment \"Globalnet eBPF datapath: kube-proxy masquerade "
        "shim (see datapath/ebpf/shim.py)\"; }",
        f"add chain ip {TABLE} {CHAIN} {{ type filter hook postrouting priority srcnat - 10; "
        "policy accept; comment \"ingress flows keep their remote source\"; }",
        f"flush chain ip {TABLE} {CHAIN}",
        f"add rule ip {TABLE} {CHAIN} {_rule()} comment \"marked by gn_from_tunnel: clear "
        "it and kube-proxy's masquerade bit 0x4000\"",
        "",
    ])


def listing(netns: str | None) -> str:
    """Our table as `nft list` prints it ('' when absent)."""
    return tc.run(netns, ["nft", "list", "table", "ip", TABLE], check=False)


def installed(netns: str | None) -> bool:
    text = listing(netns)
    return _rule() in text


def ensure(netns: str | None) -> bool:
    """Install the rule unless it is there. True when something was written."""
    if installed(netns):
        return False
    tc.run(netns, ["nft", "-f", "-"], input_text=script())
    return True


def remove(netns: str | None) -> None:
    tc.run(netns, ["nft", "delete", "table", "ip", TABLE], check=False)
