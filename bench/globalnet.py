"""Globalnet control-plane figures.

1. Allocate every address of a /16 one by one (65,534), then release them all:
   time and peak Python memory (tracemalloc) of the pool.
2. Reconcile 10,000 exported services from scratch: with the services and their
   ServiceExports already in a real API server, start the controllers and time
   until the applied NAT intent holds 10,000 ingress mappings.

Run inside a throwaway network namespace (`make bench-globalnet`).
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from datapath.api import RecordingDatapath
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


def bench_reconcile(count: int) -> float:
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
        mgr.stop()
        return elapsed
    finally:
        cp.stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    import signal
    import sys

    # Turn SIGTERM into an exception so the control plane is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    alloc_s, peak_mb = bench_alloc_full_16()
    print(f"allocate + release a full /16 (65,534 addresses, one at a time): {alloc_s:.2f} s, "
          f"peak {peak_mb:.2f} MiB (including the 65,534 returned address strings)")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(f"reconcile {count} exported services from scratch on a real API server:")
    rec_s = bench_reconcile(count)
    print(f"  -> {rec_s:.1f} s to an intent with {count} ingress mappings "
          f"({count / rec_s:.0f} services/s)")
    key = "reconcile_10k_services_s" if count == 10_000 else f"reconcile_{count}_services_s"
    print(json.dumps({"alloc_full_16_s": round(alloc_s, 3), "alloc_peak_mb": round(peak_mb, 2),
                      key: round(rec_s, 1)}))


if __name__ == "__main__":
    main()
