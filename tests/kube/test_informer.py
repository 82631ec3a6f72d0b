"""kube.informer against the real API server: no event is ever lost.

Scenarios: the ordinary add/update/delete flow; watches that end (short server timeout)
or are cut mid-stream; a resourceVersion too old for the server (410 Gone, answered by a
relist whose differences become synthetic events); an API server restart while 200
objects are being created; resync; and a prompt stop.

Names: every test works in its own namespace; objects are ConfigMaps named ``cm-<n>``.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
import urllib.request
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kube import crud, errors, informer, resources
from kube.store import JSON
from kube.testing import await_condition, configmap, temporary_namespace

pytestmark = pytest.mark.kube


class Recorder:
    """Handlers that remember every event, by kind and by object name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, str]] = []  # (kind, name, resourceVersion)

    def attach(self, inf: informer.Informer) -> None:
        inf.add_handler(on_add=self.on_add, on_update=self.on_update, on_delete=self.on_delete)

    def _record(self, kind: str, obj: JSON) -> None:
        meta = obj["metadata"]
        with self.lock:
            self.events.append((kind, meta["name"], meta.get("resourceVersion", "")))

    def on_add(self, obj: JSON) -> None:
        self._record("add", obj)

    def on_update(self, old: JSON, new: JSON) -> None:
        self._record("resync" if old is new else "update", new)

    def on_delete(self, obj: JSON) -> None:
        self._record("delete", obj)

    def names(self, kind: str) -> list[str]:
        with self.lock:
            return [name for k, name, _ in self.events if k == kind]

    def count(self, kind: str) -> collections.Counter[str]:
        return collections.Counter(self.names(kind))

    def clear(self) -> None:
        with self.lock:
            self.events.clear()


@pytest.fixture
def namespace(api_client: Any) -> Any:
    with temporary_namespace(api_client, "inf") as name:
        yield name


def cached(inf: informer.Informer, key: str) -> JSON:
    obj = inf.get(key)
    assert obj is not None, f"{key} not in the cache"
    return obj


def cached_names(inf: informer.Informer) -> set[str]:
    return {obj["metadata"]["name"] for obj in inf.list()}


def start(inf: informer.Informer) -> informer.Informer:
    inf.start()
    assert inf.wait_for_sync(10), "informer did not sync"
    return inf


