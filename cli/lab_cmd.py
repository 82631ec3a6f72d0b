"""`gnctl lab ...`: overlapping-CIDR clusters on this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rich.table import Table

from cli.console import console
from lab.lab import Lab, LabError
from lab.state import StateStore
from lab.topology import CABLE_DRIVERS, DATAPATHS, NAME_RE, LabSpec

DEFAULTS = LabSpec()


def register(sub: Any) -> None:
    lab = sub.add_parser("lab", help="overlapping-CIDR lab clusters on this machine",
                         description="Lab clusters: real control planes, real nodes (containerd "
                         "and kubelet in network namespaces) and pods, every cluster with the "
                         "same CIDRs.")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", default=os.environ.get("GNCTL_LAB", "demo"), type=lab_name,
                       help="lab name (default: $GNCTL_LAB or 'demo')")
        return p

    up = named(lab_sub.add_parser("up", help="create the lab"))
    up.add_argument("--clusters", type=int, default=DEFAULTS.clusters,
                    help=f"number of clusters (default {DEFAULTS.clusters})")
    up.add_argument("--nodes", type=int, default=DEFAULTS.nodes,
                    help="nodes per cluster; node 0 is the gateway (the first --gateways "
                         f"nodes are) (default {DEFAULTS.nodes})")
    up.add_argument("--pod-cidr", default=DEFAULTS.pod_cidr,
                    help=f"pod CIDR of every cluster (default {DEFAULTS.pod_cidr})")
    up.add_argument("--service-cidr", default=DEFAULTS.service_cidr,
                    help=f"service CIDR of every cluster (default {DEFAULTS.service_cidr})")
    up.add_argument("--api-port", type=int, default=DEFAULTS.api_port_base,
                    help="host loopback port of the Broker API; cluster i gets PORT+i "
                         f"(default {DEFAULTS.api_port_base})")
    up.add_argument("--no-workload", action="store_true",
                    help="skip the demo pods and Service")
    up.add_argument("--globalnet", action="store_true",
                    help="join every cluster to the Broker's global CIDR and run Globalnet "
                         "and Lighthouse on each gateway node: clusters reach each other's "
                         "exported services by global IP and by <svc>.<ns>.svc.clusterset.local")
    up.add_argument("--datapath", default=DEFAULTS.datapath, metavar="BACKEND",
                    help="with --globalnet: the agents' datapath, "
                         f"{' or '.join(DATAPATHS)} (default {DEFAULTS.datapath}); ebpf pins "
                         "under a private bpffs in the lab's folder")
    up.add_argument("--cable-driver", default=DEFAULTS.cable_driver, metavar="DRIVER",
                    help="with --globalnet: the tunnel between the gateways, "
                         f"{', '.join(CABLE_DRIVERS)} (default {DEFAULTS.cable_driver}); "
                         "WireGuard and IPsec run in userspace here (wireguard-go, charon "
                         "with kernel-libipsec)")
    up.add_argument("--gateways", type=int, default=DEFAULTS.gateways, metavar="N",
                    help="gateway nodes per cluster (nodes 0..N-1 on the underlay); one is "
                         f"active, the others stand by (default {DEFAULTS.gateways})")
    up.add_argument("--no-prometheus", dest="prometheus", action="store_false",
                    help="with --globalnet: do not run the Prometheus that scrapes every "
                         "agent (lab/prometheus.py)")
    up.set_defaults(func=cmd_up)

    down = named(lab_sub.add_parser("down", help="remove every namespace, link and process"))
    down.set_defaults(func=cmd_down)

    status = named(lab_sub.add_parser("status", help="show clusters, nodes and pods"))
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(func=cmd_status)

    ex = named(lab_sub.add_parser(
        "exec", help="run a command in a pod's container (its namespaces and files)"))
    ex.add_argument("cluster")
    ex.add_argument("pod", help="pod name, app label (client: its first pod) or APP-N "
                                "(web-1: the second web pod, in node order)")
    ex.add_argument("-n", "--namespace", default="default")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    ex.set_defaults(func=cmd_exec)

    kc = named(lab_sub.add_parser("kubectl", help="run kubectl against a lab cluster"))
    kc.add_argument("cluster", help="cluster name (c1, c2, ...) or 'broker'")
    kc.add_argument("cmd", nargs=argparse.REMAINDER, help="-- KUBECTL ARGS...")
    kc.set_defaults(func=cmd_kubectl)


def lab_name(value: str) -> str:
    """An argparse type: a lab's name, checked before it becomes a path and a namespace
    prefix (`lab down --name ''` must not match every lab)."""
    if not NAME_RE.match(value):
        raise argparse.ArgumentTypeError(
            f"invalid lab name {value!r}: 1-8 lowercase letters or digits, starting with a "
            "letter")
    return value


def _open(name: str) -> Lab:
    """The lab `name`, its state file read; a damaged one is a one-line LabError."""
    try:
        return Lab(name)
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        path = StateStore(name).path
        raise LabError(f"lab {name!r}: its state file {path} is damaged ({type(exc).__name__}: "
                       f"{exc}); remove it, then `gnctl lab down --name {name}` removes what "
                       "is left") from None


def up_lab(name: str, *, globalnet: bool = False) -> Lab:
    """The lab `name`, which must be up (its state recorded) for exec and kubectl, and
    run Globalnet when `globalnet` (verify, diagnose, benchmark)."""
    lab = _open(name)
    if lab.state is None:
        flag = " --globalnet" if globalnet else ""
        raise LabError(f"lab {name!r} is not up (gnctl lab up --name {name}{flag})")
    if globalnet and not lab.state.spec.globalnet:
        raise LabError(f"lab {name!r} runs no Globalnet (gnctl lab up --globalnet)")
    return lab


def _fail(message: str) -> int:
    print(f"gnctl: {message}", file=sys.stderr)
    return 1


def _strip_dashes(cmd: list[str]) -> list[str]:
    return cmd[1:] if cmd[:1] == ["--"] else cmd


def spec_of(args: argparse.Namespace) -> LabSpec:
    """The lab `lab up` would build from its arguments (the bad-input test checks with
    it that a value is refused before running `lab up`)."""
    return LabSpec(
        name=args.name, clusters=args.clusters, nodes=args.nodes, pod_cidr=args.pod_cidr,
        service_cidr=args.service_cidr, api_port_base=args.api_port, globalnet=args.globalnet,
        datapath=args.datapath, cable_driver=args.cable_driver, gateways=args.gateways,
        prometheus=getattr(args, "prometheus", DEFAULTS.prometheus),
    )


def cmd_up(args: argparse.Namespace) -> int:
    spec = spec_of(args)
    try:
        _open(args.name).up(spec, workload=not args.no_workload,
                            progress=lambda m: print(m, flush=True))
    except LabError as exc:
        return _fail(str(exc))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if not _open(args.name).down(progress=lambda m: print(m, flush=True)):
        print(f"lab {args.name} was not up: nothing to remove")
    else:
        print(f"lab {args.name} removed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        status = _open(args.name).status()
    except LabError as exc:
        return _fail(str(exc))
    if args.output == "json":
        print(json.dumps(status, indent=2))
        return 0
    out = console()
    out.print(f"[bold]lab {status['name']}[/] ({status['phase']})")
    if status["broker"]:
        out.print(f"broker API {status['broker']['api']}  "
                      f"kubeconfig {status['broker']['kubeconfig']}")
    if status.get("prometheus"):
        out.print(f"Prometheus {status['prometheus']} (every agent of every cluster)")
    for c in status["clusters"]:
        global_cidr = f"  global {c['global_cidr']}" if c["global_cidr"] else ""
        global_cidr += f"  clusterset DNS {c['dns']}" if c["dns"] else ""
        if c.get("datapath"):
            global_cidr += f"\n  gateway {c['gateway']}: Globalnet datapath {c['datapath']}"
            if c["datapath"] == "ebpf":
                global_cidr += " (pins under the node's own /sys/fs/bpf)"
        out.print(f"\n[bold]{c['name']}[/]  API {c['api']}  pods {c['pod_cidr']}  "
                      f"services {c['service_cidr']}{global_cidr}\n"
                      f"  kubeconfig {c['kubeconfig']}")
        for link in c.get("cable") or []:
            out.print(f"  cable to {link['cluster']}: {link['status']}"
                          + (f", RTT {link['rtt']}" if link["rtt"] else ""))
        nodes = Table("node", "ip", "pod CIDR", "underlay ip", "netns")
        for n in c["nodes"]:
            nodes.add_row(n["name"], n["ip"], n["pod_cidr"], n["underlay_ip"] or "-", n["netns"])
        out.print(nodes)
        pods = Table("pod", "namespace", "node", "ip", "netns")
        for p in c["pods"]:
            pods.add_row(p["name"], p["namespace"], p["node"], p["ip"], p["netns"])
        if c["pods"]:
            out.print(pods)
    dead = [p["name"] for p in status["processes"] if not p["alive"]]
    alive = len(status["processes"]) - len(dead)
    stopped = f", stopped: {', '.join(dead)}" if dead else ""
    out.print(f"\nprocesses: {alive} running{stopped}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = _strip_dashes(args.cmd)
    if not cmd:
        return _fail("lab exec needs a command after --")
    try:
        argv = up_lab(args.name).exec_argv(args.cluster, args.pod, cmd, args.namespace)
    except (LabError, ValueError) as exc:
        return _fail(str(exc))
    os.execvp(argv[0], argv)


def cmd_kubectl(args: argparse.Namespace) -> int:
    try:
        lab = up_lab(args.name)
        argv = lab.kubectl_argv(args.cluster, _strip_dashes(args.cmd))
    except (LabError, ValueError) as exc:
        return _fail(str(exc))
    if args.cluster == "broker" and not lab.broker_kubeconfig().is_file():
        return _fail(f"lab {args.name!r} has no Broker (clusters: "
                     f"{', '.join(c.name for c in lab.plan.clusters)})")
    os.execvp(argv[0], argv)
