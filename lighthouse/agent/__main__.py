"""Run one cluster's Lighthouse agent: ``python -m lighthouse.agent``.

    python -m lighthouse.agent --kubeconfig K --broker-kubeconfig B --cluster-id C \\
        [--broker-namespace N] [--dns-listen 127.0.0.1:5353] [--no-globalnet] [--leave] \\
        [--metrics-port 29783] [--clusterset-ip-cidr 244.0.0.0/20] [--clusterset-ip-enabled]

Runs the exporter, the importer and the DNS feed until SIGINT/SIGTERM. With
``--dns-listen`` the clusterset DNS server (``lighthouse.dns``) answers from the
agent's store in the same process, on its own event-loop thread (the agent's
controllers are threads; the server's answer path never waits on them). With
``--leave`` it withdraws everything the cluster published on the Broker and the
imports it made locally, then exits. ``--metrics-port`` serves the agent's metrics
(``lighthouse.agent.metrics``) and, with ``--dns-listen``, the DNS server's
(``lighthouse.dns.metrics``) on one port.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kube import daemon, names
from lighthouse.agent.agent import (
    AgentConfig,
    LighthouseAgent,
    remove_imports,
    remove_vip_table,
    withdraw_cluster,
)
from lighthouse.dns.__main__ import listen_address

log = logging.getLogger("lighthouse.agent")


def slice_cidr(value: str) -> str:
    """argparse type: a network in CIDR form (one line on a mistake)."""
    from globalnet.cidr_allocation import CidrAllocationError, parse_network

    try:
        return str(parse_network(value, "ClusterSetIP CIDR").cidr)
    except CidrAllocationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lighthouse.agent",
                                description="Lighthouse agent for one cluster")
    p.add_argument("--kubeconfig", type=Path, required=True, help="the cluster's kubeconfig")
    p.add_argument("--broker-kubeconfig", type=Path, required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--broker-namespace", default=names.BROKER_NAMESPACE)
    p.add_argument("--no-globalnet", dest="globalnet", action="store_false",
                   help="publish ClusterIPs and pod IPs instead of global IPs")
    p.add_argument("--clusterset-ip-cidr", type=slice_cidr, metavar="CIDR",
                   help="this cluster's slice of the Broker's ClusterSetIP pool: ClusterSetIP "
                        "exports pick their VIP here when no older export holds one")
    p.add_argument("--clusterset-ip-enabled", action="store_true",
                   help="answer every ClusterSetIP service's VIP in DNS, not only the services "
                        "whose ServiceExport sets lighthouse.submariner.io/use-clusterset-ip")
    p.add_argument("--no-vip-table", dest="vip_table", action="store_false",
                   help="do not write the cluster's VIP table ConfigMap (the route agents "
                        "route the ClusterSetIP VIPs from it)")
    p.add_argument("--dns-listen", type=listen_address, metavar="HOST:PORT",
                   help="also serve clusterset DNS from the agent's records here")
    p.add_argument("--zone", default="clusterset.local")
    p.add_argument("--leave", action="store_true",
                   help="withdraw everything this cluster published, then exit")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics (the DNS server's too) on this port (0: off)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    daemon.setup_logging(args.verbose)
    from kube.client import new_api_client

    local_api = new_api_client(args.kubeconfig)
    broker_api = new_api_client(args.broker_kubeconfig)
    if args.leave:
        removed = withdraw_cluster(broker_api, cluster_id=args.cluster_id,
                                   namespace=args.broker_namespace)
        local = remove_imports(local_api, broker_namespace=args.broker_namespace)
        remove_vip_table(local_api)
        print(f"{args.cluster_id}: withdrew {removed} Broker objects, removed {local} imports")
        return 0
    agent = LighthouseAgent(local_api=local_api, broker_api=broker_api, config=AgentConfig(
        cluster_id=args.cluster_id, broker_namespace=args.broker_namespace,
        globalnet=args.globalnet, clusterset_ip_cidr=args.clusterset_ip_cidr,
        clusterset_ip_enabled=args.clusterset_ip_enabled, vip_table=args.vip_table))
    dns = None
    if args.dns_listen is not None:
        from lighthouse.dns.server import DnsServer, ServerConfig, ServerThread

        host, port = args.dns_listen
        dns = ServerThread(DnsServer(agent.records, config=ServerConfig(
            host=host, port=port, zone=args.zone)))
        dns.start()
        log.info("clusterset DNS for %s on %s:%d", args.zone, host, dns.server.port)
    if args.metrics_port:
        from kube import metrics as kube_metrics
        from lighthouse.agent import metrics
        from lighthouse.dns import metrics as dns_metrics

        metrics.register(agent.records)
        if dns is not None:
            dns_metrics.register(dns.server.metrics)
        kube_metrics.serve(args.metrics_port, what="lighthouse agent")
    done = daemon.stop_requested()
    try:
        agent.start()
        # The one line scripts wait for (the DNS port matters with --dns-listen HOST:0).
        where = f"; DNS on {args.dns_listen[0]}:{dns.server.port}" if dns is not None else ""
        print(f"lighthouse agent of {args.cluster_id} running{where}", flush=True)
        done.wait()
    finally:
        agent.stop()
        if dns is not None:
            dns.stop()
        local_api.close()  # type: ignore[no-untyped-call]
        broker_api.close()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main())
