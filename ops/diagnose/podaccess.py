"""Node access on a real cluster: one short-lived probe pod on the gateway node.

The pod runs the Globalnet image (the gateway DaemonSet's, which has nft and
python3) in the host's network namespace, privileged, pinned with `nodeName`; it
lists `inet globalnet` as JSON, compares the ingress maps' keys with the expected
global IPs it is given and reports through its termination message (verify/pods.py
reads it), which stays far below the kubelet's 4 KiB cap because only the missing
addresses (at most MAX_MISSING) are written. It is deleted whatever happens. DNS
and kube-proxy's flags are not read this way (the API answers for those).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from deploy import manifests
from kube import objects as o
from kube import resources
from kube.crud import ResourceClient
from ops.cluster import ClusterState
from ops.diagnose.target import DatapathReport, NotChecked

JSON = dict[str, Any]
PROBE_TIMEOUT_S = 45.0
MAX_MISSING = 100
# argv[1]: the expected global IPs (JSON), argv[2] MAX_MISSING, argv[3] where to write
# (default: the termination message);
# writes {"present", "mappings", "missing", "missing_count"}.
SCRIPT = r"""
import json, subprocess, sys
MAX_MISSING = int(sys.argv[2])
OUT = sys.argv[3] if len(sys.argv) > 3 else "/dev/termination-log"
expected = json.loads(sys.argv[1])
done = subprocess.run(["nft", "-j", "list", "table", "inet", "globalnet"],
                      capture_output=True, text=True)
report = {"present": done.returncode == 0, "mappings": 0, "missing": []}
if done.returncode == 0:
    found = set()
    for obj in json.loads(done.stdout).get("nftables", []):
        s = obj.get("map") or obj.get("set") or {}
        if s.get("name") not in ("ingress-ips", "ingress-ports"):
            continue
        for item in s.get("elem", []):
            key = item[0] if isinstance(item, list) else item
            if isinstance(key, dict) and "elem" in key:
                key = key["elem"]["val"]
            if isinstance(key, dict) and "concat" in key:
                key = key["concat"][0]
            found.add(str(key))
    report["mappings"] = len(found)
    missing = [ip for ip in expected if ip not in found]
    report["missing"], report["missing_count"] = missing[:MAX_MISSING], len(missing)
open(OUT, "w").write(json.dumps(report))
"""


def probe_pod(*, name: str, namespace: str, node: str, image: str, expected: Sequence[str]
              ) -> JSON:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "gnctl-diagnose"}},
            "spec": {"nodeName": node, "hostNetwork": True, "restartPolicy": "Never",
                     "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": False,
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "probe", "image": image,
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": ["python3", "-c", SCRIPT,
                                                 json.dumps(list(expected)),
                                                 str(MAX_MISSING)],
                                     "securityContext": {"privileged": True},
                                     "terminationMessagePolicy": "File"}]}}


class PodAccess:
    how = "probe pod"

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def _image(self) -> str:
        for w in self.state.workloads():
            if o.name(w) == manifests.GATEWAY_DAEMONSET:
                containers = ((o.spec(w).get("template") or {}).get("spec") or {}).get(
                    "containers") or []
                if containers:
                    return str(containers[0].get("image"))
        raise NotChecked(f"no DaemonSet {manifests.GATEWAY_DAEMONSET} to take the image from")

    def datapath(self, node: str, datapath: str, expected: Sequence[str]) -> DatapathReport:
        from verify.pods import await_probe

        if datapath != "nftables":
            raise NotChecked("the eBPF maps are read in the lab only (gnctl show nat "
                             "--datapath ebpf on the node)")
        pods = ResourceClient(self.state.api, resources.PODS)
        name = f"gnctl-diagnose-{uuid.uuid4().hex[:6]}"
        ns = self.state.namespace
        try:
            pods.create(probe_pod(name=name, namespace=ns, node=node, image=self._image(),
                                  expected=expected))
        except Exception as exc:
            raise NotChecked(f"cannot start a probe pod in {ns}: {exc}") from None
        try:
            result = await_probe(pods, name, ns, timeout=PROBE_TIMEOUT_S,
                                 stop=threading.Event())
        finally:
            pods.delete_if_exists(name, namespace=ns)
        if result.exit_code != 0 or "present" not in result.data:
            raise NotChecked(f"the probe pod on {node} gave no answer ({result.error})")
        missing = tuple(str(ip) for ip in result.data.get("missing") or [])
        return DatapathReport(bool(result.data["present"]),
                              int(result.data.get("mappings") or 0), missing,
                              int(result.data.get("missing_count") or len(missing)))

    def dns_answers(self) -> bool:
        raise NotChecked("asked of CoreDNS's configuration instead")

    def kube_proxy_modes(self) -> dict[str, str]:
        raise NotChecked("read from the API instead")
