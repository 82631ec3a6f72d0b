"""Bad input to every gnctl command and flag ends in one line, never a traceback.

The commands and their flags are read from gnctl's own argparse parser, so a new
command or flag is swept without editing this file (a new required argument needs a
good value in `GOOD`, and the test says so). Each flag gets bad values chosen by its
kind (a missing value, malformed and hostile values, unusable files); every run must
exit 1 with one line `gnctl: ...`, or 2 with argparse's usage error, and print no
traceback. The sweep's runs are forked from this process with gnctl imported
(`gnctl_forked`: hundreds of runs in seconds); the issue's known cases run as users
run gnctl, `python -m cli.main`, and check what their line says.
tests/kube/test_gnctl_bad_input_cluster.py runs the cluster commands of this sweep
against a real API server and checks that nothing in it changed.

Address convention: the only API server named is https://127.0.0.1:PORT, a port this
module keeps bound without listening, so every connection is refused at once and
nothing leaves the machine. Lab commands see an empty lab folder (GLOBALNET_LAB_DIR)
and a lab name of their own; `lab up` only runs with arguments that gnctl's parser or
the lab's planner refuses, checked in this process first.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import main as gnctl_main

REPO = Path(__file__).resolve().parents[2]
LAB_NAME = "gnsweep"

# Good values for the arguments a command needs, by argparse dest; "@NAME" is a file
# of the fixture (`Files`). The sweep replaces one of them (or adds one flag) per run.
GOOD: dict[str, list[str]] = {
    "broker_info": ["@broker_info"],
    "cluster_id": ["c1"],
    "kubeconfig": ["@kubeconfig"],
    "name": [LAB_NAME],
    "cluster": ["c1"],
    "pod": ["client"],
    "cmd": ["--", "true"],
}

# Hostile strings for any free-text flag: empty, path and URL games, shell syntax,
# control characters, very long.
HOSTILE = ["", "A/../B", "x" * 300, "$(touch /tmp/gn-pwned)\n-"]
# Per dest, the values that are wrong for what it means.
BAD_BY_DEST: dict[str, list[str]] = {
    "cluster_id": ["East", "a" * 64, "c1/../kube-system", "-c1", ""],
    "cluster_cidr": ["10.244.0.0/33", "10.244.0.1/16", "bogus", "::1/64"],
    "service_cidr": ["10.96.0.0/33", "bogus"],
    "globalnet_cidr": ["242.0.0.1/24", "bogus"],
    "globalnet_cidr_range": ["242.0.0.0/33", "bogus", "10.0.0.0/30"],
    "pod_cidr": ["10.244.0.0/33", "bogus"],
    "service_cidr_lab": ["bogus"],
    "broker_api_server": ["http://127.0.0.1:6443", "https://", "https://h:99999", "ftp://x"],
    "local_broker_url": ["http://127.0.0.1:6443", "https://h:notaport"],
    "api_server": ["http://127.0.0.1:6443", "not a url"],
    "dns_service_ip": ["10.96.0.300", "bogus"],
    "image": ["UPPER/Case:tag", "no tag"],
    "context": ["nope", ""],
    "netns": ["no-such-netns", "../../proc/1/ns/net"],
    "broker_namespace": ["Broker", "a/b", "x" * 70],
    # A file to write: a directory, in a folder that does not exist, unwritable.
    "out": ["@directory", "@missing/x", "@denied"],
}
# Files standing for a path argument: missing, a directory, unreadable, empty.
BAD_PATHS = ["@missing", "@directory", "@denied", "@empty"]
BAD_KUBECONFIGS = ["@kc_unreachable", "@kc_string", "@kc_list", "@kc_no_clusters",
                   "@kc_missing_user", "@kc_missing_cluster", "@kc_bad_yaml", "@kc_binary",
                   "@kc_no_contexts", "@kc_server_not_string"]
BAD_BROKER_INFOS = ["@bi_garbage", "@bi_kubeconfig", "@bi_edited", "@bi_binary"]
BAD_INTS = ["x", "-1", "0", "99999999999999999999"]
BAD_FLOATS = ["x", "nan", "inf", "-5"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One run: the command's words and the arguments after them."""

    command: tuple[str, ...]
    argv: tuple[str, ...]
    what: str

    @property
    def id(self) -> str:
        return f"{' '.join(self.command)}: {self.what}"


