"""Helpers for tests that run against a real API server (tests/kube and controller tests).

Tests wait on conditions, never on fixed sleeps: ``await_condition`` polls a predicate
until it holds or fails with a message saying what was awaited and what was last seen.
``temporary_namespace`` gives each test its own namespace and deletes it afterwards, so
tests sharing one API server do not see each other's objects.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from kubernetes.client import ApiClient

from kube import crud
from kube.resources import NAMESPACES

T = TypeVar("T")

_counter = itertools.count()


def await_condition(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet" until the deadline, then the
    last one is chained to the ``AssertionError``.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_error = None
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s awaiting {text}") from last_error
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    """A DNS-label name unique within this process run."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_counter)}"


@contextlib.contextmanager
def temporary_namespace(api_client: ApiClient, prefix: str = "test") -> Iterator[str]:
    """Create a fresh namespace, yield its name, delete it (without waiting) afterwards."""
    namespaces = crud.ResourceClient(api_client, NAMESPACES)
    name = unique_name(prefix)
    namespaces.create({"metadata": {"name": name, "labels": {"globalnet.test": "true"}}})
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            namespaces.delete_if_exists(name)
