"""Export to reachable, end to end, in a Globalnet lab of two clusters.

`make bench-e2e` brings up `gnctl lab up --globalnet` (2 clusters x 2 nodes,
real API servers, kube-proxy, Globalnet, Lighthouse, Broker syncer, route
agents), then exports SERVICES new services of c2 one after another and times,
from the moment the ServiceExport is created, until:

* allocated: c2's GlobalIngressIP has an address (Globalnet's controllers);
* programmed: c2's gateway kernel holds the mapping (intent -> nftables);
* resolvable: c1's Lighthouse DNS server answers the clusterset name with that
  address over UDP (export -> Broker -> import -> DNS), asked from c1's node;
* reachable: a TCP connection from c1's client pod to that name's address gets
  an HTTP answer from c2's backend (every hop: route agent, both gateways,
  kube-proxy).

Figures are per stage, median and worst over the services, polled every 5 ms.
Design goal (DESIGN.md section 4.5): export-to-resolvable under 1 s; upstream's
Lighthouse waits for its syncer and CoreDNS plugin, seconds in practice. Then the
gateway failover figures of `bench.failover` and the cable throughput figures of
`bench.tunnel` (their flags pass through: `make bench-e2e ARGS="--drivers vxlan
--rounds 3"`). The last line printed is one JSON
object.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dnslib

from datapath.nftables import read_mappings
from kube import resources
from lab import globalnet as lab_globalnet
from lab import netns
from lab.lab import Lab
from lab.ports import free_port_block
from lab.topology import LabSpec

SERVICES = 10
POLL_S = 0.005
TIMEOUT_S = 60.0
STAGES = ("allocated", "programmed", "resolvable", "reachable")


def wait_until(check: Callable[[], object], start: float) -> float:
    """Seconds from `start` until `check()` is truthy."""
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - start


def dns_answer(ns: str, server: str, name: str) -> str | None:
    """The first A record `server` gives for `name`, asked from `ns`."""
    reply = lab_globalnet.dns_query(ns, server, name, timeout=0.5)
    if reply is None:
        return None
    return next((str(rr.rdata) for rr in reply.rr if rr.rtype == dnslib.QTYPE.A), None)


def http_answers(ns: str, ip: str) -> bool:
    # A short timeout: a SYN sent before every hop is ready is lost, and waiting
    # it out would count the wait, not the readiness.
    with netns.entered(ns), socket.socket() as sock:
        sock.settimeout(0.1)
        try:
            sock.connect((ip, 80))
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.0 200")
        except OSError:
            return False


def measure(lab: Lab, index: int) -> dict[str, float]:
    c1, c2 = lab.plan.cluster("c1"), lab.plan.cluster("c2")
    api = lab.cluster("c2")
    name = f"bench-{index}"
    api.client(resources.SERVICES).create({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}})
    giips = api.client(resources.GLOBAL_INGRESS_IPS)
    fqdn = f"{name}.default.svc.clusterset.local"
    client_ns = lab.pod("c1", "client").netns
    found: dict[str, str] = {}

    def allocated() -> bool:
        obj = giips.get_or_none(name, namespace="default")
        ip = ((obj or {}).get("status") or {}).get("allocatedIP")
        if ip:
            found["ip"] = ip
        return bool(ip)

    start = time.monotonic()
    api.client(resources.SERVICE_EXPORTS).create(
        {"metadata": {"name": name, "namespace": "default"}})
    times = {"allocated": wait_until(allocated, start)}
    ip = found["ip"]
    times["programmed"] = wait_until(
        lambda: any(r.global_ip == ip for r in read_mappings(c2.gateway.netns)), start)
    times["resolvable"] = wait_until(
        lambda: dns_answer(c1.nodes[-1].netns, lab_globalnet.dns_server(c1), fqdn) == ip, start)
    times["reachable"] = wait_until(lambda: http_answers(client_ns, ip), start)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gn-bench-e2e-") as tmp:
        lab = Lab("benche2e", root=Path(tmp))
        lab.down(progress=lambda *_: None)
        spec = LabSpec(name="benche2e", clusters=2, nodes=2, api_port_base=free_port_block(3),
                       globalnet=True)
        started = time.monotonic()
        try:
            lab.up(spec, progress=lambda m: print(f"  {m}", flush=True))
            up_s = time.monotonic() - started
            samples = []
            for i in range(SERVICES):
                times = measure(lab, i)
                samples.append(times)
                print(f"service {i + 1:>2}: " + "  ".join(
                    f"{stage} {times[stage] * 1000:6.0f} ms" for stage in STAGES), flush=True)
        finally:
            lab.down(progress=lambda *_: None)
    result: dict[str, object] = {"lab_up_s": round(up_s, 1), "services": SERVICES}
    for stage in STAGES:
        values = [s[stage] * 1000 for s in samples]
        result[f"{stage}_p50_ms"] = round(statistics.median(values), 1)
        result[f"{stage}_max_ms"] = round(max(values), 1)
    print(f"export to resolvable: median {result['resolvable_p50_ms']} ms "
          f"(goal < 1000 ms); export to reachable: median {result['reachable_p50_ms']} ms",
          flush=True)
    from bench import failover, tunnel

    result.update(failover.main(sys.argv[1:]))
    result.update(tunnel.main(sys.argv[1:]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
