"""The kind recipe (deploy/kind/), checked without Docker or kind.

The machine the tests run on has no Docker daemon and no kind, so the recipe never
runs for real here. What is checked instead:

* the kind configs parse, use only fields of kind's ``kind.x-k8s.io/v1alpha4``
  Cluster schema with valid values, give every member cluster the same pod and
  service subnets, and have the node roles the recipe relies on;
* the scripts pass ``bash -n`` (and ``shellcheck`` where it is installed);
* every ``gnctl`` call in up.sh uses only the subcommands and flags in
  ``GNCTL_CLI`` below (read out of the script's text);
* up.sh and down.sh run end to end against stand-ins for docker, kind, kubectl and
  gnctl that only record their arguments: which clusters are created from which
  config, the image build and loads, the gateway labels, the gnctl calls and their
  order, the CoreDNS forward, the argument and prerequisite errors.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KIND_DIR = ROOT / "deploy" / "kind"
UP = KIND_DIR / "up.sh"
DOWN = KIND_DIR / "down.sh"
SCRIPTS = (UP, DOWN, KIND_DIR / "common.sh")
BASH = shutil.which("bash") or "/bin/bash"

POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
IMAGE = "globalnet/globalnet:kind"
BROKER_URL = "https://broker-control-plane:6443"  # where the host resolves container names
BROKER_IP = "172.18.0.9"  # what the docker stand-in answers for broker-control-plane
DNS_IP = "10.96.7.53"  # what the kubectl stand-in answers for the Lighthouse DNS Service

# This mirrors the gnctl CLI as the recipe may use it: `join` takes the broker-info
# file as its one positional argument, `deploy-broker --out FILE` writes that file,
# `--context` selects a kubeconfig context as kubectl's does. cli/'s parsers are not
# imported on purpose (they are being changed); keep this list in step with them.
# Per subcommand: the number of positional arguments, and each flag -> takes a value.
GNCTL_CLI: dict[str, tuple[int, dict[str, bool]]] = {
    "deploy-broker": (0, {"--kubeconfig": True, "--context": True, "--globalnet": False,
                          "--broker-api-server": True, "--out": True}),
    "join": (1, {"--kubeconfig": True, "--context": True, "--clusterid": True,
                 "--image": True, "--datapath": True, "--cable-driver": True}),
}
DATAPATHS = ("nftables", "ebpf")

# The fields of kind's v1alpha4 Cluster config (pkg/apis/config/v1alpha4/types.go).
KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"
KIND_TOP = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates",
            "runtimeConfig", "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902",
            "containerdConfigPatches", "containerdConfigPatchesJSON6902"}
KIND_NETWORKING = {"ipFamily", "apiServerPort", "apiServerAddress", "podSubnet",
                   "serviceSubnet", "disableDefaultCNI", "kubeProxyMode", "dnsSearch"}
KIND_NODE = {"role", "image", "labels", "extraMounts", "extraPortMappings", "gpus",
             "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902"}
KIND_MOUNT = {"containerPath", "hostPath", "readOnly", "selinuxRelabel", "propagation"}
KIND_ROLES = {"control-plane", "worker"}
KIND_PROXY_MODES = {"iptables", "ipvs", "nftables", "none"}
KIND_PROPAGATION = {"None", "HostToContainer", "Bidirectional"}


# --- kind configs -----------------------------------------------------------------------

def kind_config_problems(doc: Any) -> list[str]:
    """What in one kind config is not kind's v1alpha4 Cluster schema (empty: fine)."""
    if not isinstance(doc, dict):
        return [f"not a mapping: {doc!r}"]
    out = [f"unknown field {k!r}" for k in doc if k not in KIND_TOP]
    if doc.get("kind") != "Cluster":
        out.append(f"kind {doc.get('kind')!r}, not Cluster")
    if doc.get("apiVersion") != KIND_API_VERSION:
        out.append(f"apiVersion {doc.get('apiVersion')!r}, not {KIND_API_VERSION}")
    net = doc.get("networking", {})
    if not isinstance(net, dict):
        return [*out, "networking: not a mapping"]
    out += [f"networking: unknown field {k!r}" for k in net if k not in KIND_NETWORKING]
    for key in ("podSubnet", "serviceSubnet"):
        if key in net:
            try:
                ipaddress.ip_network(str(net[key]))
            except ValueError:
                out.append(f"networking.{key}: not a CIDR: {net[key]!r}")
            if not isinstance(net[key], str):
                out.append(f"networking.{key}: not a string")
    if "disableDefaultCNI" in net and not isinstance(net["disableDefaultCNI"], bool):
        out.append("networking.disableDefaultCNI: not a boolean")
    if "kubeProxyMode" in net and net["kubeProxyMode"] not in KIND_PROXY_MODES:
        out.append(f"networking.kubeProxyMode: {net['kubeProxyMode']!r}")
    nodes = doc.get("nodes", [])
    if not isinstance(nodes, list):
        return [*out, "nodes: not a list"]
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            out.append(f"nodes[{i}]: not a mapping")
            continue
        out += [f"nodes[{i}]: unknown field {k!r}" for k in node if k not in KIND_NODE]
        if node.get("role", "control-plane") not in KIND_ROLES:
            out.append(f"nodes[{i}].role: {node.get('role')!r}")
        for j, mount in enumerate(node.get("extraMounts", [])):
            where = f"nodes[{i}].extraMounts[{j}]"
            out += [f"{where}: unknown field {k!r}" for k in mount if k not in KIND_MOUNT]
            for key in ("hostPath", "containerPath"):
                if not str(mount.get(key, "")).startswith("/"):
                    out.append(f"{where}.{key}: not an absolute path")
            if not isinstance(mount.get("readOnly", False), bool):
                out.append(f"{where}.readOnly: not a boolean")
            if mount.get("propagation", "None") not in KIND_PROPAGATION:
                out.append(f"{where}.propagation: {mount['propagation']!r}")
    return out


