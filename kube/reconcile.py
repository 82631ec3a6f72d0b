"""The worker loop that turns work-queue keys into reconcile calls.

``reconcile_fn(key)`` brings one object to its desired state. It returns ``None``/``False``
(done), ``True`` or ``Result(requeue=True)`` (try again with backoff), or
``Result(requeue_after=s)`` (check again later), and raises on failure. Failures and
requeues are retried with the key's exponential backoff until ``max_requeues``, then
dropped (``on_give_up`` is told); success resets the backoff. The queue guarantees a key
is never reconciled by two workers at once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from kube.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Result:
    requeue: bool = False
    requeue_after: float | None = None


ReconcileFn = Callable[[K], Result | bool | None]
GiveUpFn = Callable[[K, BaseException | None], None]


def process_one(
    queue: WorkQueue[K],
    reconcile_fn: ReconcileFn[K],
    *,
    max_requeues: int | None = None,
    on_give_up: GiveUpFn[K] | None = None,
    timeout: float | None = None,
) -> bool:
    """Take one key and reconcile it; False once the queue is shut down and drained."""
    try:
        key = queue.get(timeout=timeout)
    except ShutDown:
        return False
    try:
        failure: BaseException | None = None
        try:
            result = reconcile_fn(key)
        except Exception as exc:
            failure = exc
            result = Result(requeue=True)
        if isinstance(result, bool):
            result = Result(requeue=result)
        elif result is None:
            result = Result()
        if result.requeue:
            if max_requeues is None or queue.num_requeues(key) < max_requeues:
                if failure is not None:
                    log.warning(
                        "%s: reconcile %r failed (retry %d): %s",
                        queue.name,
                        key,
                        queue.num_requeues(key) + 1,
                        failure,
                    )
                queue.add_rate_limited(key)
            else:
                log.error("%s: giving up on %r after %d retries", queue.name, key, max_requeues)
                queue.forget(key)
                if on_give_up is not None:
                    on_give_up(key, failure)
        else:
            queue.forget(key)
            if result.requeue_after is not None:
                queue.add_after(key, result.requeue_after)
    finally:
        queue.done(key)
    return True


class Workers(Generic[K]):
    """The threads started by ``run_workers``."""

    def __init__(self, queue: WorkQueue[K], threads: list[threading.Thread]) -> None:
        self.queue = queue
        self.threads = threads

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the queue down and wait for the workers to finish their current key."""
        self.queue.shutdown()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)


def run_workers(
    queue: WorkQueue[K],
    reconcile_fn: ReconcileFn[K],
    *,
    workers: int = 1,
    max_requeues: int | None = None,
    on_give_up: GiveUpFn[K] | None = None,
    name: str | None = None,
) -> Workers[K]:
    """Start ``workers`` daemon threads reconciling keys until the queue is shut down."""

    def loop() -> None:
        while process_one(queue, reconcile_fn, max_requeues=max_requeues, on_give_up=on_give_up):
            pass

    label = name or queue.name or "reconcile"
    threads = [
        threading.Thread(target=loop, name=f"{label}-worker-{index}", daemon=True)
        for index in range(workers)
    ]
    for thread in threads:
        thread.start()
    return Workers(queue, threads)
