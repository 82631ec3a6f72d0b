"""Namespace fixtures for privileged tests: unique names, always deleted."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from lab import netns


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Factory for namespaces named gn-t<id>-<tag>; all are deleted after the test."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made: list[str] = []
    run_id = uuid.uuid4().hex[:6]

    def make(tag: str) -> str:
        name = f"gn-t{run_id}-{tag}"
        made.append(name)
        netns.ensure_netns(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            netns.delete_netns(name)
