"""The lab's own bpf filesystem, for Globalnet agents run with `--datapath ebpf`.

The machine may have no bpffs at /sys/fs/bpf, and a lab must not add one there or
use one the host has: each lab mounts a private bpffs in its own folder
(`<lab dir>/bpffs`), records it in the state file before mounting, and unmounts
it in `lab down` - also after an `up` that was killed. Only a bpf mount at
exactly that path is ever unmounted.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

FOLDER = "bpffs"


def path_for(lab_dir: Path) -> Path:
    return lab_dir / FOLDER


def is_mounted(path: Path) -> bool:
    """Whether a bpf filesystem is mounted at exactly `path`."""
    target = str(path.resolve()) if path.exists() else str(path)
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == target and fields[2] == "bpf":
            return True
    return False


def mount(path: Path) -> None:
    """Mount a fresh bpffs at `path` unless one is there already."""
    if is_mounted(path):
        return
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "bpf", "bpf", str(path)], capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot mount a bpffs at {path}: {proc.stderr.strip()}")


def unmount(path: Path) -> bool:
    """Unmount every bpffs stacked at `path` and remove the empty folder. True when
    something was unmounted; anything else mounted there is left alone."""
    done = False
    for _ in range(8):  # a mount repeated by hand stacks; each umount pops one
        if not is_mounted(path):
            break
        proc = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
        if proc.returncode != 0:  # busy (a process inside it): detach it lazily
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
        done = True
    if not is_mounted(path):
        with contextlib.suppress(OSError):
            path.rmdir()
    return done
