"""The one place that talks to libnftables: commit a transaction, read our table.

`NftClient` is what the backend needs; `LibNftClient` is the real one (python3-
nftables, one context per namespace, one lock) and `datapath.nftables.fake.FakeNft`
the model the unit tests use through the very same backend constructor.

Reading back: declarations and rules come as the text nft prints (which is how
`ruleset.py` writes them) or, when a netlink digest vouches for them, straight
from `ruleset.py`; elements come from a netlink dump (or a JSON listing, in
tests), normalised to the canonical text `elements.py` writes. Nothing outside
our table is read.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import netaddr

from datapath.netns import entered
from datapath.nftables import names, render
from datapath.nftables.converge import structure_problems
from datapath.nftables.model import (
    Element,
    NftError,
    ObservedChain,
    ObservedSet,
    ObservedTable,
    Op,
    SetSpec,
)
from datapath.nftables.netlink import NFT_SET_ELEM_INTERVAL_END, NfTables, RawElement
from datapath.nftables.ruleset import CHAINS, SETS, SETS_BY_NAME

log = logging.getLogger(__name__)


class NftClient(Protocol):
    """What the backend needs from nftables."""

    def transact(self, ops: Sequence[Op]) -> None:
        """Commit all of `ops` atomically or nothing (raise NftError)."""

    def read_table(self) -> ObservedTable | None:
        """Our table as the kernel holds it, or None when there is none."""

    def delete_table(self) -> bool:
        """Delete our table; False when there was none."""

    def generation(self) -> int:
        """The namespace's ruleset generation (bumped by every commit)."""

    def mark_verified(self) -> None:
        """The table's declarations and rules are exactly `ruleset.py`'s right now
        (we just wrote them and nobody else committed): remember that cheaply."""


def _canon_addr_or_prefix(value: Any, *, interval: bool) -> str:
    if isinstance(value, dict) and "prefix" in value:
        p = value["prefix"]
        return f"{p['addr']}/{p['len']}"
    if isinstance(value, dict) and "range" in value:
        lo, hi = value["range"]
        cidrs = netaddr.iprange_to_cidrs(lo, hi)
        return str(cidrs[0]) if len(cidrs) == 1 else f"{lo}-{hi}"
    if isinstance(value, dict) and "concat" in value:
        return " . ".join(_canon_addr_or_prefix(v, interval=False) for v in value["concat"])
    text = str(value)
    return f"{text}/32" if interval else text


def canonical_key(value: Any, *, interval: bool) -> str:
    """A key from the JSON listing in the form `elements.py` writes it."""
    return _canon_addr_or_prefix(value, interval=interval)


def canonical_range(value: Any) -> str:
    """`interval` data comes back as a range, a prefix or one address: always `a-b`."""
    if isinstance(value, dict) and "range" in value:
        lo, hi = value["range"]
        return f"{lo}-{hi}"
    if isinstance(value, dict) and "prefix" in value:
        net = netaddr.IPNetwork(f"{value['prefix']['addr']}/{value['prefix']['len']}")
        return f"{netaddr.IPAddress(net.first)}-{netaddr.IPAddress(net.last)}"
    return f"{value}-{value}"


def parse_elements(name: str, raw: list[Any]) -> dict[str, Element]:
    """Elements of one set or map from `nft -j list`, in canonical text."""
    spec = SETS_BY_NAME.get(name)
    interval = bool(spec and spec.interval)
    range_data = bool(spec and spec.data_type.startswith("interval"))
    out: dict[str, Element] = {}
    for item in raw:
        value_raw: Any = None
        key_raw = item
        if isinstance(item, list):
            key_raw, value_raw = item
        comment = ""
        if isinstance(key_raw, dict) and "elem" in key_raw:
            comment = key_raw["elem"].get("comment", "")
            key_raw = key_raw["elem"]["val"]
        key = canonical_key(key_raw, interval=interval)
        value = ""
        if value_raw is not None:
            value = canonical_range(value_raw) if range_data else str(value_raw)
        out[key] = Element(key, value, comment)
    return out


