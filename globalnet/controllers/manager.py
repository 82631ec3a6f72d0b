"""Runs the controllers of one cluster while this process leads, and publishes intent.

Each leadership term starts from nothing: fresh informers, a fresh pool. Before
any worker runs, every address recorded in the statuses is reserved again for
its owner (conflicts are refused and later reallocated with a reason), so a new
leader never hands out an address an object already holds. When leadership is
lost the controllers stop at once; the datapath is left as it is (never
flushed): the next leader converges it by difference.

The intent publisher rebuilds the NAT intent from the informer caches at most
once per debounce interval and hands it to the datapath only when it changed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datapath.api import Datapath
from globalnet import metrics
from globalnet.allocator import OwnedPool
from globalnet.controllers.base import BaseController, ControllerContext
from globalnet.controllers.cluster_egress import ClusterEgressController
from globalnet.controllers.gateway_health import GatewayHealthCheckController
from globalnet.controllers.global_egress import GlobalEgressController
from globalnet.controllers.global_ingress import GlobalIngressController
from globalnet.controllers.intent_builder import IntentInputs, build_intent
from globalnet.controllers.service_export import ServiceExportController
from globalnet.intent import NatIntent
from kube import resources
from kube.informers import InformerSet
from kube.leaderelection import LeaderElectionConfig, LeaderElector

log = logging.getLogger(__name__)

INFORMER_SYNC_TIMEOUT = 60.0


@dataclass
class GlobalnetConfig:
    cluster_id: str
    global_cidr: str
    local_cidrs: tuple[str, ...]
    namespace: str = "submariner-operator"
    identity: str = field(default_factory=lambda: f"globalnet-{uuid.uuid4().hex[:8]}")
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    debounce: float = 0.05
    resync_period: float | None = 300.0


class IntentPublisher:
    """Debounced intent derivation and delivery to the datapath."""

    def __init__(
        self, cfg: GlobalnetConfig, informers: InformerSet, datapath: Datapath,
        *, on_built: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.on_built = on_built
        self.informers = informers
        self.datapath = datapath
        self.current: NatIntent | None = None
        self.applied: NatIntent | None = None
        self.applies = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def mark(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="intent-publisher", daemon=True)
        self._thread.start()
        self.mark()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread:
            self._thread.join(5)

    def snapshot(self) -> IntentInputs:
        inf = self.informers
        return IntentInputs(
            cluster_id=self.cfg.cluster_id,
            global_cidr=self.cfg.global_cidr,
            local_cidrs=self.cfg.local_cidrs,
            pods=inf.get(resources.PODS).list(),
            services=inf.get(resources.SERVICES).list(),
            global_egress_ips=inf.get(resources.GLOBAL_EGRESS_IPS).list(),
            cluster_global_egress_ips=inf.get(resources.CLUSTER_GLOBAL_EGRESS_IPS).list(),
            global_ingress_ips=inf.get(resources.GLOBAL_INGRESS_IPS).list(),
            gateway_nodes=[n for n in inf.get(resources.NODES).list()
                           if GatewayHealthCheckController.is_gateway(n)],
            clusters=inf.get(resources.CLUSTERS).list(),
        )

    def _loop(self) -> None:
        backoff = 0.1
        build_time = 0.0
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            # Debounce: let a burst of events settle into one update. With many
            # objects a build takes longer; waiting at least twice that keeps the
            # publisher from starving the controllers during a flood of events.
            time.sleep(max(self.cfg.debounce, 2 * build_time))
            self._dirty.clear()
            started = time.perf_counter()
            intent = build_intent(self.snapshot())
            build_time = time.perf_counter() - started
            metrics.INTENT_BUILD_SECONDS.labels(cluster=self.cfg.cluster_id).observe(build_time)
            self.on_built()
            with self._changed:
                self.current = intent
                self._changed.notify_all()
            if intent == self.applied:
                continue
            try:
                self.datapath.apply(intent)
            except Exception as exc:
                metrics.INTENT_APPLIES.labels(cluster=self.cfg.cluster_id, result="error").inc()
                log.error("datapath %s refused the intent: %s", self.datapath.name, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._dirty.set()
                continue
            backoff = 0.1
            metrics.INTENT_APPLIES.labels(cluster=self.cfg.cluster_id, result="ok").inc()
            with self._changed:
                self.applied = intent
                self.applies += 1
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[NatIntent], bool], timeout: float) -> NatIntent:
        """Block until the applied intent satisfies `predicate` (for tests and tools)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.applied is None or not predicate(self.applied):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the applied intent never matched")
                self._changed.wait(remaining)
            return self.applied