# --- reading the parser --------------------------------------------------------------

def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf command of `parser` with the words that select it."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    seen: set[int] = set()
    for action in subs:
        for word, sub in action.choices.items():
            if id(sub) not in seen:  # an alias names the same parser
                seen.add(id(sub))
                yield from commands(sub, (*path, word))


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def is_flag_only(action: argparse.Action) -> bool:
    return action.nargs == 0


def good_argv(command: tuple[str, ...], parser: argparse.ArgumentParser, *,
              without: str | None = None, replace: dict[str, list[str]] | None = None
              ) -> list[str]:
    """Good arguments for `command`: its required ones, and --kubeconfig and --name
    always (never the user's defaults); `without` leaves one out, `replace` swaps values."""
    positionals: list[str] = []
    options: list[str] = []
    replace = replace or {}
    for action in arguments(parser):
        required = action.required or (not action.option_strings and action.nargs != "?")
        wanted = required or action.dest in ("kubeconfig", "name")
        if action.dest == without or not (wanted or action.dest in replace):
            continue
        if action.dest in replace:
            values = replace[action.dest]
        elif action.dest in GOOD:
            values = GOOD[action.dest]
        else:
            raise AssertionError(f"gnctl {' '.join(command)}: no good value for the required "
                                 f"argument {action.dest!r}; add one to GOOD")
        if action.option_strings:
            options += [_flag(action), *values]
        else:
            positionals += values
    return [*options, *positionals]  # options first: a REMAINDER positional ends it all


def bad_values(action: argparse.Action) -> list[tuple[str, list[str]]]:
    """(what, argument words) for one argument: the flag without its value, then the
    values wrong for its kind and meaning."""
    flag = _flag(action) if action.option_strings else None
    if flag and is_flag_only(action):
        return [(f"{flag}=junk", [f"{flag}=junk"])]
    if action.nargs == argparse.REMAINDER:
        return [("no command after --", ["--"])]
    values: list[str]
    if action.dest == "kubeconfig":
        values = [*BAD_KUBECONFIGS, *BAD_PATHS]
    elif action.dest == "broker_info":
        values = [*BAD_BROKER_INFOS, *BAD_PATHS]
    elif action.choices is not None:
        values = ["bogus", ""]
    elif action.type is int:
        values = BAD_INTS
    elif action.type is float:
        values = BAD_FLOATS
    elif action.dest in BAD_BY_DEST:
        values = BAD_BY_DEST[action.dest]
    elif action.type is Path:
        values = BAD_PATHS
    else:
        values = HOSTILE
    cases = [(f"{flag or action.dest}={v!r}", [flag, v] if flag else [v]) for v in values]
    if flag:
        cases.insert(0, (f"{flag} without a value", [flag]))
    return cases


def sweep() -> list[Case]:
    """Every command, every argument, each of its bad values, plus each required argument
    left out."""
    cases: list[Case] = []
    for command, parser in commands(gnctl_main.build_parser()):
        for action in arguments(parser):
            required = action.required or (not action.option_strings and action.nargs
                                            not in ("?", argparse.REMAINDER))
            if required:
                cases.append(Case(command, tuple(good_argv(command, parser,
                                                           without=action.dest)),
                                  f"{action.dest} left out"))
            for what, words in bad_values(action):
                if action.option_strings:
                    # The bad flag first, so that another option follows a flag left
                    # without its value (and a `--` never swallows it); last when a
                    # positional would follow and be taken for its value.
                    rest = good_argv(command, parser, without=action.dest)
                    argv = [*words, *rest] if rest[:1] == [] or rest[0].startswith("-") \
                        else [*rest, *words]
                else:
                    argv = good_argv(command, parser, replace={action.dest: words})
                cases.append(Case(command, tuple(argv), what))
    return cases


CASES = sweep()


# --- the world the runs see ----------------------------------------------------------

@dataclasses.dataclass
class World:
    files: dict[str, Path]
    env: dict[str, str]
    server: str
    lab_dir: Path

    def resolve(self, argv: tuple[str, ...]) -> list[str]:
        """The argument words with "@NAME" (or "@NAME/REST") made the fixture's files."""
        words = []
        for word in argv:
            name, _, rest = word[1:].partition("/")
            if word.startswith("@") and name in self.files:
                word = str(self.files[name] / rest if rest else self.files[name])
            words.append(word)
        return words


