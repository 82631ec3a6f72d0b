"""What the kernel holds right now, as rows for `gnctl show nat`.

Reads our table (never the controller's memory), so what it shows is what
packets get. `TABLE_REF` is what to give `nft list table` for the raw view.

    rows = read_mappings(netns=None)
    rich.print(render_table(rows))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.table import Table

from datapath.nftables import names as n
from datapath.nftables.kernel import LibNftClient
from datapath.nftables.model import Element, ObservedTable

TABLE_REF = n.TABLE_REF


@dataclass(frozen=True, order=True)
class MappingRow:
    """One translation as installed. `ports` is "all" or "tcp/80, udp/53"."""

    direction: str  # ingress, egress, health-check
    global_ip: str  # address or range
    local: str  # target IP, pod IP or local CIDR; "gateway" for health checks
    ports: str
    owner: str  # the element comment: the API object it comes from
    source: str  # the map or set it was read from


def rows_from_table(table: ObservedTable | None) -> list[MappingRow]:
    """Rows from a read-back table (pure; the unit tests feed it a FakeNft's table)."""
    if table is None:
        return []
    rows: list[MappingRow] = []

    def elements(name: str) -> Iterable[Element]:
        s = table.sets.get(name)
        return s.elements.values() if s else ()

    for el in elements(n.INGRESS_IPS):
        rows.append(MappingRow("ingress", el.key, el.value, "all", el.comment, n.INGRESS_IPS))
    by_mapping: dict[tuple[str, str, str], list[str]] = {}
    for el in elements(n.INGRESS_PORTS):
        ip, proto, port = (x.strip() for x in el.key.split(" . "))
        by_mapping.setdefault((ip, el.value, el.comment), []).append(f"{proto}/{port}")
    for (ip, target, owner), ports in by_mapping.items():
        rows.append(MappingRow("ingress", ip, target, ", ".join(sorted(ports)), owner,
                               n.INGRESS_PORTS))
    for name in (n.EGRESS_PODS, n.EGRESS_HEADLESS, n.EGRESS_CIDRS):
        for el in elements(name):
            lo, _, hi = el.value.partition("-")
            shown = lo if hi in ("", lo) else el.value
            rows.append(MappingRow("egress", shown, el.key, "all", el.comment, name))
    for el in elements(n.HEALTH_CHECK_IPS):
        rows.append(MappingRow("health-check", el.key, "gateway", "icmp", el.comment,
                               n.HEALTH_CHECK_IPS))
    return sorted(rows)


def read_mappings(netns: str | None = None) -> list[MappingRow]:
    """The mappings currently in the kernel of `netns` (None: this namespace)."""
    client = LibNftClient(netns)
    try:
        return rows_from_table(client.read_table())
    finally:
        client.close()


def render_table(rows: Iterable[MappingRow], *, title: str | None = None) -> Table:
    """A rich table of `rows`; the caption names the nft table to list for details."""
    table = Table(title=title or "Globalnet NAT (kernel)",
                  caption=f"nft list table {TABLE_REF}")
    for column in ("direction", "global IP", "local", "ports"):
        table.add_column(column, no_wrap=True)  # addresses are read whole or not at all
    table.add_column("owner")
    for r in rows:
        table.add_row(r.direction, r.global_ip, r.local, r.ports, r.owner)
    return table
