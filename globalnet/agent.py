"""The Globalnet controller process: `python -m globalnet.agent`.

Runs leader election and, while leading, the controllers and the intent
publisher for one cluster. The datapath is chosen by flag: `nftables` (the
default) programs table `inet globalnet` in this node's kernel - or in the
network namespace given with `--netns` - and repairs hand edits of it within a
second or two; `ebpf` attaches tc programs (bpf/) to the device toward the
other clusters (`--tunnel-dev`, else the one routing their global CIDRs), with
maps and programs pinned under `--bpffs`/globalnet/, repairs a detached
filter or removed pin within a second and collects expired connections;
`recording` keeps the intent in memory (tests, dry runs) and touches no kernel
state.

Stopping the agent leaves the kernel as it is, so established flows keep going
and the next agent converges by difference; `--uninstall` removes our table,
or our filters, pins and shim table (and nothing else), and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

from datapath import netns
from datapath.recording import RecordingDatapath
from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager
from globalnet.datapath_api import Datapath
from kube import daemon, names

log = logging.getLogger("globalnet.agent")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="globalnet-agent", description=__doc__)
    p.add_argument("--kubeconfig", type=Path, help="the cluster's kubeconfig (required)")
    p.add_argument("--cluster-id")
    p.add_argument("--global-cidr", help="this cluster's slice of the global CIDR (required)")
    p.add_argument("--local-cidr", action="append", default=[],
                   help="a local pod or service CIDR (repeat)")
    p.add_argument("--namespace", default=names.CLUSTER_NAMESPACE,
                   help="namespace of the leader-election Lease")
    p.add_argument("--identity", default=f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--node-name",
                   help="the gateway node this agent programs: while another gateway node "
                        "holds the gateway Lease, this one keeps the NAT state but translates "
                        "nothing (hot standby); default: always active")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--retry-period", type=float, default=2.0)
    p.add_argument("--datapath", choices=["nftables", "ebpf", "recording"],
                   default="nftables",
                   help="nftables: program this node's kernel (default); ebpf: tc BPF "
                        "programs with their own connection table; recording: keep the "
                        "intent in memory only")
    p.add_argument("--bpffs", type=Path, default=None,
                   help="ebpf: the bpf filesystem to pin under (default /sys/fs/bpf, "
                        "mounted when absent)")
    p.add_argument("--tunnel-dev", action="append", default=[],
                   help="ebpf: attach to this device (repeat); default: the device that "
                        "routes the remote global CIDRs")
    p.add_argument("--netns", help="program the kernel of this named network namespace "
                                   "(under /run/netns) instead of the agent's own")
    p.add_argument("--uninstall", action="store_true",
                   help="remove this node's Globalnet datapath state (the nftables table, or the "
                        "eBPF filters, pins and shim table) and exit")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics (0: off)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.netns and args.datapath == "recording":
        p.error("--netns needs --datapath nftables or ebpf")
    if not args.uninstall:
        missing = [f"--{k.replace('_', '-')}" for k in ("kubeconfig", "cluster_id", "global_cidr")
                   if not getattr(args, k)]
        if missing:
            p.error("the following arguments are required: " + ", ".join(missing))
    return args


def make_datapath(kind: str, netns: str | None = None, *, bpffs: Path | None = None,
                  devices: tuple[str, ...] = ()) -> Datapath:
    """The backend `--datapath` names: the one place a backend is chosen, so the
    controllers see only the `Datapath` protocol."""
    if kind == "nftables":
        from datapath.nftables import NftablesDatapath

        return NftablesDatapath(netns=netns)
    if kind == "ebpf":
        from datapath.ebpf import EbpfDatapath

        return EbpfDatapath(netns=netns, bpffs=bpffs, devices=devices or None)
    return RecordingDatapath()


def uninstall(netns: str | None, kind: str = "nftables", bpffs: Path | None = None) -> int:
    where = f" in network namespace {netns}" if netns else ""
    if kind == "ebpf":
        from datapath.ebpf import EbpfDatapath

        EbpfDatapath(netns=netns, bpffs=bpffs).cleanup()
        print(f"globalnet-agent: removed the eBPF datapath's filters, pins and shim table"
              f"{where} (nothing else touched)")
        return 0
    from datapath.nftables import TABLE_REF, NftablesDatapath

    backend = NftablesDatapath(netns=netns)
    try:
        backend.cleanup()
    finally:
        backend.close()
    print(f"globalnet-agent: deleted table {TABLE_REF}{where} (nothing else touched)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    daemon.setup_logging(args.verbose)
    problem = netns.missing(args.netns)
    if problem:
        print(f"globalnet-agent: {problem}", file=sys.stderr)
        return 2
    if args.uninstall:
        return uninstall(args.netns, args.datapath, args.bpffs)
    import netaddr

    try:
        netaddr.IPNetwork(args.global_cidr)
        for c in args.local_cidr:
            netaddr.IPNetwork(c)
    except (netaddr.AddrFormatError, ValueError) as exc:
        print(f"globalnet-agent: invalid CIDR: {exc}", file=sys.stderr)
        return 2
    from kube.client import new_api_client

    api = new_api_client(args.kubeconfig)
    cfg = GlobalnetConfig(
        cluster_id=args.cluster_id, global_cidr=args.global_cidr,
        local_cidrs=tuple(args.local_cidr), namespace=args.namespace, identity=args.identity,
        lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
        retry_period=args.retry_period, node_name=args.node_name,
    )
    from kube import metrics as kube_metrics

    kube_metrics.serve(args.metrics_port, what="globalnet agent")
    datapath = make_datapath(args.datapath, args.netns, bpffs=args.bpffs,
                             devices=tuple(args.tunnel_dev))
    manager = GlobalnetManager(api, cfg, datapath)
    done = daemon.stop_requested()
    with contextlib.ExitStack() as stack:
        if args.datapath == "nftables":
            from datapath.nftables import DriftWatcher, NftablesDatapath

            assert isinstance(datapath, NftablesDatapath)
            stack.callback(datapath.close)
            stack.enter_context(DriftWatcher(datapath))
        elif args.datapath == "ebpf":
            from datapath.ebpf import DriftWatcher as EbpfDriftWatcher
            from datapath.ebpf import EbpfDatapath

            assert isinstance(datapath, EbpfDatapath)
            stack.callback(datapath.close)
            stack.enter_context(EbpfDriftWatcher(datapath))
            if args.metrics_port:
                from prometheus_client import REGISTRY

                from datapath.ebpf.metrics import EbpfCollector

                collector = EbpfCollector(netns=args.netns, bpffs=args.bpffs)
                REGISTRY.register(collector)
                stack.callback(REGISTRY.unregister, collector)
        manager.start()
        log.info("globalnet agent %s started for cluster %s, datapath %s%s", cfg.identity,
                 cfg.cluster_id, args.datapath, f" in netns {args.netns}" if args.netns else "")
        done.wait()
        log.info("stopping; the kernel's NAT state stays as it is")
        manager.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
