"""Throughput through the cable, per driver (`make bench-e2e` runs it beside
`bench.failover`; alone: `python -m bench.tunnel [--drivers vxlan,wireguard,ipsec]`).

In one lab per driver (2 clusters, `--cable-driver D`), iperf3 from the test image,
one TCP stream for STREAM_S seconds:

* throughput_mbps: pod to pod, c1's client to an iperf3 server pod in c2 reached
  by its exported Service's global IP: every hop a workload's traffic takes
  (route agent, c1's egress SNAT, the cable, c2's ingress rewrite, kube-proxy);
* tunnel_mbps: the same tunnel without Globalnet: iperf3 in host-network pods on
  the two gateway nodes, to the remote gateway's tunnel address (nothing is
  translated); nat_throughput_ratio = throughput_mbps / tunnel_mbps;
* bare_tunnel_mbps (wireguard, ipsec): the same userspace daemon outside the
  engine and the pods: two network namespaces joined by a veth, the driver's
  cable converged by hand, a Python TCP stream between their addresses.

The last line printed is one JSON object, each figure keyed by driver.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.failover import exported_ip
from datapath import cable_drivers
from datapath import netns as nsutil
from datapath.cable import RemoteGateway
from lab import netns
from lab.lab import Lab
from lab.ports import free_port_block
from lab.topology import LabSpec

DRIVERS = ("vxlan", "wireguard", "ipsec")
STREAM_S = 5
IPERF_PORT = 5201
IMAGE = "globalnet/test:lab"
TUNNEL_IP = {"vxlan": "240", "wireguard": "241", "ipsec": "243"}  # first octet per driver


def _pod(name: str, node: str | None, *, host_network: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{
        "name": name, "image": IMAGE, "imagePullPolicy": "Never",
        "command": ["iperf3", "-s", "-p", str(IPERF_PORT)]}]}
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": spec}


def _apply(lab: Lab, cluster: str, objects: list[dict[str, Any]]) -> None:
    subprocess.run(lab.kubectl_argv(cluster, ["apply", "-f", "-"]), check=True,
                   capture_output=True, text=True,
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def _running(lab: Lab, cluster: str, name: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in lab.pods(cluster):
            if p.name == name and p.pid:
                return p
        time.sleep(0.5)
    raise TimeoutError(f"pod {name} of {cluster} not running")


def _iperf(argv_in_pod: list[str], ip: str) -> float:
    out = subprocess.run([*argv_in_pod, "iperf3", "-c", ip, "-p", str(IPERF_PORT), "-t",
                          str(STREAM_S), "-J"], capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout)
    if "error" in doc:
        raise RuntimeError(f"iperf3 to {ip}: {doc['error']}")
    return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e6


def lab_figures(lab: Lab, driver: str) -> tuple[float, float]:
    """(pod to pod through Globalnet, gateway to gateway through the bare tunnel), Mbit/s."""
    c1, c2 = lab.plan.cluster("c1"), lab.plan.cluster("c2")
    _apply(lab, "c2", [
        _pod("iperf", None, host_network=False),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iperf",
                                                            "namespace": "default"},
         "spec": {"selector": {"app": "iperf"},
                  "ports": [{"port": IPERF_PORT, "targetPort": IPERF_PORT}]}},
        _pod("iperf-gw", c2.gateway.name, host_network=True)])
    _apply(lab, "c1", [_pod("iperf-gw", c1.gateway.name, host_network=True)])
    _running(lab, "c2", "iperf")
    _running(lab, "c2", "iperf-gw")
    client_gw = _running(lab, "c1", "iperf-gw")
    ip = exported_ip(lab, "iperf")
    time.sleep(2.0)  # programmed
    through = _iperf(lab.exec_argv("c1", "client", []), str(ip))
    assert c2.gateway.underlay_ip is not None
    low = c2.gateway.underlay_ip.split(".", 1)[1]
    tunnel = _iperf(lab.exec_argv("c1", client_gw.name, []), f"{TUNNEL_IP[driver]}.{low}")
    return through, tunnel


def bare_tunnel_mbps(driver: str, psk: str = "bench-psk") -> float:
    """Our driver's userspace tunnel between two namespaces, no engine, no pods."""
    tag = uuid.uuid4().hex[:4]
    a, b = f"gn-bt{tag}a", f"gn-bt{tag}b"
    ips = {a: "198.18.77.1", b: "198.18.77.2"}
    owns = {a: "242.77.1.1", b: "242.77.2.1"}
    cables: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gn-bench-tunnel-") as tmp:
        try:
            for ns in (a, b):
                netns.ensure_netns(ns)
            netns.ensure_veth(netns=a, ifname="ul0", peer_netns=b, peer_ifname="ul0",
                              address=f"{ips[a]}/24", peer_address=f"{ips[b]}/24")
            for ns in (a, b):
                netns.run(ns, ["ip", "link", "set", "lo", "up"])
                netns.run(ns, ["ip", "addr", "add", f"{owns[ns]}/32", "dev", "lo"])
                subnet = f"{owns[ns].rsplit('.', 2)[0]}.0.0/16"
                cables[ns] = cable_drivers.new_cable(driver, cable_drivers.CableOptions(
                    ips[ns], netns=ns, state_dir=Path(tmp) / ns, run_root=Path(tmp) / f"{ns}-run",
                    psk=psk, subnets=(subnet,)))
            for ns, other in ((a, b), (b, a)):
                mine = cables[other].backend_config()
                subnet = f"{owns[other].rsplit('.', 2)[0]}.0.0/16"
                cables[ns].converge([RemoteGateway(
                    ips[other], (subnet,), tuple(sorted(mine.items())))])
            deadline = time.monotonic() + 30
            while subprocess.run(netns.exec_argv(a, ["ping", "-c1", "-W1", "-I", owns[a],
                                                     owns[b]]), capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the bare {driver} tunnel did not come up")
                for ns, other in ((a, b), (b, a)):
                    subnet = f"{owns[other].rsplit('.', 2)[0]}.0.0/16"
                    cables[ns].converge([RemoteGateway(ips[other], (subnet,), tuple(
                        sorted(cables[other].backend_config().items())))])
            return _python_stream(a, b, owns[a], owns[b])
        finally:
            for cable in cables.values():
                cable.remove()
            for ns in (a, b):
                netns.delete_netns(ns)


def _python_stream(client_ns: str, server_ns: str, src: str, dst: str) -> float:
    """Mbit/s of one TCP stream (1 MiB writes, STREAM_S s) from `src` to `dst`."""
    with nsutil.entered(server_ns):
        server = socket.create_server((dst, 7001))
    received = [0]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            buf = bytearray(1 << 20)
            while n := conn.recv_into(buf):
                received[0] += n

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with nsutil.entered(client_ns):
        client = socket.socket()
    data = b"x" * (1 << 20)
    try:
        client.bind((src, 0))
        client.connect((dst, 7001))
        start = time.perf_counter()
        while time.perf_counter() - start < STREAM_S:
            client.sendall(data)
    finally:
        client.close()
    t.join(30)
    elapsed = time.perf_counter() - start
    server.close()
    return received[0] * 8 / elapsed / 1e6


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(prog="python -m bench.tunnel")
    p.add_argument("--drivers", default=",".join(DRIVERS))
    args, _ = p.parse_known_args(argv)
    through: dict[str, float] = {}
    tunnel: dict[str, float] = {}
    bare: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gn-bench-tunnel-") as tmp:
        for driver in [d for d in args.drivers.split(",") if d]:
            name = f"bt{driver[:2]}"
            lab = Lab(name, root=Path(tmp))
            spec = LabSpec(name=name, clusters=2, nodes=2, globalnet=True, cable_driver=driver,
                           api_port_base=free_port_block(3))
            try:
                lab.up(spec, progress=lambda m: print(f"  {m}", flush=True))
                through[driver], tunnel[driver] = lab_figures(lab, driver)
            finally:
                lab.down(progress=lambda *_: None)
            print(f"{driver}: pod to pod through Globalnet {through[driver]:.0f} Mbit/s, "
                  f"gateway to gateway in the tunnel {tunnel[driver]:.0f} Mbit/s", flush=True)
            if driver != "vxlan":
                bare[driver] = bare_tunnel_mbps(driver)
                print(f"{driver}: the bare userspace tunnel {bare[driver]:.0f} Mbit/s",
                      flush=True)
    return {"throughput_mbps": {d: round(v) for d, v in through.items()},
            "tunnel_mbps": {d: round(v) for d, v in tunnel.items()},
            "nat_throughput_ratio": {d: round(through[d] / tunnel[d], 3) for d in through},
            "bare_tunnel_mbps": {d: round(v) for d, v in bare.items()}}


if __name__ == "__main__":
    print(json.dumps(main()))
