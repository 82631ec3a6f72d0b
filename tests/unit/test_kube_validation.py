"""kube.validation: Kubernetes' name rules, as the API server applies them."""

from __future__ import annotations

import pytest

from kube import validation


@pytest.mark.parametrize("name,ok", [("c1", True), ("a" * 63, True), ("a" * 64, False),
                                     ("-a", False), ("a-", False), ("A", False),
                                     ("a.b", False), ("", False)])
def test_dns_labels(name: str, ok: bool) -> None:
    assert validation.is_dns_label(name) is ok


@pytest.mark.parametrize("name,ok", [("clusterset.local", True), ("node-1.lab", True),
                                     ("a..b", False), (".a", False), ("a" * 254, False)])
def test_dns_subdomains(name: str, ok: bool) -> None:
    assert validation.is_dns_subdomain(name) is ok


@pytest.mark.parametrize("key,ok", [("tier", True), ("example.com/Tier_1", True),
                                    ("Example.com/tier", False), ("/tier", False),
                                    ("a/b/c", False), ("t" * 64, False), ("-tier", False)])
def test_qualified_names(key: str, ok: bool) -> None:
    assert validation.is_qualified_name(key) is ok


@pytest.mark.parametrize("value,ok", [("", True), ("db", True), ("a.b-c_d", True),
                                      ("a b", False), ("-db", False), ("v" * 64, False)])
def test_label_values(value: str, ok: bool) -> None:
    assert validation.is_label_value(value) is ok
