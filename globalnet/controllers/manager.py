"""Runs the controllers of one cluster while this process leads, and publishes intent.

Each leadership term starts from nothing: fresh informers, a fresh pool. Before
any worker runs, every address recorded in the statuses is reserved again for
its owner (conflicts are refused and later reallocated with a reason), so a new
leader never hands out an address an object already holds. When leadership is
lost the controllers stop at once; the datapath is left as it is (never
flushed): the next leader converges it by difference. Each term's
`publisher.IntentPublisher` hands the NAT intent to the datapath.

While another agent leads, this one is a hot standby (`Standby`): it watches
the same objects and programs the same intent into its own node's datapath,
read-only toward the API (the intent is derived from statuses the leader
writes). With several gateway nodes every one of them then holds the NAT
state, so a gateway failover moves only the routes and the cable. A passive
gateway's datapath translates nothing meanwhile: its rules act only on the
cable device, which carries no traffic there.
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
from globalnet.controllers.publisher import INTENT_INPUTS, IntentPublisher
from globalnet.controllers.service_export import ServiceExportController
from globalnet.datapath_api import ApplyResult, Datapath
from globalnet.intent import NatIntent
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
    # Program the datapath from the leader's statuses while another agent leads.
    standby: bool = True
    # The gateway node this agent programs (see publisher.PublisherConfig.node_name).
    node_name: str | None = None


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
        metrics.observe_pool(self.ctx.cluster_id, self.pool.cidr, self.pool.pool.available,
                             self.pool.owners())


class _Serialized:
    """One datapath fed by two publishers in turn (the standby's and a term's,
    which overlap for a moment at a handover): one apply at a time."""

    def __init__(self, datapath: Datapath) -> None:
        self.datapath, self.name = datapath, datapath.name
        self._lock = threading.Lock()

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult:
        with self._lock:
            return self.datapath.apply(intent, full=full)

    def cleanup(self) -> None:
        with self._lock:
            self.datapath.cleanup()


class Standby:
    """The intent publisher without the controllers, while another agent leads."""

    def __init__(self, api_client: Any, cfg: GlobalnetConfig, datapath: Datapath) -> None:
        self.informers = InformerSet(api_client, name=f"globalnet-standby-{cfg.cluster_id}",
                                     resync_period=cfg.resync_period)
        self.publisher = IntentPublisher(cfg, self.informers, datapath)
        mark = self.publisher.mark
        for resource in INTENT_INPUTS:
            self.informers.get(resource).add_handler(
                on_add=lambda _o: mark(), on_update=lambda _a, _b: mark(),
                on_delete=lambda _o: mark())

    def start(self) -> None:
        self.informers.start()
        self.informers.wait_for_sync(INFORMER_SYNC_TIMEOUT)
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()
        self.informers.stop()


class GlobalnetManager:
    """Leader election around `Term`s; a `Standby` between them."""

    def __init__(self, api_client: Any, cfg: GlobalnetConfig, datapath: Datapath) -> None:
        self.api_client = api_client
        self.cfg = cfg
        self.datapath: Datapath = _Serialized(datapath)
        self.term: Term | None = None
        self.standby: Standby | None = None
        self._running = False
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
            on_new_leader=self._new_leader,
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
            return
        self._stop_standby()  # the term's publisher has applied by now

    def _start_standby(self) -> None:
        standby = Standby(self.api_client, self.cfg, self.datapath)
        try:
            standby.start()
        except Exception as exc:  # informers that do not sync: the term will program
            log.warning("standby intent publisher not started: %s", exc)
            standby.stop()
            return
        with self._lock:
            keep = self.term is None and self.standby is None and self._running
            if keep:
                self.standby = standby
        if keep:
            log.info("%s is a hot standby: programming the leader's intent",
                     self.cfg.identity)
        else:
            standby.stop()

    def _stop_standby(self) -> None:
        with self._lock:
            standby, self.standby = self.standby, None
        if standby is not None:
            standby.stop()

    def _stopped(self) -> None:
        with self._lock:
            self._generation += 1
            term, self.term = self.term, None
        if term:
            log.info("%s lost leadership: stopping controllers", self.cfg.identity)
            term.stop()
        self._standby_soon()

    def _new_leader(self, identity: str) -> None:
        if identity != self.cfg.identity:
            self._standby_soon()

    def _standby_soon(self) -> None:
        """Start the standby publisher (in a thread: informers take a moment to sync)
        unless this agent leads, one runs already, or standbys are off."""
        with self._lock:
            wanted = (self.cfg.standby and self._running and self.term is None
                      and self.standby is None)
        if wanted:
            threading.Thread(target=self._start_standby, name="globalnet-standby",
                             daemon=True).start()

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
        self._running = True
        self.elector.start()

    def stop(self) -> None:
        self._running = False
        self.elector.stop()
        self._stopped()
        self._stop_standby()

    def wait_for_term(self, timeout: float) -> Term:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.term is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("never became leader")
                self._term_ready.wait(remaining)
            return self.term

