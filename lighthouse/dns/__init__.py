"""The authoritative DNS server for ``clusterset.local``, answering with global IPs.

Layout follows dnslib's split (transport / codec / policy / hooks), tuned so the
answer path does almost no work per query:

* ``records``: the thread-safe store the Lighthouse agent feeds (the interface);
* ``policy``: which records a name and type get (pure, dnslib RRs);
* ``answers``: the slow path: policy results packed once into wire templates,
  invalidated on every store change, feeding the fast path;
* ``fastpath``: the exact query-bytes -> reply table (typed entries) and the UDP
  readers that serve it, batched through ``mmsg`` (recvmmsg/sendmmsg);
* ``wire``: the strict hand parser of header, question and OPT;
* ``server``: the transport: UDP (readers from ``fastpath``) and TCP on one
  asyncio loop;
* ``metrics``: plain counters exported by a Prometheus collector;
* ``recordsfile`` / ``__main__``: a standalone server over a JSON file.

This module is the one place that re-exports names.
"""

from lighthouse.dns.metrics import DnsMetrics
from lighthouse.dns.records import (
    ClusterExport,
    Endpoint,
    ServicePort,
    ServiceRecords,
)
from lighthouse.dns.server import DnsServer, ServerConfig, ServerThread

__all__ = [
    "ClusterExport",
    "DnsMetrics",
    "DnsServer",
    "Endpoint",
    "ServerConfig",
    "ServerThread",
    "ServicePort",
    "ServiceRecords",
]
