"""`gnctl diagnose`: checks of a clusterset that each say PASS, WARN or FAIL, as
subctl's `diagnose` does.

Each group is one module of small functions returning `model.Check`s, reading what
`ops` reads for `gnctl show` (`ops.cluster.ClusterState`, the views in `ops.gateways`,
`ops.pools`, `ops.versions`, `ops.broker`): a check never writes to the API, except
`firewall` on a real cluster, which may run one short-lived probe pod to read the
gateway's nftables table (`nodeaccess`). What needs the nodes themselves (the nft
table, eBPF pins, the DNS server answering, kube-proxy's flags) goes through a
`target.NodeAccess`: the lab's network namespaces, a probe pod, or nothing (WARN
"not checked"). `runner` runs the groups over every cluster named.

Layering (.importlinter): only cli imports this package; it reads through kube,
lab (for the lab's node access) and the read helpers of the lower packages.
"""
