"""Globalnet's shared Kubernetes layer: the only package that talks to the API server.

Everything above it (controllers, agents, the lab, the CLI) gets plain ``dict`` objects,
informer caches, work queues and leader election from here and never imports the
``kubernetes`` client itself. Modules are small and have one job each:

* ``client``: an ``ApiClient`` per kubeconfig, never the library's global default;
* ``lean``: import only the parts of the ``kubernetes`` package we use (the rest on demand);
* ``kubeconfig``: read the common kubeconfig forms without the library's loader;
* ``rest``: raw JSON requests (fast, and keeps fields the client library does not know);
* ``errors``: classify API and connection errors;
* ``resources`` / ``crud``: typed resource descriptions and generic CRUD on dicts;
* ``names``: the namespaces, labels, annotations and object names components share;
* ``objects``: reading the facts controllers need from plain-dict objects;
* ``discovery``: server and API group versions (EndpointSlice is v1beta1 on 1.20);
* ``store`` / ``informer``: list+watch caches that survive watch cuts, 410 Gone and
  API server restarts without losing an event;
* ``multinamespace``: one resource across a changing set of namespaces (the Broker's
  member namespaces), one namespaced informer each, one dispatcher;
* ``workqueue`` / ``reconcile``: client-go style work queue and worker loop;
* ``controller``: the one controller base (events to keys, workers, leader-term
  check, the status-write conflict policy) under Globalnet, Lighthouse and the gateway;
* ``conditions``: status-condition helpers;
* ``leaderelection``: Lease-based leader election that never has two leaders;
* ``crds``: the CRD manifests and their installer;
* ``backoff``: capped, jittered exponential backoff for reconnect loops;
* ``testing``: ``await_condition`` and per-test namespaces for real-server tests.

Import the modules (``from kube import informer``); this package re-exports nothing.
"""

# Before any module of ours imports the client library: load only the parts we use.
from kube import lean as _lean

_lean.install()
