"""The namespace helpers every privileged tier builds on.

Address conventions: 10.99.0.0/24 between two test namespaces (.1 and .2).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import netns

pytestmark = pytest.mark.privileged


def test_veth_between_namespaces_carries_packets(make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("a"), make_netns("b")
    netns.ensure_veth(netns=a, ifname="va", peer_netns=b, peer_ifname="vb",
                      address="10.99.0.1/24", peer_address="10.99.0.2/24")
    # Idempotent: a second call changes nothing and does not fail.
    netns.ensure_veth(netns=a, ifname="va", peer_netns=b, peer_ifname="vb",
                      address="10.99.0.1/24", peer_address="10.99.0.2/24")
    out = netns.run(a, ["ping", "-c", "1", "-W", "2", "10.99.0.2"])
    assert "1 received" in out
    # Nothing appeared in the namespace the test runs in.
    assert "va:" not in Path("/proc/net/dev").read_text()


def test_deleting_a_namespace_removes_its_links(make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("a"), make_netns("b")
    netns.ensure_veth(netns=a, ifname="va", peer_netns=b, peer_ifname="vb")
    netns.delete_netns(b)
    assert not netns.exists(b)
    # The kernel dismantles a namespace asynchronously; the pair goes with it.
    deadline = time.monotonic() + 5
    while "va:" in netns.run(a, ["cat", "/proc/net/dev"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "va:" not in netns.run(a, ["cat", "/proc/net/dev"])


def test_sockets_made_inside_entered_stay_in_that_namespace(
    make_netns: Callable[[str], str],
) -> None:
    a = make_netns("a")
    with netns.entered(a), socket.socket() as inside:
        inside.bind(("127.0.0.1", 0))
        inside.listen()
        port = inside.getsockname()[1]
        listening = netns.run(a, ["ss", "-Htln"])
        assert f"127.0.0.1:{port}" in listening
    with socket.socket() as outside:
        assert outside.connect_ex(("127.0.0.1", port)) != 0


def test_python_nftables_programs_a_namespace(make_netns: Callable[[str], str]) -> None:
    """python3-nftables (Debian) is importable from the venv and works per namespace."""
    import nftables

    a = make_netns("a")
    with netns.entered(a):
        nft = nftables.Nftables()
        nft.set_json_output(True)
        rc, _, err = nft.cmd("add table inet gn_probe")
        assert rc == 0, err
        rc, out, err = nft.cmd("list tables")
        assert rc == 0, err
    tables = [x["table"]["name"] for x in json.loads(out)["nftables"] if "table" in x]
    assert tables == ["gn_probe"]
    assert "gn_probe" not in netns.run(make_netns("b"), ["nft", "list", "tables"])


def test_bcc_compiles_and_loads_a_tc_program() -> None:
    """bcc (Debian) finds kernel headers through the build-tree links (scripts/bcc-headers.sh)."""
    from bcc import BPF

    prog = BPF(text=b"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
int gn_probe(struct __sk_buff *skb) { return TC_ACT_OK; }
""")
    fn = prog.load_func(b"gn_probe", BPF.SCHED_CLS)
    assert fn.fd > 0
    prog.cleanup()