def load(name: str) -> Any:
    return yaml.safe_load((KIND_DIR / name).read_text())


def configs_used_by_up() -> set[str]:
    return set(re.findall(r"\$here/([\w.-]+\.yaml)", UP.read_text()))


def member_configs() -> list[str]:
    return sorted(n for n in configs_used_by_up() if n.startswith("member"))


def roles(doc: dict[str, Any]) -> list[str]:
    return [node.get("role", "control-plane") for node in doc.get("nodes", [])]


def test_up_uses_every_config_and_only_those() -> None:
    on_disk = {p.name for p in KIND_DIR.glob("*.yaml")}
    assert configs_used_by_up() == on_disk
    assert {"broker.yaml", "member.yaml", "member-ebpf.yaml"} <= on_disk


@pytest.mark.parametrize("name", sorted(p.name for p in KIND_DIR.glob("*.yaml")))
def test_config_is_a_kind_v1alpha4_cluster(name: str) -> None:
    assert kind_config_problems(load(name)) == []


def test_schema_check_catches_mistakes() -> None:
    bad = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha3", "nodess": [],
           "networking": {"podSubnets": POD_SUBNET, "serviceSubnet": "10.96.0.0/33",
                          "disableDefaultCNI": "no", "kubeProxyMode": "userspace"},
           "nodes": [{"role": "master", "extraMounts": [
               {"hostPath": "usr/src", "containerPath": "/usr/src", "readonly": True}]}]}
    problems = kind_config_problems(bad)
    for fragment in ("'nodess'", "v1alpha3", "'podSubnets'", "serviceSubnet: not a CIDR",
                     "disableDefaultCNI", "kubeProxyMode", "role: 'master'", "'readonly'",
                     "hostPath: not an absolute path"):
        assert any(fragment in p for p in problems), (fragment, problems)


