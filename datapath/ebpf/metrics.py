"""The eBPF datapath's counters as Prometheus metrics, read from the pinned maps
at scrape time (nothing is kept in the process).

Per mapping: `globalnet_ebpf_mapping_packets_total` / `..._bytes_total` with
labels global_ip, local, ports and direction (in: toward the target, out: its
replies and own traffic). That is one series pair per mapping element - up to
two per exported port - which is what "counters per mapping" costs; scrape
accordingly. Drops: `globalnet_ebpf_drops_total` by reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from datapath.ebpf.inspect import read_drops, read_mappings


class EbpfCollector(Collector):
    def __init__(self, *, netns: str | None = None, bpffs: Path | None = None) -> None:
        self.netns, self.bpffs = netns, bpffs

    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = ["global_ip", "local", "ports", "direction"]
        packets = CounterMetricFamily("globalnet_ebpf_mapping_packets",
                                      "Packets translated per ingress mapping", labels=labels)
        octets = CounterMetricFamily("globalnet_ebpf_mapping_bytes",
                                     "Bytes translated per ingress mapping", labels=labels)
        drops = CounterMetricFamily("globalnet_ebpf_drops", "Packets the programs dropped",
                                    labels=["reason"])
        try:
            rows = read_mappings(netns=self.netns, bpffs=self.bpffs)
            dropped = read_drops(netns=self.netns, bpffs=self.bpffs)
        except OSError:
            return  # not installed (yet): no samples
        for r in rows:
            for direction, p, b in (("in", r.packets_in, r.bytes_in),
                                    ("out", r.packets_out, r.bytes_out)):
                packets.add_metric([r.global_ip, r.local, r.ports, direction], p)
                octets.add_metric([r.global_ip, r.local, r.ports, direction], b)
        for reason, count in dropped.items():
            drops.add_metric([reason], count)
        yield packets
        yield octets
        yield drops
