"""A real Kubernetes node of the lab: containerd and kubelet in the node's network
namespace, sharing one private mount namespace, with pods wired by CNI.

Why it is built this way (all measured on this machine kind):

* both start under `nsenter --net=/run/netns/NODE` (`ip netns exec` remounts /sys,
  and runc then finds no cgroup mount);
* kubelet and containerd hard-code host paths that several nodes on one machine
  would share: kubelet's garbage collector deletes the `/var/log/pods` folders of
  pods it does not know (the other nodes'), `/var/lib/kubelet/device-plugins`,
  libcni's result cache `/var/lib/cni/results`, the shims' `/run/containerd/s`.
  So a small holder process (`tail -f` of the node's ready flag) owns one mount namespace per node
  (`unshare --mount --propagation slave`: the host's mounts still reach it, none
  of its own reach the host). In it /var/lib and /var/log are overlays whose
  upper layers are the node's folders (the host's files stay readable and are
  never written), and the node's own folder is bind-mounted on
  /run/containerd/s. containerd and kubelet join it with `nsenter --mount`, so
  every mount they make - kubelet's bind of its root onto itself, container
  rootfs overlays, pod network namespaces - lives and dies with that namespace;
  nothing is ever mounted in the host's;
* pod networking is the lab's routed model as a CNI configuration: `ptp` (a
  veth per pod, the node side holding the pod gateway address, a /32 route per
  pod, no masquerade) and `host-local` with its own `dataDir`, from the node's
  pod range of lab/topology.py, so every pod packet is routed by the node and
  crosses its netfilter hooks (kube-proxy, Globalnet);
* kubelet is patched never to write host sysctls (scripts/patch-k8s.sh) and
  runs with cgroupfs under its own pre-created `cgroupRoot`, its own root, a
  serving certificate from the cluster's CA and webhook authentication and
  authorization (the API server presents a client certificate from the same
  CA), `oomScoreAdj: 0` and `maxOpenFiles: 20000` (no CAP_SYS_RESOURCE here);
* image garbage collection is off: images cannot be pulled again here;
* images are imported once per set of archives into a template containerd root
  kept in the image cache (`node_root_template`); each node's root is a
  hard-linked copy of it (`cp -al`, the bolt databases copied for real). Content
  blobs and committed snapshot layers are never written in place (containers
  write to their own upper layers), so sharing their inodes is safe, and a node
  starts with its images in well under a second instead of importing 220 MB.

`stop()` works from the node's folder alone (after a crash too): kubelet, every
container, containerd and its shims, the holder, the cgroups (depth-first),
then the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datapath.netns import NETNS_DIR
from kube import names, resources
from kube.crud import ResourceClient
from lab import images, netns, processes
from lab.containerd import (
    Containerd,
    ContainerdConfig,
    ContainerdError,
    archive_names,
    cgroup_mounts,
    remove_shim_socket_dir,
)
from lab.controlplane import find_binary
from lab.pki import ControlPlanePKI, issue_kubelet_serving
from lab.processes import ManagedProcess
from lab.topology import ClusterPlan, NodePlan

# The images every lab node has: the sandbox, the test workload and the agents'
# (imported once into the template root, hard-linked into each node's).
NODE_IMAGES = ("pause", "test", "globalnet")
# How long a kubelet may take to bring its Node Ready (tests shorten it).
READY_TIMEOUT_S = float(os.environ.get("GLOBALNET_LAB_READY_TIMEOUT", "90"))
KUBELET_PORT = 10250


class NodeError(RuntimeError):
    """A node could not start; the message names the node and the log to read."""


@dataclass(frozen=True)
class NodeLayout:
    """Where one node keeps everything (all below `base`)."""

    lab: str
    cluster: str
    node: NodePlan
    base: Path

    @property
    def containerd_dir(self) -> Path:
        return self.base / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.base / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.base / "kubelet.yaml"

    @property
    def kubelet_log(self) -> Path:
        return self.base / "kubelet.log"

    @property
    def holder_log(self) -> Path:
        return self.base / "mounts.log"

    @property
    def ready_flag(self) -> Path:
        return self.base / "mounts.ready"

    @property
    def serving_cert(self) -> Path:
        return self.base / "pki" / "kubelet.crt"

    @property
    def serving_key(self) -> Path:
        return self.base / "pki" / "kubelet.key"

    @property
    def ipam_dir(self) -> Path:
        return self.base / "cni-ipam"

    @property
    def shim_dir(self) -> Path:
        return self.base / "shim-sockets"

    @property
    def cgroup(self) -> str:
        """kubelet's cgroupRoot, also the parent of everything containerd starts."""
        return f"/globalnet/{self.lab}/{self.node.name}"

    def containerd_config(self, mount_namespace: Path | None = None) -> ContainerdConfig:
        return ContainerdConfig(
            name=self.node.name, netns=self.node.netns, base_dir=self.containerd_dir,
            cgroup_parent=self.cgroup, mount_namespace=mount_namespace,
        )

    def containerd(self) -> Containerd:
        return Containerd(self.containerd_config())