def parse_terse(terse_text: str) -> ObservedTable:
    """Declarations and rules from `nft -t list table inet globalnet` (no elements)."""
    table = ObservedTable()
    block: list[str] | None = None
    kind = name = ""
    for raw_line in terse_text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if block is None and len(words) == 3 and words[2] == "{" and words[0] != "table":
            kind, name, block = words[0], words[1], []
            continue
        if block is not None and line == "}":
            if kind in ("set", "map"):
                table.sets[name] = ObservedSet(decl=block)
            elif kind == "chain":
                # Declarations come first; a rule never starts with these words.
                decl = [x for x in block if x.startswith(("comment ", "type "))]
                rules = [x for x in block if not x.startswith(("comment ", "type "))]
                table.chains[name] = ObservedChain(decl=decl, rules=rules)
            else:
                table.other.append(f"{kind} {name}")
            block = None
            continue
        if block is not None:
            block.append(line)
    return table


def parse_listing(json_text: str, terse_text: str) -> ObservedTable:
    """`parse_terse`, with the elements of a JSON listing of the same table."""
    table = parse_terse(terse_text)
    for obj in json.loads(json_text).get("nftables", []):
        s = obj.get("set") or obj.get("map")
        if s and s["name"] in table.sets:
            table.sets[s["name"]].elements = parse_elements(s["name"], s.get("elem", []))
    return table


_PROTO = {6: "tcp", 17: "udp", 132: "sctp"}


def _data_text(spec: SetSpec, data: bytes | None) -> str:
    if data is None:
        return ""
    if spec.data_type.startswith("interval"):  # a range: first and last address
        return f"{socket.inet_ntoa(data[:4])}-{socket.inet_ntoa(data[4:8])}"
    return socket.inet_ntoa(data[:4])


def _span_text(first: int, last: int) -> str:
    lo, hi = netaddr.IPAddress(first), netaddr.IPAddress(last)
    cidrs = netaddr.iprange_to_cidrs(lo, hi)
    return str(cidrs[0]) if len(cidrs) == 1 else f"{lo}-{hi}"


def canonical_elements(spec: SetSpec, raws: list[RawElement]) -> dict[str, Element]:
    """Netlink-dumped elements of one of our sets in canonical text (`elements.py`)."""
    if spec.interval:
        return _interval_elements(spec, raws)
    ntoa = socket.inet_ntoa
    concat = spec.key_type != "ipv4_addr"
    out: dict[str, Element] = {}
    for r in raws:  # 100,000 of these on a full read: kept flat
        if concat:  # ipv4_addr . inet_proto . inet_service: every field padded to 4 bytes
            key = (f"{ntoa(r.key[:4])} . {_PROTO.get(r.key[4], str(r.key[4]))} . "
                   f"{int.from_bytes(r.key[8:10], 'big')}")
        else:
            key = ntoa(r.key[:4])
        out[key] = Element(key, _data_text(spec, r.data), r.comment)
    return out


def _interval_elements(spec: SetSpec, raws: list[RawElement]) -> dict[str, Element]:
    """Intervals come back as a start element and an end element (flagged, key one
    past the end) from the rbtree backend, or as one element with a key end from
    pipapo. Each becomes `a.b.c.d/len` when it is a prefix, else `first-last`."""
    spans: list[tuple[int, int, RawElement]] = []
    ends: list[int] = []
    for r in raws:
        start = int.from_bytes(r.key[:4], "big")
        if r.key_end is not None:
            spans.append((start, int.from_bytes(r.key_end[:4], "big"), r))
        elif r.flags & NFT_SET_ELEM_INTERVAL_END:
            ends.append(start)
        else:
            spans.append((start, -1, r))
    ends.sort()
    out: dict[str, Element] = {}
    for start, last, r in sorted(spans, key=lambda x: x[0]):
        if last < 0:  # rbtree: the interval ends just before the next end marker
            last = next((e for e in ends if e > start), 1 << 32) - 1
        key = _span_text(start, last)
        out[key] = Element(key, _data_text(spec, r.data), r.comment)
    return out


def expected_structure() -> ObservedTable:
    """Our declarations and rules, as a read-back of a correct table would give them."""
    return ObservedTable(
        sets={spec.name: ObservedSet(decl=spec.decl_lines()) for spec in SETS},
        chains={c.name: ObservedChain(decl=c.decl_lines(), rules=list(c.rules)) for c in CHAINS},
    )


