"""kube.crud's generic CRUD on plain dicts, for a built-in kind and a custom resource.

Covers the calls controllers make: create, get, list (paginated), update with a stale
resourceVersion (409), merge and JSON patches, the status subresource, and delete.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kube import crud, errors, resources
from kube.testing import temporary_namespace

pytestmark = pytest.mark.kube


def test_configmap_lifecycle(api_client: Any) -> None:
    configmaps = crud.ResourceClient(api_client, resources.CONFIGMAPS)
    with temporary_namespace(api_client, "crud") as namespace:
        created = configmaps.create(
            {"metadata": {"name": "a", "namespace": namespace}, "data": {"k": "v"}}
        )
        assert created["apiVersion"] == "v1" and created["kind"] == "ConfigMap"
        assert configmaps.get("a", namespace=namespace)["data"] == {"k": "v"}
        with pytest.raises(ApiException) as exists:
            configmaps.create({"metadata": {"name": "a", "namespace": namespace}})
        assert errors.is_already_exists(exists.value)

        updated = configmaps.update({**created, "data": {"k": "v2"}})
        with pytest.raises(ApiException) as stale:
            configmaps.update({**created, "data": {"k": "v3"}})
        assert errors.is_conflict(stale.value), "the stale resourceVersion must be refused"

        patched = configmaps.patch("a", {"data": {"x": "y"}}, namespace=namespace)
        assert patched["data"] == {"k": "v2", "x": "y"}
        patched = configmaps.patch(
            "a",
            [{"op": "remove", "path": "/data/k"}],
            namespace=namespace,
            patch_type=crud.PatchType.JSON,
        )
        assert patched["data"] == {"x": "y"}
        assert int(patched["metadata"]["resourceVersion"]) > int(
            updated["metadata"]["resourceVersion"]
        )

        assert configmaps.delete_if_exists("a", namespace=namespace)
        assert not configmaps.delete_if_exists("a", namespace=namespace)
        assert configmaps.get_or_none("a", namespace=namespace) is None


def test_list_is_paginated_and_fills_kind(api_client: Any) -> None:
    configmaps = crud.ResourceClient(api_client, resources.CONFIGMAPS)
    with temporary_namespace(api_client, "crud") as namespace:
        for index in range(7):
            configmaps.create(
                {
                    "metadata": {
                        "name": f"cm-{index}",
                        "namespace": namespace,
                        "labels": {"odd": str(index % 2 == 1).lower()},
                    }
                }
            )
        listed = configmaps.list(namespace=namespace, page_size=3)
        assert sorted(o["metadata"]["name"] for o in listed.items) == [f"cm-{i}" for i in range(7)]
        assert all(o["kind"] == "ConfigMap" and o["apiVersion"] == "v1" for o in listed.items)
        assert int(listed.resource_version) > 0
        odd = configmaps.list(namespace=namespace, label_selector="odd=true")
        assert sorted(o["metadata"]["name"] for o in odd.items) == ["cm-1", "cm-3", "cm-5"]


def test_custom_resource_with_status_subresource(api_client: Any) -> None:
    ingress_ips = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    with temporary_namespace(api_client, "crud") as namespace:
        created = ingress_ips.create(
            {
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"target": "ClusterIPService", "serviceRef": {"name": "web"}},
                "status": {"allocatedIP": "ignored on create"},
            }
        )
        assert "status" not in created, "status is only written through /status"
        with_status = ingress_ips.update_status(
            {**created, "status": {"allocatedIP": "242.0.255.254"}}
        )
        assert with_status["status"]["allocatedIP"] == "242.0.255.254"
        patched = ingress_ips.patch_status(
            "web", {"status": {"allocatedIP": "242.0.255.253"}}, namespace=namespace
        )
        assert patched["status"]["allocatedIP"] == "242.0.255.253"
        assert patched["metadata"]["generation"] == 1, "status writes do not bump generation"
        ingress_ips.delete("web", namespace=namespace)
        assert ingress_ips.get_or_none("web", namespace=namespace) is None


def test_cluster_scoped_custom_resource(api_client: Any) -> None:
    cluster_egress = crud.ResourceClient(api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    name = "crud-test.submariner.io"
    cluster_egress.create({"metadata": {"name": name}, "spec": {"numGlobalIPs": 8}})
    try:
        assert cluster_egress.get(name)["spec"] == {"numGlobalIPs": 8}
        names = [o["metadata"]["name"] for o in cluster_egress.list().items]
        assert name in names
    finally:
        cluster_egress.delete(name)


def test_create_if_absent_and_ensure_namespace(api_client: Any) -> None:
    with temporary_namespace(api_client) as ns:
        cms = crud.ResourceClient(api_client, resources.CONFIGMAPS)
        body = {"metadata": {"name": "once", "namespace": ns}, "data": {"a": "1"}}
        assert cms.create_if_absent(body) is not None
        assert cms.create_if_absent({**body, "data": {"a": "2"}}) is None  # kept as it was
        assert cms.get("once", namespace=ns)["data"] == {"a": "1"}
        crud.ensure_namespace(api_client, ns)  # exists: nothing happens
    fresh = f"{ns}-x"
    namespaces = crud.ResourceClient(api_client, resources.NAMESPACES)
    crud.ensure_namespace(api_client, fresh)
    assert namespaces.get_or_none(fresh) is not None
    namespaces.delete_if_exists(fresh)


def test_delete_if_exists_with_a_uid_deletes_only_that_object(api_client: Any) -> None:
    """A delete from a cached copy must not hit a successor created under the same name;
    the server refuses it with 409, which ``conflict_is_gone`` counts as gone."""
    cms = crud.ResourceClient(api_client, resources.CONFIGMAPS)
    with temporary_namespace(api_client, "crud") as ns:
        body = {"metadata": {"name": "same", "namespace": ns}}
        first = cms.create(body)
        cms.delete("same", namespace=ns)
        successor = cms.create(body)
        stale_uid = first["metadata"]["uid"]
        with pytest.raises(ApiException) as refused:
            cms.delete_if_exists("same", namespace=ns, uid=stale_uid)
        assert errors.is_conflict(refused.value)
        assert not cms.delete_if_exists("same", namespace=ns, uid=stale_uid,
                                        conflict_is_gone=True)
        assert cms.get("same", namespace=ns)["metadata"]["uid"] == successor["metadata"]["uid"]
        assert cms.delete_if_exists("same", namespace=ns, uid=successor["metadata"]["uid"])
        assert not cms.delete_if_exists("same", namespace=ns, uid=successor["metadata"]["uid"])
