"""What every long-running agent process does the same way: log lines in one
format, and block until SIGTERM or SIGINT.

The agents (`globalnet.agent`, `lighthouse.agent`, `gateway.syncer`,
`gateway.routeagent`) are controllers over this package's informers; their
entry points share this so a fix to signal handling or log format lands once.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Protocol

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)


def stop_requested() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (call from the main thread)."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    return done


class Service(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


class Together:
    """Several services in one process (one interpreter instead of several, on every
    gateway node): started in order, stopped in reverse."""

    def __init__(self, *services: Service) -> None:
        self.services = services

    def start(self) -> Together:
        for service in self.services:
            service.start()
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def serve(service: Service, started: str) -> int:
    """Start `service`, log `started`, block until SIGTERM or SIGINT, stop it."""
    done = stop_requested()
    service.start()
    logging.getLogger("daemon").info("%s", started)
    done.wait()
    service.stop()
    return 0
