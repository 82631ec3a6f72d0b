"""Render the manifests that install Globalnet onto one member cluster.

    python -m deploy.manifests --cluster-id c1 --global-cidr 242.0.0.0/16 \\
        --cluster-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/16 [--out DIR]

``render(options)`` returns the API objects in apply order:

* the CRDs (``kube.crds``, the same files the installer applies) and the namespace;
* per component (``deploy.rbac``): a ServiceAccount, a token Secret for it, its
  Role / ClusterRole and their bindings;
* ConfigMap ``globalnet-kubeconfig``: the kubeconfig every agent is started with
  (each agent takes ``--kubeconfig``). It names the token and CA by relative path, so
  each container gets its own identity from a projected volume holding this file and
  its component's token Secret. That is how the three agents of the gateway pod run
  as three ServiceAccounts;
* DaemonSet ``globalnet-gateway`` on the nodes labelled ``submariner.io/gateway=true``:
  the gateway engine (running the Broker syncer in its process, as the syncer's own
  identity: its token is mounted beside the engine's) and the Globalnet agent with
  its datapath;
* DaemonSet ``globalnet-route-agent`` on every node;
* Deployment ``globalnet-lighthouse-agent`` and Service ``globalnet-lighthouse-dns``
  (UDP and TCP 53). The clusterset DNS server runs inside the Lighthouse agent
  (``--dns-listen``): the standalone ``lighthouse.dns`` serves a records file, not the
  API, so a separate DNS Deployment would have nothing to answer from.

The Broker's kubeconfig is not rendered: it is a credential, written by ``gnctl join``
into Secret ``names.BROKER_KUBECONFIG_SECRET``, which the pods mount.
``coredns_server_block(options)`` is the CoreDNS forward block for the cluster's
Corefile (``deploy/coredns``).

Capabilities, per container (all others dropped, no privileged container):

* gateway engine: NET_ADMIN (the cable: links, addresses, routes) and NET_RAW
  (the health pings, ``ping``, from the host network namespace), the node's
  ``CABLE_STATE_DIR`` (the WireGuard key pair outlives the pod);
* cable (``--cable-driver wireguard`` or ``ipsec`` only): NET_ADMIN and the node's
  ``/dev/net/tun``: it runs wireguard-go or charon, which the engine configures
  through a socket in a directory both mount; a container of its own, so that
  the tunnel outlives an engine restart;
* Globalnet, ``--datapath nftables``: NET_ADMIN (its nftables table);
  ``--datapath ebpf``: NET_ADMIN (tc filters and the shim nftables table) and
  SYS_ADMIN: bcc opens the maps it pins (``BPF_TABLE_PINNED``) with
  ``BPF_MAP_GET_FD_BY_ID``, which the kernel allows only with CAP_SYS_ADMIN, so
  BPF + PERFMON alone fail with EPERM (SYS_ADMIN covers both). Plus the host's bpffs
  (pins outlive the pod, so a restart flushes nothing; the node must have bpffs at
  /sys/fs/bpf, as systemd mounts it) and the host's kernel headers read-only (bcc
  compiles at start);
* route agent: NET_ADMIN (its routes, proto 149);
* Lighthouse agent: none, as a non-root user (the Broker syncer needs none either, and
  shares the engine's container).

No container mounts ``/run/xtables.lock``: nothing here runs iptables (the datapath is
nftables or tc BPF).

Metrics: every agent container serves Prometheus metrics (``--metrics-port``) on a
container port named ``metrics``, a port of its own (``METRICS_PORTS``): the node
agents share the host's network namespace. Upstream's 32780/32781 lie in Linux's
ephemeral range (32768-60999), where any outgoing connection of the node may hold
the port when the agent starts; ours, 29780-29783, lie below it and below the
NodePort range (30000-32767). Pod templates carry the ``prometheus.io/*`` scrape
annotations (their ``port`` names the pod's first metrics port: annotation-based
configs scrape one port per pod); ``deploy/prometheus/`` scrapes every container
port named ``metrics`` instead, so the gateway pod's two are both found.
"""

from __future__ import annotations

import argparse
import copy
import importlib.resources
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from datapath import cable_drivers
from deploy import rbac
from kube import crds, names, resources, validation
from kube.resources import Resource

JSON = dict[str, Any]