def _kubeconfig(server: str, ca: Path, *, context: str = "sweep") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "c", "cluster": {"server": server,
                                                   "certificate-authority": str(ca)}}],
            "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "t0ken"}}]}


def make_world(tmp: Path, server: str) -> World:
    """Good and bad kubeconfigs and broker-info files; the good ones name `server`,
    where nothing answers (tests/kube puts a real cluster's files in their place)."""
    from deploy.brokerinfo import BrokerInfo
    from lab.pki import create_pki

    pki = create_pki(tmp / "pki", ip_sans=["127.0.0.1"], dns_sans=[])
    files: dict[str, Path] = {}

    def put(name: str, text: str | bytes) -> None:
        path = tmp / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        files[name] = path

    good = _kubeconfig(server, pki.ca_cert)
    put("kubeconfig", yaml.safe_dump(good))
    put("kc_unreachable", yaml.safe_dump(good))
    put("kc_string", '"just a string"\n')
    put("kc_list", "- 1\n- 2\n")
    put("kc_no_clusters", yaml.safe_dump({k: v for k, v in good.items() if k != "clusters"}))
    put("kc_missing_user", yaml.safe_dump({**good, "contexts": [
        {"name": "sweep", "context": {"cluster": "c", "user": "nobody"}}]}))
    put("kc_missing_cluster", yaml.safe_dump({**good, "contexts": [
        {"name": "sweep", "context": {"cluster": "elsewhere", "user": "u"}}]}))
    put("kc_bad_yaml", "clusters: [\n  {name: c\n")
    put("kc_binary", b"\x00\xff\xfe\x80" * 64)
    put("kc_no_contexts", yaml.safe_dump({**good, "contexts": []}))
    put("kc_server_not_string", yaml.safe_dump({**good, "clusters": [
        {"name": "c", "cluster": {"server": ["https://127.0.0.1:1"]}}]}))
    info = BrokerInfo(server=server, ca_pem=pki.ca_cert.read_text(), token="t0ken",
                      namespace="submariner-k8s-broker", globalnet=True,
                      globalnet_cidr_range="242.0.0.0/8", globalnet_cluster_size=65536)
    put("broker_info", info.encode())
    put("bi_garbage", "this is not it\n")
    put("bi_kubeconfig", yaml.safe_dump(good))
    put("bi_binary", b"\x00\xff" * 100)
    doc = json.loads(base64.b64decode(info.encode()))
    doc["server"] = "https://203.0.113.9:6443"  # edited by hand: the digest no longer fits
    put("bi_edited", base64.b64encode(json.dumps(doc).encode()).decode())
    put("empty", "")
    (tmp / "directory").mkdir()
    files["directory"] = tmp / "directory"
    files["missing"] = tmp / "no-such-file"
    if os.geteuid() == 0:
        # Root reads any file it owns; this one refuses even root (write-only sysctl).
        files["denied"] = Path("/proc/sys/vm/compact_memory")
    else:
        put("denied", "secret")
        files["denied"].chmod(0)
    lab_dir = tmp / "lab"
    (lab_dir / "gnbroken").mkdir(parents=True)
    (lab_dir / "gnbroken" / "state.json").write_text("{not json")
    env = {k: v for k, v in os.environ.items() if k not in ("GNCTL_LAB", "KUBECONFIG")}
    env.update({"KUBECONFIG": str(files["kubeconfig"]), "HOME": str(tmp),
                "GLOBALNET_LAB_DIR": str(lab_dir), "NO_PROXY": "*", "no_proxy": "*"})
    return World(files, env, server, lab_dir)


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused, and nothing
    else can take the port while the tests run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, refused_port: int) -> World:
    return make_world(tmp_path_factory.mktemp("gnctl-bad"), f"https://127.0.0.1:{refused_port}")


