"""Build one ``ApiClient`` per kubeconfig without touching the library's global default.

Globalnet processes talk to several clusters at once (a cluster and its Broker; the lab
drives many control planes from one process), so every client gets its own
``Configuration``. ``kubernetes.config.load_kube_config`` would otherwise write into
``Configuration`` defaults shared by the whole process.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

USER_AGENT = "globalnet/0.1"

# Concurrent connections kept per client. Every informer holds one open for its watch,
# so the library default (5 per CPU) is too small for a process with many informers.
DEFAULT_POOL_SIZE = 32


def new_configuration(kubeconfig: Path, *, context: str | None = None) -> k8s_client.Configuration:
    """A fresh ``Configuration`` loaded from ``kubeconfig``; nothing global is modified."""
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig),
        context=context,
        client_configuration=configuration,
        persist_config=False,
    )
    return configuration


def new_api_client(
    kubeconfig: Path,
    *,
    context: str | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    retries: int | None = 2,
) -> k8s_client.ApiClient:
    """An ``ApiClient`` for the cluster in ``kubeconfig`` (optionally one of its contexts).

    ``retries`` is urllib3's count of quick reconnects for a request that could not be
    sent; the callers in ``kube/`` do their own backoff on top, so keep it small. Request
    timeouts are per call (see ``kube.rest.DEFAULT_TIMEOUT``): a watch needs a long read
    timeout, a GET a short one.
    """
    configuration = new_configuration(kubeconfig, context=context)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = retries
    api_client = k8s_client.ApiClient(configuration=configuration)
    api_client.user_agent = USER_AGENT
    return api_client