def test_members_have_identical_subnets_and_one_control_plane_one_worker() -> None:
    names = member_configs()
    assert names == ["member-ebpf.yaml", "member.yaml"]
    for name in names:
        doc = load(name)
        assert doc["networking"] == {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET,
                                     "disableDefaultCNI": False, "kubeProxyMode": "iptables"}
        assert roles(doc) == ["control-plane", "worker"], name
        # up.sh names each cluster (--name cN); a name in the file would be overridden.
        assert "name" not in doc


def test_ebpf_member_is_member_plus_the_kernel_headers_on_the_worker() -> None:
    plain, ebpf = load("member.yaml"), load("member-ebpf.yaml")
    mounts = ebpf["nodes"][1].pop("extraMounts")
    assert ebpf == plain
    assert mounts == [{"hostPath": "/usr/src", "containerPath": "/usr/src", "readOnly": True}]


def test_broker_is_one_control_plane() -> None:
    doc = load("broker.yaml")
    assert roles(doc) == ["control-plane"]
    assert "name" not in doc


# --- the scripts' text ------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    res = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("script", (UP, DOWN), ids=lambda p: p.name)
def test_scripts_are_executable_and_strict(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text


def test_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        dpkg = subprocess.run(["dpkg", "-l", "shellcheck"], capture_output=True, text=True)
        state = "not installed" if dpkg.returncode else "installed but not on PATH"
        pytest.skip(f"shellcheck is {state} (dpkg -l shellcheck); bash -n still runs")
    res = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], cwd=KIND_DIR,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


_CONTROL = {"then", "do", "else", "elif", "!", "{", "time", "command", "exec", "env"}


def _code_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, logical line) of a bash script: continuations joined, heredoc
    bodies and whole-line comments left out."""
    lines = text.splitlines()
    i, heredoc = 0, None
    while i < len(lines):
        start, line = i + 1, lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if line.lstrip().startswith("#"):
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m:
            heredoc = m.group(1)
        yield start, line


def _tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def _is_punct(token: str) -> bool:
    return bool(token) and all(c in "();&|" for c in token)


def gnctl_calls(text: str) -> list[tuple[int, list[str]]]:
    """Every command-position ``gnctl`` in a bash script: (line, its arguments).

    Raises when gnctl is run some other way (through ``$GNCTL`` outside the
    wrapper, or on a line this reader cannot split), so no call escapes the check."""
    calls: list[tuple[int, list[str]]] = []
    for n, line in _code_lines(text):
        if re.match(r"\s*gnctl\s*\(\)", line):  # the wrapper: gnctl() { "$GNCTL" "$@"; }
            continue
        try:
            tokens = _tokens(line)
        except ValueError:
            if "gnctl" in line.lower():
                raise AssertionError(f"line {n}: cannot read: {line.strip()}") from None
            continue
        for k, tok in enumerate(tokens):
            at_command = k == 0 or _is_punct(tokens[k - 1]) or tokens[k - 1] in _CONTROL
            if not at_command:
                continue
            by_path = tok.endswith("/gnctl") and "=" not in tok  # not GNCTL=.../gnctl
            if tok in ("$GNCTL", "${GNCTL}") or by_path:
                raise AssertionError(f"line {n}: gnctl run around the wrapper: {line.strip()}")
            if tok == "gnctl":
                end = next((j for j in range(k + 1, len(tokens)) if _is_punct(tokens[j])),
                           len(tokens))
                calls.append((n, tokens[k + 1:end]))
    return calls


def gnctl_problems(argv: list[str]) -> list[str]:
    """What in one gnctl argument list is not in GNCTL_CLI (empty: fine). Every flag
    of the subcommand must be given: the recipe's calls are complete."""
    if not argv or argv[0] not in GNCTL_CLI:
        return [f"unknown subcommand {argv[:1]}"]
    positional_wanted, flags = GNCTL_CLI[argv[0]]
    out, seen, positional = [], set(), []
    args = iter(argv[1:])
    for arg in args:
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        flag, eq, inline = arg.partition("=")
        if flag not in flags:
            out.append(f"{argv[0]}: unknown flag {flag}")
            continue
        if flag in seen:
            out.append(f"{argv[0]}: {flag} given twice")
        seen.add(flag)
        if flags[flag]:
            value = inline if eq else next(args, None)
            if value is None or value.startswith("-"):
                out.append(f"{argv[0]}: {flag} needs a value")
            elif flag == "--datapath" and "$" not in value and value not in DATAPATHS:
                out.append(f"{argv[0]}: --datapath {value}")
        elif eq:
            out.append(f"{argv[0]}: {flag} takes no value")
    if len(positional) != positional_wanted:
        out.append(f"{argv[0]}: {len(positional)} positional arguments, "
                   f"wants {positional_wanted}: {positional}")
    out += [f"{argv[0]}: {flag} missing" for flag in flags if flag not in seen]
    return out


