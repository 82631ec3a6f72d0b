"""The one rich console every `gnctl` command prints tables with.

Piped or captured, rich would assume 80 columns and cut addresses and paths
short; there it gets room, and a terminal keeps its own width. Lines are never
wrapped (`soft_wrap`), so paths stay whole for copy and paste.
"""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
