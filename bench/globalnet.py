"""Globalnet control-plane figures.

1. Allocate every address of a /16 one by one (65,534), then release them all:
   time and peak Python memory (tracemalloc) of the pool.
2. Reconcile 10,000 exported services from scratch: with the services and their
   ServiceExports already in a real API server, start the controllers and time
   until the applied NAT intent holds 10,000 ingress mappings.
3. The API server's ceiling for that work, on the same server right after: the
   writes the reconcile needs (create one GlobalIngressIP per service, then write
   its status with an allocated address and an Allocated condition), issued
   without any controller logic by as many threads as the controllers run (their
   `workers`), as a pipeline: creating threads hand each new object to the
   status-writing threads. `reconcile_vs_api_ceiling` is ceiling time / reconcile
   time: 1.0 means the controllers run as fast as the API server lets them.

The count (default 10,000) is the first argument or $BENCH_GLOBALNET_COUNT, e.g.
`BENCH_GLOBALNET_COUNT=500 make bench-globalnet` for a quick run.

Run inside a throwaway network namespace (`make bench-globalnet`).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import shutil
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datapath.recording import RecordingDatapath
from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager
from globalnet.ipam import GlobalIPPool


def _fill_and_drain() -> None:
    pool = GlobalIPPool("242.0.0.0/16")
    ips = [pool.allocate()[0] for _ in range(pool.size)]
    assert pool.available == 0 and len(set(ips)) == 65534
    pool.release(ips)
    assert pool.allocated == 0


def bench_alloc_full_16() -> tuple[float, float]:
    """Time without tracing (tracemalloc slows allocation several-fold), then the
    peak memory in a second, traced run."""
    start = time.perf_counter()
    _fill_and_drain()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    _fill_and_drain()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20


@dataclass(frozen=True)
class ReconcileFigures:
    reconcile_s: float
    ceiling_s: float


def bench_reconcile(count: int) -> ReconcileFigures:
    """The reconcile, then the API ceiling on the same control plane."""
    from kube import crds, crud, resources
    from kube.client import new_api_client
    from lab.controlplane import ControlPlane, ControlPlaneConfig
    from lab.ports import free_port

    data = Path(tempfile.mkdtemp(prefix="gn-bench-"))
    cp = ControlPlane(ControlPlaneConfig(
        name="bench", data_dir=data, apiserver_port=free_port(), etcd_client_port=free_port(),
        etcd_peer_port=free_port(), controller_manager=False))
    try:
        cp.start()
        api = new_api_client(cp.kubeconfig, pool_size=16)
        crds.install_crds(api)
        crud.ResourceClient(api, resources.NAMESPACES).create({"metadata": {"name": "bench"}})
        services = crud.ResourceClient(api, resources.SERVICES)
        exports = crud.ResourceClient(api, resources.SERVICE_EXPORTS)

        def make(i: int) -> None:
            services.create({"metadata": {"name": f"s{i}", "namespace": "bench"},
                             "spec": {"ports": [{"port": 80}]}})
            exports.create({"metadata": {"name": f"s{i}", "namespace": "bench"}})

        print(f"  creating {count} services and exports ...", flush=True)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            list(pool.map(make, range(count)))
        print(f"  created in {time.perf_counter() - t0:.1f} s; starting the controllers",
              flush=True)
        dp = RecordingDatapath()
        cfg = GlobalnetConfig(cluster_id="bench", global_cidr="242.0.0.0/16",
                              local_cidrs=("10.244.0.0/16", "10.96.0.0/16"),
                              namespace="globalnet-bench", lease_duration=4, renew_deadline=3,
                              retry_period=0.5)
        mgr = GlobalnetManager(api, cfg, dp)
        start = time.perf_counter()
        mgr.start()
        term = mgr.wait_for_term(60)
        term.publisher.wait_for(lambda i: len(i.ingress) >= count, timeout=1800)
        elapsed = time.perf_counter() - start
        # Stopped first: the ceiling's objects must not be reconciled, and no
        # controller traffic may share the server with it.
        mgr.stop()
        print(f"  -> {elapsed:.1f} s to an intent with {count} ingress mappings "
              f"({count / elapsed:.0f} services/s)", flush=True)
        ceiling = bench_api_ceiling(api, count)
        return ReconcileFigures(reconcile_s=elapsed, ceiling_s=ceiling)
    finally:
        cp.stop()
        shutil.rmtree(data, ignore_errors=True)


CEILING_NAMESPACE = "bench-ceiling"


def bench_api_ceiling(api: Any, count: int) -> float:
    """Time `count` GlobalIngressIP creates and status writes, shaped and issued like
    the controllers' (same bodies, a PUT to the status subresource carrying the
    created object's resourceVersion, the controllers' worker counts)."""
    from globalnet.controllers import reasons as r
    from globalnet.controllers.global_ingress import GlobalIngressController
    from globalnet.controllers.service_export import ServiceExportController
    from kube import conditions, crud, names, resources

    create_workers = ServiceExportController.workers
    status_workers = GlobalIngressController.workers
    crud.ensure_namespace(api, CEILING_NAMESPACE)
    client = crud.ResourceClient(api, resources.GLOBAL_INGRESS_IPS)
    hosts = ipaddress.ip_network("242.0.0.0/16").hosts()
    addresses = [str(next(hosts)) for _ in range(count)]

    def body(i: int) -> dict[str, Any]:
        name = f"s{i}"
        return {"metadata": {"name": name, "namespace": CEILING_NAMESPACE,
                             "labels": {names.SERVICE_REF_LABEL: name,
                                        names.MANAGED_BY_LABEL: names.MANAGED_BY_GLOBALNET}},
                "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE,
                         "serviceRef": {"name": name}}}

    def write_allocated_status(obj: dict[str, Any], ip: str) -> None:
        conds: list[conditions.Condition] = []
        conditions.set_condition(conds, type=r.ALLOCATED, status=True, reason=r.SUCCESS,
                                 message=f"Allocated global IP {ip}")
        client.update_status({**obj, "status": {"allocatedIP": ip, "conditions": conds}})

    print(f"  API ceiling: {count} GlobalIngressIP creates ({create_workers} threads) "
          f"feeding status writes ({status_workers} threads) ...", flush=True)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(status_workers) as writers:
        def create(i: int) -> concurrent.futures.Future[None]:
            return writers.submit(write_allocated_status, client.create(body(i)), addresses[i])

        with concurrent.futures.ThreadPoolExecutor(create_workers) as creators:
            pending = list(creators.map(create, range(count)))
        for future in pending:
            future.result()
    elapsed = time.perf_counter() - start
    written = client.list(namespace=CEILING_NAMESPACE).items
    allocated = sum(1 for g in written if (g.get("status") or {}).get("allocatedIP"))
    assert len(written) == count and allocated == count, (len(written), allocated)
    return elapsed


def parse_count(argv: list[str]) -> int:
    raw = argv[1] if len(argv) > 1 else os.environ.get("BENCH_GLOBALNET_COUNT", "10000")
    count = int(raw)
    if not 0 < count <= 65_534:
        raise SystemExit(f"count must be 1..65534 (one /16 of global IPs), not {count}")
    return count


def _count_label(count: int) -> str:
    return "10k" if count == 10_000 else str(count)


def main() -> None:
    import signal
    import sys

    # Turn SIGTERM into an exception so the control plane is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    alloc_s, peak_mb = bench_alloc_full_16()
    print(f"allocate + release a full /16 (65,534 addresses, one at a time): {alloc_s:.2f} s, "
          f"peak {peak_mb:.2f} MiB (including the 65,534 returned address strings)")
    count = parse_count(sys.argv)
    print(f"reconcile {count} exported services from scratch on a real API server:")
    figures = bench_reconcile(count)
    rec_s, ceiling_s = figures.reconcile_s, figures.ceiling_s
    ratio = ceiling_s / rec_s
    print(f"  -> {ceiling_s:.1f} s for the same {count} creates + status writes alone "
          f"({count / ceiling_s:.0f} objects/s)")
    print(f"reconcile: {rec_s:.2f} s; API ceiling: {ceiling_s:.2f} s; the controllers run at "
          f"{ratio:.0%} of the API server's pace (reconcile_vs_api_ceiling {ratio:.2f})")
    label = _count_label(count)
    print(json.dumps({"alloc_full_16_s": round(alloc_s, 3), "alloc_peak_mb": round(peak_mb, 2),
                      f"reconcile_{label}_services_s": round(rec_s, 1),
                      f"api_ceiling_{label}_objects_s": round(ceiling_s, 2),
                      "reconcile_vs_api_ceiling": round(ratio, 3)}))


if __name__ == "__main__":
    main()
