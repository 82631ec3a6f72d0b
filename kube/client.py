"""Build one ``ApiClient`` per kubeconfig without touching the library's global default.

Globalnet processes talk to several clusters at once (a cluster and its Broker; the lab
drives many control planes from one process), so every client gets its own
``Configuration``. ``kubernetes.config.load_kube_config`` would otherwise write into
``Configuration`` defaults shared by the whole process.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes.client.configuration import Configuration
from kubernetes.config.config_exception import ConfigException

from kube import kubeconfig as kubeconfig_forms
from kube.rest import ApiClient

USER_AGENT = "globalnet/0.1"

# Concurrent connections kept per client. Every informer holds one open for its watch,
# so the library default (5 per CPU) is too small for a process with many informers.
DEFAULT_POOL_SIZE = 32


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used (missing, malformed, no such context); the
    message is one line for the user."""


def new_configuration(kubeconfig: Path, *, context: str | None = None) -> Configuration:
    """A fresh ``Configuration`` loaded from ``kubeconfig``; nothing global is modified."""
    if kubeconfig.is_dir():
        raise KubeconfigError(f"kubeconfig {kubeconfig} is a directory, not a file")
    if not kubeconfig.is_file():
        raise KubeconfigError(f"kubeconfig {kubeconfig} not found")
    configuration = Configuration()
    try:
        if not kubeconfig_forms.load_file(configuration, kubeconfig, context=context):
            # Credential plugins and the like: the library's loader (and its imports).
            from kubernetes.config.kube_config import load_kube_config

            load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except ConfigException as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KubeconfigError(f"kubeconfig {kubeconfig}: {detail}") from None
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        # The loader indexes the parsed YAML without checking its shape.
        raise KubeconfigError(f"kubeconfig {kubeconfig} is malformed "
                              f"({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise KubeconfigError(f"kubeconfig {kubeconfig}: {exc.strerror or exc}") from None
    return configuration


def api_client_from_dict(config: dict[str, object], *, pool_size: int = DEFAULT_POOL_SIZE,
                         retries: int | None = 2) -> ApiClient:
    """An ``ApiClient`` from a kubeconfig held in memory (a credential never written to
    disk, such as the one a broker-info file yields)."""
    configuration = Configuration()
    try:
        if not kubeconfig_forms.load(configuration, config):
            from kubernetes.config.kube_config import load_kube_config_from_dict

            load_kube_config_from_dict(  # type: ignore[no-untyped-call]
                config_dict=config, client_configuration=configuration, persist_config=False)
    except (ConfigException, TypeError, AttributeError, KeyError,
            ValueError, OSError) as exc:
        raise KubeconfigError(f"unusable kubeconfig ({type(exc).__name__}: {exc})") from None
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = retries
    api_client = ApiClient(configuration)
    api_client.user_agent = USER_AGENT
    return api_client


def new_api_client(
    kubeconfig: Path,
    *,
    context: str | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    retries: int | None = 2,
) -> ApiClient:
    """An ``ApiClient`` for the cluster in ``kubeconfig`` (optionally one of its contexts).

    ``retries`` is urllib3's count of quick reconnects for a request that could not be
    sent; the callers in ``kube/`` do their own backoff on top, so keep it small. Request
    timeouts are per call (see ``kube.rest.DEFAULT_TIMEOUT``): a watch needs a long read
    timeout, a GET a short one.
    """
    configuration = new_configuration(kubeconfig, context=context)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = retries
    api_client = ApiClient(configuration)
    api_client.user_agent = USER_AGENT
    return api_client
