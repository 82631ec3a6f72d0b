"""`gnctl show ...`: what the clusterset looks like, as subctl's `show` tells it.

`networks`, `endpoints`, `connections`, `gateways`, `brokers`, `globalnet`, `versions`
and `all` read the cluster's (and the Broker's) API through `ops`, which collects plain
dataclasses; this module only renders them - rich tables, or `-o json`/`-o yaml` as one
list with an entry per context. `--contexts` names several clusters (repeat it, or
separate names by commas), each shown in turn; every context is checked and every view
read before anything is printed, so an error is the command's one line (cli/main.py).
`allocations` and `nat` are the older, lower-level views: the global IPs per object
and the NAT mappings in the kernel.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from cli import kubeargs
from cli.console import console

if TYPE_CHECKING:
    from ops.broker import BrokerConnection
    from ops.cluster import ClusterState

# What the view commands show, in `show all`'s order (ops.inventory.SECTIONS).
VIEWS: dict[str, str] = {
    "networks": "each member's pod, service and global CIDRs",
    "endpoints": "the Endpoints: every cluster's published cable end",
    "connections": "the active gateway's connections: status and RTT",
    "gateways": "the gateway nodes and which one is active",
    "brokers": "the Broker's namespaces, Globalnet settings and members",
    "globalnet": "global IP usage of the cluster's pool, and what is not allocated",
    "versions": "the image every component runs",
}


def register(sub: Any) -> None:
    show = sub.add_parser("show", help="inspect the clusterset, allocations and the datapath")
    show_sub = show.add_subparsers(dest="show_command", metavar="WHAT", required=True)
    for name, what in [*VIEWS.items(), ("all", "each of the views above in turn")]:
        view = show_sub.add_parser(name, help=what)
        _view_flags(view, brokers=name in ("brokers", "all"))
        view.set_defaults(func=cmd_view, views=list(VIEWS) if name == "all" else [name])
    alloc = show_sub.add_parser("allocations", help="global IPs recorded in the cluster's API")
    kubeargs.add_flags(alloc, "the cluster")
    alloc.add_argument("-o", "--output", choices=["table", "json"], default="table")
    alloc.set_defaults(func=cmd_allocations)

    nat = show_sub.add_parser("nat", help="NAT mappings installed in the kernel")
    nat.add_argument("--netns", help="read the datapath of this network namespace "
                     "(e.g. a lab gateway node: gn-demo-c1-n0)")
    nat.add_argument("--datapath", choices=["nftables", "ebpf"], default="nftables",
                     help="which backend's state to read (default nftables)")
    nat.add_argument("--bpffs", type=Path, default=None,
                     help="ebpf: the bpf filesystem the agent pins under (default: /sys/fs/bpf, "
                          "else the mounted bpffs that holds the namespace's pins)")
    nat.add_argument("-o", "--output", choices=["table", "json"], default="table")
    nat.set_defaults(func=cmd_nat)


def cmd_nat(args: argparse.Namespace) -> int:
    if args.bpffs is not None and args.datapath != "ebpf":
        print("gnctl: --bpffs is where the eBPF datapath pins its maps: it goes with "
              "--datapath ebpf", file=sys.stderr)
        return 1
    if args.datapath == "ebpf":
        return cmd_nat_ebpf(args)
    from datapath.nftables.inspect import TABLE_REF, read_mappings, render_table

    try:
        rows = read_mappings(netns=args.netns)
    except (OSError, RuntimeError) as exc:
        print(f"gnctl: cannot read the nftables table: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    out = console()
    out.print(render_table(rows))
    where = f"ip netns exec {args.netns} " if args.netns else ""
    out.print(f"{len(rows)} mappings; the rules: {where}nft list table {TABLE_REF}")
    return 0


def cmd_nat_ebpf(args: argparse.Namespace) -> int:
    """The eBPF maps' ingress mappings with their per-mapping counters, and the drops."""
    from datapath.ebpf.inspect import read_drops, read_mappings

    if args.bpffs is not None and not args.bpffs.is_dir():
        print(f"gnctl: --bpffs {args.bpffs}: no such folder (a mounted bpffs, such as "
              "/sys/fs/bpf)", file=sys.stderr)
        return 1
    try:
        rows = read_mappings(netns=args.netns, bpffs=args.bpffs)
        drops = read_drops(netns=args.netns, bpffs=args.bpffs)
    except OSError as exc:
        print(f"gnctl: cannot read the eBPF datapath's pinned maps: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps({"mappings": [asdict(r) for r in rows], "drops": drops}, indent=2))
        return 0
    table = Table("global IP", "local", "ports", "packets in", "bytes in", "packets out",
                  "bytes out", title="eBPF ingress mappings")
    for r in rows:
        table.add_row(r.global_ip, r.local, r.ports, str(r.packets_in), str(r.bytes_in),
                      str(r.packets_out), str(r.bytes_out))
    out = console()
    out.print(table)
    dropped = ", ".join(f"{k} {v}" for k, v in drops.items() if v) or "none"
    out.print(f"{len(rows)} mappings; drops: {dropped}")
    return 0


def cmd_allocations(args: argparse.Namespace) -> int:
    from globalnet.inspect import read_allocations
    from kube.errors import is_not_found

    try:
        rows = read_allocations(kubeargs.api_client(args))
    except Exception as exc:
        if not is_not_found(exc):
            raise  # main.py explains connection and API errors
        print(f"gnctl: Globalnet's CRDs are not in the cluster of {kubeargs.server_of(args)} "
              "(is it joined? `gnctl join` installs them)", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    table = Table("kind", "namespace", "name", "target", "global IPs", "Allocated")
    for r in rows:
        ips = ", ".join(r.global_ips) if len(r.global_ips) <= 3 else (
            f"{r.global_ips[0]} .. {r.global_ips[-1]} ({len(r.global_ips)})")
        table.add_row(r.kind, r.namespace or "-", r.name, r.target, ips or "-", r.condition)
    console().print(table)
    return 0


# --- the clusterset views (ops) ------------------------------------------------------------

def _view_flags(parser: argparse.ArgumentParser, *, brokers: bool) -> None:
    from kube import names

    kubeargs.add_flags(parser, "the cluster")
    parser.add_argument(
        "--contexts", metavar="NAME[,NAME...]", type=kubeargs.context_names, action="append",
        default=[], help="show each of these contexts of the kubeconfig in turn (repeat, or "
                         "separate by commas); with --context, that one first")
    # Where the agents keep their objects: always names.CLUSTER_NAMESPACE once
    # installed (deploy.manifests refuses another); tests point it at their own.
    parser.add_argument("--namespace", type=kubeargs.namespace_name,
                        default=names.CLUSTER_NAMESPACE,
                        help=argparse.SUPPRESS)
    if brokers:
        parser.add_argument(
            "--broker-kubeconfig", type=Path, metavar="PATH",
            help="kubeconfig of the Broker (default: the connection each cluster recorded "
                 "when it joined)")
        parser.add_argument(
            "--broker-context", metavar="NAME",
            help="the context of --broker-kubeconfig naming the Broker; without "
                 "--broker-kubeconfig, a context of the cluster's kubeconfig")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")


@dataclass(frozen=True)
class Shown:
    """The views of one context: a view per section, or the one line saying why not."""

    context: str
    server: str
    views: dict[str, Any]


def cmd_view(args: argparse.Namespace) -> int:
    """One or all of ops.inventory's sections, for each context."""
    from ops import broker
    from ops.cluster import ClusterState

    clients: list[tuple[str | None, Any]] = []
    named = None
    try:
        for context in kubeargs.contexts_of(args):  # every context is checked before any read
            clients.append((context, kubeargs.api_client(
                argparse.Namespace(**{**vars(args), "context": context}))))
        if "brokers" in args.views and (args.broker_kubeconfig or args.broker_context):
            named = broker.named_broker(args.broker_kubeconfig or kubeargs.kubeconfig_of(args),
                                        context=args.broker_context)
        read_once: dict[str, Any] = {}
        shown = [Shown(context or kubeargs.current_context(kubeargs.kubeconfig_of(args)),
                       str(api.configuration.host),
                       _collect(ClusterState(api, namespace=args.namespace), args.views,
                                named=named, read_once=read_once))
                 for context, api in clients]
    finally:
        for _, api in clients:
            api.close()
        if named is not None:
            named.api.close()
    if args.output == "table":
        _print_tables(shown, several=len(shown) > 1 or len(args.views) > 1)
    else:
        _print_document(shown, yaml_out=args.output == "yaml")
    return 0


def _collect(state: ClusterState, sections: Sequence[str], *,
             named: BrokerConnection | None, read_once: dict[str, Any]) -> dict[str, Any]:
    """Every section's view. In `all`, a Broker that cannot be read is said in its
    section (it is another server; the cluster's own views still count)."""
    from ops import inventory
    from ops.errors import InventoryError

    views: dict[str, Any] = {}
    for section in sections:
        try:
            if section == "brokers" and named is not None:
                # One Broker named for every context: read it once.
                if section not in read_once:
                    read_once[section] = inventory.collect(state, section, named_broker=named)
                views[section] = read_once[section]
            else:
                views[section] = inventory.collect(state, section)
        except InventoryError as exc:
            if section != "brokers" or len(sections) == 1:
                raise
            views[section] = str(exc)
    return views


def _print_document(shown: list[Shown], *, yaml_out: bool) -> None:
    doc = [{"context": s.context, "server": s.server,
            **{section: {"error": view} if isinstance(view, str) else asdict(view)
               for section, view in s.views.items()}} for s in shown]
    text = json.dumps(doc, indent=2)
    if yaml_out:
        import yaml

        # Through JSON: the dataclasses' tuples become lists, which safe_dump writes.
        text = yaml.safe_dump(json.loads(text), sort_keys=False).rstrip()
    print(text)


def _print_tables(shown: list[Shown], *, several: bool) -> None:
    out = console()
    for s in shown:
        if several:
            out.rule(Text(f"{s.context or 'current context'}: {s.server}"))
        for section, view in s.views.items():
            if isinstance(view, str):
                out.print(Text(f"{section}: {view}"))
                continue
            for item in RENDERERS[section](view):
                out.print(item)


def _t(value: object) -> Text:
    """A cell as plain text: API values never turn into rich markup."""
    return Text(str(value))


def _list(values: Sequence[str]) -> Text:
    return _t(", ".join(values) or "-")


def _table(*columns: str, title: str) -> Table:
    return Table(*columns, title=title, title_justify="left")


def _render_networks(view: Any) -> list[Any]:
    table = _table("cluster", "pod CIDRs", "service CIDRs", "global CIDRs", "Globalnet",
                   title="Networks (the members' Cluster objects)")
    for c in view.clusters:
        table.add_row(_t(f"{c.cluster_id} (this cluster)" if c.local else c.cluster_id),
                      _list(c.pod_cidrs), _list(c.service_cidrs), _list(c.global_cidrs),
                      _t("on" if c.globalnet else "off"))
    lines: list[Any] = [table] if view.clusters else [
        _t("Networks: no Cluster objects here (is this cluster joined?)")]
    if view.datapath:
        lines.append(_t(f"Globalnet datapath: {view.datapath}"))
    return lines


def _render_endpoints(view: Any) -> list[Any]:
    table = _table("cluster", "hostname", "cable driver", "private IP", "public IP",
                   "health-check IP", "subnets", "type", title="Endpoints")
    for e in view.endpoints:
        table.add_row(_t(e.cluster_id), _t(e.hostname), _t(e.backend), _t(e.private_ip or "-"),
                      _t(e.public_ip or "-"), _t(e.health_check_ip or "-"), _list(e.subnets),
                      _t("local" if e.local else "remote"))
    return [table] if view.endpoints else [_t("Endpoints: none (no gateway has published one)")]


def _rtt_range(rtt: Any) -> str:
    if not (rtt.min or rtt.average or rtt.max):
        return "-"
    return f"{rtt.min or '?'} / {rtt.average or '?'} / {rtt.max or '?'}"


def _render_connections(view: Any) -> list[Any]:
    if not view.active_gateway:
        return [_t("Connections: no active gateway (nobody holds the gateway Lease and no "
                   "engine reports active)")]
    table = _table("gateway", "cluster", "remote gateway", "remote IP", "driver", "subnets",
                   "status", "RTT last", "RTT min / avg / max", "message",
                   title=f"Connections of the active gateway {view.active_gateway}")
    for c in view.connections:
        table.add_row(_t(c.gateway), _t(c.cluster_id), _t(c.hostname), _t(c.remote_ip),
                      _t(c.driver + (f" ({c.implementation})" if c.implementation else "")),
                      _list(c.subnets), _t(c.status), _t(c.rtt.last or "-"),
                      _t(_rtt_range(c.rtt)), _t(c.message))
    if not view.connections:
        return [_t(f"Connections: none (the active gateway {view.active_gateway} reports no "
                   "connection)")]
    return [table]


def _render_gateways(view: Any) -> list[Any]:
    table = _table("node", "HA status", "holds Lease", "node Ready", "health-check IP",
                   "connections", "conntrack sync", "summary", title="Gateways")
    for g in view.gateways:
        ready = "-" if g.node_ready is None else ("yes" if g.node_ready else "no")
        table.add_row(_t(g.node), _t(g.ha_status or "-"), _t("yes" if g.holds_lease else "no"),
                      _t(ready), _t(g.health_check_ip or "-"),
                      _t(f"{g.connected}/{g.connections}"), _t(g.conntrack_sync or "-"),
                      _t(g.summary))
    lease = (f"gateway Lease held by {view.lease_holder} (renewed {view.lease_renewed or '?'}, "
             f"{view.lease_transitions} transitions)" if view.lease_holder
             else "gateway Lease: held by nobody")
    if not view.gateways:
        return [_t("Gateways: no gateway node (none labelled, no Gateway objects)")]
    return [table, _t(lease)]


def _render_brokers(view: Any) -> list[Any]:
    lines: list[Any] = []
    for ns in view.namespaces:
        globalnet = {None: "unknown", False: "off"}.get(
            ns.globalnet, f"on, range {ns.global_cidr_range}, {ns.cluster_size} IPs per cluster")
        vips = (f"; ClusterSetIP pool {ns.clusterset_ip_range}, "
                f"{ns.clusterset_ip_cluster_size} VIPs per cluster"
                + (", answered for every service" if ns.clusterset_ip_for_all else "")
                if ns.clusterset_ip_range else "")
        table = _table("cluster", "global CIDRs", "ClusterSetIP slice", "pod CIDRs",
                       "service CIDRs", "cable driver", "Cluster object", "Endpoints",
                       title=f"Broker {view.server}, namespace {ns.namespace} "
                             f"(via {view.source}); Globalnet {globalnet}{vips}")
        for m in ns.members:
            table.add_row(_t(m.cluster_id), _list(m.global_cidrs),
                          _t(m.clusterset_ip_cidr or "-"), _list(m.pod_cidrs),
                          _list(m.service_cidrs), _t(m.cable_driver or "-"),
                          _t("yes" if m.published else "no (a CIDR allocation only)"),
                          _t("?" if m.endpoints is None else m.endpoints))
        lines.append(table if ns.members else _t(
            f"Broker {view.server}, namespace {ns.namespace}: no cluster has joined"))
        lines += [_t(f"  note: {note}") for note in ns.notes]
    return lines


def _render_globalnet(view: Any) -> list[Any]:
    if not view.enabled:
        return [_t("Globalnet: not enabled in this cluster (no global CIDR)")]
    pools = _table("pool", "size", "allocated", "available", "egress", "ingress", "gateway",
                   title=f"Global IPs of {view.cluster_id or 'this cluster'} "
                         f"({view.egress_objects} egress and {view.ingress_objects} ingress "
                         "objects)")
    for p in view.pools:
        pools.add_row(_t(p.cidr), _t(p.size), _t(p.allocated), _t(p.available), _t(p.egress),
                      _t(p.ingress), _t(p.gateway))
    lines: list[Any] = [pools]
    if view.unallocated:
        table = _table("kind", "namespace", "name", "requested", "Allocated", "reason",
                       "message", title="Not allocated")
        for u in view.unallocated:
            table.add_row(_t(u.kind), _t(u.namespace or "-"), _t(u.name), _t(u.requested),
                          _t(u.status or "not yet"), _t(u.reason or "-"), _t(u.message))
        lines.append(table)
    else:
        lines.append(_t("every object has its global IPs"))
    if view.duplicates:
        lines.append(_t(f"recorded by two objects: {', '.join(view.duplicates)}"))
    if view.outside:
        lines.append(_t(f"outside the pool: {', '.join(view.outside)}"))
    return lines


def _render_versions(view: Any) -> list[Any]:
    table = _table("component", "kind", "container", "repository", "version", "running",
                   "ready", title="Versions")
    for c in view.components:
        table.add_row(_t(c.component), _t(c.kind), _t(c.container or "-"), _t(c.repository),
                      _t(c.version), _list(c.running),
                      _t("-" if c.kind == "CLI" else f"{c.ready}/{c.desired}"))
    return [table]


RENDERERS: dict[str, Callable[[Any], list[Any]]] = {
    "networks": _render_networks, "endpoints": _render_endpoints,
    "connections": _render_connections, "gateways": _render_gateways,
    "brokers": _render_brokers, "globalnet": _render_globalnet, "versions": _render_versions,
}
