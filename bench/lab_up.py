"""How long a warm `lab up` takes for 2 and 3 real-node clusters (2 nodes each),
and the memory it uses.

Warm means the Kubernetes binaries and the images are already built and cached.
Memory is the summed RSS of every process of the lab (etcd, API servers,
controller managers, schedulers, per node containerd, kubelet, kube-proxy and
the mount-namespace holder, the shims and the demo pods' containers, the
relay), read once the lab is up. Also printed per run: how long the nodes'
containerd with image imports took next to the control planes, the slowest
node's time to Ready after its kubelet started, and the demo workload's time
from `kubectl apply` to every pod Ready. Goals: 3 clusters up in <= 60 s,
<= 4 GB RSS.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from lab.lab import Lab
from lab.ports import free_port_block
from lab.topology import LabSpec


def measure(clusters: int, root: Path) -> tuple[float, float, dict[str, float]]:
    name = f"bench{clusters}"
    lab = Lab(name, root=root)
    lab.down(progress=lambda *_: None)
    spec = LabSpec(name=name, clusters=clusters, nodes=2,
                   api_port_base=free_port_block(clusters + 1))
    start = time.monotonic()
    try:
        lab.up(spec, progress=lambda m: print(f"  {m}", flush=True))
        elapsed = time.monotonic() - start
        # Let the controllers and kube-proxies settle before reading memory.
        time.sleep(5)
        rss = lab.rss_mb()
    finally:
        down_started = time.monotonic()
        lab.down(progress=lambda *_: None)
        lab.timings["down_s"] = round(time.monotonic() - down_started, 1)
    return elapsed, rss, lab.timings


def main() -> None:
    up_s: dict[str, float] = {}
    rss: dict[str, float] = {}
    phases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gn-bench-") as tmp:
        for clusters in (2, 3):
            print(f"lab up with {clusters} clusters x 2 nodes (+ broker)", flush=True)
            elapsed, mem, timings = measure(clusters, Path(tmp))
            up_s[str(clusters)] = round(elapsed, 1)
            rss[str(clusters)] = round(mem)
            phases[str(clusters)] = timings
            print(f"  -> {elapsed:.1f} s, {mem:.0f} MiB RSS; "
                  + ", ".join(f"{k} {v}" for k, v in timings.items()), flush=True)
    print(json.dumps({"lab_up_s": up_s, "rss_mb": rss, "phases_s": phases}))


if __name__ == "__main__":
    main()
