"""kube.controller's base: events to keys, the leader-term check, failure handling.

Status writes and deletes meet real 409s and 404s only from a real API server:
they are tested in tests/kube/test_controller.py and tests/kube/test_crud.py.
``HandlerSource`` stands in for an informer's dispatcher (the one method ``watch``
uses), so the handler logic runs without an API server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kube import controller
from kube.reconcile import Result
from kube.workqueue import WorkQueue

JSON = dict[str, Any]


class HandlerSource:
    """Delivers add/update/delete events to the handlers registered on it."""

    def __init__(self) -> None:
        self.handlers: list[dict[str, Any]] = []

    def add_handler(self, **handlers: Any) -> None:
        self.handlers.append(handlers)

    def add(self, obj: JSON) -> None:
        for h in self.handlers:
            h["on_add"](obj)

    def update(self, old: JSON, new: JSON) -> None:
        for h in self.handlers:
            h["on_update"](old, new)

    def delete(self, obj: JSON) -> None:
        for h in self.handlers:
            h["on_delete"](obj)


class Recorder(controller.Controller):
    """Records reconciles; fails the first ``failures`` of them with ``error``."""

    name = "recorder"

    def __init__(self, *, failures: int = 0, error: Exception | None = None,
                 is_leading: Any = None) -> None:
        super().__init__(is_leading=is_leading)
        self.failures = failures
        self.error = error or RuntimeError("boom")
        self.seen: list[str] = []
        self.failed: list[tuple[str, Exception]] = []
        self.succeeded = threading.Event()

    def reconcile(self, key: str) -> Result | bool | None:
        self.seen.append(key)
        if len(self.seen) <= self.failures:
            raise self.error
        self.succeeded.set()
        return None

    def reconcile_failed(self, key: str, exc: Exception) -> None:
        self.failed.append((key, exc))


def pod(name: str, app: str | None = None) -> JSON:
    labels = {"app": app} if app else {}
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels}}


def queued(queue: WorkQueue[str]) -> list[str]:
    """Everything ready in the queue, in order (taken and marked done)."""
    keys = []
    while len(queue):
        key = queue.get(timeout=0)
        queue.done(key)
        keys.append(key)
    return keys


def test_watch_queues_an_objects_own_key_by_default() -> None:
    source, c = HandlerSource(), Recorder()
    c.watch(source)  # type: ignore[arg-type]
    source.add(pod("a"))
    source.delete(pod("b"))
    assert queued(c.queue) == ["ns/a", "ns/b"]


def test_watch_maps_events_to_keys_skipping_empty_ones_and_notifies_once_per_event() -> None:
    source, c = HandlerSource(), Recorder()
    notified: list[None] = []
    c.watch(source, lambda obj: [None, "", f"ns/{obj['metadata']['labels'].get('app')}"],  # type: ignore[arg-type]
            notify=lambda: notified.append(None))
    source.add(pod("p", "web"))
    assert queued(c.queue) == ["ns/web"]
    assert len(notified) == 1


def test_an_update_queues_the_key_the_object_left_and_the_one_it_joined() -> None:
    source, c = HandlerSource(), Recorder()
    notified: list[None] = []
    c.watch(source, lambda obj: [f"ns/{obj['metadata']['labels']['app']}"],  # type: ignore[arg-type]
            notify=lambda: notified.append(None))
    source.update(pod("p", "old"), pod("p", "new"))
    assert queued(c.queue) == ["ns/old", "ns/new"]
    assert len(notified) == 2
    same = pod("p", "same")
    source.update(same, same)  # a resync hands over one object: seen once
    assert queued(c.queue) == ["ns/same"]
    assert len(notified) == 3


def test_while_leadership_is_uncertain_nothing_is_reconciled_and_the_key_comes_back() -> None:
    leading = False
    c = Recorder(is_leading=lambda: leading)
    assert c.process("ns/a") == Result(requeue_after=controller.NOT_LEADING_RETRY)
    assert c.seen == []
    leading = True
    assert c.process("ns/a") is None
    assert c.seen == ["ns/a"]


def test_without_a_leader_check_every_key_is_reconciled() -> None:
    c = Recorder()
    assert c.process("ns/a") is None and c.seen == ["ns/a"]


@pytest.mark.parametrize(("error", "level"), [
    pytest.param(ApiException(status=409, reason="Conflict"), logging.DEBUG, id="conflict"),
    pytest.param(ApiException(status=404, reason="Not Found"), logging.DEBUG, id="not-found"),
    pytest.param(RuntimeError("boom"), logging.WARNING, id="other"),
])
def test_a_failure_is_told_logged_and_raised_for_the_queue_to_retry(
    error: Exception, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Conflicts and not-found mean a lagging cache: expected, so only at debug."""
    c = Recorder(failures=1, error=error)
    with caplog.at_level(logging.DEBUG, logger="kube.controller"), pytest.raises(type(error)):
        c.process("ns/a")
    assert c.failed == [("ns/a", error)]
    (record,) = [r for r in caplog.records if r.name == "kube.controller"]
    assert record.levelno == level and "recorder ns/a" in record.getMessage()


def test_the_workers_retry_a_failed_key_until_it_succeeds() -> None:
    c = Recorder(failures=2).start()
    try:
        c.enqueue("ns/a")
        assert c.succeeded.wait(5), "the key was not retried"
        assert c.seen == ["ns/a"] * 3
        assert [key for key, _ in c.failed] == ["ns/a"] * 2
    finally:
        c.stop()


def test_stop_takes_no_more_keys_and_is_harmless_before_start() -> None:
    c = Recorder()
    c.stop()
    c.enqueue("ns/a")
    assert len(c.queue) == 0
