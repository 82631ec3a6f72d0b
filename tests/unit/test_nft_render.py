"""Rendering transactions, parsing the kernel's listings, and the inspection table.

The listing samples below are trimmed copies of what nft 1.0.6 printed for our
table (`nft -j list table inet globalnet` and `nft -t list table ...`).

Address conventions: global CIDR 242.0.0.0/16, remote 242.1.0.0/16, pods
10.244.0.0/16, services 10.96.0.0/16.
"""

from __future__ import annotations

import io
import json
import socket
import textwrap

from rich.console import Console

from datapath.nftables import names as n
from datapath.nftables import render
from datapath.nftables.converge import structure_problems
from datapath.nftables.fake import FakeNft
from datapath.nftables.inspect import read_mappings, render_table, rows_from_table
from datapath.nftables.kernel import canonical_elements, parse_listing
from datapath.nftables.model import Element, Verb, quote
from datapath.nftables.netlink import NFT_SET_ELEM_INTERVAL_END, RawElement, _comment
from datapath.nftables.ruleset import CHAINS, SETS
from tests.unit import test_nft_fixtures as fx


def test_element_ops_on_one_set_become_one_command() -> None:
    ops = (render.element_ops(n.INGRESS_IPS, Verb.DELETE, [Element("242.0.0.9", "10.96.0.9")])
           + render.element_ops(n.INGRESS_IPS, Verb.ADD, [
               Element("242.0.0.1", "10.96.0.1", "GlobalIngressIP a/b"),
               Element("242.0.0.2", "10.96.0.2", "GlobalIngressIP a/c")]))
    assert render.render(ops) == textwrap.dedent("""\
        delete element inet globalnet ingress-ips { 242.0.0.9 }
        add element inet globalnet ingress-ips { 242.0.0.1 comment "GlobalIngressIP a/b" : 10.96.0.1, 242.0.0.2 comment "GlobalIngressIP a/c" : 10.96.0.2 }
        """)  # noqa: E501


def test_skeleton_script_declares_with_comments() -> None:
    script = render.render(render.skeleton_ops())
    lines = script.splitlines()
    assert lines[0].startswith('add table inet globalnet { comment "Globalnet gateway NAT')
    assert lines[1] == ('add set inet globalnet remote-global-cidrs { type ipv4_addr; flags '
                        'interval; comment "global CIDRs of the other clusters: only this '
                        'traffic is translated"; }')
    assert ('add chain inet globalnet nat-postrouting { type nat hook postrouting priority '
            'srcnat - 10; policy accept; comment "egress: SNAT pods to their global egress IPs; '
            'ingress: keep the remote source"; }') in lines
    assert len(lines) == 1 + len(SETS) + len(CHAINS) + sum(len(c.rules) for c in CHAINS)


def test_comments_are_quoted_safely_and_cut_to_the_kernel_limit() -> None:
    assert quote('a "b"\nc') == "\"a 'b' c\""
    assert len(quote("x" * 300).encode()) == n.COMMENT_MAX + 1  # 127 bytes + two quotes


