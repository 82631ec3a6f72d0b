"""The cable drivers by name: what `--cable-driver` chooses and an Endpoint's
`backend` records, so the engine builds any of them without knowing one.

A cable connects only to cables of its own driver (a VXLAN end cannot decrypt
WireGuard); `mismatch` is the one-line reason the engine reports for the others.
An Endpoint without `backend` predates the drivers: it is a VXLAN one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datapath.cable import Cable, CableError
from datapath.vxlan import VxlanCable
from datapath.wireguard import WireguardCable

DEFAULT = "vxlan"
DEFAULT_STATE_DIR = Path("/var/lib/globalnet/gateway")


@dataclass(frozen=True)
class CableOptions:
    """Everything any driver may need; each takes what it uses."""

    local_ip: str
    netns: str | None = None
    mtu: int = 1500
    state_dir: Path = DEFAULT_STATE_DIR  # keys kept across restarts (WireGuard)
    run_root: Path | None = None  # a private /run for userspace daemons (see wireguard)
    implementation: str = "auto"  # auto | kernel | userspace


def _vxlan(o: CableOptions) -> Cable:
    return VxlanCable(o.local_ip, netns=o.netns, mtu=o.mtu)


def _wireguard(o: CableOptions) -> Cable:
    return WireguardCable(o.local_ip, netns=o.netns, mtu=o.mtu, state_dir=o.state_dir,
                          run_root=o.run_root, implementation=o.implementation)


DRIVERS: dict[str, Callable[[CableOptions], Cable]] = {"vxlan": _vxlan,
                                                       "wireguard": _wireguard}


def names() -> tuple[str, ...]:
    return tuple(DRIVERS)


def new_cable(driver: str, options: CableOptions) -> Cable:
    """The cable of driver `driver`; CableError names the known ones otherwise."""
    make = DRIVERS.get(driver)
    if make is None:
        raise CableError(f"unknown cable driver {driver!r} (known: {', '.join(DRIVERS)})")
    return make(options)


def backend_of(spec: dict[str, object]) -> str:
    """The driver an Endpoint spec was published with."""
    return str(spec.get("backend") or DEFAULT)


def mismatch(local: str, remote: str) -> str | None:
    """Why a `local` cable does not connect to a `remote` one, or None when it does."""
    if local == remote:
        return None
    return f"cable driver mismatch: local {local}, remote {remote}"