def test_up_calls_gnctl_only_as_the_cli_allows() -> None:
    calls = gnctl_calls(UP.read_text())
    assert sorted({argv[0] for _, argv in calls}) == ["deploy-broker", "join"]
    for n, argv in calls:
        assert gnctl_problems(argv) == [], (n, argv)


def test_up_calls_gnctl_with_the_recipe_values() -> None:
    calls = {argv[0]: argv for _, argv in gnctl_calls(UP.read_text())}
    broker, join = calls["deploy-broker"], calls["join"]
    assert broker[broker.index("--context") + 1] == "kind-$BROKER"
    assert broker[broker.index("--out") + 1] == "$BROKER_INFO"
    assert join[1] == "$BROKER_INFO"  # the file deploy-broker wrote
    assert join[join.index("--context") + 1] == "kind-$m"
    assert join[join.index("--clusterid") + 1] == "$m"
    assert join[join.index("--image") + 1] == "$IMAGE"
    assert broker[broker.index("--broker-api-server") + 1] == "$BROKER_API_SERVER"
    common = (KIND_DIR / "common.sh").read_text()
    assert f"IMAGE={IMAGE}\n" in common
    assert "BROKER=broker\n" in common


def test_gnctl_checks_catch_mistakes() -> None:
    script = "\n".join([
        "gnctl join --broker-kubeconfig b.kubeconfig --clusterid c1",  # old spelling
        "ok && gnctl deploy-broker --kubeconfig k --context",          # value missing
        "x=$(gnctl lab up)",                                           # not in the list
        "gnctl join a b --kubeconfig k --context c --clusterid c1 --image i --datapath bpf",
        "gnctl join info --kubeconfig k --context c --clusterid c1 --image i \\",
        "  --datapath nftables --cable-driver vxlan",                  # fine
        "gnctl join --kubeconfig k --context c --clusterid c1 --image i --datapath ebpf \\",
        "  --cable-driver vxlan",
        "gnctl deploy-broker --kubeconfig k --context c --globalnet=yes --broker-api-server u",
    ])
    calls = gnctl_calls(script)
    assert [n for n, _ in calls] == [1, 2, 3, 4, 5, 7, 9]
    problems = [gnctl_problems(argv) for _, argv in calls]
    assert "join: unknown flag --broker-kubeconfig" in problems[0]
    assert "join: --kubeconfig missing" in problems[0]
    assert "deploy-broker: --context needs a value" in problems[1]
    assert problems[2] == ["unknown subcommand ['lab']"]
    assert "join: --datapath bpf" in problems[3]
    assert any("2 positional" in p for p in problems[3])
    assert problems[4] == []
    assert problems[5] == ["join: 0 positional arguments, wants 1: []"]
    assert problems[6] == ["deploy-broker: --globalnet takes no value",
                           "deploy-broker: --out missing"]
    with pytest.raises(AssertionError, match="around the wrapper"):
        gnctl_calls('"$GNCTL" join info')


