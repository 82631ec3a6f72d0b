"""deploy.manifests: the rendered objects hang together, roles are least-privilege,
capabilities are the stated ones and every command line parses with the agent's own
argparse."""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import manifests as m
from deploy import rbac
from kube import crds, names

JSON = dict[str, Any]


def options(**overrides: Any) -> m.Options:
    base: dict[str, Any] = dict(cluster_id="c1", global_cidr="242.0.0.0/16",
                                cluster_cidrs=("10.244.0.0/16",),
                                service_cidrs=("10.96.0.0/16",))
    return m.Options(**{**base, **overrides})


def by_kind(objects: list[JSON], kind: str) -> list[JSON]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[JSON], kind: str, name: str) -> JSON:
    found = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def workloads(objects: list[JSON]) -> list[JSON]:
    return by_kind(objects, "DaemonSet") + by_kind(objects, "Deployment")


def containers(objects: list[JSON]) -> Iterator[tuple[JSON, JSON]]:
    for workload in workloads(objects):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield workload, container


@pytest.fixture(params=["nftables", "ebpf"])
def rendered(request: pytest.FixtureRequest) -> list[JSON]:
    return m.render(options(datapath=request.param, clusterset_ip_cidr="244.0.16.0/20"))


def test_crds_are_kube_crds_and_first(rendered: list[JSON]) -> None:
    expected = crds.load_crd_manifests()
    assert rendered[: len(expected)] == expected
    assert not by_kind(rendered[len(expected):], "CustomResourceDefinition")
    assert rendered[len(expected)]["kind"] == "Namespace"


def test_objects_are_unique_and_in_the_namespace(rendered: list[JSON]) -> None:
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered]
    assert len(keys) == len(set(keys))
    for obj in rendered:
        resource = m.resource_of(obj)
        assert ("namespace" in obj["metadata"]) == resource.namespaced, obj["metadata"]
        if resource.namespaced:
            assert obj["metadata"]["namespace"] == names.CLUSTER_NAMESPACE


def test_selectors_match_pod_templates(rendered: list[JSON]) -> None:
    for workload in workloads(rendered):
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector and selector.items() <= labels.items(), workload["metadata"]["name"]
    # No two workloads' selectors pick the same pods.
    selectors = [tuple(sorted(w["spec"]["selector"]["matchLabels"].items()))
                 for w in workloads(rendered)]
    assert len(selectors) == len(set(selectors))
    service = one(rendered, "Service", m.LIGHTHOUSE_DNS_SERVICE)
    deployment = one(rendered, "Deployment", m.LIGHTHOUSE_DEPLOYMENT)
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    named_ports = {(p["name"], p["protocol"])
                   for c in deployment["spec"]["template"]["spec"]["containers"]
                   for p in c.get("ports", [])}
    assert {(p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]} <= named_ports
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {
        (53, "UDP"), (53, "TCP")}


def test_gateway_daemonset_runs_on_gateway_nodes_only(rendered: list[JSON]) -> None:
    gateway = one(rendered, "DaemonSet", m.GATEWAY_DAEMONSET)["spec"]["template"]["spec"]
    assert gateway["nodeSelector"] == {names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE}
    assert gateway["hostNetwork"] is True
    assert [c["name"] for c in gateway["containers"]] == [rbac.GATEWAY_ENGINE, rbac.GLOBALNET]
    # The Broker syncer runs in the engine's process, with its own identity mounted.
    engine = gateway["containers"][0]
    assert "--syncer-kubeconfig=/etc/globalnet/kube-broker-syncer/kubeconfig" in engine["args"]
    assert {v["name"] for v in engine["volumeMounts"]} >= {
        f"kube-{rbac.GATEWAY_ENGINE}", f"kube-{rbac.BROKER_SYNCER}", "broker-kubeconfig"}
    route = one(rendered, "DaemonSet", m.ROUTE_AGENT_DAEMONSET)["spec"]["template"]["spec"]
    assert "nodeSelector" not in route and route["hostNetwork"] is True
    assert route["tolerations"] == [{"operator": "Exists"}]
    lighthouse = one(rendered, "Deployment", m.LIGHTHOUSE_DEPLOYMENT)["spec"]
    assert lighthouse["replicas"] == 1 and "hostNetwork" not in lighthouse["template"]["spec"]


