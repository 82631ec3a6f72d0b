"""`gnctl verify` and `gnctl benchmark` without a cluster: their argument errors, the
suite selection, the probe pods' manifests, and the in-pod programs themselves run
on loopback (the server and each probe mode that needs no DNS).

Address convention: only 127.0.0.1 on ports the kernel hands out; the kubeconfigs
name https://127.0.0.1:PORT of a socket bound without listening (refused at once).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import verify_cmd
from verify import pods, runner, scripts
from verify.errors import VerifyError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def refused_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tmp = tmp_path_factory.mktemp("verify")
        path = tmp / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "a",
            "clusters": [{"name": "c", "cluster": {
                "server": f"https://127.0.0.1:{s.getsockname()[1]}",
                "insecure-skip-tls-verify": True}}],
            "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}},
                         {"name": "b", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "t"}}]}))
        yield path


def gnctl(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env={**os.environ, **(env or {})})


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gnctl: ")
    return line


@pytest.mark.parametrize(("argv", "expected"), [
    (["verify", "--kubeconfig", "@kc"], "name the cluster to test against"),
    (["verify", "--kubeconfig", "@kc", "--context", "a", "--tocontext", "a"],
     "name the same context"),
    (["verify", "--lab", "nolab", "--kubeconfig", "@kc"], "--lab names the clusters"),
    (["verify", "--lab", "nolab"], "lab 'nolab' is not up"),
    (["benchmark", "latency", "--lab", "nolab"], "lab 'nolab' is not up"),
    (["verify", "--only", "gateway-failover", "--kubeconfig", "@kc", "--tocontext", "b"],
     "add --disruptive"),
    (["verify", "--kubeconfig", "@kc", "--tocontext", "nope"], "no context 'nope'"),
    (["verify", "--kubeconfig", "@kc", "--tocontext", "b"], "cannot reach the API server"),
    (["benchmark", "throughput", "--kubeconfig", "@kc", "--tocontext", "b"],
     "cannot reach the API server"),
])
def test_mistakes_and_dead_servers_are_one_line(refused_kubeconfig: Path, tmp_path: Path,
                                                argv: list[str], expected: str) -> None:
    words = [str(refused_kubeconfig) if w == "@kc" else w for w in argv]
    line = one_line(gnctl(*words, env={"GLOBALNET_LAB_DIR": str(tmp_path)}))
    assert expected in line, line


@pytest.mark.parametrize("argv", [
    ["verify", "--only", "bogus"],
    ["verify", "--only", "connectivity,nope"],
    ["verify", "--timeout", "nan"],
    ["verify", "--timeout", "-1"],
    ["verify", "--lab", "Bad/Name"],
    ["verify", "--image", "UPPER/Case:tag"],
    ["benchmark"],
    ["benchmark", "throughput", "--seconds", "0"],
    ["benchmark", "latency", "--count", "x"],
])
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    done = gnctl(*argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and ": error: " in done.stderr


def test_suites_run_in_a_fixed_order_and_the_disruptive_one_only_when_asked() -> None:
    assert tuple(runner.SUITES) == verify_cmd.SUITE_NAMES
    assert runner.select(None, disruptive=False) == ["connectivity", "service-discovery"]
    assert runner.select(None, disruptive=True) == list(runner.SUITES)
    assert runner.select(["service-discovery", "connectivity"], disruptive=False) == [
        "connectivity", "service-discovery"]
    with pytest.raises(VerifyError, match="--disruptive"):
        runner.select(["gateway-failover"], disruptive=False)


def test_only_takes_repeated_and_comma_separated_suites() -> None:
    from cli import main

    args = main.build_parser().parse_args(
        ["verify", "--only", "connectivity", "--only", "service-discovery,connectivity"])
    assert args.only == [["connectivity"], ["service-discovery", "connectivity"]]


def test_probe_pods_are_pinned_one_shot_and_resolve_through_the_given_dns() -> None:
    spec = pods.PodSpec(namespace="gn-verify-x", image="img:1",
                        dns=pods.DnsConfig(nameserver="10.96.0.10"))
    pod = spec.probe("conn-1", "node-a", "connect", {"host": "1.2.3.4"})
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["dnsPolicy"] == "None"
    assert pod["spec"]["dnsConfig"]["nameservers"] == ["10.96.0.10"]
    (container,) = pod["spec"]["containers"]
    assert container["command"][:2] == ["python3", "-c"]
    assert json.loads(container["command"][-1]) == {"host": "1.2.3.4"}
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == pods.MANAGED_BY
    assert pods.PodSpec("ns", "img:1").probe("p", "n", "gone", {})["spec"][
        "dnsPolicy"] == "ClusterFirst"
    with pytest.raises(ValueError, match="unknown probe mode"):
        spec.probe("p", "n", "nope", {})
    server = spec.server("echo-gw", "node-b", cluster_id="c2", app="a", iperf=True)
    assert [c["name"] for c in server["spec"]["containers"]] == ["echo", "iperf3"]
    assert server["spec"]["restartPolicy"] == "Always"


def test_a_probe_verdict_is_read_from_the_termination_message() -> None:
    class Pods:
        def get_or_none(self, name: str, *, namespace: str) -> dict[str, object]:
            return {"spec": {"nodeName": "n1"}, "status": {"containerStatuses": [{"state": {
                "terminated": {"exitCode": 1, "message": '{"ok": false, "error": "boom"}'}}}]}}

    import threading

    res = pods.await_probe(Pods(), "p", "ns", timeout=5,  # type: ignore[arg-type]
                           stop=threading.Event())
    assert (res.ok, res.error, res.node) == (False, "boom", "n1")


# --- the in-pod programs, on loopback -----------------------------------------------

@pytest.fixture()
def echo_server() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", scripts.SERVER, str(port), "cX",
                             "127.0.0.1"], env={**os.environ, "POD_NAME": "echo-0"},
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "the echo server did not listen"
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait()


def probe(tmp_path: Path, mode: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    log = tmp_path / "termination-log"
    done = subprocess.run([sys.executable, "-c", scripts.PROBE, mode, json.dumps(args)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TERMINATION_LOG": str(log)})
    written = json.loads(log.read_text())
    assert json.loads(done.stdout) == written and len(log.read_bytes()) < 4096
    return done.returncode, written


def test_connect_reports_who_answered_and_the_source_it_saw(tmp_path: Path,
                                                            echo_server: int) -> None:
    code, out = probe(tmp_path, "connect", {"host": "127.0.0.1", "port": echo_server,
                                            "deadline": 5, "cluster": "cX"})
    assert code == 0 and out["ok"] is True
    reply = out["replies"]["127.0.0.1"]
    assert reply["cluster"] == "cX" and reply["pod"] == "echo-0"
    assert reply["peer"] == "127.0.0.1" == reply["local"]


def test_connect_fails_on_a_wrong_cluster_or_nothing_listening(tmp_path: Path,
                                                               echo_server: int) -> None:
    code, out = probe(tmp_path, "connect", {"host": "127.0.0.1", "port": echo_server,
                                            "deadline": 1, "cluster": "other"})
    assert code == 1 and out["ok"] is False and out["attempts"] >= 2  # it retried
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, out = probe(tmp_path, "connect", {"host": "127.0.0.1", "port": closed,
                                            "deadline": 0.5})
    assert code == 1 and "ConnectionRefused" in str(out["errors"])


def test_round_trips_and_streaks_measure(tmp_path: Path, echo_server: int) -> None:
    code, out = probe(tmp_path, "rr", {"host": "127.0.0.1", "port": echo_server,
                                       "count": 50, "size": 8, "warmup": 5, "deadline": 5})
    assert code == 0 and out["count"] == 50
    assert 0 < out["min_us"] <= out["p50_us"] <= out["p99_us"]
    assert out["tps"] > 0
    code, out = probe(tmp_path, "streak", {"host": "127.0.0.1", "port": echo_server,
                                           "interval": 0.05, "min_s": 0.5, "max_s": 5,
                                           "recover_s": 0.3})
    assert code == 0 and out["failed"] == 0 and out["answered"] >= 5
