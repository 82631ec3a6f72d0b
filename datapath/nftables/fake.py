"""A model of our nftables table for tests without root: `FakeNft` and `trace_packet`.

`FakeNft` implements `kernel.NftClient`: it applies each transaction to a copy of
its model with the kernel's rules that matter to us (adding an existing key with
another value fails, deleting a missing element fails, a rule may only name an
existing set, everything or nothing), counts operations, can be told to fail,
and dumps canonical text for golden comparisons. Tests build the backend through
its real constructor with `client=FakeNft()`.

`trace_packet` walks a packet through the chains of the model, interpreting by
regex only the rule shapes `ruleset.py` emits; any other rule is an error, so a
new rule shape cannot slip in untested.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import netaddr

from datapath.nftables import names as n
from datapath.nftables.model import (
    ChainSpec,
    Element,
    Kind,
    NftError,
    ObservedChain,
    ObservedSet,
    ObservedTable,
    Op,
    SetSpec,
    Verb,
    quote,
)


@dataclass
class _Set:
    spec: SetSpec
    elements: dict[str, Element] = field(default_factory=dict)


@dataclass
class _Chain:
    spec: ChainSpec
    rules: list[str] = field(default_factory=list)


@dataclass
class _Table:
    sets: dict[str, _Set] = field(default_factory=dict)
    chains: dict[str, _Chain] = field(default_factory=dict)


class FakeNft:
    """In-memory nftables holding (at most) our one table."""

    def __init__(self) -> None:
        self.table: _Table | None = None
        self.generation_id = 1
        self.transactions: list[list[Op]] = []
        self._fail = 0

    # -- NftClient ---------------------------------------------------------------

    def transact(self, ops: Sequence[Op]) -> None:
        if self._fail:
            self._fail -= 1
            raise NftError("injected failure")
        table = copy.deepcopy(self.table)
        for op in ops:
            table = self._apply(table, op)
        self.table = table
        self.transactions.append(list(ops))
        self.generation_id += 1

    def read_table(self) -> ObservedTable | None:
        if self.table is None:
            return None
        return ObservedTable(
            sets={k: ObservedSet(decl=s.spec.decl_lines(), elements=dict(s.elements))
                  for k, s in self.table.sets.items()},
            chains={k: ObservedChain(decl=c.spec.decl_lines(), rules=list(c.rules))
                    for k, c in self.table.chains.items()},
        )

    def delete_table(self) -> bool:
        existed = self.table is not None
        if existed:
            self.table = None
            self.generation_id += 1
        return existed

    def generation(self) -> int:
        return self.generation_id

    def mark_verified(self) -> None:
        """Nothing to remember: the model is read directly."""

    # -- test helpers ------------------------------------------------------------

    def fail_next(self, count: int = 1) -> None:
        """Refuse the next `count` transactions, as the kernel refuses a bad batch."""
        self._fail = count

    @property
    def pending_failures(self) -> int:
        """Injected failures not yet raised, so a test can check they were consumed."""
        return self._fail

    @property
    def last_operations(self) -> int:
        return len(self.transactions[-1]) if self.transactions else 0

    def edit(self, fn: object) -> None:
        """Change the model behind the backend's back (drift), bumping the generation."""
        assert callable(fn)
        fn(self.table)
        self.generation_id += 1

    def dump(self) -> str:
        """Canonical text: declarations in order, elements sorted, one per line."""
        if self.table is None:
            return ""
        out = [f"table {n.TABLE_REF} {{"]
        for s in self.table.sets.values():
            out.append(f"\t{s.spec.keyword} {s.spec.name} {{")
            out += [f"\t\t{line}" for line in s.spec.decl_lines()]
            if s.elements:
                out.append("\t\telements = {")
                out += [f"\t\t\t{el.text()}" for el in sorted(s.elements.values())]
                out.append("\t\t}")
            out.append("\t}")
        for c in self.table.chains.values():
            out.append(f"\tchain {c.spec.name} {{")
            out += [f"\t\t{line}" for line in c.spec.decl_lines()]
            out += [f"\t\t{r}" for r in c.rules]
            out.append("\t}")
        out.append("}")
        return "\n".join(out) + "\n"

    # -- the model's kernel rules ------------------------------------------------

    @staticmethod
    def _apply(table: _Table | None, op: Op) -> _Table | None:
        if op.kind is Kind.TABLE:
            if op.verb is Verb.ADD:
                return table or _Table()
            if table is None:
                raise NftError("delete table: No such file or directory")
            return None
        if table is None:
            raise NftError(f"{op.verb.value} {op.kind.value} {op.name}: no table")
        if op.kind is Kind.SET:
            FakeNft._apply_set(table, op)
        elif op.kind is Kind.CHAIN:
            FakeNft._apply_chain(table, op)
        elif op.kind is Kind.RULE:
            chain = table.chains.get(op.name)
            if chain is None:
                raise NftError(f"add rule: no chain {op.name}")
            for ref in re.findall(r"@([\w-]+)", op.rule):
                if ref not in table.sets:
                    raise NftError(f"add rule: no set {ref}")
            chain.rules.append(op.rule)
        elif op.kind is Kind.ELEMENT:
            FakeNft._apply_element(table, op)
        return table

    @staticmethod
    def _apply_set(table: _Table, op: Op) -> None:
        have = table.sets.get(op.name)
        if op.verb is Verb.ADD:
            assert op.set_spec is not None
            if have is None:
                table.sets[op.name] = _Set(op.set_spec)
            elif have.spec.decl_lines() != op.set_spec.decl_lines():
                raise NftError(f"add set {op.name}: File exists")
            return
        if have is None:
            raise NftError(f"delete set {op.name}: No such file or directory")
        if any(f"@{op.name} " in r + " " for c in table.chains.values() for r in c.rules):
            raise NftError(f"delete set {op.name}: Device or resource busy")
        del table.sets[op.name]

    @staticmethod
    def _apply_chain(table: _Table, op: Op) -> None:
        have = table.chains.get(op.name)
        if op.verb is Verb.ADD:
            assert op.chain_spec is not None
            if have is None:
                table.chains[op.name] = _Chain(op.chain_spec)
            elif have.spec.decl_lines()[1:] != op.chain_spec.decl_lines()[1:]:
                raise NftError(f"add chain {op.name}: File exists")
            return
        if have is None:
            raise NftError(f"{op.verb.value} chain {op.name}: No such file or directory")
        if op.verb is Verb.FLUSH:
            have.rules.clear()
        else:
            del table.chains[op.name]

    @staticmethod
    def _apply_element(table: _Table, op: Op) -> None:
        s = table.sets.get(op.name)
        assert op.element is not None
        if s is None:
            raise NftError(f"element in {op.name}: no such set")
        have = s.elements.get(op.element.key)
        if op.verb is Verb.DELETE:
            if have is None:
                raise NftError(f"delete element {op.element.key}: No such file or directory")
            del s.elements[op.element.key]
        elif have is None:
            s.elements[op.element.key] = op.element
        elif have.value != op.element.value:
            raise NftError(f"add element {op.element.key}: File exists")
        # else: like the kernel, an existing element (and its old comment) stays.


