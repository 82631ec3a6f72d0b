"""Run the clusterset DNS server standalone: ``python -m lighthouse.dns``.

Serves the records of a JSON file (see ``recordsfile.py``), reloaded on SIGHUP;
in a cluster the Lighthouse agent runs the same server in-process and feeds the
store from the API instead. Stops on SIGINT/SIGTERM.

    python -m lighthouse.dns --listen 127.0.0.1:5353 --zone clusterset.local \\
        --records-file records.json --metrics-port 9153
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from lighthouse.dns import metrics as dns_metrics
from lighthouse.dns import recordsfile
from lighthouse.dns.records import ServiceRecords
from lighthouse.dns.server import DnsServer, ServerConfig

log = logging.getLogger("lighthouse.dns")


def listen_address(value: str) -> tuple[str, int]:
    """argparse type for HOST:PORT (IPv6 hosts in brackets)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lighthouse.dns", description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=listen_address, default=("127.0.0.1", 5353),
                   metavar="HOST:PORT")
    p.add_argument("--zone", default="clusterset.local")
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--records-file", type=Path, help="JSON records to serve (SIGHUP reloads)")
    p.add_argument("--local-cluster", help="overrides the file's local_cluster")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--io", choices=["auto", "mmsg", "plain"], default="auto")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _load(args: argparse.Namespace, records: ServiceRecords) -> None:
    if args.records_file is not None:
        recordsfile.load(args.records_file, records)
    if args.local_cluster:
        records.set_local_cluster(cluster=args.local_cluster)
    log.info("%d services loaded (generation %d)", len(records), records.generation)


async def serve(args: argparse.Namespace) -> None:
    records = ServiceRecords()
    _load(args, records)
    host, port = args.listen
    server = DnsServer(
        records,
        config=ServerConfig(host=host, port=port, zone=args.zone, ttl=args.ttl, io=args.io),
    )
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        dns_metrics.register(server.metrics)
        start_http_server(args.metrics_port, addr=args.metrics_host)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        try:
            _load(args, records)
        except (OSError, ValueError, KeyError) as exc:
            log.error("reload failed, keeping the previous records: %s", exc)

    loop.add_signal_handler(signal.SIGHUP, reload)
    async with server:
        # The one line scripts wait for: the port is bound for UDP and TCP.
        print(f"listening on {host}:{server.port} ({server.io_mode} udp, tcp)", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
