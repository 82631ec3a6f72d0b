"""The node's ClusterSetIP table as nft text (the privileged test runs it)."""

from __future__ import annotations

import pytest

from datapath.nftables.clustersetip import VipBackend, VipService, render_table

LOCAL = VipBackend("east", "10.96.0.10", weight=1, local=True)
WEST = VipBackend("west", "242.1.10.1", weight=3)


def web(*backends: VipBackend) -> VipService:
    return VipService(vip="244.0.0.7", owner="shop/web", ports=(("tcp", 80), ("udp", 53)),
                      backends=backends)


def test_weights_become_numgen_spans_local_first() -> None:
    text = render_table([web(WEST, LOCAL, VipBackend("north", "242.2.10.1", weight=0))])
    assert ("numgen random mod 4 vmap { 0 : goto vip-244.0.0.7-east, "
            "1-3 : goto vip-244.0.0.7-west }") in text
    assert "north" not in text  # no ready backends: no share, no chain
    assert "ip daddr set 10.96.0.10 accept" in text and "dnat ip to 242.1.10.1" in text
    assert ("244.0.0.7 . tcp . 80 : goto vip-244.0.0.7, 244.0.0.7 . udp . 53 : goto "
            "vip-244.0.0.7") in text
    assert 'comment "shop/web 244.0.0.7: east (local) 1, west 3"' in text


def test_one_backend_is_a_goto_and_none_drops() -> None:
    assert "\t\tgoto vip-244.0.0.7-west\n" in render_table([web(WEST)])
    text = render_table([web()])
    assert 'drop comment "no exporting cluster has ready backends"' in text
    assert "vmap" in text  # the VIP's ports still lead to its chain: nothing leaks out
    empty = render_table([])
    assert "vmap" not in empty and "redirect" not in empty and "type nat hook" in empty


def test_bad_services_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^shop/web: VIP '244.0.0.300' is not an IPv4"):
        VipService(vip="244.0.0.300", owner="shop/web", ports=())
    with pytest.raises(ValueError, match=r"port icmp/0"):
        VipService(vip="244.0.0.7", owner="shop/web", ports=(("icmp", 0),))
    with pytest.raises(ValueError, match=r"VIP 244.0.0.7 is held by both shop/web and shop/db"):
        render_table([web(), VipService(vip="244.0.0.7", owner="shop/db", ports=())])