# -- packet tracing ----------------------------------------------------------------


@dataclass
class Packet:
    """A packet entering the gateway from an interface (forwarded, first packet)."""

    src: str
    dst: str
    proto: str = "tcp"  # tcp, udp, sctp, icmp
    dport: int = 80
    sport: int = 40000
    mark: int = 0
    syn: bool = True
    new: bool = True  # conntrack NEW: nat chains are consulted


@dataclass
class Trace:
    rules: list[str]  # "chain: rule comment" for every rule that acted
    packet: Packet
    verdict: str  # accept, drop, local (delivered to the gateway itself)
    snat: str = ""  # the SNAT range chosen, if any
    mss_clamped: bool = False


_HOOK_ORDER = [  # prerouting, then forward or input, then postrouting, in priority order
    ("prerouting", n.RAW_PREROUTING), ("prerouting", n.NAT_PREROUTING),
    ("postrouting", n.NAT_POSTROUTING), ("postrouting", n.FILTER_POSTROUTING),
]
_COMMENT = re.compile(r' comment "[^"]*"$')
_L4 = r"meta l4proto \{ tcp, udp, sctp \}"
_S, _M = r"@(?P<s>[\w-]+)", r"@(?P<m>[\w-]+)"
_SHAPES: list[tuple[str, re.Pattern[str]]] = [
    ("return-unless-saddr", re.compile(rf"ip saddr != {_S} return")),
    ("return-unless-daddr", re.compile(rf"ip daddr != {_S} return")),
    ("return-if-saddr", re.compile(rf"ip saddr {_S} return")),
    ("rewrite-daddr", re.compile(rf"ip daddr set ip daddr map {_M} accept")),
    ("rewrite-daddr-port", re.compile(rf"{_L4} ip daddr set ip daddr \. meta l4proto \. "
                                      rf"th dport map {_M}")),
    ("rewrite-saddr", re.compile(rf"ip saddr set ip saddr map {_M} accept")),
    ("rewrite-saddr-port", re.compile(rf"{_L4} ip saddr set ip saddr \. meta l4proto \. "
                                      rf"th sport map {_M}")),
    ("redirect", re.compile(rf"meta l4proto icmp ip daddr {_S} redirect")),
    ("drop", re.compile(rf"ip daddr {_S} drop")),
    ("drop-unadmitted", re.compile(rf"ip saddr {_S} {_L4} ip daddr @(?P<t>[\w-]+) ip daddr "
                                   rf"\. meta l4proto \. th dport != @(?P<a>[\w-]+) drop")),
    ("clear-mark", re.compile(rf"ip saddr {_S} meta mark set meta mark & "
                              r"0x(?P<mask>[0-9a-f]+) return")),
    ("mss", re.compile(r"tcp flags syn / syn,rst tcp option maxseg size set rt mtu")),
    ("snat", re.compile(rf"snat ip to ip saddr map {_M}")),
]


