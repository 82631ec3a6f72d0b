"""deploy.manifests against a real Kubernetes 1.20 API server.

Every rendered object is server-side applied with ``dryRun=All`` (the CRDs are
installed for real first, so custom resources validate). Server-side apply checks
built-in kinds against their schema (an unknown field is refused); every answer must
also hold every field and value it was sent, so nothing was pruned or rewritten.
Then the RBAC objects are created for real, the token controller fills the
components' token Secrets, and the agents' own kubeconfig (the rendered ConfigMap
with a token and CA beside it, as the projected volume lays them out) shows what
each identity may and may not do.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import manifests as m
from deploy import rbac
from kube import crds, crud, errors, names, resources, rest
from kube.client import new_api_client
from kube.testing import temporary_namespace

pytestmark = pytest.mark.kube

JSON = dict[str, Any]
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "globalnet-test"
RBAC_KINDS = {"ServiceAccount", "Secret", "Role", "RoleBinding", "ClusterRole",
              "ClusterRoleBinding", "ConfigMap"}


def options(**overrides: Any) -> m.Options:
    base: dict[str, Any] = dict(cluster_id="c1", global_cidr="242.1.0.0/16",
                                cluster_cidrs=("10.244.0.0/16",),
                                service_cidrs=("10.96.0.0/16",), dns_service_ip="10.96.0.53")
    return m.Options(**{**base, **overrides})


def apply(api: Any, obj: JSON, *, dry_run: bool) -> JSON:
    resource = m.resource_of(obj)
    meta = obj["metadata"]
    path = resource.path(namespace=meta.get("namespace"), name=meta["name"])
    query: dict[str, rest.QueryValue] = {"fieldManager": FIELD_MANAGER, "force": True}
    if dry_run:
        query["dryRun"] = "All"
    return rest.request_json(api, "PATCH", path, body=obj, content_type=APPLY, query=query)


def missing_fields(sent: Any, got: Any, path: str = "") -> list[str]:
    """Paths of what `sent` has and `got` lacks or holds differently."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [path or "."]
        out = []
        for key, value in sent.items():
            if key not in got:
                out.append(f"{path}.{key}")
            else:
                out += missing_fields(value, got[key], f"{path}.{key}")
        return out
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, got, strict=True))
                for p in missing_fields(a, b, f"{path}[{i}]")]
    return [] if sent == got else [f"{path}: sent {sent!r}, got {got!r}"]


@pytest.mark.parametrize("datapath", ["nftables", "ebpf"])
def test_every_rendered_object_is_accepted_by_the_1_20_api_server(
        api_client: Any, datapath: str) -> None:
    crds.install_crds(api_client)  # idempotent: the CRs below validate against these
    crud.ensure_namespace(api_client, names.CLUSTER_NAMESPACE)
    objects = m.render(options(datapath=datapath))
    kinds = set()
    for obj in objects:
        try:
            answer = apply(api_client, obj, dry_run=True)
        except Exception as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} refused: "
                        f"{errors.status_of(exc)} {exc}")
        assert (answer["kind"], answer["metadata"]["name"]) == (
            obj["kind"], obj["metadata"]["name"])
        dropped = missing_fields(obj, answer)
        if obj["kind"] == "Secret":  # the token controller fills data; we send none
            dropped = [p for p in dropped if not p.startswith(".data")]
        assert not dropped, f"{obj['kind']} {obj['metadata']['name']}: {dropped}"
        kinds.add(obj["kind"])
    assert kinds == set(m.KINDS)
    # Dry run: nothing but the namespace and the CRDs exists afterwards.
    daemonsets = crud.ResourceClient(api_client, m.KINDS["DaemonSet"])
    assert daemonsets.get_or_none(m.GATEWAY_DAEMONSET, namespace=names.CLUSTER_NAMESPACE) is None


def test_a_field_the_schema_lacks_is_caught(api_client: Any) -> None:
    """The checks above are real: a misspelt field is refused, a changed one seen."""
    crud.ensure_namespace(api_client, names.CLUSTER_NAMESPACE)
    objects = m.render(options())
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(Exception) as refused:
        apply(api_client, daemonset, dry_run=True)
    assert "hostNetwrok: field not declared in schema" in str(refused.value)
    service = next(o for o in objects if o["kind"] == "Service")
    answer = apply(api_client, service, dry_run=True)
    answer["spec"]["ports"][0]["port"] = 5353
    assert missing_fields(service, answer) == [".spec.ports[0].port: sent 53, got 5353"]


# --- RBAC behaviour --------------------------------------------------------------------------

