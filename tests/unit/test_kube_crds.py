"""The CRD manifests shipped in kube/crds/, checked without an API server.

The API server checks the same things on install (tests/kube/test_crds.py); these checks
fail faster and with a clearer message: every manifest is an apiextensions.k8s.io/v1
CRD whose schema is structural, and names match ``kube.resources``.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import pytest

from kube import crds, resources

MANIFESTS = crds.load_crd_manifests()
BY_KIND = {manifest["spec"]["names"]["kind"]: manifest for manifest in MANIFESTS}


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = BY_KIND[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    found = [(path or ".", node)]
    for name, child in (node.get("properties") or {}).items():
        found.extend(walk(child, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        found.extend(walk(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        found.extend(walk(node["additionalProperties"], f"{path}{{}}"))
    return found


def test_one_file_per_crd_shipped_as_package_data() -> None:
    files = [
        entry.name
        for entry in importlib.resources.files("kube.crds").iterdir()
        if entry.name.endswith(".yaml")
    ]
    assert len(files) == len(MANIFESTS) == len(resources.CUSTOM_RESOURCES) == 8


@pytest.mark.parametrize("resource", resources.CUSTOM_RESOURCES, ids=lambda r: r.kind)
def test_manifest_matches_resource_constant(resource: resources.Resource) -> None:
    manifest = BY_KIND[resource.kind]
    spec = manifest["spec"]
    assert manifest["apiVersion"] == "apiextensions.k8s.io/v1"
    assert manifest["kind"] == "CustomResourceDefinition"
    assert manifest["metadata"]["name"] == resource.qualified_name
    assert spec["group"] == resource.group
    assert spec["names"]["plural"] == resource.plural
    assert spec["scope"] == ("Namespaced" if resource.namespaced else "Cluster")
    legacy = resources.MCS_LEGACY_VERSIONS if resource.group == resources.MCS_GROUP else ()
    assert [v["name"] for v in spec["versions"]] == [resource.version, *legacy]
    assert [v["storage"] for v in spec["versions"]] == [True] + [False] * len(legacy)
    assert all(v["served"] for v in spec["versions"])


@pytest.mark.parametrize("resource", [resources.SERVICE_EXPORTS, resources.SERVICE_IMPORTS],
                         ids=lambda r: r.kind)
def test_mcs_crds_store_v1beta1_and_serve_v1alpha1_with_one_schema(
        resource: resources.Resource) -> None:
    versions = {v["name"]: v for v in BY_KIND[resource.kind]["spec"]["versions"]}
    assert resources.MCS_VERSION == resource.version == "v1beta1"
    assert resources.MCS_LEGACY_VERSIONS == ("v1alpha1",)
    assert versions["v1beta1"]["storage"] and not versions["v1alpha1"]["storage"]
    for field in ("schema", "subresources", "additionalPrinterColumns"):
        assert versions["v1alpha1"][field] == versions["v1beta1"][field], field
        # Equal, not shared: a rendered manifest has no YAML anchors, an edit no echo.
        assert versions["v1alpha1"][field] is not versions["v1beta1"][field], field


def test_service_import_v1beta1_fields() -> None:
    root = schema_of("ServiceImport")["properties"]
    spec = root["spec"]["properties"]
    assert spec["ips"]["maxItems"] == 2 and spec["ips"]["items"]["type"] == "string"
    assert spec["ipFamilies"]["maxItems"] == 2
    assert spec["ipFamilies"]["items"]["enum"] == ["IPv4", "IPv6"]
    assert spec["internalTrafficPolicy"]["enum"] == ["Cluster", "Local"]
    assert spec["trafficDistribution"]["type"] == "string"
    assert spec["sessionAffinity"]["enum"] == ["ClientIP", "None"]
    timeout = spec["sessionAffinityConfig"]["properties"]["clientIP"]["properties"][
        "timeoutSeconds"]
    assert (timeout["minimum"], timeout["maximum"]) == (1, 86400)
    conditions = root["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_service_export_v1beta1_fields() -> None:
    root = schema_of("ServiceExport")["properties"]
    for field in ("exportedLabels", "exportedAnnotations"):
        node = root["spec"]["properties"][field]
        assert node == {**node, "type": "object", "additionalProperties": {"type": "string"}}
    assert root["status"]["properties"]["conditions"]["items"]["required"] == [
        "type", "status", "lastTransitionTime", "reason", "message"]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m["spec"]["names"]["kind"])
def test_schema_is_structural(manifest: dict[str, Any]) -> None:
    version = manifest["spec"]["versions"][0]
    for path, node in walk(version["schema"]["openAPIV3Schema"]):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for required in node.get("required") or []:
            assert required in (node.get("properties") or {}), f"{path} requires {required}"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required") or []), path
    has_status = "status" in version["schema"]["openAPIV3Schema"]["properties"]
    if "subresources" in version:
        assert has_status and version["subresources"] == {"status": {}}
    for column in version.get("additionalPrinterColumns") or []:
        assert column["jsonPath"].startswith("."), column


def test_short_names_follow_upstream() -> None:
    short = {kind: m["spec"]["names"].get("shortNames") for kind, m in BY_KIND.items()}
    assert short["ClusterGlobalEgressIP"] == ["cgeip"]
    assert short["GlobalEgressIP"] == ["geip"]
    assert short["GlobalIngressIP"] == ["giip"]
    assert short["ServiceExport"] == ["svcex"]
    assert short["ServiceImport"] == ["svcim"]


def test_global_ip_counts_are_bounded() -> None:
    cgeip = schema_of("ClusterGlobalEgressIP")["properties"]["spec"]["properties"]
    geip = schema_of("GlobalEgressIP")["properties"]["spec"]["properties"]
    for field in (cgeip["numGlobalIPs"], geip["numberOfIPs"]):
        assert field == field | {"type": "integer", "minimum": 0, "maximum": 20}
    assert geip["podSelector"]["type"] == "object"


def test_ingress_targets() -> None:
    spec = schema_of("GlobalIngressIP")["properties"]["spec"]
    assert spec["required"] == ["target"]
    assert spec["properties"]["target"]["enum"] == [
        "ClusterIPService",
        "HeadlessServicePod",
        "HeadlessServiceEndpoints",
    ]


def test_status_subresources() -> None:
    with_status = {
        kind for kind, m in BY_KIND.items() if "subresources" in m["spec"]["versions"][0]
    }
    assert with_status == {
        "Gateway",
        "ClusterGlobalEgressIP",
        "GlobalEgressIP",
        "GlobalIngressIP",
        "ServiceExport",
        "ServiceImport",
    }