def cni_config(node: NodePlan, ipam_dir: Path) -> dict[str, Any]:
    """The routed wiring as CNI: ptp + host-local from the node's pod range."""
    return {
        "cniVersion": "0.4.0",
        "name": "lab",
        "plugins": [{
            "type": "ptp",
            # Pods keep their source address: kube-proxy and Globalnet decide NAT.
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": node.pod_cidr, "gateway": node.pod_gateway}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(ipam_dir),
            },
        }],
    }


def kubelet_config(layout: NodeLayout, pki: ControlPlanePKI) -> dict[str, Any]:
    """KubeletConfiguration for one lab node."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node.ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(layout.serving_cert),
        "tlsPrivateKeyFile": str(layout.serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "30s"},
            "x509": {"clientCAFile": str(pki.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup,
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        # The rlimit cannot be raised without CAP_SYS_RESOURCE.
        "maxOpenFiles": 20000,
        "oomScoreAdj": 0,
        "protectKernelDefaults": False,
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        # Images cannot be pulled here: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "1s",
        "containerLogMaxSize": "10Mi",
    }


def holder_script(layout: NodeLayout) -> str:
    """The mounts of the node's private namespace, then a process that keeps it."""
    b = layout.base
    lines = ["set -e"]
    for target, name in (("/var/lib", "var-lib"), ("/var/log", "var-log")):
        up, work = b / name / "upper", b / name / "work"
        lines.append(f"mount -t overlay overlay -o lowerdir={target},upperdir={up},"
                     f"workdir={work} {target}")
    lines += [
        f"mkdir -p {layout.shim_dir} /run/containerd/s",
        f"mount --bind {layout.shim_dir} /run/containerd/s",
        # The node's own bpffs where a node has it (the eBPF datapath's pins, which
        # the agent's pod mounts from the host path): a fresh instance, private to
        # this namespace, gone with it; /proc/HOLDER/root/sys/fs/bpf from outside.
        "mount -t bpf bpf /sys/fs/bpf",
        # Shared (within this namespace): kubelet refuses HostToContainer propagation
        # from a private mount.
        "mount --make-shared /sys/fs/bpf",
        f"touch {layout.ready_flag}",
        # One process that keeps the namespace, found again by its argument.
        f"exec tail -f {layout.ready_flag}",
    ]
    return "\n".join(lines) + "\n"


def prepare_cgroups(cgroup: str) -> None:
    """kubelet wants its cgroupRoot in every v1 hierarchy; cpuset children start
    empty, so each level copies cpus and mems from its parent."""
    for mount in cgroup_mounts():
        if not (mount / "cgroup.procs").exists() or (mount / "cgroup.controllers").exists():
            continue  # not a v1 hierarchy (the unified one has cgroup.controllers)
        path = mount
        for part in cgroup.strip("/").split("/"):
            parent, path = path, path / part
            path.mkdir(exist_ok=True)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if (path / f).exists() and not (path / f).read_text().strip():
                    (path / f).write_text((parent / f).read_text())


