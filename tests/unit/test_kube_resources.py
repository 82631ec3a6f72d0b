"""kube.resources paths, kube.store keys, the informer's stream splitting and the leader
election config checks: the pure parts of the Kubernetes layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kube import informer, leaderelection, resources, store


def test_paths() -> None:
    assert resources.CONFIGMAPS.path() == "/api/v1/configmaps"
    assert resources.CONFIGMAPS.path(namespace="ns") == "/api/v1/namespaces/ns/configmaps"
    assert resources.PODS.path(namespace="ns", name="p", subresource="status") == (
        "/api/v1/namespaces/ns/pods/p/status"
    )
    assert resources.NODES.path(name="n1") == "/api/v1/nodes/n1"
    assert resources.CLUSTER_GLOBAL_EGRESS_IPS.path(name="cluster-egress.submariner.io") == (
        "/apis/submariner.io/v1/clusterglobalegressips/cluster-egress.submariner.io"
    )
    assert resources.LEASES.path(namespace="kube-system", name="x") == (
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"
    )


def test_path_errors() -> None:
    with pytest.raises(ValueError, match="cluster-scoped"):
        resources.NODES.path(namespace="ns")
    with pytest.raises(ValueError, match="needs a namespace"):
        resources.PODS.path(name="p")
    with pytest.raises(ValueError, match="subresource"):
        resources.PODS.path(namespace="ns", subresource="status")


def test_names_and_versions() -> None:
    assert resources.SERVICES.api_version == "v1"
    assert resources.GLOBAL_INGRESS_IPS.api_version == "submariner.io/v1"
    assert resources.SERVICE_IMPORTS.qualified_name == "serviceimports.multicluster.x-k8s.io"
    assert resources.ENDPOINTSLICES_V1.api_version == "discovery.k8s.io/v1"


def test_object_keys() -> None:
    namespaced = {"metadata": {"namespace": "ns", "name": "a"}}
    cluster = {"metadata": {"name": "n1"}}
    assert store.object_key(namespaced) == "ns/a"
    assert store.object_key(cluster) == "n1"
    assert store.split_key("ns/a") == ("ns", "a")
    assert store.split_key("n1") == (None, "n1")
    with pytest.raises(ValueError):
        store.object_key({"metadata": {}})


def test_store_replace_returns_previous_content() -> None:
    cache = store.Store()
    a = {"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "1"}}
    b = {"metadata": {"namespace": "ns", "name": "b", "resourceVersion": "2"}}
    assert cache.upsert(a) is None
    assert cache.upsert(a) is a
    old = cache.replace([b])
    assert old == {"ns/a": a}
    assert cache.keys() == ["ns/b"] and "ns/b" in cache and len(cache) == 1
    assert cache.delete("ns/b") is b
    assert cache.delete("ns/b") is None


class FakeChunkedResponse:
    chunked = True

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, amt: int | None = None, decode_content: bool = True) -> Iterator[bytes]:
        yield from self.chunks


def test_watch_lines_are_split_across_chunk_boundaries() -> None:
    chunks = [b'{"type":"ADD', b'ED"}\n{"type":"MODIFIED"}\n{"ty', b'pe":"DELETED"}\n']
    lines = list(informer._iter_lines(FakeChunkedResponse(chunks)))  # type: ignore[arg-type]
    assert lines == ['{"type":"ADDED"}', '{"type":"MODIFIED"}', '{"type":"DELETED"}']


def test_torn_last_event_is_an_error() -> None:
    with pytest.raises(informer._WatchError):
        list(informer._iter_lines(FakeChunkedResponse([b'{"type":"ADDED"}\n{"ty'])))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("durations", "message"),
    [
        ((10.0, 10.0, 2.0), "lease_duration must be greater"),
        ((15.0, 2.0, 2.0), "renew_deadline must be greater"),
    ],
)
def test_leader_election_timing_is_checked(
    durations: tuple[float, float, float], message: str
) -> None:
    lease, renew, retry = durations
    with pytest.raises(ValueError, match=message):
        leaderelection.LeaderElectionConfig(
            name="l",
            namespace="ns",
            identity="me",
            lease_duration=lease,
            renew_deadline=renew,
            retry_period=retry,
        )


def test_leader_election_needs_identity() -> None:
    with pytest.raises(ValueError, match="identity"):
        leaderelection.LeaderElectionConfig(name="l", namespace="ns", identity="")
