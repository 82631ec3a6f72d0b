"""A real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager
and, for clusters with real nodes, kube-scheduler.

Used two ways: by the test fixture (in the test run's own namespace, on
loopback) and by lab clusters (inside a control-plane namespace, listening on
the cluster network too). Binaries come from scripts/build-k8s.sh's cache;
etcd from Debian. Everything is started detached and tracked by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import netns, pki, processes
from lab.ports import port_is_free
from lab.processes import ManagedProcess

K8S_VERSION = "v1.20.2"
# A cluster with real nodes runs kube-controller-manager's default controllers
# (deployments, replicasets, daemonsets, jobs, endpoints, EndpointSlices,
# namespaces, GC, ...) as any cluster does. nodeipam stays idle (no
# --allocate-node-cidrs): the lab's topology gives node n its pod CIDR, the same
# in every cluster.
KCM_DEFAULT_CONTROLLERS = ("*",)
# Where no kubelet runs (the tests' API servers, whose pods' status tests write),
# only what API objects need: endpoints for kube-proxy, EndpointSlices for
# Lighthouse, namespace and GC cleanup, the default ServiceAccount per namespace.
# The node lifecycle and pod GC controllers would evict or delete those pods.
KCM_API_CONTROLLERS = (
    "endpoint",
    "endpointslice",
    "endpointslicemirroring",
    "namespace",
    "garbagecollector",
    "serviceaccount",
    "serviceaccount-token",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message says why in one line."""


def cache_dir() -> Path:
    base = os.environ.get("GLOBALNET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "globalnet"
    )
    return Path(base)


def k8s_bin_dir() -> Path:
    return cache_dir() / "k8s" / K8S_VERSION


def find_binary(name: str) -> str:
    """Path of a control-plane binary, with a hint when it is missing."""
    candidate = k8s_bin_dir() / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ControlPlaneError(f"{name} not found in {k8s_bin_dir()} or PATH: run `make k8s`")


@dataclass
class ControlPlaneConfig:
    """Where and how one control plane listens."""

    name: str
    data_dir: Path
    # Address the API server binds and advertises (loopback for tests, the
    # cluster-network address inside a lab control-plane namespace).
    advertise_address: str = "127.0.0.1"
    bind_address: str = "127.0.0.1"
    apiserver_port: int = 6443
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    service_cidr: str = "10.96.0.0/16"
    netns: str | None = None
    controller_manager: bool = True
    controllers: tuple[str, ...] = KCM_API_CONTROLLERS
    scheduler: bool = False
    extra_sans: list[str] = field(default_factory=list)
    etcd_compaction_interval: str = "5m"


