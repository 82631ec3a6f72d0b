"""Leader election on ``coordination.k8s.io/v1`` Leases, with client-go's semantics.

Safety rule: two contenders never both believe they lead. It holds without comparing
wall clocks across processes:

* A leader believes it leads only until ``renew_deadline`` after the *start* of its last
  successful renew request (``is_leader`` is computed from the monotonic clock, so it
  turns False on time even while a request hangs).
* A follower takes the lease only after seeing the *same* lease record, unchanged, for
  ``lease_duration`` on its own monotonic clock since it first saw it (measured from when
  the answer arrived, which is after the leader's write), and only with a conditional
  update on that record's resourceVersion (a 409 means someone else moved first).

Since ``renew_deadline < lease_duration``, a leader that cannot renew stops believing
before any follower can take over. A leader that stops cleanly gives the lease up
(empty holder, 1 s duration) so a follower takes over within about one ``retry_period``.

Sub-second leases: a Lease records whole seconds (``leaseDurationSeconds``). A
follower whose own ``lease_duration`` rounds up to the holder's record assumes the
holder runs its configuration (contenders of one Lease are deployed alike) and waits
its own, finer, duration; any other record is waited out in full.

Eligibility: ``eligible()`` (default: always) is asked before every attempt. A
contender that is not eligible does not campaign, and a leader that becomes
ineligible steps down and releases the lease at once, so a healthy follower takes
over within a ``retry_period`` instead of a ``lease_duration`` (a gateway whose
tunnel link is down must not stay the active one just because it still reaches
the API server).

Callbacks: ``on_started_leading()`` runs in its own thread (it may start long-running
work); ``on_stopped_leading()`` runs on the elector thread after ``is_leader`` turned False
and before the lease is released; ``on_new_leader(identity)`` whenever the observed holder
changes. After losing the lease the elector campaigns again until ``stop()``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from kube import crud, errors
from kube.resources import LEASES
from kube.rest import ApiClient

log = logging.getLogger(__name__)

# client-go's JitterFactor: retries wait retry_period * [1, 1.2).
JITTER_FACTOR = 1.2


@dataclasses.dataclass(frozen=True)
class LeaderElectionConfig:
    """Timing in seconds; the defaults are client-go's (15 / 10 / 2)."""

    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_stop: bool = True
    # Timeout of each API request; defaults to renew_deadline / 2 so a hung request
    # still leaves time for a second renew attempt before the deadline.
    request_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError("renew_deadline must be greater than retry_period * 1.2")
        if self.retry_period <= 0:
            raise ValueError("retry_period must be positive")


@dataclasses.dataclass(frozen=True)
class LeaderElectionRecord:
    """The Lease spec fields leader election reads and writes."""

    holder_identity: str
    lease_duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    lease_transitions: int

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaderElectionRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder_identity=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            lease_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.lease_transitions,
        }


