"""Keep the eBPF datapath in place: repair drift, collect expired connections.

A detached filter or a removed pin raises no event we can subscribe to, so
`DriftWatcher` polls (`check_drift` costs two `tc` reads per device, a few
stats and one `nft list` of our tiny table) every `interval` seconds, repairs
what it finds - well inside the 2 s the datapath allows - and runs the
connection-table garbage collector every `gc_interval` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from datapath.ebpf.backend import EbpfDatapath

log = logging.getLogger(__name__)


class DriftWatcher:
    def __init__(self, backend: EbpfDatapath, *, interval: float = 0.25,
                 gc_interval: float = 10.0) -> None:
        self.backend = backend
        self.interval = interval
        self.gc_interval = gc_interval
        self.repairs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DriftWatcher:
        self._thread = threading.Thread(target=self._run, name="gn-ebpf-drift", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> DriftWatcher:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        next_gc = time.monotonic() + self.gc_interval
        while not self._stop.wait(self.interval):
            try:
                problems = self.backend.check_drift()
                if problems:
                    log.warning("eBPF datapath drift: %s", "; ".join(problems))
                    self.repairs += self.backend.repair()
                if time.monotonic() >= next_gc:
                    next_gc = time.monotonic() + self.gc_interval
                    removed = self.backend.collect_connections()
                    if removed:
                        log.debug("collected %d expired connection entries", removed)
            except Exception:  # keep watching: the next round retries
                log.exception("eBPF drift check failed")
