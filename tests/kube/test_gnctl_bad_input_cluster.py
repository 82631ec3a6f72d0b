"""The bad-input sweep (tests/unit/test_gnctl_bad_input.py) against a real API server:
gnctl's cluster commands refuse each bad value in one line and change nothing.

The session's API server is the Broker (in a Broker namespace of this module's own)
and the member. The good arguments name it: its kubeconfig, the broker-info file
`deploy-broker` wrote, the pod and service CIDRs and a gateway node, so in each run the
bad value is the only thing wrong. Around each run the objects gnctl could write are
listed (namespaces, CRDs, the Submariner and MCS objects, identities, roles, Secrets,
ConfigMaps, agents, node labels) and must be unchanged, resourceVersion included.

Address convention: the API server listens on this test namespace's loopback
(tests/conftest.py); the bad kubeconfigs name https://127.0.0.1:PORT, a port held bound
without listening.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import main as gnctl_main
from deploy import install, manifests
from kube import crds, crud, resources
from kube import objects as o
from kube.testing import await_condition
from tests.unit import test_gnctl_bad_input as sweep

NODE = "gn-sweep-node"
NAMESPACE = f"broker-sweep-{uuid.uuid4().hex[:6]}"
# Good values, here, for options the unit sweep leaves unset; with them a join would
# go all the way (and give up on its agents after 5 s: there is no kubelet).
EXTRA: dict[str, list[str]] = {
    "broker_namespace": [NAMESPACE], "out": ["@broker_info"],
    "cluster_cidr": ["10.244.0.0/16"], "service_cidr": ["10.96.0.0/16"],
    "gateway_node": [NODE], "timeout": ["5"]}
CLUSTER_COMMANDS = {("join",), ("deploy-broker",), ("leave",), ("uninstall",),
                    ("show", "allocations")}
CASES = [c for c in sweep.CASES if c.command in CLUSTER_COMMANDS]

# Every kind gnctl writes, in either role (manifests.KINDS: what join applies and
# deploy-broker's identities), plus the custom resources and the nodes (labels only:
# the node lifecycle controller updates a kubelet-less Node on its own).
SNAPSHOT_KINDS = (*{r.kind: r for r in (*manifests.KINDS.values(),
                                        *resources.CUSTOM_RESOURCES)}.values(),)


def snapshot(api: Any) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) -> resourceVersion of everything gnctl could change.
    Other tests' namespaces (`kube.testing.temporary_namespace`, labelled
    globalnet.test) are left out: the session's API server is shared, and their
    asynchronous deletion (and kcm's ServiceAccounts in them) goes on meanwhile."""
    found: dict[tuple[str, str, str], str] = {}
    theirs = {o.name(n) for n in crud.ResourceClient(api, resources.NAMESPACES).list().items
              if o.labels(n).get("globalnet.test") == "true"}
    for resource in SNAPSHOT_KINDS:
        for obj in crud.ResourceClient(api, resource).list().items:
            if o.namespace(obj) in theirs or (resource.kind == "Namespace"
                                             and o.name(obj) in theirs):
                continue
            found[(resource.kind, o.namespace(obj), o.name(obj))] = str(
                obj["metadata"]["resourceVersion"])
    for node in crud.ResourceClient(api, resources.NODES).list().items:
        found[("Node", "", o.name(node))] = repr(sorted(o.labels(node).items()))
    return found


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def world(control_plane: Any, tmp_path_factory: pytest.TempPathFactory,
          refused_port: int) -> Iterator[sweep.World]:
    """The sweep's files with the good kubeconfig and broker-info made real; the
    commands' other good arguments point at this Broker, these CIDRs and NODE."""
    from kube.client import new_api_client

    tmp = tmp_path_factory.mktemp("gnctl-bad-kube")
    world = sweep.make_world(tmp, f"https://127.0.0.1:{refused_port}")
    world.files["kubeconfig"] = Path(control_plane.kubeconfig)
    world.files["broker_info"] = tmp / "broker-info.subm"
    world.env["KUBECONFIG"] = str(control_plane.kubeconfig)
    api = new_api_client(control_plane.kubeconfig)
    nodes = crud.ResourceClient(api, resources.NODES)
    nodes.create_if_absent({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    try:
        done = sweep.gnctl(world, ["deploy-broker", "--globalnet", "--broker-namespace",
                                   NAMESPACE, "--out", str(world.files["broker_info"])])
        assert done.returncode == 0, done.stderr
        yield world
    finally:
        install.uninstall(api, progress=lambda _: None)
        crds.install_crds(api)  # the session's API server is shared: put the CRDs back
        nodes.delete_if_exists(NODE)
        namespaces = crud.ResourceClient(api, resources.NAMESPACES)
        for ns in namespaces.list().items:
            if o.name(ns).startswith(NAMESPACE):
                namespaces.delete_if_exists(o.name(ns))
        api.close()  # type: ignore[no-untyped-call]


def test_the_good_arguments_reach_the_cluster(world: sweep.World, api_client: Any) -> None:
    """The sweep's good arguments work here (`join --dry-run` gets to the plan), so in
    each bad run below it is the bad value that is refused."""
    parser = dict(sweep.commands(gnctl_main.build_parser()))[("join",)]
    argv = sweep.good_argv(("join",), parser, replace=_extra(parser))
    done = sweep.gnctl(world, ["join", *world.resolve(tuple(argv)), "--dry-run"])
    assert done.returncode == 0, done.stderr
    assert "nothing was changed" in done.stderr


def _extra(parser: Any) -> dict[str, list[str]]:
    """EXTRA's values for the options this command has."""
    dests = {a.dest for a in parser._actions}
    return {k: v for k, v in EXTRA.items() if k in dests}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_changes_nothing_in_the_cluster(world: sweep.World, api_client: Any,
                                                  case: sweep.Case) -> None:
    parser = dict(sweep.commands(gnctl_main.build_parser()))[case.command]
    # The unit sweep's argv plus this module's good values for the options it leaves
    # unset (never the one under test).
    under_test = {w for w in case.argv if w.startswith("--")}
    extra: list[str] = []
    for action in parser._actions:
        if action.dest in _extra(parser) and not set(action.option_strings) & under_test:
            extra += [max(action.option_strings, key=len), *EXTRA[action.dest]]
    argv = [*case.command, *world.resolve((*extra, *case.argv))]
    before = await_condition(lambda: _settled(api_client), message="a settled cluster")
    done = sweep.gnctl_forked(world, argv)
    sweep.assert_one_line(done, case.id)
    assert snapshot(api_client) == before, case.id


def _settled(api: Any) -> dict[tuple[str, str, str], str] | None:
    """A snapshot that a second one confirms (the token controller may still be
    adding a ServiceAccount's Secret after the Broker's deployment)."""
    first = snapshot(api)
    return first if snapshot(api) == first else None


@pytest.mark.parametrize("command", [["show", "allocations"], ["deploy-broker", "--out",
                                                                "@directory/../refused.subm"]])
def test_a_refused_token_is_one_line(world: sweep.World, api_client: Any, tmp_path: Path,
                                     command: list[str]) -> None:
    """A kubeconfig whose token the API server does not know: 401, said in one line."""
    import yaml

    config = yaml.safe_load(world.files["kubeconfig"].read_text())
    for user in config["users"]:
        user["user"] = {"token": "not-a-token"}
    path = tmp_path / "refused.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    before = await_condition(lambda: _settled(api_client), message="a settled cluster")
    done = sweep.gnctl(world, [*world.resolve(tuple(command)), "--kubeconfig", str(path)])
    line = sweep.assert_one_line(done, " ".join(command))
    assert "the API server refused the credentials (401 Unauthorized)" in line
    assert snapshot(api_client) == before
