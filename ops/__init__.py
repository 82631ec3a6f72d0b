"""Read-only views of a clusterset, for `gnctl show` and, later, `gnctl diagnose`.

Each module turns API objects into frozen dataclasses and nothing else: no printing,
no writes, no retries (a user waiting on an answer wants it now). The reads are in
`cluster` (one member cluster, each kind listed at most once) and `broker` (the
Broker, through the member's recorded connection or one the user names); the views
are pure functions of the objects read, so they are tested without a server:

* `networks`: every member's pod, service and global CIDRs, from the Cluster objects;
* `gateways`: Endpoints, the active gateway's connections and the gateway nodes' HA
  state (the gateway Lease holder beside what each engine reports);
* `pools`: global IP usage of the cluster's global CIDR, and what is not allocated;
* `versions`: the images the agents' DaemonSets and Deployments run;
* `inventory`: the sections by name, for commands that show several.

Layering (.importlinter): ops reads through kube and the deploy/globalnet/gateway
names and helpers; only cli imports ops. Import the modules; nothing is re-exported.
"""
