"""Precomputed wire answers and the slow path that fills them.

Two caches, both invalidated through the store's subscription:

* **templates**, keyed by (lowercased wire qname, qtype): the policy's answer
  packed by dnslib once, as the bytes after the question section plus the section
  counts, one per round-robin variant. Building a reply from a template means
  gluing header + the question as received + body, which also echoes the client's
  letter case (0x20) and keeps every compression pointer valid (the question has
  the same length and label layout in any case).
* **exact**, keyed by the whole query minus its 2-byte ID: the complete reply minus
  its ID, per variant, held by the fast path (``fastpath.py``), which serves hits
  without parsing. Only lowercase questions without EDNS options go there
  (cookies or 0x20 case would make every query unique and churn the cache); others
  take the slow path. The slow path inserts after the strict parser accepted the
  very bytes of the key, and records which template each exact key came from, so
  invalidating a template drops its exact entries too.

Consistency: the store calls :meth:`AnswerCache.invalidate` under its lock, and
the slow path fills and inserts under the same lock, so no answer computed from
old records can be inserted after the change that outdated it. Either cache
is cleared whole when it reaches ``max_entries`` (random-name floods), and the hot
set refills in one slow-path query per name.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from dnslib import DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from lighthouse.dns.fastpath import FastPath
from lighthouse.dns.metrics import DnsMetrics, StatsKey, stats_key
from lighthouse.dns.policy import Section, Zone, in_zone, resolve
from lighthouse.dns.records import DepKey, ServiceRecords
from lighthouse.dns.wire import (
    CLASS_IN,
    HEADER_LEN,
    TC,
    Malformed,
    QType,
    Query,
    Rcode,
    error_response,
    header,
    opt_record,
    parse_query,
    response_flags,
)

log = logging.getLogger(__name__)

PLAIN_UDP_LIMIT: Final = 512
_COUNTS = struct.Struct("!HHH")
_NO_ZONE_TRANSFER = frozenset({QType.AXFR, QType.IXFR})

NormKey = tuple[bytes, int]


@dataclass(slots=True)
class Variant:
    """One packed answer: section counts and the bytes after the question."""

    an: int
    ns: int
    ar: int
    body: bytes


@dataclass(slots=True)
class Template:
    """One (name, type)'s answer; ``exact_keys`` are the fast-path entries made from it."""

    rcode: Rcode
    variants: tuple[Variant, ...]
    stats: StatsKey
    rotor: int = 0
    exact_keys: list[bytes] = field(default_factory=list)