PART_OF: Final = "globalnet"
IMAGE_REPOSITORY: Final = "globalnet/globalnet"
# The tag deploy/images/build.sh gives the image it builds (and imports into the lab).
DEFAULT_IMAGE: Final = f"{IMAGE_REPOSITORY}:lab"
DATAPATHS: Final = ("nftables", "ebpf")
# The cable drivers (datapath.cable_drivers); those with a userspace daemon get
# the gateway pod's `cable` container.
CABLE_DRIVERS: Final = cable_drivers.names()
USERSPACE_CABLES: Final = ("wireguard", "ipsec")
DEFAULT_API_SERVER: Final = "https://kubernetes.default.svc"

# Object names.
GATEWAY_DAEMONSET: Final = "globalnet-gateway"
ROUTE_AGENT_DAEMONSET: Final = "globalnet-route-agent"
LIGHTHOUSE_DEPLOYMENT: Final = "globalnet-lighthouse-agent"
LIGHTHOUSE_DNS_SERVICE: Final = "globalnet-lighthouse-dns"
KUBECONFIG_CONFIGMAP: Final = "globalnet-kubeconfig"
KUBECONFIG_KEY: Final = "kubeconfig"

# Where containers find their files.
KUBE_DIR: Final = "/etc/globalnet/kube"
BROKER_DIR: Final = "/etc/globalnet/broker"
BPFFS: Final = "/sys/fs/bpf"
VXLAN_DEVICE: Final = "vx-globalnet"  # datapath.vxlan.IFNAME (a test keeps them equal)
# What the gateway engine keeps across restarts (the WireGuard key pair), on the node.
CABLE_STATE_DIR: Final = "/var/lib/globalnet/gateway"
# The engine's conntrackd (datapath/ctsync.py: the state of cross-cluster connections
# replicated to the other gateway nodes): its config, lock and control socket, in
# memory, private to the pod.
CTSYNC_RUN_DIR: Final = "/run/globalnet-ctsync"
# Where the engine and the cable container meet (wireguard-go's UAPI socket,
# charon's vici socket): a directory both mount, here in the engine. The cable
# container mounts it at CABLE_DAEMON_RUN_DIRS: wireguard-go's fixed
# /run/wireguard; charon's whole /run (its PID file has a fixed path there and
# the root file system is read-only).
CABLE_RUN_DIRS: Final = {"wireguard": "/run/wireguard", "ipsec": "/run/globalnet-ipsec"}
CABLE_DAEMON_RUN_DIRS: Final = {"wireguard": "/run/wireguard", "ipsec": "/run"}
IPSEC_DIR: Final = "/etc/globalnet/ipsec"
DNS_CONTAINER_PORT: Final = 5353  # unprivileged: the agent runs without capabilities
# Each agent's metrics port (distinct: the node agents share the host network;
# outside the ephemeral range 32768-60999 and the NodePort range 30000-32767).
METRICS_PORTS: Final = {rbac.GATEWAY_ENGINE: 29780, rbac.GLOBALNET: 29781,
                        rbac.ROUTE_AGENT: 29782, rbac.LIGHTHOUSE_AGENT: 29783}
METRICS_PORT_NAME: Final = "metrics"
DNS_PORT: Final = 53
NOBODY: Final = 65534

NAME_LABEL: Final = "app.kubernetes.io/name"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"


class OptionsError(ValueError):
    """Options the manifests cannot be rendered from; the message is one line."""


