"""`NatIntent.validate()` for a stream of intents, in time proportional to each change.

A backend receives a whole intent on every apply and must refuse an unsound one
before touching the kernel. Re-validating 50,000 mappings costs far more than
the few milliseconds an update may take, so `IncrementalValidator` keeps an
index of the last accepted intent's claims and checks only what changed, by
the same rules as `validate()`: every global IP has one owner and lies inside
the global CIDR, every target has one global IP, no egress group is without
global IPs. A change of CIDRs, or the first intent, is validated whole. When a
change is unsound the messages come from `validate()`, so they read the same
from every path. A property test checks that the two agree.

Any backend can use it: `check()` before touching the kernel, `commit()` once
the kernel holds the new intent (a failed apply keeps the old one accepted).
Like the intent, it imports nothing internal beyond it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import netaddr

from globalnet.intent import (
    EgressGroup,
    HealthCheck,
    IngressDelta,
    IngressMapping,
    NatIntent,
    cidrs_changed,
    sequence_delta,
)

Claim = tuple[str, str]  # (global IP, owner) or (target, global IP)


def intent_claims(intent: NatIntent) -> tuple[list[Claim], list[Claim]]:
    """(global IP, owner) claims and (target, global IP) pairs, as validate() sees them."""
    claims = _small_claims(intent.egress, intent.health_checks)
    claims += [(m.global_ip, m.owner) for m in intent.ingress]
    return claims, [(m.target_ip, m.global_ip) for m in intent.ingress]


def _small_claims(egress: Iterable[EgressGroup], health: Iterable[HealthCheck]) -> list[Claim]:
    """The claims of the few egress groups and health checks (recomputed on every change)."""
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

    def stage(self, old: NatIntent, new: NatIntent, ingress_added: Sequence[IngressMapping],
              ingress_removed: Sequence[IngressMapping]) -> tuple[StagedClaims, bool]:
        """The changes from old to new and whether new is sound, given old was and
        both have the same CIDRs."""
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
        """Apply a change `stage` found sound."""
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


@dataclass(frozen=True)
class CheckedIntent:
    """The verdict on one intent: `errors` (empty when sound) and what `commit` applies.

    `staged` is the change from `base`, the intent accepted when it was checked;
    it is None when the whole intent was validated, and committing then indexes
    the intent afresh.
    """

    intent: NatIntent
    errors: tuple[str, ...]
    staged: StagedClaims | None = None
    base: NatIntent | None = None

    @property
    def sound(self) -> bool:
        return not self.errors


@dataclass
class IncrementalValidator:
    """Checks each intent against the last accepted one (see module docstring)."""

    accepted: NatIntent | None = None
    _index: ClaimIndex | None = None

    def check(self, new: NatIntent, *, full: bool = False,
              ingress_delta: IngressDelta | None = None) -> CheckedIntent:
        """The verdict on replacing the accepted intent with `new`.

        `ingress_delta` is `sequence_delta(accepted.ingress, new.ingress)` when
        the caller has it already. `full=True` validates the whole intent.
        """
        old, index = self.accepted, self._index
        if full or old is None or index is None or cidrs_changed(old, new):
            return CheckedIntent(new, tuple(new.validate()))
        added, removed = (ingress_delta if ingress_delta is not None
                          else sequence_delta(old.ingress, new.ingress))
        staged, sound = index.stage(old, new, added, removed)
        if sound:
            return CheckedIntent(new, (), staged, old)
        # Unsound here means unsound for validate() too (the property test in
        # tests/unit/test_intent_validator.py), whose messages are the
        # authoritative ones. Should it accept after all, the index is rebuilt
        # on commit rather than patched with an unsound change.
        return CheckedIntent(new, tuple(new.validate()))

    def commit(self, checked: CheckedIntent) -> None:
        """Make a sound, checked intent the accepted one (once the kernel holds it)."""
        if not checked.sound:
            raise ValueError("an unsound intent cannot be accepted: " + "; ".join(checked.errors))
        if (checked.staged is not None and self._index is not None
                and checked.base is self.accepted):
            self._index.commit(checked.staged)
        else:
            self._index = ClaimIndex.build(checked.intent)
        self.accepted = checked.intent

    def reset(self) -> None:
        """Forget the accepted intent: the next check validates the whole intent."""
        self.accepted = None
        self._index = None
