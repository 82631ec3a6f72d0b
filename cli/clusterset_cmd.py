"""`gnctl deploy-broker`, `join`, `leave`, `uninstall`: installing Globalnet.

Flag names follow upstream's subctl where they mean the same thing
(`--globalnet`, `--globalnet-cidr-range`, `--default-globalnet-cluster-size`,
`--clusterid`, `--clustercidr`, `--servicecidr`, `--globalnet-cidr`,
`--globalnet-cluster-size`, `--cable-driver`, a `broker-info.subm` file); clusters are
named by `--kubeconfig` and `--context` as with kubectl. What the commands do is in
deploy/install.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from globalnet.cidr_allocation import DEFAULT_CIDR_RANGE, DEFAULT_CLUSTER_SIZE
from kube import names

CABLE_DRIVERS = ("vxlan",)


def _kubeconfig_default() -> Path:
    return Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
                ).expanduser()


def _cluster_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--kubeconfig", type=Path, default=_kubeconfig_default(),
                        help=f"kubeconfig of {what} (default: $KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--context", help="the kubeconfig context to use (default: its "
                                          "current context)")


def register(sub: Any) -> None:
    from deploy import install, manifests
    from deploy.brokerinfo import DEFAULT_FILE

    broker = sub.add_parser(
        "deploy-broker", help="make a cluster the clusterset's Broker",
        description="Install the CRDs, the Broker namespace and its roles on the Broker's "
                    "API server, record the clusterset's global range (with --globalnet) and "
                    "write the broker-info file members join with. Running it again keeps "
                    "what is recorded and writes the file again.")
    _cluster_flags(broker, "the Broker cluster")
    broker.add_argument("--globalnet", action="store_true",
                        help="clusters get global CIDRs: for overlapping pod/service CIDRs")
    broker.add_argument("--globalnet-cidr-range", default=DEFAULT_CIDR_RANGE,
                        help=f"range the global CIDRs come from (default {DEFAULT_CIDR_RANGE})")
    broker.add_argument("--default-globalnet-cluster-size", type=int,
                        default=DEFAULT_CLUSTER_SIZE,
                        help="global IPs per cluster, rounded up to a power of two "
                             f"(default {DEFAULT_CLUSTER_SIZE})")
    broker.add_argument("--broker-api-server", metavar="URL",
                        help="the Broker's API URL as the members reach it (default: the "
                             "kubeconfig's server)")
    broker.add_argument("--out", type=Path, default=Path(DEFAULT_FILE),
                        help=f"where to write the broker-info file (default {DEFAULT_FILE})")
    broker.add_argument("--broker-namespace", default=names.BROKER_NAMESPACE,
                        help=argparse.SUPPRESS)
    broker.set_defaults(func=cmd_deploy_broker)

    join = sub.add_parser(
        "join", help="join a cluster to the clusterset and install Globalnet in it",
        description="Check everything first, then allocate the cluster's global CIDR on the "
                    "Broker (a rejoin keeps it), create the cluster's own Broker identity, "
                    "server-side apply the agents' manifests and wait until they run. A first "
                    "join that fails is undone entirely.")
    join.add_argument("broker_info", type=Path, metavar="BROKER_INFO",
                      help="the broker-info file `gnctl deploy-broker` wrote")
    _cluster_flags(join, "the joining cluster")
    join.add_argument("--clusterid", "--cluster-id", dest="cluster_id", required=True,
                      help="the cluster's ID in the clusterset (a DNS label)")
    join.add_argument("--clustercidr", "--cluster-cidr", dest="cluster_cidr", action="append",
                      help="a pod CIDR of the cluster (repeat for several; default: "
                           "discovered from the cluster)")
    join.add_argument("--servicecidr", "--service-cidr", dest="service_cidr", action="append",
                      help="a service CIDR of the cluster (repeat; default: discovered)")
    join.add_argument("--globalnet-cidr", help="this global CIDR instead of the next free one")
    join.add_argument("--globalnet-cluster-size", type=int,
                      help="global IPs for this cluster instead of the Broker's default")
    join.add_argument("--cable-driver", choices=CABLE_DRIVERS, default="vxlan",
                      help="the tunnel between gateways (default vxlan)")
    join.add_argument("--datapath", choices=manifests.DATAPATHS, default="nftables",
                      help="Globalnet's datapath on the gateway (default nftables)")
    join.add_argument("--image", default=manifests.DEFAULT_IMAGE,
                      help=f"the agents' image (default {manifests.DEFAULT_IMAGE})")
    join.add_argument("--gateway-node", metavar="NODE",
                      help=f"label this node {names.GATEWAY_SELECTOR} (default: the nodes "
                           "already labelled)")
    join.add_argument("--api-server", default=manifests.DEFAULT_API_SERVER, metavar="URL",
                      help="the URL the agents reach this cluster's API server at "
                           f"(default {manifests.DEFAULT_API_SERVER})")
    join.add_argument("--dns-service-ip", help="a fixed ClusterIP for the clusterset DNS "
                                               "Service")
    join.add_argument("--timeout", type=float, default=install.DEFAULT_WAIT,
                      help=f"seconds to wait for the agents (default {install.DEFAULT_WAIT:.0f})")
    join.add_argument("--dry-run", action="store_true",
                      help="print what would be applied (YAML) and change nothing")
    _local_broker_flag(join)
    join.add_argument("--verbose-agents", action="store_true", help=argparse.SUPPRESS)
    join.set_defaults(func=cmd_join)

    leave = sub.add_parser(
        "leave", help="take a cluster out of the clusterset",
        description="Revoke the cluster's Broker identity, withdraw its Cluster object and "
                    "release its global CIDR: the other members drop its routes, cable, "
                    "imports and DNS answers at once, even while its agents still run. With "
                    "--kubeconfig/--context the cluster's copies of the members are dropped "
                    "too; the agents stay installed (`gnctl uninstall` removes them).")
    leave.add_argument("broker_info", type=Path, metavar="BROKER_INFO")
    leave.add_argument("--kubeconfig", type=Path,
                       help="the leaving cluster's kubeconfig (default: change the Broker only)")
    leave.add_argument("--context")
    leave.add_argument("--clusterid", "--cluster-id", dest="cluster_id", required=True)
    _local_broker_flag(leave)
    leave.set_defaults(func=cmd_leave)

    uninstall = sub.add_parser(
        "uninstall", help="remove everything join installed in a cluster",
        description="Delete the agents, their identities and configuration, Globalnet's "
                    "CRDs and namespace from the cluster (the MCS CRDs stay: they hold your "
                    "ServiceExports). With BROKER_INFO and --clusterid it leaves the "
                    "clusterset first.")
    uninstall.add_argument("broker_info", type=Path, nargs="?", metavar="BROKER_INFO")
    _cluster_flags(uninstall, "the cluster")
    uninstall.add_argument("--clusterid", "--cluster-id", dest="cluster_id")
    _local_broker_flag(uninstall)
    uninstall.set_defaults(func=cmd_uninstall)


def _local_broker_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local-broker-url", metavar="URL",
                        help="where this machine reaches the Broker, when not at the "
                             "broker-info's URL (a port forward, the lab's relay); the "
                             "members keep the broker-info's URL")


def _fail(message: str) -> int:
    print(f"gnctl: {message}", file=sys.stderr)
    return 1


def _api(path: Path, context: str | None) -> Any:
    from kube.client import new_api_client

    return new_api_client(path, context=context, retries=0)


def _server_of(path: Path, context: str | None) -> str:
    from kube.client import new_configuration

    return str(new_configuration(path, context=context).host)


def _run(step: Callable[[], int]) -> int:
    """Run `step`, turning the expected failures into one line for the user."""
    from deploy.broker import BrokerIdentityError
    from deploy.brokerinfo import BrokerInfoError
    from deploy.install import InstallError
    from gateway.clusterset import ClustersetError
    from kube.client import KubeconfigError
    from kube.errors import is_connection_error, status_of
    from kube.rest import status_message

    try:
        return int(step() or 0)
    except (ClustersetError, InstallError, BrokerInfoError, BrokerIdentityError,
            KubeconfigError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        if is_connection_error(exc):
            reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:200]
            return _fail(f"cannot reach the API server: {reason}")
        status = status_of(exc)
        if status in (401, 403):
            return _fail(f"the API server refused: {status_message(exc)}")  # type: ignore[arg-type]
        raise


def cmd_deploy_broker(args: argparse.Namespace) -> int:
    from deploy import install

    def step() -> int:
        api = _api(args.kubeconfig, args.context)
        server = args.broker_api_server or _server_of(args.kubeconfig, args.context)
        if not server.startswith("https://"):
            return _fail(f"--broker-api-server {server!r}: expected an https:// URL")
        print(f"deploying the Broker (namespace {args.broker_namespace}) ...", flush=True)
        info = install.deploy_broker(api, server=server, globalnet=args.globalnet,
                                     cidr_range=args.globalnet_cidr_range,
                                     cluster_size=args.default_globalnet_cluster_size,
                                     namespace=args.broker_namespace)
        if info.globalnet:
            print(f"Globalnet: range {info.globalnet_cidr_range}, "
                  f"{info.globalnet_cluster_size} global IPs per cluster")
            if args.globalnet and (info.globalnet_cidr_range,
                                   info.globalnet_cluster_size) != (
                    args.globalnet_cidr_range, args.default_globalnet_cluster_size):
                print("note: the Broker already had a Globalnet record; it was kept as it is")
        info.write(args.out)
        print(f"broker-info written to {args.out} (Broker {server}); keep it safe: it "
              "lets its holder join clusters")
        return 0

    return _run(step)


def cmd_join(args: argparse.Namespace) -> int:
    from deploy import brokerinfo, install, manifests

    def step() -> int:
        info = brokerinfo.read(args.broker_info)
        opts = install.JoinOptions(
            cluster_id=args.cluster_id, cluster_cidrs=tuple(args.cluster_cidr or ()),
            service_cidrs=tuple(args.service_cidr or ()), globalnet_cidr=args.globalnet_cidr,
            globalnet_cluster_size=args.globalnet_cluster_size, image=args.image,
            datapath=args.datapath, api_server=args.api_server,
            dns_service_ip=args.dns_service_ip, gateway_node=args.gateway_node,
            verbose_agents=args.verbose_agents, wait_timeout=args.timeout,
            dry_run=args.dry_run)
        _precheck(opts)
        cluster = _api(args.kubeconfig, args.context)
        say = (lambda line: print(f"# {line}", file=sys.stderr)) if args.dry_run else print
        say(f"joining {opts.cluster_id} to the clusterset of {info.server} ...")
        result = install.join(cluster, info, opts, progress=say,
                              broker_server=args.local_broker_url)
        if args.dry_run:
            sys.stdout.write(manifests.to_yaml(result.objects))
            say(f"dry run: {len(result.objects)} objects, global CIDR {result.global_cidr}; "
                "nothing was changed")
            return 0
        print(f"{result.cluster_id} joined: global CIDR {result.global_cidr}; members: "
              f"{', '.join(result.members)}")
        return 0

    return _run(step)


def _precheck(opts: Any) -> None:
    """Flags that can be judged without a cluster, refused before connecting."""
    from gateway.clusterset import JoinRequest, validate_request

    validate_request(JoinRequest(
        cluster_id=opts.cluster_id, cluster_cidrs=opts.cluster_cidrs,
        service_cidrs=opts.service_cidrs, globalnet_cidr=opts.globalnet_cidr,
        globalnet_cluster_size=opts.globalnet_cluster_size), cidrs_pending=True)
    if opts.wait_timeout <= 0:
        from deploy.install import InstallError

        raise InstallError(f"--timeout {opts.wait_timeout:g} must be positive")


def cmd_leave(args: argparse.Namespace) -> int:
    from deploy import brokerinfo, install

    def step() -> int:
        info = brokerinfo.read(args.broker_info)
        cluster = (_api(args.kubeconfig or _kubeconfig_default(), args.context)
                   if args.kubeconfig or args.context else None)
        if install.leave(cluster, info, args.cluster_id, broker_server=args.local_broker_url):
            print(f"{args.cluster_id} left the clusterset: Broker identity revoked, Cluster "
                  "object withdrawn, global CIDR released")
        else:
            print(f"{args.cluster_id} was not a member: nothing to do")
        return 0

    return _run(step)


def cmd_uninstall(args: argparse.Namespace) -> int:
    from deploy import brokerinfo, install

    def step() -> int:
        if (args.broker_info is None) != (args.cluster_id is None):
            return _fail("uninstall: give BROKER_INFO and --clusterid together (to leave "
                         "first), or neither")
        cluster = _api(args.kubeconfig, args.context)
        if args.broker_info is not None:
            info = brokerinfo.read(args.broker_info)
            install.leave(cluster, info, args.cluster_id, broker_server=args.local_broker_url)
            print(f"{args.cluster_id} left the clusterset")
        install.uninstall(cluster)
        return 0

    return _run(step)
