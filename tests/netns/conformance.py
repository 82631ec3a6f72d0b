"""What a datapath backend must provide to run the NAT conformance suite.

The suite (test_nat_conformance.py) is written against `globalnet.datapath_api.Datapath`
plus this small harness, so the eBPF backend runs the very same cases by adding
one entry to `HARNESSES`:

* `make(netns)` builds a backend programming that namespace (a fresh object is
  also how a controller restart is simulated);
* `sabotage(netns)` removes the backend's kernel state the way an admin would;
* `repairing(backend)` runs the backend's drift repair while the block runs;
* `snapshot(netns)` is a text of the backend's kernel state, to prove "unchanged".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from globalnet.datapath_api import Datapath
from lab import netns


@dataclass(frozen=True)
class Harness:
    name: str
    make: Callable[[str], Datapath]
    sabotage: Callable[[str], None]
    repairing: Callable[[Datapath], contextlib.AbstractContextManager[Any]]
    snapshot: Callable[[str], str]


def _nft_make(ns: str) -> Datapath:
    from datapath.nftables import NftablesDatapath

    return NftablesDatapath(netns=ns)


def _nft_sabotage(ns: str) -> None:
    netns.run(ns, ["nft", "delete", "table", "inet", "globalnet"])


@contextlib.contextmanager
def _nft_repairing(backend: Datapath) -> Iterator[Any]:
    from datapath.nftables import DriftWatcher, NftablesDatapath

    assert isinstance(backend, NftablesDatapath)
    with DriftWatcher(backend) as watcher:
        yield watcher


def _nft_snapshot(ns: str) -> str:
    """Declarations, rules and sorted elements: the listing order of hash sets changes
    when a set is recreated, the content must not."""
    from datapath.nftables.kernel import LibNftClient

    client = LibNftClient(ns)
    try:
        table = client.read_table()
    finally:
        client.close()
    if table is None:
        return "<no table>"
    lines: list[str] = []
    for name in sorted(table.sets):
        s = table.sets[name]
        lines += [f"set {name}", *s.decl, *sorted(e.text() for e in s.elements.values())]
    for name in sorted(table.chains):
        c = table.chains[name]
        lines += [f"chain {name}", *c.decl, *c.rules]
    return "\n".join(lines + table.other)


HARNESSES: dict[str, Harness] = {
    "nftables": Harness("nftables", _nft_make, _nft_sabotage, _nft_repairing, _nft_snapshot),
}
