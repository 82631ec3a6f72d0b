"""Clusterset DNS server vs NSD under dnsperf, and export-to-resolvable latency.

Run as ``python -m bench.dns`` (``make bench-dns``). Needs Debian's ``nsd`` and
``dnsperf``, and the control-plane binaries (``make k8s``). What it does:

1. Builds a clusterset (services over three clusters: ClusterIP exported by the
   local cluster and a remote one, ClusterIP exported only by remote clusters so
   answers round-robin, headless with hostnames) and a query file mixing every
   name form: service A, cluster A, hostname A, SRV, AAAA (NODATA), NXDOMAIN.
2. Starts our server (``python -m lighthouse.dns``, its own process, like NSD)
   and writes NSD's zone from *our* answers to the query set, so both serve the
   same records; then checks that both give the same rcode and record count to
   every query.
3. Runs dnsperf against each, alternating rounds so both see the same background
   load, with ``-v`` so every answer's latency is known: prints queries/s, p50 and
   p99 latency, lost queries and server CPU time per query (how much of a core
   each answer costs: the figure that does not depend on dnsperf's own ceiling).
4. Measures export-to-store in-process: from ``upsert_service`` returning (the
   name was just answered NXDOMAIN, so that answer was cached) to the first
   correct UDP answer, median over ``--trials``. The server's share of step 5.
5. Measures export-to-resolvable across two clusters on the real API servers
   (``lab.apiclusterset``: Broker, east and west control planes, Globalnet and a
   Lighthouse agent per cluster, in this process): a Service backed by a ready
   pod exists in west; from creating its ServiceExport to the first UDP answer,
   from a DNS server on east's store, carrying west's global IP. Median and p90
   over ``--cross-trials``; every answer is checked against west's
   GlobalIngressIP.

Both dnsperf servers are single-process (NSD's default ``server-count: 1``) on
loopback. NSD runs unprivileged-style from a temp dir (no chroot, no user switch,
pid and state files in the temp dir, rate limiting off) and is stopped by its
PID, as are the control planes, also on errors and on SIGTERM or SIGHUP (which
raise SystemExit here so that every cleanup runs).

Ends with one line of JSON: qps, reference_qps, ratio, p99_ms,
export_to_resolve_p50_ms (across clusters), export_to_store_p50_ms (in-process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lab import processes
from lab.apiclusterset import ApiCluster, ApiClusterset, ClustersetConfig
from lab.controlplane import ControlPlaneError, find_binary
from lab.ports import free_port
from lighthouse.dns import recordsfile
from lighthouse.dns.records import ClusterExport, Endpoint, ServicePort, ServiceRecords
from lighthouse.dns.server import DnsServer, ServerConfig, ServerThread

ZONE = "clusterset.local"
LOCAL, REMOTES = "east", ("west", "north")


# -- the clusterset and the queries ---------------------------------------------


def build_records(namespaces: int, per_namespace: int) -> ServiceRecords:
    """A clusterset: 60% local+remote ClusterIP, 20% remote-only, 20% headless."""
    records = ServiceRecords(local_cluster=LOCAL)
    http = (ServicePort(port=80, protocol="TCP", name="http"),)
    for n in range(namespaces):
        ns = f"team-{n}"
        for s in range(per_namespace):
            name = f"svc-{s}"
            ip_tail = f"{n}.{s}"
            kind = s % 5
            if kind < 3:
                exports = [
                    ClusterExport(cluster=LOCAL, global_ip=f"242.0.{ip_tail}", ports=http),
                    ClusterExport(cluster=REMOTES[0], global_ip=f"242.1.{ip_tail}", ports=http),
                ]
            elif kind == 3:
                exports = [
                    ClusterExport(cluster=c, global_ip=f"242.{i + 1}.{ip_tail}", ports=http)
                    for i, c in enumerate(REMOTES)
                ]
            else:
                endpoints = tuple(
                    Endpoint(ip=f"242.2.{n}.{s * 3 + k}", hostname=f"{name}-{k}") for k in range(3)
                )
                exports = [ClusterExport(cluster=REMOTES[1], endpoints=endpoints, ports=http)]
            for export in exports:
                records.upsert_service(namespace=ns, name=name, export=export)
    return records


def build_queries(records: ServiceRecords, count: int, seed: int = 7) -> list[tuple[str, str]]:
    """A shuffled mix of every name form the server answers."""
    rng = random.Random(seed)
    keys = records.services()
    out: list[tuple[str, str]] = []
    for _ in range(count):
        ns, name = rng.choice(keys)
        base = f"{name}.{ns}.svc.{ZONE}"
        exports = list(records.get_service(namespace=ns, name=name).values())
        export = rng.choice(exports)
        roll = rng.random()
        if roll < 0.60:
            out.append((base, "A"))
        elif roll < 0.70:
            out.append((f"_http._tcp.{base}", "SRV"))
        elif roll < 0.80:
            if export.headless:
                host = rng.choice(export.endpoints).dns_name
                out.append((f"{host}.{export.cluster}.{base}", "A"))
            else:
                out.append((f"{export.cluster}.{base}", "A"))
        elif roll < 0.90:
            out.append((base, "AAAA"))
        else:
            out.append((f"missing-{rng.randrange(50)}.{ns}.svc.{ZONE}", "A"))
    return out


# -- servers ------------------------------------------------------------------


@contextmanager
def ours(records_file: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lighthouse.dns", "--listen", f"127.0.0.1:{port}",
         "--zone", ZONE, "--records-file", str(records_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"our server did not start: {line!r}")
        print(f"  ours: {line.strip()} (pid {proc.pid})", flush=True)
        yield proc
    finally:
        processes.terminate(proc)


NSD_CONF = """\
server:
  ip-address: 127.0.0.1
  port: {port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "{dir}"
  pidfile: "{dir}/nsd.pid"
  database: ""
  xfrdfile: "{dir}/xfrd.state"
  zonelistfile: "{dir}/zone.list"
  logfile: "{dir}/nsd.log"
  hide-version: yes
  do-ip6: no
  minimal-responses: yes
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: {zone}
  zonefile: "{zone}.zone"
"""


@contextmanager
def nsd(zone_text: str, port: int, workdir: Path) -> Iterator[subprocess.Popen[str]]:
    """NSD in the foreground (-d) from ``workdir``; stopped by its PID."""
    d = workdir / "nsd"
    d.mkdir()
    (d / f"{ZONE}.zone").write_text(zone_text)
    conf = d / "nsd.conf"
    conf.write_text(NSD_CONF.format(port=port, dir=d, zone=ZONE))
    proc = subprocess.Popen(
        ["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        probe = dns.message.make_query(ZONE, "SOA")
        deadline = time.monotonic() + 20
        while True:
            try:
                dns.query.udp(probe, "127.0.0.1", port=port, timeout=0.2)
                break
            except (dns.exception.Timeout, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (d / "nsd.log").read_text() if (d / "nsd.log").exists() else ""
                    raise RuntimeError(f"nsd did not start: {log[-500:]}") from None
        print(f"  nsd: listening on 127.0.0.1:{port} (pid {proc.pid})", flush=True)
        yield proc
    finally:
        processes.terminate(proc)


def zone_from_answers(queries: list[tuple[str, str]], port: int) -> str:
    """NSD's zone: the SOA plus every record our server gives to the query set.

    Round-robin names get the one variant their own query returned: SRV glue is
    only added for names no answer covered, or NSD would hold two A records.
    """
    soa = dns.query.tcp(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", port=port, timeout=5)
    rrsets: dict[tuple[str, int], str] = {}
    glue: dict[tuple[str, int], str] = {}
    for name, qtype in sorted(set(queries)):
        query = dns.message.make_query(name, qtype)
        reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=5)
        for rrset in reply.answer:
            rrsets[(rrset.name.to_text().lower(), rrset.rdtype)] = rrset.to_text()
        for rrset in reply.additional:
            glue.setdefault((rrset.name.to_text().lower(), rrset.rdtype), rrset.to_text())
    for key, text in glue.items():
        rrsets.setdefault(key, text)
    ns_record = f"{ZONE}. 5 IN NS ns.dns.{ZONE}."
    head = [f"$ORIGIN {ZONE}.", "$TTL 5", soa.answer[0].to_text(), ns_record]
    return "\n".join(head + sorted(rrsets.values())) + "\n"


def compare(queries: list[tuple[str, str]], port_a: int, port_b: int) -> int:
    """How many distinct queries get a different rcode or record count."""
    differ = 0
    for name, qtype in sorted(set(queries)):
        q = dns.message.make_query(name, qtype)
        a = dns.query.udp(q, "127.0.0.1", port=port_a, timeout=2)
        b = dns.query.udp(q, "127.0.0.1", port=port_b, timeout=2)
        shape_a = (a.rcode(), sum(len(r) for r in a.answer), bool(a.authority))
        shape_b = (b.rcode(), sum(len(r) for r in b.answer), bool(b.authority))
        if shape_a != shape_b:
            differ += 1
            print(f"  differs: {name} {qtype}: ours {shape_a} nsd {shape_b}")
    return differ


# -- dnsperf ------------------------------------------------------------------


@dataclass
class Run:
    queries: int = 0
    seconds: float = 0.0
    lost: int = 0
    cpu_seconds: float = 0.0
    latencies: list[float] | None = None

    @property
    def qps(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        lat = sorted(self.latencies or [])
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (NSD forks main and server)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    ticks, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            ticks += int(stats[p][11]) + int(stats[p][12])
        todo.extend(children.get(p, []))
    return ticks / os.sysconf("SC_CLK_TCK")


_LATENCY = re.compile(rb"^> \S+ \S+ \S+ ([0-9.]+)$", re.M)


def dnsperf(
    port: int, query_file: Path, seconds: float, outstanding: int, pid: int, run: Run
) -> None:
    cpu0 = cpu_seconds(pid)
    with tempfile.TemporaryFile() as out:
        subprocess.run(
            ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file),
             "-l", str(seconds), "-q", str(outstanding), "-v"],
            stdout=out, stderr=subprocess.STDOUT, check=True,
        )
        run.cpu_seconds += cpu_seconds(pid) - cpu0
        out.seek(0)
        text = out.read()
    summary = text[text.rfind(b"Statistics:"):].decode()
    run.queries += int(re.search(r"Queries completed:\s+(\d+)", summary).group(1))  # type: ignore[union-attr]
    run.lost += int(re.search(r"Queries lost:\s+(\d+)", summary).group(1))  # type: ignore[union-attr]
    run.seconds += float(re.search(r"Run time \(s\):\s+([0-9.]+)", summary).group(1))  # type: ignore[union-attr]
    run.latencies = (run.latencies or []) + [float(x) for x in _LATENCY.findall(text)]


# -- export to resolvable -------------------------------------------------------


def export_to_store(trials: int) -> list[float]:
    """Milliseconds from upsert_service returning to the first correct UDP answer.

    The name was queried just before (NXDOMAIN, now cached), so this includes the
    invalidation. The client checks the answer's last 4 bytes (the A record's
    address) rather than parsing, to time the server and not the client.
    """
    records = ServiceRecords(local_cluster=LOCAL)
    records.upsert_service(
        namespace="bench", name="seed", export=ClusterExport(cluster=LOCAL, global_ip="242.0.0.1")
    )
    out: list[float] = []
    with ServerThread(DnsServer(records, config=ServerConfig(port=0))) as thread, socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM
    ) as sock:
        sock.settimeout(1.0)
        sock.connect(("127.0.0.1", thread.server.port))
        for i in range(trials):
            ip = f"242.1.1.{i % 250 + 1}"
            wire = dns.message.make_query(f"fresh-{i}.bench.svc.{ZONE}", "A").to_wire()
            sock.send(wire)
            first = dns.message.from_wire(sock.recv(512))
            assert first.rcode() == dns.rcode.NXDOMAIN, first
            want = socket.inet_aton(ip)
            start = time.perf_counter()
            records.upsert_service(
                namespace="bench", name=f"fresh-{i}",
                export=ClusterExport(cluster=REMOTES[0], global_ip=ip),
            )
            while True:
                sock.send(wire)
                reply = sock.recv(512)
                if reply[3] & 0x0F == 0 and reply[7] == 1 and reply[-4:] == want:
                    break
            out.append((time.perf_counter() - start) * 1e3)
        if thread.errors:
            raise RuntimeError(f"server loop errors: {thread.errors}")
    return out

def _answered(reply: bytes, query_id: bytes) -> bool:
    """A NOERROR reply to this query with at least one answer record (header only)."""
    return reply[:2] == query_id and reply[3] & 0x0F == 0 and reply[6:8] != b"\0\0"


def cross_cluster_export_to_resolve(trials: int, timeout: float) -> list[float]:
    """Milliseconds from creating a ServiceExport in west to east's DNS answering it.

    Broker + east + west on the real API servers (``lab.apiclusterset``). One
    ready pod backs every Service; each Service is created first and its
    Endpoints awaited (a running service, as one would export), then the clock
    starts and the ServiceExport is created. The path timed: Globalnet allocates
    the GlobalIngressIP, west's agent publishes to the Broker, east's agent
    imports and feeds its store, the DNS server's cached NXDOMAIN is
    invalidated. East's name is queried over UDP every millisecond (sleeping in
    between, so the agents' threads in this process get the interpreter); the
    first answer is checked to carry west's global IP.
    """
    started = time.monotonic()
    with ApiClusterset(ClustersetConfig(), ApiCluster) as clusterset:
        east, west = clusterset["east"], clusterset["west"]
        print(
            f"  broker, east and west up in {time.monotonic() - started:.1f} s "
            f"(API servers {', '.join(cp.server_url for cp in clusterset.planes.values())})",
            flush=True,
        )
        out: list[float] = []
        with clusterset.namespace("bench") as ns, ServerThread(
            DnsServer(east.records, config=ServerConfig(host="127.0.0.1", port=0))
        ) as thread, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.connect(("127.0.0.1", thread.server.port))
            west.pod(ns, "backend-0", "10.244.1.5", {"app": "backend"})
            for i in range(trials):
                name = f"svc-{i}"
                west.service(ns, name, selector={"app": "backend"})
                west.await_ready_addresses(ns, name)
                query = dns.message.make_query(f"{name}.{ns}.svc.{ZONE}", "A")
                wire, query_id = query.to_wire(), query.to_wire()[:2]
                sock.send(wire)
                first = dns.message.from_wire(sock.recv(512))
                if first.rcode() != dns.rcode.NXDOMAIN:
                    raise RuntimeError(f"{name} answered before its export: {first}")
                start = time.perf_counter()
                west.export(ns, name)
                while True:
                    sock.send(wire)
                    try:
                        reply = sock.recv(512)
                    except TimeoutError:
                        reply = b""
                    if _answered(reply, query_id):
                        break
                    if time.perf_counter() - start > timeout:
                        raise TimeoutError(f"east never resolved {name} within {timeout:g} s")
                    time.sleep(0.001)
                out.append((time.perf_counter() - start) * 1e3)
                got = [item.address for rrset in dns.message.from_wire(reply).answer
                       for item in rrset]
                gip = west.await_global_ip(ns, name)
                if got != [gip]:
                    raise RuntimeError(f"east answered {name} with {got}, west's global IP "
                                       f"is {gip}")
            if thread.errors:
                raise RuntimeError(f"server loop errors: {thread.errors}")
    print(f"  clusterset stopped ({time.monotonic() - started:.1f} s in all)", flush=True)
    return out


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10, method="inclusive")[-1] if len(samples) > 1 \
        else samples[0]


def _exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP -> SystemExit, so every ``finally`` stops what it started."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the cleanup runs once, undisturbed
    raise SystemExit(128 + signum)


# -- main ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dns", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="dnsperf time per server")
    p.add_argument("--rounds", type=int, default=2, help="alternations (seconds split)")
    p.add_argument("--outstanding", type=int, default=20, help="dnsperf -q")
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--services", type=int, default=20, help="per namespace")
    p.add_argument("--queries", type=int, default=2000, help="lines in the query file")
    p.add_argument("--trials", type=int, default=50, help="in-process export-to-store trials")
    p.add_argument("--cross-trials", type=int, default=20,
                   help="exports timed across two clusters on the real API servers")
    p.add_argument("--cross-timeout", type=float, default=20.0,
                   help="seconds one cross-cluster export may take to resolve")
    args = p.parse_args(argv)
    if args.trials < 1 or args.cross_trials < 1:
        p.error("--trials and --cross-trials must be at least 1")
    for tool in ("nsd", "dnsperf"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nsd dnsperf (scripts/install-deps.sh)")
    try:
        for binary in ("etcd", "kube-apiserver", "kube-controller-manager"):
            find_binary(binary)
    except ControlPlaneError as exc:
        sys.exit(str(exc))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)

    with tempfile.TemporaryDirectory(prefix="gn-bench-dns-") as tmp:
        workdir = Path(tmp)
        records = build_records(args.namespaces, args.services)
        records_file = workdir / "records.json"
        records_file.write_text(json.dumps(recordsfile.dump(records)))
        queries = build_queries(records, args.queries)
        query_file = workdir / "queries.txt"
        query_file.write_text("".join(f"{n} {t}\n" for n, t in queries))
        print(
            f"clusterset: {len(records)} services over {1 + len(REMOTES)} clusters; "
            f"{len(queries)} queries ({len(set(queries))} distinct)",
            flush=True,
        )
        port_ours, port_nsd = free_port(), free_port()
        with ours(records_file, port_ours) as ours_proc:
            zone_text = zone_from_answers(queries, port_ours)
            with nsd(zone_text, port_nsd, workdir) as nsd_proc:
                differ = compare(queries, port_ours, port_nsd)
                print(f"  answers compared: {len(set(queries)) - differ} same, {differ} differ")
                results = {"ours": Run(), "nsd": Run()}
                targets = {"ours": (port_ours, ours_proc.pid), "nsd": (port_nsd, nsd_proc.pid)}
                per_round = args.seconds / args.rounds
                for r in range(args.rounds):
                    order = ["ours", "nsd"] if r % 2 == 0 else ["nsd", "ours"]
                    for name in order:
                        port, pid = targets[name]
                        dnsperf(port, query_file, per_round, args.outstanding, pid, results[name])
                        print(f"  round {r + 1}: {name} done", flush=True)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\ndnsperf -q {args.outstanding}, {args.seconds:g} s per server, {args.rounds} rounds; "
        f"load average {load} on {os.cpu_count()} cores (other work skews p99 for both)"
    )
    print(f"{'server':8} {'qps':>9} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'cpu us/q':>9}")
    for name, run in results.items():
        cpu_us = run.cpu_seconds / run.queries * 1e6 if run.queries else float("nan")
        print(
            f"{name:8} {run.qps:9.0f} {run.percentile(50) * 1e3:8.3f} "
            f"{run.percentile(99) * 1e3:8.3f} {run.lost:6d} {cpu_us:9.1f}"
        )
    ratio = results["ours"].qps / results["nsd"].qps
    print(f"ratio ours/nsd: {ratio:.2f}")

    store = export_to_store(args.trials)
    e2s = statistics.median(store)
    print(
        f"export-to-store (in-process: store upsert -> UDP answer, {len(store)} trials): "
        f"p50 {e2s:.3f} ms, p90 {p90(store):.3f} ms, max {max(store):.3f} ms"
    )

    print("\nexport-to-resolvable across clusters on the real API servers:", flush=True)
    cross = cross_cluster_export_to_resolve(args.cross_trials, args.cross_timeout)
    e2r = statistics.median(cross)
    print(
        f"export-to-resolvable (ServiceExport in west -> east's DNS answers over UDP with "
        f"west's global IP, {len(cross)} exports): p50 {e2r:.1f} ms, p90 {p90(cross):.1f} ms, "
        f"min {min(cross):.1f} ms, max {max(cross):.1f} ms (goal: p50 under 1000 ms)"
    )
    print(
        json.dumps(
            {
                "qps": round(results["ours"].qps),
                "reference_qps": round(results["nsd"].qps),
                "ratio": round(ratio, 3),
                "p99_ms": round(results["ours"].percentile(99) * 1e3, 3),
                "export_to_resolve_p50_ms": round(e2r, 1),
                "export_to_store_p50_ms": round(e2s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
