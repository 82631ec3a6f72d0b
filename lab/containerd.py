"""containerd for one lab node: inside the node's network namespace, private in
everything it writes, and removed without a trace.

Why each setting (all measured on this machine kind):

* started as `nsenter --net=/run/netns/NODE containerd`: `ip netns exec` remounts
  /sys, and runc then fails with "no cgroup mount found in mountinfo";
* `restrict_oom_score_adj`: there is no CAP_SYS_RESOURCE, and runc cannot lower an
  OOM score ("can't get final child's PID from pipe");
* cgroupfs (`SystemdCgroup = false`): there is no systemd;
* a private root, state, gRPC and ttrpc socket and runc root per node, pod network
  namespaces under the state dir (else they land in /run/netns), the stream server
  on 127.0.0.1 of the node's namespace, and the `opt` plugin off (it would create
  /opt/containerd);
* the sandbox image is the lab's own pause image: nothing can be pulled.

One path is hard-coded by containerd's shims: their sockets go to
/run/containerd/s. stop() removes the sockets of our shims, and the folder once
it is empty and no other mount namespace (a lab node's, lab/node.py) has its own
folder mounted there: removing a mount point detaches it in every namespace.
Containers started through `run()` get cgroups under the node's own parent,
which stop() removes depth-first in every hierarchy.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datapath.netns import NETNS_DIR
from lab import images, processes
from lab.processes import ManagedProcess

# The namespace the CRI plugin (and so kubelet) uses: images go there.
NAMESPACE = "k8s.io"
SHIM_SOCKET_DIR = Path("/run/containerd/s")
_UNIX_PATH_MAX = 107
_MNT_DETACH = 2


class ContainerdError(RuntimeError):
    """containerd could not start or do what was asked; the message says why in one line."""


@dataclass(frozen=True)
class ContainerdConfig:
    """Where one node's containerd keeps its state, and what it runs."""

    name: str
    netns: str
    base_dir: Path
    sandbox_image: str = field(default_factory=lambda: images.reference("pause"))
    cni_bin_dir: Path = Path("/usr/lib/cni")
    # Parent of the cgroups of containers started by run() (below every hierarchy).
    cgroup_parent: str = ""
    log_level: str = "info"
    # A mount namespace to run in (/proc/PID/ns/mnt of its holder): a lab node's
    # containerd and kubelet share one with the hard-coded host paths private.
    mount_namespace: Path | None = None

    @property
    def cgroup(self) -> str:
        """The cgroup parent, never a hierarchy's root: stop() kills what is below it."""
        path = "/" + (self.cgroup_parent or f"/globalnet/{self.name}").strip("/")
        if path == "/":
            raise ValueError("cgroup_parent must not be the root cgroup")
        return path

    @property
    def root(self) -> Path:
        return self.base_dir / "root"

    @property
    def state(self) -> Path:
        return self.base_dir / "state"

    @property
    def address(self) -> Path:
        return self.base_dir / "containerd.sock"

    @property
    def ttrpc_address(self) -> Path:
        return self.base_dir / "containerd.sock.ttrpc"

    @property
    def runc_root(self) -> Path:
        return self.base_dir / "runc"

    @property
    def fifo_dir(self) -> Path:
        return self.base_dir / "fifo"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base_dir / "cni" / "net.d"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "containerd.log"


def _q(value: object) -> str:
    """A TOML basic string (JSON escapes are valid TOML ones)."""
    return json.dumps(str(value))


def render_config(cfg: ContainerdConfig) -> str:
    """containerd's config.toml (version 2) for one node."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = {_q(cfg.root)}
state = {_q(cfg.state)}
# opt would create /opt/containerd; snapshotters we do not use only add start-up
# time and log noise. (The v1 runtime must stay: the tasks service needs it.)
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = {_q(cfg.address)}

[ttrpc]
  address = {_q(cfg.ttrpc_address)}

[debug]
  address = ""
  level = {_q(cfg.log_level)}

[metrics]
  address = ""

[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = {_q(cfg.runc_root)}

[{cri}]
  sandbox_image = {_q(cfg.sandbox_image)}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {_q(cfg.runc_root)}

[{cri}.cni]
  bin_dir = {_q(cfg.cni_bin_dir)}
  conf_dir = {_q(cfg.cni_conf_dir)}
"""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ContainerdError(f"{name} not found in PATH: run `make deps`")
    return found


def _unescape(path: str) -> str:
    """A mountinfo path field (spaces and the like are octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of the caller's mount namespace, in mount order."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        out.append((_unescape(left.split()[4]), right.split()[0]))
    return out


def mounts_under(base: Path) -> list[str]:
    """Mount points at or below `base`, innermost first."""
    prefix = str(base).rstrip("/") + "/"
    found = [m for m, _ in _mountinfo() if m == str(base) or m.startswith(prefix)]
    return sorted(found, key=len, reverse=True)


def cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy's mount point (v1 controllers and the unified one)."""
    return [Path(m) for m, fs in _mountinfo() if fs in ("cgroup", "cgroup2")]


