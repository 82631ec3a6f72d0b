"""A work queue with client-go's guarantees, for controllers fed by informer events.

* An item queued twice before a worker takes it is processed once (dedup of "dirty" items).
* An item is never handed to two workers at once: re-added while being processed, it is
  queued again only when the first worker calls ``done``. Reconcilers therefore never race
  on the same object key.
* ``add_rate_limited`` delays an item by its own exponential backoff (5 ms doubling to
  1000 s by default) until ``forget``; ``add_after`` delays by a fixed time.
* After ``shutdown`` nothing new is accepted; workers drain what is queued, then ``get``
  raises ``ShutDown``.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import threading
import time
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down and is empty: the worker should exit."""


class RateLimiter(Protocol):
    """Decides how long an item waits before its next retry."""

    def when(self, item: Hashable) -> float: ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialBackoff:
    """Per item: ``base * 2**failures`` seconds, capped (client-go's default limiter)."""

    def __init__(self, *, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        with self._lock:
            failures = self._failures.get(item, 0)
            self._failures[item] = failures + 1
        # Guard the exponent: 2**1100 overflows a float long after the cap is reached.
        return min(self.base * 2.0 ** min(failures, 64), self.cap)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)


class WorkQueue(Generic[K]):
    """Thread-safe queue of keys; see the module docstring for its guarantees."""

    def __init__(self, *, rate_limiter: RateLimiter | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or ItemExponentialBackoff()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # getters wait here
        self._timer = threading.Condition(self._lock)  # the delaying thread waits here
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._shutting_down = False
        # Delayed items: heap of (ready_at, seq, item); _waiting holds each item's
        # earliest ready_at so a later add_after of the same item does not postpone it.
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, float] = {}
        self._seq = itertools.count()
        self._delayer: threading.Thread | None = None

    # -- adding --------------------------------------------------------------------------

    def add(self, item: K) -> None:
        with self._lock:
            self._add_locked(item)

    def _add_locked(self, item: K) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return  # queued again by done()
        self._queue.append(item)
        self._ready.notify()

    def add_after(self, item: K, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed (at once if ``delay <= 0``)."""
        if delay <= 0:
            self.add(item)
            return
        ready_at = time.monotonic() + delay
        with self._lock:
            if self._shutting_down:
                return
            current = self._waiting.get(item)
            if current is not None and current <= ready_at:
                return
            self._waiting[item] = ready_at
            heapq.heappush(self._heap, (ready_at, next(self._seq), item))
            if self._delayer is None:
                self._delayer = threading.Thread(
                    target=self._run_delayer, name=f"workqueue-delay-{self.name}", daemon=True
                )
                self._delayer.start()
            self._timer.notify()

    def add_rate_limited(self, item: K) -> None:
        """Add ``item`` after its backoff; each call without ``forget`` doubles the wait."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: K) -> None:
        """Reset ``item``'s backoff (call after it was processed successfully)."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        return self.rate_limiter.num_requeues(item)

    def _run_delayer(self) -> None:
        with self._lock:
            while not self._shutting_down:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    ready_at, _, item = heapq.heappop(self._heap)
                    if self._waiting.get(item) == ready_at:
                        del self._waiting[item]
                        self._add_locked(item)
                timeout = self._heap[0][0] - now if self._heap else None
                self._timer.wait(timeout)

    # -- processing ----------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K:
        """The next item, now marked as processing; call ``done(item)`` when finished.

        Raises ``ShutDown`` once the queue is shut down and empty, ``TimeoutError`` if
        ``timeout`` passes first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._queue and not self._shutting_down:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"work queue {self.name!r}: nothing within {timeout}s")
                self._ready.wait(remaining)
            if not self._queue:
                raise ShutDown(self.name)
            item = self._queue.popleft()
            self._processing.add(item)
            self._dirty.discard(item)
            return item

    def done(self, item: K) -> None:
        """Finish processing ``item``; if it was re-added meanwhile, queue it again now."""
        with self._lock:
            self._processing.discard(item)
            if item in self._dirty:
                self._queue.append(item)
                self._ready.notify()

    # -- lifecycle -----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Accept nothing more; wake every waiting worker. Delayed items are dropped."""
        with self._lock:
            self._shutting_down = True
            self._heap.clear()
            self._waiting.clear()
            self._ready.notify_all()
            self._timer.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._lock:
            return self._shutting_down

    def __len__(self) -> int:
        """Items ready to be handed out (not those processing or waiting on a delay)."""
        with self._lock:
            return len(self._queue)

    def waiting(self) -> int:
        """Items waiting on ``add_after``/``add_rate_limited`` delays."""
        with self._lock:
            return len(self._waiting)
