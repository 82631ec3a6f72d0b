"""Work proportional to the change, not to the intent.

`apply()` receives a whole intent every time. With 50,000 ingress mappings,
hashing every mapping (set difference) or re-validating every address costs tens
to hundreds of milliseconds of Python; an update must cost a few. Three helpers
keep it small:

* `sequence_delta` trims the common prefix and suffix of the old and new
  (sorted, canonical) tuples by *identity* at C speed, then diffs the small middle
  as multisets. Controllers that rebuild an intent from the previous one share
  the unchanged objects, so one added mapping costs two slices and a compare.
  Unshared objects still give the right answer, only slower.
* `IngressIndex` remembers which mappings want each map element (a multiset), so
  a change touches only its own keys and duplicates never delete an element that
  another mapping still wants.
* `ClaimIndex` checks the same rules as `NatIntent.validate()` for the changed
  objects only: every global IP has one owner, every target one global IP, every
  new address is inside the global CIDR. A property test checks it agrees with
  `validate()`.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import netaddr

from datapath.nftables.elements import Elements, ingress_elements
from datapath.nftables.model import Element
from globalnet.intent import EgressGroup, HealthCheck, IngressMapping, NatIntent

_T = TypeVar("_T", bound=Hashable)


def _common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    n = min(len(a), len(b))
    same = list(map(operator.is_, a[:n], b[:n]))
    try:
        return same.index(False)
    except ValueError:
        return n


def sequence_delta(a: tuple[_T, ...], b: tuple[_T, ...]) -> tuple[list[_T], list[_T]]:
    """(added, removed) as multisets: what b has more of, what a has more of."""
    if a is b:
        return [], []
    p = _common_prefix(a, b)
    ra, rb = a[p:][::-1], b[p:][::-1]
    s = _common_prefix(ra, rb)
    mid_a, mid_b = a[p:len(a) - s], b[p:len(b) - s]
    ca, cb = Counter(mid_a), Counter(mid_b)
    return list((cb - ca).elements()), list((ca - cb).elements())


Key = tuple[str, str]  # (set name, element key)


@dataclass
class IngressIndex:
    """Ingress elements wanted by the current mappings, with how many want each.

    Almost every key is wanted by exactly one element once (`single`); only
    duplicates or disagreements go to the multiset `multi`. Plain dicts keep a
    50,000-mapping build well under a second."""

    single: dict[Key, Element] = field(default_factory=dict)
    multi: dict[Key, Counter[Element]] = field(default_factory=dict)

    @classmethod
    def build(cls, mappings: Iterable[IngressMapping]) -> IngressIndex:
        index = cls()
        for m in mappings:
            index.add(m)
        return index

    def add(self, m: IngressMapping) -> list[Key]:
        touched = []
        for set_name, el in ingress_elements(m):
            key = (set_name, el.key)
            touched.append(key)
            if key in self.multi:
                self.multi[key][el] += 1
            elif key in self.single:
                self.multi[key] = Counter((self.single.pop(key), el))
            else:
                self.single[key] = el
        return touched

    def remove(self, m: IngressMapping) -> list[Key]:
        touched = []
        for set_name, el in ingress_elements(m):
            key = (set_name, el.key)
            if self.single.get(key) == el:
                del self.single[key]
            elif key in self.multi:
                wanted = self.multi[key]
                wanted[el] -= 1
                if wanted[el] <= 0:
                    del wanted[el]
                if sum(wanted.values()) == 1:
                    self.single[key] = next(iter(wanted))
                    del self.multi[key]
                elif not wanted:
                    del self.multi[key]
            else:
                continue
            touched.append(key)
        return touched

    def desired(self, key: Key) -> Element | None:
        """The element for a key; should two mappings disagree, the smallest wins
        (deterministic across restarts)."""
        if key in self.single:
            return self.single[key]
        wanted = self.multi.get(key)
        return min(wanted) if wanted else None

    def elements(self) -> Elements:
        out: Elements = {}
        for (set_name, k), el in self.single.items():
            out.setdefault(set_name, {})[k] = el
        for (set_name, k), wanted in self.multi.items():
            out.setdefault(set_name, {})[k] = min(wanted)
        return out


Claim = tuple[str, str]  # (global IP, owner) or (target, global IP)


def intent_claims(intent: NatIntent) -> tuple[list[Claim], list[Claim]]:
    """(global IP, owner) claims and (target, global IP) pairs, as validate() sees them."""
    claims: list[Claim] = []
    for g in intent.egress:
        claims += [(ip, g.owner) for ip in g.global_ips]
    claims += [(m.global_ip, m.owner) for m in intent.ingress]
    claims += [(h.global_ip, h.owner) for h in intent.health_checks]
    return claims, [(m.target_ip, m.global_ip) for m in intent.ingress]


def _small_claims(egress: Iterable[EgressGroup], health: Iterable[HealthCheck]) -> list[Claim]:
    out: list[Claim] = []
    for g in egress:
        out += [(ip, g.owner) for ip in g.global_ips]
    out += [(h.global_ip, h.owner) for h in health]
    return out


@dataclass
class StagedClaims:
    """Claim changes checked against the index, applied by `ClaimIndex.commit`."""

    claims_added: list[Claim]
    claims_removed: list[Claim]
    targets_added: list[Claim]
    targets_removed: list[Claim]


# A sound intent gives every key exactly one distinct value, so the index keeps
# (value, how many claims) per key; a multiset only exists while checking a change.
Holders = dict[str, tuple[str, int]]


@dataclass
class ClaimIndex:
    """Owner per global IP and global IP per target, of the current (sound) intent."""

    global_cidr: netaddr.IPNetwork
    owners: Holders = field(default_factory=dict)
    globals_of: Holders = field(default_factory=dict)

    @classmethod
    def build(cls, intent: NatIntent) -> ClaimIndex:
        """Index a sound intent (callers validate first)."""
        index = cls(netaddr.IPNetwork(intent.global_cidr))
        claims, targets = intent_claims(intent)
        for holders, pairs in ((index.owners, claims), (index.globals_of, targets)):
            for k, v in pairs:
                holders[k] = (v, holders[k][1] + 1) if k in holders else (v, 1)
        return index

    def stage(self, old: NatIntent, new: NatIntent, ingress_added: list[IngressMapping],
              ingress_removed: list[IngressMapping]) -> tuple[StagedClaims, bool]:
        """The changes from old to new and whether new is sound, given old was."""
        small_old = _small_claims(old.egress, old.health_checks)
        small_new = _small_claims(new.egress, new.health_checks)
        sa, sr = sequence_delta(tuple(small_old), tuple(small_new))
        staged = StagedClaims(
            claims_added=sa + [(m.global_ip, m.owner) for m in ingress_added],
            claims_removed=sr + [(m.global_ip, m.owner) for m in ingress_removed],
            targets_added=[(m.target_ip, m.global_ip) for m in ingress_added],
            targets_removed=[(m.target_ip, m.global_ip) for m in ingress_removed],
        )
        if any(not g.global_ips for g in new.egress):
            return staged, False
        for ip, _ in staged.claims_added:
            try:
                if netaddr.IPAddress(ip) not in self.global_cidr:
                    return staged, False
            except (netaddr.AddrFormatError, ValueError):
                return staged, False
        after_owners = _after(self.owners, staged.claims_added, staged.claims_removed)
        after_globals = _after(self.globals_of, staged.targets_added, staged.targets_removed)
        sound = all(len(c) <= 1 for c in after_owners.values()) and all(
            len(c) <= 1 for c in after_globals.values())
        return staged, sound

    def commit(self, staged: StagedClaims) -> None:
        for holders, added, removed in (
            (self.owners, staged.claims_added, staged.claims_removed),
            (self.globals_of, staged.targets_added, staged.targets_removed),
        ):
            for k, counts in _after(holders, added, removed).items():
                if not counts:
                    holders.pop(k, None)
                else:
                    ((v, c),) = counts.items()
                    holders[k] = (v, c)


def _after(holders: Holders, added: list[Claim], removed: list[Claim]) -> dict[str, Counter[str]]:
    """The positive value counts of every touched key after the change."""
    touched: dict[str, Counter[str]] = {}
    for k, _ in (*removed, *added):
        if k not in touched:
            touched[k] = Counter({holders[k][0]: holders[k][1]} if k in holders else {})
    for k, v in removed:
        touched[k][v] -= 1
    for k, v in added:
        touched[k][v] += 1
    return {k: +c for k, c in touched.items()}
