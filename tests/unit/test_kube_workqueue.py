"""kube.workqueue and kube.reconcile without an API server.

What is pinned down here is client-go's contract: dedup of queued keys, one worker per
key at a time, per-key exponential backoff, delayed adds, shutdown that drains, and the
worker loop's retry / give-up policy.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from kube import reconcile
from kube.testing import await_condition
from kube.workqueue import ItemExponentialBackoff, ShutDown, WorkQueue


def fast_queue() -> WorkQueue[str]:
    return WorkQueue(rate_limiter=ItemExponentialBackoff(base=0.001, cap=0.02), name="test")


def test_queued_key_is_deduplicated() -> None:
    queue = fast_queue()
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert [queue.get(), queue.get()] == ["a", "b"]
    with pytest.raises(TimeoutError):
        queue.get(timeout=0.01)


def test_key_being_processed_is_not_handed_out_again_until_done() -> None:
    queue = fast_queue()
    queue.add("a")
    assert queue.get() == "a"
    queue.add("a")
    queue.add("a")
    with pytest.raises(TimeoutError):
        queue.get(timeout=0.02)
    queue.done("a")
    assert queue.get(timeout=1) == "a"
    queue.done("a")
    assert len(queue) == 0


def test_done_without_readd_does_not_requeue() -> None:
    queue = fast_queue()
    queue.add("a")
    queue.done(queue.get())
    with pytest.raises(TimeoutError):
        queue.get(timeout=0.01)


def test_exponential_backoff_per_key_capped_and_forgotten() -> None:
    limiter = ItemExponentialBackoff(base=0.005, cap=1000.0)
    assert [limiter.when("a") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert limiter.when("b") == 0.005, "each key has its own backoff"
    assert limiter.num_requeues("a") == 4
    for _ in range(100):
        limiter.when("a")
    assert limiter.when("a") == 1000.0
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005


def test_add_rate_limited_delays_and_counts_requeues() -> None:
    queue = WorkQueue[str](rate_limiter=ItemExponentialBackoff(base=0.05, cap=1.0))
    started = time.monotonic()
    queue.add_rate_limited("a")
    assert queue.num_requeues("a") == 1
    assert len(queue) == 0 and queue.waiting() == 1
    assert queue.get(timeout=2) == "a"
    assert time.monotonic() - started >= 0.05
    queue.forget("a")
    assert queue.num_requeues("a") == 0


def test_add_after_keeps_the_earliest_time_for_a_key() -> None:
    queue = fast_queue()
    started = time.monotonic()
    queue.add_after("a", 5.0)
    queue.add_after("a", 0.05)
    queue.add_after("a", 3.0)
    assert queue.waiting() == 1
    assert queue.get(timeout=2) == "a"
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 2
    queue.done("a")
    assert queue.waiting() == 0


def test_add_after_orders_by_due_time() -> None:
    queue = fast_queue()
    queue.add_after("late", 0.2)
    queue.add_after("early", 0.05)
    assert queue.get(timeout=2) == "early"
    assert queue.get(timeout=2) == "late"


def waiting_in_get(thread: threading.Thread) -> bool:
    """Whether ``thread`` is, right now, waiting on the condition inside ``WorkQueue.get``."""
    frame = sys._current_frames().get(thread.ident or -1)
    stack = []
    while frame is not None:
        stack.append((frame.f_code.co_name, frame.f_code.co_filename))
        frame = frame.f_back
    return bool(stack) and stack[0][0] == "wait" and any(
        name == "get" and path.endswith("workqueue.py") for name, path in stack)


def test_shutdown_drains_then_raises_and_wakes_waiting_workers() -> None:
    queue = fast_queue()
    outcome: list[str] = []

    def worker() -> None:
        try:
            queue.get()
        except ShutDown:
            outcome.append("shutdown")

    blocked = threading.Thread(target=worker)
    blocked.start()
    await_condition(lambda: waiting_in_get(blocked), message="worker blocked in get()")
    assert outcome == []
    queue.shutdown()
    blocked.join(2)
    assert not blocked.is_alive() and outcome == ["shutdown"]

    queue = fast_queue()
    queue.add("a")
    queue.add_after("b", 0.01)
    queue.shutdown()
    queue.add("c")
    assert queue.get() == "a", "queued keys are still handed out after shutdown"
    with pytest.raises(ShutDown):
        queue.get()
    assert queue.shutting_down


def test_no_two_workers_process_the_same_key_concurrently() -> None:
    queue = fast_queue()
    in_progress: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []
    lock = threading.Lock()

    def reconcile_fn(key: str) -> None:
        with lock:
            if key in in_progress:
                overlaps.append(key)
            in_progress.add(key)
        time.sleep(0.001)
        with lock:
            in_progress.discard(key)
            processed.append(key)

    workers = reconcile.run_workers(queue, reconcile_fn, workers=4)
    for round_ in range(200):
        queue.add(f"k{round_ % 5}")
    await_condition(lambda: len(queue) == 0 and not in_progress, message="queue drained")
    workers.stop()
    assert not workers.alive
    assert overlaps == []
    assert set(processed) == {f"k{i}" for i in range(5)}


def test_failures_are_retried_with_backoff_until_success_then_forgotten() -> None:
    queue = fast_queue()
    attempts: list[str] = []

    def reconcile_fn(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 4:
            raise RuntimeError("not yet")

    workers = reconcile.run_workers(queue, reconcile_fn)
    queue.add("a")
    await_condition(lambda: len(attempts) == 4, message="four attempts")
    await_condition(lambda: queue.num_requeues("a") == 0, message="backoff forgotten")
    workers.stop()
    assert attempts == ["a"] * 4


def test_gives_up_after_max_requeues() -> None:
    queue = fast_queue()
    attempts: list[str] = []
    given_up: list[tuple[str, str]] = []

    def reconcile_fn(key: str) -> None:
        attempts.append(key)
        raise ValueError("always")

    workers = reconcile.run_workers(
        queue,
        reconcile_fn,
        max_requeues=3,
        on_give_up=lambda key, exc: given_up.append((key, repr(exc))),
    )
    queue.add("a")
    await_condition(lambda: given_up, message="give-up callback")
    workers.stop()
    assert len(attempts) == 4, "the first attempt plus three requeues"
    assert given_up == [("a", "ValueError('always')")]
    assert queue.num_requeues("a") == 0


def test_result_requeue_and_requeue_after() -> None:
    queue = fast_queue()
    calls: list[float] = []

    def reconcile_fn(key: str) -> reconcile.Result | bool | None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return True
        if len(calls) == 2:
            return reconcile.Result(requeue_after=0.1)
        return None

    workers = reconcile.run_workers(queue, reconcile_fn)
    queue.add("a")
    await_condition(lambda: len(calls) == 3, message="three calls")
    workers.stop()
    assert calls[2] - calls[1] >= 0.1
    assert queue.num_requeues("a") == 0


def test_process_one_returns_false_after_shutdown() -> None:
    queue = fast_queue()
    queue.shutdown()
    assert reconcile.process_one(queue, lambda key: None) is False
