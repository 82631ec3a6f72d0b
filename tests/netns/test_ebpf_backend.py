"""The eBPF backend's life cycle on a real device: attach, restart, bad programs,
drift, cleanup.

Address conventions: gateway namespace with veth `tun0` 198.18.0.1/24 toward the
"other clusters" (route 242.1.0.0/16 via 198.18.0.2); our global CIDR
242.0.0.0/16; a ClusterIP 10.96.0.10 behind 242.0.10.1.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datapath.ebpf import EbpfDatapath, ProgramLoadError, elements, tc
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from datapath.ebpf.inspect import read_mappings, snapshot
from globalnet.datapath_api import IntentRejected
from globalnet.intent import (
    GlobalIP,
    IngressMapping,
    IngressTarget,
    NatIntent,
    PortSpec,
    Protocol,
)
from kube.testing import await_condition
from lab import netns
from tests.netns.conformance import ebpf_bpffs

pytestmark = pytest.mark.privileged


def intent(*extra: IngressMapping) -> NatIntent:
    return NatIntent.build(
        cluster_id="east", global_cidr="242.0.0.0/16", local_cidrs=["10.96.0.0/16"],
        remote_global_cidrs=["242.1.0.0/16"],
        ingress=[IngressMapping(GlobalIP("242.0.10.1"), "10.96.0.10",
                                IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/web"),
                 *extra])


@pytest.fixture
def gw(make_netns: Callable[[str], str]) -> Iterator[str]:
    ns, peer = make_netns("gw"), make_netns("peer")
    netns.ensure_veth(netns=ns, ifname="tun0", peer_netns=peer, peer_ifname="eth0",
                      address="198.18.0.1/24", peer_address="198.18.0.2/24")
    netns.ensure_route(ns, "242.1.0.0/16", gateway="198.18.0.2")
    yield ns


def prog_ids(ns: str) -> dict[str, int]:
    out = {}
    for direction in ("ingress", "egress"):
        a = tc.attached(ns, "tun0", direction)
        out[direction] = a.prog_id if a else 0
    return out


def test_attaches_to_the_device_routing_the_remote_cidrs_and_cleans_up(gw: str) -> None:
    backend = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    result = backend.apply(intent())
    assert backend.devices == ("tun0",)
    ids = prog_ids(gw)
    assert all(ids.values()), ids
    assert result.operations > 0
    ifindex, mtu = tc.link(gw, "tun0")
    clamp = backend.map(n.MSS).lookup(s.U32(value=ifindex))
    assert clamp is not None and clamp.value == mtu - 40  # MSS clamping toward the device
    backend.cleanup()
    assert prog_ids(gw) == {"ingress": 0, "egress": 0}
    assert not tc.has_clsact(gw, "tun0")
    assert not n.PinLayout(ebpf_bpffs(), gw).root.exists()
    assert "globalnet-ebpf" not in netns.run(gw, ["nft", "list", "tables"])


def test_a_restarted_backend_adopts_everything_and_changes_nothing(gw: str) -> None:
    first = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    try:
        first.apply(intent())
        before = snapshot(netns=gw, bpffs=ebpf_bpffs())
        first.close()
        second = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
        assert second.apply(intent()).operations == 0
        assert snapshot(netns=gw, bpffs=ebpf_bpffs()) == before
        # Per-element updates from there on: one mapping = its two elements and
        # its ingress slot.
        extra = IngressMapping(GlobalIP("242.0.10.2"), "10.96.0.11",
                               IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/api")
        assert second.apply(intent(extra)).operations == 3
        assert second.apply(intent()).operations == 3
    finally:
        EbpfDatapath(netns=gw, bpffs=ebpf_bpffs()).cleanup()


def kernel_slots(backend: EbpfDatapath) -> dict[int, elements.SlotEntry]:
    raw = backend.map(n.INGRESS_SLOT).read_array(n.INGRESS_SLOT_SIZE)
    return {i: e for i, v in enumerate(raw) if (e := elements.slot_from_ctypes(v)) is not None}


def test_the_ingress_slots_copy_the_every_port_entries(gw: str) -> None:
    """One slot per every-port ingress entry (none for port entries), released
    before its entry is removed; a restarted backend finds them right and writes
    nothing; packets counted in a slot show with the mapping (gnctl show nat)."""
    ported = IngressMapping(GlobalIP("242.0.10.2"), "10.96.0.11",
                            IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/api",
                            (PortSpec(Protocol.TCP, 443),))
    web = elements.slot_index("242.0.10.1")
    backend = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    try:
        backend.apply(intent())
        assert kernel_slots(backend) == {web: ("242.0.10.1", "10.96.0.10", 0)}
        assert backend.apply(intent(ported)).operations == 2 + 2  # elements, hint words
        assert kernel_slots(backend) == {web: ("242.0.10.1", "10.96.0.10", 0)}
        assert kernel_slots(backend) == elements.slot_entries(backend.read_config())
        backend.close()
        restarted = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
        assert restarted.apply(intent(ported)).operations == 0
        counted = restarted.map(n.INGRESS_SLOT).lookup(s.U32(value=web))
        assert counted is not None
        counted.value.packets, counted.value.bytes = 5, 500
        restarted.map(n.INGRESS_SLOT).update(s.U32(value=web), counted)
        row = next(r for r in read_mappings(netns=gw, bpffs=ebpf_bpffs()) if r.ports == "all")
        assert (row.global_ip, row.packets_in, row.bytes_in) == ("242.0.10.1", 5, 500)
        # Removed: the slot released before the elements go, nothing left.
        empty = NatIntent.build(cluster_id="east", global_cidr="242.0.0.0/16",
                                local_cidrs=["10.96.0.0/16"],
                                remote_global_cidrs=["242.1.0.0/16"], ingress=[])
        assert restarted.apply(empty).operations == (1 + 2) + (2 + 2)
        assert kernel_slots(restarted) == {}
    finally:
        EbpfDatapath(netns=gw, bpffs=ebpf_bpffs()).cleanup()


def kernel_hint(backend: EbpfDatapath) -> dict[int, int]:
    return {int(k.value): int(v.value) for k, v in backend.map(n.PORT_HINT).items()}


def test_the_port_hint_follows_the_port_entries(gw: str) -> None:
    """Set while an address has exported-port entries, clear when none is left; a
    restarted backend finds it right and writes nothing."""
    ported = IngressMapping(GlobalIP("242.0.10.2"), "10.96.0.11",
                            IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/api",
                            (PortSpec(Protocol.TCP, 443), PortSpec(Protocol.UDP, 53)))
    backend = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    try:
        backend.apply(intent())
        assert not any(kernel_hint(backend).values())  # every-port mappings only
        # 4 port elements, and one bit each in the ingress and reverse halves.
        assert backend.apply(intent(ported)).operations == 4 + 2
        hint = kernel_hint(backend)
        assert hint == elements.hint_words(backend.read_config())
        assert sum(bin(bits).count("1") for bits in hint.values()) == 2
        backend.close()
        restarted = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
        assert restarted.apply(intent(ported)).operations == 0
        assert restarted.apply(intent()).operations == 4 + 2
        assert not any(kernel_hint(restarted).values())
    finally:
        EbpfDatapath(netns=gw, bpffs=ebpf_bpffs()).cleanup()


def test_a_program_the_verifier_refuses_leaves_the_previous_one_attached(
        gw: str, tmp_path: Path) -> None:
    good = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    try:
        good.apply(intent())
        ids = prog_ids(gw)
        broken = tmp_path / "bpf"
        shutil.copytree(n.BPF_DIR, broken)
        src = broken / f"{n.FROM_TUNNEL}.c"
        src.write_text(src.read_text().replace(
            "\tif (gn_parse(skb, &p) < 0)",
            "\tif (*(volatile char *)(long)skb->data == 1) /* unchecked packet read */\n"
            "\t\treturn 1;\n\tif (gn_parse(skb, &p) < 0)", 1))
        with pytest.raises(ProgramLoadError) as err:
            EbpfDatapath(netns=gw, bpffs=ebpf_bpffs(), bpf_dir=broken).apply(intent())
        message = str(err.value)
        assert "\n" not in message and n.FROM_TUNNEL in message
        assert "outside of the packet" in message, message  # the verifier's own words
        assert prog_ids(gw) == ids
    finally:
        good.cleanup()


def test_an_unsound_intent_is_refused_before_any_map_write(gw: str) -> None:
    backend = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    try:
        backend.apply(intent())
        before = snapshot(netns=gw, bpffs=ebpf_bpffs())
        dup = IngressMapping(GlobalIP("242.0.10.1"), "10.96.0.99",
                             IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/other")
        with pytest.raises(IntentRejected):
            backend.apply(intent(dup))
        assert snapshot(netns=gw, bpffs=ebpf_bpffs()) == before
    finally:
        backend.cleanup()


def test_drift_is_found_and_repaired(gw: str) -> None:
    backend = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs())
    try:
        backend.apply(intent())
        before = snapshot(netns=gw, bpffs=ebpf_bpffs())
        assert backend.check_drift() == []
        netns.run(gw, ["tc", "filter", "del", "dev", "tun0", "egress", "pref", str(n.TC_PREF)])
        backend.pins.map(n.INGRESS).unlink()
        problems = backend.check_drift()
        assert len(problems) == 2, problems
        assert backend.repair() == 2
        assert backend.check_drift() == []
        assert snapshot(netns=gw, bpffs=ebpf_bpffs()) == before
    finally:
        backend.cleanup()


def test_a_named_device_made_later_or_rebuilt_is_attached_when_it_appears(
        gw: str, make_netns: Callable[[str], str]) -> None:
    """`--tunnel-dev` naming a device the gateway engine has not made yet (the
    VXLAN cable): the apply succeeds, the drift watcher attaches the programs
    once the device exists, and again after it is deleted and made anew."""
    from datapath.ebpf import DriftWatcher

    far = make_netns("far")
    backend = EbpfDatapath(netns=gw, bpffs=ebpf_bpffs(), devices=("late0",))

    def make_device() -> None:
        netns.ensure_veth(netns=gw, ifname="late0", peer_netns=far, peer_ifname="eth0",
                          address="198.19.0.1/24", peer_address="198.19.0.2/24")

    def attached_now() -> bool:
        return all(tc.attached(gw, "late0", d) is not None for d in ("ingress", "egress"))

    try:
        backend.apply(intent())
        assert backend.devices == ("late0",)
        assert backend.check_drift() == []  # absent is no drift
        with DriftWatcher(backend, interval=0.05):
            for _ in range(2):
                make_device()
                await_condition(attached_now, timeout=5, interval=0.05,
                                message="programs on late0 once it exists")
                ifindex, mtu = tc.link(gw, "late0")
                clamp = backend.map(n.MSS).lookup(s.U32(value=ifindex))
                assert clamp is not None and clamp.value == mtu - 40
                netns.run(gw, ["ip", "link", "del", "late0"])
                await_condition(lambda: backend.check_drift() == [], timeout=5,
                                message="a vanished device is no drift")
        assert backend.check_drift() == []
    finally:
        backend.cleanup()
