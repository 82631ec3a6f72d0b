"""Import only the parts of the ``kubernetes`` package that ``kube`` uses.

``import kubernetes.client.configuration`` first runs ``kubernetes/__init__.py``, which
imports every subpackage: ``config`` (requests, requests-oauthlib, oauthlib, and the
generated ``ApiClient`` with pydantic and dateutil), ``dynamic``, ``watch``, ``stream``
(websocket-client), ``utils`` (create_from_yaml) ... About 17 MB of a 56 MB agent, on
every node, for code we never call: ``kube.rest`` needs ``Configuration``,
``RESTClientObject`` and ``ApiException``; ``kube.kubeconfig`` reads kubeconfigs.

`install` registers the packages ``kubernetes``, ``kubernetes.client``,
``kubernetes.config`` and ``kubernetes.utils`` as *deferred* packages
(`deferred_import.defer`) before anything imports them: a submodule
(``kubernetes.client.rest``) imports on its own, and the package's own ``__init__``
runs only when something asks the package for a name it does not have yet
(``kubernetes.config.load_kube_config``, ``kubernetes.client.CoreV1Api``) - then it
runs once, in full, and the package is the library's own from then on. Nothing
changes for code that uses the library normally; it only stops paying for what it
does not touch. When ``kubernetes`` was imported before ``kube`` (a test importing
the library first), `install` does nothing.
"""

from __future__ import annotations

from deferred_import import DeferredPackage, defer, is_deferred

__all__ = ["PACKAGES", "DeferredPackage", "install", "is_deferred"]

# Parents before children: a child stub is set as its parent's attribute.
PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.config", "kubernetes.utils")


def install() -> None:
    """Register the deferred packages (idempotent; a no-op once the library is imported)."""
    defer(*PACKAGES)