class Term:
    """Everything that lives for one leadership term."""

    def __init__(
        self, api_client: Any, cfg: GlobalnetConfig, datapath: Datapath,
        *, is_leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.informers = InformerSet(api_client, name=f"globalnet-{cfg.cluster_id}",
                                     resync_period=cfg.resync_period)
        self.pool = OwnedPool(cfg.global_cidr)
        self.publisher = IntentPublisher(cfg, self.informers, datapath, on_built=self.observe)
        self.ctx = ControllerContext(api_client=api_client, cluster_id=cfg.cluster_id,
                                     pool=self.pool, informers=self.informers,
                                     on_change=self.publisher.mark, is_leading=is_leading)
        self.cluster_egress = ClusterEgressController(self.ctx)
        self.controllers: list[BaseController] = [
            self.cluster_egress,
            GlobalEgressController(self.ctx),
            GlobalIngressController(self.ctx),
            ServiceExportController(self.ctx),
            GatewayHealthCheckController(self.ctx),
        ]
        self.conflicts: list[str] = []

    def start(self) -> None:
        started = time.monotonic()
        for c in self.controllers:
            c.register()
        # Read only by the intent: a member joining, leaving or changing its global
        # CIDR changes the remote global CIDRs, so any change rebuilds the intent.
        self.informers.get(resources.CLUSTERS).add_handler(
            on_add=lambda _obj: self.publisher.mark(),
            on_update=lambda _old, _new: self.publisher.mark(),
            on_delete=lambda _obj: self.publisher.mark())
        self.informers.start()
        self.informers.wait_for_sync(INFORMER_SYNC_TIMEOUT)
        log.info("informers synced in %.2f s", time.monotonic() - started)
        # Reserve what the statuses record before any worker can allocate.
        for c in self.controllers:
            self.conflicts += c.reserve()
        for conflict in self.conflicts:
            log.warning("conflicting allocation record: %s (will reallocate)", conflict)
        log.info("reserved %d recorded addresses for %d owners (%d conflicts)",
                 self.pool.pool.allocated, len(self.pool.owners()), len(self.conflicts))
        self.cluster_egress.ensure_default()
        for c in self.controllers:
            c.resync_all()
        for c in self.controllers:
            c.start()
        self.publisher.start()
        log.info("controllers running %.2f s after taking the lead", time.monotonic() - started)

    def stop(self) -> None:
        for c in self.controllers:
            c.queue.shutdown()
        self.publisher.stop()
        for c in self.controllers:
            c.stop()
        self.informers.stop()

    def observe(self) -> None:
        by_kind: dict[str, int] = {}
        for owner in self.pool.owners():
            kind = owner.split("/", 1)[0]
            by_kind[kind] = by_kind.get(kind, 0) + 1
        metrics.observe_pool(self.ctx.cluster_id, self.pool.pool.available,
                             self.pool.pool.allocated, by_kind)


class GlobalnetManager:
    """Leader election around `Term`s."""

    def __init__(self, api_client: Any, cfg: GlobalnetConfig, datapath: Datapath) -> None:
        self.api_client = api_client
        self.cfg = cfg
        self.datapath = datapath
        self.term: Term | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._term_ready = threading.Condition(self._lock)
        self.elector = LeaderElector(
            api_client,
            LeaderElectionConfig(
                name=f"globalnet-{cfg.cluster_id}", namespace=cfg.namespace,
                identity=cfg.identity, lease_duration=cfg.lease_duration,
                renew_deadline=cfg.renew_deadline, retry_period=cfg.retry_period,
            ),
            on_started_leading=self._started, on_stopped_leading=self._stopped,
        )

    def _started(self) -> None:
        log.info("%s leads globalnet of %s", self.cfg.identity, self.cfg.cluster_id)
        with self._lock:
            self._generation += 1
            generation = self._generation
        term = Term(self.api_client, self.cfg, self.datapath,
                    is_leading=lambda: self.elector.is_leader)
        term.start()
        with self._lock:
            # Leadership may have ended while the term was starting.
            current = generation == self._generation and self.elector.is_leader
            if current:
                self.term = term
                self._term_ready.notify_all()
        if not current:
            term.stop()

    def _stopped(self) -> None:
        with self._lock:
            self._generation += 1
            term, self.term = self.term, None
        if term:
            log.info("%s lost leadership: stopping controllers", self.cfg.identity)
            term.stop()

    def start(self) -> None:
        from kube.crud import ensure_namespace

        ensure_namespace(self.api_client, self.cfg.namespace)
        self.elector.start()

    def stop(self) -> None:
        self.elector.stop()
        self._stopped()

    def wait_for_term(self, timeout: float) -> Term:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.term is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("never became leader")
                self._term_ready.wait(remaining)
            return self.term

