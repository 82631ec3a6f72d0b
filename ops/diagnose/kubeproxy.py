"""`diagnose kube-proxy-mode`: the mode kube-proxy runs in, which Globalnet's
ingress rewrite sits in front of.

The global IP is rewritten to the ClusterIP before conntrack (datapath/README.md),
so kube-proxy then sees an ordinary ClusterIP packet: iptables and nftables modes
are what is tested; IPVS binds ClusterIPs to a dummy device and is untested (WARN).
Where the nodes can be looked into (the lab) the running processes' flags are read;
else ConfigMap kube-system/kube-proxy (`mode:` of its KubeProxyConfiguration, empty
meaning iptables) or the kube-proxy DaemonSet's `--proxy-mode`; WARN "unknown" when
neither is visible.
"""

from __future__ import annotations

from typing import Any

import yaml

from kube import errors, resources
from ops.diagnose.model import Check, failed, passed, warned
from ops.diagnose.target import NotChecked, Target

JSON = dict[str, Any]
GROUP = "kube-proxy-mode"
NAME = "kube-proxy mode"
SUPPORTED = ("iptables", "nftables")
NAMESPACE, OBJECT = "kube-system", "kube-proxy"
DAEMONSETS = resources.Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True)


def mode_of_flags(argv: list[str]) -> str | None:
    """`--proxy-mode X` or `--proxy-mode=X` in a command line; None when absent."""
    for i, arg in enumerate(argv):
        if arg.startswith("--proxy-mode="):
            return arg.split("=", 1)[1]
        if arg == "--proxy-mode" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def mode_of_config(text: str) -> str | None:
    """`mode` of a KubeProxyConfiguration document ("" is the default: iptables)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(doc, dict) or doc.get("kind", "KubeProxyConfiguration") != \
            "KubeProxyConfiguration":
        return None
    return str(doc.get("mode") or "iptables")


def _from_api(t: Target) -> tuple[str, str] | None:
    """(mode, where it was read) from the API, or None."""
    try:
        cm = t.state.read_one(resources.CONFIGMAPS, OBJECT, namespace=NAMESPACE)
        for key, text in ((cm or {}).get("data") or {}).items():
            mode = mode_of_config(str(text))
            if mode is not None:
                return mode, f"ConfigMap {NAMESPACE}/{OBJECT} {key}"
        ds = t.state.read_one(DAEMONSETS, OBJECT, namespace=NAMESPACE)
    except Exception as exc:
        if not errors.is_forbidden(exc):
            raise
        return None
    for container in ((((ds or {}).get("spec") or {}).get("template") or {}).get("spec")
                      or {}).get("containers") or []:
        mode = mode_of_flags([*(container.get("command") or []), *(container.get("args") or [])])
        if mode is not None:
            return mode, f"DaemonSet {NAMESPACE}/{OBJECT} flags"
    return None


def verdict(mode: str, where: str, *, cluster: str) -> Check:
    if mode in SUPPORTED:
        return passed(GROUP, NAME, f"{mode} ({where})", cluster=cluster)
    if mode == "ipvs":
        return warned(GROUP, NAME, f"ipvs ({where}): not tested with Globalnet",
                      "prefer --proxy-mode iptables or nftables", cluster=cluster)
    return failed(GROUP, NAME, f"{mode or 'unknown'} ({where}): not supported",
                  "run kube-proxy in iptables or nftables mode", cluster=cluster)


def run(t: Target) -> list[Check]:
    try:
        modes = t.access.kube_proxy_modes()
    except NotChecked:
        modes = {}
    if modes:
        distinct = sorted(set(modes.values()))
        if len(distinct) > 1:
            return [failed(GROUP, NAME, "nodes differ: " + ", ".join(
                f"{node} {mode}" for node, mode in sorted(modes.items())),
                "run every node's kube-proxy in one mode", cluster=t.name)]
        return [verdict(distinct[0], f"{len(modes)} nodes' kube-proxy flags, {t.access.how}",
                        cluster=t.name)]
    found = _from_api(t)
    if found is None:
        return [warned(GROUP, NAME, f"unknown: no ConfigMap or DaemonSet {NAMESPACE}/{OBJECT} "
                       "readable", "make sure kube-proxy runs in iptables or nftables mode",
                       cluster=t.name)]
    return [verdict(*found, cluster=t.name)]
