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

import atexit
import contextlib
import functools
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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


@functools.cache
def ebpf_bpffs() -> Path:
    """A private bpffs for the run (the host may have none at /sys/fs/bpf, and tests
    must not mount one there); unmounted when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="gn-bpffs-"))
    subprocess.run(["mount", "-t", "bpf", "bpf", str(path)], check=True, capture_output=True)

    def unmount() -> None:
        subprocess.run(["umount", str(path)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            path.rmdir()

    atexit.register(unmount)
    return path


def _ebpf_make(ns: str) -> Datapath:
    from datapath.ebpf import EbpfDatapath

    return EbpfDatapath(netns=ns, bpffs=ebpf_bpffs())


def _ebpf_sabotage(ns: str) -> None:
    """Detach our filters from every device and remove a program's pin, by hand."""
    from datapath.ebpf import names as n

    for line in netns.run(ns, ["ip", "-o", "link", "show"]).splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        for direction in ("ingress", "egress"):
            netns.run(ns, ["tc", "filter", "del", "dev", dev, direction, "pref", str(n.TC_PREF)],
                      check=False)
    progs = n.PinLayout(ebpf_bpffs(), n.scope_of(ns)).progs
    for pin in sorted(progs.glob(f"*/{n.FROM_TUNNEL}")):
        pin.unlink()


@contextlib.contextmanager
def _ebpf_repairing(backend: Datapath) -> Iterator[Any]:
    from datapath.ebpf import DriftWatcher, EbpfDatapath

    assert isinstance(backend, EbpfDatapath)
    with DriftWatcher(backend, interval=0.1) as watcher:
        yield watcher


def _ebpf_snapshot(ns: str) -> str:
    from datapath.ebpf.inspect import snapshot

    return snapshot(netns=ns, bpffs=ebpf_bpffs())


HARNESSES: dict[str, Harness] = {
    "nftables": Harness("nftables", _nft_make, _nft_sabotage, _nft_repairing, _nft_snapshot),
    "ebpf": Harness("ebpf", _ebpf_make, _ebpf_sabotage, _ebpf_repairing, _ebpf_snapshot),
}
