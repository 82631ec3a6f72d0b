"""`gnctl show ...`: what Globalnet has allocated and installed."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from cli import kubeargs
from cli.console import console


def register(sub: Any) -> None:
    show = sub.add_parser("show", help="inspect allocations and the datapath")
    show_sub = show.add_subparsers(dest="show_command", metavar="WHAT", required=True)
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

