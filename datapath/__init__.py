"""Turns NAT intent into kernel state (nftables or eBPF, plus routes).

Never imports the Kubernetes API layer: the datapath sees only intent.
"""
