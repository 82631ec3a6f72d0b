"""`gnctl deploy-broker`, `join`, `leave`, `uninstall` and the Broker identities against a
real 1.20 API server (with the token controller, no kubelet).

The session's API server plays the Broker, each test in a Broker namespace of its
own (the hidden ``--broker-namespace``), and one member: join's agents never become
ready here (no kubelet), which is how the failure path is tested; joins that reach
running agents are tested in the lab (tests/e2e/test_install_lab.py).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import broker as broker_identity
from deploy import brokerinfo, discover, install
from globalnet.broker import BrokerGlobalnet
from kube import crds, crud, errors, names, resources
from kube.client import api_client_from_dict

pytestmark = pytest.mark.kube

RANGE = "242.60.0.0/16"
NODE = "gn-install-test-node"


def gnctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                          text=True, timeout=120)


class Broker:
    def __init__(self, kubeconfig: Path, tmp: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = f"broker-{uuid.uuid4().hex[:6]}"
        self.info_path = tmp / "broker-info.subm"

    def deploy(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return gnctl("deploy-broker", "--kubeconfig", str(self.kubeconfig), "--globalnet",
                     "--globalnet-cidr-range", RANGE, "--default-globalnet-cluster-size",
                     "256", "--broker-namespace", self.namespace, "--out",
                     str(self.info_path), *extra)

    def info(self) -> brokerinfo.BrokerInfo:
        return brokerinfo.read(self.info_path)

    def join(self, *extra: str, cluster: str = "c1",
             info: Path | None = None) -> subprocess.CompletedProcess[str]:
        return gnctl("join", str(info or self.info_path), "--kubeconfig", str(self.kubeconfig),
                     "--clusterid", cluster, "--clustercidr", "10.244.0.0/16",
                     "--servicecidr", "10.96.0.0/16", "--gateway-node", NODE, *extra)


@pytest.fixture
def broker(control_plane: Any, api_client: Any, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(control_plane.kubeconfig, tmp_path)
    nodes = crud.ResourceClient(api_client, resources.NODES)
    nodes.create_if_absent({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    yield b
    install.uninstall(api_client, progress=lambda _: None)
    crds.install_crds(api_client)  # uninstall took the CRDs; later tests share this server
    nodes.delete_if_exists(NODE)
    namespaces = crud.ResourceClient(api_client, resources.NAMESPACES)
    for ns in namespaces.list().items:
        if ns["metadata"]["name"].startswith(b.namespace):
            namespaces.delete_if_exists(ns["metadata"]["name"])


def nothing_installed(api: Any, b: Broker, cluster: str = "c1") -> list[str]:
    """What of a join is left behind (empty: nothing)."""
    left = []
    if crud.ResourceClient(api, resources.CLUSTERS).get_or_none(
            cluster, namespace=b.namespace):
        left.append("Cluster on the Broker")
    record = BrokerGlobalnet(api, namespace=b.namespace).read()
    if record and cluster in record.clusters:
        left.append("global CIDR")
    if crud.ResourceClient(api, resources.SERVICE_ACCOUNTS).get_or_none(
            names.broker_member_account(cluster), namespace=b.namespace):
        left.append("member identity")
    ns = crud.ResourceClient(api, resources.NAMESPACES).get_or_none(
        names.broker_member_namespace(cluster, b.namespace))
    if ns and not (ns.get("metadata") or {}).get("deletionTimestamp"):
        left.append("member namespace")
    ds = crud.ResourceClient(api, install.manifests.KINDS["DaemonSet"])
    if ds.list(namespace=names.CLUSTER_NAMESPACE).items:
        left.append("DaemonSets")
    return left


def test_deploy_broker_writes_a_private_broker_info_file(broker: Broker) -> None:
    done = broker.deploy()
    assert done.returncode == 0, done.stderr
    assert "broker-info written" in done.stdout
    assert stat.S_IMODE(os.stat(broker.info_path).st_mode) == 0o600
    info = broker.info()
    assert (info.namespace, info.globalnet, info.globalnet_cidr_range,
            info.globalnet_cluster_size) == (broker.namespace, True, RANGE, 256)
    assert "BEGIN CERTIFICATE" in info.ca_pem
    # The token is the join identity's: it may read the Broker namespace...
    api = install.broker_client(info)
    assert crud.ResourceClient(api, resources.NAMESPACES).get(broker.namespace)
    # ... but not, say, the Broker cluster's Secrets elsewhere.
    with pytest.raises(Exception) as denied:
        crud.ResourceClient(api, resources.SECRETS).list(namespace="kube-system")
    assert errors.status_of(denied.value) == 403
    # Again: the record is kept, the file written again.
    again = broker.deploy("--globalnet-cidr-range", "242.61.0.0/16")
    assert again.returncode == 0, again.stderr
    assert "kept as it is" in again.stdout
    assert broker.info().globalnet_cidr_range == RANGE


def test_join_dry_run_prints_the_objects_and_changes_nothing(
        broker: Broker, api_client: Any) -> None:
    assert broker.deploy().returncode == 0
    done = broker.join("--dry-run")
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    kinds = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert ("DaemonSet", install.manifests.GATEWAY_DAEMONSET) in kinds
    assert ("Secret", names.BROKER_KUBECONFIG_SECRET) in kinds
    assert ("ServiceAccount", names.broker_member_account("c1")) in kinds
    gateway = next(obj for obj in objects if obj["kind"] == "DaemonSet"
                   and obj["metadata"]["name"] == install.manifests.GATEWAY_DAEMONSET)
    (agent,) = [c for c in gateway["spec"]["template"]["spec"]["containers"]
                if c["name"] == "globalnet"]
    args = agent["args"]
    assert "--global-cidr=242.60.0.0/24" in args  # the first free /24 of the range
    assert "nothing was changed" in done.stderr
    assert nothing_installed(api_client, broker) == []


@pytest.mark.parametrize("damage", ["garbage", "edited", "missing", "forged-token"])
def test_a_bad_broker_info_file_is_refused_in_one_line(
        broker: Broker, api_client: Any, tmp_path: Path, damage: str) -> None:
    assert broker.deploy().returncode == 0
    bad = tmp_path / "bad.subm"
    text = broker.info_path.read_text()
    if damage == "garbage":
        bad.write_text("this is not it\n")
    elif damage == "edited":
        doc = json.loads(base64.b64decode(text))
        doc["server"] = "https://203.0.113.9:6443"
        bad.write_text(base64.b64encode(json.dumps(doc).encode()).decode())
    elif damage == "forged-token":  # consistent file, token the Broker never issued
        info = broker.info()
        forged = brokerinfo.BrokerInfo(**{**info.__dict__, "token": info.token[:-4] + "AAAA"})
        bad.write_text(forged.encode())
    done = broker.join(info=bad)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnctl: "), done.stderr
    expected = {"garbage": "not a broker-info file", "edited": "altered or damaged",
                "missing": "not found", "forged-token": "refused the broker-info token"}
    assert expected[damage] in lines[0]
    assert nothing_installed(api_client, broker) == []


def test_bad_flags_are_refused_before_any_cluster_is_contacted(broker: Broker) -> None:
    assert broker.deploy().returncode == 0
    for extra, message in ((("--clusterid", "East"), "is not a DNS label"),
                           (("--clustercidr", "10.244.0.1/16"), "host bits set"),
                           (("--timeout", "0"), "must be positive")):
        done = gnctl("join", str(broker.info_path), "--kubeconfig", "/nonexistent",
                     "--clusterid", "c1", *extra)
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_context_and_unreachable_api_server_are_one_line(
        broker: Broker, tmp_path: Path) -> None:
    assert broker.deploy().returncode == 0
    done = broker.join("--context", "kind-nowhere")
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"gnctl: kubeconfig {broker.kubeconfig}: "
                                          "no context 'kind-nowhere' (its contexts: ")
    config = yaml.safe_load(broker.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    done = gnctl("join", str(broker.info_path), "--kubeconfig", str(dead), "--clusterid", "c1",
                 "--clustercidr", "10.244.0.0/16", "--servicecidr", "10.96.0.0/16")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnctl: cannot reach the API server"), \
        done.stderr


def test_a_used_cluster_id_and_a_taken_global_cidr_are_refused(
        broker: Broker, api_client: Any) -> None:
    assert broker.deploy().returncode == 0
    info = broker.info()
    # Another cluster (another kube-system UID) holds "c2" and 242.60.1.0/24.
    clusters = crud.ResourceClient(api_client, resources.CLUSTERS)
    clusters.create({"metadata": {"name": "c2", "namespace": broker.namespace, "annotations": {
        names.CLUSTER_UID_ANNOTATION: "another-cluster"}},
        "spec": {"cluster_id": "c2", "cluster_cidr": [], "service_cidr": [],
                 "global_cidr": ["242.60.1.0/24"]}})
    BrokerGlobalnet(api_client, namespace=info.namespace).join(
        "c2", requested_cidr="242.60.1.0/24")
    done = broker.join(cluster="c2")
    assert done.returncode == 1
    assert "cluster ID c2 is already used by another cluster" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = broker.join("--globalnet-cidr", "242.60.1.0/24", cluster="c3")
    assert done.returncode == 1
    assert "overlaps 242.60.1.0/24 of cluster c2" in done.stderr
    assert nothing_installed(api_client, broker, "c3") == []


def test_a_join_whose_agents_never_run_is_undone(broker: Broker, api_client: Any) -> None:
    """No kubelet here: the DaemonSets never get ready, join gives up and leaves nothing."""
    assert broker.deploy().returncode == 0
    done = broker.join("--timeout", "3")
    assert done.returncode == 1
    assert "not ready within 3 s" in done.stderr, done.stderr
    assert "undoing" in done.stdout
    assert nothing_installed(api_client, broker) == []
    assert crud.ResourceClient(api_client, resources.SERVICE_ACCOUNTS).get_or_none(
        "globalnet-globalnet", namespace=names.CLUSTER_NAMESPACE) is None


def member_api(info: brokerinfo.BrokerInfo, api: Any, cluster: str) -> Any:
    token, _ = broker_identity.account_token(api, names.broker_member_account(cluster),
                                             info.namespace)
    return api_client_from_dict(yaml.safe_load(info.kubeconfig(token=token)))


def endpoint(cluster: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": resources.SUBMARINER_ENDPOINTS.api_version, "kind": "Endpoint",
            "metadata": {"name": f"{cluster}-gw", "namespace": namespace},
            "spec": {"cluster_id": cluster, "cable_name": f"{cluster}-gw",
                     "hostname": "gw", "subnets": [], "private_ip": "198.18.0.11",
                     "backend": "vxlan"}}


def test_a_member_identity_writes_only_its_own_namespace_until_revoked(
        broker: Broker, api_client: Any) -> None:
    assert broker.deploy().returncode == 0
    info = broker.info()
    join_api = install.broker_client(info)
    for cluster in ("c1", "c2"):
        broker_identity.apply_all(join_api, broker_identity.member_objects(cluster,
                                                                           info.namespace))
    c1 = member_api(info, api_client, "c1")
    own, other = (names.broker_member_namespace(c, info.namespace) for c in ("c1", "c2"))
    endpoints = crud.ResourceClient(c1, resources.SUBMARINER_ENDPOINTS)
    endpoints.create(endpoint("c1", own))
    for forbidden in (lambda: endpoints.create(endpoint("c1", other)),
                      lambda: crud.ResourceClient(c1, resources.CLUSTERS).create(
                          {"metadata": {"name": "c9", "namespace": info.namespace},
                           "spec": {"cluster_id": "c9"}}),
                      lambda: crud.ResourceClient(c1, resources.CONFIGMAPS).get(
                          names.GLOBALNET_INFO_CONFIGMAP, namespace=info.namespace)):
        with pytest.raises(Exception) as denied:
            forbidden()
        assert errors.status_of(denied.value) == 403
    # c2 reads what c1 published; c1 reads the Cluster objects.
    c2 = member_api(info, api_client, "c2")
    seen = crud.ResourceClient(c2, resources.SUBMARINER_ENDPOINTS).list(namespace=own).items
    assert [e["metadata"]["name"] for e in seen] == ["c1-gw"]
    crud.ResourceClient(c1, resources.CLUSTERS).list(namespace=info.namespace)
    # c2 cannot change c1's objects.
    with pytest.raises(Exception) as denied:
        crud.ResourceClient(c2, resources.SUBMARINER_ENDPOINTS).delete("c1-gw", namespace=own)
    assert errors.status_of(denied.value) == 403
    # Revoked: its own namespace's binding is gone at once (403), and as soon as the API
    # server's token cache (10 s) lets go of it, the token authenticates nobody (401).
    assert broker_identity.revoke_member(join_api, "c1", info.namespace)
    revoked = time.monotonic()
    with pytest.raises(Exception) as denied:
        endpoints.create(endpoint("c1", own))
    assert errors.status_of(denied.value) in (401, 403, 404)
    status = None
    while status != 401 and time.monotonic() < revoked + 15:  # the 10 s token cache
        try:
            crud.ResourceClient(c1, resources.CLUSTERS).list(namespace=info.namespace)
        except Exception as exc:
            status = errors.status_of(exc)
        time.sleep(0.05)
    print(f"revoked token refused (401) {time.monotonic() - revoked:.2f} s after revocation")
    assert status == 401


def test_cidr_discovery_names_its_source_or_the_flag_to_pass(
        api_client: Any, control_plane: Any) -> None:
    found = discover.service_cidrs(api_client)
    assert found == discover.Found((control_plane.config.service_cidr,),
                                   "the API server's answer to a Service outside its range")
    probes = [s for s in crud.ResourceClient(api_client, resources.SERVICES).list(
        namespace="default").items if s["metadata"]["name"].startswith("globalnet-cidr-probe")]
    assert probes == []
    configmaps = crud.ResourceClient(api_client, resources.CONFIGMAPS)
    configmaps.delete_if_exists("kube-proxy", namespace="kube-system")
    with pytest.raises(discover.DiscoveryError, match="pass --clustercidr"):
        discover.pod_cidrs(api_client)
    configmaps.create({"metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                       "data": {"config.conf": "clusterCIDR: 10.244.0.0/16\nmode: iptables\n"}})
    try:
        assert discover.pod_cidrs(api_client) == discover.Found(
            ("10.244.0.0/16",), "the kube-proxy ConfigMap's clusterCIDR")
    finally:
        configmaps.delete_if_exists("kube-proxy", namespace="kube-system")


def test_a_token_secret_the_token_controller_deleted_is_applied_again(
        api_client: Any) -> None:
    """The token controller deletes a token Secret whose ServiceAccount its cache
    does not hold yet; waiting for the token must not wait for a Secret that is
    gone (here deleted by hand after the account was made)."""
    from kube.testing import temporary_namespace

    with temporary_namespace(api_client, "tok") as ns:
        broker_identity.apply_all(api_client, broker_identity._account("member", ns))
        secrets = crud.ResourceClient(api_client, resources.SECRETS)
        secrets.delete_if_exists(broker_identity.token_secret_name("member"), namespace=ns)
        token, ca = broker_identity.account_token(api_client, "member", ns, timeout=30)
        assert token and "BEGIN CERTIFICATE" in ca
