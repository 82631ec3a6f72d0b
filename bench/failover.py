"""Gateway failover figures, per cable driver, in labs of two clusters with two
gateway nodes each (`make bench-e2e` runs this after its export figures; alone:
`python -m bench.failover [--drivers vxlan,wireguard,ipsec] [--rounds N]`).

For each driver, one lab (`gnctl lab up --globalnet --gateways 2 --cable-driver D`):

* failover_gap_link_down_s: c2's active gateway node loses its underlay link
  (the bridge port goes down; its API server still answers it) while c1's
  client opens a new connection to c2's exported `web` every 50 ms
  (`lab.probe.ConnectProbe`); the gap is the longest time between two answered
  probes. The link comes back and the next round cuts the other gateway: the
  median of ROUNDS, failing over and back.
* flows_surviving_failover: the share of FLOWS established connections to an echo
  server in c2 (one endpoint, on the standby gateway node) that still echo after
  one such failover (their conntrack state replicated by conntrackd).
* failover_gap_s: every process of c2's active gateway node SIGKILLed (kubelet,
  containerd, every container); the node stays dead, so one round per lab: the
  first lab's, then KILL_LABS - 1 more labs, for every driver (the median of
  KILL_LABS).

Upstream's to beat: a 15 s gateway lease plus 5 lost 1 s health pings, and every
established connection lost. The last line printed is one JSON object (each figure
an object keyed by driver).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kube import resources
from lab import netns
from lab.lab import Lab
from lab.ports import free_port_block
from lab.probe import (
    ConnectProbe,
    Streams,
    echo_server_manifest,
    failures_around,
    gap_after,
    recovered,
)
from lab.topology import LabSpec, underlay_port

DRIVERS = ("vxlan", "wireguard", "ipsec")
ROUNDS = 5
KILL_LABS = 5
FLOWS = 20
PROBE_S, CUT_AT_S = 7.0, 2.5


@contextmanager
def ha_lab(root: Path, driver: str, tag: str) -> Iterator[Lab]:
    name = f"bf{tag}"[:8]
    lab = Lab(name, root=root)
    lab.down(progress=lambda *_: None)
    spec = LabSpec(name=name, clusters=2, nodes=3, gateways=2, globalnet=True,
                   cable_driver=driver, api_port_base=free_port_block(4))
    try:
        lab.up(spec, progress=lambda m: print(f"  {m}", flush=True))
        yield lab
    finally:
        lab.down(progress=lambda *_: None)


def exported_ip(lab: Lab, service: str) -> str:
    exports = lab.cluster("c2").client(resources.SERVICE_EXPORTS)
    if exports.get_or_none(service, namespace="default") is None:
        exports.create({"metadata": {"name": service, "namespace": "default"}})
    giips = lab.cluster("c2").client(resources.GLOBAL_INGRESS_IPS)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        obj = giips.get_or_none(service, namespace="default") or {}
        if ip := (obj.get("status") or {}).get("allocatedIP"):
            return str(ip)
        time.sleep(0.2)
    raise TimeoutError(f"no global IP for {service}")


def wait_active(lab: Lab, cluster: str, not_this: str = "", timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = lab.active_gateways().get(cluster, "")
        if now and now != not_this:
            return now
        time.sleep(0.1)
    raise TimeoutError(f"no active gateway in {cluster}")


def cut_link(lab: Lab, node: str, up: bool) -> None:
    c2 = lab.plan.cluster("c2")
    port = underlay_port(c2, next(n for n in c2.gateways if n.name == node))
    netns.run(lab.plan.underlay_netns, ["ip", "link", "set", port, "up" if up else "down"])


def wait_answering(lab: Lab, ip: str, timeout: float = 60, in_a_row: int = 5) -> None:
    """Until c1's client gets `in_a_row` answers in a row from `ip`: a round starts
    from a working path (one answer right after the export may come while only
    some backends are reachable yet)."""
    argv = lab.exec_argv("c1", "client", ["curl", "-s", "--max-time", "1", f"http://{ip}/"])
    deadline, answered = time.monotonic() + timeout, 0
    while answered < in_a_row:
        ok = subprocess.run(argv, capture_output=True, text=True).stdout.startswith("hello")
        answered = answered + 1 if ok else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ip} does not answer c1 steadily")
        time.sleep(0.2 if ok else 0.5)


def verdict(results: list[tuple[float, bool]], event: float, what: str) -> float:
    """The gap, or infinity (printed with the failed probes) when traffic did not
    come back within the probe."""
    if recovered(results, event):
        return gap_after(results, event)
    print(f"  {what}: not recovered; {failures_around(results, event)}", flush=True)
    return float("inf")


def link_down_round(lab: Lab, ip: str) -> float:
    wait_answering(lab, ip)
    victim = wait_active(lab, "c2")
    probe = ConnectProbe(lab.exec_argv("c1", "client", []), ip, PROBE_S)
    time.sleep(CUT_AT_S)
    cut = time.time()
    cut_link(lab, victim, up=False)
    try:
        results = probe.results()
        wait_active(lab, "c2", not_this=victim)
    finally:
        cut_link(lab, victim, up=True)
    time.sleep(2.0)  # the healed node campaigns again before the next round
    return verdict(results, cut, f"underlay link of {victim} down")


def flows_round(lab: Lab) -> float:
    # On the standby gateway node: the connections pass through it before the
    # failover (the case that reset them before conntrack replication).
    active = wait_active(lab, "c2")
    standby = next(n.name for n in lab.plan.cluster("c2").gateways if n.name != active)
    subprocess.run(lab.kubectl_argv("c2", ["apply", "-f", "-"]),
                   input=echo_server_manifest(node=standby), text=True, check=True,
                   capture_output=True)
    deadline = time.monotonic() + 60
    while not any(p.name == "echo" and p.pid for p in lab.pods("c2")):
        if time.monotonic() > deadline:
            raise TimeoutError("the echo pod did not start")
        time.sleep(0.5)
    ip = exported_ip(lab, "echo")
    time.sleep(2.0)  # programmed on both gateways
    streams = Streams(lab.exec_argv("c1", "client", []), ip, FLOWS)
    time.sleep(3.0)
    victim = wait_active(lab, "c2")
    cut_link(lab, victim, up=False)
    try:
        wait_active(lab, "c2", not_this=victim)
        time.sleep(5.0)
    finally:
        reports = streams.stop()
        cut_link(lab, victim, up=True)
    alive = sum(1 for r in reports if r["error"] is None and r["echoed"] > 0)
    print(f"  longest wait for an echo across the failover: "
          f"{max(r['worst_s'] for r in reports):.2f} s", flush=True)
    errors = sorted({str(r["error"]) for r in reports if r["error"]})
    if errors:
        print(f"  connections broken by the failover: {', '.join(errors)}", flush=True)
    return alive / len(reports)


def move_web_off(lab: Lab, node: str) -> None:
    subprocess.run(lab.kubectl_argv("c2", ["cordon", node]), check=True, capture_output=True)
    for pod in [p for p in lab.pods("c2") if p.app == "web" and p.node == node]:
        subprocess.run(lab.kubectl_argv("c2", ["delete", "pod", pod.name]), check=True,
                       capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while not (len(pods := [p for p in lab.pods("c2") if p.app == "web"]) == 2
               and all(p.pid and p.node != node for p in pods)):
        if time.monotonic() > deadline:
            raise TimeoutError("web pods did not move off the victim")
        time.sleep(0.5)


def kill_round(lab: Lab, ip: str) -> float:
    """The active gateway node of c2 killed, its web pods moved off it first (the
    gap is the gateway's, not a dead backend's). The victim is the node active at
    the kill: a round whose Lease changed hands while the pods moved starts again
    (killing the standby would measure nothing)."""
    for _ in range(3):
        victim = wait_active(lab, "c2")
        move_web_off(lab, victim)
        wait_answering(lab, ip)
        if wait_active(lab, "c2") == victim:
            break
        print(f"  {victim} lost the Lease while the web pods moved; again", flush=True)
    else:
        raise RuntimeError("c2's active gateway kept changing")
    probe = ConnectProbe(lab.exec_argv("c1", "client", []), ip, PROBE_S)
    time.sleep(CUT_AT_S)
    if wait_active(lab, "c2") != victim:
        print(f"  {victim} lost the Lease before the kill: this round measures nothing",
              flush=True)
    killed = time.time()
    lab.kill_node("c2", victim)
    return verdict(probe.results(), killed, f"every process of {victim} killed")


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(prog="python -m bench.failover")
    p.add_argument("--drivers", default=",".join(DRIVERS))
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--kill-labs", type=int, default=KILL_LABS)
    args, _ = p.parse_known_args(argv)
    drivers = [d for d in args.drivers.split(",") if d]
    link: dict[str, list[float]] = {}
    flows: dict[str, float] = {}
    kills: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="gn-bench-failover-") as tmp:
        for driver in drivers:
            with ha_lab(Path(tmp), driver, driver[:2]) as lab:
                ip = exported_ip(lab, "web")
                link[driver] = [link_down_round(lab, ip) for _ in range(args.rounds)]
                print(f"{driver}: link-down failover gaps "
                      f"{', '.join(f'{g:.2f}' for g in link[driver])} s", flush=True)
                flows[driver] = flows_round(lab)
                print(f"{driver}: {flows[driver]:.0%} of {FLOWS} established connections "
                      "survive a failover", flush=True)
                kills[driver] = [kill_round(lab, ip)]
            for i in range(1, args.kill_labs):
                with ha_lab(Path(tmp), driver, f"k{driver[:2]}{i}") as lab:
                    kills[driver].append(kill_round(lab, exported_ip(lab, "web")))
    for driver, gaps in kills.items():
        print(f"{driver}: SIGKILL failover gaps {', '.join(f'{g:.2f}' for g in gaps)} s",
              flush=True)
    result: dict[str, object] = {
        "failover_gap_s": {d: round(statistics.median(g), 3) for d, g in kills.items()},
        "failover_gap_link_down_s": {d: round(statistics.median(g), 3)
                                     for d, g in link.items()},
        "flows_surviving_failover": {d: round(v, 3) for d, v in flows.items()},
    }
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
