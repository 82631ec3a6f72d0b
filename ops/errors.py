"""The one error type of `ops`: a view that cannot be read, said in one line.

Raised for what the user can act on - a cluster without Globalnet's CRDs, a Broker
that cannot be found or read - so `gnctl` prints the message as its one line
(cli/main.py). Connection and API errors are not wrapped: main.py explains those
itself, naming the server.
"""

from __future__ import annotations


class InventoryError(RuntimeError):
    """A clusterset view that cannot be read; the message is one line for the user."""
