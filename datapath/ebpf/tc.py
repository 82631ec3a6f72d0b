"""tc clsact filters of ours: attach pinned programs, read them back, detach.

Through the `tc` command (iproute2) run in the gateway's network namespace
with `nsenter --net` (not `ip netns exec`, which remounts /sys and would hide a
bpffs mounted at /sys/fs/bpf). Our filter is the one at preference
`names.TC_PREF`, handle `names.TC_HANDLE`, on clsact ingress or egress;
`replace` swaps the program atomically, so a reload leaves no gap. Nothing
else on the device is touched.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datapath.ebpf import names as n

NETNS_DIR = Path("/run/netns")


class TcError(RuntimeError):
    pass


def _argv(netns: str | None, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / netns}", *argv] if netns else argv


def run(netns: str | None, argv: list[str], *, check: bool = True,
        input_text: str | None = None) -> str:
    proc = subprocess.run(_argv(netns, argv), capture_output=True, text=True, timeout=30,
                          input=input_text)
    if check and proc.returncode != 0:
        raise TcError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Attached:
    """Our filter as the kernel reports it."""

    dev: str
    direction: str
    name: str
    prog_id: int


def _json(netns: str | None, argv: list[str]) -> list[dict[str, Any]]:
    out = run(netns, argv, check=False).strip()
    if not out:
        return []
    data = json.loads(out)
    return data if isinstance(data, list) else []


def has_clsact(netns: str | None, dev: str) -> bool:
    return any(q.get("kind") == "clsact"
               for q in _json(netns, ["tc", "-j", "qdisc", "show", "dev", dev]))


def ensure_clsact(netns: str | None, dev: str) -> bool:
    """Add the clsact qdisc unless the device has one. True when added."""
    if has_clsact(netns, dev):
        return False
    run(netns, ["tc", "qdisc", "add", "dev", dev, "clsact"])
    return True


def attached(netns: str | None, dev: str, direction: str) -> Attached | None:
    """Our filter on `dev` in `direction` (ingress/egress), or None."""
    for f in _json(netns, ["tc", "-j", "filter", "show", "dev", dev, direction,
                           "pref", str(n.TC_PREF)]):
        opts = f.get("options") or {}
        if f.get("kind") != "bpf" or "handle" not in opts:
            continue
        prog = opts.get("prog") or {}
        return Attached(dev, direction, str(opts.get("bpf_name", "")), int(prog.get("id", 0)))
    return None


def attach(netns: str | None, dev: str, direction: str, pin: Path) -> None:
    ensure_clsact(netns, dev)
    run(netns, ["tc", "filter", "replace", "dev", dev, direction, "pref", str(n.TC_PREF),
                "handle", str(n.TC_HANDLE), "bpf", "direct-action", "pinned", str(pin)])


def detach(netns: str | None, dev: str, direction: str) -> bool:
    """Delete our filter; then the clsact qdisc if nothing else uses it. True if removed."""
    if attached(netns, dev, direction) is None:
        return False
    run(netns, ["tc", "filter", "del", "dev", dev, direction, "pref", str(n.TC_PREF),
                "handle", str(n.TC_HANDLE), "bpf"])
    return True


def remove_empty_clsact(netns: str | None, dev: str) -> None:
    if not has_clsact(netns, dev):
        return
    for direction in ("ingress", "egress"):
        if _json(netns, ["tc", "-j", "filter", "show", "dev", dev, direction]):
            return
    run(netns, ["tc", "qdisc", "del", "dev", dev, "clsact"], check=False)


def exists(netns: str | None, dev: str) -> bool:
    """Whether the namespace has a device called `dev` (now)."""
    return bool(_json(netns, ["ip", "-j", "link", "show", "dev", dev]))


def link(netns: str | None, dev: str) -> tuple[int, int]:
    """(ifindex, MTU) of a device."""
    rows = _json(netns, ["ip", "-j", "link", "show", "dev", dev])
    if not rows:
        raise TcError(f"no device {dev}")
    return int(rows[0]["ifindex"]), int(rows[0]["mtu"])


def route_device(netns: str | None, address: str) -> str | None:
    """The device the namespace routes `address` through (None: no route)."""
    rows = _json(netns, ["ip", "-j", "route", "get", address])
    return str(rows[0]["dev"]) if rows and "dev" in rows[0] else None