def test_add_update_delete_reach_cache_and_handlers(
    api_client: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    configmaps.create(configmap(namespace, "cm-0", v="0"))
    inf = informer.Informer(api_client, resources.CONFIGMAPS, namespace=namespace)
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    try:
        assert recorder.names("add") == ["cm-0"], "the initial list is delivered as adds"
        assert cached(inf, f"{namespace}/cm-0")["data"] == {"v": "0"}
        configmaps.create(configmap(namespace, "cm-1", v="1"))
        configmaps.patch("cm-0", {"data": {"v": "changed"}}, namespace=namespace)
        configmaps.delete("cm-1", namespace=namespace)
        await_condition(lambda: recorder.names("delete") == ["cm-1"], message="delete of cm-1")
        assert recorder.names("add") == ["cm-0", "cm-1"]
        assert recorder.names("update") == ["cm-0"]
        assert cached(inf, f"{namespace}/cm-0")["data"] == {"v": "changed"}
        assert cached_names(inf) == {"cm-0"}
        assert inf.stats.relists == 0
    finally:
        inf.stop()


def test_label_selector_limits_the_cache(
    api_client: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    inf = start(
        informer.Informer(
            api_client, resources.CONFIGMAPS, namespace=namespace, label_selector="pick=yes"
        )
    )
    try:
        for index, pick in enumerate(("yes", "no", "yes")):
            obj = configmap(namespace, f"cm-{index}")
            obj["metadata"]["labels"] = {"pick": pick}
            configmaps.create(obj)
        await_condition(lambda: cached_names(inf) == {"cm-0", "cm-2"}, message="selected only")
    finally:
        inf.stop()


def test_resumes_after_watch_ends_or_is_cut_without_losing_or_repeating_events(
    api_client: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    """Server-side watch timeout of 1-2 s plus cuts every 0.25 s while writing."""
    inf = informer.Informer(
        api_client, resources.CONFIGMAPS, namespace=namespace, watch_timeout=1.0
    )
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    total = 60
    done = threading.Event()

    def write() -> None:
        for index in range(total):
            configmaps.create(configmap(namespace, f"cm-{index}", v="0"))
            time.sleep(0.03)
        for index in range(total):
            configmaps.patch(f"cm-{index}", {"data": {"v": "1"}}, namespace=namespace)
            time.sleep(0.02)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    cuts = 0
    while not done.is_set():
        done.wait(0.25)
        inf.disconnect()
        cuts += 1
    writer.join()
    try:
        names = {f"cm-{index}" for index in range(total)}
        await_condition(
            lambda: len(recorder.names("update")) >= total,
            timeout=15,
            message=lambda: f"{total} updates, have {len(recorder.names('update'))}",
        )
        assert set(recorder.count("add")) == names
        assert set(recorder.count("add").values()) == {1}, "no add delivered twice"
        assert set(recorder.count("update").values()) == {1}, "no update delivered twice"
        assert all(obj["data"] == {"v": "1"} for obj in inf.list())
        assert inf.stats.relists == 0, "every resume worked from the last resourceVersion"
        assert inf.stats.watches >= cuts // 2 + 2, (inf.stats, cuts)
        print(f"\nwatch resumes: {inf.stats.watches - 1} ({cuts} cuts), stats {inf.stats}")
    finally:
        inf.stop()


class HeldInformer(informer.Informer):
    """Can hold its next watch request until released (simulating a long disconnect)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.release.set()
        self.holding = threading.Event()

    def _watch_resource_version(self) -> str:
        if not self.release.is_set():
            self.holding.set()
            self.release.wait(30)
        return super()._watch_resource_version()


def etcd_compact(endpoint: str) -> int:
    """Compact etcd's history up to its current revision (v3 HTTP gateway); return it."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            endpoint + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    revision = int(
        post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
    )
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def event(namespace: str, name: str, message: str) -> JSON:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": namespace},
        "reason": "Testing",
        "message": message,
        "type": "Normal",
    }


def test_410_gone_after_etcd_compaction_relists_and_emits_the_difference(
    api_client: Any, control_plane: Any, namespace: str
) -> None:
    """Events have no watch cache in the API server: their watches read etcd directly, so
    compacting etcd while the informer is away makes its resume answer 410 Gone."""
    events = crud.ResourceClient(api_client, resources.EVENTS)
    for name in ("ev-a", "ev-b", "ev-c"):
        events.create(event(namespace, name, "0"))
    inf = HeldInformer(api_client, resources.EVENTS, namespace=namespace)
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    try:
        await_condition(lambda: inf.stats.watches >= 1, message="first watch open")
        recorder.clear()
        inf.release.clear()
        inf.disconnect()
        await_condition(inf.holding.is_set, message="informer between watches")

        # Changes the informer cannot see while its watch is down; then etcd forgets them.
        events.create(event(namespace, "ev-d", "0"))
        events.patch("ev-b", {"message": "1"}, namespace=namespace)
        events.delete("ev-c", namespace=namespace)
        unchanged = events.get("ev-a", namespace=namespace)["metadata"]["resourceVersion"]
        revision = etcd_compact(control_plane.etcd_endpoint)
        assert int(inf.last_resource_version) < revision

        inf.release.set()
        await_condition(lambda: inf.stats.relists == 1, message="a relist after 410")
        await_condition(
            lambda: len(recorder.events) >= 3, message=lambda: f"events {recorder.events}"
        )
        kinds = sorted((kind, name) for kind, name, _ in recorder.events)
        assert kinds == [("add", "ev-d"), ("delete", "ev-c"), ("update", "ev-b")]
        assert cached_names(inf) == {"ev-a", "ev-b", "ev-d"}
        assert cached(inf, f"{namespace}/ev-b")["message"] == "1"
        assert cached(inf, f"{namespace}/ev-a")["metadata"]["resourceVersion"] == unchanged

        # And it watches normally afterwards, from the relist's resourceVersion.
        events.create(event(namespace, "ev-e", "0"))
        await_condition(lambda: "ev-e" in recorder.names("add"), message="add after relist")
        assert inf.stats.relists == 1
        # Events arrive in order: by ev-e's add, any extra event of the relist would have.
        assert sorted((kind, name) for kind, name, _ in recorder.events) == [
            ("add", "ev-d"), ("add", "ev-e"), ("delete", "ev-c"), ("update", "ev-b")]
        print(f"\n410 after compaction at revision {revision}: stats {inf.stats}")
    finally:
        inf.release.set()
        inf.stop()


class GoneOnceInformer(informer.Informer):
    """Its next watch request fails with HTTP 410, as a server without watch cache may."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gone = threading.Event()

    def _watch(self) -> None:
        if self.gone.is_set():
            self.gone.clear()
            raise ApiException(status=410, reason="Gone")
        super()._watch()


def test_410_as_http_status_also_relists(
    api_client: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    configmaps.create(configmap(namespace, "cm-0"))
    inf = GoneOnceInformer(api_client, resources.CONFIGMAPS, namespace=namespace)
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    try:
        await_condition(lambda: inf.stats.watches >= 1, message="first watch open")
        inf.gone.set()
        inf.disconnect()
        await_condition(lambda: inf.stats.relists == 1, message="a relist after HTTP 410")
        configmaps.create(configmap(namespace, "cm-1"))
        await_condition(lambda: "cm-1" in recorder.names("add"), message="watching again")
        assert recorder.names("add") == ["cm-0", "cm-1"], "the relist found nothing new"
        assert inf.stats.errors == 0
    finally:
        inf.stop()


def create_with_retry(configmaps: crud.ResourceClient, obj: JSON, deadline: float) -> int:
    """Create through an API server outage; returns the number of failed attempts.

    A create whose answer was lost may have succeeded: 409 AlreadyExists counts as done.
    """
    failures = 0
    while True:
        try:
            configmaps.create(obj)
            return failures
        except Exception as exc:
            if errors.is_already_exists(exc):
                return failures
            if not errors.is_transient(exc) or time.monotonic() > deadline:
                raise
            failures += 1
            time.sleep(0.05)


def test_survives_api_server_restart_while_200_objects_are_created(
    api_client: Any, control_plane: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    inf = informer.Informer(api_client, resources.CONFIGMAPS, namespace=namespace, backoff_max=1.0)
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    total = 200
    created = 0
    failed_attempts = 0
    writer_error: list[BaseException] = []

    def write() -> None:
        nonlocal created, failed_attempts
        deadline = time.monotonic() + 90
        try:
            for index in range(total):
                obj = configmap(namespace, f"cm-{index}", index=str(index))
                failed_attempts += create_with_retry(configmaps, obj, deadline)
                created += 1
                time.sleep(0.01)
        except BaseException as exc:
            writer_error.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        await_condition(lambda: created >= 40, message="40 objects created before the restart")
        restart_started = time.monotonic()
        control_plane.restart_apiserver()
        restart_took = time.monotonic() - restart_started
        writer.join(120)
        assert not writer_error, writer_error
        assert created == total
        names = {f"cm-{index}" for index in range(total)}
        await_condition(
            lambda: cached_names(inf) == names,
            timeout=30,
            message=lambda: f"all {total} cached, have {len(cached_names(inf))}",
        )
        await_condition(lambda: set(recorder.count("add")) == names, message="an add for each")
        assert set(recorder.count("add").values()) == {1}
        assert inf.stats.watches >= 2 and inf.stats.errors >= 1, inf.stats
        print(
            f"\nAPI server restart took {restart_took:.1f}s; writer failed attempts "
            f"{failed_attempts}; informer stats {inf.stats}"
        )
    finally:
        inf.stop()
        writer.join(5)


def test_resync_redelivers_cached_objects(
    api_client: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    configmaps.create(configmap(namespace, "cm-0"))
    configmaps.create(configmap(namespace, "cm-1"))
    inf = informer.Informer(
        api_client, resources.CONFIGMAPS, namespace=namespace, resync_period=0.3
    )
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    try:
        await_condition(
            lambda: recorder.count("resync")["cm-0"] >= 2 and recorder.count("resync")["cm-1"] >= 2,
            timeout=5,
            message="two resyncs of each object",
        )
        assert recorder.names("update") == []
    finally:
        inf.stop()


def test_stop_is_prompt_even_with_a_long_watch(api_client: Any, namespace: str) -> None:
    inf = start(
        informer.Informer(api_client, resources.CONFIGMAPS, namespace=namespace, watch_timeout=300)
    )
    await_condition(lambda: inf.stats.watches >= 1, message="watch open")
    started = time.monotonic()
    inf.stop()
    took = time.monotonic() - started
    assert took < 1.0, took
    assert not any(thread.is_alive() for thread in inf._threads)


def test_handler_failure_does_not_stop_delivery(
    api_client: Any, namespace: str, configmaps: crud.ResourceClient
) -> None:
    inf = informer.Informer(api_client, resources.CONFIGMAPS, namespace=namespace)
    seen: list[str] = []

    def flaky(obj: JSON) -> None:
        seen.append(obj["metadata"]["name"])
        if obj["metadata"]["name"] == "cm-0":
            raise RuntimeError("handler bug")

    inf.add_handler(on_add=flaky)
    start(inf)
    try:
        configmaps.create(configmap(namespace, "cm-0"))
        configmaps.create(configmap(namespace, "cm-1"))
        await_condition(lambda: seen == ["cm-0", "cm-1"], message="both adds")
        with pytest.raises(RuntimeError):
            inf.add_handler(on_add=flaky)
    finally:
        inf.stop()


def test_cluster_scoped_custom_resource(api_client: Any) -> None:
    client = crud.ResourceClient(api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    inf = informer.Informer(api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    recorder = Recorder()
    recorder.attach(inf)
    start(inf)
    name = "informer-test.submariner.io"
    try:
        client.create({"metadata": {"name": name}, "spec": {"numGlobalIPs": 4}})
        await_condition(lambda: inf.get(name) is not None, message="cluster-scoped key")
        assert cached(inf, name)["spec"] == {"numGlobalIPs": 4}
    finally:
        client.delete_if_exists(name)
        inf.stop()