@pytest.fixture
def installed_rbac(api_client: Any, control_plane: Any) -> Iterator[list[JSON]]:
    """The rendered ServiceAccounts, token Secrets, roles, bindings and kubeconfig
    ConfigMap, created for real (and deleted afterwards)."""
    crud.ensure_namespace(api_client, names.CLUSTER_NAMESPACE)
    objects = [o for o in m.render(options(cluster_id="rbac-test",
                                           api_server=control_plane.server_url))
               if o["kind"] in RBAC_KINDS]
    try:
        for obj in objects:
            apply(api_client, obj, dry_run=False)
        yield objects
    finally:
        for obj in reversed(objects):
            client = crud.ResourceClient(api_client, m.resource_of(obj))
            with contextlib.suppress(Exception):
                client.delete_if_exists(obj["metadata"]["name"],
                                        namespace=obj["metadata"].get("namespace"))


def agent_client(api_client: Any, objects: list[JSON], component: str, where: Path) -> Any:
    """A client built the way the agent builds it: ``--kubeconfig`` pointing at the
    rendered kubeconfig, with the component's token and CA beside it."""
    secrets = crud.ResourceClient(api_client, resources.SECRETS)
    name = m.token_secret_name(component)
    deadline = time.monotonic() + 30
    body = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name)
    while True:
        secret = secrets.get_or_none(name, namespace=names.CLUSTER_NAMESPACE)
        if secret is None:
            # The token controller deletes a token Secret whose ServiceAccount its cache
            # does not hold yet (a busy controller-manager after other tests' namespace
            # deletions): apply it again, as a re-run of join would.
            apply(api_client, body, dry_run=False)
            time.sleep(0.2)
            continue
        data = secret.get("data") or {}
        if "token" in data and "ca.crt" in data:
            break
        assert time.monotonic() < deadline, f"the token controller never filled {name}"
        time.sleep(0.2)
    where.mkdir()
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    (where / "kubeconfig").write_text(configmap["data"][m.KUBECONFIG_KEY])
    for key in ("token", "ca.crt"):
        (where / key).write_bytes(base64.b64decode(data[key]))
    return new_api_client(where / "kubeconfig")


def status(call: Any) -> int:
    """200 when the call succeeds, else the API error's HTTP status."""
    try:
        call()
    except Exception as exc:
        code = errors.status_of(exc)
        assert code is not None, exc
        return code
    return 200


