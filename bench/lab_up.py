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

Then the demo's own path (`make demo`, warm): a `--globalnet` lab of 2 clusters, in
which `gnctl join` installs the agents as pods, Service web of c2 exported and
fetched by its clusterset name from c1's client pod: `demo_first_fetch_s` is the
time from the start of `lab up` to the first successful fetch (goal <= 120 s). Once
it works, `agent_rss_mb` sums the agents' RSS on the busiest gateway node and the
busiest other node (goals <= 150 MB and <= 40 MB).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from kube import resources
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


def measure_demo(root: Path) -> tuple[float, dict[str, float], dict[str, float]]:
    """(first cross-cluster fetch after the start, agents' RSS, phases) of the demo."""
    name = "bdemo"
    lab = Lab(name, root=root)
    lab.down(progress=lambda *_: None)
    spec = LabSpec(name=name, clusters=2, nodes=2, globalnet=True,
                   api_port_base=free_port_block(3))
    start = time.monotonic()
    try:
        lab.up(spec, progress=lambda m: print(f"  {m}", flush=True))
        lab.cluster("c2").client(resources.SERVICE_EXPORTS).create(
            {"metadata": {"name": "web", "namespace": "default"}})
        argv = lab.exec_argv("c1", "client", ["curl", "-s", "--max-time", "2",
                                              "http://web.default.svc.clusterset.local/"])
        deadline = start + 300
        while not subprocess.run(argv, capture_output=True, text=True,
                                 timeout=30).stdout.startswith("hello from c2/"):
            if time.monotonic() > deadline:
                raise RuntimeError("no cross-cluster fetch within 300 s")
            time.sleep(0.2)
        first_fetch = time.monotonic() - start
        time.sleep(5)  # the agents' steady state, not their start-up peak
        agents = lab.agent_rss_mb()
    finally:
        lab.down(progress=lambda *_: None)
    return first_fetch, agents, lab.timings


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
        print("make demo's path: a --globalnet lab, web of c2 exported, fetched from c1",
              flush=True)
        first_fetch, agents, demo_phases = measure_demo(Path(tmp))
        phases["demo"] = demo_phases
        print(f"  -> first fetch {first_fetch:.1f} s after the start; agents' RSS: "
              f"{agents['gateway_node']:.0f} MiB on a gateway node, {agents['node']:.0f} MiB "
              "on another node", flush=True)
    print(json.dumps({"lab_up_s": up_s, "rss_mb": rss, "phases_s": phases,
                      "demo_first_fetch_s": round(first_fetch, 1), "agent_rss_mb": agents}))


if __name__ == "__main__":
    main()
