"""`show versions`: what image each Globalnet component runs.

The configured image is the workload's (the DaemonSets and Deployments `gnctl join`
applied in the cluster namespace, one row per container); the running one is what
the kubelet reports for the workload's pods (`imageID`, resolved by the runtime), so
a rollout in progress or a node still on an old image shows as two versions. gnctl's
own version is listed too: a CLI older than the agents may misread their objects.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

from kube import objects as o

JSON = dict[str, Any]
DISTRIBUTION = "globalnet"  # pyproject's project name


@dataclass(frozen=True)
class ComponentVersion:
    component: str  # the workload's name
    kind: str  # DaemonSet, Deployment, or CLI for gnctl itself
    container: str
    repository: str
    version: str  # the configured tag (or digest)
    running: tuple[str, ...]  # distinct images the pods' containers run ("" not reported)
    desired: int  # pods the workload wants
    ready: int


@dataclass(frozen=True)
class VersionsView:
    components: tuple[ComponentVersion, ...]


def split_image(image: str) -> tuple[str, str]:
    """("repository", "tag or digest") of an image reference; no tag means latest."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    name = image.rsplit("/", 1)[-1]
    if ":" in name:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"


def _selected(selector: JSON, pod: JSON) -> bool:
    match = selector.get("matchLabels") or {}
    return bool(match) and o.selector_matches(selector, o.labels(pod))


def _counts(workload: JSON) -> tuple[int, int]:
    status = o.status(workload)
    if workload.get("kind") == "DaemonSet":
        return int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0)
    return (int(o.spec(workload).get("replicas") or 0), int(status.get("readyReplicas") or 0))


def _running(pods: list[JSON], container: str) -> tuple[str, ...]:
    found = set()
    for pod in pods:
        for state in o.status(pod).get("containerStatuses") or []:
            if isinstance(state, dict) and state.get("name") == container:
                found.add(str(state.get("imageID") or state.get("image") or ""))
    return tuple(sorted(found))


def versions_view(workloads: list[JSON], pods: list[JSON]) -> VersionsView:
    rows = [ComponentVersion("gnctl", "CLI", "", DISTRIBUTION, _own_version(), (), 0, 0)]
    for workload in sorted(workloads, key=lambda w: (str(w.get("kind")), o.name(w))):
        template = o.spec(workload).get("template") or {}
        selector = o.spec(workload).get("selector") or {}
        mine = [p for p in pods if _selected(selector, p)]
        desired, ready = _counts(workload)
        for container in (template.get("spec") or {}).get("containers") or []:
            repository, version = split_image(str(container.get("image") or ""))
            rows.append(ComponentVersion(
                o.name(workload), str(workload.get("kind") or ""), str(container.get("name")),
                repository, version, _running(mine, str(container.get("name"))), desired,
                ready))
    return VersionsView(tuple(rows))


def _own_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