# --- up.sh and down.sh against stand-ins --------------------------------------------------

STUB = r'''
import json, os, sys
from pathlib import Path

path, argv = sys.argv[1], sys.argv[2:]  # the stand-in's own path ($0), its arguments
tool = Path(path).name
record = {"tool": tool, "path": path, "argv": argv, "cwd": os.getcwd()}
kubeconfig = os.environ.get("KUBECONFIG")
if kubeconfig and Path(kubeconfig).is_file():
    record["kubeconfig_text"] = Path(kubeconfig).read_text()
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")

def opt(name):
    return argv[argv.index(name) + 1] if name in argv else None

state = Path(os.environ["STUB_KIND_STATE"])
clusters = state.read_text().split() if state.exists() else []
if tool == "docker":
    if argv[:1] == ["inspect"] and argv[-1] == "broker-control-plane":
        print(os.environ["STUB_BROKER_IP"])
    sys.exit(1 if argv[:1] == ["info"] and os.environ.get("STUB_DOCKER_DOWN") else 0)
if tool == "getent":  # resolves container names only where the test says so
    sys.exit(0 if os.environ.get("STUB_RESOLVES") else 2)
if tool == "kind":
    if argv[:2] == ["get", "clusters"]:
        print("\n".join(clusters) if clusters else "No kind clusters found.",
              file=sys.stdout if clusters else sys.stderr)
    elif argv[:2] == ["create", "cluster"]:
        state.write_text("\n".join([*clusters, opt("--name")]) + "\n")
    elif argv[:2] == ["delete", "cluster"]:
        state.write_text("\n".join(c for c in clusters if c != opt("--name")) + "\n")
    elif argv[:2] == ["get", "kubeconfig"]:
        print(f"apiVersion: v1\nkind: Config\ncurrent-context: kind-{opt('--name')}")
if tool == "kubectl":
    if "get" in argv and "service" in argv:
        print(os.environ["STUB_DNS_IP"], end="")
    elif "get" in argv and "configmap" in argv:
        print(".:53 {\n    errors\n    reload\n}", end="")
if tool == "gnctl":
    if argv[:1] == ["deploy-broker"]:
        Path(opt("--out")).write_text("broker-info\n")
    elif argv[:1] == ["join"] and not Path(argv[1]).is_file():
        sys.exit("join: no broker-info file " + argv[1])
'''


class Recipe:
    """A copy of the recipe (and what it calls) in a scratch tree, run against
    stand-ins for docker, kind, kubectl and gnctl that record every call."""

    def __init__(self, tmp: Path) -> None:
        self.repo = tmp / "repo"
        for sub in ("deploy/kind", "deploy/coredns"):
            shutil.copytree(ROOT / sub, self.repo / sub,
                            ignore=shutil.ignore_patterns("__pycache__"))
        self.stubs = tmp / "stubs"
        self.stubs.mkdir()
        (self.stubs / "stub.py").write_text(STUB)
        for tool in ("docker", "kind", "kubectl", "gnctl", "getent"):
            self.add_stub(self.stubs / tool)
        self.home = tmp / "home"
        self.home.mkdir()
        self.state = tmp / "state"
        self.log = tmp / "calls.jsonl"
        self.kind_state = tmp / "kind-clusters"
        self.kubeconfig = self.home / ".kube" / "config"
        self.broker_info = self.state / "broker-info.subm"

    def add_stub(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "
                        f"{shlex.quote(str(self.stubs / 'stub.py'))} \"$0\" \"$@\"\n")
        path.chmod(0o755)

    def existing(self, *names: str) -> None:
        self.kind_state.write_text("".join(f"{n}\n" for n in names))

    def run(self, script: str, *args: str, path: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
        # PATH: the stand-ins first, then the system's directories that hold no
        # other gnctl (a developer's activated venv must not answer for the stub).
        system = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                  if d and not (Path(d) / "gnctl").exists()]
        full_env = {"PATH": path or os.pathsep.join([str(self.stubs), *system]),
                    "HOME": str(self.home), "LANG": "C.UTF-8",
                    "GLOBALNET_KIND_DIR": str(self.state), "STUB_LOG": str(self.log),
                    "STUB_KIND_STATE": str(self.kind_state), "STUB_DNS_IP": DNS_IP,
                    "STUB_BROKER_IP": BROKER_IP, **env}
        return subprocess.run([BASH, str(self.repo / "deploy" / "kind" / script), *args],
                              env=full_env, capture_output=True, text=True, timeout=60)

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in out if tool is None or c["tool"] == tool]

    def index(self, pred: Any) -> int:
        """Position in the call log of the first call for which pred holds."""
        return next(i for i, c in enumerate(self.calls()) if pred(c))


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def context(call: dict[str, Any]) -> str | None:
    argv = call["argv"]
    return opt(argv, "--context") if "--context" in argv else None


