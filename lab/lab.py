"""Bring a lab of overlapping-CIDR clusters up and down.

`Lab.up` builds, in order: the underlay and the Broker, each cluster's network
(control-plane namespace holding the node bridge, node namespaces, the gateway
node's underlay leg), the control planes (in parallel), the host relay, Node
objects and the CRDs, kube-proxy on every node, the demo workload and, with
`globalnet`, the clusterset (`lab/globalnet.py`). Any failure tears down what
was made and raises `LabError` with a one-line reason. `Lab.down` works
from the state file alone, so it also cleans up after a crash.
"""

from __future__ import annotations

import concurrent.futures
import functools
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube import crds, names, resources
from kube.crud import ResourceClient, ensure_namespace
from kube.resources import Resource
from lab import globalnet as lab_globalnet
from lab import kubelet, netns, processes
from lab.controlplane import ControlPlane, ControlPlaneConfig, ControlPlaneError, find_binary
from lab.pki import write_kubeconfig
from lab.ports import port_is_free
from lab.state import LabState, PodRecord, StateStore
from lab.topology import ClusterPlan, LabPlan, LabSpec, TopologyError, plan_lab, pod_netns

APISERVER_PORT = 6443
UNDERLAY_BRIDGE = "ul0"
NODE_BRIDGE = "br0"


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

    # --- queries -------------------------------------------------------------------
    @property
    def plan(self) -> LabPlan:
        if self.state is None:
            raise LabError(f"lab {self.name!r} is not up (gnctl lab up --name {self.name})")
        return plan_lab(self.state.spec)

    def cluster(self, name: str) -> ClusterHandle:
        plan = self.plan.cluster(name)
        d = self.store.dir / name
        return ClusterHandle(plan, d / "host.kubeconfig", d / "incluster.kubeconfig")

    def clusters(self) -> list[ClusterHandle]:
        return [self.cluster(c.name) for c in self.plan.clusters]

    def broker_kubeconfig(self) -> Path:
        return self.store.dir / "broker" / "host.kubeconfig"

    def pods(self, cluster: str | None = None) -> list[PodRecord]:
        assert self.state is not None
        return [p for p in self.state.pods if cluster is None or p.cluster == cluster]

    def pod(self, cluster: str, name: str, namespace: str = "default") -> PodRecord:
        for p in self.pods(cluster):
            if p.name == name and p.namespace == namespace:
                return p
        raise LabError(f"no pod {namespace}/{name} in cluster {cluster} of lab {self.name}")

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
                self._teardown(progress=lambda *_: None)
                if isinstance(exc, LabError | ControlPlaneError | TopologyError):
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

        progress(f"[2/{steps}] control planes (etcd, kube-apiserver, kube-controller-manager)")
        planes: dict[str, ControlPlane] = {}
        if plan.broker_netns and plan.broker_ip:
            planes["broker"] = self._control_plane("broker", plan.broker_netns, plan.broker_ip,
                                                   plan.spec.service_cidr, kcm=False)
        for c in plan.clusters:
            planes[c.name] = self._control_plane(c.name, c.cp_netns, c.cp_ip, c.service_cidr)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(planes)) as pool:
            futures = [pool.submit(cp.start) for cp in planes.values()]
            concurrent.futures.wait(futures)
        for fut in futures:
            fut.result()

        progress(f"[3/{steps}] host relay and kubeconfigs")
        self._start_relay(plan, planes)

        progress(f"[4/{steps}] nodes and kube-proxy")
        for c in plan.clusters:
            handle = self.cluster(c.name)
            for node in c.nodes:
                kubelet.register_node(handle.api_client(), node)
            crds.install_crds(handle.api_client())
            for node in c.nodes:
                self._start_kube_proxy(c, node.name, handle.incluster_kubeconfig)
        if plan.broker_netns:
            from kube.client import new_api_client

            crds.install_crds(new_api_client(self.broker_kubeconfig()))

        if workload:
            progress(f"[5/{steps}] demo workload: web-0/web-1 behind Service web, client-0")
            for c in plan.clusters:
                self.deploy_demo_workload(c.name)
        if plan.spec.globalnet:
            progress(f"[6/{steps}] Globalnet and Lighthouse: global CIDRs from the Broker, "
                     "agents and DNS on every gateway node, routes between gateways")
            self._enable_globalnet(plan)

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
            for other in c.nodes:
                if other is not node:
                    netns.ensure_route(node.netns, other.pod_cidr, gateway=other.ip)
            if node.underlay_ip:
                netns.ensure_veth(
                    netns=plan.underlay_netns, ifname=f"v{c.name}", peer_netns=node.netns,
                    peer_ifname="ul0",
                    peer_address=f"{node.underlay_ip}/{plan.underlay_prefixlen}",
                    master=UNDERLAY_BRIDGE,
                )

    def _enable_globalnet(self, plan: LabPlan) -> None:
        """See lab/globalnet.py: join, start the Broker syncer, the gateway engine,
        the Globalnet and Lighthouse agents and the route agents, point pods at
        the clusterset DNS."""
        from kube.client import new_api_client

        assert self.state is not None
        members = {c.name: (c, self.cluster(c.name).api_client()) for c in plan.clusters}
        cidrs = lab_globalnet.join_clusterset(new_api_client(self.broker_kubeconfig()), members)
        self.state.global_cidrs = cidrs
        self._save()
        broker_kubeconfig = self.store.dir / "broker" / "incluster.kubeconfig"
        for c in plan.clusters:
            kubeconfig = self.cluster(c.name).incluster_kubeconfig
            for what, argv in (
                ("syncer", lab_globalnet.syncer_argv(kubeconfig, broker_kubeconfig)),
                ("engine", lab_globalnet.engine_argv(c, cidrs[c.name], kubeconfig,
                                                     broker_kubeconfig)),
                ("globalnet", lab_globalnet.agent_argv(c, cidrs[c.name], kubeconfig)),
                ("lighthouse", lab_globalnet.lighthouse_argv(c, kubeconfig, broker_kubeconfig)),
            ):
                proc, _ = processes.spawn(
                    f"{c.name}/{c.gateway.name}/{what}", argv,
                    log_path=self.store.dir / c.name / "logs" / f"{what}.log",
                    in_netns=c.gateway.netns,
                )
                self._record_process(proc)
            for node in c.nodes:
                proc, _ = processes.spawn(
                    f"{c.name}/{node.name}/routeagent",
                    lab_globalnet.routeagent_argv(c, node.name, kubeconfig),
                    log_path=self.store.dir / c.name / "logs" / f"routeagent-{node.name}.log",
                    in_netns=node.netns,
                )
                self._record_process(proc)
        for pod in self.state.pods:
            lab_globalnet.write_resolv_conf(pod.netns, plan.cluster(pod.cluster))
        peers = len(plan.clusters) - 1
        for c in plan.clusters:
            gw = f"{c.name}/{c.gateway.name}"
            self._await(f"{gw}/globalnet",
                        f"the Globalnet agent of {c.name} allocating the cluster egress IPs",
                        functools.partial(self._egress_allocated, c.name), timeout=90)
            self._await(f"{gw}/lighthouse", f"the Lighthouse DNS server of {c.name} answering",
                        functools.partial(lab_globalnet.dns_answers, c))
        wanted = lab_globalnet.node_routes(plan, cidrs)
        self._await(None, "the route agents routing the remote global CIDRs",
                    lambda: all(lab_globalnet.routes_of(ns) == routes
                                for ns, routes in wanted.items()))
        for c in plan.clusters:
            self._await(f"{c.name}/{c.gateway.name}/engine",
                        f"the gateway of {c.name} connecting to the other gateways",
                        functools.partial(self._cable_connected, c, peers=peers), timeout=60)

    def _await(self, proc_name: str | None, what: str, ready: Callable[[], bool], *,
               timeout: float = 30) -> None:
        """Poll `ready()` until it holds; fail at once when process `proc_name` died."""
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
        raise LabError(f"no {what} within {timeout:.0f} s{where}")

    def _egress_allocated(self, cluster: str) -> bool:
        obj = self.cluster(cluster).client(resources.CLUSTER_GLOBAL_EGRESS_IPS).get_or_none(
            names.CLUSTER_EGRESS_NAME)
        return bool(((obj or {}).get("status") or {}).get("allocatedIPs"))

    def _cable_connected(self, c: ClusterPlan, *, peers: int) -> bool:
        links = self._cable_status(c)
        return len(links) == peers and all(link["status"] == "connected" for link in links)

    def _control_plane(
        self, name: str, ns: str, ip: str, service_cidr: str, *, kcm: bool = True
    ) -> ControlPlane:
        return ControlPlane(
            ControlPlaneConfig(
                name=f"{self.name}-{name}", data_dir=self.store.dir / name,
                advertise_address=ip, bind_address="0.0.0.0", apiserver_port=APISERVER_PORT,
                service_cidr=service_cidr, netns=ns, controller_manager=kcm,
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

    def _start_kube_proxy(self, c: ClusterPlan, node_name: str, kubeconfig: Path) -> None:
        node = kubelet.node_by_name(c, node_name)
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
    def add_pod(
        self, cluster: str, name: str, *, node: str | None = None, namespace: str = "default",
        labels: dict[str, str] | None = None, command: list[str] | None = None,
        ready: bool = True, hostname: str | None = None, subdomain: str | None = None,
    ) -> PodRecord:
        """Create a pod: namespace wired to its node, API object, status, optional process."""
        assert self.state is not None
        c = self.plan.cluster(cluster)
        target = kubelet.node_by_name(c, node) if node else c.nodes[0]
        ip = self._next_pod_ip(c, target.name)
        pod_id = name if namespace == "default" else f"{namespace}-{name}"
        ns = pod_netns(self.plan, cluster, pod_id)
        ifname = kubelet.host_ifname(cluster, f"{namespace}/{name}")
        record = PodRecord(cluster, name, namespace, target.name, ip, ns, ifname)
        self.state.pods.append(record)
        self._record_netns(ns)
        kubelet.wire_pod(pod_ns=ns, node=target, ip=ip, ifname=ifname)
        if self.state.global_cidrs:  # the clusterset is up: its DNS server is there
            lab_globalnet.write_resolv_conf(ns, c)
        api = self.cluster(cluster).api_client()
        ensure_namespace(api, namespace)
        kubelet.create_pod_object(api, namespace=namespace, name=name, node=target,
                                  labels=labels or {}, hostname=hostname, subdomain=subdomain)
        kubelet.set_pod_status(api, namespace=namespace, name=name, node=target, ip=ip,
                               ready=ready)
        if command:
            proc, _ = processes.spawn(
                f"{cluster}/{namespace}/{name}", command, in_netns=ns,
                log_path=self.store.dir / cluster / "pods" / f"{namespace}-{name}.log",
            )
            self._record_process(proc)
        self._save()
        return record

    def set_pod_ready(
        self, cluster: str, name: str, ready: bool, namespace: str = "default"
    ) -> None:
        rec = self.pod(cluster, name, namespace)
        node = kubelet.node_by_name(self.plan.cluster(cluster), rec.node)
        kubelet.set_pod_status(self.cluster(cluster).api_client(), namespace=namespace,
                               name=name, node=node, ip=rec.ip, ready=ready)

    def _next_pod_ip(self, c: ClusterPlan, node_name: str) -> str:
        import netaddr

        node = kubelet.node_by_name(c, node_name)
        used = {p.ip for p in self.pods(c.name) if p.node == node.name}
        for addr in list(netaddr.IPNetwork(node.pod_cidr).iter_hosts())[1:]:
            if str(addr) not in used:
                return str(addr)
        raise LabError(f"node {node.name} has no free pod address in {node.pod_cidr}")

    def deploy_demo_workload(self, cluster: str) -> None:
        """web-0 and web-1 serve HTTP behind the ClusterIP Service `web`; client-0 calls it."""
        c = self.plan.cluster(cluster)
        for i in range(2):
            pod_name = f"web-{i}"
            www = self.store.dir / cluster / "www" / pod_name
            www.mkdir(parents=True, exist_ok=True)
            (www / "index.html").write_text(f"hello from {cluster}/{pod_name}\n")
            self.add_pod(
                cluster, pod_name, node=c.nodes[i % len(c.nodes)].name, labels={"app": "web"},
                command=["python3", "-m", "http.server", "80", "--bind", "0.0.0.0",
                         "--directory", str(www)],
            )
        self.add_pod(cluster, "client-0", node=c.nodes[-1].name, labels={"app": "client"})
        body = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]},
        }
        self.cluster(cluster).client(resources.SERVICES).create_if_absent(body)

    # --- down ----------------------------------------------------------------------
    def down(self, *, progress: Any = print) -> bool:
        """Remove everything of this lab; True when there was something to remove."""
        with self.store.locked():
            return self._teardown(progress=progress)

    def _teardown(self, *, progress: Any) -> bool:
        state = self.store.load()
        prefix = f"gn-{self.name}-"
        names = set(netns.list_names(prefix))
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
                "nodes": [{"name": n.name, "ip": n.ip, "pod_cidr": n.pod_cidr,
                           "underlay_ip": n.underlay_ip, "netns": n.netns} for n in c.nodes],
                "pods": [{"name": p.name, "namespace": p.namespace, "node": p.node, "ip": p.ip,
                          "netns": p.netns} for p in self.pods(c.name)],
            })
        return {
            "name": self.name,
            "phase": state.phase,
            "broker": {"api": f"https://127.0.0.1:{plan.broker_host_api_port}",
                       "kubeconfig": state.kubeconfigs.get("broker", "")}
            if plan.broker_netns else None,
            "clusters": clusters,
            "processes": procs,
        }

    def _cable_status(self, c: ClusterPlan) -> list[dict[str, str]]:
        """The gateway engine's view of its connections (empty when unreadable)."""
        try:
            gw = self.cluster(c.name).client(resources.GATEWAYS).get_or_none(
                c.gateway.name, namespace=names.CLUSTER_NAMESPACE)
        except Exception:
            return []
        status = (gw or {}).get("status") or {}
        return [{"cluster": str((x.get("endpoint") or {}).get("cluster_id", "")),
                 "status": str(x.get("status", "")),
                 "rtt": str((x.get("latencyRTT") or {}).get("last", ""))}
                for x in status.get("connections") or []]

    def rss_mb(self) -> float:
        assert self.state is not None
        return processes.rss_mb(self.state.processes)

    # --- exec ---------------------------------------------------------------------------
    def exec_argv(self, cluster: str, pod: str, argv: list[str], namespace: str = "default"
                  ) -> list[str]:
        rec = self.pod(cluster, pod, namespace)
        return netns.exec_argv(rec.netns, argv)

    def kubectl_argv(self, cluster: str, argv: list[str]) -> list[str]:
        if cluster == "broker":
            kubeconfig = self.broker_kubeconfig()
        else:
            kubeconfig = self.cluster(cluster).kubeconfig
        return ["kubectl", "--kubeconfig", str(kubeconfig), *argv]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


