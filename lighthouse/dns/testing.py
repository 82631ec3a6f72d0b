"""Helpers for tests and benchmarks of the DNS server (needs the test extra, dnspython).

``serving`` runs a real server on a free loopback port in a thread and, on exit,
fails if anything reached the loop's exception handler or the answer path had to
catch an error. ``ask`` sends one real query over UDP or TCP with dnspython.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from lighthouse.dns.records import ServiceRecords
from lighthouse.dns.server import DnsServer, ServerConfig, ServerThread

HOST = "127.0.0.1"


@contextmanager
def serving(records: ServiceRecords, **config: Any) -> Iterator[ServerThread]:
    """A running server for ``records`` on 127.0.0.1, port chosen by the kernel."""
    server = DnsServer(records, config=ServerConfig(host=HOST, port=0, **config))
    with ServerThread(server) as thread:
        yield thread
    assert not thread.errors, f"unhandled errors on the server loop: {thread.errors}"
    assert server.metrics.internal_errors == 0, "the answer path caught internal errors"


def ask(
    port: int,
    name: str,
    qtype: str | int = "A",
    *,
    tcp: bool = False,
    edns: int | None = None,
    payload: int = 1232,
    dnssec_ok: bool = False,
    rd: bool = True,
    cd: bool = False,
    timeout: float = 2.0,
) -> dns.message.Message:
    """One query to the server; ``edns=0`` adds an OPT record advertising ``payload``."""
    query = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(qtype),
        use_edns=edns if edns is not None else (0 if dnssec_ok else False),
        payload=payload,
        want_dnssec=dnssec_ok,
    )
    if not rd:
        query.flags &= ~dns.flags.RD
    if cd:
        query.flags |= dns.flags.CD
    if tcp:
        return dns.query.tcp(query, HOST, port=port, timeout=timeout)
    return dns.query.udp(query, HOST, port=port, timeout=timeout)


def addresses(reply: dns.message.Message) -> list[str]:
    """The A record addresses of an answer section, in order."""
    return [rd.address for rrset in reply.answer if rrset.rdtype == 1 for rd in rrset]
