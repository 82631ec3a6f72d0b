"""Deployment artefacts: the manifests that install Globalnet onto a cluster.

``deploy.manifests.render`` turns a frozen set of options (cluster ID, CIDRs, image,
datapath, ...) into the list of API objects - CRDs (from ``kube.crds``), per-component
ServiceAccounts and RBAC (rules in ``deploy.rbac``), the gateway and route-agent
DaemonSets, the Lighthouse Deployment and its DNS Service. ``python -m
deploy.manifests`` writes them out. The image build (``deploy/images``,
``deploy/Dockerfile``) and the CoreDNS snippet (``deploy/coredns``) live beside it.
"""
