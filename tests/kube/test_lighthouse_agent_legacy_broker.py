"""The Lighthouse agent against a Broker still at the MCS API v1alpha1 (not upgraded yet).

A real clusterset (``lab.apiclusterset``: Broker + east + west, each etcd +
kube-apiserver 1.20) whose Broker has an older release's MCS CRDs, serving only
v1alpha1; the members have ours (v1beta1 stored). The agents must discover that,
publish at v1alpha1 without the fields that version lacks (the server prunes them),
and still import at v1beta1 in the members.

Address conventions:

    cluster  global CIDR      pod CIDR        service CIDR
    east     242.0.0.0/16     10.244.0.0/16   10.96.0.0/16
    west     242.1.0.0/16     10.244.0.0/16   10.96.0.0/16
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kube import discovery, names, resources
from kube.testing import ReconcileRecorder, await_condition
from lab.apiclusterset import ApiCluster, ApiClusterset, ClustersetConfig
from lighthouse.agent import reasons as r

pytestmark = pytest.mark.kube

GLOBAL_CIDRS = {"east": "242.0.0.0/16", "west": "242.1.0.0/16"}
TIMEOUT = 20.0
LEGACY_IMPORTS = resources.SERVICE_IMPORTS.with_version("v1alpha1")

JSON = dict[str, Any]


@pytest.fixture(scope="module")
def clusterset() -> Iterator[ApiClusterset[ApiCluster]]:
    config = ClustersetConfig(members=GLOBAL_CIDRS, broker_namespace=names.BROKER_NAMESPACE,
                              legacy_broker_mcs=True)
    with ApiClusterset(config, ApiCluster) as started:
        yield started


def test_the_broker_serves_only_v1alpha1_and_the_members_v1beta1(
        clusterset: ApiClusterset[ApiCluster]) -> None:
    assert discovery.mcs_version(clusterset.broker_api) == "v1alpha1"
    assert discovery.mcs_version(clusterset["east"].api) == "v1beta1"


def test_exports_reach_an_old_broker_at_v1alpha1_and_are_imported_at_v1beta1(
        clusterset: ApiClusterset[ApiCluster]) -> None:
    east, west = clusterset["east"], clusterset["west"]
    with clusterset.namespace("lhold") as ns:
        west.service(ns, "web", sessionAffinity="ClientIP",
                     sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
        west.export(ns, "web", exportedLabels={"tier": "web"})

        def published() -> JSON | None:
            found = clusterset.broker_objects(LEGACY_IMPORTS, ns, "web", "west")
            return found[0] if found else None

        si = await_condition(published, timeout=TIMEOUT, message="west's Broker ServiceImport")
        assert si["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
        assert si["spec"]["sessionAffinity"] == "ClientIP"
        assert "ipFamilies" not in si["spec"]
        assert si["metadata"]["labels"]["tier"] == "web"

        aggregated = await_condition(
            lambda: (obj if (obj := east.local_import(ns, "web")) and obj.get("status")
                     else None),
            timeout=TIMEOUT, message="east's aggregated ServiceImport")
        assert aggregated["apiVersion"] == resources.MCS_API_VERSION
        assert aggregated["spec"]["sessionAffinityConfig"] == {
            "clientIP": {"timeoutSeconds": 60}}
        assert aggregated["metadata"]["labels"]["tier"] == "web"
        west_export = west.client(resources.SERVICE_EXPORTS).get("web", namespace=ns)
        assert any(c["type"] == r.READY and c["reason"] == r.EXPORTED
                   for c in west_export["status"]["conditions"])

        # Another reconcile of the export leaves the Broker object as it is.
        version = si["metadata"]["resourceVersion"]
        assert west.agent is not None and west.agent.exporter is not None
        with ReconcileRecorder(west.agent.exporter) as recorder:
            west.client(resources.SERVICES).patch(
                "web", {"metadata": {"labels": {"touched": "yes"}}}, namespace=ns)
            recorder.await_reconciled(f"{ns}/web", timeout=TIMEOUT)
        again = published()
        assert again is not None and again["metadata"]["resourceVersion"] == version
