"""lab/node.py's rendered configuration: CNI, kubelet, the mount namespace's script.

Address conventions: lab/topology.py (node n of every cluster: 172.18.0.10+n,
pods 10.244.n.0/24 with the node side of pod veths on .1).
"""

from __future__ import annotations

from pathlib import Path

from lab.node import NodeLayout, cni_config, holder_script, kubelet_config
from lab.pki import ControlPlanePKI
from lab.topology import LabSpec, plan_lab

BASE = Path("/run/globalnet/lab/demo/c2/n1")


def _layout(node: int = 1) -> NodeLayout:
    plan = plan_lab(LabSpec(name="demo", clusters=2, nodes=2))
    return NodeLayout("demo", "c2", plan.cluster("c2").nodes[node], BASE)


def _pki() -> ControlPlanePKI:
    d = Path("/pki")
    return ControlPlanePKI(
        ca_cert=d / "ca.crt", ca_key=d / "ca.key", serving_cert=d / "s.crt",
        serving_key=d / "s.key", sa_key=d / "sa.key", sa_pub=d / "sa.pub",
        token_file=d / "t.csv", token="t", kubelet_client_cert=d / "k.crt",
        kubelet_client_key=d / "k.key",
    )


def test_cni_is_routed_ptp_from_the_node_pod_range_without_masquerade() -> None:
    lay = _layout()
    conf = cni_config(lay.node, lay.ipam_dir)
    (plugin,) = conf["plugins"]
    assert plugin["type"] == "ptp" and plugin["ipMasq"] is False
    ipam = plugin["ipam"]
    assert ipam["type"] == "host-local"
    assert ipam["ranges"] == [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]]
    assert ipam["dataDir"] == str(BASE / "cni-ipam")
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}]


def test_kubelet_serves_on_the_node_address_with_webhook_auth_and_its_own_cgroup() -> None:
    conf = kubelet_config(_layout(), _pki())
    assert conf["address"] == "172.18.0.11"
    assert conf["readOnlyPort"] == 0
    assert conf["authentication"]["anonymous"] == {"enabled": False}
    assert conf["authentication"]["webhook"]["enabled"] is True
    assert conf["authentication"]["x509"] == {"clientCAFile": "/pki/ca.crt"}
    assert conf["authorization"] == {"mode": "Webhook"}
    assert conf["cgroupDriver"] == "cgroupfs"
    assert conf["cgroupRoot"] == "/globalnet/demo/c2-node-1"
    assert conf["maxOpenFiles"] == 20000 and conf["oomScoreAdj"] == 0
    assert conf["protectKernelDefaults"] is False and conf["failSwapOn"] is False
    assert conf["imageGCHighThresholdPercent"] == 100


def test_the_mount_namespace_makes_the_hard_coded_paths_private() -> None:
    script = holder_script(_layout())
    assert f"upperdir={BASE}/var-lib/upper" in script and script.count("-t overlay") == 2
    assert f"mount --bind {BASE}/shim-sockets /run/containerd/s" in script
    assert script.splitlines()[-1] == f"exec tail -f {BASE}/mounts.ready"
    # Of /sys only the node's own bpffs is mounted (a fresh, shared-in-namespace
    # instance); /sys itself is never remounted (ip netns exec would).
    sys_lines = [line for line in script.splitlines() if "/sys" in line]
    assert sys_lines == ["mount -t bpf bpf /sys/fs/bpf", "mount --make-shared /sys/fs/bpf"]


def test_kubelet_and_api_server_certificates_come_from_the_cluster_ca(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from lab.pki import create_pki, issue_kubelet_serving, load_pki

    created = create_pki(tmp_path, ip_sans=["127.0.0.1"], dns_sans=["localhost"])
    pki = load_pki(tmp_path)
    assert pki == created
    issue_kubelet_serving(pki, node_name="c1-node-0", node_ip="172.18.0.10",
                          cert_path=tmp_path / "n" / "kubelet.crt",
                          key_path=tmp_path / "n" / "kubelet.key")
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate((tmp_path / "n" / "kubelet.crt").read_bytes())
    client = x509.load_pem_x509_certificate(pki.kubelet_client_cert.read_bytes())
    for cert in (serving, client):
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["172.18.0.10"]
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # kubelet's webhook authorizer asks the API server: system:masters may do all.
    orgs = client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
