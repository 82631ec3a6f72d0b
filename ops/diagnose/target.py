"""One cluster to diagnose, and how its nodes can be looked into.

The API tells what Globalnet *intends*; some checks also need what a node holds
(the gateway's nftables table or eBPF maps, the DNS server answering, the flags
kube-proxy runs with). `NodeAccess` is that reach: the lab's network namespaces
(`labaccess`), a probe pod on a real node (`podaccess`), or `NoAccess`, with which
those checks say WARN "not checked" instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ops.cluster import ClusterState


class NotChecked(Exception):
    """A node could not be looked into; str() says why, in one line."""


@dataclass(frozen=True)
class DatapathReport:
    """What the gateway's datapath holds, compared with the addresses expected."""

    present: bool  # the nftables table / the pinned maps exist
    mappings: int  # ingress mappings installed
    missing: tuple[str, ...]  # expected global IPs without a mapping (maybe only the first)
    missing_count: int | None = None  # how many there are, when `missing` is cut short

    @property
    def missing_total(self) -> int:
        return len(self.missing) if self.missing_count is None else self.missing_count


class NodeAccess(Protocol):
    """How to look into a cluster's nodes; each method raises NotChecked if it cannot."""

    @property
    def how(self) -> str:
        """A few words for messages ("lab network namespace", "probe pod")."""

    def datapath(self, node: str, datapath: str, expected: Sequence[str]) -> DatapathReport:
        """The ingress mappings of `datapath` (nftables / ebpf) on `node`."""

    def dns_answers(self) -> bool:
        """Whether the Lighthouse DNS server answers a query from inside the cluster."""

    def kube_proxy_modes(self) -> dict[str, str]:
        """node -> kube-proxy's `--proxy-mode` as it runs there."""


class NoAccess:
    """No way into the nodes: every node check is WARN "not checked"."""

    how = "no node access"

    def __init__(self, reason: str = "no access to the nodes") -> None:
        self.reason = reason

    def datapath(self, node: str, datapath: str, expected: Sequence[str]) -> DatapathReport:
        raise NotChecked(self.reason)

    def dns_answers(self) -> bool:
        raise NotChecked(self.reason)

    def kube_proxy_modes(self) -> dict[str, str]:
        raise NotChecked(self.reason)


@dataclass(frozen=True)
class Target:
    name: str  # the context (or lab cluster) name, for the table
    state: ClusterState
    access: NodeAccess