def test_every_service_account_is_bound_and_used(rendered: list[JSON]) -> None:
    accounts = {o["metadata"]["name"] for o in by_kind(rendered, "ServiceAccount")}
    assert accounts == {m.service_account_name(c) for c in rbac.COMPONENTS}
    roles = {(o["kind"], o["metadata"]["name"]) for o in by_kind(rendered, "Role")
             + by_kind(rendered, "ClusterRole")}
    bound: set[str] = set()
    for binding in by_kind(rendered, "RoleBinding") + by_kind(rendered, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        assert (ref["kind"], ref["name"]) in roles, ref
        assert (binding["kind"] == "RoleBinding") == (ref["kind"] == "Role")
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["namespace"] == names.CLUSTER_NAMESPACE
            bound.add(subject["name"])
    assert bound == accounts
    # Every role is bound (none is left lying around).
    assert len(roles) == len(by_kind(rendered, "RoleBinding")
                             + by_kind(rendered, "ClusterRoleBinding"))
    # One token Secret per account, and each container runs with its own.
    tokens = {o["metadata"]["annotations"]["kubernetes.io/service-account.name"]: o
              for o in by_kind(rendered, "Secret")}
    assert set(tokens) == accounts
    assert all(t["type"] == "kubernetes.io/service-account-token" for t in tokens.values())
    used = []
    for workload, container in containers(rendered):
        pod = workload["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        kube = [mt for mt in container["volumeMounts"] if mt["mountPath"] == m.KUBE_DIR]
        assert len(kube) == 1
        sources = volumes[kube[0]["name"]]["projected"]["sources"]
        secret = next(s["secret"]["name"] for s in sources if "secret" in s)
        assert secret == m.token_secret_name(container["name"])
        used.append(container["name"])
        # A component running inside another's process (the Broker syncer in the
        # engine's) gets its own token in a directory of its own.
        for mount in container["volumeMounts"]:
            if mount["mountPath"].startswith(f"{m.KUBE_DIR}-"):
                component = mount["mountPath"].removeprefix(f"{m.KUBE_DIR}-")
                sources = volumes[mount["name"]]["projected"]["sources"]
                secret = next(s["secret"]["name"] for s in sources if "secret" in s)
                assert secret == m.token_secret_name(component)
                used.append(component)
    assert sorted(used) == sorted(rbac.COMPONENTS)


def test_no_wildcards_and_no_secrets_in_any_role(rendered: list[JSON]) -> None:
    for role in by_kind(rendered, "Role") + by_kind(rendered, "ClusterRole"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert not {"secrets", "serviceaccounts", "roles", "clusterroles", "rolebindings",
                        "clusterrolebindings"} & set(rule["resources"]), rule
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(
                rule["verbs"]), rule
            assert not rule.get("nonResourceURLs")


def test_rules_name_only_resources_the_code_uses() -> None:
    for component, rules in rbac.RULES.items():
        assert rules, component
        for rule in rules:
            assert rule.verbs and len(set(rule.verbs)) == len(rule.verbs)
            assert set(rule.verbs) <= {"get", "list", "watch", "create", "update", "patch",
                                       "delete"}
            if rule.subresource:
                assert rule.subresource == "status" and rule.verbs == ("update",)
            if rule.resource_names:
                assert "create" not in rule.verbs  # RBAC cannot limit create by name
    # The route agent only reads.
    for rule in rbac.RULES[rbac.ROUTE_AGENT]:
        assert set(rule.verbs) <= {"get", "list", "watch"}


def test_globalnet_lease_rule_names_the_cluster() -> None:
    rules = rbac.rules_for(rbac.GLOBALNET, "east", rbac.Scope.NAMESPACE)
    named = [r for r in rules if "resourceNames" in r]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "verbs": ["get", "update"],
                      "resourceNames": [names.globalnet_lease("east")]}]


def capabilities(objects: list[JSON]) -> dict[str, set[str]]:
    out = {}
    for _, container in containers(objects):
        ctx = container["securityContext"]
        assert ctx["capabilities"]["drop"] == ["ALL"]
        added = set(ctx["capabilities"].get("add", []))
        # The API refuses allowPrivilegeEscalation=false beside SYS_ADMIN.
        if "SYS_ADMIN" in added:
            assert "allowPrivilegeEscalation" not in ctx
        else:
            assert ctx["allowPrivilegeEscalation"] is False
        assert not ctx.get("privileged")
        out[container["name"]] = set(ctx["capabilities"].get("add", []))
    return out


def test_capabilities_nftables() -> None:
    objects = m.render(options())
    assert capabilities(objects) == {
        rbac.GATEWAY_ENGINE: {"NET_ADMIN", "NET_RAW"},
        rbac.GLOBALNET: {"NET_ADMIN"},
        rbac.ROUTE_AGENT: {"NET_ADMIN"},
        rbac.LIGHTHOUSE_AGENT: set(),
    }
    gateway = one(objects, "DaemonSet", m.GATEWAY_DAEMONSET)["spec"]["template"]["spec"]
    assert not [v for v in gateway["volumes"] if "hostPath" in v]


def test_capabilities_ebpf_add_sys_admin_and_the_host_bpffs() -> None:
    objects = m.render(options(datapath="ebpf"))
    caps = capabilities(objects)
    assert caps == {**capabilities(m.render(options())),
                    rbac.GLOBALNET: {"NET_ADMIN", "SYS_ADMIN"}}
    gateway = one(objects, "DaemonSet", m.GATEWAY_DAEMONSET)["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"]["path"] for v in gateway["volumes"] if "hostPath" in v}
    assert host == {"bpffs": "/sys/fs/bpf", "lib-modules": "/lib/modules",
                    "usr-src": "/usr/src"}
    globalnet = gateway["containers"][1]
    assert {mt["name"] for mt in globalnet["volumeMounts"]} >= set(host)
    assert "--bpffs=/sys/fs/bpf" in globalnet["args"]
    # Only the Globalnet container sees the host paths.
    for container in gateway["containers"][:1]:
        assert not {mt["name"] for mt in container["volumeMounts"]} & set(host)


