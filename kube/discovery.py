"""Ask the API server what it serves: its version and each API group's versions.

Globalnet must run on servers that differ in which versions they serve; the test and lab
control planes are Kubernetes 1.20, which serves EndpointSlice only as
``discovery.k8s.io/v1beta1`` (``v1`` arrived in 1.21). Code that needs such a resource
asks here once at start-up instead of hard-coding a version. The same goes for the MCS
API: a Broker installed by an older release may serve only ``v1alpha1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kube import errors, rest
from kube.resources import (
    ENDPOINTSLICE_GROUP,
    ENDPOINTSLICES_V1BETA1,
    MCS_GROUP,
    MCS_LEGACY_VERSIONS,
    MCS_VERSION,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
    Resource,
)
from kube.rest import ApiClient


@dataclass(frozen=True)
class ServerVersion:
    """The server's ``/version``; ``minor`` is numeric ("20+" on some distributions -> 20)."""

    major: int
    minor: int
    git_version: str

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)


def _leading_int(text: str) -> int:
    match = re.match(r"\d+", text)
    return int(match.group()) if match else 0


def server_version(api_client: ApiClient) -> ServerVersion:
    info = rest.request_json(api_client, "GET", "/version")
    return ServerVersion(
        major=_leading_int(str(info.get("major", ""))),
        minor=_leading_int(str(info.get("minor", ""))),
        git_version=str(info.get("gitVersion", "")),
    )


def group_versions(api_client: ApiClient, group: str) -> list[str]:
    """Versions the server serves for ``group`` ("" is core), preferred first; [] if none."""
    if not group:
        core = rest.request_json(api_client, "GET", "/api")
        return [str(version) for version in core.get("versions") or []]
    try:
        info = rest.request_json(api_client, "GET", f"/apis/{group}")
    except Exception as exc:
        if errors.is_not_found(exc):
            return []
        raise
    versions = [str(entry["version"]) for entry in info.get("versions") or []]
    preferred = (info.get("preferredVersion") or {}).get("version")
    if preferred in versions:
        versions.remove(preferred)
        versions.insert(0, str(preferred))
    return versions


def preferred_version(api_client: ApiClient, group: str) -> str | None:
    """The server's preferred version of ``group``, or None when the group is not served."""
    versions = group_versions(api_client, group)
    return versions[0] if versions else None


def serves(api_client: ApiClient, resource: Resource) -> bool:
    """Whether the server serves exactly this group/version/plural (CRDs included)."""
    path = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
    try:
        info = rest.request_json(api_client, "GET", path)
    except Exception as exc:
        if errors.is_not_found(exc):
            return False
        raise
    return any(entry.get("name") == resource.plural for entry in info.get("resources") or [])


# EndpointSlice versions we can speak, best first.
_ENDPOINTSLICE_VERSIONS = ("v1", "v1beta1")


def endpointslice_api_version(api_client: ApiClient) -> str:
    """Return "discovery.k8s.io/v1" where served, else ".../v1beta1" (Kubernetes 1.20)."""
    served = group_versions(api_client, ENDPOINTSLICE_GROUP)
    for version in _ENDPOINTSLICE_VERSIONS:
        if version in served:
            return f"{ENDPOINTSLICE_GROUP}/{version}"
    raise LookupError(f"the API server serves no EndpointSlice version we know (has {served})")


def endpointslices(api_client: ApiClient) -> Resource:
    """The EndpointSlice ``Resource`` at the version this server serves."""
    version = endpointslice_api_version(api_client).rsplit("/", 1)[1]
    return ENDPOINTSLICES_V1BETA1.with_version(version)


def mcs_version(api_client: ApiClient) -> str:
    """``MCS_VERSION`` where served, else the newest legacy version served (an older Broker).

    Every MCS version has the same shape here, so only the version differs; fields an
    older schema lacks are dropped by that server, and readers treat them as unset.
    """
    served = group_versions(api_client, MCS_GROUP)
    for version in (MCS_VERSION, *MCS_LEGACY_VERSIONS):
        if version in served:
            return version
    raise LookupError(
        f"the API server serves no {MCS_GROUP} version we know (has {served or 'none'}); "
        "are the MCS CRDs installed?")


def service_exports(api_client: ApiClient) -> Resource:
    """The ServiceExport ``Resource`` at the MCS version this server serves."""
    return SERVICE_EXPORTS.with_version(mcs_version(api_client))


def service_imports(api_client: ApiClient) -> Resource:
    """The ServiceImport ``Resource`` at the MCS version this server serves."""
    return SERVICE_IMPORTS.with_version(mcs_version(api_client))
