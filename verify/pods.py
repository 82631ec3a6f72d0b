"""Manifests of verify's pods, and how a probe pod's verdict is read back.

Every pod is pinned with `nodeName` (the node under test, gateway or not: no
scheduler decision in between), runs as a plain workload (no service account
token, no service links) and dies at once when deleted. A probe is
`restartPolicy: Never`: its container's exit code is the verdict and its
termination message the details, both in `status.containerStatuses[0].state.terminated`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kube import crud
from verify import scripts
from verify.errors import Interrupted

JSON = dict[str, Any]

# Labels on everything verify makes: the namespace (found again for cleanup) and
# the pods (`app` selects a Service's backends).
MANAGED_BY = "gnctl-verify"
ROLE_LABEL = "verify.globalnet.io/role"

# Waiting reasons that will not resolve by waiting: report them at once.
HOPELESS = frozenset({"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull",
                      "InvalidImageName", "CreateContainerConfigError",
                      "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class DnsConfig:
    """How verify's pods resolve `clusterset.local`: the cluster's own DNS
    (ClusterFirst, which forwards the zone to Lighthouse), or - in a cluster with
    no cluster DNS, as the lab - the Lighthouse DNS server itself."""

    nameserver: str | None = None

    def pod_fields(self) -> JSON:
        if self.nameserver is None:
            return {"dnsPolicy": "ClusterFirst"}
        return {"dnsPolicy": "None", "dnsConfig": {
            "nameservers": [self.nameserver],
            "searches": ["svc.clusterset.local", "clusterset.local"]}}


@dataclass(frozen=True)
class PodSpec:
    """What every verify pod shares."""

    namespace: str
    image: str
    dns: DnsConfig = field(default_factory=DnsConfig)

    def pod(self, name: str, node: str, containers: list[JSON], *, labels: dict[str, str],
            restart: str) -> JSON:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace,
                             "labels": {**labels, "app.kubernetes.io/managed-by": MANAGED_BY}},
                "spec": {"nodeName": node, "restartPolicy": restart,
                         "terminationGracePeriodSeconds": 0, "enableServiceLinks": False,
                         "automountServiceAccountToken": False,
                         **self.dns.pod_fields(), "containers": containers}}

    def container(self, name: str, command: list[str], *, ports: tuple[int, ...] = (),
                  ready_on_port: bool = False) -> JSON:
        out: JSON = {"name": name, "image": self.image, "imagePullPolicy": "IfNotPresent",
                     "command": command,
                     "env": [{"name": "POD_NAME",
                              "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                     "terminationMessagePolicy": "File"}
        if ports:
            out["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
        if ready_on_port:
            out["readinessProbe"] = {"tcpSocket": {"port": ports[0]}, "periodSeconds": 1}
        return out

    def server(self, name: str, node: str, *, cluster_id: str, app: str,
               iperf: bool = False) -> JSON:
        """The echo server (scripts.SERVER) on `node`; with `iperf`, an iperf3 server
        beside it in the same pod."""
        containers = [self.container("echo", ["python3", "-c", scripts.SERVER,
                                              str(scripts.ECHO_PORT), cluster_id],
                                     ports=(scripts.ECHO_PORT,), ready_on_port=True)]
        if iperf:  # no readiness probe: iperf3 takes each connection for a test's
            containers.append(self.container(
                "iperf3", ["iperf3", "-s", "-p", str(scripts.IPERF_PORT)],
                ports=(scripts.IPERF_PORT,)))
        return self.pod(name, node, containers, labels={"app": app, ROLE_LABEL: "server"},
                        restart="Always")

    def probe(self, name: str, node: str, mode: str, args: JSON) -> JSON:
        if mode not in scripts.PROBE_MODES:
            raise ValueError(f"unknown probe mode {mode!r}")
        command = ["python3", "-c", scripts.PROBE, mode, json.dumps(args)]
        return self.pod(name, node, [self.container("probe", command)],
                        labels={ROLE_LABEL: "probe"}, restart="Never")


def service(name: str, namespace: str, app: str, *, headless: bool = False,
            ports: tuple[int, ...] = (scripts.ECHO_PORT,)) -> JSON:
    spec: JSON = {"selector": {"app": app},
                  "ports": [{"name": f"tcp-{p}", "port": p, "targetPort": p, "protocol": "TCP"}
                            for p in ports]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
            "spec": spec}


@dataclass(frozen=True)
class ProbeResult:
    """A finished probe: its exit code (None: it never ran) and what it wrote."""

    pod: str
    node: str
    exit_code: int | None
    data: JSON
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and bool(self.data.get("ok"))

    @property
    def error(self) -> str:
        """Why it failed, in a few words."""
        if self.reason:
            return self.reason
        errors = self.data.get("errors") or {}
        return str(self.data.get("error") or "; ".join(f"{k}: {v}" for k, v in errors.items())
                   or f"exit code {self.exit_code}")


def _terminated(pod: JSON) -> JSON | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return None
    state = statuses[0].get("state") or {}
    return state.get("terminated")


def _hopeless(pod: JSON) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in HOPELESS:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    return None


def await_probe(pods: crud.ResourceClient, name: str, namespace: str, *, timeout: float,
                stop: threading.Event) -> ProbeResult:
    """Until probe pod `name` ends (or cannot start); its verdict."""
    deadline = time.monotonic() + timeout
    node = ""
    while True:
        if stop.is_set():
            raise Interrupted(f"probe {name} stopped")
        pod = pods.get_or_none(name, namespace=namespace) or {}
        node = str((pod.get("spec") or {}).get("nodeName", node))
        done = _terminated(pod)
        if done is not None:
            try:
                data = json.loads(done.get("message") or "{}")
            except ValueError:
                data = {"error": f"unreadable termination message {done.get('message')!r}"}
            return ProbeResult(name, node, int(done.get("exitCode", 1)), data)
        why = _hopeless(pod)
        if why is not None:
            return ProbeResult(name, node, None, {}, reason=why)
        if time.monotonic() > deadline:
            phase = (pod.get("status") or {}).get("phase", "absent")
            return ProbeResult(name, node, None, {},
                               reason=f"no verdict within {timeout:.0f} s (pod {phase})")
        time.sleep(0.3)


def await_ready(pods: crud.ResourceClient, names: list[str], namespace: str, *,
                timeout: float, stop: threading.Event) -> dict[str, JSON]:
    """Until every pod in `names` is Ready; their objects. Raises TimeoutError saying
    which were not (and why, when the kubelet said)."""
    from kube import objects as o

    deadline = time.monotonic() + timeout
    while True:
        if stop.is_set():
            raise Interrupted("stopped while waiting for the servers")
        found = {name: pods.get_or_none(name, namespace=namespace) or {} for name in names}
        if all(o.pod_is_ready(p) for p in found.values() if p) and all(found.values()):
            return found
        hopeless = {n: why for n, p in found.items() if (why := _hopeless(p))}
        if hopeless or time.monotonic() > deadline:
            late = {n: hopeless.get(n) or str((p.get("status") or {}).get("phase", "absent"))
                    for n, p in found.items() if not p or not o.pod_is_ready(p)}
            raise TimeoutError("pods not ready: " + ", ".join(f"{n} ({w})"
                                                              for n, w in late.items()))
        time.sleep(0.3)

