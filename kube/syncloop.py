"""One thread that brings something to its wanted state whenever poked.

For the level-triggered writers that are not work-queue controllers (one object,
one table): any number of pokes while a sync runs make one more sync, a short
debounce folds a burst of changes into one, and a sync that raises is retried with
capped exponential backoff (``kube.backoff``) until one succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kube.backoff import Backoff


class SyncLoop:
    """Calls ``sync`` on its own daemon thread after every ``poke``."""

    def __init__(self, name: str, sync: Callable[[], object], *, debounce: float = 0.0,
                 log: logging.Logger | None = None,
                 on_error: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.debounce = debounce
        self._sync = sync
        self._log = log or logging.getLogger(__name__)
        self._on_error = on_error
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        """Start, with a first sync at once."""
        self._stop.clear()
        self._dirty.set()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        backoff = Backoff(initial=0.1)
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(self.debounce):  # a zero debounce just reads the flag
                return
            self._dirty.clear()
            try:
                self._sync()
                backoff.reset()
            except Exception as exc:
                self._on_error()
                delay = backoff.next()
                self._log.warning("%s failed (again in %.1f s): %s", self.name, delay, exc,
                                  exc_info=self._log.isEnabledFor(logging.DEBUG))
                self._stop.wait(delay)
                self._dirty.set()