def gnctl(world: World, argv: list[str], *, timeout: float = 60
          ) -> subprocess.CompletedProcess[str]:
    """`python -m cli.main ARGV`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=world.env)


def gnctl_forked(world: World, argv: list[str], *, timeout: float = 60
                 ) -> subprocess.CompletedProcess[str]:
    """`gnctl ARGV` in a child forked from this process, which has gnctl's modules
    imported already: what `python -m cli.main` does (an uncaught exception prints its
    traceback and exits 1) without half a second of imports per run, for the sweep's
    hundreds of runs."""
    gnctl_main._user_errors()  # imports what the commands import when they run
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code: Any = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child's own
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                os.environ.clear()
                os.environ.update(world.env)
                os.chdir(REPO)
                signal.alarm(int(timeout))
                code = gnctl_main.main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                from kube import kubeconfig

                kubeconfig._remove_temp_files()  # what atexit would do; os._exit skips it
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 1)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            argv, os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"),
            err.read().decode(errors="replace"))


def assert_one_line(done: subprocess.CompletedProcess[str], what: str) -> str:
    """The run failed as a user's mistake should; returns its message line."""
    out = f"{what}\nexit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout, out
    assert done.returncode in (1, 2), out
    lines = done.stderr.strip().splitlines()
    if done.returncode == 1:
        assert len(lines) == 1 and lines[0].startswith("gnctl: "), out
        return lines[0]
    assert lines and lines[0].startswith("usage: gnctl"), out
    assert lines[-1].startswith("gnctl") and ": error: " in lines[-1], out
    return lines[-1]


def refuse_lab_up(argv: list[str]) -> None:
    """`lab up` must only run with arguments refused before it builds anything."""
    from cli import lab_cmd
    from lab.topology import TopologyError, plan_lab

    try:
        args = gnctl_main.build_parser().parse_args(argv)
    except SystemExit:
        return  # argparse refuses it: a usage error
    with pytest.raises(TopologyError):
        plan_lab(lab_cmd.spec_of(args))


# --- the tests -----------------------------------------------------------------------

def test_the_sweep_covers_every_command() -> None:
    swept = {c.command for c in CASES}
    everything = {path for path, _ in commands(gnctl_main.build_parser())}
    assert swept == everything
    assert {("join",), ("deploy-broker",), ("leave",), ("uninstall",), ("show", "allocations"),
            ("lab", "exec"), ("lab", "up")} <= swept


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_line(world: World, case: Case) -> None:
    """No traceback: exit 1 with `gnctl: ...`, or argparse's usage error (exit 2)."""
    argv = [*case.command, *world.resolve(case.argv)]
    if case.command == ("lab", "up"):
        refuse_lab_up(argv)
    assert_one_line(gnctl_forked(world, argv), case.id)
    assert not world.lab_dir.joinpath(LAB_NAME).exists()


