"""The test namespace's life: made in every cluster, deleted whatever happens.

One namespace name (`gn-verify-XXXXXX`) in both clusters - the MCS API joins
exports by namespace and name - labelled as verify's, so a run killed with
SIGKILL leaves something `kubectl delete ns -l app.kubernetes.io/managed-by=gnctl-verify`
finds. Deleting it takes the pods, Services and ServiceExports with it; the
GlobalIngressIPs and Lighthouse's imports follow from the exports' deletion.
`close()` waits until the namespaces are gone, so nothing is left behind when the
command returns. Probes run in threads; `stop` tells them to give up.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kube import names, resources
from kube import objects as o
from verify import pods
from verify.clusters import Cluster
from verify.errors import Interrupted

T = TypeVar("T")
NAMESPACE_PREFIX = "gn-verify-"
CLEANUP_TIMEOUT_S = 90.0


class Session:
    """The namespace in each cluster and what verify makes in it."""

    def __init__(self, clusters: Sequence[Cluster], *, image: str,
                 progress: Callable[[str], None] = lambda _m: None) -> None:
        self.clusters = list(clusters)
        self.image = image
        self.namespace = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:6]}"
        self.progress = progress
        self.stop = threading.Event()
        self._made: list[Cluster] = []
        self._names = itertools.count(1)

    # --- life -------------------------------------------------------------------------
    def open(self) -> None:
        for c in self.clusters:
            self._made.append(c)  # before the create: a half-made one is cleaned up too
            c.client(resources.NAMESPACES).create({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": pods.MANAGED_BY}}})
        for c in self.clusters:
            self._await_service_account(c)
        self.progress(f"namespace {self.namespace} made in "
                      f"{', '.join(c.cluster_id for c in self.clusters)}")

    def _await_service_account(self, c: Cluster, timeout: float = 30.0) -> None:
        """Pods are refused until the namespace's `default` ServiceAccount exists."""
        accounts = c.client(resources.SERVICE_ACCOUNTS)
        deadline = time.monotonic() + timeout
        while accounts.get_or_none("default", namespace=self.namespace) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in {self.namespace} of "
                                   f"{c.cluster_id} after {timeout:.0f} s")
            self._check_stop()
            time.sleep(0.2)

    def close(self) -> list[str]:
        """Delete the namespaces and wait for them to go; what could not be removed."""
        self.stop.set()
        left: list[str] = []
        with _no_interrupts():
            for c in self._made:
                try:
                    c.client(resources.NAMESPACES).delete_if_exists(self.namespace)
                except Exception as exc:  # an unreachable server: say so, go on
                    left.append(f"{c.cluster_id}: {type(exc).__name__}")
            deadline = time.monotonic() + CLEANUP_TIMEOUT_S
            for c in self._made:
                while True:
                    try:
                        if c.client(resources.NAMESPACES).get_or_none(self.namespace) is None:
                            break
                    except Exception:
                        break
                    if time.monotonic() > deadline:
                        left.append(f"{c.cluster_id}: namespace {self.namespace} still "
                                    "terminating")
                        break
                    time.sleep(0.3)
        self._made.clear()
        return left

    def __enter__(self) -> Session:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        left = self.close()
        if left:
            self.progress(f"cleanup incomplete: {'; '.join(left)}")

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted("stopped")

    # --- objects --------------------------------------------------------------------
    def create(self, c: Cluster, obj: o.JSON) -> o.JSON:
        resource = {"Pod": resources.PODS, "Service": resources.SERVICES}[obj["kind"]]
        return c.client(resource).create(obj)

    def pod_spec(self, c: Cluster) -> pods.PodSpec:
        return pods.PodSpec(namespace=self.namespace, image=self.image, dns=c.dns)

    def export(self, c: Cluster, service: str) -> None:
        c.client(resources.SERVICE_EXPORTS).create(
            {"metadata": {"name": service, "namespace": self.namespace}})

    def unexport(self, c: Cluster, service: str) -> None:
        c.client(resources.SERVICE_EXPORTS).delete_if_exists(service, namespace=self.namespace)

    def global_ip(self, c: Cluster, service: str, *, timeout: float = 30.0) -> str | None:
        """The global IP Globalnet gave exported `service` (None: none in time)."""
        giips = c.client(resources.GLOBAL_INGRESS_IPS)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_stop()
            ip = o.allocated_ip(giips.get_or_none(service, namespace=self.namespace) or {})
            if ip:
                return ip
            time.sleep(0.2)
        return None

    def headless_ips(self, c: Cluster, service: str, count: int, *, timeout: float = 30.0
                     ) -> dict[str, str]:
        """Pod name -> global IP, for each backend of exported headless `service`, once
        `count` have one (fewer when time runs out)."""
        giips = c.client(resources.GLOBAL_INGRESS_IPS)
        deadline = time.monotonic() + timeout
        found: dict[str, str] = {}
        while time.monotonic() < deadline:
            self._check_stop()
            items = giips.list(namespace=self.namespace,
                               label_selector=f"{names.SERVICE_REF_LABEL}={service}").items
            found = {str((o.spec(g).get("podRef") or {}).get("name")
                         or o.name(g).removeprefix("pod-")): ip
                     for g in items
                     if o.spec(g).get("target") == names.TARGET_HEADLESS_POD
                     and (ip := o.allocated_ip(g))}
            if len(found) >= count:
                return found
            time.sleep(0.2)
        return found

    def delete_if_exists(self, c: Cluster, resource: resources.Resource, name: str,
                         namespace: str | None = None) -> None:
        with contextlib.suppress(Exception):
            c.client(resource).delete_if_exists(name, namespace=namespace or self.namespace)

    # --- pods -----------------------------------------------------------------------
    def await_ready(self, c: Cluster, names_: list[str], *, timeout: float = 90.0
                    ) -> dict[str, o.JSON]:
        return pods.await_ready(c.client(resources.PODS), names_, self.namespace,
                                timeout=timeout, stop=self.stop)

    def probe(self, c: Cluster, node: str, mode: str, args: dict[str, Any], *,
              timeout: float, name: str = "probe",
              started: Callable[[], None] | None = None) -> pods.ProbeResult:
        """Run one probe pod on `node` of `c` to its end; its verdict. `started` is
        called once its container runs (the failover suite disrupts then)."""
        pod_name = f"{name}-{next(self._names)}"
        client = c.client(resources.PODS)
        client.create(self.pod_spec(c).probe(pod_name, node, mode, args))
        try:
            if started is not None:
                self._await_running(c, pod_name, timeout=timeout)
                started()
            return pods.await_probe(client, pod_name, self.namespace,
                                    timeout=timeout, stop=self.stop)
        finally:
            with contextlib.suppress(Exception):
                client.delete_if_exists(pod_name, namespace=self.namespace)

    def _await_running(self, c: Cluster, name: str, *, timeout: float) -> None:
        client = c.client(resources.PODS)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_stop()
            pod = client.get_or_none(name, namespace=self.namespace) or {}
            if o.status(pod).get("phase") in ("Running", "Succeeded", "Failed"):
                return
            time.sleep(0.2)

    def parallel(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run `jobs` at once (probes mostly wait); their results in order. Ctrl-C
        stops the others."""
        if not jobs:
            return []
        pool = ThreadPoolExecutor(max_workers=min(8, len(jobs)))
        try:
            futures = [pool.submit(job) for job in jobs]
            return [f.result() for f in futures]
        except BaseException:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Cleanup is not cut short by a second Ctrl-C (or SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