def _cgroup_procs(path: Path) -> list[int]:
    pids: list[int] = []
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _remove_cgroup_tree(path: Path, hierarchy: Path) -> None:
    """rmdir a cgroup and its children, deepest first (cgroupfs allows only rmdir), then
    its ancestors below the hierarchy's root that no one else uses any more."""
    if path.is_dir():
        dirs = sorted((p for p in path.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, path]:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
    parent = path.parent
    while parent != hierarchy and hierarchy in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _mounted_in_another_namespace(path: Path) -> bool:
    """Whether some mount namespace other than ours has a mount at `path` (one
    reader per namespace). rmdir of such a mount point would detach it there."""
    own = os.readlink("/proc/self/ns/mnt")
    seen = {own}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.readlink(entry / "ns" / "mnt")
            if ns in seen:
                continue
            seen.add(ns)
            lines = (entry / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        if any(_unescape(line.split()[4]) == str(path) for line in lines):
            return True
    return False


def remove_shim_socket_dir() -> None:
    """The shims' fixed folder goes once no shim of anyone uses it, and no lab node
    has its own folder mounted there."""
    if _mounted_in_another_namespace(SHIM_SOCKET_DIR):
        return
    for d in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
        with contextlib.suppress(OSError):
            d.rmdir()


def shim_socket(address: Path | str, namespace: str, container_id: str) -> Path:
    """Where containerd 1.6's runc shim puts its socket for one task (a fixed folder)."""
    digest = hashlib.sha256(os.path.join(str(address), namespace, container_id).encode())
    return SHIM_SOCKET_DIR / digest.hexdigest()


def archive_names(archive: Path) -> list[str]:
    """The full image names a docker-archive carries (its manifest's RepoTags)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        manifest = json.load(member) if member else []
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


class Containerd:
    """One containerd process for one node; `stop()` removes all it made."""

    def __init__(self, config: ContainerdConfig) -> None:
        self.config = config
        self.process: ManagedProcess | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    # --- life cycle -------------------------------------------------------------
    def start(self, *, timeout: float = 30.0) -> None:
        """Start containerd in the node's namespace and wait until it answers."""
        cfg = self.config
        if not (NETNS_DIR / cfg.netns).exists():
            raise ContainerdError(f"containerd {cfg.name}: no network namespace {cfg.netns}")
        if len(str(cfg.ttrpc_address)) > _UNIX_PATH_MAX:
            raise ContainerdError(f"containerd {cfg.name}: socket path too long: {cfg.address}")
        containerd = _binary("containerd")
        _binary("runc")
        for d in (cfg.root, cfg.state, cfg.runc_root, cfg.fifo_dir, cfg.cni_conf_dir):
            d.mkdir(parents=True, exist_ok=True)
        cfg.config_path.write_text(render_config(cfg))
        enter = [f"--net={NETNS_DIR / cfg.netns}"]
        if cfg.mount_namespace is not None:
            enter.append(f"--mount={cfg.mount_namespace}")
        argv = ["nsenter", *enter, "--", containerd, "--config", str(cfg.config_path)]
        self.process, self._popen = processes.spawn(
            f"containerd-{cfg.name}", argv, log_path=cfg.log_path
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._popen.poll() is not None:
                raise ContainerdError(
                    f"containerd {cfg.name} exited at start ({self._popen.returncode}); "
                    f"see {cfg.log_path}: {processes.tail(str(cfg.log_path), 1)}"
                )
            if cfg.address.exists() and self.ctr("version", check=False, timeout=5).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ContainerdError(
                    f"containerd {cfg.name} did not answer within {timeout:.0f} s; "
                    f"see {cfg.log_path}"
                )
            time.sleep(0.05)

    def find_process(self) -> ManagedProcess | None:
        """This node's containerd, also when another process started it (found by its
        config path, which is private to the node)."""
        if self.process is not None and processes.is_alive(self.process):
            return self.process
        found = [p for p in processes.find_by_argument(str(self.config.config_path))
                 if p.name.endswith("containerd")]
        return found[0] if found else None

    def stop(self, *, timeout: float = 10.0) -> None:
        """Remove every task and container, stop containerd and its shims (by PID), then
        unmount, remove the cgroups and folders it used. Safe to call more than once,
        after a failed start and from another process than the one that started it."""
        cfg = self.config
        self.process = self.find_process()
        if self.process is not None:
            with contextlib.suppress(ContainerdError, subprocess.TimeoutExpired):
                self.remove_all_containers()
            processes.stop([self.process], timeout=timeout)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(1)
        self._stop_leftover_shims()
        # Container processes whose shim is gone: found by cgroup, killed by PID.
        cgroups = [(mount, mount / cfg.cgroup.lstrip("/")) for mount in cgroup_mounts()]
        for _ in range(25):
            pids = {p for _, c in cgroups for p in _cgroup_procs(c)}
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        libc = ctypes.CDLL(None, use_errno=True)
        for mount in mounts_under(cfg.base_dir):
            libc.umount2(mount.encode(), _MNT_DETACH)
        for hierarchy, c in cgroups:
            _remove_cgroup_tree(c, hierarchy)
        left = mounts_under(cfg.base_dir)
        if left:
            # Never delete through a mount: it may not be ours to empty.
            raise ContainerdError(f"containerd {cfg.name}: still mounted: {', '.join(left)}")
        shutil.rmtree(cfg.base_dir, ignore_errors=True)
        remove_shim_socket_dir()
        self.process = None

    def _stop_leftover_shims(self) -> None:
        """Shims outlive containerd by design: stop ours (by PID) and remove their sockets."""
        address = str(self.config.address)
        shims = [p for p in processes.find_by_argument(address) if "containerd-shim" in p.name]
        sockets = []
        for shim in shims:
            with contextlib.suppress(OSError):
                args = Path(f"/proc/{shim.pid}/cmdline").read_bytes().decode().split("\0")
                opts = dict(zip(args[1::2], args[2::2], strict=False))
                if "-namespace" in opts and "-id" in opts:
                    sockets.append(shim_socket(address, opts["-namespace"], opts["-id"]))
        processes.stop(shims, timeout=5)
        for sock in sockets:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()

    # --- client -------------------------------------------------------------------
    def ctr(self, *args: str, namespace: str = NAMESPACE, timeout: float = 60.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `ctr` against this containerd."""
        argv = [_binary("ctr"), "--address", str(self.config.address), "--namespace",
                namespace, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            words = [a for a in args if not a.startswith("-") and "/" not in a][:2]
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
            raise ContainerdError(
                f"ctr {' '.join(words)} on {self.config.name} failed ({proc.returncode}): "
                f"{last[0]}"
            )
        return proc

    def import_image(self, archive: Path, *, timeout: float = 300.0) -> list[str]:
        """Import a docker-archive into the CRI namespace (unpacked for the snapshotter);
        the full names its images now have."""
        self.ctr("images", "import", str(archive), timeout=timeout)
        known = set(self.image_names())
        names = archive_names(archive)
        missing = [n for n in names if n not in known]
        if missing:
            raise ContainerdError(f"import of {archive} did not make {', '.join(missing)}")
        return names

    def image_names(self) -> list[str]:
        return self.ctr("images", "ls", "-q").stdout.split()

    def run(
        self,
        image: str,
        container_id: str,
        argv: Sequence[str] = (),
        *,
        detach: bool = False,
        net_host: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a container of `image` (its cgroup under the node's parent, runc state in
        the node's runc root, FIFOs in the node's folder); `detach` leaves it running."""
        cfg = self.config
        opts = ["--runc-root", str(cfg.runc_root), "--fifo-dir", str(cfg.fifo_dir),
                "--cgroup", f"{cfg.cgroup}/{container_id}"]
        if net_host:
            opts.append("--net-host")
        for key, value in (env or {}).items():
            opts += ["--env", f"{key}={value}"]
        opts.append("-d" if detach else "--rm")
        return self.ctr("run", *opts, image, container_id, *argv, timeout=timeout,
                        check=check)

    def remove_all_containers(self, *, timeout: float = 30.0) -> None:
        """Kill and delete every task and container, in every namespace."""
        for ns in self.ctr("namespaces", "ls", "-q", timeout=timeout).stdout.split():
            for task in self._tasks(ns, timeout):
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, namespace=ns,
                         timeout=timeout, check=False)
                self.ctr("tasks", "delete", "-f", task, namespace=ns, timeout=timeout,
                         check=False)
            for cid in self.ctr("containers", "ls", "-q", namespace=ns,
                                timeout=timeout).stdout.split():
                self.ctr("containers", "delete", cid, namespace=ns, timeout=timeout,
                         check=False)

    def _tasks(self, namespace: str, timeout: float) -> list[str]:
        out = self.ctr("tasks", "ls", namespace=namespace, timeout=timeout).stdout
        return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]

    def task_status(self, container_id: str) -> str:
        """RUNNING, STOPPED, ... or "" when there is no such task."""
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return fields[-1]
        return ""

    def rss_mb(self) -> float:
        """Resident memory of containerd itself, in MiB."""
        return processes.rss_mb([self.process]) if self.process else 0.0