def giip_body(namespace: str) -> JSON:
    return {"apiVersion": resources.GLOBAL_INGRESS_IPS.api_version,
            "kind": resources.GLOBAL_INGRESS_IPS.kind,
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": "x"}}}


def create_dry(api: Any, resource: Any, body: JSON, namespace: str | None) -> Any:
    return lambda: rest.request_json(api, "POST", resource.path(namespace=namespace),
                                     body=body, query={"dryRun": "All"})


def test_each_agent_can_do_what_its_role_allows_and_nothing_else(
        api_client: Any, installed_rbac: list[JSON], tmp_path: Path) -> None:
    ns = names.CLUSTER_NAMESPACE
    route = agent_client(api_client, installed_rbac, rbac.ROUTE_AGENT, tmp_path / "route")
    globalnet = agent_client(api_client, installed_rbac, rbac.GLOBALNET, tmp_path / "gn")
    syncer = agent_client(api_client, installed_rbac, rbac.BROKER_SYNCER, tmp_path / "sync")
    try:
        with temporary_namespace(api_client, "rbac") as other:
            nodes = crud.ResourceClient(route, resources.NODES)
            gateways = crud.ResourceClient(route, resources.GATEWAYS)
            # The route agent reads what its informers need...
            assert status(lambda: nodes.list()) == 200
            assert status(lambda: gateways.list(namespace=ns)) == 200
            assert status(lambda: crud.ResourceClient(route, resources.CLUSTERS).list(
                namespace=ns)) == 200
            # ...but writes nothing, reads no Secret and no Gateway outside its namespace.
            assert status(create_dry(route, resources.GLOBAL_INGRESS_IPS, giip_body(other),
                                     other)) == 403
            assert status(lambda: crud.ResourceClient(route, resources.SECRETS).list(
                namespace=ns)) == 403
            assert status(lambda: gateways.list(namespace=other)) == 403
            assert status(lambda: nodes.patch("any", {"metadata": {}})) == 403

            # Globalnet may create GlobalIngressIPs in any namespace (dry run: nothing stays).
            assert status(create_dry(globalnet, resources.GLOBAL_INGRESS_IPS,
                                     giip_body(other), other)) == 200
            # It holds only its own cluster's Lease, never the gateway's.
            leases = crud.ResourceClient(globalnet, resources.LEASES)
            assert status(lambda: leases.get(names.globalnet_lease("rbac-test"),
                                             namespace=ns)) == 404  # allowed; not there
            assert status(lambda: leases.get(names.GATEWAY_LEASE, namespace=ns)) == 403
            assert status(lambda: leases.get(names.globalnet_lease("other-cluster"),
                                             namespace=ns)) == 403
            # It reads no Secret either.
            assert status(lambda: crud.ResourceClient(globalnet, resources.SECRETS).get(
                m.token_secret_name(rbac.ROUTE_AGENT), namespace=ns)) == 403

            # The Broker syncer writes Cluster copies in the agents' namespace only.
            cluster = {"apiVersion": resources.CLUSTERS.api_version,
                       "kind": resources.CLUSTERS.kind, "metadata": {"name": "probe"},
                       "spec": {"cluster_id": "probe", "cluster_cidr": [], "service_cidr": [],
                                "global_cidr": []}}
            assert status(create_dry(syncer, resources.CLUSTERS, cluster, ns)) == 200
            assert status(create_dry(syncer, resources.CLUSTERS, cluster, other)) == 403
    finally:
        for client in (route, globalnet, syncer):
            client.close()


def test_the_globalnet_role_is_enough_for_the_globalnet_controllers(
        api_client: Any, installed_rbac: list[JSON], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The real controllers, run with nothing but the Globalnet agent's token, take the
    lead and allocate every kind of global IP (statuses written, objects created)."""
    from datapath.recording import RecordingDatapath
    from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager
    from kube.testing import await_condition

    token_api = agent_client(api_client, installed_rbac, rbac.GLOBALNET, tmp_path / "gn")
    admin = lambda res: crud.ResourceClient(api_client, res)  # noqa: E731
    cfg = GlobalnetConfig(cluster_id="rbac-test", global_cidr="242.9.0.0/24",
                          local_cidrs=("10.244.0.0/16", "10.96.0.0/16"),
                          namespace=names.CLUSTER_NAMESPACE, identity="rbac-test",
                          lease_duration=2.0, renew_deadline=1.5, retry_period=0.25)
    mgr = GlobalnetManager(token_api, cfg, RecordingDatapath())
    try:
        with temporary_namespace(api_client, "rbacgn") as ns:
            admin(resources.SERVICES).create({"metadata": {"name": "web", "namespace": ns},
                                              "spec": {"ports": [{"port": 80}]}})
            admin(resources.SERVICE_EXPORTS).create({"metadata": {"name": "web",
                                                                  "namespace": ns}})
            admin(resources.GLOBAL_EGRESS_IPS).create(
                {"metadata": {"name": "egress", "namespace": ns}, "spec": {"numberOfIPs": 2}})
            mgr.start()
            mgr.wait_for_term(30)

            def allocated() -> bool:
                giips = admin(resources.GLOBAL_INGRESS_IPS).list(namespace=ns).items
                geip = admin(resources.GLOBAL_EGRESS_IPS).get("egress", namespace=ns)
                return (len(giips) == 1 and bool((giips[0].get("status") or {}).get(
                    "allocatedIP")) and len((geip.get("status") or {}).get(
                        "allocatedIPs") or []) == 2)

            await_condition(allocated, timeout=30, interval=0.3,
                            message="the ingress and egress IPs allocated with the role")
            cluster_egress = admin(resources.CLUSTER_GLOBAL_EGRESS_IPS).get(
                names.CLUSTER_EGRESS_NAME)
            assert all(ip.startswith("242.9.0.") for ip in
                       (cluster_egress.get("status") or {}).get("allocatedIPs") or ["none"])
            # No call along the way was refused.
            assert not [r.getMessage() for r in caplog.records if "(403)" in r.getMessage()]
    finally:
        mgr.stop()
        token_api.close()
        with contextlib.suppress(Exception):
            admin(resources.LEASES).delete_if_exists(names.globalnet_lease("rbac-test"),
                                                     namespace=names.CLUSTER_NAMESPACE)


def test_engine_and_lighthouse_tokens_are_limited(
        api_client: Any, installed_rbac: list[JSON], tmp_path: Path) -> None:
    ns = names.CLUSTER_NAMESPACE
    engine = agent_client(api_client, installed_rbac, rbac.GATEWAY_ENGINE, tmp_path / "gw")
    lighthouse = agent_client(api_client, installed_rbac, rbac.LIGHTHOUSE_AGENT,
                              tmp_path / "lh")
    try:
        nodes = crud.ResourceClient(engine, resources.NODES)
        assert status(lambda: nodes.get("no-such-node")) == 404  # allowed, not there
        nodes.list()  # the gateway nodes' InternalIPs: the conntrack sync peers
        assert status(lambda: nodes.patch("no-such-node", {"metadata": {
            "labels": {"x": "y"}}})) == 403  # read only
        gateway = {"apiVersion": resources.GATEWAYS.api_version,
                   "kind": resources.GATEWAYS.kind, "metadata": {"name": "probe"}}
        assert status(create_dry(engine, resources.GATEWAYS, gateway, ns)) == 200
        assert status(lambda: crud.ResourceClient(engine, resources.GATEWAYS).update(
            {**gateway, "metadata": {"name": "probe", "namespace": ns}})) == 403  # status only
        assert status(lambda: crud.ResourceClient(engine, resources.LEASES).get(
            names.globalnet_lease("rbac-test"), namespace=ns)) == 403
        with temporary_namespace(api_client, "rbaclh") as other:
            imports = resources.SERVICE_IMPORTS
            body = {"apiVersion": imports.api_version, "kind": imports.kind,
                    "metadata": {"name": "probe"},
                    "spec": {"type": "ClusterSetIP", "ports": [{"port": 80,
                                                                "protocol": "TCP"}]}}
            assert status(create_dry(lighthouse, imports, body, other)) == 200
            assert status(create_dry(lighthouse, resources.GLOBAL_INGRESS_IPS,
                                     giip_body(other), other)) == 403
            assert status(lambda: crud.ResourceClient(lighthouse, resources.SECRETS).list(
                namespace=other)) == 403
    finally:
        engine.close()
        lighthouse.close()


def test_the_lighthouse_role_is_enough_to_export_and_import(
        api_client: Any, installed_rbac: list[JSON], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The real Lighthouse agent, with the agent's token for its cluster (the Broker
    side stays admin here), exports a service and imports it back."""
    from kube.testing import await_condition
    from lighthouse.agent import reasons as r
    from lighthouse.agent.agent import AgentConfig, LighthouseAgent

    token_api = agent_client(api_client, installed_rbac, rbac.LIGHTHOUSE_AGENT,
                             tmp_path / "lh")
    admin = lambda res: crud.ResourceClient(api_client, res)  # noqa: E731
    from kube.testing import broker_member

    with temporary_namespace(api_client, "rbacbk") as broker_ns, \
            temporary_namespace(api_client, "rbaclh") as ns, \
            broker_member(api_client, broker_ns, "rbac-test") as member_ns:
        agent = LighthouseAgent(local_api=token_api, broker_api=api_client, config=AgentConfig(
            cluster_id="rbac-test", broker_namespace=broker_ns, globalnet=False))
        try:
            admin(resources.SERVICES).create({"metadata": {"name": "web", "namespace": ns},
                                              "spec": {"ports": [{"name": "http",
                                                                  "port": 80}]}})
            admin(resources.SERVICE_EXPORTS).create({"metadata": {"name": "web",
                                                                  "namespace": ns}})
            agent.start()

            def ready() -> bool:
                export = admin(resources.SERVICE_EXPORTS).get("web", namespace=ns)
                return any(c.get("type") == r.READY and c.get("status") == "True"
                           for c in (export.get("status") or {}).get("conditions") or [])

            def imported() -> bool:
                local = admin(resources.SERVICE_IMPORTS).get_or_none("web", namespace=ns)
                clusters = ((local or {}).get("status") or {}).get("clusters") or []
                return [c.get("cluster") for c in clusters] == ["rbac-test"]

            await_condition(ready, timeout=30, interval=0.3, message="export Ready")
            await_condition(imported, timeout=30, interval=0.3, message="aggregated import")
            # The agent exports every ServiceExport of the (shared) API server: others'
            # leftovers may be published beside ours; ours is there once.
            from lighthouse.agent import render
            published = [render.identity_of(i) for i in admin(
                resources.SERVICE_IMPORTS).list(namespace=member_ns).items]
            assert [i for i in published if i and i[0] == ns] == [(ns, "web", "rbac-test")]
            assert admin(resources.SERVICE_IMPORTS).list(namespace=broker_ns).items == []
            assert not [rec.getMessage() for rec in caplog.records
                        if "(403)" in rec.getMessage() or "Forbidden" in rec.getMessage()]
        finally:
            agent.stop()
            token_api.close()
