"""Overlapping-CIDR Kubernetes clusters on one machine, for demos and tests.

Real control planes (Debian's etcd; kube-apiserver and kube-controller-manager
built from Debian's source) run in control-plane namespaces; nodes and pods are network
namespaces; real kube-proxy runs on every node; the lab itself plays kubelet and
CNI. Nothing is created in the caller's namespace but one loopback relay port
per API server, and `lab down` removes everything from the state file alone.
"""
