"""Runs the controllers of one cluster while this process leads, and publishes intent.

Each leadership term starts from nothing: fresh informers, a fresh pool. Before
any worker runs, every address recorded in the statuses is reserved again for
its owner (conflicts are refused and later reallocated with a reason), so a new
leader never hands out an address an object already holds. When leadership is
lost the controllers stop at once; the datapath is left as it is (never
flushed): the next leader converges it by difference. Each term's
`publisher.IntentPublisher` hands the NAT intent to the datapath.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from globalnet import metrics
from globalnet.allocator import OwnedPool
from globalnet.controllers.base import BaseController, ControllerContext
from globalnet.controllers.cluster_egress import ClusterEgressController
from globalnet.controllers.gateway_health import GatewayHealthCheckController
from globalnet.controllers.global_egress import GlobalEgressController
from globalnet.controllers.global_ingress import GlobalIngressController
from globalnet.controllers.publisher import IntentPublisher
from globalnet.controllers.service_export import ServiceExportController
from globalnet.datapath_api import Datapath
from kube import names, resources
from kube.informers import InformerSet
from kube.leaderelection import LeaderElectionConfig, LeaderElector

log = logging.getLogger(__name__)

INFORMER_SYNC_TIMEOUT = 60.0


@dataclass
class GlobalnetConfig:
    cluster_id: str
    global_cidr: str
    local_cidrs: tuple[str, ...]
    namespace: str = names.CLUSTER_NAMESPACE
    identity: str = field(default_factory=lambda: f"globalnet-{uuid.uuid4().hex[:8]}")
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    debounce: float = 0.05
    resync_period: float | None = 300.0


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
                name=names.globalnet_lease(cfg.cluster_id), namespace=cfg.namespace,
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
        from kube import errors
        from kube.crud import ensure_namespace

        try:
            ensure_namespace(self.api_client, self.cfg.namespace)
        except Exception as exc:
            # Deployed with least privilege: the manifests made the namespace, and the
            # agent may not create namespaces. Should it be missing after all, taking
            # the lease fails and says so.
            if not errors.is_forbidden(exc):
                raise
            log.debug("may not create namespace %s; it is expected to exist", self.cfg.namespace)
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