def _shape(chain: str, rule: str) -> tuple[str, dict[str, str]]:
    body = _COMMENT.sub("", rule)
    for shape, rx in _SHAPES:
        m = rx.fullmatch(body)
        if m:
            return shape, m.groupdict()
    raise AssertionError(f"unmatched rule in {chain}: {rule}")


def _contains(s: _Set, ip: str) -> bool:
    if not s.spec.interval:
        return ip in s.elements
    addr = netaddr.IPAddress(ip)
    return any(addr in netaddr.IPNetwork(k) for k in s.elements)


def _lookup(s: _Set, key: str) -> str | None:
    if s.spec.interval:
        addr = netaddr.IPAddress(key)
        for k, el in s.elements.items():
            if addr in netaddr.IPNetwork(k):
                return el.value
        return None
    found = s.elements.get(key)
    return found.value if found else None


def _step(t: _Table, shape: str, g: dict[str, str], p: Packet) -> str | None:
    """What one rule does to `p` (mutating it), or None when it does not match."""
    sets = t.sets
    l4 = p.proto in ("tcp", "udp", "sctp")
    if shape == "return-unless-saddr":
        return None if _contains(sets[g["s"]], p.src) else "return"
    if shape == "return-unless-daddr":
        return None if _contains(sets[g["s"]], p.dst) else "return"
    if shape == "return-if-saddr":
        return "return" if _contains(sets[g["s"]], p.src) else None
    if shape in ("rewrite-daddr", "rewrite-daddr-port"):
        key = f"{p.dst} . {p.proto} . {p.dport}" if shape.endswith("port") else p.dst
        new = _lookup(sets[g["m"]], key) if (l4 or not shape.endswith("port")) else None
        if new is None:
            return None
        p.dst = new
        return "accept" if shape == "rewrite-daddr" else "rewrote"
    if shape in ("rewrite-saddr", "rewrite-saddr-port"):
        key = f"{p.src} . {p.proto} . {p.sport}" if shape.endswith("port") else p.src
        new = _lookup(sets[g["m"]], key) if (l4 or not shape.endswith("port")) else None
        if new is None:
            return None
        p.src = new
        return "accept" if shape == "rewrite-saddr" else "rewrote"
    if shape == "redirect":
        return "local" if p.proto == "icmp" and _contains(sets[g["s"]], p.dst) else None
    if shape == "drop":
        return "drop" if _contains(sets[g["s"]], p.dst) else None
    if shape == "drop-unadmitted":
        if not (l4 and _contains(sets[g["s"]], p.src) and _contains(sets[g["t"]], p.dst)):
            return None
        admitted = f"{p.dst} . {p.proto} . {p.dport}" in sets[g["a"]].elements
        return None if admitted else "drop"
    if shape == "clear-mark":
        if not _contains(sets[g["s"]], p.src):
            return None
        p.mark &= int(g["mask"], 16)
        return "return"
    if shape == "mss":
        return "mss" if p.proto == "tcp" and p.syn else None
    if shape == "snat":
        return "snat" if _lookup(sets[g["m"]], p.src) else None
    raise AssertionError(f"no semantics for {shape}")


def trace_packet(nft: FakeNft, packet: Packet, *, local_ips: Sequence[str] = ()) -> Trace:
    """Walk `packet` through our chains (kube-proxy and routing are not modelled:
    a packet whose destination is in `local_ips` or was redirected is delivered
    locally and skips forward/postrouting)."""
    assert nft.table is not None, "no table"
    t = nft.table
    p = copy.copy(packet)
    acted: list[str] = []
    verdict, snat, mss = "accept", "", False
    for hook, chain_name in _HOOK_ORDER:
        chain = t.chains.get(chain_name)
        if chain is None:
            continue
        if hook in ("forward", "postrouting") and verdict == "local":
            break
        if chain.spec.type == "nat" and not p.new:
            continue
        for rule in chain.rules:
            shape, g = _shape(chain_name, rule)
            step = _step(t, shape, g, p)
            if step is None:
                continue
            acted.append(f"{chain_name}: {rule}")
            if step == "snat":
                snat = _lookup(t.sets[g["m"]], p.src) or ""
                p.src = snat.split("-")[0]
            elif step == "mss":
                mss = True
            elif step in ("drop", "local"):
                verdict = step
            if step in ("drop", "return", "accept", "snat", "local"):
                break  # the chain's verdict: no further rules in it
        if verdict == "drop":
            return Trace(acted, p, verdict, snat, mss)
        if hook == "prerouting" and chain_name == n.NAT_PREROUTING and p.dst in local_ips:
            verdict = "local"
    return Trace(acted, p, verdict, snat, mss)


__all__ = ["FakeNft", "Packet", "Trace", "quote", "trace_packet"]
