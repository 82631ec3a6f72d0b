"""The nftables datapath: NAT intent -> our `inet globalnet` table, by difference.

Life cycle:

* The first `apply` (a fresh object: start-up, controller restart) is a *full
  sync*: read the kernel's table, diff it against the intent, commit the
  difference. An identical table costs zero operations, so a restart never
  disturbs traffic (nothing is flushed, conntrack is untouched).
* Later applies are *partial*: diff old and new intent and check the change
  (work proportional to the change: `globalnet.intent.sequence_delta`,
  `globalnet.intent_validator`), turn the changed objects into element adds and
  deletes (`incremental.IngressIndex` for the ingress maps), commit them in one
  batch.
* Any failed commit sets `need_full_sync`; the kernel rolled the batch back, so
  it still holds the last good state, and the next apply re-reads it.
* An unsound intent raises `IntentRejected` before anything reaches the kernel:
  a full sync validates the whole intent, a partial one only the change.
* Drift (our table deleted or edited by someone else): `check_drift()` compares
  without changing anything, `resync()` repairs; `drift.DriftWatcher` calls them
  when the kernel announces a foreign change to our table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from datapath.nftables import converge, elements, incremental
from datapath.nftables import names as n
from datapath.nftables.elements import Elements
from datapath.nftables.kernel import LibNftClient, NftClient
from datapath.nftables.model import Kind, NftError, Op, Verb
from globalnet.datapath_api import ApplyResult, IntentRejected
from globalnet.intent import (
    IngressMapping,
    IntentDiff,
    NatIntent,
    cidrs_changed,
    diff_intents,
    sequence_delta,
)
from globalnet.intent_validator import IncrementalValidator

log = logging.getLogger(__name__)


class TransactionFailed(RuntimeError):
    """The kernel refused a transaction; it keeps the previous state."""


@dataclass(frozen=True)
class DriftReport:
    """What `check_drift` found: nothing (clean) or the repairs a resync would make."""

    drifted: bool
    problems: tuple[str, ...] = ()
    operations: int = 0
    skipped: bool = False  # the generation had not moved: nothing was read


class NftablesDatapath:
    """Datapath backend over nftables (see module docstring)."""

    name = "nftables"

    def __init__(self, *, netns: str | None = None, client: NftClient | None = None) -> None:
        self.netns = netns
        self.client: NftClient = client if client is not None else LibNftClient(netns)
        self._lock = threading.RLock()
        self.need_full_sync = True
        self.intent: NatIntent | None = None
        self._installed: Elements = {}
        self._ingress = incremental.IngressIndex()
        self._validator = IncrementalValidator()
        self._verified_generation: int | None = None
        # Kernel task ids that committed for us, so the drift watcher can tell
        # our own changes from someone else's (NEWGEN carries the task id).
        self.own_tasks: set[int] = set()
        self.own_generations: set[int] = set()
        self.last_operations = 0

    # -- the Datapath protocol ---------------------------------------------------

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult:
        with self._lock:
            if full or self.need_full_sync or self.intent is None:
                return self._full_sync(intent, fresh=full or self.intent is None)
            return self._partial_sync(self.intent, intent)

    def cleanup(self) -> None:
        """Delete our table, and nothing else."""
        with self._lock:
            self.client.delete_table()
            self.intent = None
            self._validator.reset()
            self._installed = {}
            self.need_full_sync = True

    def close(self) -> None:
        """Release the netlink sockets (the kernel state stays as it is)."""
        close = getattr(self.client, "close", None)
        if callable(close):
            close()

    # -- drift -------------------------------------------------------------------

    def check_drift(self) -> DriftReport:
        """Compare the kernel with what we installed, changing nothing."""
        with self._lock:
            if self.intent is None:
                return DriftReport(drifted=False, skipped=True)
            gen = self.client.generation()
            if gen == self._verified_generation and not self.need_full_sync:
                return DriftReport(drifted=False, skipped=True)
            ops, problems = converge.converge(self._desired(self.intent),
                                              self.client.read_table())
            if not ops:
                self._verified_generation = gen
            return DriftReport(drifted=bool(ops), problems=tuple(problems), operations=len(ops))

    def resync(self) -> int:
        """Repair drift: full sync to the current intent. Returns operations committed."""
        with self._lock:
            if self.intent is None:
                return 0
            gen = self.client.generation()
            if gen == self._verified_generation and not self.need_full_sync:
                return 0
            # The intent was validated when accepted: repair skips straight to the kernel.
            return self._full_sync(self.intent, fresh=False, validated=True).operations

    # -- internals ---------------------------------------------------------------

    def _desired(self, intent: NatIntent) -> Elements:
        want: Elements = {name: {} for name in
                          elements.INGRESS_SETS + elements.EGRESS_SETS
                          + elements.HEALTH_SETS + elements.CIDR_SETS}
        want.update(self._ingress.elements() if intent is self.intent
                    else incremental.IngressIndex.build(intent.ingress).elements())
        want.update(elements.egress_elements(intent))
        want.update(elements.health_elements(intent))
        want.update(elements.cidr_elements(intent))
        return want

    def _full_sync(self, intent: NatIntent, *, fresh: bool,
                   validated: bool = False) -> ApplyResult:
        checked = None if validated else self._validator.check(intent, full=True)
        if checked is not None and not checked.sound:
            raise IntentRejected(list(checked.errors))
        previous = self.intent
        if not (validated and intent is previous):
            self._ingress = incremental.IngressIndex.build(intent.ingress)
        self.intent = intent  # so _desired reuses the index just built
        try:
            desired = self._desired(intent)
            before = self.client.generation()
            observed = self.client.read_table()
            ops, problems = converge.converge(desired, observed)
            if problems:
                log.info("full sync of %s in %s: %s", n.TABLE_REF, self.netns or "own netns",
                         "; ".join(problems))
            self._commit(ops, before)
        except BaseException:
            self.intent = previous
            self.need_full_sync = True
            raise
        self._installed = desired
        if ops and self._verified_generation is not None:
            self.client.mark_verified()  # our batch alone made the table exactly ours
        if checked is not None:
            self._validator.commit(checked)
        self.need_full_sync = False
        if not ops:
            self._verified_generation = before
        diff = diff_intents(None if fresh else previous, intent) if not validated else IntentDiff()
        return ApplyResult(diff=diff, operations=len(ops))

    def _partial_sync(self, old: NatIntent, new: NatIntent) -> ApplyResult:
        added, removed = sequence_delta(old.ingress, new.ingress)
        checked = self._validator.check(new, ingress_delta=(added, removed))
        if not checked.sound:
            raise IntentRejected(list(checked.errors))
        new_cidrs = cidrs_changed(old, new)
        egress_changed = new_cidrs or old.egress != new.egress
        health_changed = old.health_checks != new.health_checks
        ops = self._ingress_ops(added, removed)
        if egress_changed:
            ops += self._set_ops(elements.egress_elements(new))
        if health_changed:
            ops += self._set_ops(elements.health_elements(new))
        if new_cidrs:
            ops += self._set_ops(elements.cidr_elements(new))
        ops = [o for o in ops if o.verb is Verb.DELETE] + [o for o in ops if o.verb is Verb.ADD]
        try:
            self._commit(ops, None)
        except TransactionFailed:
            # The kernel kept the old state; so does our index until the next full sync.
            self._ingress = incremental.IngressIndex.build(old.ingress)
            raise
        self._record(ops)
        self._validator.commit(checked)
        self.intent = new
        diff = diff_intents(old, new, ingress_delta=(added, removed))
        return ApplyResult(diff=diff, operations=len(ops))

    def _ingress_ops(self, added: Iterable[IngressMapping],
                     removed: Iterable[IngressMapping]) -> list[Op]:
        touched: dict[tuple[str, str], None] = {}
        for m in removed:
            touched.update(dict.fromkeys(self._ingress.remove(m)))
        for m in added:
            touched.update(dict.fromkeys(self._ingress.add(m)))
        ops: list[Op] = []
        for set_name, key in touched:
            want = self._ingress.desired((set_name, key))
            have = self._installed.get(set_name, {}).get(key)
            if want == have:
                continue
            if have is not None:
                ops.append(Op(Verb.DELETE, Kind.ELEMENT, set_name, element=have))
            if want is not None:
                ops.append(Op(Verb.ADD, Kind.ELEMENT, set_name, element=want))
        return ops

    def _set_ops(self, want: Elements) -> list[Op]:
        ops: list[Op] = []
        for set_name, wanted in want.items():
            d, a = converge.element_diff(set_name, wanted, self._installed.get(set_name, {}))
            ops += d + a
        return ops

    def _record(self, ops: Iterable[Op]) -> None:
        """Mirror committed element ops in the installed model."""
        for op in ops:
            if op.kind is not Kind.ELEMENT or op.element is None:
                continue
            current = self._installed.setdefault(op.name, {})
            if op.verb is Verb.DELETE:
                current.pop(op.element.key, None)
            else:
                current[op.element.key] = op.element

    def _commit(self, ops: list[Op], before: int | None) -> None:
        self.last_operations = len(ops)
        if not ops:
            return
        self.own_tasks.add(threading.get_native_id())
        if before is None:
            before = self.client.generation()
        start = time.monotonic()
        try:
            self.client.transact(ops)
        except NftError as exc:
            self.need_full_sync = True
            log.warning("nft transaction of %d operations failed: %s", len(ops), exc)
            raise TransactionFailed(str(exc)) from exc
        after = self.client.generation()
        if after == before + 1:
            # Only our batch happened in between: the kernel now holds exactly our state.
            if len(self.own_generations) > 4096:  # the watcher only asks about recent ones
                self.own_generations = {g for g in self.own_generations if g > after - 2048}
            self.own_generations.add(after)
            self._verified_generation = after
        else:
            self._verified_generation = None
        log.debug("committed %d operations in %.1f ms", len(ops),
                  (time.monotonic() - start) * 1000)