def _network(value: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise OptionsError(f"{what}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class Options:
    """What one member cluster's manifests depend on."""

    cluster_id: str
    # This cluster's slice of the clusterset's global CIDR (gnctl join allocates it).
    global_cidr: str
    cluster_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]
    namespace: str = names.CLUSTER_NAMESPACE
    image: str = DEFAULT_IMAGE
    datapath: str = "nftables"
    cable_driver: str = "vxlan"
    # The URL the agents reach this cluster's API server at (written into their
    # kubeconfig; host-network pods resolve it through the cluster DNS).
    api_server: str = DEFAULT_API_SERVER
    # A fixed ClusterIP for the Lighthouse DNS Service (None: the cluster picks one).
    dns_service_ip: str | None = None
    zone: str = "clusterset.local"
    verbose: bool = False
    # This cluster's slice of the Broker's ClusterSetIP pool (None: the Broker has none).
    clusterset_ip_cidr: str | None = None
    # Every ClusterSetIP service answers its VIP in DNS (the Broker's pool says so).
    clusterset_ip_enabled: bool = False

    def __post_init__(self) -> None:
        if not validation.is_dns_label(self.cluster_id):
            raise OptionsError(f"cluster ID {self.cluster_id!r} is not a DNS-1123 label "
                               "(lower-case letters, digits and '-', at most 63)")
        if self.namespace != names.CLUSTER_NAMESPACE:
            raise OptionsError(f"namespace {self.namespace!r}: the gateway engine and route "
                               f"agent have no namespace flag; only {names.CLUSTER_NAMESPACE} "
                               "works")
        if self.datapath not in DATAPATHS:
            raise OptionsError(f"datapath {self.datapath!r}: expected one of "
                               f"{', '.join(DATAPATHS)}")
        if self.cable_driver not in CABLE_DRIVERS:
            raise OptionsError(f"cable driver {self.cable_driver!r}: expected one of "
                               f"{', '.join(CABLE_DRIVERS)}")
        if self.datapath == "ebpf" and self.cable_driver in USERSPACE_CABLES:
            raise OptionsError(f"datapath ebpf with cable driver {self.cable_driver}: the "
                               "eBPF programs expect an Ethernet cable device and this "
                               "driver's is a layer-3 TUN; use --datapath nftables or "
                               "--cable-driver vxlan")
        if not self.image or any(ch.isspace() for ch in self.image) or ":" not in \
                self.image.rsplit("/", 1)[-1]:
            raise OptionsError(f"image {self.image!r}: expected REPOSITORY:TAG")
        if not self.api_server.startswith("https://"):
            raise OptionsError(f"API server {self.api_server!r}: expected an https:// URL")
        if not validation.is_dns_subdomain(self.zone):
            raise OptionsError(f"zone {self.zone!r} is not a DNS name")
        if not self.cluster_cidrs:
            raise OptionsError("at least one cluster (pod) CIDR is needed")
        if not self.service_cidrs:
            raise OptionsError("at least one service CIDR is needed")
        global_net = _network(self.global_cidr, "global CIDR")
        services = [_network(c, "service CIDR") for c in self.service_cidrs]
        local = [_network(c, "cluster CIDR") for c in self.cluster_cidrs] + services
        for net in local:
            if net.version == global_net.version and net.overlaps(global_net):
                raise OptionsError(f"global CIDR {global_net} overlaps local CIDR {net}")
        if self.clusterset_ip_cidr is not None:
            vips = _network(self.clusterset_ip_cidr, "ClusterSetIP CIDR")
            for net in (*local, global_net):
                if net.version == vips.version and net.overlaps(vips):
                    raise OptionsError(f"ClusterSetIP CIDR {vips} overlaps {net}")
        if self.dns_service_ip is not None:
            try:
                ip = ipaddress.ip_address(self.dns_service_ip)
            except ValueError as exc:
                raise OptionsError(f"DNS service IP: {exc}") from None
            if not any(ip in net for net in services):
                raise OptionsError(f"DNS service IP {ip} is not in a service CIDR "
                                   f"({', '.join(map(str, services))})")

    @property
    def local_cidrs(self) -> tuple[str, ...]:
        return (*self.cluster_cidrs, *self.service_cidrs)


# --- helpers ----------------------------------------------------------------------------

def service_account_name(component: str) -> str:
    return f"globalnet-{component}"


def token_secret_name(component: str) -> str:
    return f"globalnet-{component}-token"


def role_name(component: str) -> str:
    """The name of the component's Role and of its ClusterRole (and their bindings)."""
    return f"globalnet-{component}"


def _labels(opts: Options, name: str, component: str | None = None) -> dict[str, str]:
    labels = {NAME_LABEL: name, PART_OF_LABEL: PART_OF}
    if component:
        labels[COMPONENT_LABEL] = component
    return labels


def _meta(opts: Options, name: str, *, namespaced: bool = True,
          component: str | None = None) -> JSON:
    meta: JSON = {"name": name, "labels": _labels(opts, name, component)}
    if namespaced:
        meta["namespace"] = opts.namespace
    return meta


def kubeconfig(opts: Options) -> str:
    """The agents' kubeconfig: this cluster's API server, the token and CA of whichever
    component's Secret is mounted beside it (relative paths resolve next to the file)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {
            "server": opts.api_server, "certificate-authority": "ca.crt"}}],
        "users": [{"name": "agent", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "agent", "context": {
            "cluster": "cluster", "user": "agent", "namespace": opts.namespace}}],
        "current-context": "agent",
    }
    return yaml.safe_dump(config, sort_keys=False)


# --- RBAC -------------------------------------------------------------------------------

def _rbac(opts: Options) -> list[JSON]:
    out: list[JSON] = []
    for component in rbac.COMPONENTS:
        sa = service_account_name(component)
        subject = {"kind": "ServiceAccount", "name": sa, "namespace": opts.namespace}
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": _meta(opts, sa, component=component),
                    # Each container mounts its own token (see kubeconfig()).
                    "automountServiceAccountToken": False})
        secret_meta = _meta(opts, token_secret_name(component), component=component)
        secret_meta["annotations"] = {"kubernetes.io/service-account.name": sa}
        out.append({"apiVersion": "v1", "kind": "Secret", "metadata": secret_meta,
                    "type": "kubernetes.io/service-account-token"})
        ns_rules = rbac.rules_for(component, opts.cluster_id, rbac.Scope.NAMESPACE)
        if ns_rules:
            out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": _meta(opts, role_name(component), component=component),
                        "rules": ns_rules})
            out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": _meta(opts, role_name(component), component=component),
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                    "name": role_name(component)},
                        "subjects": [subject]})
        cluster_rules = rbac.rules_for(component, opts.cluster_id, rbac.Scope.CLUSTER)
        if cluster_rules:
            name = role_name(component)
            out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": _meta(opts, name, namespaced=False, component=component),
                        "rules": cluster_rules})
            out.append({"apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRoleBinding",
                        "metadata": _meta(opts, name, namespaced=False, component=component),
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                    "kind": "ClusterRole", "name": name},
                        "subjects": [subject]})
    return out


# --- pods -------------------------------------------------------------------------------

def _kube_volume(component: str) -> JSON:
    """The kubeconfig and the component's token and CA, in one directory."""
    return {"name": f"kube-{component}", "projected": {"sources": [
        {"configMap": {"name": KUBECONFIG_CONFIGMAP,
                       "items": [{"key": KUBECONFIG_KEY, "path": KUBECONFIG_KEY}]}},
        {"secret": {"name": token_secret_name(component),
                    "items": [{"key": "token", "path": "token"},
                              {"key": "ca.crt", "path": "ca.crt"}]}},
    ]}}


BROKER_VOLUME: Final = {"name": "broker-kubeconfig", "secret": {
    "secretName": names.BROKER_KUBECONFIG_SECRET,
    "items": [{"key": names.BROKER_KUBECONFIG_KEY, "path": names.BROKER_KUBECONFIG_KEY}]}}
NODE_ENV: Final = [
    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
]


def _security(capabilities: Sequence[str], *, root: bool) -> JSON:
    ctx: JSON = {"readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    if "SYS_ADMIN" not in capabilities:
        # The API refuses allowPrivilegeEscalation=false beside CAP_SYS_ADMIN.
        ctx["allowPrivilegeEscalation"] = False
    if capabilities:
        ctx["capabilities"]["add"] = list(capabilities)
    if root:
        # Capabilities reach a process's effective set only as root (no ambient caps).
        ctx["runAsUser"] = 0
    else:
        ctx.update(runAsUser=NOBODY, runAsGroup=NOBODY, runAsNonRoot=True)
    return ctx


def _container(opts: Options, component: str, module: str, args: list[str], *,
               capabilities: Sequence[str] = (), root: bool = False, broker: bool = False,
               mounts: Sequence[JSON] = (), cpu: str = "20m", memory: str = "48Mi") -> JSON:
    argv = [f"--kubeconfig={KUBE_DIR}/{KUBECONFIG_KEY}"]
    volume_mounts = [{"name": f"kube-{component}", "mountPath": KUBE_DIR, "readOnly": True},
                     # The root file system is read-only; scratch space for tools.
                     {"name": "tmp", "mountPath": "/tmp"}]
    if broker:
        argv.append(f"--broker-kubeconfig={BROKER_DIR}/{names.BROKER_KUBECONFIG_KEY}")
        volume_mounts.append({"name": "broker-kubeconfig", "mountPath": BROKER_DIR,
                              "readOnly": True})
    argv += args
    argv.append(f"--metrics-port={METRICS_PORTS[component]}")
    if opts.verbose:
        argv.append("--verbose")
    return {
        "name": component,
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-m", module],
        "args": argv,
        "env": copy.deepcopy(NODE_ENV),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORTS[component],
                   "protocol": "TCP"}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}},
        "securityContext": _security(capabilities, root=root),
        "volumeMounts": volume_mounts + list(mounts),
    }


