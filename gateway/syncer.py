"""The Broker syncer: a cluster's `Cluster` and `Endpoint` objects stay what the
Broker says.

`gnctl join` publishes a member's `Cluster` object (its pod, service and global
CIDRs) to the Broker and the gateway engine publishes its `Endpoint` (where its
cable ends); this copies every member's into the cluster and keeps the copies
current - a cluster joining later, a rejoin with a new CIDR, a gateway moving, a
leave - so every member's Globalnet knows the remote global CIDRs and its
gateway engine the remote cable ends. Copies edited or deleted by hand are put
back; objects in the cluster's namespace that the Broker does not have are
removed.

On the Broker, the `Cluster` objects are in the shared Broker namespace and
each member's `Endpoint` in that member's own namespace
(`names.broker_member_namespace`): the Endpoints are read from every member
namespace the Cluster objects name (`InformerSet.across_members`), so a cluster
that leaves loses its Endpoint copies at once, and an Endpoint counts only in the
namespace of the cluster its `cluster_id` names (a member cannot publish another's).

One informer per kind on each side, a `kube.controller` work queue keyed
"<plural>/<name>", and a reconcile that compares specs: idempotent, so two
syncers of one cluster (an old and a new gateway during a failover) agree. Run
it with `python -m gateway.syncer`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from gateway import metrics
from kube import controller, daemon, names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.informer import Cache
from kube.informers import Index, InformerSet
from kube.resources import Resource

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SYNC_TIMEOUT = 30.0


MIRRORED = (resources.CLUSTERS, resources.SUBMARINER_ENDPOINTS)


def _key(plural: str) -> Callable[[JSON], list[str]]:
    """The work key of an object of one mirrored kind: "<plural>/<name>"."""
    return lambda obj: [f"{plural}/{o.name(obj)}"]


class ClusterSyncer(controller.Controller):
    """Mirror the Broker's Cluster and Endpoint objects into one cluster's namespace."""

    name = "broker-sync"

    def __init__(self, *, local_api: Any, broker_api: Any,
                 broker_namespace: str = names.BROKER_NAMESPACE,
                 cluster_namespace: str = names.CLUSTER_NAMESPACE,
                 resync_period: float | None = 300.0) -> None:
        super().__init__()
        self.broker_namespace = broker_namespace
        self.cluster_namespace = cluster_namespace
        self._broker = InformerSet(broker_api, name="broker", resync_period=resync_period)
        self._local = InformerSet(local_api, name="local", resync_period=resync_period)
        clusters = self._broker.get(resources.CLUSTERS, namespace=broker_namespace)
        endpoints = self._broker.across_members(resources.SUBMARINER_ENDPOINTS,
                                                broker_namespace=broker_namespace)
        # Before the watch below, so that a queued name already finds its Endpoint.
        self._endpoints_by_name = Index(endpoints, lambda ep: [o.name(ep)])
        sources: dict[str, tuple[Cache, Callable[[str], JSON | None]]] = {
            resources.CLUSTERS.plural: (
                clusters, lambda name: clusters.get(f"{broker_namespace}/{name}")),
            resources.SUBMARINER_ENDPOINTS.plural: (endpoints, self._published_endpoint),
        }
        self._kinds: dict[str, tuple[Resource, Callable[[str], JSON | None], Cache,
                                     ResourceClient]] = {}
        for resource in MIRRORED:
            published, lookup = sources[resource.plural]
            mirrored = self._local.get(resource, namespace=cluster_namespace)
            self._kinds[resource.plural] = (resource, lookup, mirrored,
                                            ResourceClient(local_api, resource))
            for informer in (published, mirrored):
                self.watch(informer, _key(resource.plural))

    def _published_endpoint(self, name: str) -> JSON | None:
        """The Broker's Endpoint ``name``, from the member namespace of the cluster it
        names; one elsewhere is another member's claim to it and is ignored."""
        for ep in self._endpoints_by_name.objects(name):
            cluster = str(o.spec(ep).get("cluster_id") or "")
            if cluster and o.namespace(ep) == names.broker_member_namespace(
                    cluster, self.broker_namespace):
                return ep
            log.warning("Endpoint %s in %s claims cluster %r: ignored", name, o.namespace(ep),
                        cluster)
        return None

    def start(self) -> Self:
        self._broker.start()
        self._local.start()
        self._broker.wait_for_sync(SYNC_TIMEOUT)
        self._local.wait_for_sync(SYNC_TIMEOUT)
        return super().start()

    def stop(self) -> None:
        super().stop()
        self._broker.stop()
        self._local.stop()

    def reconcile(self, key: str) -> None:
        """Make the local copy of one object the Broker's (or remove it)."""
        plural, name = key.split("/", 1)
        resource, published, mirrored, client = self._kinds[plural]
        want = published(name)
        have = mirrored.get(f"{self.cluster_namespace}/{name}")
        ns = self.cluster_namespace
        if want is None:
            if have is not None:
                log.info("%s %s is gone from the Broker: removing the copy", resource.kind, name)
                client.delete_if_exists(name, namespace=ns)
                metrics.BROKER_SYNCS.labels(resource=plural, operation="deleted").inc()
            return
        if have is None:
            log.info("%s %s appeared on the Broker: copying it", resource.kind, name)
            created = client.create_if_absent(
                {"apiVersion": resource.api_version, "kind": resource.kind,
                 "metadata": {"name": name, "namespace": ns}, "spec": o.spec(want)},
                namespace=ns)
            if created is None:
                self.enqueue(key)  # the cache lags: compare again
            else:
                metrics.BROKER_SYNCS.labels(resource=plural, operation="created").inc()
            return
        if o.spec(have) != o.spec(want):
            log.info("%s %s changed on the Broker: updating the copy", resource.kind, name)
            client.update({**have, "spec": o.spec(want)}, namespace=ns)
            metrics.BROKER_SYNCS.labels(resource=plural, operation="updated").inc()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.syncer",
                                description="Mirror the Broker's Cluster and Endpoint objects "
                                            "into a cluster.")
    p.add_argument("--kubeconfig", type=Path, required=True, help="the cluster's kubeconfig")
    p.add_argument("--broker-kubeconfig", type=Path, required=True)
    p.add_argument("--broker-namespace", default=names.BROKER_NAMESPACE)
    p.add_argument("--cluster-namespace", default=names.CLUSTER_NAMESPACE)
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on this port (0: off)")
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
    metrics.serve(args.metrics_port, what="Broker syncer")
    return daemon.serve(syncer, f"syncing Cluster and Endpoint objects from the Broker's "
                                f"{args.broker_namespace} into {args.cluster_namespace}")


if __name__ == "__main__":
    sys.exit(main())
