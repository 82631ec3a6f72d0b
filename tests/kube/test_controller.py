"""kube.controller.write_status against a real API server: the one conflict policy.

Every case starts from a cached copy, as a controller does. A copy made stale by
another writer meets a real 409 and is re-read; the other writer's change survives.
Objects are GlobalIngressIPs (a custom resource with a status subresource) in a
temporary namespace; addresses 242.90.0.x.
"""

from __future__ import annotations

from typing import Any

import pytest

from kube import conditions, controller, crud, resources
from kube.testing import temporary_namespace

pytestmark = pytest.mark.kube

JSON = dict[str, Any]


def giip(name: str, ns: str) -> JSON:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"target": "ClusterIPService", "serviceRef": {"name": name}}}


def set_field(field: str, value: str) -> Any:
    """A mutation that sets one status field; changes nothing when already set."""
    def mutate(obj: JSON) -> bool:
        status = obj.setdefault("status", {})
        if status.get(field) == value:
            return False
        status[field] = value
        return True
    return mutate


def allocated(obj: JSON) -> bool:
    """A mutation that sets Allocated=True (what a Globalnet controller writes)."""
    conds = obj.setdefault("status", {}).setdefault("conditions", [])
    return conditions.set_condition(conds, type="Allocated", status=True, reason="Success",
                                    message="Allocated global IP 242.90.0.1")


def test_a_stale_copy_is_reread_and_the_change_applied_to_the_fresh_one(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    with temporary_namespace(api_client, "ctl") as ns:
        cached = client.create(giip("web", ns))
        # Another writer moves the object on: the cached resourceVersion is stale now.
        client.update_status({**cached, "status": {"allocatedIP": "242.90.0.1"}})
        assert controller.write_status(client, cached, allocated)
        status = client.get("web", namespace=ns)["status"]
        assert status["allocatedIP"] == "242.90.0.1", "the other writer's change was lost"
        assert [(c["type"], c["status"]) for c in status["conditions"]] == [("Allocated", "True")]


def test_nothing_is_written_when_the_mutation_changes_nothing(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    with temporary_namespace(api_client, "ctl") as ns:
        cached = client.create(giip("web", ns))
        written = client.update_status({**cached, "status": {"allocatedIP": "242.90.0.2"}})
        assert not controller.write_status(client, written, set_field("allocatedIP", "242.90.0.2"))
        after = client.get("web", namespace=ns)
        assert after["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_an_object_that_is_gone_has_no_status_to_write(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    with temporary_namespace(api_client, "ctl") as ns:
        cached = client.create(giip("web", ns))
        client.delete("web", namespace=ns)
        assert not controller.write_status(client, cached, set_field("allocatedIP", "242.90.0.3"))
        assert client.get_or_none("web", namespace=ns) is None
