"""Turns NAT intent into kernel state, and keeps the gateway's routes and cable.

Backends: `nftables` (the kernel) and `recording` (memory only, for tests and
dry runs), each behind `globalnet.datapath_api.Datapath`. Kernel helpers the
backends and the gateway share: `netns`, `routes`, `vxlan`. Never imports the
Kubernetes API layer: the datapath sees only intent.
"""