class AnswerCache:
    """Answers queries for one zone from ``records``; see the module docstring."""

    def __init__(
        self,
        records: ServiceRecords,
        zone: Zone,
        *,
        metrics: DnsMetrics,
        udp_payload: int = 1232,
        max_entries: int = 65536,
    ) -> None:
        self.records = records
        self.zone = zone
        self.metrics = metrics
        self.udp_payload = udp_payload
        self.max_entries = max_entries
        self.fast = FastPath(lock=records.lock, metrics=metrics)
        self._templates: dict[NormKey, Template] = {}
        self._by_dep: dict[DepKey, set[NormKey]] = {}
        metrics.cache_size = lambda: len(self._templates) + len(self.fast)
        self._unsubscribe: Callable[[], None] | None = None
        self.attach()

    def attach(self) -> None:
        """Follow the store's changes (again): start from an empty cache."""
        with self.records.lock:
            if self._unsubscribe is None:
                self._clear()
                self._unsubscribe = self.records.subscribe(self.invalidate)

    def detach(self) -> None:
        """Stop following the store; answers may go stale until :meth:`attach`.

        The transport has stopped by then, so no send points into retired entries.
        """
        with self.records.lock:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            self.fast.close()

    # -- the slow path -----------------------------------------------------------

    def respond(self, data: bytes, *, udp: bool) -> bytes | None:
        """The reply to one message (None: drop it); never raises."""
        try:
            return self._respond(data, udp)
        except Exception:
            log.exception("DNS answer path failed; replying SERVFAIL")
            self.metrics.internal_errors += 1
            if len(data) >= HEADER_LEN and not data[2] & 0x80:
                return error_response(data, Rcode.SERVFAIL)
            return None

    def _respond(self, data: bytes, udp: bool) -> bytes | None:
        try:
            query = parse_query(data)
        except Malformed as exc:
            self.metrics.malformed[exc.reason] += 1
            if exc.rcode is None:
                return None
            qtype = exc.query.qtype if exc.query is not None else -1
            self.metrics.answered[stats_key(qtype, exc.rcode)] += 1
            return error_response(data, exc.rcode, query=exc.query, udp_payload=self.udp_payload)
        if (
            query.qclass != CLASS_IN
            or query.qtype in _NO_ZONE_TRANSFER
            or not in_zone(query.labels, self.zone)
        ):
            # Not ours (or a transfer we do not offer): never recurse.
            self.metrics.answered[stats_key(query.qtype, Rcode.REFUSED)] += 1
            return error_response(data, Rcode.REFUSED, query=query, udp_payload=self.udp_payload)

        qname = query.qname_key
        key = (qname, query.qtype)
        with self.records.lock:
            template = self._templates.get(key)
            if template is None:
                template = self._fill(query, key)
            index = template.rotor
            template.rotor = index + 1
            reply = self._assemble(query, template, index, udp=udp)
            if udp and self._cacheable(query, qname):
                self._remember(query, template, index)
        self.metrics.answered[template.stats] += 1
        return reply

    # -- building ----------------------------------------------------------------

    def _fill(self, query: Query, key: NormKey) -> Template:
        resolution = resolve(self.records, self.zone, query.labels, query.qtype)
        variants = tuple(self._pack(query, s, resolution.rcode) for s in resolution.variants)
        if len(self._templates) >= self.max_entries:
            self._clear()
        template = Template(
            rcode=resolution.rcode,
            variants=variants,
            stats=stats_key(query.qtype, resolution.rcode),
            # Start rotations anywhere: after every invalidation the first
            # cluster would otherwise get more than its share.
            rotor=random.randrange(len(variants)),
        )
        self._templates[key] = template
        self._by_dep.setdefault(resolution.dep, set()).add(key)
        log.debug(
            "answer for %s type %d: %s, %d variant(s), depends on %s",
            b".".join(query.labels).decode("ascii", "replace"), query.qtype,
            resolution.rcode.name, len(variants), resolution.dep,
        )
        return template

    def _pack(self, query: Query, section: Section, rcode: Rcode) -> Variant:
        record = DNSRecord(
            DNSHeader(id=0, qr=1, aa=1, rcode=rcode),
            q=DNSQuestion(DNSLabel(query.labels), query.qtype, CLASS_IN),
            rr=section.answer,
            auth=section.authority,
            ar=section.additional,
        )
        wire = record.pack()
        end = query.question_end
        name_end = end - 4
        if not (
            wire[HEADER_LEN:name_end] == query.qname_key
            and wire[name_end:end] == query.data[name_end:end]
        ):
            # dnslib must write the question exactly as we echo it, or every
            # compression pointer into it would be off.
            raise AssertionError("packed question differs from the received one")
        an, ns, ar = _COUNTS.unpack_from(wire, 6)
        return Variant(an, ns, ar, wire[end:])

    def _assemble(self, query: Query, template: Template, index: int, *, udp: bool) -> bytes:
        variant = template.variants[index % len(template.variants)]
        edns = query.edns
        opt = b"" if edns is None else opt_record(self.udp_payload, do=edns.do)
        flags = response_flags(query.flags, template.rcode, aa=True)
        msg_id = query.data[:2]
        question = query.question
        reply = (
            header(msg_id, flags, 1, variant.an, variant.ns, variant.ar + (1 if opt else 0))
            + question
            + variant.body
            + opt
        )
        if udp:
            limit = PLAIN_UDP_LIMIT
            if edns is not None:
                limit = max(PLAIN_UDP_LIMIT, min(edns.payload, self.udp_payload))
            if len(reply) > limit:
                # RFC 2181 §9: say it did not fit; the client retries over TCP.
                tc = flags | TC
                reply = header(msg_id, tc, 1, 0, 0, 1 if opt else 0) + question + opt
        return reply

    # -- the exact cache -----------------------------------------------------------

    @staticmethod
    def _cacheable(query: Query, qname: bytes) -> bool:
        edns = query.edns
        if edns is not None and edns.has_options:
            return False
        return query.data[HEADER_LEN : query.question_end - 4] == qname

    def _remember(self, query: Query, template: Template, index: int) -> None:
        key = query.data[2:]
        fast = self.fast
        if key in fast:
            return
        if len(fast) >= self.max_entries:
            self._clear_exact()
        count = len(template.variants)
        tails = tuple(self._assemble(query, template, k, udp=True)[2:] for k in range(count))
        fast.insert(key, tails, stats=template.stats, index=index)
        template.exact_keys.append(key)

    def _drop_exact(self, template: Template) -> None:
        self.fast.drop(template.exact_keys)
        template.exact_keys.clear()

    def _clear_exact(self) -> None:
        for template in self._templates.values():
            template.exact_keys.clear()
        self.fast.clear()

    def _clear(self) -> None:
        self._clear_exact()
        self._templates.clear()
        self._by_dep.clear()

    # -- invalidation ------------------------------------------------------------

    def invalidate(self, deps: frozenset[DepKey] | None) -> None:
        """Drop the answers depending on ``deps`` (all when None); store lock held."""
        with self.records.lock:
            if deps is None:
                self._clear()
                return
            for dep in deps:
                for key in self._by_dep.pop(dep, ()):
                    template = self._templates.pop(key, None)
                    if template is not None:
                        self._drop_exact(template)
