"""Publishing the active gateway's Endpoint to the Broker, in a thread of its own.

The Broker may be slow, down, or reachable only over the link a failover is
about: a request to it can take its whole timeout. The engine's loop must not
wait for one, because the same loop takes this node's cable down when it turns
passive, and a cable left up for seconds on a deposed gateway sends the replies
of the pods on that node into a tunnel nobody answers. So the loop only says
what it wants published (`want`); this thread writes it while the gateway leads.

What it writes into the cluster's member namespace on the Broker: the Endpoint
wanted (first: remote clusters switch to it at once, by its term), then it
withdraws the cluster's other Endpoints - every round those the cluster's local
copies show (a deposed gateway's publish held up on a cut link can land after
this term began), and once a term those the Broker lists (copies may lag or be
missing). Leadership is checked before each write; a deposed
gateway's request that lands late anyway loses to its successor's by
`gatewayTerm` (`engine.endpoint_precedence`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kube import errors, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.informer import Informer

log = logging.getLogger(__name__)

JSON = dict[str, Any]
RETRY_S = 1.0  # after a failed round (the Broker down): how soon to try again


class EndpointPublisher:
    """Keeps Endpoint `name` in `namespace` on the Broker at the spec last wanted."""

    def __init__(self, broker_api: Any, *, cluster_id: str, name: str, namespace: str,
                 local_copies: Informer, is_leader: Callable[[], bool]) -> None:
        self.cluster_id, self.name, self.namespace = cluster_id, name, namespace
        self._endpoints = ResourceClient(broker_api, resources.SUBMARINER_ENDPOINTS)
        self._local_copies = local_copies
        self._is_leader = is_leader
        self._lock = threading.Lock()
        self._wanted: JSON | None = None
        self._term = 0  # counts new_term(): a round of an earlier term sweeps nothing
        self._swept_term = -1  # the term whose Broker-wide sweep is done
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.problem: str | None = None  # the last round's failure: the Gateway status

    def want(self, spec: JSON) -> None:
        """Publish `spec` (again: a round also repairs an Endpoint deleted by hand)."""
        with self._lock:
            self._wanted = spec
        self._wake.set()

    def new_term(self) -> None:
        """A term begins: sweep the Broker once more; publish nothing until wanted."""
        with self._lock:
            self._wanted, self._term = None, self._term + 1

    def end_term(self) -> None:
        with self._lock:
            self._wanted = None

    def start(self) -> EndpointPublisher:
        self._thread = threading.Thread(target=self._loop, name="endpoint-publisher",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)  # a request hanging on the Broker: the thread is a daemon

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                spec = self._wanted
            if spec is None or self._stop.is_set():
                continue
            try:
                self.publish_once(spec)
                self.problem = None
            except Exception as exc:  # the Broker down or refusing: retried
                self.problem = ("could not publish the Endpoint to the Broker: "
                                f"{errors.message_of(exc)}")
                log.warning("%s", self.problem)
                self._stop.wait(RETRY_S)
                self._wake.set()

    def publish_once(self, spec: JSON) -> None:
        """One round: write ours, then withdraw the cluster's other Endpoints.

        Ours first: remote clusters follow the higher term at once, so a failover
        waits for one Broker request (a create), not for the withdrawals before
        it. Nothing is written while the cluster's copy (the Broker syncer's)
        shows ours as wanted: a steady gateway costs the Broker no requests."""
        copies = {o.name(ep): ep for ep in self._local_copies.list()
                  if o.spec(ep).get("cluster_id") == self.cluster_id}
        mine = copies.get(self.name)
        if mine is None or o.spec(mine) != spec:
            if not self._is_leader():
                return
            self._write(spec)
        ns = self.namespace
        stale = set(copies)
        with self._lock:
            term = self._term
            swept = self._swept_term == term
        if not swept:
            stale |= {o.name(ep) for ep in self._endpoints.list(namespace=ns).items
                      if o.spec(ep).get("cluster_id") == self.cluster_id}
        for other in sorted(stale - {self.name}):
            if not self._is_leader():
                return
            log.info("withdrawing Endpoint %s of an earlier gateway", other)
            self._endpoints.delete_if_exists(other, namespace=ns)
        with self._lock:
            self._swept_term = term

    def _write(self, spec: JSON) -> None:
        ns = self.namespace
        if self._endpoints.create_if_absent({
                "apiVersion": resources.SUBMARINER_ENDPOINTS.api_version,
                "kind": resources.SUBMARINER_ENDPOINTS.kind,
                "metadata": {"name": self.name, "namespace": ns}, "spec": spec},
                namespace=ns):
            log.info("published Endpoint %s (%s, term %s)", self.name,
                     ", ".join(spec.get("subnets") or ()), spec.get("gatewayTerm"))
            return
        current = self._endpoints.get_or_none(self.name, namespace=ns)
        if current is not None and o.spec(current) != spec and self._is_leader():
            self._endpoints.update({**current, "spec": spec}, namespace=ns)
