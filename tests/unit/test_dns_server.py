"""The clusterset DNS server answering real queries over UDP and TCP on loopback.

Each test starts a real server (``lighthouse.dns.testing.serving``: a thread with
its own event loop, port chosen by the kernel) and queries it with dnspython. The
server is checked at teardown for unhandled loop errors and caught internal
errors. The UDP transport is exercised both ways it can run (recvmmsg batches and
a plain recvfrom loop) by parametrising the ``io`` fixture.

Address convention: cluster ``east`` is local and owns 242.0.0.0/16, ``west``
242.1.0.0/16, ``north`` 242.2.0.0/16 (one /16 slice of the global CIDR each). The
server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from kube.testing import await_condition
from lighthouse.dns import metrics as dns_metrics
from lighthouse.dns import mmsg
from lighthouse.dns.policy import MAX_BALANCED_VARIANTS, weighted_rotation
from lighthouse.dns.records import ClusterExport, Endpoint, ServicePort, ServiceRecords
from lighthouse.dns.server import DnsServer, ServerConfig, ServerThread
from lighthouse.dns.testing import addresses, ask, serving

ZONE = "clusterset.local"
HTTP = ServicePort(port=80, protocol="TCP", name="http")
DNS_UDP = ServicePort(port=53, protocol="UDP", name="dns")
IO_MODES = ["plain", pytest.param("mmsg", marks=pytest.mark.skipif(
    not mmsg.available(), reason="recvmmsg/sendmmsg not available on this platform"))]


def name(svc: str, ns: str = "default", *prefix: str) -> str:
    return ".".join([*prefix, svc, ns, "svc", ZONE])


@pytest.fixture
def records() -> ServiceRecords:
    return ServiceRecords(local_cluster="east")


@pytest.fixture(params=IO_MODES)
def io(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(records: ServiceRecords, io: str) -> Iterator[ServerThread]:
    with serving(records, io=io) as thread:
        assert thread.server.io_mode == io
        yield thread


@pytest.fixture
def port(server: ServerThread) -> int:
    return server.server.port


def export(cluster: str, ip: str | None = None, **kw: object) -> ClusterExport:
    return ClusterExport(cluster=cluster, global_ip=ip, **kw)  # type: ignore[arg-type]


def add(records: ServiceRecords, svc: str, *exports: ClusterExport, ns: str = "default") -> None:
    for e in exports:
        records.upsert_service(namespace=ns, name=svc, export=e)


def soa_in_authority(reply: dns.message.Message) -> bool:
    return any(
        rrset.rdtype == dns.rdatatype.SOA and rrset.name.to_text() == f"{ZONE}."
        for rrset in reply.authority
    )


# -- A records of ClusterIP services ------------------------------------------------


def test_a_query_for_a_clusterip_service_returns_its_global_ip(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7", ports=(HTTP,)))
    reply = ask(port, name("web"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == ["242.0.0.7"]
    assert reply.answer[0].ttl == 5
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA


def test_local_cluster_is_preferred_when_it_has_ready_backends(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("west", "242.1.0.7"), export("east", "242.0.0.7"))
    assert {addresses(ask(port, name("web")))[0] for _ in range(10)} == {"242.0.0.7"}


def test_remote_clusters_take_turns_when_the_local_one_has_no_ready_backends(
    records: ServiceRecords, port: int
) -> None:
    add(
        records, "web",
        export("east", "242.0.0.7", ready=False),
        export("west", "242.1.0.7"),
        export("north", "242.2.0.7"),
    )
    seen = [addresses(ask(port, name("web")))[0] for _ in range(10)]
    assert set(seen) == {"242.1.0.7", "242.2.0.7"}
    # Round robin: consecutive answers alternate between the two clusters.
    assert all(a != b for a, b in itertools.pairwise(seen))


def test_a_balanced_service_spreads_over_every_cluster_by_ready_backends(
    records: ServiceRecords, port: int
) -> None:
    """The local cluster takes its share instead of every answer; west, with three
    times east's ready backends, three times as many; an unhealthy cluster or one
    without ready backends none; a cluster still local-first keeps it local-first."""
    add(records, "web", export("east", "242.0.0.7", balanced=True, weight=2),
        export("west", "242.1.0.7", balanced=True, weight=6),
        export("north", "242.2.0.7", balanced=True, weight=0, ready=False))
    seen = [addresses(ask(port, name("web")))[0] for _ in range(40)]
    assert Counter(seen) == Counter({"242.0.0.7": 10, "242.1.0.7": 30})
    # Interleaved (3:1 as w w e w), never a run of more than three west answers.
    assert all(seen[i:i + 4] != ["242.1.0.7"] * 4 for i in range(len(seen) - 3))
    records.set_cluster_health(cluster="west", healthy=False)
    assert {addresses(ask(port, name("web")))[0] for _ in range(8)} == {"242.0.0.7"}
    records.set_cluster_health(cluster="west", healthy=True)
    add(records, "web", export("north", "242.2.0.7", weight=5))  # local-first, ready
    assert {addresses(ask(port, name("web")))[0] for _ in range(8)} == {"242.0.0.7"}


def test_a_clusterset_ip_service_answers_its_vip_when_its_exports_say_so(
    records: ServiceRecords, port: int
) -> None:
    """The VIP replaces the clusters' global IPs at the service name (the VIP table
    spreads the connections); per-cluster names keep their global IPs; a VIP not to
    be answered, or one no cluster could take a client for, is not answered."""
    vip = "244.0.0.9"
    add(records, "web", export("east", "10.96.0.7", vip=vip, vip_in_dns=True, ports=(HTTP,)),
        export("west", "242.1.0.7", vip=vip, vip_in_dns=True, ports=(HTTP,)))
    assert {addresses(ask(port, name("web")))[0] for _ in range(4)} == {vip}
    srv = ask(port, name("web", "default", "_http", "_tcp"), "SRV")
    assert [a.to_text() for rrset in srv.additional for a in rrset] == [vip]
    assert addresses(ask(port, name("web", "default", "west"))) == ["242.1.0.7"]
    add(records, "web", export("east", "10.96.0.7", vip=vip, ports=(HTTP,)),
        export("west", "242.1.0.7", vip=vip, ports=(HTTP,)))  # routed, not in DNS
    assert addresses(ask(port, name("web"))) == ["10.96.0.7"]
    add(records, "api", export("west", "242.1.0.8", vip="244.0.0.10", vip_in_dns=True,
                               ready=False))
    assert addresses(ask(port, name("api"))) == []


def test_round_robin_continues_over_tcp_and_edns_queries_alike(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("west", "242.1.0.7"), export("north", "242.2.0.7"))
    seen = Counter(
        addresses(ask(port, name("web"), tcp=tcp, edns=edns))[0]
        for tcp in (False, True)
        for edns in (None, 0)
        for _ in range(6)
    )
    assert seen == Counter({"242.1.0.7": 12, "242.2.0.7": 12})


def test_an_unhealthy_cluster_is_left_out_until_its_connection_is_back(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("west", "242.1.0.7"), export("north", "242.2.0.7"))
    records.set_cluster_health(cluster="north", healthy=False)
    assert {addresses(ask(port, name("web")))[0] for _ in range(6)} == {"242.1.0.7"}
    records.set_cluster_health(cluster="north", healthy=True)
    assert {addresses(ask(port, name("web")))[0] for _ in range(6)} == {
        "242.1.0.7", "242.2.0.7",
    }


def test_no_healthy_ready_cluster_gives_nodata_with_the_soa(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("west", "242.1.0.7"), export("north", "242.2.0.7", ready=False))
    records.set_cluster_health(cluster="west", healthy=False)
    reply = ask(port, name("web"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert soa_in_authority(reply)


def test_a_cluster_named_in_the_query_answers_with_its_own_global_ip_even_if_unhealthy(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"), export("west", "242.1.0.7"))
    records.set_cluster_health(cluster="west", healthy=False)
    assert addresses(ask(port, name("web", "default", "west"))) == ["242.1.0.7"]
    assert addresses(ask(port, name("web", "default", "east"))) == ["242.0.0.7"]
    reply = ask(port, name("web", "default", "south"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert soa_in_authority(reply)


# -- headless services ----------------------------------------------------------------


def test_headless_service_returns_every_ready_endpoint_of_every_healthy_cluster(
    records: ServiceRecords, port: int
) -> None:
    add(
        records, "db",
        export("west", endpoints=(
            Endpoint(ip="242.1.0.10", hostname="db-0"),
            Endpoint(ip="242.1.0.11", hostname="db-1", ready=False),
        )),
        export("north", endpoints=(Endpoint(ip="242.2.0.10", hostname="db-0"),)),
        export("east", endpoints=(Endpoint(ip="242.0.0.10", hostname="db-2"),)),
    )
    assert sorted(addresses(ask(port, name("db")))) == ["242.0.0.10", "242.1.0.10", "242.2.0.10"]
    records.set_cluster_health(cluster="north", healthy=False)
    assert sorted(addresses(ask(port, name("db")))) == ["242.0.0.10", "242.1.0.10"]
    assert addresses(ask(port, name("db", "default", "west"))) == ["242.1.0.10"]


def test_a_headless_endpoint_is_named_by_hostname_and_cluster(
    records: ServiceRecords, port: int
) -> None:
    add(
        records, "db",
        export("west", endpoints=(
            Endpoint(ip="242.1.0.10", hostname="db-0"), Endpoint(ip="242.1.0.12"),
        )),
        export("north", endpoints=(Endpoint(ip="242.2.0.10", hostname="db-0"),)),
    )
    assert addresses(ask(port, name("db", "default", "db-0", "west"))) == ["242.1.0.10"]
    assert addresses(ask(port, name("db", "default", "db-0", "north"))) == ["242.2.0.10"]
    # No hostname: the dashed global IP names the endpoint.
    assert addresses(ask(port, name("db", "default", "242-1-0-12", "west"))) == ["242.1.0.12"]
    assert ask(port, name("db", "default", "db-9", "west")).rcode() == dns.rcode.NXDOMAIN


# -- SRV --------------------------------------------------------------------------------


def srv(reply: dns.message.Message) -> list[tuple[int, int, int, str]]:
    return sorted(
        (rd.priority, rd.weight, rd.port, rd.target.to_text())
        for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SRV
        for rd in rrset
    )


def glue(reply: dns.message.Message) -> dict[str, str]:
    return {
        rrset.name.to_text(): rrset[0].address
        for rrset in reply.additional if rrset.rdtype == dns.rdatatype.A
    }


def test_srv_for_a_named_port_targets_the_service_name_with_its_address_as_glue(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7", ports=(HTTP, DNS_UDP)))
    reply = ask(port, name("web", "default", "_http", "_tcp"), "SRV")
    target = f"{name('web')}."
    assert srv(reply) == [(0, 50, 80, target)]
    assert glue(reply) == {target: "242.0.0.7"}
    assert srv(ask(port, name("web", "default", "_dns", "_udp"), "SRV")) == [(0, 50, 53, target)]
    missing = ask(port, name("web", "default", "_http", "_udp"), "SRV")
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_srv_for_the_plain_service_name_lists_every_port(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7", ports=(HTTP, DNS_UDP)))
    target = f"{name('web')}."
    assert srv(ask(port, name("web"), "SRV")) == [(0, 50, 53, target), (0, 50, 80, target)]


def test_srv_naming_a_cluster_targets_that_clusters_service_name(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7", ports=(HTTP,)),
        export("west", "242.1.0.7", ports=(HTTP,)))
    target = f"{name('web', 'default', 'west')}."
    reply = ask(port, name("web", "default", "_http", "_tcp", "west"), "SRV")
    assert srv(reply) == [(0, 50, 80, target)]
    assert glue(reply) == {target: "242.1.0.7"}
    assert srv(ask(port, name("web", "default", "west"), "SRV")) == [(0, 50, 80, target)]


def test_srv_for_a_headless_service_targets_each_ready_endpoint(
    records: ServiceRecords, port: int
) -> None:
    add(records, "db", export("west", ports=(HTTP,), endpoints=(
        Endpoint(ip="242.1.0.10", hostname="db-0"),
        Endpoint(ip="242.1.0.11", hostname="db-1"),
        Endpoint(ip="242.1.0.12", hostname="db-2", ready=False),
    )))
    reply = ask(port, name("db", "default", "_http", "_tcp"), "SRV")
    targets = [f"{name('db', 'default', f'db-{i}', 'west')}." for i in (0, 1)]
    assert srv(reply) == [(0, 50, 80, t) for t in targets]
    assert glue(reply) == dict(zip(targets, ["242.1.0.10", "242.1.0.11"], strict=True))


# -- negative answers -------------------------------------------------------------------


@pytest.mark.parametrize("qtype", ["AAAA", "TXT", "MX", "HTTPS", "ANY", 65280])
def test_other_types_at_an_existing_name_get_nodata_with_the_soa(
    records: ServiceRecords, port: int, qtype: str | int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    reply = ask(port, name("web"), qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert soa_in_authority(reply)
    assert reply.authority[0].ttl == 5


@pytest.mark.parametrize(
    "qname",
    [
        name("nope"),
        name("web", "other-ns"),
        name("web", "default", "a", "b", "c", "d"),
        f"pod.{ZONE}",
        f"x.default.pod.{ZONE}",
    ],
)
def test_names_that_do_not_exist_in_the_zone_get_nxdomain_with_the_soa(
    records: ServiceRecords, port: int, qname: str
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    reply = ask(port, qname)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert soa_in_authority(reply)
    assert reply.flags & dns.flags.AA


@pytest.mark.parametrize(
    "qname", [f"svc.{ZONE}", f"default.svc.{ZONE}", name("web", "default", "_tcp")]
)
def test_empty_non_terminals_above_existing_names_get_nodata_not_nxdomain(
    records: ServiceRecords, port: int, qname: str
) -> None:
    add(records, "web", export("east", "242.0.0.7", ports=(HTTP,)))
    reply = ask(port, qname)
    assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, [])
    assert soa_in_authority(reply)
    records.remove_service(namespace="default", name="web")
    assert ask(port, qname).rcode() == dns.rcode.NXDOMAIN


def test_the_zone_apex_answers_its_soa(port: int) -> None:
    reply = ask(port, ZONE, "SOA")
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.SOA]
    assert reply.answer[0][0].mname.to_text() == f"ns.dns.{ZONE}."


@pytest.mark.parametrize("qname", ["example.com", "local", f"{ZONE}.evil.com", "clusterset.loca"])
def test_names_outside_the_zone_are_refused_never_recursed(port: int, qname: str) -> None:
    reply = ask(port, qname)
    assert reply.rcode() == dns.rcode.REFUSED
    assert (reply.answer, reply.authority) == ([], [])
    assert not reply.flags & (dns.flags.RA | dns.flags.AA)


def test_zone_transfers_and_other_classes_are_refused(records: ServiceRecords, port: int) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    assert ask(port, ZONE, "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    query = dns.message.make_query(name("web"), "A", rdclass="CH")
    assert dns.query.udp(query, "127.0.0.1", port=port, timeout=2).rcode() == dns.rcode.REFUSED


# -- protocol details -------------------------------------------------------------------


def test_names_match_whatever_their_case_and_the_question_is_echoed_as_sent(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    for qname in (name("web").upper(), "wEb.DeFault.SVC.ClusterSet.Local"):
        for tcp in (False, True):
            reply = ask(port, qname, tcp=tcp)
            assert addresses(reply) == ["242.0.0.7"]
            # dnspython compares names case-insensitively; check the wire case.
            assert reply.question[0].name.to_text(omit_final_dot=True) == qname
            assert reply.answer[0].name.to_text(omit_final_dot=True) == qname


def test_rd_and_cd_are_copied_from_the_query_and_ra_ad_stay_clear(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    for rd in (False, True):
        for cd in (False, True):
            for _ in range(2):  # the second one comes from the exact-bytes cache
                reply = ask(port, name("web"), rd=rd, cd=cd)
                assert bool(reply.flags & dns.flags.RD) == rd
                assert bool(reply.flags & dns.flags.CD) == cd
                assert not reply.flags & (dns.flags.RA | dns.flags.AD)


def test_edns_queries_get_an_opt_record_and_the_do_bit_echoed(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    reply = ask(port, name("web"), edns=0, payload=4096)
    assert reply.edns == 0
    assert reply.payload == 1232
    assert not reply.ednsflags & dns.flags.DO
    assert ask(port, name("web"), dnssec_ok=True).ednsflags & dns.flags.DO
    bad = dns.message.make_query(name("web"), "A", use_edns=1)
    reply = dns.query.udp(bad, "127.0.0.1", port=port, timeout=2)
    assert reply.rcode() == dns.rcode.BADVERS


def big_headless(records: ServiceRecords, count: int) -> None:
    endpoints = tuple(Endpoint(ip=f"242.1.0.{i + 1}", hostname=f"db-{i}") for i in range(count))
    add(records, "db", export("west", endpoints=endpoints, ports=(HTTP,)))


def test_answers_too_big_for_udp_set_tc_and_come_whole_over_tcp(
    records: ServiceRecords, port: int
) -> None:
    big_headless(records, 60)  # 60 A records: 12 + 52 + 60 * 16 > 512 bytes
    reply = ask(port, name("db"))
    assert reply.flags & dns.flags.TC
    assert reply.answer == []
    whole = ask(port, name("db"), tcp=True)
    assert not whole.flags & dns.flags.TC
    assert len(addresses(whole)) == 60
    # An EDNS client with room for it gets it all over UDP.
    assert len(addresses(ask(port, name("db"), edns=0, payload=1232))) == 60
    # SRV with 60 targets and glue is far over 1232: truncated even with EDNS.
    assert ask(port, name("db"), "SRV", edns=0).flags & dns.flags.TC
    assert len(srv(ask(port, name("db"), "SRV", tcp=True))) == 60


def test_tcp_answers_pipelined_queries_in_order_on_one_connection(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    queries = [dns.message.make_query(name("web"), "A", id=i) for i in range(1, 21)]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        wires = [q.to_wire() for q in queries]
        conn.sendall(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        ids = []
        stream = conn.makefile("rb")
        for _ in queries:
            size = struct.unpack("!H", stream.read(2))[0]
            ids.append(dns.message.from_wire(stream.read(size)).id)
    assert ids == list(range(1, 21))


def test_a_tcp_frame_of_impossible_length_closes_the_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"\xff\xff" + b"x" * 100)
        assert conn.recv(10) == b""


def test_idle_tcp_connections_are_closed(records: ServiceRecords) -> None:
    with serving(records, tcp_idle_timeout=0.2) as thread, socket.create_connection(
        ("127.0.0.1", thread.server.port), timeout=5
    ) as conn:
        assert conn.recv(10) == b""  # closed by the server, not by our timeout


def test_malformed_queries_get_formerr_and_responses_are_never_answered(
    records: ServiceRecords, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    good = dns.message.make_query(name("web"), "A", id=0x4242).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        # Two questions: FORMERR, header echoed, nothing else.
        two = bytearray(good)
        two[5] = 2
        s.sendto(bytes(two), ("127.0.0.1", port))
        reply = s.recv(512)
        assert reply[:2] == good[:2] and reply[3] & 0x0F == dns.rcode.FORMERR
        assert reply[4:12] == b"\x00" * 8
        # A response (QR set) and a 5-byte stub are dropped: the next datagram
        # we get back answers the good query sent after them.
        resp = bytearray(good)
        resp[2] |= 0x80
        s.sendto(bytes(resp), ("127.0.0.1", port))
        s.sendto(b"\x01\x02\x03\x04\x05", ("127.0.0.1", port))
        s.sendto(good, ("127.0.0.1", port))
        answer = dns.message.from_wire(s.recv(512))
        assert answer.id == 0x4242 and addresses(answer) == ["242.0.0.7"]


# -- answers follow the records ---------------------------------------------------------


def test_answers_change_as_soon_as_the_records_do(records: ServiceRecords, port: int) -> None:
    qname = name("web")
    assert ask(port, qname).rcode() == dns.rcode.NXDOMAIN  # cached negative answer
    add(records, "web", export("west", "242.1.0.7"))
    assert addresses(ask(port, qname)) == ["242.1.0.7"]
    for _ in range(3):  # now served from the exact-bytes cache
        ask(port, qname)
    add(records, "web", export("east", "242.0.0.7"))
    assert addresses(ask(port, qname)) == ["242.0.0.7"]
    add(records, "web", export("east", "242.0.0.7", ready=False))
    assert addresses(ask(port, qname)) == ["242.1.0.7"]
    records.set_local_cluster(cluster="west")
    assert addresses(ask(port, qname)) == ["242.1.0.7"]
    records.remove_service(namespace="default", name="web", cluster="west")
    assert ask(port, qname).rcode() == dns.rcode.NOERROR  # east is there, not ready
    records.remove_cluster(cluster="east")
    assert ask(port, qname).rcode() == dns.rcode.NXDOMAIN


def test_answers_about_other_services_stay_cached_across_a_change(
    records: ServiceRecords, server: ServerThread, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    add(records, "api", export("east", "242.0.0.8"))
    ask(port, name("web"))
    ask(port, name("api"))
    fast = server.server.cache.fast
    before = dict(fast.entries)
    add(records, "api", export("east", "242.0.0.9"))
    kept = [k for k in before if k in fast.entries]
    assert len(kept) == 1 and b"web" in kept[0]


def test_answers_stay_correct_while_records_change_from_another_thread(
    records: ServiceRecords, port: int
) -> None:
    """Every answer is a value the store held at some point while the query was in flight."""
    def ip(i: int) -> str:
        return f"242.0.{i // 250}.{i % 250 + 1}"

    def index(address: str) -> int:
        third, fourth = (int(x) for x in address.split(".")[2:])
        return third * 250 + fourth - 1

    def current() -> int:
        address = records.get_service(namespace="default", name="web")["east"].global_ip
        assert address is not None
        return index(address)

    add(records, "web", export("east", ip(0)))
    stop = threading.Event()

    def churn() -> None:
        for i in range(1, 60000):
            if stop.is_set():
                return
            add(records, "web", export("east", ip(i)))

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(200):
            before = current()
            got = index(addresses(ask(port, name("web")))[0])
            assert before <= got <= current()
    finally:
        stop.set()
        writer.join()


# -- metrics ------------------------------------------------------------------------------


def test_metrics_count_queries_by_type_and_rcode_and_their_latency(
    records: ServiceRecords, server: ServerThread, port: int
) -> None:
    add(records, "web", export("east", "242.0.0.7"))
    for _ in range(5):
        ask(port, name("web"))
    ask(port, name("web"), "AAAA")
    ask(port, name("nope"))
    ask(port, "example.com")
    registry = CollectorRegistry()
    dns_metrics.register(server.server.metrics, registry)

    def value(metric: str, **labels: str) -> float:
        return registry.get_sample_value(metric, labels) or 0.0

    assert value("lighthouse_dns_queries_total", qtype="A", rcode="NOERROR") == 5
    assert value("lighthouse_dns_queries_total", qtype="AAAA", rcode="NOERROR") == 1
    assert value("lighthouse_dns_queries_total", qtype="A", rcode="NXDOMAIN") == 1
    assert value("lighthouse_dns_queries_total", qtype="A", rcode="REFUSED") == 1
    # Folding cached hits on invalidation must not lose or double-count any.
    add(records, "web", export("east", "242.0.0.8"))
    assert value("lighthouse_dns_queries_total", qtype="A", rcode="NOERROR") == 5
    await_condition(
        lambda: value("lighthouse_dns_answer_latency_seconds_count") == 8,
        message="8 latency samples",
    )
    assert value("lighthouse_dns_answer_latency_seconds_bucket", le="0.1") == 8
    assert value("lighthouse_dns_internal_errors_total") == 0


def test_a_burst_from_several_clients_mixing_good_and_bad_datagrams_is_answered_to_each_sender(
    records: ServiceRecords, port: int
) -> None:
    """Batched reads split around drops and cache misses; replies must not get mixed up."""
    add(records, "web", export("east", "242.0.0.7"))
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        expected: dict[int, set[int]] = {c: set() for c in range(3)}
        for i in range(300):
            c = i % 3
            if i % 7 == 3:
                clients[c].sendto(b"\x00\x01\x80", ("127.0.0.1", port))  # dropped
                continue
            qname = name("web") if i % 5 else name(f"miss-{i}")  # some cache misses
            msg_id = c * 1000 + i
            q = dns.message.make_query(qname, "A", id=msg_id)
            clients[c].sendto(q.to_wire(), ("127.0.0.1", port))
            expected[c].add(msg_id)
        for c, sock in enumerate(clients):
            sock.settimeout(2)
            got: set[int] = set()
            while len(got) < len(expected[c]):
                reply = dns.message.from_wire(sock.recv(512))
                assert reply.id in expected[c], f"client {c} got someone else's reply"
                want = ["242.0.0.7"] if "miss" not in reply.question[0].name.to_text() else []
                assert addresses(reply) == want
                got.add(reply.id)
    finally:
        for sock in clients:
            sock.close()


def test_the_server_listens_on_ipv6_loopback_too(records: ServiceRecords, io: str) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback in this network namespace")
    add(records, "web", export("east", "242.0.0.7"))
    server = DnsServer(records, config=ServerConfig(host="::1", port=0, io=io))  # type: ignore[arg-type]
    with ServerThread(server):
        query = dns.message.make_query(name("web"), "A")
        for _ in range(2):
            assert addresses(dns.query.udp(query, "::1", port=server.port, timeout=2)) == [
                "242.0.0.7"
            ]
        assert addresses(dns.query.tcp(query, "::1", port=server.port, timeout=2)) == ["242.0.0.7"]


def test_weighted_rotation_interleaves_reduces_and_caps() -> None:
    def exp(cluster: str, weight: int) -> ClusterExport:
        return ClusterExport(cluster=cluster, global_ip="242.0.0.1", weight=weight)

    turns = [e.cluster for e in weighted_rotation([exp("a", 30), exp("b", 10)])]
    assert turns == ["a", "a", "b", "a"]  # 3:1 after the common divisor
    big = weighted_rotation([exp("a", 1000), exp("b", 1)])
    assert len(big) <= MAX_BALANCED_VARIANTS + 1
    assert [e.cluster for e in big].count("b") == 1  # scaled down, never to no turn
    assert weighted_rotation([]) == []
