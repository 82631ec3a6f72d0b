"""Bring a lab of overlapping-CIDR clusters up and down.

`Lab.up` builds, in order: the underlay and the Broker, each cluster's network
(control-plane namespace holding the node bridge, node namespaces, the gateway
node's underlay leg), the control planes and every node's containerd with its
images (in parallel), the host relay, kubelets (each registers its Node) and the
CRDs, kube-proxy on every node, the demo workload (Deployments and a Service,
applied with kubectl) and, with `globalnet`, the clusterset
(`lab/globalnet.py`) and a Prometheus scraping its agents (`lab/prometheus.py`,
unless `LabSpec.prometheus` is off). Any failure tears down what was made and raises
`LabError` with a one-line reason. `Lab.down` works from the state file alone,
so it also cleans up after a crash.

Pods are real (lab/node.py). `exec_argv` enters a pod's container with nsenter
(network, mount, UTS, IPC and PID namespaces of its init process, found in the
node's runc state): the same view as `kubectl exec` - the image's tools, the
pod's resolv.conf - without a round trip through the API server, kubelet and
containerd's stream server per command, which tests that poll would pay each
time. `kubectl exec` works as well.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube import crds, names, resources
from kube.crud import ResourceClient
from kube.resources import Resource
from lab import globalnet as lab_globalnet
from lab import netns, processes
from lab import prometheus as lab_prometheus
from lab.controlplane import (
    KCM_API_CONTROLLERS,
    KCM_DEFAULT_CONTROLLERS,
    ControlPlane,
    ControlPlaneConfig,
    ControlPlaneError,
    find_binary,
)
from lab.node import (
    LabNode,
    NodeError,
    NodeLayout,
    clean_stale_template_builds,
    container_pid,
    node_archives,
    node_by_name,
    node_root_template,
    stop_node,
)
from lab.pki import write_kubeconfig
from lab.ports import port_is_free
from lab.state import LabState, PodRecord, StateStore
from lab.topology import ClusterPlan, LabPlan, LabSpec, TopologyError, plan_lab, underlay_port

APISERVER_PORT = 6443
UNDERLAY_BRIDGE = "ul0"
NODE_BRIDGE = "br0"
TEST_IMAGE = "globalnet/test:lab"
# The web pods' readiness: an exec probe on this file (set_pod_ready toggles it).
UNREADY_FLAG = "/tmp/unready"
WORKLOAD_TIMEOUT_S = 90.0


class LabError(RuntimeError):
    """A lab operation failed; str() is one line for the user."""


@dataclass
class ClusterHandle:
    """A running cluster as seen from the host."""

    plan: ClusterPlan
    kubeconfig: Path
    incluster_kubeconfig: Path
    control_plane: ControlPlane | None = None
    _api: Any = field(default=None, repr=False)

    def api_client(self) -> Any:
        """An ApiClient for this cluster through the host relay."""
        if self._api is None:
            from kube.client import new_api_client

            self._api = new_api_client(self.kubeconfig)
        return self._api

    def client(self, resource: Resource) -> ResourceClient:
        """CRUD on one resource of this cluster (plain dicts)."""
        return ResourceClient(self.api_client(), resource)


class Lab:
    """One named lab on this machine."""

    def __init__(self, name: str = "demo", *, root: Path | None = None) -> None:
        self.name = name
        self.store = StateStore(name, root)
        self.state: LabState | None = self.store.load()
        self._state_lock = threading.Lock()
        # Seconds per phase of the last `up` (bench/lab_up.py prints them).
        self.timings: dict[str, float] = {}
        self._handles: dict[str, ClusterHandle] = {}

    # --- queries -------------------------------------------------------------------
    @property
    def plan(self) -> LabPlan:
        if self.state is None:
            raise LabError(f"lab {self.name!r} is not up (gnctl lab up --name {self.name})")
        return plan_lab(self.state.spec)

    def cluster(self, name: str) -> ClusterHandle:
        """A handle on one cluster, kept (with its API client) while the lab is up."""
        plan = self.plan.cluster(name)
        handle = self._handles.get(name)
        if handle is None or handle.plan != plan:
            d = self.store.dir / name
            handle = ClusterHandle(plan, d / "host.kubeconfig", d / "incluster.kubeconfig")
            self._handles[name] = handle
        return handle

    def clusters(self) -> list[ClusterHandle]:
        return [self.cluster(c.name) for c in self.plan.clusters]

    def broker_kubeconfig(self) -> Path:
        return self.store.dir / "broker" / "host.kubeconfig"

    def broker_info(self) -> Path:
        """The broker-info file `lab up --globalnet` wrote (the members' Broker URL)."""
        return self.store.dir / lab_globalnet.BROKER_INFO

    def broker_relay_url(self) -> str:
        """Where this machine reaches the lab Broker (`--local-broker-url`)."""
        from kube.client import new_configuration

        return str(new_configuration(self.broker_kubeconfig()).host)

    def node_layout(self, cluster: str, node: str) -> NodeLayout:
        c = self.plan.cluster(cluster)
        n = node_by_name(c, node)
        return NodeLayout(self.name, c.name, n, self.store.dir / c.name / f"n{n.index}")

    def pods(self, cluster: str, namespace: str = "default") -> list[PodRecord]:
        """The cluster's running pods with an address, ordered by node, then name."""
        items = self.cluster(cluster).client(resources.PODS).list(namespace=namespace).items
        c = self.plan.cluster(cluster)
        order = {n.name: n.index for n in c.nodes}
        records = []
        for obj in items:
            meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
            if status.get("phase") != "Running" or not status.get("podIP") \
                    or meta.get("deletionTimestamp"):
                continue
            node = str(spec.get("nodeName", ""))
            ids = [str(s.get("containerID", "")) for s in status.get("containerStatuses") or []]
            pid = None
            if node in order and ids and ids[0].startswith("containerd://"):
                pid = container_pid(self.node_layout(cluster, node),
                                    ids[0].removeprefix("containerd://"))
            records.append(PodRecord(
                cluster=cluster, name=str(meta["name"]), namespace=namespace, node=node,
                ip=str(status["podIP"]), netns=f"/proc/{pid}/ns/net" if pid else "",
                host_ifname="", app=str((meta.get("labels") or {}).get("app", "")),
                pid=pid or 0,
            ))
        return sorted(records, key=lambda p: (order.get(p.node, 99), p.name))

    def pod(self, cluster: str, name: str, namespace: str = "default") -> PodRecord:
        """A pod by its name, or by its app label (`client`: the first such pod;
        `web-1`: the second pod of app web, counted in node order)."""
        found = self.pods(cluster, namespace)
        for p in found:
            if p.name == name:
                return p
        app, _, index = name.rpartition("-")
        by_app = [p for p in found if p.app == name]
        if by_app:
            return by_app[0]
        if index.isdigit():
            same = [p for p in found if p.app == app]
            if int(index) < len(same):
                return same[int(index)]
        raise LabError(f"no running pod {namespace}/{name} in cluster {cluster} "
                       f"of lab {self.name}")

    # --- up ------------------------------------------------------------------------
    def up(self, spec: LabSpec, *, workload: bool = True, progress: Any = print) -> None:
        try:
            plan = plan_lab(spec)
        except TopologyError as exc:
            raise LabError(str(exc)) from None
        with self.store.locked():
            existing = self.store.load()
            if existing is not None:
                raise LabError(
                    f"lab {self.name!r} already exists ({existing.phase}); "
                    f"run `gnctl lab down --name {self.name}` first"
                )
            leftovers = netns.list_names(plan.prefix)
            if leftovers:
                raise LabError(
                    f"namespaces of lab {self.name!r} are left over ({leftovers[0]}, ...); "
                    f"run `gnctl lab down --name {self.name}`"
                )
            wanted = [plan.broker_host_api_port, *(c.host_api_port for c in plan.clusters)]
            if _prometheus_wanted(plan):
                wanted.append(lab_prometheus.host_port(plan))
            for port in (p for p in wanted if p is not None):
                if not port_is_free("127.0.0.1", port):
                    raise LabError(f"port {port} on 127.0.0.1 is already in use (try --api-port)")
            self.state = LabState(spec=spec)
            self.store.save(self.state)
            started = time.monotonic()
            try:
                self._build(plan, workload=workload, progress=progress)
            except BaseException as exc:
                progress(f"lab up failed, cleaning up: {exc}")
                # Keep the details for a bug report; the user gets one line.
                log = self.store.dir.parent / f"{self.name}-failure.log"
                log.write_text("".join(traceback.format_exception(exc)))
                if os.environ.get("GLOBALNET_LAB_KEEP_FAILED"):  # to look at what failed
                    progress(f"GLOBALNET_LAB_KEEP_FAILED: left as it is; `gnctl lab down "
                             f"--name {self.name}` removes it")
                    raise LabError(str(exc)) from None
                self._teardown(progress=lambda *_: None)
                if isinstance(exc, LabError | ControlPlaneError | TopologyError | NodeError):
                    raise LabError(str(exc)) from None
                if isinstance(exc, KeyboardInterrupt):
                    raise
                raise LabError(
                    f"{type(exc).__name__}: {exc} (details in {log})".replace("\n", " ")
                ) from exc
            self.state.phase = "ready"
            self.store.save(self.state)
            progress(f"lab {self.name} is up in {time.monotonic() - started:.1f} s")

    def _save(self) -> None:
        assert self.state is not None
        self.store.save(self.state)

    def _record_netns(self, name: str) -> None:
        assert self.state is not None
        if name not in self.state.netns:
            self.state.netns.append(name)
            self._save()
        netns.ensure_netns(name)

    def _record_process(self, proc: processes.ManagedProcess) -> None:
        assert self.state is not None
        with self._state_lock:  # control planes start in parallel threads
            self.state.processes.append(proc)
            self._save()

    def _build(self, plan: LabPlan, *, workload: bool, progress: Any) -> None:
        steps = 6 if plan.spec.globalnet else 5
        progress(f"[1/{steps}] networks: underlay and {len(plan.clusters)} clusters "
                 f"x {plan.spec.nodes} nodes")
        self._build_underlay(plan)
        for c in plan.clusters:
            self._build_cluster_network(plan, c)

        nodes = [LabNode(self.node_layout(c.name, n.name), on_spawn=self._record_process)
                 for c in plan.clusters for n in c.nodes]
        try:
            template = node_root_template(node_archives(), progress=progress)
        except NodeError as exc:  # every node lacks it: name the first
            raise NodeError(f"node {nodes[0].name}: {exc}") from None
        progress(f"[2/{steps}] control planes (etcd, kube-apiserver, kube-controller-manager, "
                 f"kube-scheduler) and {len(nodes)} nodes' containerd with their images")
        planes: dict[str, ControlPlane] = {}
        if plan.broker_netns and plan.broker_ip:
            planes["broker"] = self._control_plane("broker", plan.broker_netns, plan.broker_ip,
                                                   plan.spec.service_cidr, broker=True)
        for c in plan.clusters:
            planes[c.name] = self._control_plane(c.name, c.cp_netns, c.cp_ip, c.service_cidr)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(planes) + len(nodes)) as pool:
            futures: list[concurrent.futures.Future[Any]] = [
                pool.submit(cp.start) for cp in planes.values()]
            futures += [pool.submit(node.start_runtime, template) for node in nodes]
            concurrent.futures.wait(futures)
        for fut in futures:
            fut.result()
        self.timings["runtimes_s"] = round(time.monotonic() - started, 1)

        progress(f"[3/{steps}] host relay and kubeconfigs")
        self._start_relay(plan, planes)

        progress(f"[4/{steps}] kubelets (each registers its Node) and kube-proxy")
        by_cluster = {c.name: [n for n in nodes if n.layout.cluster == c.name]
                      for c in plan.clusters}
        for c in plan.clusters:
            handle = self.cluster(c.name)
            pki = planes[c.name].pki
            assert pki is not None
            for node in by_cluster[c.name]:
                node.start_kubelet(pki=pki, kubeconfig=handle.incluster_kubeconfig)
        for c in plan.clusters:
            crds.install_crds(self.cluster(c.name).api_client())
        if plan.broker_netns:
            from kube.client import new_api_client

            crds.install_crds(new_api_client(self.broker_kubeconfig()))
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            ready = list(pool.map(
                lambda n: n.await_ready(self.cluster(n.layout.cluster).api_client()), nodes))
        self.timings["node_ready_max_s"] = round(max(ready), 1)
        progress(f"      {len(nodes)} nodes Ready (the slowest {max(ready):.1f} s after "
                 "its kubelet started)")
        for c in plan.clusters:
            for n in c.nodes:
                self._start_kube_proxy(c, n.name, self.cluster(c.name).incluster_kubeconfig)

        if workload:
            progress(f"[5/{steps}] demo workload: Deployment web (2 pods) behind Service web, "
                     "Deployment client")
            started = time.monotonic()
            for c in plan.clusters:
                self.deploy_demo_workload(c.name)
            for c in plan.clusters:
                self._await_workload(c)
            self.timings["workload_s"] = round(time.monotonic() - started, 1)
            progress(f"      every demo pod Ready {self.timings['workload_s']} s after "
                     "kubectl apply")
        if plan.spec.globalnet:
            progress(f"[6/{steps}] Globalnet and Lighthouse: global CIDRs from the Broker, "
                     "agents and DNS on every gateway node, routes between gateways")
            self._enable_globalnet(plan, progress)
            if plan.spec.prometheus:
                self._start_prometheus(plan, progress)

    def _build_underlay(self, plan: LabPlan) -> None:
        self._record_netns(plan.underlay_netns)
        netns.ensure_bridge(plan.underlay_netns, UNDERLAY_BRIDGE,
                            f"{plan.underlay_gateway_ip}/{plan.underlay_prefixlen}")
        if plan.broker_netns and plan.broker_ip:
            self._record_netns(plan.broker_netns)
            netns.ensure_veth(
                netns=plan.underlay_netns, ifname="vbroker", peer_netns=plan.broker_netns,
                peer_ifname="eth0", peer_address=f"{plan.broker_ip}/{plan.underlay_prefixlen}",
                master=UNDERLAY_BRIDGE,
            )

    def _build_cluster_network(self, plan: LabPlan, c: ClusterPlan) -> None:
        self._record_netns(c.cp_netns)
        netns.ensure_bridge(c.cp_netns, NODE_BRIDGE, f"{c.cp_ip}/{c.node_prefixlen}")
        for node in c.nodes:
            self._record_netns(node.netns)
            netns.ensure_veth(
                netns=c.cp_netns, ifname=f"vn{node.index}", peer_netns=node.netns,
                peer_ifname="eth0", peer_address=f"{node.ip}/{c.node_prefixlen}",
                master=NODE_BRIDGE,
            )
            netns.set_sysctl(node.netns, "net.ipv4.ip_forward", "1")
            # The node's own connections to ClusterIPs need a route before kube-proxy's
            # DNAT rewrites them (a real node's default route; lab nodes have none).
            netns.ensure_route(node.netns, c.service_cidr, dev="eth0")
            for other in c.nodes:
                if other is not node:
                    netns.ensure_route(node.netns, other.pod_cidr, gateway=other.ip)
            if node.underlay_ip:
                netns.ensure_veth(
                    netns=plan.underlay_netns, ifname=underlay_port(c, node),
                    peer_netns=node.netns,
                    peer_ifname="ul0",
                    peer_address=f"{node.underlay_ip}/{plan.underlay_prefixlen}",
                    master=UNDERLAY_BRIDGE,
                )

    def _enable_globalnet(self, plan: LabPlan, progress: Any) -> None:
        """See lab/globalnet.py: `gnctl deploy-broker --globalnet`, then `gnctl join`
        of every cluster (the agents as pods), then wait until they work."""
        from kube.client import new_api_client

        assert self.state is not None
        for c in plan.clusters:
            self._plumb_broker_access(plan, c)
        info = lab_globalnet.deploy_broker(
            new_api_client(self.broker_kubeconfig()), plan,
            self.store.dir / lab_globalnet.BROKER_INFO, apiserver_port=APISERVER_PORT,
            progress=progress)
        members = {c.name: (c, self.cluster(c.name).api_client()) for c in plan.clusters}
        started = time.monotonic()
        cidrs = lab_globalnet.join_all(info, members, datapath=plan.spec.datapath,
                                       cable_driver=plan.spec.cable_driver,
                                       apiserver_port=APISERVER_PORT,
                                       broker_server=self.broker_relay_url(),
                                       progress=progress)
        self.timings["join_s"] = round(time.monotonic() - started, 1)
        self.state.global_cidrs = cidrs
        self._save()
        peers = len(plan.clusters) - 1
        for c in plan.clusters:
            self._await(None, f"the Globalnet agent of {c.name} allocating the cluster "
                        "egress IPs", functools.partial(self._egress_allocated, c.name),
                        timeout=90)
            self._await(None, f"the Lighthouse DNS server of {c.name} answering",
                        functools.partial(lab_globalnet.dns_answers, c))
        def misrouted() -> dict[str, tuple[set[tuple[str, str]], set[tuple[str, str]]]]:
            """Node namespace -> (routes held, routes wanted), where they differ."""
            wanted = lab_globalnet.node_routes(plan, cidrs, self.active_gateways())
            held = {ns: lab_globalnet.routes_of(ns) for ns in wanted}
            return {ns: (held[ns], routes) for ns, routes in wanted.items()
                    if held[ns] != routes}

        self._await(None, "the route agents routing the remote global CIDRs via the "
                    "active gateways", lambda: not misrouted(), timeout=60,
                    detail=lambda: f"active gateways {self.active_gateways()}; " + "; ".join(
                        f"{ns} holds {sorted(held)}, wants {sorted(want)}"
                        for ns, (held, want) in misrouted().items()))
        for c in plan.clusters:
            self._await(None, f"the gateway of {c.name} connecting to the other gateways",
                        functools.partial(self._cable_connected, c, peers=peers), timeout=60)

    def _plumb_broker_access(self, plan: LabPlan, c: ClusterPlan) -> None:
        """Every node and pod of `c` reaches the Broker and its own API server, and the
        gateway's cable uses the underlay (see lab/globalnet.py)."""
        assert plan.broker_ip is not None
        for gw in c.gateways:
            self.cluster(c.name).client(resources.NODES).patch(gw.name, {"metadata": {
                "annotations": {names.CABLE_IP_ANNOTATION: gw.underlay_ip}}})
            rules = lab_globalnet.underlay_access(plan, c, gw)
            subprocess.run(netns.exec_argv(gw.netns, ["nft", "-f", "-"]), input=rules,
                           text=True, check=True, capture_output=True)
        for node in c.nodes:
            netns.ensure_route(c.cp_netns, node.pod_cidr, gateway=node.ip)
            if not node.underlay_ip:
                # Through the first gateway node (a standby gateway has its own link).
                netns.ensure_route(node.netns, f"{plan.broker_ip}/32", gateway=c.gateway.ip)

    def _await(self, proc_name: str | None, what: str, ready: Callable[[], bool], *,
               timeout: float = 30, detail: Callable[[], str] | None = None) -> None:
        """Poll `ready()` until it holds; fail at once when process `proc_name` died.
        `detail()` says what is still missing when it never holds."""
        assert self.state is not None
        proc = next((p for p in self.state.processes if p.name == proc_name), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and not processes.is_alive(proc):
                raise LabError(f"{proc_name} exited before {what}: {processes.tail(proc.log, 1)}")
            if ready():
                return
            time.sleep(0.2)
        where = f" (log: {proc.log})" if proc is not None else ""
        missing = f": {detail()}" if detail is not None else ""
        raise LabError(f"no {what} within {timeout:.0f} s{where}{missing}")

    def _egress_allocated(self, cluster: str) -> bool:
        obj = self.cluster(cluster).client(resources.CLUSTER_GLOBAL_EGRESS_IPS).get_or_none(
            names.CLUSTER_EGRESS_NAME)
        return bool(((obj or {}).get("status") or {}).get("allocatedIPs"))

    def _cable_connected(self, c: ClusterPlan, *, peers: int) -> bool:
        links = self._cable_status(c)
        return len(links) == peers and all(link["status"] == "connected" for link in links)

    def _control_plane(
        self, name: str, ns: str, ip: str, service_cidr: str, *, broker: bool = False
    ) -> ControlPlane:
        """A cluster's control plane (default controllers, a scheduler), or with
        `broker=True` the Broker's: no nodes, so no scheduler, and only the controllers
        API objects need (the token controller issues the Broker identities' tokens,
        the namespace controller empties a departed member's namespace)."""
        return ControlPlane(
            ControlPlaneConfig(
                name=f"{self.name}-{name}", data_dir=self.store.dir / name,
                advertise_address=ip, bind_address="0.0.0.0", apiserver_port=APISERVER_PORT,
                service_cidr=service_cidr, netns=ns, controller_manager=True,
                controllers=KCM_API_CONTROLLERS if broker else KCM_DEFAULT_CONTROLLERS,
                scheduler=not broker,
            ),
            on_spawn=self._record_process,
        )

    def _start_relay(self, plan: LabPlan, planes: dict[str, ControlPlane]) -> None:
        import json
        import sys

        assert self.state is not None
        routes: dict[str, list[object]] = {}
        targets: list[tuple[str, int, str, str]] = []
        if plan.broker_netns and plan.broker_ip and plan.broker_host_api_port:
            targets.append(
                ("broker", plan.broker_host_api_port, plan.broker_netns, plan.broker_ip)
            )
        for c in plan.clusters:
            targets.append((c.name, c.host_api_port, c.cp_netns, c.cp_ip))
        for name, port, ns, ip in targets:
            routes[str(port)] = [ns, ip, APISERVER_PORT]
            cp = planes[name]
            d = self.store.dir / name
            write_kubeconfig(d / "host.kubeconfig", server=f"https://127.0.0.1:{port}",
                             ca_cert=cp.pki_dir / "ca.crt", token=cp.token,
                             cluster_name=f"{self.name}-{name}")
            write_kubeconfig(d / "incluster.kubeconfig", server=cp.server_url,
                             ca_cert=cp.pki_dir / "ca.crt", token=cp.token,
                             cluster_name=f"{self.name}-{name}")
            self.state.kubeconfigs[name] = str(d / "host.kubeconfig")
        if _prometheus_wanted(plan):  # started later, once the agents run
            routes[str(lab_prometheus.host_port(plan))] = [
                lab_prometheus.netns_name(plan), "127.0.0.1", lab_prometheus.LISTEN_PORT]
        config = self.store.dir / "relay.json"
        config.write_text(json.dumps({"routes": routes}))
        proc, _ = processes.spawn(
            "relay", [sys.executable, "-m", "lab.relay", str(config)],
            log_path=self.store.dir / "relay.log",
            env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        self._record_process(proc)
        deadline = time.monotonic() + 10
        for _, port, _, _ in targets:
            while not _port_open(port):
                if not processes.is_alive(proc) or time.monotonic() > deadline:
                    raise LabError(f"host relay did not start: {processes.tail(proc.log, 1)}")
                time.sleep(0.05)

    def _start_prometheus(self, plan: LabPlan, progress: Any) -> None:
        """Prometheus and its relay in their namespace, scraping every agent (see
        lab/prometheus.py); ready when its API answers."""
        import sys

        from deploy.manifests import LIGHTHOUSE_DEPLOYMENT

        prom = lab_prometheus.binary()
        if prom is None:
            progress(f"      {lab_prometheus.BINARY} is not installed "
                     "(scripts/install-deps.sh): the lab runs without it")
            return
        ns = lab_prometheus.netns_name(plan)
        self._record_netns(ns)
        targets = lab_prometheus.node_targets(plan)
        for c in plan.clusters:
            for pod in self.pods(c.name, names.CLUSTER_NAMESPACE):
                if pod.name.startswith(f"{LIGHTHOUSE_DEPLOYMENT}-"):
                    targets.append(lab_prometheus.pod_target(
                        c.name, pod.node, node_by_name(c, pod.node).netns, pod.ip))
        folder = self.store.dir / "prometheus"
        _, relay_config = lab_prometheus.write(folder, targets)
        relay, _ = processes.spawn(
            "prometheus-relay", [sys.executable, "-m", "lab.relay", str(relay_config)],
            log_path=folder / "relay.log", in_netns=ns,
            env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        self._record_process(relay)
        proc, _ = processes.spawn("prometheus", lab_prometheus.argv(prom, folder),
                                  log_path=folder / "prometheus.log", in_netns=ns)
        self._record_process(proc)
        url = self.prometheus_url()
        assert url is not None
        self._await("prometheus", f"Prometheus answering at {url}",
                    lambda: lab_prometheus.ready(url), timeout=30)
        progress(f"      Prometheus at {url}, scraping {len(targets)} agents")

    def _start_kube_proxy(self, c: ClusterPlan, node_name: str, kubeconfig: Path) -> None:
        node = node_by_name(c, node_name)
        argv = [
            find_binary("kube-proxy"),
            "--kubeconfig", str(kubeconfig),
            "--hostname-override", node.name,
            "--proxy-mode", "iptables",
            "--cluster-cidr", c.pod_cidr,
            # Leave the conntrack sysctls alone: they are not per-namespace.
            "--conntrack-max-per-core", "0",
            "--conntrack-tcp-timeout-established", "0",
            "--conntrack-tcp-timeout-close-wait", "0",
            "--metrics-bind-address", "127.0.0.1:10249",
            "--healthz-bind-address", "127.0.0.1:10256",
            "--iptables-min-sync-period", "0s",
            "--v", "1",
        ]
        proc, _ = processes.spawn(
            f"{c.name}/{node.name}/kube-proxy", argv,
            log_path=self.store.dir / c.name / "logs" / f"kube-proxy-{node.name}.log",
            in_netns=node.netns,
        )
        self._record_process(proc)

    # --- pods ----------------------------------------------------------------------
    def set_pod_ready(
        self, cluster: str, name: str, ready: bool, namespace: str = "default"
    ) -> None:
        """Make a web pod fail (or pass) its readiness probe."""
        cmd = ["rm", "-f", UNREADY_FLAG] if ready else ["touch", UNREADY_FLAG]
        subprocess.run(self.exec_argv(cluster, name, cmd, namespace), check=True,
                       capture_output=True, timeout=20)

    def demo_manifests(self, cluster: str) -> list[dict[str, Any]]:
        """web (2 pods, one per node where there are two, behind Service web) and
        client (on the last node): the test image's gn-echo, short grace periods."""
        c = self.plan.cluster(cluster)
        # No service links: a Service's NAME_PORT=tcp://... variables would reach
        # every pod of the namespace (gn-echo reads ECHO_PORT).
        pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": 1,
                                    "enableServiceLinks": False}
        if self.plan.spec.globalnet:
            # The cluster's Lighthouse DNS server on its gateway node answers
            # clusterset.local (and nothing else).
            pod_spec["dnsPolicy"] = "None"
            pod_spec["dnsConfig"] = {
                "nameservers": [lab_globalnet.dns_server(c)],
                "searches": ["svc.clusterset.local", "clusterset.local"],
            }
        web = {
            **pod_spec,
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }],
            "containers": [{
                "name": "web", "image": TEST_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["gn-echo", "--port", "80"],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "ECHO_MESSAGE", "value": f"hello from {cluster}/$(POD_NAME)"},
                ],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "readinessProbe": {
                    "exec": {"command": ["sh", "-c", f"! test -e {UNREADY_FLAG}"]},
                    "periodSeconds": 2, "failureThreshold": 1, "timeoutSeconds": 2,
                },
            }],
        }
        client = {
            **pod_spec,
            "nodeSelector": {"kubernetes.io/hostname": c.nodes[-1].name},
            "containers": [{
                "name": "client", "image": TEST_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["gn-echo", "--port", "8080"],
            }],
        }

        def deployment(name: str, replicas: int, spec: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
                },
            }

        service = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]},
        }
        return [deployment("web", 2, web), service, deployment("client", 1, client)]

    def deploy_demo_workload(self, cluster: str) -> None:
        """`kubectl apply` the demo workload, as a user would."""
        body = json.dumps({"apiVersion": "v1", "kind": "List",
                           "items": self.demo_manifests(cluster)})
        proc = subprocess.run(self.kubectl_argv(cluster, ["apply", "-f", "-"]), input=body,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise LabError(f"kubectl apply of the demo workload in {cluster} failed: "
                           f"{proc.stderr.strip().splitlines()[-1:]}")

    def _await_workload(self, c: ClusterPlan) -> None:
        """Until web has 2 Ready pods and client 1 (the readiness probe passed)."""
        pods = self.cluster(c.name).client(resources.PODS)
        deadline = time.monotonic() + WORKLOAD_TIMEOUT_S
        last: list[str] = []
        while time.monotonic() < deadline:
            ready: dict[str, int] = {}
            last = []
            for obj in pods.list(namespace="default").items:
                app = (obj["metadata"].get("labels") or {}).get("app", "")
                status = obj.get("status") or {}
                if any(x.get("type") == "Ready" and x.get("status") == "True"
                       for x in status.get("conditions") or []):
                    ready[app] = ready.get(app, 0) + 1
                else:
                    waiting = [str((s.get("state") or {}).get("waiting", {}).get("reason", ""))
                               for s in status.get("containerStatuses") or []]
                    last.append(f"{obj['metadata']['name']} on "
                                f"{(obj.get('spec') or {}).get('nodeName', '-')}: "
                                f"{status.get('phase')} {' '.join(w for w in waiting if w)}")
            if ready.get("web", 0) >= 2 and ready.get("client", 0) >= 1:
                return
            time.sleep(0.25)
        node = self.node_layout(c.name, c.nodes[0].name)
        raise LabError(f"the demo pods of {c.name} were not Ready within "
                       f"{WORKLOAD_TIMEOUT_S:.0f} s ({'; '.join(last) or 'no pods'}); "
                       f"see {node.kubelet_log} and the other nodes' kubelet.log")

    # --- down ----------------------------------------------------------------------
    def down(self, *, progress: Any = print) -> bool:
        """Remove everything of this lab; True when there was something to remove."""
        with self.store.locked():
            return self._teardown(progress=progress)

    def _teardown(self, *, progress: Any) -> bool:
        state = self.store.load()
        prefix = f"gn-{self.name}-"
        names = set(netns.list_names(prefix))
        clean_stale_template_builds()  # an `up` killed while it made the template
        if state is not None:
            plan = plan_lab(state.spec)
            layouts = [NodeLayout(self.name, c.name, n, self.store.dir / c.name / f"n{n.index}")
                       for c in plan.clusters for n in c.nodes]
            layouts = [lay for lay in layouts if lay.base.exists()]
            if layouts:
                progress(f"stopping {len(layouts)} nodes: kubelet, containers, containerd, "
                         "mounts, cgroups")
                with concurrent.futures.ThreadPoolExecutor(max_workers=len(layouts)) as pool:
                    futures = {pool.submit(stop_node, lay, state.processes): lay
                               for lay in layouts}
                for fut, lay in futures.items():
                    # One node that cannot be removed must not keep the others.
                    if fut.exception() is not None:
                        progress(f"node {lay.node.name}: {fut.exception()}")
        procs = list(reversed(state.processes)) if state is not None else []
        # Also whatever still names this lab's folder in its arguments: a process
        # started in the instant before a crash may be missing from the state file.
        known = {p.pid for p in procs}
        procs += [p for p in processes.find_by_argument(f"{self.store.dir}/")
                  if p.pid not in known]
        if procs:
            progress(f"stopping {len(procs)} processes")
            processes.stop(procs)
        if state is not None:
            names |= set(state.netns)
        if names:
            progress(f"deleting {len(names)} network namespaces")
        for n in sorted(names):
            netns.delete_netns(n)
        found = state is not None or bool(names)
        if self.store.dir.exists():
            import shutil

            shutil.rmtree(self.store.dir, ignore_errors=True)
        self.state = None
        self._handles.clear()
        return found

    # --- status ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """A plain description of the lab for `gnctl lab status`."""
        state = self.state
        if state is None:
            raise LabError(f"lab {self.name!r} is not up")
        plan = self.plan
        procs = [{"name": p.name, "pid": p.pid, "alive": processes.is_alive(p)}
                 for p in state.processes]
        clusters = []
        for c in plan.clusters:
            clusters.append({
                "name": c.name,
                "api": f"https://127.0.0.1:{c.host_api_port}",
                "kubeconfig": state.kubeconfigs.get(c.name, ""),
                "pod_cidr": c.pod_cidr,
                "service_cidr": c.service_cidr,
                "global_cidr": state.global_cidrs.get(c.name, ""),
                "cable": self._cable_status(c) if state.global_cidrs else [],
                "dns": (f"{lab_globalnet.dns_server(c)}:{lab_globalnet.DNS_PORT}"
                        if state.global_cidrs else ""),
                # The backend of the Globalnet agent on the gateway node.
                "datapath": state.spec.datapath if state.spec.globalnet else "",
                "gateway": c.gateway.name,
                "nodes": [{"name": n.name, "ip": n.ip, "pod_cidr": n.pod_cidr,
                           "underlay_ip": n.underlay_ip, "netns": n.netns} for n in c.nodes],
                "pods": [{"name": p.name, "namespace": p.namespace, "node": p.node, "ip": p.ip,
                          "netns": p.netns} for p in self._pods_or_none(c.name)],
            })
        return {
            "name": self.name,
            "phase": state.phase,
            "prometheus": self.prometheus_url() or "",
            "broker": {"api": f"https://127.0.0.1:{plan.broker_host_api_port}",
                       "kubeconfig": state.kubeconfigs.get("broker", "")}
            if plan.broker_netns else None,
            "clusters": clusters,
            "processes": procs,
        }

    def prometheus_url(self) -> str | None:
        """Where this machine reaches the lab's Prometheus (None: the lab runs none)."""
        if self.state is None or not any(p.name == "prometheus" for p in self.state.processes):
            return None
        return f"http://127.0.0.1:{lab_prometheus.host_port(self.plan)}"

    def _pods_or_none(self, cluster: str) -> list[PodRecord]:
        try:
            return self.pods(cluster)
        except Exception:  # an API server that is down: status still shows the rest
            return []

    def active_gateways(self) -> dict[str, str]:
        """Per cluster, the gateway node its engines elected: the gateway Lease's
        holder (absent: none yet, or its API server does not answer)."""
        from kube.leaderelection import holder_of

        out = {}
        for c in self.plan.clusters:
            try:
                lease = self.cluster(c.name).client(resources.LEASES).get_or_none(
                    names.GATEWAY_LEASE, namespace=names.CLUSTER_NAMESPACE)
            except Exception:
                continue
            if holder_of(lease):
                out[c.name] = holder_of(lease)
        return out

    def _cable_status(self, c: ClusterPlan) -> list[dict[str, str]]:
        """The active gateway engine's view of its connections (empty when unreadable
        or while no engine is active)."""
        active = self.active_gateways().get(c.name)
        if active is None:
            return []
        try:
            gw = self.cluster(c.name).client(resources.GATEWAYS).get_or_none(
                active, namespace=names.CLUSTER_NAMESPACE)
        except Exception:
            return []
        status = (gw or {}).get("status") or {}
        return [{"cluster": str((x.get("endpoint") or {}).get("cluster_id", "")),
                 "status": str(x.get("status", "")),
                 "rtt": str((x.get("latencyRTT") or {}).get("last", ""))}
                for x in status.get("connections") or []]

    def rss_mb(self) -> float:
        """Every process of the lab: those it started, the containerd shims and
        the pods' containers (found by the nodes' containerd sockets and cgroups)."""
        assert self.state is not None
        procs = list(self.state.processes)
        pids = {p.pid for p in procs}
        for c in self.plan.clusters:
            for n in c.nodes:
                lay = self.node_layout(c.name, n.name)
                found = processes.find_by_argument(str(lay.containerd_config().address))
                for p in [*found, *self._node_cgroup_processes(c.name, n.name)]:
                    if p.pid not in pids:
                        procs.append(p)
                        pids.add(p.pid)
        return processes.rss_mb(procs)

    def _node_cgroup_processes(self, cluster: str, node: str) -> list[processes.ManagedProcess]:
        """The processes in a node's cgroups: its pods' containers."""
        from lab.containerd import cgroup_mounts

        lay = self.node_layout(cluster, node)
        out: dict[int, processes.ManagedProcess] = {}
        for mount in (m for m in cgroup_mounts() if m.name == "memory"):
            for f in (mount / lay.cgroup.lstrip("/")).rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for pid in (int(x) for x in f.read_text().split()):
                        found = processes.by_pid(pid)
                        if found is not None:
                            out[pid] = found
        return list(out.values())

    def kill_node(self, cluster: str, node: str) -> list[int]:
        """SIGKILL every process of a node at once, as a node that dies does: kubelet,
        kube-proxy, containerd, the shims and every container (its pods' included);
        the PIDs killed. Its network namespace, links and kernel state stay (the
        machine's cables are still plugged in); its mount holder stays, so that
        `lab down` can still clean up."""
        import signal

        assert self.state is not None
        c = self.plan.cluster(cluster)
        n = next((x for x in c.nodes if x.name == node), None)
        if n is None:
            raise LabError(f"no node {node!r} in {cluster}")
        lay = self.node_layout(cluster, node)
        victims = {p.pid for p in self.state.processes
                   if (p.name.startswith(f"{cluster}/{node}/") or p.name == f"containerd-{node}")
                   and not p.name.endswith("/mounts") and processes.is_alive(p)}
        # The shims, found by containerd's socket, and the containers, by cgroup.
        victims |= {p.pid for p in processes.find_by_argument(
            str(lay.containerd_config().address))}
        victims |= {p.pid for p in self._node_cgroup_processes(cluster, node)}
        holder = {p.pid for p in self.state.processes if p.name == f"{cluster}/{node}/mounts"}
        killed = []
        for pid in sorted(victims - holder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed

    def agent_pids(self, cluster: str) -> dict[str, list[int]]:
        """The PIDs of each agent module running in `cluster`'s pods (AGENT_MODULES:
        `python3 -m MODULE`), for restarting them one by one."""
        out: dict[str, list[int]] = {}
        for n in self.plan.cluster(cluster).nodes:
            for p in self._node_cgroup_processes(cluster, n.name):
                module = _agent_module(p.pid)
                if module is not None:
                    out.setdefault(module, []).append(p.pid)
        return out

    def agent_rss_mb(self) -> dict[str, float]:
        """The Globalnet agents' summed RSS on the busiest gateway node and on the
        busiest other node (what a node pays for running Globalnet), in MiB."""
        per_node: dict[tuple[bool, str], float] = {}
        for c in self.plan.clusters:
            for n in c.nodes:
                agents = [p for p in self._node_cgroup_processes(c.name, n.name)
                          if _runs_agent(p.pid)]
                per_node[(n is c.gateway, n.name)] = processes.rss_mb(agents)
        gateways = [v for (gw, _), v in per_node.items() if gw] or [0.0]
        others = [v for (gw, _), v in per_node.items() if not gw] or [0.0]
        return {"gateway_node": round(max(gateways), 1), "node": round(max(others), 1)}

    # --- exec ---------------------------------------------------------------------------
    def exec_argv(self, cluster: str, pod: str, argv: list[str], namespace: str = "default"
                  ) -> list[str]:
        """Run `argv` in the pod's (first) container: its namespaces, files and tools."""
        rec = self.pod(cluster, pod, namespace)
        if not rec.pid:
            raise LabError(f"pod {namespace}/{rec.name} of {cluster} has no running container")
        return ["nsenter", "-t", str(rec.pid), "--net", "--mount", "--uts", "--ipc", "--pid",
                "--", *argv]

    def kubectl_argv(self, cluster: str, argv: list[str]) -> list[str]:
        if cluster == "broker":
            kubeconfig = self.broker_kubeconfig()
        else:
            kubeconfig = self.cluster(cluster).kubeconfig
        return ["kubectl", "--kubeconfig", str(kubeconfig), *argv]


AGENT_MODULES = ("gateway.engine", "gateway.syncer", "globalnet.agent", "lighthouse.agent",
                 "gateway.routeagent")


def _agent_module(pid: int) -> str | None:
    """The agent module process `pid` runs (`python3 -m MODULE ...`), if any."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((m for m in AGENT_MODULES if m.encode() in argv[:4]), None)


def _runs_agent(pid: int) -> bool:
    """Whether process `pid` is one of the agents."""
    return _agent_module(pid) is not None


def _prometheus_wanted(plan: LabPlan) -> bool:
    """Whether `lab up` starts Prometheus (it scrapes the Globalnet agents)."""
    return plan.spec.globalnet and plan.spec.prometheus and lab_prometheus.binary() is not None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