JSON_SAMPLE = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "globalnet", "handle": 1}},
    {"set": {"family": "inet", "name": "remote-global-cidrs", "table": "globalnet",
             "type": "ipv4_addr", "flags": ["interval"], "elem": [
                 {"elem": {"val": {"prefix": {"addr": "242.1.0.0", "len": 16}},
                           "comment": "remote cluster global CIDR"}},
                 {"elem": {"val": "242.3.0.5", "comment": "one address"}}]}},
    {"map": {"family": "inet", "name": "ingress-ports", "table": "globalnet",
             "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "ipv4_addr", "elem": [
                 [{"elem": {"val": {"concat": ["242.0.10.1", "tcp", 80]},
                            "comment": "GlobalIngressIP ns1/web"}}, "10.96.0.10"]]}},
    {"map": {"family": "inet", "name": "egress-pods", "table": "globalnet", "type": "ipv4_addr",
             "map": "ipv4_addr", "elem": [
                 [{"elem": {"val": "10.244.0.5", "comment": "x"}},
                  {"range": ["242.0.0.1", "242.0.0.4"]}],
                 [{"elem": {"val": "10.244.0.6", "comment": "y"}},
                  {"prefix": {"addr": "242.0.0.9", "len": 32}}],
                 ["10.244.0.7", {"prefix": {"addr": "242.0.0.8", "len": 30}}]]}},
]}
TERSE_SAMPLE = textwrap.dedent("""\
    table inet globalnet {
    \tcomment "Globalnet gateway NAT"
    \tset remote-global-cidrs {
    \t\ttype ipv4_addr
    \t\tflags interval
    \t\tcomment "global CIDRs of the other clusters: only this traffic is translated"
    \t}

    \tmap ingress-ports {
    \t\ttype ipv4_addr . inet_proto . inet_service : ipv4_addr
    \t\tcomment "ingress: global IP . protocol . port -> ClusterIP or pod IP"
    \t}

    \tmap egress-pods {
    \t\ttype ipv4_addr : interval ipv4_addr
    \t\tcomment "egress: pod IP -> global IP range (pod-selector and namespace groups)"
    \t}

    \tchain nat-prerouting {
    \t\tcomment "new connections to our global IPs: health checks, nothing unmapped"
    \t\ttype nat hook prerouting priority dstnat; policy accept;
    \t\tmeta l4proto icmp ip daddr @health-check-ips redirect comment "ping to the health-check IP is answered by this gateway"
    \t\tip daddr @global-cidr drop comment "a global IP of ours without a mapping (or an unexported port) goes no further"
    \t\tip saddr @remote-global-cidrs meta l4proto { tcp, udp, sctp } ip daddr @ingress-admit-targets ip daddr . meta l4proto . th dport != @ingress-admit-ports drop comment "headless targets: only the exported ports admit new connections"
    \t}
    }
    """)  # noqa: E501


def test_listing_is_parsed_into_canonical_elements_and_lines() -> None:
    table = parse_listing(json.dumps(JSON_SAMPLE), TERSE_SAMPLE)
    assert table.sets[n.REMOTE_GLOBAL_CIDRS].elements == {
        "242.1.0.0/16": Element("242.1.0.0/16", "", "remote cluster global CIDR"),
        "242.3.0.5/32": Element("242.3.0.5/32", "", "one address"),
    }
    assert table.sets[n.INGRESS_PORTS].elements["242.0.10.1 . tcp . 80"].value == "10.96.0.10"
    assert {k: e.value for k, e in table.sets[n.EGRESS_PODS].elements.items()} == {
        "10.244.0.5": "242.0.0.1-242.0.0.4",
        "10.244.0.6": "242.0.0.9-242.0.0.9",
        "10.244.0.7": "242.0.0.8-242.0.0.11",
    }
    spec = {s.name: s for s in SETS}
    for name in (n.REMOTE_GLOBAL_CIDRS, n.INGRESS_PORTS, n.EGRESS_PODS):
        assert table.sets[name].decl == spec[name].decl_lines()
    chain = {c.name: c for c in CHAINS}[n.NAT_PREROUTING]
    assert table.chains[n.NAT_PREROUTING].decl == chain.decl_lines()
    assert table.chains[n.NAT_PREROUTING].rules == list(chain.rules)
    problems, recreate = structure_problems(table)
    assert "chain raw-prerouting missing" in problems and not recreate


def _fake_with_base() -> FakeNft:
    from datapath.nftables import NftablesDatapath

    fake = FakeNft()
    NftablesDatapath(client=fake).apply(fx.intent())
    return fake


