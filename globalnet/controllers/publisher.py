"""Derives the NAT intent from the informer caches and hands it to the datapath.

The publisher rebuilds the intent at most once per debounce interval and hands
it to the datapath only when it changed. A refused or failed apply is retried
with exponential backoff (0.1 s doubling to 5 s); the controllers never call
the datapath themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from globalnet import metrics
from globalnet.controllers.gateway_health import GatewayHealthCheckController
from globalnet.controllers.intent_builder import IntentInputs, build_intent
from globalnet.datapath_api import Datapath
from globalnet.intent import NatIntent
from kube import names, resources
from kube import objects as o
from kube.informers import InformerSet
from kube.leaderelection import holder_of

JSON = dict[str, Any]

log = logging.getLogger(__name__)


# Every kind of object the intent is derived from (`IntentPublisher.snapshot`): a
# change to any of them may change the intent. (Plus the gateway Lease, whose
# holder the publisher watches itself.)
INTENT_INPUTS = (resources.PODS, resources.SERVICES, resources.GLOBAL_EGRESS_IPS,
                 resources.CLUSTER_GLOBAL_EGRESS_IPS, resources.GLOBAL_INGRESS_IPS,
                 resources.NODES, resources.CLUSTERS)


class PublisherConfig(Protocol):
    """The settings the publisher reads (`manager.GlobalnetConfig` has them)."""

    cluster_id: str
    global_cidr: str
    local_cidrs: tuple[str, ...]
    debounce: float
    namespace: str
    # The gateway node whose datapath this agent programs (None: not on a gateway
    # node, or a single gateway: always active).
    node_name: str | None


class IntentPublisher:
    """Debounced intent derivation and delivery to the datapath."""

    def __init__(
        self, cfg: PublisherConfig, informers: InformerSet, datapath: Datapath,
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
        self._leases = None
        if cfg.node_name:
            self._leases = informers.get(resources.LEASES, namespace=cfg.namespace)
            self._leases.add_handler(
                on_add=self._lease_changed, on_delete=self._lease_changed,
                on_update=lambda old, new: self._lease_changed(new)
                if holder_of(old) != holder_of(new) else None)

    def _lease_changed(self, lease: JSON) -> None:
        if o.name(lease) == names.GATEWAY_LEASE:
            self.mark()

    def passive(self) -> bool:
        """Another gateway node holds the gateway Lease (no Lease yet, or none
        held: this node acts, as a single gateway always does)."""
        if self._leases is None:
            return False
        lease = next((x for x in self._leases.list() if o.name(x) == names.GATEWAY_LEASE),
                     None)
        holder = holder_of(lease)
        return bool(holder) and holder != self.cfg.node_name

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
            passive=self.passive(),
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
            metrics.observe_applied(self.cfg.cluster_id, {
                "ingress": len(intent.ingress), "egress": len(intent.egress),
                "health_check": len(intent.health_checks),
                "remote_cidr": len(intent.remote_global_cidrs)})
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

