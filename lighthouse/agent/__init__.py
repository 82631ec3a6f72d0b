"""The Lighthouse agent: exports through the Broker, imports from it, feeds DNS.

One agent per cluster, talking to two API servers: the cluster's and the Broker's.
Modules, one job each:

* ``reasons``: condition types and reasons, ServiceImport types (stable strings;
  labels and annotations are in ``kube.names``);
* ``model``: the frozen values the pure functions pass around;
* ``publication``: what one export publishes and its ``Valid``/``Ready`` (pure);
* ``aggregate``: union of ports, type precedence, ``Conflict`` (pure);
* ``render``: API object bodies and their canonical readings (pure);
* ``base``: idempotent create-or-update and condition writes (the controllers are
  ``kube.controller`` ones; informer sets and indexes are ``kube.informers``);
* ``brokercache``: the shared cache of every cluster's objects on the Broker;
* ``exporter`` / ``importer``: the two controllers;
* ``dnsfeed``: imported EndpointSlices and Gateway health -> ``lighthouse.dns`` store;
* ``agent``: wiring, start/stop, ``leave`` and ``withdraw_cluster``;
* ``__main__``: ``python -m lighthouse.agent``.

Data flows one way: ServiceExport (cluster B) -> Broker ServiceImport/EndpointSlice
(in B's member namespace there, ``kube.names.broker_member_namespace``) -> aggregated
ServiceImport and EndpointSlice copies (every cluster with the namespace) -> DNS records.
Rules: only ``kube`` talks to the API; the DNS store is used through its public API
only; nothing here blocks a DNS answer.

This module re-exports the entry points; elsewhere import the modules.
"""

from lighthouse.agent.agent import AgentConfig, LighthouseAgent, remove_imports, withdraw_cluster

__all__ = ["AgentConfig", "LighthouseAgent", "remove_imports", "withdraw_cluster"]