@pytest.fixture()
def recipe(tmp_path: Path) -> Recipe:
    return Recipe(tmp_path)


def test_up_two_members_nftables(recipe: Recipe) -> None:
    recipe.existing("c1", "unrelated")
    res = recipe.run("up.sh", STUB_RESOLVES="1")
    assert res.returncode == 0, res.stdout + res.stderr
    kubeconfig = str(recipe.kubeconfig)

    kind = [c["argv"] for c in recipe.calls("kind")]
    creates = {opt(a, "--name"): Path(opt(a, "--config")).name
               for a in kind if a[:2] == ["create", "cluster"]}
    assert creates == {"broker": "broker.yaml", "c2": "member.yaml"}  # c1 existed: kept
    assert ["export", "kubeconfig", "--name", "c1", "--kubeconfig", kubeconfig] in kind
    for a in kind:
        if a[:2] in (["create", "cluster"], ["export", "kubeconfig"]):
            assert opt(a, "--kubeconfig") == kubeconfig

    builds = [c for c in recipe.calls("docker") if c["argv"][:1] == ["build"]]
    assert builds[0]["argv"] == ["build", "-f", "deploy/Dockerfile", "-t", IMAGE, "."]
    assert all(b["cwd"] == str(recipe.repo) for b in builds)
    loads = [a for a in kind if a[:2] == ["load", "docker-image"]]
    assert sorted(opt(a, "--name") for a in loads) == ["c1", "c2"]  # members only
    assert all(IMAGE in a for a in loads)

    gnctl = [c["argv"] for c in recipe.calls("gnctl")]
    assert [a[0] for a in gnctl] == ["deploy-broker", "join", "join"]
    for a in gnctl:
        assert gnctl_problems(a) == [], a
        assert opt(a, "--kubeconfig") == kubeconfig
    assert gnctl[0] == ["deploy-broker", "--kubeconfig", kubeconfig, "--context", "kind-broker",
                        "--globalnet", "--broker-api-server", BROKER_URL,
                        "--out", str(recipe.broker_info)]
    for a, member in zip(gnctl[1:], ("c1", "c2"), strict=True):
        assert a == ["join", str(recipe.broker_info), "--kubeconfig", kubeconfig,
                     "--context", f"kind-{member}", "--clusterid", member,
                     "--image", IMAGE, "--datapath", "nftables", "--cable-driver", "vxlan"]
    assert recipe.broker_info.is_file()

    last_load = max(i for i, c in enumerate(recipe.calls())
                    if c["argv"][:2] == ["load", "docker-image"])
    broker_at = recipe.index(lambda c: c["argv"][:1] == ["deploy-broker"])
    assert last_load < broker_at
    for member in ("c1", "c2"):
        label_at = recipe.index(lambda c, m=member: c["tool"] == "kubectl"
                                and context(c) == f"kind-{m}" and "label" in c["argv"])
        label = recipe.calls()[label_at]["argv"]
        assert label[label.index("label"):] == ["label", "node", f"{member}-worker",
                                                "submariner.io/gateway=true", "--overwrite"]
        assert opt(label, "--kubeconfig") == kubeconfig
        join_at = recipe.index(lambda c, m=member: c["argv"][:1] == ["join"]
                               and opt(c["argv"], "--clusterid") == m)
        # add-clusterset-forward.sh's own kubectl: the member's kubeconfig, current context.
        patch_at = recipe.index(lambda c, m=member: c["tool"] == "kubectl"
                                and "patch" in c["argv"]
                                and f"current-context: kind-{m}" in c.get("kubeconfig_text", ""))
        assert label_at < join_at and broker_at < join_at < patch_at
        patch = recipe.calls()[patch_at]["argv"]
        assert patch[:5] == ["-n", "kube-system", "patch", "configmap", "coredns"]
        corefile = json.loads(opt(patch, "-p"))["data"]["Corefile"]
        assert f"forward . {DNS_IP}" in corefile and "reload" in corefile
    # nftables: no bpffs; the host resolves broker-control-plane: no address lookup.
    assert [c["argv"][0] for c in recipe.calls("docker")] == ["info", "build", "build"]

    out = res.stdout
    assert "kubectl --context kind-c2 apply -f -" in out
    assert "kubectl --context kind-c1 exec client -- curl -s " \
           "http://web.default.svc.clusterset.local/" in out
    assert "docker exec c1-worker nft list table inet globalnet" in out
    assert "kubectl --context kind-c1 get pods -n submariner-operator" in out
    assert res.stderr == ""


