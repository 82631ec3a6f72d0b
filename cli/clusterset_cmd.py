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
import ipaddress
import math
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cli import kubeargs
from datapath import cable_drivers
from globalnet.cidr_allocation import (
    DEFAULT_CIDR_RANGE,
    DEFAULT_CLUSTER_SIZE,
    DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE,
    DEFAULT_CLUSTERSET_IP_RANGE,
)
from kube import names, validation

# An image reference as the distribution spec writes it: an optional registry (with a
# dot or a port, or localhost), lower-case path components, then a tag and/or digest.
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    r"^(?:(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?::[0-9]+)?/|[A-Za-z0-9-]+:[0-9]+/)?"
    rf"{_IMAGE_PATH}(?:/{_IMAGE_PATH})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")


def https_url(value: str) -> str:
    """An argparse type: an https:// URL with a host and nothing odd (spaces, a query,
    credentials), refused as a usage error before anything is contacted."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number or too big
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value) \
            or parts.query or parts.fragment or parts.username:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an https://HOST[:PORT] URL")
    return value


def register(sub: Any) -> None:
    from deploy import install, manifests
    from deploy.brokerinfo import DEFAULT_FILE

    broker = sub.add_parser(
        "deploy-broker", help="make a cluster the clusterset's Broker",
        description="Install the CRDs, the Broker namespace and its roles on the Broker's "
                    "API server, record the clusterset's global range (with --globalnet) and "
                    "write the broker-info file members join with. Running it again keeps "
                    "what is recorded and writes the file again.")
    kubeargs.add_flags(broker, "the Broker cluster")
    broker.add_argument("--globalnet", action="store_true",
                        help="clusters get global CIDRs: for overlapping pod/service CIDRs")
    broker.add_argument("--globalnet-cidr-range", default=DEFAULT_CIDR_RANGE,
                        help=f"range the global CIDRs come from (default {DEFAULT_CIDR_RANGE})")
    broker.add_argument("--default-globalnet-cluster-size", type=int,
                        default=DEFAULT_CLUSTER_SIZE,
                        help="global IPs per cluster, rounded up to a power of two "
                             f"(default {DEFAULT_CLUSTER_SIZE})")
    broker.add_argument("--clusterset-ip-cidr-range", default=DEFAULT_CLUSTERSET_IP_RANGE,
                        help="range the ClusterSetIP VIPs come from, disjoint from the global "
                             f"range and every member's CIDRs (default "
                             f"{DEFAULT_CLUSTERSET_IP_RANGE})")
    broker.add_argument("--clusterset-ip-cluster-size", type=int,
                        default=DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE,
                        help="VIPs per cluster's slice, rounded up to a power of two (default "
                             f"{DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE})")
    broker.add_argument("--enable-clusterset-ip", action="store_true",
                        help="every ClusterSetIP service answers its VIP in DNS (default: "
                             "only services annotated for it)")
    broker.add_argument("--broker-api-server", metavar="URL", type=https_url,
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
    kubeargs.add_flags(join, "the joining cluster")
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
    join.add_argument("--cable-driver", choices=cable_drivers.names(),
                      default=cable_drivers.DEFAULT,
                      help="the tunnel between gateways; every member of a clusterset uses "
                           f"the same (default {cable_drivers.DEFAULT})")
    join.add_argument("--datapath", choices=manifests.DATAPATHS, default="nftables",
                      help="Globalnet's datapath on the gateway (default nftables)")
    join.add_argument("--image", default=manifests.DEFAULT_IMAGE,
                      help=f"the agents' image (default {manifests.DEFAULT_IMAGE})")
    join.add_argument("--gateway-node", metavar="NODE", action="append",
                      help=f"label this node {names.GATEWAY_SELECTOR}; repeat for standby "
                           "gateways, one is active at a time (default: the nodes already "
                           "labelled)")
    join.add_argument("--api-server", default=manifests.DEFAULT_API_SERVER, metavar="URL",
                      type=https_url,
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
    kubeargs.add_flags(leave, "the leaving cluster",
                       kubeconfig_help="the leaving cluster's kubeconfig, to drop its copies "
                                       "of the members too (default, without --context: "
                                       "change the Broker only)")
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
    kubeargs.add_flags(uninstall, "the cluster")
    uninstall.add_argument("--clusterid", "--cluster-id", dest="cluster_id")
    _local_broker_flag(uninstall)
    uninstall.set_defaults(func=cmd_uninstall)


def _local_broker_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local-broker-url", metavar="URL", type=https_url,
                        help="where this machine reaches the Broker, when not at the "
                             "broker-info's URL (a port forward, the lab's relay); the "
                             "members keep the broker-info's URL")


def _fail(message: str) -> int:
    print(f"gnctl: {message}", file=sys.stderr)
    return 1


def _check_out(path: Path) -> None:
    """Refuse an --out that cannot be written before the Broker is deployed, not after."""
    from deploy.install import InstallError

    if path.is_dir():
        raise InstallError(f"--out {path} is a directory; name the broker-info file to write")
    folder = path.parent
    if not folder.is_dir():
        raise InstallError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InstallError(f"--out {path}: not writable")


def _check_cluster_id(cluster_id: str) -> None:
    """A cluster ID that is not a DNS label never reaches a URL or an object name."""
    from gateway.clusterset import JoinRequest, validate_request

    validate_request(JoinRequest(cluster_id=cluster_id, cluster_cidrs=(), service_cidrs=()),
                     cidrs_pending=True)


def cmd_deploy_broker(args: argparse.Namespace) -> int:
    """Every flag is checked before the cluster is contacted: a refused value changes
    nothing."""
    from deploy import install
    from globalnet.cidr_allocation import validate_range

    if not validation.is_dns_label(args.broker_namespace):  # before the Broker is touched
        raise install.InstallError(f"--broker-namespace {args.broker_namespace!r} is not a "
                                   "namespace name (a DNS label)")
    from gateway.clusterset import ClustersetIPPool

    validate_range(args.globalnet_cidr_range, args.default_globalnet_cluster_size)
    validate_range(args.clusterset_ip_cidr_range, args.clusterset_ip_cluster_size,
                   what="ClusterSetIP CIDR")
    _check_out(args.out)
    api = kubeargs.api_client(args)
    server = args.broker_api_server or kubeargs.server_of(args)
    if not server.startswith("https://"):
        return _fail(f"the kubeconfig's server {server!r} is not https://; pass "
                     "--broker-api-server https://HOST:PORT as the members reach it")
    print(f"deploying the Broker (namespace {args.broker_namespace}) ...", flush=True)
    info = install.deploy_broker(api, server=server, globalnet=args.globalnet,
                                 cidr_range=args.globalnet_cidr_range,
                                 cluster_size=args.default_globalnet_cluster_size,
                                 clusterset_ips=ClustersetIPPool(
                                     cidr_range=args.clusterset_ip_cidr_range,
                                     cluster_size=args.clusterset_ip_cluster_size,
                                     enabled=args.enable_clusterset_ip),
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


def cmd_join(args: argparse.Namespace) -> int:
    from deploy import brokerinfo, install, manifests

    info = brokerinfo.read(args.broker_info)
    opts = install.JoinOptions(
        cluster_id=args.cluster_id, cluster_cidrs=tuple(args.cluster_cidr or ()),
        service_cidrs=tuple(args.service_cidr or ()), globalnet_cidr=args.globalnet_cidr,
        globalnet_cluster_size=args.globalnet_cluster_size, image=args.image,
        datapath=args.datapath, cable_driver=args.cable_driver, api_server=args.api_server,
        dns_service_ip=args.dns_service_ip, gateway_nodes=tuple(args.gateway_node or ()),
        verbose_agents=args.verbose_agents, wait_timeout=args.timeout,
        dry_run=args.dry_run)
    _precheck(opts)
    cluster = kubeargs.api_client(args)
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


def _precheck(opts: Any) -> None:
    """Flags that can be judged without a cluster, refused before connecting."""
    from gateway.clusterset import JoinRequest, validate_request

    validate_request(JoinRequest(
        cluster_id=opts.cluster_id, cluster_cidrs=opts.cluster_cidrs,
        service_cidrs=opts.service_cidrs, globalnet_cidr=opts.globalnet_cidr,
        globalnet_cluster_size=opts.globalnet_cluster_size), cidrs_pending=True)
    from deploy.install import InstallError

    if not 0 < opts.wait_timeout < math.inf:  # also refuses nan
        raise InstallError(f"--timeout {opts.wait_timeout:g} must be positive: a finite "
                           "number of seconds")
    if not _IMAGE.match(opts.image) or not re.search(r"(:[^/]+|@sha256:[0-9a-f]+)$",
                                                      opts.image):
        raise InstallError(f"--image {opts.image!r} is not an image reference "
                           "(REGISTRY/REPOSITORY:TAG, lower-case repository)")
    for node in opts.gateway_nodes:
        if not validation.is_dns_subdomain(node):
            raise InstallError(f"--gateway-node {node!r} is not a node name")
    if opts.dns_service_ip is not None:
        try:
            ipaddress.ip_address(opts.dns_service_ip)
        except ValueError:
            raise InstallError(f"--dns-service-ip {opts.dns_service_ip!r} is not an IP "
                               "address") from None


def cmd_leave(args: argparse.Namespace) -> int:
    from deploy import brokerinfo, install

    _check_cluster_id(args.cluster_id)
    info = brokerinfo.read(args.broker_info)
    cluster = kubeargs.api_client(args) if args.kubeconfig or args.context else None
    if install.leave(cluster, info, args.cluster_id, broker_server=args.local_broker_url):
        print(f"{args.cluster_id} left the clusterset: Broker identity revoked, Cluster "
              "object withdrawn, global CIDR released")
    else:
        print(f"{args.cluster_id} was not a member: nothing to do")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    from deploy import brokerinfo, install

    if (args.broker_info is None) != (args.cluster_id is None):
        return _fail("uninstall: give BROKER_INFO and --clusterid together (to leave "
                     "first), or neither")
    info = None
    if args.broker_info is not None:
        _check_cluster_id(args.cluster_id)
        info = brokerinfo.read(args.broker_info)
    cluster = kubeargs.api_client(args)
    if info is not None:
        install.leave(cluster, info, args.cluster_id, broker_server=args.local_broker_url)
        print(f"{args.cluster_id} left the clusterset")
    install.uninstall(cluster)
    return 0
