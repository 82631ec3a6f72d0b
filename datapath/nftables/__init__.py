"""nftables datapath backend: NAT intent -> one `inet globalnet` table.

Modules: `names` (every name and priority), `ruleset` (sets and chains as data),
`elements` (intent -> elements), `incremental` (ingress elements kept per change),
`converge` (desired vs. kernel -> operations), `render` (operations -> one nft
batch), `kernel` (libnftables), `netlink` (generation and change events),
`backend` (apply / cleanup / drift), `drift` (the watcher), `inspect` (what the
kernel holds), `fake` (a model for tests). This file is the one place that
re-exports names.
"""

from __future__ import annotations

from datapath.nftables.backend import DriftReport, NftablesDatapath, TransactionFailed
from datapath.nftables.drift import DriftWatcher, run_drift_loop
from datapath.nftables.inspect import TABLE_REF, MappingRow, read_mappings, render_table

__all__ = [
    "TABLE_REF",
    "DriftReport",
    "DriftWatcher",
    "MappingRow",
    "NftablesDatapath",
    "TransactionFailed",
    "read_mappings",
    "render_table",
    "run_drift_loop",
]
