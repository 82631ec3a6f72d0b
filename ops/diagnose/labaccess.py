"""Node access in the lab: every node is a network namespace on this machine.

The gateway's nftables table is read through its namespace (libnftables and
netlink, as `gnctl show nat --netns` does), the eBPF pins through the agent pod's
root, DNS is asked from the gateway node (lab/globalnet.py `dns_answers`) and
kube-proxy's flags are read from the lab's own kube-proxy processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ops.diagnose.kubeproxy import mode_of_flags
from ops.diagnose.target import DatapathReport, NotChecked


class LabAccess:
    how = "lab network namespace"

    def __init__(self, lab: Any, cluster: str) -> None:
        self.lab = lab
        self.cluster = cluster

    def _netns(self, node: str) -> str:
        from lab.node import node_by_name

        try:
            return str(node_by_name(self.lab.plan.cluster(self.cluster), node).netns)
        except LookupError as exc:
            raise NotChecked(f"node {node} is not a node of lab cluster {self.cluster}") from exc

    def datapath(self, node: str, datapath: str, expected: Sequence[str]) -> DatapathReport:
        netns = self._netns(node)
        if datapath == "ebpf":
            from datapath.ebpf.inspect import read_mappings as read_ebpf

            try:
                found = {r.global_ip for r in read_ebpf(netns=netns)}
            except OSError:
                return DatapathReport(False, 0, tuple(expected))
            return DatapathReport(True, len(found), tuple(ip for ip in expected
                                                          if ip not in found))
        from datapath.nftables.inspect import rows_from_table
        from datapath.nftables.kernel import LibNftClient

        try:
            client = LibNftClient(netns)
        except OSError as exc:
            raise NotChecked(f"cannot enter {netns}: {exc}") from None
        try:
            table = client.read_table()
        finally:
            client.close()
        if table is None:
            return DatapathReport(False, 0, tuple(expected))
        ingress = {r.global_ip for r in rows_from_table(table) if r.direction == "ingress"}
        return DatapathReport(True, len(ingress), tuple(ip for ip in expected
                                                        if ip not in ingress))

    def dns_answers(self) -> bool:
        from lab.globalnet import dns_answers

        return bool(dns_answers(self.lab.plan.cluster(self.cluster)))

    def kube_proxy_modes(self) -> dict[str, str]:
        modes = {}
        prefix = f"{self.cluster}/"
        for proc in self.lab.state.processes if self.lab.state else []:
            if not (proc.name.startswith(prefix) and proc.name.endswith("/kube-proxy")):
                continue
            node = proc.name[len(prefix):].rsplit("/", 1)[0]
            try:
                argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                modes[node] = "not running"
                continue
            modes[node] = mode_of_flags(argv) or "iptables"
        if not modes:
            raise NotChecked("no kube-proxy process recorded for this lab cluster")
        return modes
