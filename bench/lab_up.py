"""How long a warm `lab up` takes for 2 and 3 clusters, and the memory it uses.

Warm means the Kubernetes binaries are already built and cached. Memory is the
summed RSS of every process the lab started (etcd, API servers, controller
managers, kube-proxies, relay, demo pods), read once the lab is up.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from lab.lab import Lab
from lab.ports import free_port_block
from lab.topology import LabSpec


def measure(clusters: int, root: Path) -> tuple[float, float]:
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
        lab.down(progress=lambda *_: None)
    return elapsed, rss


def main() -> None:
    up_s: dict[str, float] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gn-bench-") as tmp:
        for clusters in (2, 3):
            print(f"lab up with {clusters} clusters x 2 nodes (+ broker)", flush=True)
            elapsed, mem = measure(clusters, Path(tmp))
            up_s[str(clusters)] = round(elapsed, 1)
            rss[str(clusters)] = round(mem)
            print(f"  -> {elapsed:.1f} s, {mem:.0f} MiB RSS", flush=True)
    print(json.dumps({"lab_up_s": up_s, "rss_mb": rss}))


if __name__ == "__main__":
    main()