def test_up_with_an_encrypted_cable_joins_every_member_with_it(recipe: Recipe) -> None:
    res = recipe.run("up.sh", "--cable-driver", "wireguard")
    assert res.returncode == 0, res.stdout + res.stderr
    joins = [a for a in (c["argv"] for c in recipe.calls("gnctl")) if a[0] == "join"]
    assert [opt(a, "--cable-driver") for a in joins] == ["wireguard", "wireguard"]


def test_up_three_members_ebpf(recipe: Recipe) -> None:
    res = recipe.run("up.sh", "--clusters", "3", "--datapath", "ebpf", "--cable-driver", "vxlan")
    assert res.returncode == 0, res.stdout + res.stderr
    creates = {opt(a, "--name"): Path(opt(a, "--config")).name
               for a in (c["argv"] for c in recipe.calls("kind")) if a[:2] == ["create", "cluster"]}
    assert creates == {"broker": "broker.yaml", "c1": "member-ebpf.yaml",
                       "c2": "member-ebpf.yaml", "c3": "member-ebpf.yaml"}
    joins = [a for a in (c["argv"] for c in recipe.calls("gnctl")) if a[0] == "join"]
    assert [opt(a, "--clusterid") for a in joins] == ["c1", "c2", "c3"]
    assert {opt(a, "--datapath") for a in joins} == {"ebpf"}
    assert {opt(a, "--cable-driver") for a in joins} == {"vxlan"}
    broker_at = recipe.index(lambda c: c["argv"][:1] == ["deploy-broker"])
    for member in ("c1", "c2", "c3"):
        mount_at = recipe.index(lambda c, m=member: c["argv"][:2] == ["exec", f"{m}-worker"]
                                and "mount -t bpf" in c["argv"][-1])
        assert mount_at < broker_at
    assert "kubectl --context kind-c3 expose deployment web" in res.stdout


def broker_url(recipe: Recipe) -> str:
    (call,) = [c["argv"] for c in recipe.calls("gnctl") if c["argv"][0] == "deploy-broker"]
    return opt(call, "--broker-api-server")


