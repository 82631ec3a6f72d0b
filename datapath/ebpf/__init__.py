"""The eBPF datapath backend: tc programs (bpf/) loaded with bcc, pinned maps.

See `backend` for the life cycle, `names` for everything Python and C share,
`datapath/README.md` for the packet walks. Never imports another backend.
"""

from datapath.ebpf.backend import EbpfDatapath, KernelMissing, MapWriteFailed
from datapath.ebpf.drift import DriftWatcher
from datapath.ebpf.loader import ProgramLoadError

__all__ = ["DriftWatcher", "EbpfDatapath", "KernelMissing", "MapWriteFailed",
           "ProgramLoadError"]