# The cases of issue 14, each with what its one line must say.
KNOWN = [
    (["join", "@broker_info", "--kubeconfig", "@kc_string", "--clusterid", "c1"],
     "kubeconfig {kc_string}: not a kubeconfig: it holds a YAML string"),
    (["deploy-broker", "--kubeconfig", "@kc_string"], "not a kubeconfig: it holds a YAML string"),
    (["deploy-broker", "--kubeconfig", "@kc_list"], "not a kubeconfig: it holds a YAML list"),
    (["deploy-broker", "--kubeconfig", "@kc_no_clusters"], "Expected key clusters"),
    (["join", "@broker_info", "--kubeconfig", "@kc_missing_user", "--clusterid", "c1"],
     "context 'sweep' names user 'nobody', which is not in its users"),
    (["deploy-broker", "--kubeconfig", "@kc_missing_cluster"],
     "context 'sweep' names cluster 'elsewhere', which is not in its clusters"),
    (["deploy-broker", "--kubeconfig", "@kc_bad_yaml"], "not valid YAML"),
    (["show", "allocations", "--kubeconfig", "@kubeconfig"],
     "cannot reach the API server {server}: connection refused"),
    (["show", "allocations", "--kubeconfig", "@kubeconfig", "--context", "kind-c9"],
     "no context 'kind-c9' (its contexts: sweep)"),
    (["show", "allocations", "--kubeconfig", "@directory"], "is a directory"),
    (["show", "allocations", "--kubeconfig", "@denied"], "ermission denied"),
    (["show", "allocations", "--kubeconfig", "@missing"], "not found"),
    (["lab", "exec", "--name", LAB_NAME, "c1", "client", "--", "true"],
     f"lab '{LAB_NAME}' is not up"),
    (["lab", "kubectl", "--name", LAB_NAME, "broker", "--", "get", "nodes"],
     f"lab '{LAB_NAME}' is not up"),
    (["lab", "down", "--name", ""], "invalid lab name ''"),
    (["lab", "status", "--name", "gnbroken"], "its state file"),
    (["lab", "down", "--name", "gnbroken"], "is damaged"),
    (["show", "nat", "--bpffs", "@directory"], "it goes with --datapath ebpf"),
    (["show", "nat", "--datapath", "ebpf", "--bpffs", "@missing"], "no such folder"),
    (["join", "@bi_garbage", "--clusterid", "c1"], "is not a broker-info file"),
    (["join", "@bi_edited", "--clusterid", "c1"], "altered or damaged"),
    (["join", "@directory", "--clusterid", "c1"], "s a directory"),
    (["join", "@broker_info", "--clusterid", "East"], "is not a DNS label"),
    (["join", "@broker_info", "--clusterid", "a" * 64], "is not a DNS label"),
    (["join", "@broker_info", "--clusterid", "c1/../x"], "is not a DNS label"),
    (["join", "@broker_info", "--clusterid", "c1", "--clustercidr", "10.0.0.0/33"],
     "invalid cluster CIDR '10.0.0.0/33'"),
    (["join", "@broker_info", "--clusterid", "c1", "--timeout", "nan"], "must be positive"),
    (["join", "@broker_info", "--clusterid", "c1", "--image", "UPPER/Case:tag"],
     "is not an image reference"),
    (["join", "@broker_info", "--clusterid", "c1", "--gateway-node", ""], "is not a node name"),
    (["leave", "@broker_info", "--clusterid", "C1"], "is not a DNS label"),
    (["deploy-broker", "--globalnet-cidr-range", "bogus"], "bogus"),
    (["deploy-broker", "--clusterset-ip-cidr-range", "244.1.0.0/33"],
     "invalid ClusterSetIP CIDR range '244.1.0.0/33'"),
    (["deploy-broker", "--clusterset-ip-cidr-range", "244.1.0.0/24"],
     "ClusterSetIP CIDR range 244.1.0.0/24: cluster size 4096 (rounded to 4096) is more than "
     "half"),
    (["deploy-broker", "--clusterset-ip-cluster-size", "0"], "cluster size must be positive"),
    (["deploy-broker", "--out", "@directory"], "is a directory"),
    (["deploy-broker", "--out", "@missing/x"], "does not exist"),
    (["deploy-broker", "--broker-namespace", "A/B"], "is not a namespace name"),
    (["join", "@broker_info", "--clusterid", "c1"],
     "cannot reach the Broker at {server}"),
]


@pytest.mark.parametrize(("argv", "expected"), KNOWN, ids=[" ".join(a) for a, _ in KNOWN])
def test_known_mistakes_say_what_is_wrong(world: World, argv: list[str], expected: str) -> None:
    names = {k: str(v) for k, v in world.files.items()}
    started = time.monotonic()
    line = assert_one_line(gnctl(world, world.resolve(tuple(argv))), " ".join(argv))
    assert expected.format(server=world.server, **names) in line
    assert time.monotonic() - started < 10  # no retry loops against a dead server


def test_debug_shows_the_traceback(world: World) -> None:
    done = gnctl(world, ["--debug", "show", "allocations"])
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "MaxRetryError" in done.stderr


def test_a_server_that_never_answers_is_one_line_within_seconds(world: World,
                                                                tmp_path: Path) -> None:
    """A listener that accepts and stays silent: the CLI's client does not retry, and
    its connect timeout (kube.rest.DEFAULT_TIMEOUT) bounds the TLS handshake."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = yaml.safe_load(world.files["kubeconfig"].read_text())
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        config["clusters"][0]["cluster"]["server"] = url
        path = tmp_path / "silent.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        started = time.monotonic()
        line = assert_one_line(gnctl(world, ["show", "allocations", "--kubeconfig", str(path)]),
                               "a silent server")
    assert line.startswith(f"gnctl: cannot reach the API server {url}: no answer in time")
    assert time.monotonic() - started < 15
