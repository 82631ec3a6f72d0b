"""Read the common kubeconfig forms into a ``Configuration`` without the library's loader.

``kubernetes.config.kube_config`` imports requests, requests-oauthlib, oauthlib and the
generated ``ApiClient`` (pydantic, dateutil) at module level - several MB in every agent -
for the OIDC, GCP and exec credential plugins. The kubeconfigs Globalnet writes (the lab,
``gnctl join``, the Broker's service-account tokens) and most others only need a server,
a CA, a bearer token and/or a client certificate, so `load` reads exactly those, the way
``KubeConfigLoader`` does (same precedence, same relative-path base, ``*-data`` fields as
temporary files removed at exit, same ``ConfigException`` for a missing context or file).
For a user it does not know (``auth-provider``, ``exec``, ``username``/``password`` or any
other field) it returns ``False`` and the caller uses the library's loader.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.configuration import Configuration
from kubernetes.config.config_exception import ConfigException

# The user fields read here; any other one (auth-provider, exec, username, ...) means
# the library's loader, which knows them all.
USER_FIELDS = frozenset({"token", "tokenFile", "client-certificate", "client-certificate-data",
                         "client-key", "client-key-data"})

_temp_files: dict[bytes, str] = {}
_temp_lock = threading.Lock()


def load_file(configuration: Configuration, path: Path, *, context: str | None = None) -> bool:
    """Fill ``configuration`` from the kubeconfig file ``path``; False: needs the library."""
    with open(path) as f:
        try:
            config = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigException(f"not valid YAML ({problem}{where})") from None
    if not config:
        raise ConfigException("Invalid kube-config file. No configuration found.")
    if not isinstance(config, Mapping):
        raise ConfigException(f"not a kubeconfig: it holds a YAML {_yaml_kind(config)}, not "
                              "a mapping with clusters, contexts and users")
    return load(configuration, config, context=context,
                base_path=os.path.abspath(os.path.dirname(path)))


def load(configuration: Configuration, config: Mapping[str, Any], *,
         context: str | None = None, base_path: str = "") -> bool:
    """Fill ``configuration`` from a parsed kubeconfig; False (nothing set): needs the
    library's loader. Relative file names are relative to ``base_path``."""
    if context is None:
        context = _key(config, "current-context", "kube-config")
    named_context = _named(config, "contexts", context, safe=True)
    if named_context is None:
        known = ", ".join(sorted(context_names(config))) or "none"
        raise ConfigException(f"no context {context!r} (its contexts: {known})")
    ctx = _key(named_context, "context", f"contexts/{context}")
    user: Mapping[str, Any] | None = None
    if ctx.get("user") and config.get("users"):
        # A kubeconfig without users is anonymous (as the library reads it); one that
        # has users but not the named one has a typo, which must not go anonymous.
        named_user = _named(config, "users", ctx["user"], safe=True)
        if named_user is None:
            raise ConfigException(f"context {context!r} names user {ctx['user']!r}, which "
                                  "is not in its users")
        user = _key(named_user, "user", f"users/{ctx['user']}")
    if user and not set(user) <= USER_FIELDS:
        return False
    cluster_name = _key(ctx, "cluster", f"contexts/{context}")
    named_cluster = _named(config, "clusters", cluster_name, safe=True)
    if named_cluster is None:
        raise ConfigException(f"context {context!r} names cluster {cluster_name!r}, which is "
                              "not in its clusters")
    cluster = _key(named_cluster, "cluster", "clusters")

    token = None
    if user:
        if "token" in user:
            token = user["token"]
        elif "tokenFile" in user:
            with open(os.path.normpath(os.path.join(base_path, user["tokenFile"]))) as f:
                token = f.read()
    settings: dict[str, Any] = {}
    if "server" in cluster:
        settings["host"] = cluster["server"].rstrip("/")
        if settings["host"].startswith("https"):
            settings["ssl_ca_cert"] = _as_file(cluster, "certificate-authority", base_path)
            settings["cert_file"] = _as_file(user, "client-certificate", base_path)
            settings["key_file"] = _as_file(user, "client-key", base_path)
    if "insecure-skip-tls-verify" in cluster:
        settings["verify_ssl"] = not cluster["insecure-skip-tls-verify"]
    if "tls-server-name" in cluster:
        settings["tls_server_name"] = cluster["tls-server-name"]
    if "proxy-url" in cluster:
        settings["proxy"] = cluster["proxy-url"]

    if token:
        configuration.api_key["BearerToken"] = f"Bearer {token}"
    for name, value in settings.items():
        setattr(configuration, name, value)
    return True


def context_names(config: Any) -> list[str]:
    """The names of a parsed kubeconfig's contexts (for a message listing them)."""
    entries = config.get("contexts") if isinstance(config, Mapping) else None
    if not isinstance(entries, list):
        return []
    return [str(e["name"]) for e in entries if isinstance(e, Mapping) and "name" in e]


def _yaml_kind(value: Any) -> str:
    return {str: "string", list: "list", int: "number", float: "number",
            bool: "boolean"}.get(type(value), type(value).__name__)


def _key(node: Any, key: str, where: str) -> Any:
    if not isinstance(node, Mapping) or key not in node:
        raise ConfigException(f"Invalid kube-config file. Expected key {key} in {where}")
    return node[key]


def _named(config: Mapping[str, Any], kind: str, name: str, *, safe: bool = False) -> Any:
    """The one entry called ``name`` of the list ``config[kind]``."""
    found = []
    for entry in _key(config, kind, "kube-config") or []:
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ConfigException(f"Invalid kube-config file. Expected all values in {kind} "
                                  "list to have 'name' key")
        if entry["name"] == name:
            found.append(entry)
    if len(found) > 1:
        raise ConfigException(f"Invalid kube-config file. Expected only one object with name "
                              f"{name} in {kind} list")
    if not found:
        if safe:
            return None
        raise ConfigException(f"Invalid kube-config file. Expected object with name {name} "
                              f"in {kind} list")
    return found[0]


def _as_file(node: Mapping[str, Any] | None, key: str, base_path: str) -> str | None:
    """A file holding ``node[key-data]`` (base64, preferred) or the file ``node[key]``."""
    if not node:
        return None
    if f"{key}-data" in node:
        data = node[f"{key}-data"]
        if not data:
            return None
        return _temp_file(base64.standard_b64decode(
            data.encode() if isinstance(data, str) else data))
    if key not in node:
        return None
    path = os.path.normpath(os.path.join(base_path, node[key]))
    if not os.path.isfile(path):
        raise ConfigException(f"File does not exist: {path}")
    return path


def _temp_file(content: bytes) -> str:
    """One private file per distinct content, removed when the process exits."""
    with _temp_lock:
        name = _temp_files.get(content)
        if name and os.path.isfile(name):
            return name
        if not _temp_files:
            atexit.register(_remove_temp_files)
        fd, name = tempfile.mkstemp()
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        _temp_files[content] = name
        return name


def _remove_temp_files() -> None:
    with _temp_lock:
        for name in _temp_files.values():
            with contextlib.suppress(OSError):
                os.remove(name)
        _temp_files.clear()
