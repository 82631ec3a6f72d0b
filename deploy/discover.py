"""Find a cluster's pod and service CIDRs from its API, for `gnctl join` without flags.

Each finding says where it came from, so the user can judge it:

* pod CIDRs: the ``--cluster-cidr`` flag of a kube-controller-manager static pod
  (kubeadm, kind), else ``clusterCIDR`` in the kube-proxy ConfigMap (kubeadm's);
* service CIDRs: the ``--service-cluster-ip-range`` flag of a kube-apiserver static
  pod, else the API server itself: a Service asking for an address outside every
  range is refused, before anything is stored, with a message naming the valid range
  (what upstream's subctl does as well; should the address be valid after all, the
  probe Service is deleted at once).

When none of these answers, discovery fails with a message naming the flag to pass:
guessing a CIDR from node pod ranges would be wrong as often as right.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Final

import yaml

from kube import errors, rest
from kube import objects as o
from kube.crud import ResourceClient
from kube.resources import CONFIGMAPS, PODS, SERVICES

KUBE_SYSTEM: Final = "kube-system"
# An address no service range holds (TEST-NET-1), for the dry-run probe.
PROBE_IP: Final = "192.0.2.254"
_VALID_RANGE = re.compile(r"valid IPs is ([0-9a-fA-F.:/,]+)")


class DiscoveryError(RuntimeError):
    """The CIDRs could not be found; the message names the flag to pass instead."""


@dataclass(frozen=True)
class Found:
    cidrs: tuple[str, ...]
    source: str  # where they were read, for the user


def _flag_values(api: Any, component: str, flag: str) -> tuple[str, ...] | None:
    pods = ResourceClient(api, PODS).list(namespace=KUBE_SYSTEM,
                                          label_selector=f"component={component}").items
    for pod in pods:
        for container in o.spec(pod).get("containers") or []:
            for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
                if isinstance(arg, str) and arg.startswith(f"--{flag}="):
                    return tuple(c for c in arg.split("=", 1)[1].split(",") if c)
    return None


def pod_cidrs(api: Any) -> Found:
    found = _flag_values(api, "kube-controller-manager", "cluster-cidr")
    if found:
        return Found(found, "kube-controller-manager --cluster-cidr")
    cm = ResourceClient(api, CONFIGMAPS).get_or_none("kube-proxy", namespace=KUBE_SYSTEM)
    for text in ((cm or {}).get("data") or {}).values():
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        cidr = config.get("clusterCIDR") if isinstance(config, dict) else None
        if isinstance(cidr, str) and cidr:
            return Found(tuple(c for c in cidr.split(",") if c),
                         "the kube-proxy ConfigMap's clusterCIDR")
    raise DiscoveryError("cannot discover the cluster's pod CIDR (no kube-controller-manager "
                         "pod with --cluster-cidr, no kube-proxy ConfigMap with clusterCIDR "
                         "in kube-system): pass --clustercidr")


def service_cidrs(api: Any) -> Found:
    found = _flag_values(api, "kube-apiserver", "service-cluster-ip-range")
    if found:
        return Found(found, "kube-apiserver --service-cluster-ip-range")
    name = f"globalnet-cidr-probe-{secrets.token_hex(3)}"
    probe = {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": "default"},
             "spec": {"clusterIP": PROBE_IP, "ports": [{"port": 80}]}}
    try:
        # Not a dry run: a dry run skips the address allocator, which is what answers.
        rest.request_json(api, "POST", SERVICES.path(namespace="default"), body=probe)
        ResourceClient(api, SERVICES).delete_if_exists(name, namespace="default")
    except Exception as exc:
        if not errors.is_invalid(exc):
            raise
        match = _VALID_RANGE.search(str(exc))
        if match:
            return Found(tuple(c for c in match.group(1).split(",") if c),
                         "the API server's answer to a Service outside its range")
    raise DiscoveryError("cannot discover the cluster's service CIDR (no kube-apiserver pod "
                         "with --service-cluster-ip-range, and the API server did not name "
                         "its range): pass --servicecidr")
