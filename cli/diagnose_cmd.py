"""`gnctl diagnose all|deployment|connections|globalnet|service-discovery|kube-proxy-mode|firewall`:
subctl's checks, each PASS / WARN / FAIL with a hint, as a table or `-o json`.

The checks are `ops.diagnose`; this module names the clusters and renders. Clusters
are named the one way (cli/kubeargs.py: `--kubeconfig`/`--context`, plus repeatable
`--contexts`), or with `--lab NAME`, where `--context`/`--contexts` name lab
clusters (default: all of them) and the nodes are looked into through their network
namespaces. Every client is made before anything is read, so a mistake is one line.
Exit status 1 when any check FAILs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from cli import kubeargs
from cli.console import console
from cli.lab_cmd import lab_name

GROUPS: dict[str, str] = {  # ops.diagnose.runner.GROUPS, with their help
    "deployment": "every component running, at one version; one active gateway",
    "connections": "the active gateway's connections, their RTT and cable drivers",
    "globalnet": "overlapping CIDRs, exhausted pools, objects not allocated",
    "service-discovery": "each export followed to the ServiceImports; DNS forwarding",
    "kube-proxy-mode": "kube-proxy's mode (iptables or nftables)",
    "firewall": "the gateway's datapath against the API; the tunnels",
}
COLOUR = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}


def register(sub: Any) -> None:
    diagnose = sub.add_parser("diagnose", help="check the clusterset: PASS, WARN or FAIL "
                              "per check, exit 1 on a FAIL")
    groups = diagnose.add_subparsers(dest="diagnose_command", metavar="GROUP", required=True)
    for name, what in [("all", "every group below in turn"), *GROUPS.items()]:
        group = groups.add_parser(name, help=what)
        _flags(group)
        group.set_defaults(func=cmd_diagnose, groups=list(GROUPS) if name == "all" else [name])


def _flags(parser: argparse.ArgumentParser) -> None:
    from kube import names

    kubeargs.add_flags(parser, "the cluster")
    parser.add_argument(
        "--contexts", metavar="NAME[,NAME...]", type=kubeargs.context_names, action="append",
        default=[], help="diagnose each of these contexts (repeat, or separate by commas); "
                         "with --lab, lab clusters")
    parser.add_argument("--lab", type=lab_name, metavar="NAME",
                        help="diagnose lab NAME (`gnctl lab up --globalnet`): --context and "
                             "--contexts name its clusters (default: all)")
    parser.add_argument("--broker-kubeconfig", type=Path, metavar="PATH",
                        help="kubeconfig of the Broker (default: what each cluster recorded "
                             "when it joined)")
    parser.add_argument("--broker-context", metavar="NAME",
                        help="the context of --broker-kubeconfig naming the Broker")
    parser.add_argument("--no-probe-pods", action="store_true",
                        help="firewall: do not run a probe pod on the gateway node to read "
                             "its datapath (the check then says not checked)")
    parser.add_argument("--namespace", type=kubeargs.namespace_name,
                        default=names.CLUSTER_NAMESPACE,
                        help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


def _targets(args: argparse.Namespace) -> tuple[list[Any], list[Any], Any]:
    """The targets, the API clients to close, and the Broker connection (or None)."""
    from cli.lab_cmd import up_lab
    from kube.client import new_api_client
    from ops import broker as ops_broker
    from ops.cluster import ClusterState
    from ops.diagnose.labaccess import LabAccess
    from ops.diagnose.podaccess import PodAccess
    from ops.diagnose.target import NoAccess, Target
    from ops.errors import InventoryError

    clients: list[Any] = []
    targets = []
    named = None
    if args.lab is not None:
        if args.kubeconfig is not None or args.broker_kubeconfig is not None:
            raise InventoryError("--lab names the clusters: leave out --kubeconfig and "
                                 "--broker-kubeconfig")
        lab = up_lab(args.lab, globalnet=True)
        known = [c.name for c in lab.plan.clusters]
        wanted = [c for c in kubeargs.contexts_of(args) if c] or known
        for name in wanted:
            if name not in known:
                raise InventoryError(f"lab {args.lab} has no cluster {name!r} (it has "
                                     f"{', '.join(known)})")
            api = new_api_client(lab.cluster(name).kubeconfig, retries=0)
            clients.append(api)
            targets.append(Target(name, ClusterState(api, namespace=args.namespace),
                                  LabAccess(lab, name)))
        named = ops_broker.named_broker(lab.broker_kubeconfig(), context=None)
        return targets, clients, named
    for context in kubeargs.contexts_of(args):
        api = kubeargs.api_client(argparse.Namespace(**{**vars(args), "context": context}))
        clients.append(api)
        state = ClusterState(api, namespace=args.namespace)
        access: Any = (NoAccess("probe pods not allowed (--no-probe-pods)")
                       if args.no_probe_pods else PodAccess(state))
        label = context or kubeargs.current_context(kubeargs.kubeconfig_of(args))
        targets.append(Target(label or str(api.configuration.host), state, access))
    if args.broker_kubeconfig or args.broker_context:
        named = ops_broker.named_broker(args.broker_kubeconfig or kubeargs.kubeconfig_of(args),
                                        context=args.broker_context)
    return targets, clients, named


def cmd_diagnose(args: argparse.Namespace) -> int:
    from ops.diagnose import model, runner

    targets: list[Any] = []
    clients: list[Any] = []
    named = broker = None
    try:
        targets, clients, named = _targets(args)
        broker = runner.broker_of(targets, named)
        checks = runner.run(targets, args.groups, broker=broker)
    finally:
        for api in clients:
            api.close()
        for conn in {id(c): c for c in (named, broker) if c is not None}.values():
            conn.api.close()
    failed = model.any_failed(checks)
    if args.output == "json":
        print(json.dumps({"passed": not failed, "counts": model.counts(checks),
                          "checks": [asdict(c) for c in checks]}, indent=2))
        return 1 if failed else 0
    table = Table("group", "cluster", "check", "result", "message", "hint",
                  title="gnctl diagnose " + ", ".join(args.groups), title_justify="left")
    for c in checks:
        table.add_row(Text(c.group), Text(c.cluster or "clusterset"), Text(c.name),
                      Text(c.verdict.value, style=COLOUR[c.verdict.value]), Text(c.message),
                      Text(c.hint))
    out = console()
    out.print(table)
    n = model.counts(checks)
    out.print(f"{n['PASS']} passed, {n['WARN']} warnings, {n['FAIL']} failed")
    return 1 if failed else 0
