"""The eBPF datapath's tc programs (C, compiled by bcc when the backend starts).

A package only so that the wheel, and the image built from it, carry the sources
beside `datapath/`: `datapath.ebpf.names.BPF_DIR` finds them here.
"""
