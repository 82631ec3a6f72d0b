"""The Globalnet controller process: `python -m globalnet.agent`.

Runs leader election and, while leading, the controllers and the intent
publisher for one cluster. The datapath is chosen by flag; `recording` keeps
the intent in memory (for tests and dry runs) and touches no kernel state.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from datapath.api import Datapath, RecordingDatapath
from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager

log = logging.getLogger("globalnet.agent")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="globalnet-agent", description=__doc__)
    p.add_argument("--kubeconfig", type=Path, required=True, help="the cluster's kubeconfig")
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--global-cidr", required=True, help="this cluster's slice of the global CIDR")
    p.add_argument("--local-cidr", action="append", default=[],
                   help="a local pod or service CIDR (repeat)")
    p.add_argument("--namespace", default="submariner-operator",
                   help="namespace of the leader-election Lease")
    p.add_argument("--identity", default=f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--retry-period", type=float, default=2.0)
    p.add_argument("--datapath", choices=["recording"], default="recording")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics (0: off)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def make_datapath(kind: str) -> Datapath:
    return RecordingDatapath()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        retry_period=args.retry_period,
    )
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    manager = GlobalnetManager(api, cfg, make_datapath(args.datapath))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    manager.start()
    log.info("globalnet agent %s started for cluster %s", cfg.identity, cfg.cluster_id)
    done.wait()
    log.info("stopping")
    manager.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
