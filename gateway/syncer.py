"""The Broker syncer: a cluster's `Cluster` objects stay what the Broker says.

`gnctl join` publishes a member's `Cluster` object (its pod, service and global
CIDRs) to the Broker and copies the members it finds into the cluster; this
keeps the copies current afterwards - a cluster joining later, a rejoin with a
new CIDR, a leave - so every member's Globalnet knows the remote global CIDRs
without anyone rerunning `join`. Copies edited or deleted by hand are put back;
objects in the cluster's namespace that the Broker does not have are removed.

One informer on each side, a work queue keyed by cluster ID, and a reconcile
that compares specs: idempotent, so two syncers of one cluster (an old and a
new gateway during a failover) agree. Endpoint objects will join when the
gateway engine publishes them. Run it with `python -m gateway.syncer`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gateway.clusterset import CLUSTER_NAMESPACE
from globalnet.broker import BROKER_NAMESPACE
from kube import daemon, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.errors import is_already_exists, is_not_found
from kube.informers import InformerSet
from kube.reconcile import Workers, run_workers
from kube.workqueue import WorkQueue

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SYNC_TIMEOUT = 30.0


class ClusterSyncer:
    """Mirror the Broker's Cluster objects into one cluster's namespace."""

    def __init__(self, *, local_api: Any, broker_api: Any,
                 broker_namespace: str = BROKER_NAMESPACE,
                 cluster_namespace: str = CLUSTER_NAMESPACE,
                 resync_period: float | None = 300.0) -> None:
        self.broker_namespace = broker_namespace
        self.cluster_namespace = cluster_namespace
        self._broker = InformerSet(broker_api, name="broker", resync_period=resync_period)
        self._local = InformerSet(local_api, name="local", resync_period=resync_period)
        self.published = self._broker.get(resources.CLUSTERS, namespace=broker_namespace)
        self.mirrored = self._local.get(resources.CLUSTERS, namespace=cluster_namespace)
        self._client = ResourceClient(local_api, resources.CLUSTERS)
        self.queue: WorkQueue[str] = WorkQueue(name="cluster-sync")
        self._workers: Workers[str] | None = None
        for informer in (self.published, self.mirrored):
            informer.add_handler(on_add=self._enqueue, on_delete=self._enqueue,
                                 on_update=lambda _old, new: self._enqueue(new))

    def _enqueue(self, obj: JSON) -> None:
        self.queue.add(o.name(obj))

    def start(self) -> ClusterSyncer:
        self._broker.start()
        self._local.start()
        self._broker.wait_for_sync(SYNC_TIMEOUT)
        self._local.wait_for_sync(SYNC_TIMEOUT)
        self._workers = run_workers(self.queue, self.reconcile, max_requeues=20,
                                    name="cluster-sync")
        return self

    def stop(self) -> None:
        if self._workers is not None:
            self._workers.stop()
        self._broker.stop()
        self._local.stop()

    def reconcile(self, cluster_id: str) -> None:
        """Make the local copy of `cluster_id` the Broker's (or remove it)."""
        want = self.published.get(f"{self.broker_namespace}/{cluster_id}")
        have = self.mirrored.get(f"{self.cluster_namespace}/{cluster_id}")
        ns = self.cluster_namespace
        if want is None:
            if have is not None:
                log.info("cluster %s left the clusterset: removing its Cluster object", cluster_id)
                try:
                    self._client.delete(cluster_id, namespace=ns)
                except Exception as exc:
                    if not is_not_found(exc):
                        raise
            return
        if have is None:
            log.info("cluster %s joined: copying its Cluster object", cluster_id)
            try:
                self._client.create({"apiVersion": resources.CLUSTERS.api_version,
                                     "kind": resources.CLUSTERS.kind,
                                     "metadata": {"name": cluster_id, "namespace": ns},
                                     "spec": o.spec(want)}, namespace=ns)
            except Exception as exc:
                if not is_already_exists(exc):
                    raise
                self.queue.add(cluster_id)  # the cache lags: compare again
            return
        if o.spec(have) != o.spec(want):
            log.info("cluster %s changed: updating its Cluster object", cluster_id)
            self._client.update({**have, "spec": o.spec(want)}, namespace=ns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.syncer",
                                description="Mirror the Broker's Cluster objects into a cluster.")
    p.add_argument("--kubeconfig", type=Path, required=True, help="the cluster's kubeconfig")
    p.add_argument("--broker-kubeconfig", type=Path, required=True)
    p.add_argument("--broker-namespace", default=BROKER_NAMESPACE)
    p.add_argument("--cluster-namespace", default=CLUSTER_NAMESPACE)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    daemon.setup_logging(args.verbose)
    for path in (args.kubeconfig, args.broker_kubeconfig):
        if not path.exists():
            print(f"gateway.syncer: kubeconfig {path} not found", file=sys.stderr)
            return 2
    from kube.client import new_api_client

    syncer = ClusterSyncer(local_api=new_api_client(args.kubeconfig),
                           broker_api=new_api_client(args.broker_kubeconfig),
                           broker_namespace=args.broker_namespace,
                           cluster_namespace=args.cluster_namespace)
    done = daemon.stop_requested()
    syncer.start()
    log.info("syncing Cluster objects from the Broker's %s into %s", args.broker_namespace,
             args.cluster_namespace)
    done.wait()
    syncer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
