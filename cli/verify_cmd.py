"""`gnctl verify` and `gnctl benchmark throughput|latency`: a clusterset tested
from the outside (the `verify` package), with a table on stdout.

Progress goes to stderr, so stdout holds only the table (and, for `benchmark`
and `-o json`, the JSON line). SIGTERM is taken as Ctrl-C: either way the test
namespace is deleted before the command ends (exit 130).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from rich.table import Table

from cli import clusterpair
from cli.console import console

SUITE_NAMES = ("connectivity", "service-discovery", "gateway-failover")  # verify.runner.SUITES


def register(sub: Any) -> None:
    verify = sub.add_parser(
        "verify", help="test connectivity and service discovery between two clusters",
        description="Run subctl's E2E scenarios against a live clusterset from outside: a "
        "test namespace with server and probe pods in both clusters, TCP to the other "
        "cluster's services by global IP and by clusterset name from gateway and "
        "non-gateway nodes, the source IP the server sees, headless services, local "
        "preference and unexport; removed afterwards. Exits 1 if any check fails.")
    clusterpair.add_flags(verify)
    verify.add_argument("--only", action="append", type=suite_list, metavar="SUITE",
                        help=f"run only these suites ({', '.join(SUITE_NAMES)}); repeatable, "
                             "or comma-separated")
    verify.add_argument("--disruptive", action="store_true",
                        help="also run gateway-failover: delete the target's active gateway "
                             "pod and check that connectivity comes back")
    verify.add_argument("-o", "--output", choices=["table", "json"], default="table")
    verify.set_defaults(func=cmd_verify)

    bench = sub.add_parser("benchmark", help="throughput and latency between two clusters",
                           description="Pod-to-pod figures through Globalnet, gateway to "
                           "gateway and non-gateway to non-gateway, beside a pair inside one "
                           "cluster as reference; a table, then one JSON line.")
    kinds = bench.add_subparsers(dest="benchmark", metavar="KIND", required=True)
    tput = kinds.add_parser("throughput", help="iperf3, one TCP stream")
    clusterpair.add_flags(tput)
    tput.add_argument("--seconds", type=clusterpair.bounded_int(1, 120), default=5,
                      help="length of each iperf3 run (default 5)")
    tput.set_defaults(func=cmd_benchmark, kind="throughput")
    lat = kinds.add_parser("latency", help="TCP request/response round trips")
    clusterpair.add_flags(lat)
    lat.add_argument("--count", type=clusterpair.bounded_int(10, 100000), default=1000,
                     help="round trips per pair (default 1000)")
    lat.add_argument("--size", type=clusterpair.bounded_int(1, 65536), default=1,
                     help="bytes per request and response (default 1)")
    lat.set_defaults(func=cmd_benchmark, kind="latency")


def suite_list(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in SUITE_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown suite {(bad or [value])[0]!r} (suites: "
                                         f"{', '.join(SUITE_NAMES)})")
    return names


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _sigterm_as_interrupt() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def cmd_verify(args: argparse.Namespace) -> int:
    from verify import results, runner

    only = [n for group in args.only or [] for n in group] or None
    suites = runner.select(only, disruptive=args.disruptive)
    _sigterm_as_interrupt()
    source, target = clusterpair.clusters(args, _progress)
    _progress(f"verifying {source.cluster_id} -> {target.cluster_id}: {', '.join(suites)}")
    rows = runner.run(source, target, suites, image=args.image, timeout=args.timeout,
                      progress=_progress)
    ok = results.passed(rows)
    if args.output == "json":
        print(json.dumps({"passed": ok, "counts": results.counts(rows),
                          "results": [r.to_dict() for r in rows]}))
        return 0 if ok else 1
    table = Table("suite", "check", "path", "client node", "result", "detail", "s",
                  title=f"gnctl verify {source.cluster_id} -> {target.cluster_id}")
    colour = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}
    for r in rows:
        table.add_row(r.suite, r.check, r.path, r.node,
                      f"[{colour[str(r.outcome)]}]{r.outcome}[/]", r.detail,
                      f"{r.seconds:.1f}" if r.seconds else "")
    out = console()
    out.print(table)
    n = results.counts(rows)
    out.print(f"{n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped")
    return 0 if ok else 1


def cmd_benchmark(args: argparse.Namespace) -> int:
    from verify import benchmark

    _sigterm_as_interrupt()
    source, target = clusterpair.clusters(args, _progress)
    settings = benchmark.Settings(kind=args.kind, seconds=getattr(args, "seconds", 5),
                                  count=getattr(args, "count", 1000),
                                  size=getattr(args, "size", 1), timeout=args.timeout)
    figures = benchmark.run(source, target, settings, image=args.image, progress=_progress)
    if args.kind == "throughput":
        table = Table("pair", "client", "server", "via", "Mbit/s", "retransmits", "note",
                      title=f"throughput {source.cluster_id} -> {target.cluster_id}")
        for f in figures:
            table.add_row(f.pair, f.client, f.server, f"{f.via} {f.address}",
                          str(f.values.get("mbps", "-")), str(f.values.get("retransmits", "-")),
                          f.error)
    else:
        table = Table("pair", "client", "server", "via", "p50 µs", "p90 µs", "p99 µs",
                      "trans/s", "note",
                      title=f"latency {source.cluster_id} -> {target.cluster_id} "
                            f"({settings.count} round trips of {settings.size} B)")
        for f in figures:
            v = f.values
            table.add_row(f.pair, f.client, f.server, f"{f.via} {f.address}",
                          *(str(v.get(k, "-")) for k in ("p50_us", "p90_us", "p99_us", "tps")),
                          f.error)
    console().print(table)
    print(json.dumps({"benchmark": args.kind, "source": source.cluster_id,
                      "target": target.cluster_id,
                      "pairs": [f.to_dict() for f in figures]}), flush=True)
    return 1 if any(f.error for f in figures) else 0
