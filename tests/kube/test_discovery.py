"""kube.discovery against the real 1.20 API server.

1.20 serves EndpointSlice only as discovery.k8s.io/v1beta1; Globalnet must discover that
rather than assume v1, and the discovered resource must actually work.
"""

from __future__ import annotations

from typing import Any

import pytest

from kube import crud, discovery, resources
from kube.testing import temporary_namespace

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
    assert discovery.preferred_version(api_client, "multicluster.x-k8s.io") == "v1alpha1"
    assert discovery.preferred_version(api_client, "nothing.example.com") is None


def test_serves(api_client: Any) -> None:
    for resource in resources.CUSTOM_RESOURCES:
        assert discovery.serves(api_client, resource), resource.kind
    assert discovery.serves(api_client, resources.CONFIGMAPS)
    assert not discovery.serves(api_client, resources.ENDPOINTSLICES_V1)
