"""Kubernetes' name rules, in one place: RFC 1123 labels and subdomains, qualified
names (label and annotation keys) and label values.

Names from users (flags, exported labels and annotations, records) are checked
against them before the API server is asked, so a bad one is a one-line error of
ours, not a 422 halfway through a change.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(rf"^{_LABEL}$")
_DNS_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def is_dns_label(text: str) -> bool:
    """An RFC 1123 label: namespace, service and cluster names."""
    return len(text) <= 63 and bool(_DNS_LABEL.match(text))


def is_dns_subdomain(text: str) -> bool:
    """An RFC 1123 subdomain: node names, DNS zones, key prefixes."""
    return len(text) <= 253 and bool(_DNS_SUBDOMAIN.match(text))


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``."""
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_NAME_PART.match(name))


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_NAME_PART.match(value)))
