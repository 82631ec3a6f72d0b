"""Capped exponential backoff with jitter, for reconnect loops.

Jitter spreads the reconnects of many informers (and many processes) after an API
server restart, so they do not all hit the server in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``next()`` returns initial, 2x, 4x ... capped at ``maximum``, each +-``jitter``."""

    initial: float = 0.2
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.1
    _current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._current = (
            self.initial if self._current == 0 else min(self._current * self.factor, self.maximum)
        )
        spread = self._current * self.jitter
        return max(0.0, self._current + random.uniform(-spread, spread))

    def reset(self) -> None:
        self._current = 0.0