def scrape_annotations(containers: Sequence[JSON]) -> dict[str, str]:
    """The ``prometheus.io/*`` annotations of a pod template: its first metrics port."""
    ports = [p["containerPort"] for c in containers for p in c.get("ports") or []
             if p.get("name") == METRICS_PORT_NAME]
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(ports[0]),
            "prometheus.io/path": "/metrics"}


def _pod_spec(opts: Options, containers: list[JSON], volumes: list[JSON], *,
              service_account: str, host_network: bool) -> JSON:
    spec: JSON = {
        # Every container uses its own token (its projected volume); the pod's
        # ServiceAccount only names who the pod runs as.
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "containers": containers,
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
    }
    if host_network:
        spec.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet",
                    # Node agents run on every node they select, tainted or not.
                    tolerations=[{"operator": "Exists"}])
    return spec


def _gateway_daemonset(opts: Options) -> JSON:
    ebpf = opts.datapath == "ebpf"
    globalnet_args = [
        f"--cluster-id={opts.cluster_id}", f"--global-cidr={opts.global_cidr}",
        *(f"--local-cidr={c}" for c in opts.local_cidrs),
        f"--namespace={opts.namespace}", "--identity=$(NODE_NAME)", "--node-name=$(NODE_NAME)",
        f"--datapath={opts.datapath}",
    ]
    globalnet_mounts: list[JSON] = []
    volumes = [_kube_volume(c) for c in (rbac.GATEWAY_ENGINE, rbac.BROKER_SYNCER,
                                         rbac.GLOBALNET)] + [copy.deepcopy(BROKER_VOLUME)]
    capabilities = ["NET_ADMIN"]
    if ebpf:
        # The programs go on the cable device only (VXLAN's: see Options): on a
        # standby gateway node, which has none, they translate nothing.
        globalnet_args += [f"--bpffs={BPFFS}", f"--tunnel-dev={VXLAN_DEVICE}"]
        capabilities.append("SYS_ADMIN")
        globalnet_mounts = [
            {"name": "bpffs", "mountPath": BPFFS, "mountPropagation": "HostToContainer"},
            {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": True},
            {"name": "usr-src", "mountPath": "/usr/src", "readOnly": True},
        ]
        volumes += [
            {"name": "bpffs", "hostPath": {"path": BPFFS, "type": "Directory"}},
            {"name": "lib-modules", "hostPath": {"path": "/lib/modules", "type": "Directory"}},
            {"name": "usr-src", "hostPath": {"path": "/usr/src", "type": "Directory"}},
        ]
    # The Broker syncer runs inside the engine's process (one interpreter less on
    # every gateway node) but keeps its own identity: its token beside the engine's.
    syncer_dir = f"{KUBE_DIR}-{rbac.BROKER_SYNCER}"
    engine_args = [
        f"--cluster-id={opts.cluster_id}", "--node-name=$(NODE_NAME)",
        "--private-ip=$(NODE_IP)", f"--subnet={opts.global_cidr}",
        f"--syncer-kubeconfig={syncer_dir}/{KUBECONFIG_KEY}",
        f"--cable-driver={opts.cable_driver}", f"--conntrack-sync-dir={CTSYNC_RUN_DIR}",
    ]
    engine_mounts: list[JSON] = [
        {"name": f"kube-{rbac.BROKER_SYNCER}", "mountPath": syncer_dir, "readOnly": True},
        {"name": "ctsync-run", "mountPath": CTSYNC_RUN_DIR}]
    volumes.append({"name": "ctsync-run", "emptyDir": {"medium": "Memory"}})
    cable = _cable_container(opts)
    if cable is not None:
        engine_args += [f"--state-dir={CABLE_STATE_DIR}", "--cable-daemon=external"]
        engine_mounts.append({"name": "cable-state", "mountPath": CABLE_STATE_DIR})
        volumes.append({"name": "cable-state",
                        "hostPath": {"path": CABLE_STATE_DIR, "type": "DirectoryOrCreate"}})
        engine_mounts.append({"name": "cable-run",
                              "mountPath": CABLE_RUN_DIRS[opts.cable_driver]})
        volumes += [{"name": "cable-run", "emptyDir": {"medium": "Memory"}},
                    {"name": "dev-net-tun",
                     "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}}]
    if opts.cable_driver == "ipsec":
        engine_args += [f"--cable-run-dir={CABLE_RUN_DIRS['ipsec']}",
                        f"--psk-file={IPSEC_DIR}/{names.IPSEC_PSK_KEY}"]
        engine_mounts.append({"name": "ipsec-psk", "mountPath": IPSEC_DIR, "readOnly": True})
        volumes.append({"name": "ipsec-psk", "secret": {
            "secretName": names.IPSEC_PSK_SECRET,
            "items": [{"key": names.IPSEC_PSK_KEY, "path": names.IPSEC_PSK_KEY}]}})
    engine = _container(opts, rbac.GATEWAY_ENGINE, "gateway.engine", engine_args,
                        capabilities=["NET_ADMIN", "NET_RAW"], root=True, broker=True,
                        mounts=engine_mounts)
    containers = [
        engine,
        _container(opts, rbac.GLOBALNET, "globalnet.agent", globalnet_args,
                   capabilities=capabilities, root=True, mounts=globalnet_mounts,
                   cpu="50m", memory="96Mi" if ebpf else "64Mi"),
        *([cable] if cable is not None else []),
    ]
    return _daemonset(opts, GATEWAY_DAEMONSET, "gateway", _pod_spec(
        opts, containers, volumes, service_account=service_account_name(rbac.GATEWAY_ENGINE),
        host_network=True), node_selector={names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE})


# The cable container's command, per userspace driver. WireGuard: the kernel's
# when this node has it (the engine then makes the device itself and this
# container only waits), else wireguard-go in the foreground; the engine sets
# keys and peers through its UAPI socket. IPsec: charon with kernel-libipsec.
CABLE_DAEMONS: Final = {
    "wireguard": ["sh", "-c",
                  "if ip link add gn-wg-probe0 type wireguard 2>/dev/null; then "
                  "ip link del gn-wg-probe0; exec sleep infinity; fi; "
                  "WG_PROCESS_FOREGROUND=1 exec wireguard-go -f wg-globalnet"],
    "ipsec": ["python3", "-m", "datapath.ipsec", "daemon", "--run-root=/run"],
}


CABLE_CAPABILITIES: Final = {"wireguard": ["NET_ADMIN"],
                              "ipsec": ["NET_ADMIN", "NET_BIND_SERVICE"]}


def _cable_container(opts: Options) -> JSON | None:
    """The container that runs the cable's userspace daemon, so that it lives as
    long as the pod: an engine restart (SIGKILL included) leaves the tunnel and
    its sessions up, and the new engine adopts them. None for kernel drivers."""
    if opts.cable_driver not in USERSPACE_CABLES:
        return None
    container: JSON = {
        "name": "cable",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(CABLE_DAEMONS[opts.cable_driver]),
        "resources": {"requests": {"cpu": "20m", "memory": "24Mi"}},
        # NET_ADMIN: the TUN device, its link and charon's routes; IKE's UDP 500 and
        # 4500 are privileged ports; root: capabilities as above.
        "securityContext": _security(CABLE_CAPABILITIES[opts.cable_driver], root=True),
        "volumeMounts": [
            {"name": "cable-run", "mountPath": CABLE_DAEMON_RUN_DIRS[opts.cable_driver]},
            {"name": "dev-net-tun", "mountPath": "/dev/net/tun"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if opts.cable_driver == "ipsec":
        # wireguard-go exits with its TUN device; charon keeps running without its
        # own (deleted by hand): kubelet restarts it, and the engine configures the
        # new one.
        container["livenessProbe"] = {
            "exec": {"command": ["sh", "-c", "ls /sys/class/net | grep -q '^ipsec'"]},
            "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 2}
    return container


def _route_agent_daemonset(opts: Options) -> JSON:
    container = _container(opts, rbac.ROUTE_AGENT, "gateway.routeagent", [
        "--node-name=$(NODE_NAME)", f"--cluster-id={opts.cluster_id}",
    ], capabilities=["NET_ADMIN"], root=True, memory="32Mi")
    return _daemonset(opts, ROUTE_AGENT_DAEMONSET, rbac.ROUTE_AGENT, _pod_spec(
        opts, [container], [_kube_volume(rbac.ROUTE_AGENT)],
        service_account=service_account_name(rbac.ROUTE_AGENT), host_network=True))


def _daemonset(opts: Options, name: str, component: str, pod_spec: JSON, *,
               node_selector: dict[str, str] | None = None) -> JSON:
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    labels = _labels(opts, name, component)
    template_meta = {"labels": labels,
                     "annotations": scrape_annotations(pod_spec["containers"])}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": _meta(opts, name, component=component),
        "spec": {
            "selector": {"matchLabels": {NAME_LABEL: name}},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def _lighthouse(opts: Options) -> list[JSON]:
    name = LIGHTHOUSE_DEPLOYMENT
    component = rbac.LIGHTHOUSE_AGENT
    container = _container(opts, component, "lighthouse.agent", [
        f"--cluster-id={opts.cluster_id}", f"--broker-namespace={names.BROKER_NAMESPACE}",
        f"--dns-listen=0.0.0.0:{DNS_CONTAINER_PORT}", f"--zone={opts.zone}",
        *([f"--clusterset-ip-cidr={opts.clusterset_ip_cidr}"] if opts.clusterset_ip_cidr
          else []),
        *(["--clusterset-ip-enabled"] if opts.clusterset_ip_enabled else []),
    ], broker=True, memory="64Mi")
    container["ports"] = [
        {"name": "dns", "containerPort": DNS_CONTAINER_PORT, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": DNS_CONTAINER_PORT, "protocol": "TCP"},
        *container["ports"],
    ]
    # Ready once the DNS server listens (it starts before the agent's caches sync).
    container["readinessProbe"] = {"tcpSocket": {"port": DNS_CONTAINER_PORT},
                                   "periodSeconds": 5}
    labels = _labels(opts, name, component)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(opts, name, component=component),
        "spec": {
            # One agent: it has no leader election, two would race on the same writes;
            # Recreate keeps it at most one during an update.
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {NAME_LABEL: name}},
            "template": {
                "metadata": {"labels": labels, "annotations": scrape_annotations([container])},
                "spec": _pod_spec(
                    opts, [container], [_kube_volume(component), copy.deepcopy(BROKER_VOLUME)],
                    service_account=service_account_name(component), host_network=False)},
        },
    }
    service_spec: JSON = {
        "type": "ClusterIP",
        "selector": {NAME_LABEL: name},
        "ports": [
            {"name": "dns", "port": DNS_PORT, "targetPort": "dns", "protocol": "UDP"},
            {"name": "dns-tcp", "port": DNS_PORT, "targetPort": "dns-tcp", "protocol": "TCP"},
        ],
    }
    if opts.dns_service_ip is not None:
        service_spec["clusterIP"] = opts.dns_service_ip
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": _meta(opts, LIGHTHOUSE_DNS_SERVICE, component=component),
               "spec": service_spec}
    return [deployment, service]


# --- the whole set ----------------------------------------------------------------------

def render(opts: Options) -> list[JSON]:
    """Every object of one member cluster's installation, in apply order."""
    objects: list[JSON] = crds.load_crd_manifests()
    objects.append({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": _meta(opts, opts.namespace, namespaced=False)})
    objects += _rbac(opts)
    objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": _meta(opts, KUBECONFIG_CONFIGMAP),
                    "data": {KUBECONFIG_KEY: kubeconfig(opts)}})
    objects += _lighthouse(opts)
    objects.append(_gateway_daemonset(opts))
    objects.append(_route_agent_daemonset(opts))
    return objects


# The REST resource of every kind render() emits (to apply them).
_RBAC = "rbac.authorization.k8s.io"
KINDS: Final[dict[str, Resource]] = {
    r.kind: r for r in (
        resources.CUSTOM_RESOURCE_DEFINITIONS, resources.NAMESPACES,
        resources.SERVICE_ACCOUNTS, resources.SECRETS, resources.CONFIGMAPS,
        resources.SERVICES,
        Resource(_RBAC, "v1", "roles", "Role", namespaced=True),
        Resource(_RBAC, "v1", "rolebindings", "RoleBinding", namespaced=True),
        Resource(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False),
        Resource(_RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
        Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True),
        Resource("apps", "v1", "deployments", "Deployment", namespaced=True),
    )
}


def resource_of(obj: JSON) -> Resource:
    """The REST resource a rendered object is applied through."""
    resource = KINDS[obj["kind"]]
    if resource.api_version != obj["apiVersion"]:
        raise ValueError(f"{obj['kind']} {obj['metadata']['name']}: apiVersion "
                         f"{obj['apiVersion']}, expected {resource.api_version}")
    return resource


CORE_DNS_PLACEHOLDER: Final = "LIGHTHOUSE_DNS_IP"


def coredns_server_block(opts: Options, dns_ip: str | None = None) -> str:
    """deploy/coredns/Corefile.clusterset for this zone and the DNS Service's ClusterIP
    (``dns_ip``, else ``opts.dns_service_ip``, else the placeholder left in)."""
    text = importlib.resources.files("deploy").joinpath(
        "coredns/Corefile.clusterset").read_text(encoding="utf-8")
    ip = dns_ip or opts.dns_service_ip or CORE_DNS_PLACEHOLDER
    body = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(body).replace(CORE_DNS_PLACEHOLDER, ip).replace(
        "clusterset.local:53", f"{opts.zone}:53") + "\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the kubeconfig) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: Sequence[JSON]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


# Files ``--out`` writes: which objects go where.
def _file_of(obj: JSON) -> str:
    kind = obj["kind"]
    if kind == "CustomResourceDefinition":
        return "00-crds.yaml"
    if kind in {"Namespace", "ServiceAccount", "Secret", "Role", "RoleBinding",
                "ClusterRole", "ClusterRoleBinding"}:
        return "10-rbac.yaml"
    return "20-agents.yaml"


def write(opts: Options, out: Path) -> list[Path]:
    """Write the manifests (and the CoreDNS block) into ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[JSON]] = {}
    for obj in render(opts):
        files.setdefault(_file_of(obj), []).append(obj)
    written = []
    for name, objects in sorted(files.items()):
        path = out / name
        path.write_text(to_yaml(objects), encoding="utf-8")
        written.append(path)
    block = out / "coredns-clusterset.conf"
    block.write_text(coredns_server_block(opts), encoding="utf-8")
    written.append(block)
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m deploy.manifests",
                                description="Render Globalnet's manifests for one cluster.")
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--global-cidr", required=True, help="this cluster's global CIDR")
    p.add_argument("--cluster-cidr", action="append", required=True,
                   help="a pod CIDR (repeat)")
    p.add_argument("--service-cidr", action="append", required=True,
                   help="a service CIDR (repeat)")
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--datapath", choices=DATAPATHS, default="nftables")
    p.add_argument("--cable-driver", choices=CABLE_DRIVERS, default="vxlan")
    p.add_argument("--api-server", default=DEFAULT_API_SERVER,
                   help="the URL the agents reach this cluster's API server at")
    p.add_argument("--dns-service-ip", help="a fixed ClusterIP for the DNS Service")
    p.add_argument("--zone", default="clusterset.local")
    p.add_argument("--clusterset-ip-cidr", help="this cluster's slice of the ClusterSetIP pool")
    p.add_argument("--clusterset-ip-enabled", action="store_true",
                   help="answer every ClusterSetIP service's VIP in DNS")
    p.add_argument("--verbose-agents", action="store_true", help="start the agents with -v")
    p.add_argument("--out", type=Path, help="write files here (default: YAML on stdout)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        opts = Options(cluster_id=args.cluster_id, global_cidr=args.global_cidr,
                       cluster_cidrs=tuple(args.cluster_cidr),
                       service_cidrs=tuple(args.service_cidr), image=args.image,
                       datapath=args.datapath, cable_driver=args.cable_driver,
                       api_server=args.api_server, dns_service_ip=args.dns_service_ip,
                       zone=args.zone, clusterset_ip_cidr=args.clusterset_ip_cidr,
                       clusterset_ip_enabled=args.clusterset_ip_enabled,
                       verbose=args.verbose_agents)
    except OptionsError as exc:
        print(f"deploy.manifests: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(to_yaml(render(opts)))
        return 0
    for path in write(opts, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