def _template_key(archives: list[Path]) -> str:
    version = subprocess.run(["containerd", "--version"], capture_output=True,
                             text=True).stdout.strip()
    text = "\n".join([version, *(str(a.resolve()) for a in archives)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _template_build(pid: int) -> tuple[Path, str]:
    """Folder and namespace of the template build run by process `pid`."""
    return images.images_dir() / f".node-root-build-{pid}", f"gn-tpl{pid}"


def clean_stale_template_builds() -> None:
    """Remove what a template build killed midway left: its containerd (found by
    its config path), the folder, the namespace."""
    for build in images.images_dir().glob(".node-root-build-*"):
        pid = int(build.name.rsplit("-", 1)[1])
        if pid != os.getpid() and os.path.exists(f"/proc/{pid}"):
            continue  # still building
        folder, ns = _template_build(pid)
        with contextlib.suppress(ContainerdError):
            Containerd(ContainerdConfig(name="template", netns=ns, base_dir=folder)).stop()
        shutil.rmtree(folder, ignore_errors=True)
        netns.delete_netns(ns)


def node_root_template(archives: list[Path], *, progress: Callable[[str], object] = print
                       ) -> Path:
    """A containerd root holding `archives` imported, cached by their content (the
    archives' names carry it) and containerd's version; built on first use by a
    throwaway containerd in a throwaway namespace."""
    cache = images.images_dir()
    done = cache / f"node-root-{_template_key(archives)}"
    if (done / "complete").exists():
        return done / "root"
    with open(cache / ".node-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (done / "complete").exists():
            return done / "root"
        clean_stale_template_builds()
        progress("      importing the node images once into a cached containerd root "
                 f"({', '.join(a.name for a in archives)})")
        build, ns = _template_build(os.getpid())
        ctd = Containerd(ContainerdConfig(name="template", netns=ns, base_dir=build))
        try:
            netns.ensure_netns(ns)
            ctd.start()
            for archive in archives:
                ctd.import_image(archive)
            assert ctd.process is not None
            processes.stop([ctd.process], timeout=10)
            shutil.rmtree(done, ignore_errors=True)
            done.mkdir()
            os.rename(build / "root", done / "root")
            (done / "complete").write_text(json.dumps([str(a) for a in archives]))
        finally:
            ctd.stop()
            netns.delete_netns(ns)
    for old in cache.glob("node-root-*"):
        if old != done:  # built from archives that are no longer current
            shutil.rmtree(old, ignore_errors=True)
    return done / "root"


def link_root(template: Path, root: Path) -> None:
    """A node's containerd root as hard links to the template's files; the bolt
    databases, which containerd rewrites in place, are real copies."""
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "-l", str(template), str(root)], check=True,
                   capture_output=True)
    for db in root.glob("*/*.db"):  # meta.db and each snapshotter's metadata.db
        tmp = db.with_suffix(".copy")
        shutil.copy2(db, tmp)
        os.replace(tmp, db)


class LabNode:
    """One node's processes; `start()` records each as soon as it runs."""

    def __init__(self, layout: NodeLayout, *, on_spawn: Callable[[ManagedProcess], None]
                 ) -> None:
        self.layout = layout
        self.on_spawn = on_spawn
        self.holder: ManagedProcess | None = None
        self.kubelet: ManagedProcess | None = None

    @property
    def name(self) -> str:
        return self.layout.node.name

    def start_runtime(self, template: Path | None = None) -> float:
        """Mount namespace, containerd with its images (from `template`, a root made
        by `node_root_template`, when given); returns seconds spent on images."""
        lay = self.layout
        for d in (lay.base / "var-lib" / "upper", lay.base / "var-lib" / "work",
                  lay.base / "var-log" / "upper", lay.base / "var-log" / "work",
                  lay.shim_dir, lay.ipam_dir, lay.kubelet_root):
            d.mkdir(parents=True, exist_ok=True)
        try:
            archives = node_archives()
        except NodeError as exc:
            raise NodeError(f"node {self.name}: {exc}") from None
        argv = ["nsenter", f"--net={NETNS_DIR / lay.node.netns}", "--",
                "unshare", "--mount", "--propagation", "slave", "--",
                "sh", "-c", holder_script(lay)]
        self.holder, popen = processes.spawn(f"{lay.cluster}/{self.name}/mounts", argv,
                                             log_path=lay.holder_log)
        self.on_spawn(self.holder)
        deadline = time.monotonic() + 10
        while not lay.ready_flag.exists():
            if popen.poll() is not None or time.monotonic() > deadline:
                raise NodeError(f"node {self.name}: its mount namespace was not made; "
                                f"see {lay.holder_log}: {processes.tail(str(lay.holder_log), 1)}")
            time.sleep(0.02)
        cfg = lay.containerd_config(Path(f"/proc/{self.holder.pid}/ns/mnt"))
        started = time.monotonic()
        if template is not None:
            link_root(template, cfg.root)
        cfg.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (cfg.cni_conf_dir / "10-lab.conflist").write_text(
            json.dumps(cni_config(lay.node, lay.ipam_dir), indent=2))
        prepare_cgroups(lay.cgroup)
        ctd = Containerd(cfg)
        try:
            ctd.start()
        except ContainerdError as exc:
            raise NodeError(f"node {self.name}: {exc}") from None
        finally:
            if ctd.process is not None:
                self.on_spawn(ctd.process)
        try:
            known = set(ctd.image_names())
            for archive in archives:
                # From the template the images are there already; else import.
                if not set(archive_names(archive)) <= known:
                    ctd.import_image(archive)
        except ContainerdError as exc:
            raise NodeError(f"node {self.name}: {exc} (log: {cfg.log_path})") from None
        return time.monotonic() - started

    def start_kubelet(self, *, pki: ControlPlanePKI, kubeconfig: Path) -> None:
        lay = self.layout
        assert self.holder is not None, "start_runtime() first"
        issue_kubelet_serving(pki, node_name=self.name, node_ip=lay.node.ip,
                              cert_path=lay.serving_cert, key_path=lay.serving_key)
        lay.kubelet_config.write_text(json.dumps(kubelet_config(lay, pki), indent=2))
        labels = [f"{names.GATEWAY_LABEL}={names.GATEWAY_LABEL_VALUE}"] \
            if lay.node.underlay_ip else []
        sock = lay.containerd_config().address
        argv = [
            "nsenter", f"--net={NETNS_DIR / lay.node.netns}",
            f"--mount=/proc/{self.holder.pid}/ns/mnt", "--",
            find_binary("kubelet"),
            "--config", str(lay.kubelet_config),
            "--kubeconfig", str(kubeconfig),
            "--container-runtime", "remote",
            "--container-runtime-endpoint", f"unix://{sock}",
            "--root-dir", str(lay.kubelet_root),
            "--cert-dir", str(lay.serving_cert.parent),
            "--hostname-override", self.name,
            "--node-ip", lay.node.ip,
            *(["--node-labels", ",".join(labels)] if labels else []),
            "--v", "1",
        ]
        try:
            self.kubelet, _ = processes.spawn(f"{lay.cluster}/{self.name}/kubelet", argv,
                                              log_path=lay.kubelet_log)
        except RuntimeError:
            raise NodeError(f"kubelet of node {self.name} exited: "
                            f"{processes.tail(str(lay.kubelet_log), 1)} "
                            f"(log: {lay.kubelet_log})") from None
        self.on_spawn(self.kubelet)

    def await_ready(self, api: Any, *, timeout: float = READY_TIMEOUT_S) -> float:
        """Wait for the Node to be Ready, giving it its pod CIDR on the way; seconds."""
        lay = self.layout
        nodes = ResourceClient(api, resources.NODES)
        started = time.monotonic()
        cidr_set = False
        while time.monotonic() - started < timeout:
            if self.kubelet is not None and not processes.is_alive(self.kubelet):
                raise NodeError(f"kubelet of node {self.name} exited: "
                                f"{processes.tail(str(lay.kubelet_log), 1)} "
                                f"(log: {lay.kubelet_log})")
            obj = nodes.get_or_none(self.name)
            if obj is not None:
                if not cidr_set and not (obj.get("spec") or {}).get("podCIDR"):
                    cidr = lay.node.pod_cidr
                    nodes.patch(self.name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
                cidr_set = True
                conditions = (obj.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in conditions):
                    return time.monotonic() - started
            time.sleep(0.25)
        raise NodeError(f"node {self.name} did not become Ready within {timeout:.0f} s; "
                        f"see {lay.kubelet_log}")

    def rss_mb(self) -> float:
        return processes.rss_mb([p for p in (self.holder, self.kubelet) if p])


def stop_node(layout: NodeLayout, known: list[ManagedProcess]) -> None:
    """Remove all one node made, in order: kubelet (so nothing restarts pods),
    every container and containerd with its shims and cgroups, the holder (its
    mount namespace and every mount in it go with it), the node's folder."""
    prefix = f"{layout.cluster}/{layout.node.name}/"
    mine = [p for p in known if p.name.startswith(prefix)]
    kubelets = [p for p in mine if p.name.endswith("/kubelet")]
    kubelets += [p for p in processes.find_by_argument(str(layout.kubelet_config))
                 if p.pid not in {k.pid for k in kubelets}]
    processes.stop(kubelets, timeout=5)
    layout.containerd().stop()
    holders = [p for p in mine if p.name.endswith("/mounts")]
    holders += [p for p in processes.find_by_argument(str(layout.ready_flag))
                if p.pid not in {h.pid for h in holders}]
    processes.stop(holders, timeout=5)
    remove_shim_socket_dir()
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(layout.base)


def node_archives() -> list[Path]:
    """The image archives every node needs; a missing one names `make images`."""
    try:
        return [images.archive(n) for n in NODE_IMAGES]
    except images.ImageError as exc:
        raise NodeError(str(exc)) from None


def node_by_name(cluster: ClusterPlan, name: str) -> NodePlan:
    for n in cluster.nodes:
        if n.name == name or n.name.endswith(f"-{name}"):
            return n
    raise LookupError(f"no node {name!r} in cluster {cluster.name}")


def container_pid(layout: NodeLayout, container_id: str) -> int | None:
    """The init PID of a CRI container of this node (runc's state, read directly)."""
    state = layout.containerd_config().runc_root / "k8s.io" / container_id / "state.json"
    try:
        pid = int(json.loads(state.read_text())["init_process_pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None
