"""Overlapping-CIDR Kubernetes clusters on one machine, for demos and tests.

Real control planes (Debian's etcd; kube-apiserver, kube-controller-manager and
kube-scheduler built from Debian's source) run in control-plane namespaces;
nodes are network namespaces running real containerd and kubelet (lab/node.py),
pods are real containers wired by CNI; real kube-proxy runs on every node.
Nothing is created in the caller's namespace but one loopback relay port per API
server, and `lab down` removes everything from the state file alone.
"""
