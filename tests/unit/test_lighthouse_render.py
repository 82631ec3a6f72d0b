"""lighthouse.agent.render: the ServiceImports the agent writes, read back.

Address conventions: global IPs 242.1.0.0/16 (cluster "west"). What is written at
v1beta1 must read back as the same values (the aggregation works on what the Broker
holds), and an exported annotation taken out of the export must go on the next update.
"""

from __future__ import annotations

import dataclasses

from kube import names, resources
from lighthouse.agent import reasons as r
from lighthouse.agent import render
from lighthouse.agent.aggregate import aggregate
from lighthouse.agent.base import _merged
from lighthouse.agent.model import ClusterImport, Port, Properties, Publication

HTTP = Port(name="http", port=80)
PROPS = Properties(session_affinity="ClientIP", session_affinity_timeout=300,
                   ip_families=("IPv4",), internal_traffic_policy="Local",
                   traffic_distribution="PreferClose", labels=(("tier", "web"),),
                   annotations=(("owner", "team-a"),), distribution=r.BALANCED)


def publication(props: Properties = PROPS) -> Publication:
    return Publication(service_type=r.CLUSTER_SET_IP, ports=(HTTP,), ips=("242.1.0.5",),
                       endpoints=(), slice_ports=(HTTP,), exported_at="2024-05-01T00:00:00Z",
                       properties=props)


def broker_import(props: Properties = PROPS) -> dict[str, object]:
    return render.service_import(name="web-shop-west", namespace="member-west", cluster="west",
                                 source_namespace="shop", service="web",
                                 publication=publication(props))


def test_broker_service_import_carries_every_v1beta1_field() -> None:
    obj = broker_import()
    assert obj["apiVersion"] == "multicluster.x-k8s.io/v1beta1" == resources.MCS_API_VERSION
    assert obj["spec"] == {
        "type": "ClusterSetIP", "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        "ips": ["242.1.0.5"], "ipFamilies": ["IPv4"], "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}},
        "internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose",
    }
    meta = obj["metadata"]
    assert meta["labels"]["tier"] == "web"
    assert meta["labels"][names.SOURCE_CLUSTER_LABEL] == "west"
    assert meta["annotations"]["owner"] == "team-a"
    assert meta["annotations"][names.EXPORTED_ANNOTATIONS_ANNOTATION] == "owner"
    assert meta["annotations"][names.TRAFFIC_DISTRIBUTION_ANNOTATION] == r.BALANCED


def test_an_older_brokers_version_is_written_when_asked() -> None:
    obj = render.service_import(name="w", namespace="m", cluster="west", source_namespace="shop",
                                service="web", publication=publication(),
                                api_version="multicluster.x-k8s.io/v1alpha1")
    assert obj["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
    # Fields v1alpha1 lacks are left out, so the pruned object compares equal to ours.
    assert not set(obj["spec"]) & {"ipFamilies", "internalTrafficPolicy", "trafficDistribution"}
    assert obj["spec"]["sessionAffinity"] == "ClientIP"


def test_what_is_written_reads_back_the_same() -> None:
    read = render.cluster_import_of(broker_import())
    assert read == ClusterImport(cluster="west", service_type=r.CLUSTER_SET_IP, ports=(HTTP,),
                                 exported_at="2024-05-01T00:00:00Z", properties=PROPS)


def test_a_v1alpha1_broker_that_dropped_the_new_fields_reads_as_unset() -> None:
    obj = broker_import()
    obj["spec"] = {"type": "ClusterSetIP", "ports": obj["spec"]["ports"]}  # pruned
    read = render.cluster_import_of(obj)
    assert read is not None
    # Labels and annotations are metadata, which no server prunes.
    assert read.properties == Properties(labels=(("tier", "web"),),
                                         annotations=(("owner", "team-a"),),
                                         distribution=r.BALANCED)


def test_the_aggregated_import_shows_the_precedents_properties_and_ready() -> None:
    agg = aggregate([render.cluster_import_of(broker_import())])  # type: ignore[list-item]
    assert agg is not None
    obj = render.aggregated_service_import(namespace="shop", name="web", agg=agg, ready=False)
    assert "ips" not in obj["spec"]  # no ClusterSetIP VIP yet
    assert obj["spec"]["sessionAffinity"] == "ClientIP"
    assert obj["metadata"]["labels"]["tier"] == "web"
    assert obj["metadata"]["annotations"]["owner"] == "team-a"
    (ready,) = obj["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == (r.READY, "False", r.PENDING)
    with_vip = render.aggregated_service_import(
        namespace="shop", name="web", agg=dataclasses.replace(agg, ips=("242.0.255.1",)))
    assert with_vip["spec"]["ips"] == ["242.0.255.1"]
    assert with_vip["status"]["conditions"][0]["reason"] == r.REASON_READY


def test_set_import_status_changes_only_what_differs() -> None:
    agg = aggregate([render.cluster_import_of(broker_import())])  # type: ignore[list-item]
    assert agg is not None
    desired = render.aggregated_service_import(namespace="shop", name="web", agg=agg)
    current: dict[str, object] = {"metadata": {"name": "web"}}
    assert render.set_import_status(current, desired)
    assert not render.set_import_status(current, desired)
    assert render.set_import_status(current, render.aggregated_service_import(
        namespace="shop", name="web", agg=agg, ready=False))


def test_an_annotation_taken_out_of_the_export_goes_and_others_stay() -> None:
    existing = broker_import()
    existing["metadata"]["annotations"]["someone.else/note"] = "kept"  # type: ignore[index]
    desired = broker_import(Properties(annotations=(("team", "b"),)))
    merged = _merged(existing, desired, ("spec",))
    annotations = merged["metadata"]["annotations"]
    assert "owner" not in annotations
    assert annotations["team"] == "b" and annotations["someone.else/note"] == "kept"
    assert names.TRAFFIC_DISTRIBUTION_ANNOTATION not in annotations  # ours, unwanted now
    assert render.import_content(merged) == render.import_content(desired)
    assert render.import_content(existing) != render.import_content(desired)
