"""The CRDs from kube/crds/ as the real API server enforces them.

Validation must happen in the API server (422 with its own message), so a malformed
object never reaches a controller: out-of-range IP counts, wrong types, unknown targets.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kube import conditions, crds, crud, discovery, errors, resources, rest, testing
from kube.client import new_api_client
from kube.crds import migration
from kube.testing import temporary_namespace
from lab.controlplane import ControlPlane

pytestmark = pytest.mark.kube


def test_all_crds_established_and_install_is_idempotent(api_client: Any) -> None:
    crds.install_crds(api_client, timeout=30)
    client = crud.ResourceClient(api_client, resources.CUSTOM_RESOURCE_DEFINITIONS)
    for resource in resources.CUSTOM_RESOURCES:
        crd = client.get(resource.qualified_name)
        assert crds._established(crd), resource.qualified_name


def rejected(client: crud.ResourceClient, obj: dict[str, Any]) -> str:
    """Create ``obj``, expect the server's 422, return its message."""
    with pytest.raises(ApiException) as caught:
        client.create(obj)
    assert errors.is_invalid(caught.value), caught.value
    return rest.status_message(caught.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"numGlobalIPs": 21}, "less than or equal to 20", id="21"),
        pytest.param({"numGlobalIPs": -1}, "greater than or equal to 0", id="-1"),
        pytest.param({"numGlobalIPs": "eight"}, 'must be of type integer: "string"', id="string"),
        pytest.param({"numGlobalIPs": 2.5}, "must be of type integer", id="float"),
    ],
)
def test_cluster_global_egress_ip_count_is_validated(
    api_client: Any, spec: dict[str, Any], expected: str
) -> None:
    client = crud.ResourceClient(api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    message = rejected(client, {"metadata": {"name": "invalid-cgeip"}, "spec": spec})
    assert "spec.numGlobalIPs" in message and expected in message, message


def test_cluster_global_egress_ip_bounds_are_accepted(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    for count in (0, 20, None):
        name = f"bounds-{'default' if count is None else count}"
        spec = {} if count is None else {"numGlobalIPs": count}
        client.create({"metadata": {"name": name}, "spec": spec})
        client.delete(name)


@pytest.mark.parametrize(
    ("spec", "field", "expected"),
    [
        pytest.param({"numberOfIPs": 21}, "spec.numberOfIPs", "less than or equal to 20", id="21"),
        pytest.param({"numberOfIPs": -3}, "spec.numberOfIPs", "greater than or equal", id="-3"),
        pytest.param(
            {"podSelector": "app=web"}, "spec.podSelector", "must be of type object", id="selector"
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
            "operator",
            "Unsupported value",
            id="operator",
        ),
    ],
)
def test_global_egress_ip_is_validated(
    api_client: Any, spec: dict[str, Any], field: str, expected: str
) -> None:
    client = crud.ResourceClient(api_client, resources.GLOBAL_EGRESS_IPS)
    with temporary_namespace(api_client, "crd") as namespace:
        message = rejected(
            client, {"metadata": {"name": "x", "namespace": namespace}, "spec": spec}
        )
    assert field in message and expected in message, message


@pytest.mark.parametrize(
    ("spec", "field", "expected"),
    [
        pytest.param({"target": "LoadBalancer"}, "spec.target", "Unsupported value", id="target"),
        pytest.param({}, "spec.target", "Required value", id="missing-target"),
        pytest.param(
            {"target": "ClusterIPService", "serviceRef": "web"},
            "spec.serviceRef",
            "must be of type object",
            id="ref-type",
        ),
        pytest.param(
            {"target": "HeadlessServicePod", "podRef": {}},
            "spec.podRef.name",
            "Required value",
            id="ref-name",
        ),
    ],
)
def test_global_ingress_ip_is_validated(
    api_client: Any, spec: dict[str, Any], field: str, expected: str
) -> None:
    client = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    with temporary_namespace(api_client, "crd") as namespace:
        message = rejected(
            client, {"metadata": {"name": "x", "namespace": namespace}, "spec": spec}
        )
    assert field in message and expected in message, message


def test_service_import_is_validated(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.SERVICE_IMPORTS)
    with temporary_namespace(api_client, "crd") as namespace:
        good: dict[str, Any] = {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "type": "ClusterSetIP",
                "ips": ["242.0.255.254"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        }
        created = client.create(good)
        assert created["spec"]["ports"][0]["port"] == 80
        bad_type = {**good, "spec": {**good["spec"], "type": "NodePort"}}
        bad_type["metadata"] = {"name": "bad-type", "namespace": namespace}
        assert "spec.type" in rejected(client, bad_type)
        no_port = {**good, "spec": {**good["spec"], "ports": [{"name": "http"}]}}
        no_port["metadata"] = {"name": "no-port", "namespace": namespace}
        assert "port" in rejected(client, no_port)
        three_ips = {**good, "spec": {**good["spec"],
                                      "ips": ["242.0.0.1", "242.0.0.2", "242.0.0.3"]}}
        three_ips["metadata"] = {"name": "three-ips", "namespace": namespace}
        assert "spec.ips" in rejected(client, three_ips)


def test_conditions_written_by_set_condition_are_accepted(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.GLOBAL_EGRESS_IPS)
    with temporary_namespace(api_client, "crd") as namespace:
        obj = client.create(
            {"metadata": {"name": "geip", "namespace": namespace}, "spec": {"numberOfIPs": 2}}
        )
        status: dict[str, Any] = {"allocatedIPs": ["242.0.0.1", "242.0.0.2"], "conditions": []}
        assert conditions.set_condition(
            status["conditions"],
            type="Allocated",
            status=True,
            reason="Success",
            message="Allocated 2 global IP(s)",
        )
        written = client.update_status({**obj, "status": status})
        assert conditions.is_condition_true(written["status"]["conditions"], "Allocated")

        bad = {"type": "Allocated", "status": "Maybe", "reason": "", "message": ""}
        with pytest.raises(ApiException) as caught:
            client.update_status({**written, "status": {"conditions": [bad]}})
        assert errors.is_invalid(caught.value)
        message = rest.status_message(caught.value)
        assert "status.conditions" in message, message


def test_an_empty_string_in_a_custom_resource_is_a_string_not_null(api_client: Any) -> None:
    """An empty condition message is stored as "" (the API server as built here,
    with scripts/patch-k8s.sh's kube-apiserver patch: unpatched, go-openapi took ""
    for null and refused the whole status: `must be of type string: "null"`)."""
    client = crud.ResourceClient(api_client, resources.GLOBAL_EGRESS_IPS)
    with temporary_namespace(api_client, "crd") as namespace:
        obj = client.create(
            {"metadata": {"name": "geip", "namespace": namespace}, "spec": {"numberOfIPs": 1}}
        )
        status: dict[str, Any] = {"conditions": []}
        conditions.set_condition(status["conditions"], type="Allocated", status=False,
                                 reason="Pending")
        written = client.update_status({**obj, "status": status})
        assert written["status"]["conditions"][0]["message"] == ""


def test_install_after_an_uninstall_waits_for_the_crd_being_deleted(api_client: Any) -> None:
    """`gnctl uninstall` then `gnctl join` at once: the old CRD is still terminating (its
    objects are being removed); install waits for it to go, then creates it anew."""
    crds.install_crds(api_client)
    definitions = crud.ResourceClient(api_client, resources.CUSTOM_RESOURCE_DEFINITIONS)
    name = f"{resources.GATEWAYS.plural}.{resources.GATEWAYS.group}"
    with temporary_namespace(api_client, "crd") as ns:
        crud.ResourceClient(api_client, resources.GATEWAYS).create(
            {"metadata": {"name": "gw", "namespace": ns}})
        old_uid = definitions.get(name)["metadata"]["uid"]
        definitions.delete(name)
        assert definitions.get(name)["metadata"].get("deletionTimestamp")  # terminating
        crds.install_crds(api_client)
    current = definitions.get(name)
    assert current["metadata"]["uid"] != old_uid
    assert not current["metadata"].get("deletionTimestamp")


# --- MCS v1beta1 and v1alpha1 --------------------------------------------------------------

MCS_CRDS = (resources.SERVICE_EXPORTS, resources.SERVICE_IMPORTS)


def etcd_value(endpoint: str, key: str) -> dict[str, Any]:
    """The object stored under ``key`` in etcd (v3 HTTP gateway; custom objects are JSON)."""
    request = urllib.request.Request(
        endpoint + "/v3/kv/range",
        data=json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        kvs = json.loads(response.read()).get("kvs") or []
    assert len(kvs) == 1, f"etcd has no {key}"
    stored: dict[str, Any] = json.loads(base64.b64decode(kvs[0]["value"]))
    return stored


def stored_api_version(cp: ControlPlane, resource: resources.Resource, ns: str, name: str
                       ) -> str:
    key = f"/registry/{resource.group}/{resource.plural}/{ns}/{name}"
    return str(etcd_value(cp.etcd_endpoint, key)["apiVersion"])


def stored_versions(api_client: Any, resource: resources.Resource) -> list[str]:
    crd = crud.ResourceClient(api_client, resources.CUSTOM_RESOURCE_DEFINITIONS).get(
        resource.qualified_name)
    return list(crd["status"]["storedVersions"])


def test_mcs_crds_serve_v1beta1_and_v1alpha1(api_client: Any) -> None:
    """One object, read and written at either version; v1beta1 fields kept at both."""
    assert discovery.group_versions(api_client, resources.MCS_GROUP) == ["v1beta1", "v1alpha1"]
    assert discovery.mcs_version(api_client) == resources.MCS_VERSION
    beta = crud.ResourceClient(api_client, resources.SERVICE_IMPORTS)
    alpha = crud.ResourceClient(api_client, resources.SERVICE_IMPORTS.with_version("v1alpha1"))
    with temporary_namespace(api_client, "crd") as namespace:
        created = alpha.create({
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"type": "ClusterSetIP", "ports": [{"port": 80}],
                     "ipFamilies": ["IPv4"], "sessionAffinity": "ClientIP"},
        })
        assert created["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
        read = beta.get("web", namespace=namespace)
        assert read["apiVersion"] == "multicluster.x-k8s.io/v1beta1"
        assert read["spec"]["ipFamilies"] == ["IPv4"]
        assert read["spec"]["sessionAffinity"] == "ClientIP"
    for resource in MCS_CRDS:
        assert stored_versions(api_client, resource) == ["v1beta1"]


def test_service_import_v1beta1_fields_are_validated(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.SERVICE_IMPORTS)
    with temporary_namespace(api_client, "crd") as namespace:
        good: dict[str, Any] = {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "type": "ClusterSetIP", "ports": [{"port": 80}],
                "ips": ["242.0.0.1", "fd00::1"], "ipFamilies": ["IPv4", "IPv6"],
                "internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            },
        }
        created = client.create(good)
        assert created["spec"] == good["spec"]
        created["status"] = {"clusters": [{"cluster": "c1"}], "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "imported",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        assert client.update_status(created)["status"]["conditions"][0]["type"] == "Ready"
        for number, (field, value, expected) in enumerate([
            ("ips", ["242.0.0.1", "242.0.0.2", "242.0.0.3"], "should have at most 2 items"),
            ("ipFamilies", ["IPv5"], "Unsupported value"),
            ("internalTrafficPolicy", "Nearby", "Unsupported value"),
            ("sessionAffinity", "Cookie", "Unsupported value"),
            ("sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 0}},
             "greater than or equal to 1"),
        ]):
            bad = {"metadata": {"name": f"bad-{number}", "namespace": namespace},
                   "spec": {**good["spec"], field: value}}
            message = rejected(client, bad)
            assert f"spec.{field}" in message and expected in message, message


def test_service_export_v1beta1_fields_are_validated(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.SERVICE_EXPORTS)
    with temporary_namespace(api_client, "crd") as namespace:
        spec = {"exportedLabels": {"tier": "web"}, "exportedAnnotations": {"owner": "team-a"}}
        created = client.create({"metadata": {"name": "web", "namespace": namespace},
                                 "spec": spec})
        assert created["spec"] == spec
        message = rejected(client, {"metadata": {"name": "bad", "namespace": namespace},
                                    "spec": {"exportedLabels": {"tier": 3}}})
        assert "spec.exportedLabels.tier" in message and "string" in message, message
        # status.conditions are metav1.Conditions: every field there, reasons CamelCase
        # (joined by commas for several conflicts).
        good_condition = {"type": "Conflict", "status": "True",
                          "reason": "PortConflict,LabelsConflict", "message": "ports differ",
                          "lastTransitionTime": "2026-01-01T00:00:00Z"}
        created = client.update_status({**created, "status": {"conditions": [good_condition]}})
        for broken, field in (({**good_condition, "reason": "port conflict"}, "reason"),
                              ({k: v for k, v in good_condition.items()
                                if k != "lastTransitionTime"}, "lastTransitionTime")):
            with pytest.raises(ApiException) as caught:
                client.update_status({**created, "status": {"conditions": [broken]}})
            assert errors.is_invalid(caught.value)
            message = rest.status_message(caught.value)
            assert f"status.conditions.{field}" in message, message


def test_install_migrates_objects_an_older_release_stored_at_v1alpha1(
        bare_control_plane: ControlPlane) -> None:
    """An older release's CRDs stored v1alpha1; installing ours re-stores every object at
    v1beta1 (as etcd shows), keeps its spec and status, and cuts storedVersions down."""
    api = new_api_client(bare_control_plane.kubeconfig)
    try:
        testing.install_legacy_mcs_crds(api)
        assert discovery.mcs_version(api) == "v1alpha1"
        alpha_exports = crud.ResourceClient(api, resources.SERVICE_EXPORTS.with_version("v1alpha1"))
        alpha_imports = crud.ResourceClient(api, resources.SERVICE_IMPORTS.with_version("v1alpha1"))
        with temporary_namespace(api, "mig") as ns:
            export = alpha_exports.create({"metadata": {"name": "web", "namespace": ns}})
            export["status"] = {"conditions": [
                {"type": "Valid", "status": "True", "reason": "Valid", "message": "valid",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            alpha_exports.update_status(export)
            for name in ("web", "db"):
                alpha_imports.create({"metadata": {"name": name, "namespace": ns},
                                      "spec": {"type": "Headless", "ports": [{"port": 5432}]}})
            for resource in MCS_CRDS:
                assert stored_versions(api, resource) == ["v1alpha1"]
            assert stored_api_version(bare_control_plane, resources.SERVICE_IMPORTS, ns,
                                      "db") == "multicluster.x-k8s.io/v1alpha1"

            crds.install_crds(api)

            for resource in MCS_CRDS:
                assert stored_versions(api, resource) == ["v1beta1"]
            for resource, name in ((resources.SERVICE_EXPORTS, "web"),
                                   (resources.SERVICE_IMPORTS, "web"),
                                   (resources.SERVICE_IMPORTS, "db")):
                assert stored_api_version(bare_control_plane, resource, ns, name) == \
                    resources.MCS_API_VERSION, (resource.kind, name)
            assert discovery.mcs_version(api) == "v1beta1"
            beta_exports = crud.ResourceClient(api, resources.SERVICE_EXPORTS)
            migrated = beta_exports.get("web", namespace=ns)
            assert migrated["status"]["conditions"][0]["reason"] == "Valid"
            beta_imports = crud.ResourceClient(api, resources.SERVICE_IMPORTS)
            assert beta_imports.get("db", namespace=ns)["spec"]["ports"] == [{"port": 5432}]

            # Idempotent: a second install re-writes nothing.
            versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                        for o in beta_imports.list(namespace=ns).items}
            crds.install_crds(api)
            assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                    for o in beta_imports.list(namespace=ns).items} == versions
            assert migration.needs_migration(crud.ResourceClient(
                api, resources.CUSTOM_RESOURCE_DEFINITIONS).get(
                    resources.SERVICE_IMPORTS.qualified_name)) is False
    finally:
        api.close()