def test_up_uses_the_brokers_address_where_the_host_cannot_resolve_its_name(
        recipe: Recipe) -> None:
    res = recipe.run("up.sh")
    assert res.returncode == 0, res.stderr
    assert broker_url(recipe) == f"https://{BROKER_IP}:6443"
    (inspect,) = [c["argv"] for c in recipe.calls("docker") if c["argv"][0] == "inspect"]
    assert inspect[-1] == "broker-control-plane" and '"kind"' in inspect[2]
    assert "does not resolve broker-control-plane" in res.stdout


def test_up_takes_the_broker_url_it_is_given(recipe: Recipe) -> None:
    res = recipe.run("up.sh", BROKER_API_SERVER="https://10.1.2.3:6443")
    assert res.returncode == 0, res.stderr
    assert broker_url(recipe) == "https://10.1.2.3:6443"
    assert not recipe.calls("getent")
    assert not any(c["argv"][0] == "inspect" for c in recipe.calls("docker"))


def test_up_prefers_the_checkouts_venv(recipe: Recipe) -> None:
    venv_gnctl = recipe.repo / ".venv" / "bin" / "gnctl"
    recipe.add_stub(venv_gnctl)
    res = recipe.run("up.sh")
    assert res.returncode == 0, res.stderr
    paths = {c["path"] for c in recipe.calls("gnctl")}
    assert paths == {str(venv_gnctl)}


@pytest.mark.parametrize("args", [
    ["--clusters", "4"], ["--clusters", "1"], ["--clusters", "two"], ["--clusters"],
    ["--datapath", "iptables"], ["--cable-driver", "gre"],
    ["--datapath", "ebpf", "--cable-driver", "wireguard"], ["--bogus"],
])
def test_up_refuses_bad_arguments_before_doing_anything(recipe: Recipe, args: list[str]) -> None:
    res = recipe.run("up.sh", *args)
    assert res.returncode != 0
    assert res.stderr.splitlines()[-1].startswith("[kind] error: ")
    assert recipe.calls() == []


def test_up_names_every_missing_tool_in_one_line(recipe: Recipe, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # dirname (the scripts find themselves) and kubectl only
    bin_dir.mkdir()
    dirname = shutil.which("dirname")
    assert dirname
    (bin_dir / "dirname").symlink_to(dirname)
    recipe.add_stub(bin_dir / "kubectl")
    res = recipe.run("up.sh", path=str(bin_dir))
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("[kind] error: docker kind not found on PATH")
    assert "kubectl not found" not in res.stderr
    assert recipe.calls() == []


def test_up_stops_when_the_docker_daemon_is_unreachable(recipe: Recipe) -> None:
    res = recipe.run("up.sh", STUB_DOCKER_DOWN="1")
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and "Docker daemon" in res.stderr
    assert [c["argv"] for c in recipe.calls()] == [["info"]]


def test_up_stops_without_gnctl(recipe: Recipe) -> None:
    (recipe.stubs / "gnctl").unlink()
    res = recipe.run("up.sh")
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and "gnctl not found" in res.stderr
    assert not any(c["tool"] == "kind" for c in recipe.calls())


def test_down_deletes_the_recipes_clusters_and_the_broker_info(recipe: Recipe) -> None:
    recipe.existing("broker", "c1", "c2", "unrelated")
    recipe.state.mkdir()
    recipe.broker_info.write_text("broker-info\n")
    res = recipe.run("down.sh")
    assert res.returncode == 0, res.stderr
    deleted = [opt(a, "--name") for a in (c["argv"] for c in recipe.calls("kind"))
               if a[:2] == ["delete", "cluster"]]
    assert sorted(deleted) == ["broker", "c1", "c2"]
    assert recipe.kind_state.read_text().split() == ["unrelated"]
    assert not recipe.broker_info.exists() and not recipe.state.exists()
    assert recipe.calls("gnctl") == [] and recipe.calls("kubectl") == []
