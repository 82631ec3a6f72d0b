"""The one error type of `verify`: a clusterset that cannot be tested as asked.

Its message is one line for the user (`cli/main.py` prints it, exit 1): a cluster
that has not joined, has no active gateway, or is the same cluster twice. A check
that fails is not an error: it is a FAIL row in the report.
"""

from __future__ import annotations


class VerifyError(RuntimeError):
    """The clusters cannot be verified as asked; str() is one line."""


class Interrupted(RuntimeError):
    """A probe gave up because the run is being stopped (Ctrl-C, SIGTERM)."""