@pytest.mark.parametrize("driver", ["wireguard", "ipsec"])
def test_a_userspace_cable_runs_in_a_container_of_its_own(driver: str) -> None:
    """The tunnel daemon lives in the pod's `cable` container, so an engine restart
    keeps it; the engine configures it through a directory both mount, keeps its
    keys on the node, and is told not to start a daemon itself."""
    objects = m.render(options(cable_driver=driver))
    gateway = one(objects, "DaemonSet", m.GATEWAY_DAEMONSET)["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in gateway["containers"]}
    assert set(by_name) == {rbac.GATEWAY_ENGINE, rbac.GLOBALNET, "cable"}
    assert capabilities(objects)["cable"] == (
        {"NET_ADMIN"} if driver == "wireguard" else {"NET_ADMIN", "NET_BIND_SERVICE"})
    engine, cable = by_name[rbac.GATEWAY_ENGINE], by_name["cable"]
    assert f"--cable-driver={driver}" in engine["args"]
    assert "--cable-daemon=external" in engine["args"]
    assert {"name": "cable-run", "mountPath": m.CABLE_RUN_DIRS[driver]} in \
        engine["volumeMounts"]
    assert {"name": "cable-run", "mountPath": m.CABLE_DAEMON_RUN_DIRS[driver]} in \
        cable["volumeMounts"]
    if driver == "ipsec":
        # The clusterset's PSK from its Secret; charon's vici socket in the shared /run.
        assert f"--psk-file={m.IPSEC_DIR}/{names.IPSEC_PSK_KEY}" in engine["args"]
        assert f"--cable-run-dir={m.CABLE_RUN_DIRS['ipsec']}" in engine["args"]
        psk = next(v for v in gateway["volumes"] if v["name"] == "ipsec-psk")
        assert psk["secret"]["secretName"] == names.IPSEC_PSK_SECRET
        assert cable["command"][:4] == ["python3", "-m", "datapath.ipsec", "daemon"]
    host = {v["name"]: v["hostPath"] for v in gateway["volumes"] if "hostPath" in v}
    assert host == {"cable-state": {"path": m.CABLE_STATE_DIR, "type": "DirectoryOrCreate"},
                    "dev-net-tun": {"path": "/dev/net/tun", "type": "CharDevice"}}
    assert {mt["name"] for mt in cable["volumeMounts"]} & set(host) == {"dev-net-tun"}
    assert {mt["name"] for mt in engine["volumeMounts"]} & set(host) == {"cable-state"}
    # VXLAN is the kernel's: no container, no host path, the engine's default daemon.
    plain = one(m.render(options()), "DaemonSet", m.GATEWAY_DAEMONSET)["spec"]["template"]
    assert [c["name"] for c in plain["spec"]["containers"]] == [rbac.GATEWAY_ENGINE,
                                                                rbac.GLOBALNET]
    assert "--cable-driver=vxlan" in plain["spec"]["containers"][0]["args"]


def test_the_ebpf_programs_go_on_the_vxlan_cable_device_only() -> None:
    from datapath import vxlan

    assert m.VXLAN_DEVICE == vxlan.IFNAME
    gateway = one(m.render(options(datapath="ebpf")), "DaemonSet", m.GATEWAY_DAEMONSET)
    args = gateway["spec"]["template"]["spec"]["containers"][1]["args"]
    assert f"--tunnel-dev={vxlan.IFNAME}" in args and "--node-name=$(NODE_NAME)" in args
    with pytest.raises(m.OptionsError, match="layer-3 TUN"):
        options(datapath="ebpf", cable_driver="wireguard")


def test_an_unknown_cable_driver_is_refused_in_one_line() -> None:
    with pytest.raises(m.OptionsError, match="cable driver 'gre': expected one of"):
        options(cable_driver="gre")


def test_unprivileged_components_run_as_non_root(rendered: list[JSON]) -> None:
    for _, container in containers(rendered):
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        if container["name"] == rbac.LIGHTHOUSE_AGENT:
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert container["image"] == m.DEFAULT_IMAGE
        assert container["imagePullPolicy"] == "IfNotPresent"


# --- command lines -------------------------------------------------------------------------

class Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse_with_agent(module: str, argv: list[str],
                     monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The agent's own parse_args(argv) where it has one (with its checks after
    argparse), else its main(argv) stopped right after argparse accepted `argv`."""
    mod = importlib.import_module(f"{module}.__main__" if module == "lighthouse.agent"
                                  else module)
    if hasattr(mod, "parse_args"):
        namespace: argparse.Namespace = mod.parse_args(argv)
        return namespace
    original = argparse.ArgumentParser.parse_args

    def parse(self: argparse.ArgumentParser, args: Any = None,
              namespace: Any = None) -> argparse.Namespace:
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    with pytest.raises(Parsed) as parsed:
        mod.main(argv)
    monkeypatch.undo()
    return parsed.value.namespace


def expand(container: JSON, values: dict[str, str]) -> list[str]:
    env = {e["name"] for e in container["env"]}
    out = []
    for arg in container["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"{container['name']}: $({var}) is not in its env"
            arg = arg.replace(f"$({var})", values[var])
        out.append(arg)
    return out


def test_command_lines_parse_with_the_agents_argparse(
        rendered: list[JSON], monkeypatch: pytest.MonkeyPatch) -> None:
    node = {"NODE_NAME": "gw-1", "NODE_IP": "172.18.0.2"}
    parsed = {}
    for _, container in containers(rendered):
        assert container["command"][:2] == ["python3", "-m"]
        module = container["command"][2]
        parsed[container["name"]] = parse_with_agent(module, expand(container, node),
                                                     monkeypatch)
    kubeconfig = Path(m.KUBE_DIR) / m.KUBECONFIG_KEY
    broker = Path(m.BROKER_DIR) / names.BROKER_KUBECONFIG_KEY
    for name, args in parsed.items():
        assert args.kubeconfig == kubeconfig, name
    engine = parsed[rbac.GATEWAY_ENGINE]
    assert (engine.node_name, engine.private_ip, engine.subnet, engine.cluster_id,
            engine.broker_kubeconfig) == ("gw-1", "172.18.0.2", ["242.0.0.0/16"], "c1", broker)
    agent = parsed[rbac.GLOBALNET]
    assert (agent.cluster_id, agent.global_cidr, agent.local_cidr, agent.identity,
            agent.namespace) == ("c1", "242.0.0.0/16", ["10.244.0.0/16", "10.96.0.0/16"],
                                 "gw-1", names.CLUSTER_NAMESPACE)
    assert agent.datapath in m.DATAPATHS and not agent.uninstall and agent.netns is None
    assert engine.syncer_kubeconfig == Path(f"{m.KUBE_DIR}-{rbac.BROKER_SYNCER}") / \
        m.KUBECONFIG_KEY
    route = parsed[rbac.ROUTE_AGENT]
    assert (route.node_name, route.cluster_id, route.uninstall) == ("gw-1", "c1", False)
    lighthouse = parsed[rbac.LIGHTHOUSE_AGENT]
    assert (lighthouse.cluster_id, lighthouse.globalnet, lighthouse.dns_listen,
            lighthouse.zone, lighthouse.leave, lighthouse.clusterset_ip_cidr) == (
        "c1", True, ("0.0.0.0", m.DNS_CONTAINER_PORT), "clusterset.local", False,
        "244.0.16.0/20")
    assert not lighthouse.clusterset_ip_enabled and lighthouse.vip_table


# --- the kubeconfig, options, files --------------------------------------------------------

def test_kubeconfig_resolves_the_token_and_ca_next_to_it(tmp_path: Path) -> None:
    from kube.client import new_configuration

    opts = options(api_server="https://10.96.0.1:443")
    configmap = one(m.render(opts), "ConfigMap", m.KUBECONFIG_CONFIGMAP)
    (tmp_path / "kubeconfig").write_text(configmap["data"][m.KUBECONFIG_KEY])
    (tmp_path / "token").write_text("tok-123")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    config = new_configuration(tmp_path / "kubeconfig")
    assert config.host == "https://10.96.0.1:443"
    assert config.api_key["BearerToken"] == "Bearer tok-123"
    assert config.ssl_ca_cert == str(tmp_path / "ca.crt")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"cluster_id": "C_1"}, "cluster ID 'C_1' is not a DNS-1123 label"),
    ({"global_cidr": "242.0.0.1/16"}, "global CIDR: 242.0.0.1/16 has host bits set"),
    ({"global_cidr": "10.0.0.0/8"}, "global CIDR 10.0.0.0/8 overlaps local CIDR 10.244.0.0/16"),
    ({"service_cidrs": ()}, "at least one service CIDR is needed"),
    ({"datapath": "recording"}, "datapath 'recording': expected one of nftables, ebpf"),
    ({"image": "globalnet/globalnet"}, "image 'globalnet/globalnet': expected REPOSITORY:TAG"),
    ({"api_server": "http://x"}, "API server 'http://x': expected an https:// URL"),
    ({"dns_service_ip": "10.97.0.10"}, "DNS service IP 10.97.0.10 is not in a service CIDR"),
    ({"namespace": "other"}, "namespace 'other': the gateway engine and route agent have no"),
    ({"clusterset_ip_cidr": "244.0.0.1/20"}, "ClusterSetIP CIDR: 244.0.0.1/20 has host bits"),
    ({"clusterset_ip_cidr": "242.0.16.0/20"},
     "ClusterSetIP CIDR 242.0.16.0/20 overlaps 242.0.0.0/16"),
])
def test_bad_options_are_refused_in_one_line(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(m.OptionsError) as err:
        options(**overrides)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_image_and_dns_ip_reach_the_objects() -> None:
    opts = options(image="registry.local:5000/globalnet/globalnet:v1",
                   dns_service_ip="10.96.0.53")
    objects = m.render(opts)
    assert {c["image"] for _, c in containers(objects)} == {opts.image}
    assert one(objects, "Service", m.LIGHTHOUSE_DNS_SERVICE)["spec"]["clusterIP"] == "10.96.0.53"
    block = m.coredns_server_block(opts)
    assert block.startswith("clusterset.local:53 {") and "forward . 10.96.0.53" in block
    assert "#" not in block
    assert m.CORE_DNS_PLACEHOLDER in m.coredns_server_block(options())


def test_write_files_hold_exactly_the_rendered_objects(tmp_path: Path) -> None:
    opts = options(datapath="ebpf", dns_service_ip="10.96.0.53")
    files = m.write(opts, tmp_path)
    assert [f.name for f in files] == ["00-crds.yaml", "10-rbac.yaml", "20-agents.yaml",
                                       "coredns-clusterset.conf"]
    documents = [d for f in files[:3] for d in yaml.safe_load_all(f.read_text())]
    assert documents == m.render(opts)
    assert files[3].read_text() == m.coredns_server_block(opts)
    # The kubeconfig is a readable block, not an escaped string.
    assert "tokenFile: token\n" in files[2].read_text()


def test_main_refuses_bad_input_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = m.main(["--cluster-id", "c1", "--global-cidr", "10.244.0.0/16",
                 "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == ("deploy.manifests: global CIDR 10.244.0.0/16 overlaps local CIDR "
                   "10.244.0.0/16\n")


def test_no_credentials_are_rendered() -> None:
    for obj in m.render(options()):
        if obj["kind"] == "Secret":
            assert "data" not in obj and "stringData" not in obj
        text = yaml.safe_dump(obj)
        assert "BEGIN CERTIFICATE" not in text and "token:" not in text


def test_a_clusterset_answering_every_vip_passes_it_to_the_lighthouse_agent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = m.render(options(clusterset_ip_cidr="244.0.16.0/20", clusterset_ip_enabled=True))
    (container,) = [c for _, c in containers(rendered) if c["name"] == rbac.LIGHTHOUSE_AGENT]
    args = parse_with_agent(container["command"][2], expand(container, {}), monkeypatch)
    assert args.clusterset_ip_enabled
