"""Memory of the agents: what each costs in RSS, and what a node's agents add up to.

Two figures per agent (`python -m bench.agents_rss`):

* **import**: the RSS of a fresh interpreter after importing the agent's module and
  ``kube.client`` (what every process pays before it does anything; most of it), with
  its anonymous part and its module count. Needs nothing running.
* **running**: the RSS of every agent process on this machine (found by its command
  line, ``python -m gateway.routeagent``...: host processes of a lab or the containers
  of its pods alike), averaged per agent and summed per node, once a lab is up
  (``gnctl lab up --globalnet``; ``--lab NAME``: only that lab's pods; ``--no-running``
  skips it).

Goals (from the issue; printed, never asserted): a gateway node's agents - engine,
Broker syncer, Globalnet, Lighthouse - <= 150 MB together; any other node's (the route
agent alone, which runs on every node) <= 40 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

AGENTS = ["gateway.engine", "gateway.syncer", "globalnet.agent", "lighthouse.agent",
          "gateway.routeagent"]
GATEWAY_NODE = AGENTS[:4]
GOAL_GATEWAY_MB, GOAL_NODE_MB = 150, 40
REPO = Path(__file__).resolve().parents[1]

PROBE = """
import sys, {module}, kube.client
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmRSS"].split()[0]), int(status["RssAnon"].split()[0]), len(sys.modules))
"""


def import_footprint(module: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    rss_kb, anon_kb, modules = (int(x) for x in out)
    return {"rss_mb": round(rss_kb / 1024, 1), "anon_mb": round(anon_kb / 1024, 1),
            "modules": modules}


def running(lab: str | None = None) -> list[tuple[str, str, float]]:
    """``(agent module, node, RSS MB)`` of every agent process on the machine; with
    ``lab``, only that lab's (its pods' cgroups are ``/globalnet/LAB/NODE/...``)."""
    found: list[tuple[str, str, float]] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "-m" not in args[:-1] or "python" not in Path(args[0]).name:
            continue
        module = args[args.index("-m") + 1]
        if module not in AGENTS:
            continue
        node = "?"
        for line in cgroup.splitlines():
            parts = line.split(":", 2)[-1].split("/")
            if len(parts) > 3 and parts[1] == "globalnet":
                if lab is not None and parts[2] != lab:
                    node = ""
                    break
                node = f"{parts[2]}/{parts[3]}"
                break
        if node == "" or (lab is not None and node == "?"):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                found.append((module, node, int(line.split()[1]) / 1024))
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.agents_rss", description=__doc__)
    p.add_argument("--no-running", action="store_true", help="skip the running processes")
    p.add_argument("--lab", help="only the agents of this lab's pods (by their cgroup)")
    args = p.parse_args(argv)
    result: dict[str, object] = {}

    print("import footprint (fresh interpreter: the agent's module + kube.client)")
    imports = {module: import_footprint(module) for module in AGENTS}
    for module, f in imports.items():
        print(f"  {module:20s} {f['rss_mb']:6.1f} MB RSS  {f['anon_mb']:6.1f} MB anon  "
              f"{f['modules']:4.0f} modules")
    result["import"] = imports

    if not args.no_running:
        procs = running(args.lab)
        per_agent: dict[str, list[float]] = {}
        per_node: dict[str, dict[str, float]] = {}
        for module, node, rss in procs:
            per_agent.setdefault(module, []).append(rss)
            per_node.setdefault(node, {})[module] = per_node.get(node, {}).get(module, 0) + rss
        mean = {m: round(sum(v) / len(v), 1) for m, v in per_agent.items()}
        print("running agents (mean RSS per process, count)"
              + (f" of lab {args.lab}" if args.lab else ""))
        for module in AGENTS:
            if module in mean:
                print(f"  {module:20s} {mean[module]:6.1f} MB  x{len(per_agent[module])}")
            else:
                print(f"  {module:20s}      - (none running)")
        result["running_mb"] = mean
        if all(m in mean for m in GATEWAY_NODE):
            gateway = round(sum(mean[m] for m in GATEWAY_NODE), 1)
            print(f"engine + syncer + Globalnet + Lighthouse: {gateway} MB (goal <= "
                  f"{GOAL_GATEWAY_MB}; {gateway + mean.get('gateway.routeagent', 0):.1f} MB "
                  "with a route agent)")
            result["gateway_agents_mb"] = gateway
        if "gateway.routeagent" in mean:
            print(f"route agent (every node): {mean['gateway.routeagent']} MB "
                  f"(goal <= {GOAL_NODE_MB})")
        if any(node != "?" for node in per_node):
            print("per node (the agents' processes there)")
            for node, agents in sorted(per_node.items()):
                print(f"  {node:24s} {sum(agents.values()):6.1f} MB  "
                      + ", ".join(f"{m} {v:.1f}" for m, v in sorted(agents.items())))
            result["per_node_mb"] = {n: round(sum(a.values()), 1) for n, a in per_node.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
