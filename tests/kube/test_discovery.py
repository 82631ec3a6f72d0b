"""kube.discovery against the real 1.20 API server.

1.20 serves EndpointSlice only as discovery.k8s.io/v1beta1; Globalnet must discover that
rather than assume v1, and the discovered resource must actually work. Likewise a
Broker an older release installed serves the MCS API only as v1alpha1.
"""

from __future__ import annotations

from typing import Any

import pytest

from kube import crud, discovery, resources, testing
from kube.client import new_api_client
from kube.testing import temporary_namespace
from lab.controlplane import ControlPlane

pytestmark = pytest.mark.kube


def test_server_version_is_1_20(api_client: Any) -> None:
    version = discovery.server_version(api_client)
    assert (version.major, version.minor) == (1, 20)
    assert version.git_version.startswith("v1.20.")
    assert version.at_least(1, 19) and not version.at_least(1, 21)


def test_endpointslice_is_v1beta1_on_1_20(api_client: Any) -> None:
    assert discovery.endpointslice_api_version(api_client) == "discovery.k8s.io/v1beta1"
    assert discovery.endpointslices(api_client) == resources.ENDPOINTSLICES_V1BETA1
    assert discovery.group_versions(api_client, "discovery.k8s.io") == ["v1beta1"]


def test_discovered_endpointslice_resource_works(api_client: Any) -> None:
    slices = crud.ResourceClient(api_client, discovery.endpointslices(api_client))
    with temporary_namespace(api_client, "disc") as namespace:
        created = slices.create(
            {
                "metadata": {"name": "web-1", "namespace": namespace},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.5"]}],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            }
        )
        assert created["apiVersion"] == "discovery.k8s.io/v1beta1"
        assert slices.get("web-1", namespace=namespace)["endpoints"][0]["addresses"] == [
            "10.244.0.5"
        ]


def test_preferred_versions(api_client: Any) -> None:
    assert discovery.preferred_version(api_client, "coordination.k8s.io") == "v1"
    assert discovery.preferred_version(api_client, "") == "v1"
    assert discovery.preferred_version(api_client, "submariner.io") == "v1"
    assert discovery.preferred_version(api_client, resources.MCS_GROUP) == resources.MCS_VERSION
    assert discovery.preferred_version(api_client, "nothing.example.com") is None


def test_serves(api_client: Any) -> None:
    for resource in resources.CUSTOM_RESOURCES:
        assert discovery.serves(api_client, resource), resource.kind
    assert discovery.serves(api_client, resources.CONFIGMAPS)
    assert not discovery.serves(api_client, resources.ENDPOINTSLICES_V1)


def test_mcs_resources_at_v1beta1_where_served(api_client: Any) -> None:
    assert discovery.mcs_version(api_client) == "v1beta1"
    assert discovery.service_exports(api_client) == resources.SERVICE_EXPORTS
    assert discovery.service_imports(api_client) == resources.SERVICE_IMPORTS


def test_mcs_falls_back_to_v1alpha1_on_an_older_server(bare_control_plane: ControlPlane) -> None:
    """Without the MCS CRDs: a clear error; with an older release's: the v1alpha1 resources,
    same shape, that work for reads and writes."""
    api = new_api_client(bare_control_plane.kubeconfig)
    try:
        with pytest.raises(LookupError, match=r"serves no multicluster\.x-k8s\.io version"):
            discovery.mcs_version(api)
        testing.install_legacy_mcs_crds(api)
        testing.await_condition(lambda: discovery.mcs_version(api) == "v1alpha1",
                                message="v1alpha1 discovered")
        imports = discovery.service_imports(api)
        assert imports == resources.SERVICE_IMPORTS.with_version("v1alpha1")
        assert discovery.service_exports(api) == resources.SERVICE_EXPORTS.with_version(
            "v1alpha1")
        assert (imports.plural, imports.kind, imports.namespaced) == (
            resources.SERVICE_IMPORTS.plural, "ServiceImport", True)
        with temporary_namespace(api, "disc") as namespace:
            created = crud.ResourceClient(api, imports).create({
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"type": "ClusterSetIP", "ports": [{"port": 80}]}})
            assert created["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
            assert not discovery.serves(api, resources.SERVICE_IMPORTS)
    finally:
        api.close()