class ControlPlane:
    """One etcd + kube-apiserver (+ kube-controller-manager) and its credentials."""

    def __init__(
        self,
        config: ControlPlaneConfig,
        *,
        on_spawn: Callable[[ManagedProcess], None] | None = None,
    ) -> None:
        self.config = config
        # Called with each process as soon as it runs: the lab records it in its
        # state file at once, so a crash mid-start leaves nothing untracked.
        self.on_spawn = on_spawn
        self.procs: dict[str, ManagedProcess] = {}
        cfg = config
        self.pki_dir = cfg.data_dir / "pki"
        self.log_dir = cfg.data_dir / "logs"
        self.kubeconfig = cfg.data_dir / "admin.kubeconfig"
        self.pki: pki.ControlPlanePKI | None = None

    # --- addresses -----------------------------------------------------------
    @property
    def server_url(self) -> str:
        return f"https://{self.config.advertise_address}:{self.config.apiserver_port}"

    @property
    def etcd_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.config.etcd_client_port}"

    @property
    def token(self) -> str:
        assert self.pki is not None
        return self.pki.token

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Start etcd, then the API server, then the controller manager; wait for ready."""
        cfg = self.config
        if cfg.netns is None:
            for port in (cfg.apiserver_port, cfg.etcd_client_port, cfg.etcd_peer_port):
                if not port_is_free(cfg.bind_address, port):
                    raise ControlPlaneError(f"port {port} on {cfg.bind_address} is already in use")
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        service_ip = _first_host(cfg.service_cidr)
        self.pki = pki.create_pki(
            self.pki_dir,
            ip_sans=sorted({"127.0.0.1", cfg.advertise_address, service_ip, *cfg.extra_sans}),
            dns_sans=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        )
        pki.write_kubeconfig(
            self.kubeconfig, server=self.server_url, ca_cert=self.pki.ca_cert,
            token=self.pki.token, cluster_name=cfg.name,
        )
        self.start_etcd()
        self.start_apiserver()
        if cfg.controller_manager:
            self.start_controller_manager()
        if cfg.scheduler:
            self.start_scheduler()

    def start_etcd(self) -> None:
        cfg = self.config
        data = cfg.data_dir / "etcd"
        peer = f"http://127.0.0.1:{cfg.etcd_peer_port}"
        argv = [
            find_binary("etcd"),
            "--name", "default",
            "--data-dir", str(data),
            "--listen-client-urls", self.etcd_endpoint,
            "--advertise-client-urls", self.etcd_endpoint,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
            "--log-level", "warn",
        ]
        self._spawn("etcd", argv)
        self._wait(lambda: self._etcd_healthy(), "etcd", timeout=30)

    def start_apiserver(self) -> None:
        cfg = self.config
        assert self.pki is not None
        p = self.pki
        argv = [
            find_binary("kube-apiserver"),
            "--etcd-servers", self.etcd_endpoint,
            "--etcd-compaction-interval", cfg.etcd_compaction_interval,
            "--bind-address", cfg.bind_address,
            "--advertise-address", cfg.advertise_address,
            "--secure-port", str(cfg.apiserver_port),
            "--insecure-port", "0",
            "--tls-cert-file", str(p.serving_cert),
            "--tls-private-key-file", str(p.serving_key),
            "--token-auth-file", str(p.token_file),
            "--authorization-mode", "Node,RBAC",
            "--service-account-key-file", str(p.sa_pub),
            "--service-account-signing-key-file", str(p.sa_key),
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-cluster-ip-range", cfg.service_cidr,
            # The API server is no endpoint of its own kubernetes Service here (it
            # is reached through the host relay): keep the lease reconciler out.
            "--endpoint-reconciler-type", "none",
            # Lab pods need no API tokens: no token volume per pod to mount.
            "--disable-admission-plugins", "ServiceAccount",
            # kubectl exec/logs: dial kubelets at their node address, verify their
            # serving certificates and present our own (kubelet authenticates it
            # by the CA and authorizes it by webhook).
            "--kubelet-preferred-address-types", "InternalIP,Hostname",
            "--kubelet-certificate-authority", str(p.ca_cert),
            "--kubelet-client-certificate", str(p.kubelet_client_cert),
            "--kubelet-client-key", str(p.kubelet_client_key),
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--allow-privileged=true",
            "--v", "1",
        ]
        self._spawn("kube-apiserver", argv)
        self._wait(self.is_ready, "kube-apiserver", timeout=60)

    def start_controller_manager(self) -> None:
        assert self.pki is not None
        argv = [
            find_binary("kube-controller-manager"),
            "--kubeconfig", str(self.kubeconfig),
            "--controllers", ",".join(self.config.controllers),
            "--service-account-private-key-file", str(self.pki.sa_key),
            "--root-ca-file", str(self.pki.ca_cert),
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--port", "0",
            "--secure-port", "0",
            "--concurrent-endpoint-syncs", "5",
            "--v", "1",
        ]
        self._spawn("kube-controller-manager", argv)

    def start_scheduler(self) -> None:
        argv = [
            find_binary("kube-scheduler"),
            "--kubeconfig", str(self.kubeconfig),
            "--authentication-kubeconfig", str(self.kubeconfig),
            "--authorization-kubeconfig", str(self.kubeconfig),
            "--leader-elect=false",
            "--port", "0",
            "--secure-port", "0",
            "--v", "1",
        ]
        self._spawn("kube-scheduler", argv)

    def stop_apiserver(self) -> None:
        proc = self.procs.pop("kube-apiserver", None)
        if proc:
            # 1.20 often never finishes its graceful shutdown; it keeps no state of
            # its own (etcd does), so it gets two seconds before SIGKILL.
            processes.stop([proc], timeout=2.0)

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def stop(self) -> None:
        """Stop everything, controller manager first, etcd last."""
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc:
                processes.stop([proc], timeout=10.0 if name == "etcd" else 2.0)

    # --- readiness ---------------------------------------------------------------
    def is_ready(self) -> bool:
        if self.pki is None:
            return False
        try:
            return self.get("/readyz") == b"ok"
        except (OSError, urllib.error.URLError, ssl.SSLError):
            return False

    def get(self, path: str, timeout: float = 2.0) -> bytes:
        """GET an API path with the admin token (only valid in the same namespace)."""
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        req = urllib.request.Request(
            self.server_url + path, headers={"Authorization": f"Bearer {self.pki.token}"}
        )
        with self._in_netns(), urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return bytes(resp.read())

    def _in_netns(self) -> contextlib.AbstractContextManager[None]:
        """Reach the control plane where it listens, whichever namespace we are in."""
        if self.config.netns:
            return netns.entered(self.config.netns)
        return contextlib.nullcontext()

    def _etcd_healthy(self) -> bool:
        try:
            with (
                self._in_netns(),
                urllib.request.urlopen(self.etcd_endpoint + "/health", timeout=1) as resp,
            ):
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _spawn(self, name: str, argv: list[str]) -> None:
        proc, _ = processes.spawn(
            f"{self.config.name}/{name}", argv,
            log_path=self.log_dir / f"{name}.log", in_netns=self.config.netns,
        )
        self.procs[name] = proc
        if self.on_spawn:
            self.on_spawn(proc)

    def _wait(self, ready: object, what: str, *, timeout: float) -> None:
        assert callable(ready)
        proc = self.procs[what]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not processes.is_alive(proc):
                raise ControlPlaneError(
                    f"{what} of {self.config.name} exited: {processes.tail(proc.log, 1)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"{what} of {self.config.name} not ready after {timeout:.0f} s")


def _first_host(cidr: str) -> str:
    import netaddr

    return str(netaddr.IPNetwork(cidr).network + 1)
