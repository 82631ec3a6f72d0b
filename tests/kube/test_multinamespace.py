"""kube.multinamespace against the real API server: one resource across the member
namespaces the Broker's Cluster objects name, changing while it runs.

The session's API server is the Broker: a temporary Broker namespace, members
joined as ``gnctl join`` does on the Broker (``kube.testing.broker_member``: the
member namespace and the Cluster object). Objects are ConfigMaps named ``cm-<n>``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kube import crud, names, resources
from kube.informers import Index, InformerSet
from kube.multinamespace import MultiNamespaceInformer
from kube.store import JSON
from kube.testing import (
    await_condition,
    broker_member,
    cluster_object,
    configmap,
    temporary_namespace,
)

pytestmark = pytest.mark.kube


class Recorder:
    """Handlers that remember every event as (kind, "namespace/name"), and the threads."""

    def __init__(self, inf: MultiNamespaceInformer) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.threads: set[str] = set()
        inf.add_handler(on_add=lambda obj: self._record("add", obj),
                        on_update=lambda old, new: self._record(
                            "resync" if old is new else "update", new),
                        on_delete=lambda obj: self._record("delete", obj))

    def _record(self, kind: str, obj: JSON) -> None:
        meta = obj["metadata"]
        with self.lock:
            self.events.append((kind, f"{meta['namespace']}/{meta['name']}"))
            self.threads.add(threading.current_thread().name)

    def keys(self, kind: str) -> list[str]:
        with self.lock:
            return [key for k, key in self.events if k == kind]

    def count(self, kind: str) -> collections.Counter[str]:
        return collections.Counter(self.keys(kind))


@pytest.fixture
def broker_ns(api_client: Any) -> Iterator[str]:
    with temporary_namespace(api_client, "mnbk") as name:
        yield name


def members_informer(api_client: Any, broker_ns: str, **kwargs: Any
                     ) -> tuple[InformerSet, MultiNamespaceInformer]:
    informers = InformerSet(api_client, name="test", **kwargs)
    return informers, informers.across_members(resources.CONFIGMAPS,
                                               broker_namespace=broker_ns)


def cached_keys(inf: MultiNamespaceInformer) -> set[str]:
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in inf.list()}


def test_a_namespace_is_watched_from_its_cluster_joining_to_its_leaving(
        api_client: Any, broker_ns: str, configmaps: crud.ResourceClient) -> None:
    clusters = crud.ResourceClient(api_client, resources.CLUSTERS)
    with broker_member(api_client, broker_ns, "east") as east_ns:
        configmaps.create(configmap(east_ns, "cm-0"))
        # west's namespace and objects exist before its Cluster object does.
        west_ns = names.broker_member_namespace("west", broker_ns)
        crud.ensure_namespace(api_client, west_ns)
        try:
            for index in range(3):
                configmaps.create(configmap(west_ns, f"cm-{index}"))
            informers, inf = members_informer(api_client, broker_ns)
            recorder = Recorder(inf)
            by_name = Index(inf, lambda obj: [obj["metadata"]["name"]])
            informers.start()
            try:
                informers.wait_for_sync(10)
                # Synced means delivered: east's object is there at once, west's not at all.
                assert recorder.keys("add") == [f"{east_ns}/cm-0"]
                assert inf.namespaces == [east_ns]
                assert inf.get(f"{west_ns}/cm-0") is None

                clusters.create(cluster_object("west"), namespace=broker_ns)
                west = {f"{west_ns}/cm-{index}" for index in range(3)}
                await_condition(lambda: set(recorder.keys("add")) == west | {f"{east_ns}/cm-0"},
                                timeout=10, message=lambda: f"west's adds: {recorder.events}")
                assert cached_keys(inf) == west | {f"{east_ns}/cm-0"}
                assert {o["metadata"]["namespace"] for o in by_name.objects("cm-0")} == {
                    east_ns, west_ns}
                configmaps.patch("cm-1", {"data": {"v": "1"}}, namespace=west_ns)
                await_condition(lambda: recorder.keys("update") == [f"{west_ns}/cm-1"],
                                timeout=10, message="an update in a member namespace")

                # west leaves: its objects stay on the server but are deleted here, at once.
                clusters.delete("west", namespace=broker_ns)
                await_condition(lambda: set(recorder.keys("delete")) == west, timeout=10,
                                message=lambda: f"west's deletes: {recorder.events}")
                assert recorder.events[-3:] == [("delete", key) for key in sorted(west)], \
                    "every object of the namespace reported deleted in one go"
                assert len(configmaps.list(namespace=west_ns).items) == 3
                assert cached_keys(inf) == {f"{east_ns}/cm-0"}
                assert [o["metadata"]["namespace"] for o in by_name.objects("cm-0")] == [east_ns]
                assert inf.namespaces == [east_ns]
                # What west's namespace does now is nobody's business here.
                configmaps.create(configmap(west_ns, "cm-9"))
                configmaps.create(configmap(east_ns, "cm-9"))
                await_condition(lambda: f"{east_ns}/cm-9" in recorder.keys("add"), timeout=10,
                                message="east still watched")
                assert f"{west_ns}/cm-9" not in recorder.keys("add")

                # A rejoin brings west's objects back as adds.
                clusters.create(cluster_object("west"), namespace=broker_ns)
                await_condition(lambda: recorder.count("add")[f"{west_ns}/cm-9"] == 1,
                                timeout=10, message="west's objects again")
                assert {k for k, n in recorder.count("add").items() if n == 2} == west
                assert recorder.threads == {f"dispatch-{inf.name}"}, "one dispatcher thread"
            finally:
                informers.stop()
        finally:
            crud.ResourceClient(api_client, resources.NAMESPACES).delete_if_exists(west_ns)


def test_no_event_is_lost_or_repeated_across_watch_restarts(
        api_client: Any, broker_ns: str, configmaps: crud.ResourceClient) -> None:
    """Server-side watch timeouts of 1-2 s plus cuts every 0.25 s while writing into
    two member namespaces."""
    with broker_member(api_client, broker_ns, "east") as east_ns, \
            broker_member(api_client, broker_ns, "west") as west_ns:
        informers = InformerSet(api_client, name="test")
        clusters = informers.get(resources.CLUSTERS, namespace=broker_ns)
        inf = MultiNamespaceInformer(
            api_client, resources.CONFIGMAPS, namespaces=clusters, watch_timeout=1.0,
            namespace_of=lambda c: names.broker_member_namespace(c["metadata"]["name"],
                                                                 broker_ns))
        recorder = Recorder(inf)
        informers.start()
        inf.start()
        total = 30
        done = threading.Event()

        def write() -> None:
            for index in range(total):
                for ns in (east_ns, west_ns):
                    configmaps.create(configmap(ns, f"cm-{index}", v="0"))
                time.sleep(0.03)
            for index in range(total):
                for ns in (east_ns, west_ns):
                    configmaps.patch(f"cm-{index}", {"data": {"v": "1"}}, namespace=ns)
                time.sleep(0.02)
            done.set()

        try:
            assert inf.wait_for_sync(10)
            writer = threading.Thread(target=write)
            writer.start()
            cuts = 0
            while not done.is_set():
                done.wait(0.25)
                inf.disconnect()
                cuts += 1
            writer.join()
            keys = {f"{ns}/cm-{index}" for ns in (east_ns, west_ns) for index in range(total)}
            await_condition(lambda: len(recorder.keys("update")) >= 2 * total, timeout=15,
                            message=lambda: f"{2 * total} updates: {recorder.count('update')}")
            assert set(recorder.count("add")) == keys
            assert set(recorder.count("add").values()) == {1}, "no add delivered twice"
            assert set(recorder.count("update")) == keys
            assert set(recorder.count("update").values()) == {1}, "no update delivered twice"
            assert all(obj["data"] == {"v": "1"} for obj in inf.list())
            for ns in (east_ns, west_ns):
                member = inf.member(ns)
                assert member is not None
                assert member.stats.relists == 0, "every resume from the last resourceVersion"
                assert member.stats.watches >= cuts // 2 + 2, (member.stats, cuts)
        finally:
            inf.stop()
            informers.stop()