def holder_of(lease: dict[str, Any] | None) -> str:
    """Who holds `lease` ("" when nobody, or no Lease): for watchers of an election."""
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def _micro_time(moment: datetime.datetime | None = None) -> str:
    """metav1.MicroTime: RFC 3339 with exactly six fractional digits, UTC."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One contender for one Lease. ``start()`` or ``run()``, then ``stop()``."""

    def __init__(
        self,
        api_client: ApiClient,
        config: LeaderElectionConfig,
        *,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        eligible: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self._eligible = eligible
        timeout = config.request_timeout or config.renew_deadline / 2
        self._leases = crud.ResourceClient(api_client, LEASES, timeout=(timeout, timeout))
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        # What we last read or wrote, and when (monotonic) that record first appeared.
        self._observed: LeaderElectionRecord | None = None
        self._observed_time = 0.0
        self._leading = False
        self._valid_until = 0.0  # monotonic end of our current belief in leading
        self._leader = ""
        self._step_down = False  # an ineligible leader gives the lease up
        self._written: dict[str, Any] | None = None  # the Lease as our last write left it

    # -- public API ----------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True only while our last successful renew is younger than renew_deadline."""
        with self._lock:
            return self._leading and time.monotonic() < self._valid_until

    @property
    def term(self) -> int:
        """The Lease's leaseTransitions as last read or written: while we lead, the
        term we won, which a later holder's always exceeds (a deposed leader's late
        writes can be told from its successor's by it)."""
        with self._lock:
            return self._observed.lease_transitions if self._observed is not None else 0

    @property
    def leader_identity(self) -> str:
        """The holder of the lease as last observed ("" if none)."""
        with self._lock:
            return self._leader

    def start(self) -> threading.Thread:
        """Run the election in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("leader elector already started")
        self._thread = threading.Thread(
            target=self.run, name=f"leader-election-{self.config.name}", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        """Stop campaigning; a leader steps down and (by default) releases the lease."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else self.config.renew_deadline * 2)

    def run(self) -> None:
        """Campaign, lead, and campaign again after a loss, until ``stop()``."""
        while not self._stopped.is_set():
            if not self._acquire():
                break
            self._started_leading()
            self._renew_until_lost()
            self._stopped_leading()
            if self._step_down:
                self._step_down = False
                self._release()
            if self._stopped.is_set():
                if self.config.release_on_stop:
                    self._release()
                break

    # -- campaign ------------------------------------------------------------------------

    def _retry_wait(self) -> float:
        return self.config.retry_period * random.uniform(1.0, JITTER_FACTOR)

    @property
    def eligible(self) -> bool:
        """The eligibility check's answer now."""
        return self._is_eligible()

    def _acquire(self) -> bool:
        while not self._stopped.is_set():
            if not self._is_eligible():
                self._peek()  # still know who leads
            elif self._try_acquire_or_renew():
                log.info("%s: %s acquired the lease", self.config.name, self.config.identity)
                return True
            self._stopped.wait(self._retry_wait())
        return False

    def _renew_until_lost(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                remaining = self._valid_until - time.monotonic()
            # Wake before the belief ends, so a loss is reported on time.
            self._stopped.wait(max(0.0, min(self.config.retry_period, remaining)))
            if self._stopped.is_set():
                return
            if not self._is_eligible():
                log.warning("%s: %s is not eligible any more: stepping down",
                            self.config.name, self.config.identity)
                with self._lock:
                    self._leading, self._valid_until = False, 0.0
                self._step_down = True  # released by run(), after on_stopped_leading
                return
            if self._try_acquire_or_renew():
                continue
            with self._lock:
                expired = time.monotonic() >= self._valid_until
                taken = bool(self._leader) and self._leader != self.config.identity
            if expired or taken:
                log.warning(
                    "%s: %s lost the lease (%s)",
                    self.config.name,
                    self.config.identity,
                    "taken by " + self._leader if taken else "renew deadline passed",
                )
                return

    def _peek(self) -> None:
        """Read the lease to observe its holder, changing nothing."""
        cfg = self.config
        try:
            lease = self._leases.get(cfg.name, namespace=cfg.namespace)
        except Exception as exc:
            log.debug("%s: reading the lease failed: %s", cfg.name, exc)
            return
        self._observe(LeaderElectionRecord.from_lease(lease))

    def _is_eligible(self) -> bool:
        try:
            return bool(self._eligible())
        except Exception:  # a failing check counts as "not now"; logged
            log.exception("%s: eligibility check failed", self.config.name)
            return False

    def _observe(self, record: LeaderElectionRecord) -> None:
        """Remember ``record``; restart the expiry clock only when it changed."""
        new_leader = None
        with self._lock:
            if record != self._observed:
                self._observed = record
                self._observed_time = time.monotonic()
                if record.holder_identity != self._leader:
                    self._leader = record.holder_identity
                    new_leader = record.holder_identity
        if new_leader and self._on_new_leader is not None:
            try:
                self._on_new_leader(new_leader)
            except Exception:
                log.exception("%s: on_new_leader failed", self.config.name)

    def _held_by_other(self, record: LeaderElectionRecord) -> bool:
        """Someone else holds a lease we have not yet seen unchanged for long enough."""
        if not record.holder_identity or record.holder_identity == self.config.identity:
            return False
        duration = float(record.lease_duration_seconds)
        if record.lease_duration_seconds == math.ceil(self.config.lease_duration):
            duration = self.config.lease_duration  # configured like us: our finer value
        duration = max(duration, self.config.lease_duration)
        with self._lock:
            return time.monotonic() < self._observed_time + duration

    def _renew_in_one_write(self, started: float, now: str) -> bool:
        """Renew with one conditional PUT of the Lease as we last wrote it: half the
        round trips of read-then-write, so a slow API server (a loaded node) takes
        twice as long to make a healthy leader miss its renew deadline. False (then
        read and write as usual) when someone else wrote it since, or on any error."""
        with self._lock:
            last, record = self._written, self._observed
        if last is None or record is None or record.holder_identity != self.config.identity:
            return False
        renewed = dataclasses.replace(record, renew_time=now)
        lease = {**last, "spec": {**(last.get("spec") or {}), **renewed.to_spec()}}
        try:
            written = self._leases.update(lease, namespace=self.config.namespace)
        except Exception as exc:
            log.debug("%s: renewing in one write failed: %s", self.config.name, exc)
            with self._lock:
                self._written = None
            return False
        self._won(renewed, started, written)
        return True

    def _try_acquire_or_renew(self) -> bool:
        """One attempt to take or renew the lease; True if we hold it now."""
        cfg = self.config
        started = time.monotonic()
        now = _micro_time()
        with self._lock:
            leading = self._leading
        if leading and self._renew_in_one_write(started, now):
            return True
        try:
            lease = self._leases.get(cfg.name, namespace=cfg.namespace)
        except Exception as exc:
            if not errors.is_not_found(exc):
                log.debug("%s: reading the lease failed: %s", cfg.name, exc)
                return False
            return self._create(started, now)
        old = LeaderElectionRecord.from_lease(lease)
        self._observe(old)
        if self._held_by_other(old):
            return False
        ours = old.holder_identity == cfg.identity
        record = LeaderElectionRecord(
            holder_identity=cfg.identity,
            lease_duration_seconds=math.ceil(cfg.lease_duration),
            acquire_time=old.acquire_time if ours else now,
            renew_time=now,
            lease_transitions=old.lease_transitions if ours else old.lease_transitions + 1,
        )
        lease = {**lease, "spec": {**(lease.get("spec") or {}), **record.to_spec()}}
        try:
            written = self._leases.update(lease, namespace=cfg.namespace)
        except Exception as exc:
            log.debug("%s: writing the lease failed: %s", cfg.name, exc)
            return False
        self._won(record, started, written)
        return True

    def _create(self, started: float, now: str) -> bool:
        cfg = self.config
        record = LeaderElectionRecord(
            holder_identity=cfg.identity,
            lease_duration_seconds=math.ceil(cfg.lease_duration),
            acquire_time=now,
            renew_time=now,
            lease_transitions=0,
        )
        lease = {
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": record.to_spec(),
        }
        try:
            written = self._leases.create(lease, namespace=cfg.namespace)
        except Exception as exc:
            log.debug("%s: creating the lease failed: %s", cfg.name, exc)
            return False
        self._won(record, started, written)
        return True

    def _won(self, record: LeaderElectionRecord, started: float,
             written: dict[str, Any]) -> None:
        self._observe(record)
        with self._lock:
            self._valid_until = started + self.config.renew_deadline
            self._leading = True
            self._written = written

    # -- stepping down -------------------------------------------------------------------

    def _started_leading(self) -> None:
        if self._on_started_leading is None:
            return

        def call() -> None:
            try:
                assert self._on_started_leading is not None
                self._on_started_leading()
            except Exception:
                log.exception("%s: on_started_leading failed", self.config.name)

        threading.Thread(target=call, name=f"leading-{self.config.name}", daemon=True).start()

    def _stopped_leading(self) -> None:
        with self._lock:
            self._leading = False
            self._valid_until = 0.0
        if self._on_stopped_leading is not None:
            try:
                self._on_stopped_leading()
            except Exception:
                log.exception("%s: on_stopped_leading failed", self.config.name)

    def _release(self) -> None:
        """Give the lease up if it is still ours, so a follower need not wait it out."""
        cfg = self.config
        try:
            lease = self._leases.get(cfg.name, namespace=cfg.namespace)
            current = LeaderElectionRecord.from_lease(lease)
            if current.holder_identity != cfg.identity:
                return  # taken over already; the conditional update below guards races
            now = _micro_time()
            released = LeaderElectionRecord(
                holder_identity="",
                lease_duration_seconds=1,
                acquire_time=now,
                renew_time=now,
                lease_transitions=current.lease_transitions,
            )
            lease = {**lease, "spec": {**(lease.get("spec") or {}), **released.to_spec()}}
            self._leases.update(lease, namespace=cfg.namespace)
            log.info("%s: %s released the lease", cfg.name, cfg.identity)
        except Exception as exc:
            log.warning("%s: releasing the lease failed: %s", cfg.name, exc)
