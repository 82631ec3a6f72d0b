"""`gnctl deploy-broker`, `gnctl join`, `gnctl leave`: clusterset membership.

Flag names follow upstream's subctl where they mean the same thing
(`--globalnet`, `--globalnet-cidr-range`, `--default-globalnet-cluster-size`,
`--clusterid`, `--globalnet-cidr`, `--globalnet-cluster-size`). The Broker is
named by a kubeconfig (`--broker-kubeconfig`) rather than a broker-info file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from globalnet.cidr_allocation import DEFAULT_CIDR_RANGE, DEFAULT_CLUSTER_SIZE
from kube import names


def _kubeconfig_default() -> Path:
    return Path(os.environ.get("KUBECONFIG", "~/.kube/config")).expanduser()


def register(sub: Any) -> None:
    broker = sub.add_parser(
        "deploy-broker", help="make a cluster the clusterset's Broker",
        description="Install the CRDs and the Broker namespace on the Broker's API server; "
                    "with --globalnet also record the clusterset's global range. Running it "
                    "again keeps what is recorded.")
    broker.add_argument("--kubeconfig", type=Path, default=_kubeconfig_default(),
                        help="the Broker cluster's kubeconfig (default: $KUBECONFIG)")
    broker.add_argument("--globalnet", action="store_true",
                        help="clusters get global CIDRs: for overlapping pod/service CIDRs")
    broker.add_argument("--globalnet-cidr-range", default=DEFAULT_CIDR_RANGE,
                        help=f"range the global CIDRs come from (default {DEFAULT_CIDR_RANGE})")
    broker.add_argument("--default-globalnet-cluster-size", type=int,
                        default=DEFAULT_CLUSTER_SIZE,
                        help="global IPs per cluster, rounded up to a power of two "
                             f"(default {DEFAULT_CLUSTER_SIZE})")
    broker.add_argument("--broker-namespace", default=names.BROKER_NAMESPACE,
                        help=argparse.SUPPRESS)
    broker.set_defaults(func=cmd_deploy_broker)

    join = sub.add_parser(
        "join", help="join a cluster to the clusterset",
        description="Allocate the cluster's global CIDR on the Broker (a rejoin keeps it), "
                    "install the CRDs in the cluster and publish its Cluster object.")
    join.add_argument("--kubeconfig", type=Path, default=_kubeconfig_default(),
                      help="the joining cluster's kubeconfig (default: $KUBECONFIG)")
    join.add_argument("--broker-kubeconfig", type=Path, required=True)
    join.add_argument("--clusterid", "--cluster-id", dest="cluster_id", required=True,
                      help="the cluster's ID in the clusterset (a DNS label)")
    join.add_argument("--cluster-cidr", action="append", required=True,
                      help="a pod CIDR of the cluster (repeat for several)")
    join.add_argument("--service-cidr", action="append", required=True,
                      help="a service CIDR of the cluster (repeat for several)")
    join.add_argument("--globalnet-cidr", help="this global CIDR instead of the next free one")
    join.add_argument("--globalnet-cluster-size", type=int,
                      help="global IPs for this cluster instead of the Broker's default")
    join.add_argument("--datapath", choices=["nftables", "ebpf"], default="nftables",
                      help="the Globalnet agent's datapath in the printed command line "
                           "(default nftables)")
    join.add_argument("--broker-namespace", default=names.BROKER_NAMESPACE, help=argparse.SUPPRESS)
    join.add_argument("--cluster-namespace", default=None, help=argparse.SUPPRESS)
    join.set_defaults(func=cmd_join)

    leave = sub.add_parser(
        "leave", help="take a cluster out of the clusterset",
        description="Release the cluster's global CIDR on the Broker and withdraw its "
                    "Cluster objects. Without --kubeconfig only the Broker is changed "
                    "(for a cluster that no longer exists).")
    leave.add_argument("--kubeconfig", type=Path, help="the leaving cluster's kubeconfig")
    leave.add_argument("--broker-kubeconfig", type=Path, required=True)
    leave.add_argument("--clusterid", "--cluster-id", dest="cluster_id", required=True)
    leave.add_argument("--broker-namespace", default=names.BROKER_NAMESPACE, help=argparse.SUPPRESS)
    leave.add_argument("--cluster-namespace", default=None, help=argparse.SUPPRESS)
    leave.set_defaults(func=cmd_leave)


def _fail(message: str) -> int:
    print(f"gnctl: {message}", file=sys.stderr)
    return 1


def _api(path: Path, what: str) -> Any:
    from kube.client import new_api_client

    if not path.exists():
        raise FileNotFoundError(f"{what} kubeconfig {path} not found")
    return new_api_client(path)


def _run(step: Any) -> int:
    """Run `step`, turning the expected failures into one line for the user."""
    from gateway.clusterset import ClustersetError
    from kube.errors import is_connection_error

    try:
        return int(step() or 0)
    except (ClustersetError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        if is_connection_error(exc):
            return _fail(f"cannot reach the API server: {exc}")
        raise


def cmd_deploy_broker(args: argparse.Namespace) -> int:
    from gateway.clusterset import deploy_broker

    def step() -> int:
        api = _api(args.kubeconfig, "Broker")
        print(f"deploying the Broker (namespace {args.broker_namespace}) ...", flush=True)
        info = deploy_broker(api, globalnet=args.globalnet, cidr_range=args.globalnet_cidr_range,
                             cluster_size=args.default_globalnet_cluster_size,
                             namespace=args.broker_namespace)
        print("CRDs installed, Broker namespace ready")
        if info is not None:
            print(f"Globalnet: range {info.cidr_range}, {info.cluster_size} global IPs per "
                  f"cluster, {len(info.clusters)} clusters joined")
            if args.globalnet and (info.cidr_range, info.cluster_size) != (
                    args.globalnet_cidr_range, args.default_globalnet_cluster_size):
                print("note: the Broker already had a Globalnet record; it was kept as it is")
        return 0

    return _run(step)


def cmd_join(args: argparse.Namespace) -> int:
    from gateway.clusterset import JoinRequest, join, validate_request

    request = JoinRequest(
        cluster_id=args.cluster_id, cluster_cidrs=tuple(args.cluster_cidr),
        service_cidrs=tuple(args.service_cidr), globalnet_cidr=args.globalnet_cidr,
        globalnet_cluster_size=args.globalnet_cluster_size)
    namespace = args.cluster_namespace or names.CLUSTER_NAMESPACE

    def step() -> int:
        validate_request(request)  # before any connection
        cluster, broker = _api(args.kubeconfig, "cluster"), _api(args.broker_kubeconfig, "Broker")
        print(f"joining {request.cluster_id} ...", flush=True)
        member = join(cluster, broker, request, broker_namespace=args.broker_namespace,
                      cluster_namespace=namespace)
        print(f"{member.cluster_id} joined the clusterset; members: {', '.join(member.members)}")
        if member.global_cidr:
            print(f"global CIDR: {member.global_cidr}")
            print("run on the gateway node:\n"
                  f"  python -m globalnet.agent --kubeconfig {args.kubeconfig} "
                  f"--cluster-id {member.cluster_id} --global-cidr {member.global_cidr} "
                  + " ".join(f"--local-cidr {c}" for c in (*request.cluster_cidrs,
                                                             *request.service_cidrs))
                  + f" --datapath {args.datapath}")
        else:
            print("run on the gateway node:")
        no_globalnet = "" if member.global_cidr else " --no-globalnet"
        print(f"  python -m lighthouse.agent --kubeconfig {args.kubeconfig} "
              f"--broker-kubeconfig {args.broker_kubeconfig} --cluster-id {member.cluster_id} "
              f"--dns-listen 0.0.0.0:53{no_globalnet}")
        print(f"  python -m gateway.syncer --kubeconfig {args.kubeconfig} "
              f"--broker-kubeconfig {args.broker_kubeconfig}")
        print("and on every node:\n"
              f"  python -m gateway.routeagent --kubeconfig {args.kubeconfig} "
              f"--cluster-id {member.cluster_id} --node-name NODE")
        return 0

    return _run(step)


def cmd_leave(args: argparse.Namespace) -> int:
    from gateway.clusterset import leave

    def step() -> int:
        broker = _api(args.broker_kubeconfig, "Broker")
        cluster = _api(args.kubeconfig, "cluster") if args.kubeconfig else None
        was_member = leave(cluster, broker, args.cluster_id,
                           broker_namespace=args.broker_namespace,
                           cluster_namespace=args.cluster_namespace or names.CLUSTER_NAMESPACE)
        if was_member:
            print(f"{args.cluster_id} left the clusterset: global CIDR released, "
                  "Cluster objects withdrawn")
        else:
            print(f"{args.cluster_id} was not a member: nothing to do")
        return 0

    return _run(step)
