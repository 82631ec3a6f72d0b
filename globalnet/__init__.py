"""Globalnet control plane: global CIDR allocation, global IPAM, the egress and
ingress controllers, and the NAT intent they produce for the datapath."""