def test_inspection_rows_and_rendered_table() -> None:
    rows = rows_from_table(_fake_with_base().read_table())
    console = Console(file=io.StringIO(), width=140, record=True, color_system=None)
    console.print(render_table(rows))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines())
    assert text + "\n" == textwrap.dedent("""\
                                                       Globalnet NAT (kernel)
        ┏━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
        ┃ direction    ┃ global IP           ┃ local         ┃ ports  ┃ owner                                              ┃
        ┡━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
        │ egress       │ 242.0.0.1-242.0.0.8 │ 10.244.0.0/16 │ all    │ ClusterGlobalEgressIP cluster-egress.submariner.io │
        │ egress       │ 242.0.0.1-242.0.0.8 │ 10.96.0.0/16  │ all    │ ClusterGlobalEgressIP cluster-egress.submariner.io │
        │ egress       │ 242.0.1.1-242.0.1.2 │ 10.244.0.20   │ all    │ GlobalEgressIP ns1/ns-egress                       │
        │ egress       │ 242.0.2.1           │ 10.244.0.21   │ all    │ GlobalEgressIP ns1/db-egress                       │
        │ egress       │ 242.0.3.10          │ 10.244.1.30   │ all    │ GlobalIngressIP ns1/pod-db-0                       │
        │ health-check │ 242.0.255.254       │ gateway       │ icmp   │ Gateway c1-gw                                      │
        │ ingress      │ 242.0.10.1          │ 10.96.0.10    │ tcp/80 │ GlobalIngressIP ns1/web                            │
        │ ingress      │ 242.0.3.10          │ 10.244.1.30   │ all    │ GlobalIngressIP ns1/pod-db-0                       │
        └──────────────┴─────────────────────┴───────────────┴────────┴────────────────────────────────────────────────────┘
                                                   nft list table inet globalnet
        """)  # noqa: E501


def test_read_mappings_is_importable_without_root() -> None:
    """The CLI imports it at start-up; only calling it needs the kernel."""
    assert callable(read_mappings)


def _raw(key: str, *, data: bytes | None = None, flags: int = 0, comment: str = "",
         end: str | None = None) -> RawElement:
    return RawElement(socket.inet_aton(key), data, flags, comment,
                      socket.inet_aton(end) if end else None)


def test_dumped_interval_elements_become_cidrs_and_ranges() -> None:
    """rbtree dumps a start element and a flagged end marker one past the end
    (newest first, with a 0.0.0.0 marker); pipapo dumps one element with a key end."""
    spec = {s.name: s for s in SETS}
    rng = socket.inet_aton("242.0.0.1") + socket.inet_aton("242.0.0.8")
    rbtree = [
        _raw("10.245.0.0", flags=NFT_SET_ELEM_INTERVAL_END),
        _raw("10.244.0.0", data=rng, comment="cluster"),
        _raw("10.97.0.1", flags=NFT_SET_ELEM_INTERVAL_END),
        _raw("10.96.0.0", data=rng, comment="odd range"),
        _raw("0.0.0.0", flags=NFT_SET_ELEM_INTERVAL_END),
    ]
    assert canonical_elements(spec[n.EGRESS_CIDRS], rbtree) == {
        "10.244.0.0/16": Element("10.244.0.0/16", "242.0.0.1-242.0.0.8", "cluster"),
        "10.96.0.0-10.97.0.0": Element("10.96.0.0-10.97.0.0", "242.0.0.1-242.0.0.8",
                                       "odd range"),
    }
    pipapo = [_raw("242.1.0.0", end="242.1.255.255", comment="remote")]
    assert canonical_elements(spec[n.REMOTE_GLOBAL_CIDRS], pipapo) == {
        "242.1.0.0/16": Element("242.1.0.0/16", "", "remote")}


def test_dumped_concatenations_and_ranges_read_as_written() -> None:
    spec = {s.name: s for s in SETS}
    key = socket.inet_aton("242.0.10.1") + bytes([17, 0, 0, 0]) + (53).to_bytes(2, "big") + b"\0\0"
    got = canonical_elements(spec[n.INGRESS_PORTS], [RawElement(
        key, socket.inet_aton("10.96.0.10"), 0, "GlobalIngressIP ns1/web")])
    assert got == {"242.0.10.1 . udp . 53": Element("242.0.10.1 . udp . 53", "10.96.0.10",
                                                    "GlobalIngressIP ns1/web")}
    data = socket.inet_aton("242.0.2.1") * 2
    got = canonical_elements(spec[n.EGRESS_PODS], [_raw("10.244.0.21", data=data)])
    assert got["10.244.0.21"].value == "242.0.2.1-242.0.2.1"


def test_element_comments_come_out_of_their_user_data_tlv() -> None:
    assert _comment(b"\x00\x06hello\x00") == "hello"
    assert _comment(b"\x01\x01x\x00\x03ab\x00") == "ab"  # other TLVs first
    assert _comment(b"") == ""
