"""The CRDs from kube/crds/ as the real API server enforces them.

Validation must happen in the API server (422 with its own message), so a malformed
object never reaches a controller: out-of-range IP counts, wrong types, unknown targets.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kube import conditions, crds, crud, errors, resources, rest
from kube.testing import temporary_namespace

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
        two_ips = {**good, "spec": {**good["spec"], "ips": ["242.0.0.1", "242.0.0.2"]}}
        two_ips["metadata"] = {"name": "two-ips", "namespace": namespace}
        assert "spec.ips" in rejected(client, two_ips)


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
