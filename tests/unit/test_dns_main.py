"""The standalone server (``python -m lighthouse.dns``), its records file, restarts, doctest.

The entry point runs as a real child process on a free loopback port, serving a
JSON records file; SIGHUP reloads the file and SIGTERM stops it (killed by PID if
it does not). The server module's doctest (start, query, stop) runs as a test.

Address convention: cluster ``east`` is local and owns 242.0.0.0/16, ``west``
242.1.0.0/16. The server listens on 127.0.0.1.
"""

from __future__ import annotations

import doctest
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

import lighthouse.dns.server
from kube.testing import await_condition
from lab.ports import free_port
from lighthouse.dns import recordsfile
from lighthouse.dns.records import ClusterExport, ServiceRecords
from lighthouse.dns.server import DnsServer, ServerConfig, ServerThread
from lighthouse.dns.testing import addresses, ask

ZONE = "clusterset.local"
WEB = f"web.default.svc.{ZONE}"

DOC = {
    "local_cluster": "east",
    "clusters": {"west": {"healthy": True}},
    "services": [
        {
            "namespace": "default",
            "name": "web",
            "exports": [
                {"cluster": "west", "global_ip": "242.1.0.7",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
            ],
        },
        {
            "namespace": "default",
            "name": "db",
            "exports": [
                {"cluster": "west", "endpoints": [
                    {"ip": "242.1.0.10", "hostname": "db-0"},
                    {"ip": "242.1.0.11", "hostname": "db-1", "ready": False},
                ]},
            ],
        },
    ],
}


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(DOC))
    return path


@pytest.fixture
def standalone(records_file: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lighthouse.dns", "--listen", f"127.0.0.1:{port}",
         "--records-file", str(records_file), "--metrics-port", str(metrics_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on"), line + (proc.stderr.read() if proc.stderr else "")
        yield proc, port, metrics_port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_the_standalone_server_serves_the_records_file_and_reloads_it_on_sighup(
    standalone: tuple[subprocess.Popen[str], int, int], records_file: Path
) -> None:
    proc, port, _ = standalone
    assert addresses(ask(port, WEB)) == ["242.1.0.7"]
    assert addresses(ask(port, f"db.default.svc.{ZONE}", tcp=True)) == ["242.1.0.10"]
    doc = json.loads(records_file.read_text())
    doc["services"][0]["exports"].append({"cluster": "east", "global_ip": "242.0.0.7"})
    del doc["services"][1]
    records_file.write_text(json.dumps(doc))
    proc.send_signal(signal.SIGHUP)
    await_condition(lambda: addresses(ask(port, WEB)) == ["242.0.0.7"], message="reloaded A")
    assert ask(port, f"db.default.svc.{ZONE}").rcode() == dns.rcode.NXDOMAIN


def test_a_broken_records_file_on_reload_keeps_the_previous_records(
    standalone: tuple[subprocess.Popen[str], int, int], records_file: Path
) -> None:
    proc, port, metrics_port = standalone
    records_file.write_text("{ not json")
    proc.send_signal(signal.SIGHUP)
    # The metrics endpoint answering after the signal shows the reload ran.
    await_condition(
        lambda: b"lighthouse_dns_queries_total" in urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=2
        ).read(),
        message="metrics endpoint",
    )
    assert addresses(ask(port, WEB)) == ["242.1.0.7"]
    assert proc.poll() is None


def test_the_records_file_round_trips_through_the_store(records_file: Path) -> None:
    records = ServiceRecords()
    recordsfile.load(records_file, records)
    again = ServiceRecords()
    path = records_file.with_name("again.json")
    path.write_text(json.dumps(recordsfile.dump(records)))
    recordsfile.load(path, again)
    assert set(again) == set(records) and len(list(again)) == 2
    assert again.local_cluster == "east"


def test_a_server_stopped_and_started_again_answers_from_the_current_records() -> None:
    records = ServiceRecords(local_cluster="east")
    records.upsert_service(
        namespace="default", name="web", export=ClusterExport(cluster="east", global_ip="242.0.0.7")
    )
    server = DnsServer(records, config=ServerConfig(port=0))
    with ServerThread(server) as first:
        assert addresses(ask(server.port, WEB)) == ["242.0.0.7"]
        assert not first.errors
    records.upsert_service(
        namespace="default", name="web", export=ClusterExport(cluster="east", global_ip="242.0.0.8")
    )
    with ServerThread(server) as second:
        assert addresses(ask(server.port, WEB)) == ["242.0.0.8"]
        assert not second.errors


def test_the_server_module_doctest_starts_queries_and_stops_a_server() -> None:
    result = doctest.testmod(lighthouse.dns.server)
    assert result.attempted > 0 and result.failed == 0
