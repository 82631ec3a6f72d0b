"""The kube layer's lean use of the ``kubernetes`` package (kube.lean, kube.kubeconfig,
kube.rest.ApiClient) does what the library would, and the agents do not import the
parts they never use (each costs MB of RSS on every node)."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube import kubeconfig, rest
from kube.client import KubeconfigError, api_client_from_dict, new_api_client

REPO = Path(__file__).resolve().parents[2]

# What the agents must not load: the library's kubeconfig loader and its requests /
# oauthlib, the generated ApiClient with pydantic, dateutil and the model registry,
# and the subpackages kubernetes/__init__.py would import.
HEAVY = ["kubernetes.config.kube_config", "kubernetes.client.api_client",
         "kubernetes.client.models", "kubernetes.client.api", "kubernetes.dynamic",
         "kubernetes.watch", "kubernetes.stream", "kubernetes.informer",
         "kubernetes.leaderelection", "kubernetes.utils.create_from_yaml",
         "pydantic", "requests", "requests_oauthlib", "oauthlib", "websocket", "dateutil"]

AGENTS = ["gateway.routeagent", "gateway.engine", "gateway.syncer", "globalnet.agent",
          "lighthouse.agent"]


@pytest.mark.parametrize("module", AGENTS)
def test_agents_import_no_unused_part_of_the_client_library(module: str) -> None:
    code = (f"import sys, {module}, kube.client\n"
            f"heavy = {HEAVY!r}\n"
            "print(sorted({m for m in sys.modules for h in heavy "
            "if m == h or m.startswith(h + '.')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]", f"{module} imports {out.strip()}"


def test_the_library_still_works_in_full_on_demand() -> None:
    code = ("import kube.client, kubernetes\n"
            "from kube import lean\n"
            "assert lean.is_deferred('kubernetes')\n"
            "from kubernetes.config import dateutil\n"  # a submodule: only it is imported
            "from kubernetes.utils import retry\n"
            "assert lean.is_deferred('kubernetes.config')\n"
            "assert lean.is_deferred('kubernetes.utils')\n"
            "from kubernetes import watch, config, client, utils\n"
            "assert callable(utils.create_from_yaml), utils.create_from_yaml\n"
            "assert callable(config.load_kube_config)\n"
            "assert client.CoreV1Api.__name__ == 'CoreV1Api'\n"
            "assert kubernetes.__version__ and not lean.is_deferred('kubernetes')\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True)
    assert out.stdout.strip() == "ok", out.stderr


def _library_configuration(config: dict[str, Any], context: str | None,
                           path: Path | None) -> Any:
    from kubernetes.client import Configuration
    from kubernetes.config import kube_config

    configuration = Configuration()
    if path is not None:
        kube_config.load_kube_config(config_file=str(path), context=context,
                                     client_configuration=configuration,
                                     persist_config=False)
    else:
        kube_config.load_kube_config_from_dict(config, context=context,
                                               client_configuration=configuration,
                                               persist_config=False)
    return configuration


def _facts(configuration: Any) -> dict[str, Any]:
    def content(name: str | None) -> bytes | None:
        return Path(name).read_bytes() if name else None

    return {"host": configuration.host, "verify_ssl": configuration.verify_ssl,
            "tls_server_name": configuration.tls_server_name, "proxy": configuration.proxy,
            "auth": configuration.auth_settings(),
            "ca": content(configuration.ssl_ca_cert), "cert": content(configuration.cert_file),
            "key": content(configuration.key_file)}


def _config(cluster: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": cluster},
                     {"name": "other", "cluster": {"server": "https://10.0.0.9:6443/"}}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     {"name": "second", "context": {"cluster": "other", "user": "u"}}]}
    if user is not None:
        config["users"] = [{"name": "u", "user": user}]
    return config


def _b64(data: bytes) -> str:
    return base64.standard_b64encode(data).decode()


CASES: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "token and CA file": ({"server": "https://172.18.0.2:6443",
                           "certificate-authority": "pki/ca.crt"}, {"token": "abc"}),
    "client certificate data": ({"server": "https://127.0.0.1:16443/",
                                 "certificate-authority-data": _b64(b"CA DATA\n")},
                                {"client-certificate-data": _b64(b"CERT\n"),
                                 "client-key-data": _b64(b"KEY\n")}),
    "client certificate files": ({"server": "https://h:1", "certificate-authority": "pki/ca.crt"},
                                 {"client-certificate": "pki/c.crt",
                                  "client-key": "pki/c.key"}),
    "token file": ({"server": "https://h:1", "insecure-skip-tls-verify": True,
                    "tls-server-name": "api.example", "proxy-url": "http://proxy:3128"},
                   {"tokenFile": "token"}),
    "no user": ({"server": "http://127.0.0.1:8080"}, None),
    "plain http keeps no files": ({"server": "http://127.0.0.1:8080",
                                   "certificate-authority": "pki/ca.crt"}, {"token": "t"}),
}


@pytest.mark.parametrize("context", [None, "second"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_kubeconfig_forms_load_as_the_library_loads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, context: str | None) -> None:
    (tmp_path / "pki").mkdir()
    for name, data in {"ca.crt": b"CA\n", "c.crt": b"C\n", "c.key": b"K\n"}.items():
        (tmp_path / "pki" / name).write_bytes(data)
    (tmp_path / "token").write_text("from-file")
    cluster, user = CASES[case]
    config = _config(cluster, user)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))

    from kubernetes.client import Configuration

    ours = Configuration()
    assert kubeconfig.load_file(ours, path, context=context)
    assert _facts(ours) == _facts(_library_configuration(config, context, path))

    monkeypatch.chdir(tmp_path)  # a dict's relative names are relative to the cwd
    ours = Configuration()
    assert kubeconfig.load(ours, config, context=context)
    assert _facts(ours) == _facts(_library_configuration(config, context, None))


@pytest.mark.parametrize("user", [
    {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "true"}},
    {"auth-provider": {"name": "oidc", "config": {}}},
    {"username": "a", "password": "b"},
])
def test_credential_plugins_are_left_to_the_library(user: dict[str, Any]) -> None:
    from kubernetes.client import Configuration

    configuration = Configuration()
    host = configuration.host
    assert not kubeconfig.load(configuration, _config({"server": "https://h:1"}, user))
    assert configuration.host == host and not configuration.api_key


def test_basic_auth_still_works_through_the_library_loader() -> None:
    api = api_client_from_dict(_config({"server": "http://h:1"},
                                       {"username": "a", "password": "b"}))
    assert api.configuration.host == "http://h:1"
    assert api.configuration.api_key["BearerToken"].startswith("Basic ")


def test_unusable_kubeconfigs_are_reported_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(_config({"server": "https://h:1",
                                            "certificate-authority": "missing.crt"},
                                           {"token": "t"})))
    with pytest.raises(KubeconfigError, match="no context 'nope'"):
        new_api_client(path, context="nope")
    with pytest.raises(KubeconfigError, match="File does not exist"):
        new_api_client(path)
    path.write_text("")
    with pytest.raises(KubeconfigError, match="No configuration found"):
        new_api_client(path)


def test_requests_are_built_as_the_library_builds_them() -> None:
    from kubernetes.client import ApiClient as LibraryApiClient
    from kubernetes.client import Configuration

    configuration = Configuration()
    configuration.host = "https://10.0.0.1:6443"
    configuration.api_key["BearerToken"] = "Bearer t0ken"
    ours, theirs = rest.ApiClient(configuration), LibraryApiClient(configuration)
    for api in (ours, theirs):
        api.user_agent = "globalnet/test"
    body = {"metadata": {"name": "a b", "labels": {"x": "1"}},
            "spec": {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "list": [1, "2", None]}}
    query = [("labelSelector", "a=b,c in (d)"), ("limit", "5"), ("watch", "true")]
    for args in [("GET", "/api/v1/nodes", query, None),
                 ("PATCH", "/apis/x/v1/namespaces/n/things/a", None, body),
                 ("POST", "/api/v1/namespaces", [], {})]:
        method, path, q, b = args
        kwargs = {"method": method, "resource_path": path, "query_params": q,
                  "header_params": {"Accept": "application/json",
                                    "Content-Type": "application/json"},
                  "body": b, "auth_settings": ["BearerToken"]}
        mine = ours.param_serialize(**kwargs)  # type: ignore[arg-type]
        library = theirs.param_serialize(**kwargs)
        assert mine[:3] == library[:3]
        assert json.dumps(mine[3]) == json.dumps(library[3])
