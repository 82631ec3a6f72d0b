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

DEFAULT = "vxlan"
DEFAULT_STATE_DIR = Path("/var/lib/globalnet/gateway")
DAEMON_MODES = ("managed", "external")


@dataclass(frozen=True)
class CableOptions:
    """Everything any driver may need; each takes what it uses."""

    local_ip: str
    netns: str | None = None
    mtu: int = 1500
    state_dir: Path = DEFAULT_STATE_DIR  # keys kept across restarts (WireGuard)
    run_root: Path | None = None  # a private /run for userspace daemons (see wireguard)
    implementation: str = "auto"  # auto | kernel | userspace
    # Who runs a userspace daemon (wireguard-go, charon): "managed", the driver
    # starts and stops it; "external", a process beside the engine does (the
    # gateway pod's cable container, so an engine restart keeps the tunnel up)
    # and the driver only waits for it and configures it.
    daemon: str = "managed"
    psk: str | None = None  # the clusterset's IPsec pre-shared key (ipsec)
    # What other clusters reach through this gateway (the global CIDR): IPsec's
    # local traffic selectors.
    subnets: tuple[str, ...] = ()


# Each driver is imported when it is built: `gnctl` lists the names without them.
def _vxlan(o: CableOptions) -> Cable:
    from datapath.vxlan import VxlanCable

    return VxlanCable(o.local_ip, netns=o.netns, mtu=o.mtu)


def _wireguard(o: CableOptions) -> Cable:
    from datapath.wireguard import WireguardCable

    return WireguardCable(o.local_ip, netns=o.netns, mtu=o.mtu, state_dir=o.state_dir,
                          run_root=o.run_root, implementation=o.implementation,
                          daemon=o.daemon)


def _ipsec(o: CableOptions) -> Cable:
    from datapath.ipsec import IpsecCable

    return IpsecCable(o.local_ip, psk=o.psk, netns=o.netns, mtu=o.mtu, run_root=o.run_root,
                      implementation=o.implementation, daemon=o.daemon,
                      local_subnets=o.subnets)


DRIVERS: dict[str, Callable[[CableOptions], Cable]] = {"vxlan": _vxlan,
                                                       "wireguard": _wireguard,
                                                       "ipsec": _ipsec}


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