class NftCommands:
    """One libnftables context in a network namespace, its commands serialised by
    ``lock`` (shared with whatever else must not interleave with them).

    ``cli``: no context in this process; each command is a short-lived ``nft -f -``
    in the namespace instead. For a process that changes a small table now and then
    (the route agent's VIP table on every node): libnftables and the ruleset cache
    it keeps would stay resident (about 4 MB), for commands that take milliseconds.
    """

    def __init__(self, netns: str | None = None, lock: threading.Lock | None = None, *,
                 cli: bool = False) -> None:
        self.netns = netns
        self.lock = lock or threading.Lock()
        self.cli = cli
        if cli:
            return
        import nftables  # Debian's python3-nftables; imported here so unit tests need no root

        with entered(netns):
            self._nft = nftables.Nftables()
        self._nft.set_handle_output(False)

    def _run_cli(self, text: str, terse: bool) -> str:
        argv = ["nft", *(["-t"] if terse else []), "-f", "-"]
        with self.lock, entered(self.netns):  # the child starts in this thread's netns
            proc = subprocess.run(argv, input=text, capture_output=True, text=True,
                                  timeout=60)
        if proc.returncode != 0:
            raise NftError(proc.stderr.strip() or f"nft exited {proc.returncode}")
        return proc.stdout

    def run(self, text: str, *, terse: bool = False, throwaway: bool = False) -> str:
        """Run one command (or script: one transaction). `throwaway` uses a fresh
        context: a listing leaves every element of the table in the context's cache,
        and the next transaction in that context would pay to refresh it."""
        if self.cli:
            return self._run_cli(text, terse)
        with self.lock, entered(self.netns):
            nft = self._nft
            if throwaway:
                import nftables

                nft = nftables.Nftables()
            nft.set_terse_output(terse)
            rc, out, err = nft.cmd(text)
            nft.set_terse_output(False)
        if rc != 0:
            raise NftError(err.strip() or f"nft exited {rc}")
        return str(out)

    def list_table(self, table_ref: str) -> str:
        """``nft list table`` of ``table_ref`` ("" when there is none)."""
        try:
            return self.run(f"list table {table_ref}", throwaway=True)
        except NftError as exc:
            if _is_missing(exc):
                return ""
            raise

    def delete_table(self, table_ref: str) -> bool:
        """Delete a table; False when there was none."""
        try:
            self.run(f"delete table {table_ref}")
        except NftError as exc:
            if _is_missing(exc):
                return False
            raise
        return True


def _is_missing(exc: NftError) -> bool:
    return "No such file or directory" in str(exc)


class LibNftClient:
    """libnftables (plus direct netlink queries) in one namespace (None: the caller's).

    Reading back is built to be cheap at 100,000 elements, because drift repair
    must finish within 2 s, and libnftables fetches every element of the table
    for any listing of it. So: a netlink digest of the declarations and rules is
    compared with the digest of the last table whose text listing matched
    `ruleset.py` exactly; only when they differ is the table listed as text.
    Elements come from a netlink dump of each set."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._lock = threading.Lock()
        self._commands = NftCommands(netns, self._lock)
        self._cmd = self._commands.run
        self._nl = NfTables(netns)
        self._good = ""  # netlink digest of the last table whose text matched ours

    def transact(self, ops: Sequence[Op]) -> None:
        if not ops:
            return
        script = render.render(ops)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("nft transaction (%d operations) in %s:\n%s", len(ops),
                      self.netns or "own netns", script)
        self._cmd(script)

    def read_table(self) -> ObservedTable | None:
        with self._lock:
            fingerprint = self._nl.fingerprint(names.FAMILY, names.TABLE)
        if fingerprint is None:
            return None
        if fingerprint == self._good:
            table = expected_structure()
        else:
            table = parse_terse(self._cmd(f"list table {names.TABLE_REF}", terse=True,
                                          throwaway=True))
            if structure_problems(table) == ([], False):
                self._good = fingerprint  # this digest now vouches for the text
        for name, observed in table.sets.items():
            spec = SETS_BY_NAME.get(name)
            if spec is not None:
                with self._lock:
                    dumped = self._nl.set_elements(names.FAMILY, names.TABLE, name)
                observed.elements = canonical_elements(spec, dumped)
        return table

    def delete_table(self) -> bool:
        return self._commands.delete_table(names.TABLE_REF)

    def generation(self) -> int:
        with self._lock:
            return self._nl.generation()

    def mark_verified(self) -> None:
        with self._lock:
            self._good = self._nl.fingerprint(names.FAMILY, names.TABLE) or ""

    def close(self) -> None:
        self._nl.close()
