"""The lab's state file: what exists, so `lab down` can remove it after a crash.

Every namespace is recorded *before* it is created and every process right after
it starts; the file is replaced atomically, so an interrupted `lab up` leaves a
file that still names everything it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.processes import ManagedProcess
from lab.topology import LabSpec


def runtime_root() -> Path:
    return Path(os.environ.get("GLOBALNET_LAB_DIR", "/run/globalnet/lab"))


@dataclass
class PodRecord:
    cluster: str
    name: str
    namespace: str
    node: str
    ip: str
    netns: str
    host_ifname: str
    app: str = ""
    pid: int = 0


@dataclass
class LabState:
    spec: LabSpec
    phase: str = "creating"
    netns: list[str] = field(default_factory=list)
    processes: list[ManagedProcess] = field(default_factory=list)
    pods: list[PodRecord] = field(default_factory=list)
    # Host-side kubeconfig per cluster name ("broker" included).
    kubeconfigs: dict[str, str] = field(default_factory=dict)
    # Global CIDR per cluster, once the clusters joined the Broker's Globalnet.
    global_cidrs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "spec": asdict(self.spec),
                "phase": self.phase,
                "netns": self.netns,
                "processes": [p.to_dict() for p in self.processes],
                "pods": [asdict(p) for p in self.pods],
                "kubeconfigs": self.kubeconfigs,
                "global_cidrs": self.global_cidrs,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> LabState:
        data = json.loads(text)
        return cls(
            spec=LabSpec(**data["spec"]),
            phase=data.get("phase", "unknown"),
            netns=list(data.get("netns", [])),
            processes=[ManagedProcess.from_dict(p) for p in data.get("processes", [])],
            pods=[PodRecord(**p) for p in data.get("pods", [])],
            kubeconfigs=dict(data.get("kubeconfigs", {})),
            global_cidrs=dict(data.get("global_cidrs", {})),
        )


class StateStore:
    """Reads and writes one lab's state file under its runtime directory."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self.dir = self.root / name
        self.path = self.dir / "state.json"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> LabState | None:
        try:
            return LabState.from_json(self.path.read_text())
        except FileNotFoundError:
            return None

    def save(self, state: LabState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise lab commands that change this lab.

        The lock file sits beside the lab's folder, so a refused `lab up` leaves
        no folder behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.dir.name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
