"""Traffic probes that run inside lab pods, for failover and restart tests and benches.

Each probe is a small Python program run with the test image's python3 in a pod's
namespaces (`Lab.exec_argv`), so what it measures is what a workload sees:

* `ConnectProbe`: a new TCP connection (HTTP GET) every interval to a service; the
  gap is the longest time between two answered probes around an event;
* `echo_server_manifest`: an echo server Pod and Service (port ECHO_PORT);
* `Streams`: N long-lived connections to an echo server, each sending a line every
  interval and timing the echo; reports per connection whether it ever broke.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from typing import Any

ECHO_PORT = 9000

# A probe's connect, then its answer, may take this long each: under the 1 s of
# TCP's first SYN retransmission (a SYN lost in the outage fails its probe), above
# the few hundred ms a loaded lab's answer sometimes takes (not an outage).
PROBE_TIMEOUT_S = 0.9
# A new connection every `interval` on the clock, each in a thread of its own: one
# that hangs through an outage does not hold back the next, so the gap is measured
# to the interval, not to the timeout.
CONNECT_PROBE = r"""
import json, socket, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
duration, interval, timeout = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
out, lock = [], threading.Lock()
def probe(t):
    ok = False
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            ok = s.recv(64).startswith(b"HTTP/1")
    except OSError:
        pass
    with lock:
        out.append([t, ok])
threads, start = [], time.time()
for i in range(int(duration / interval)):
    time.sleep(max(0.0, start + i * interval - time.time()))
    th = threading.Thread(target=probe, args=(time.time(),))
    th.start()
    threads.append(th)
for th in threads:
    th.join()
print(json.dumps(sorted(out)))
"""

ECHO_SERVER = r"""
import socket, threading
srv = socket.create_server(("0.0.0.0", 9000), reuse_port=True)
def serve(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""

# N connections, one line each every INTERVAL until the file STOP exists; then one JSON
# line per connection: lines echoed, the longest wait for an echo, the error if any.
STREAMS = r"""
import json, os, socket, sys, threading, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interval, stop = float(sys.argv[4]), sys.argv[5]
results = [{"echoed": 0, "worst_s": 0.0, "error": None} for _ in range(n)]
def run(out):
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.settimeout(30)
            while not os.path.exists(stop):
                t = time.time()
                s.sendall(b"x" * 63 + b"\n")
                got = b""
                while len(got) < 64:
                    chunk = s.recv(64 - len(got))
                    if not chunk:
                        raise ConnectionError("closed by the far end")
                    got += chunk
                out["echoed"] += 1
                out["worst_s"] = max(out["worst_s"], time.time() - t)
                time.sleep(max(0.0, interval - (time.time() - t)))
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
threads = [threading.Thread(target=run, args=(r,)) for r in results]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


class ConnectProbe:
    """New connections from a pod to `ip:port` for `duration` s, in the background."""

    def __init__(self, argv_in_pod: list[str], ip: str, duration: float, *,
                 port: int = 80, interval: float = 0.05) -> None:
        self.proc = subprocess.Popen(
            [*argv_in_pod, "python3", "-c", CONNECT_PROBE, ip, str(port), str(duration),
             str(interval), str(PROBE_TIMEOUT_S)], stdout=subprocess.PIPE, text=True)

    def results(self) -> list[tuple[float, bool]]:
        out, _ = self.proc.communicate(timeout=120)
        return [(float(t), bool(ok)) for t, ok in json.loads(out)]


def gap_after(results: list[tuple[float, bool]], event: float) -> float:
    """The longest time between two answered probes from just before `event` on."""
    answered = [t for t, ok in results if ok and t >= event - 1.0]
    return max((b - a for a, b in itertools.pairwise(answered)), default=0.0)


def recovered(results: list[tuple[float, bool]], event: float) -> bool:
    """Answered in the last 10 probes before `event` and in the last 20 of the run.
    Before: those that ended before it (a probe started just before the event
    meets it; its failure is the event's, not a path that was broken before)."""
    before = [ok for t, ok in results if t < event - 2 * PROBE_TIMEOUT_S]
    after = [ok for t, ok in results if t > event]
    return bool(before[-10:]) and all(before[-10:]) and bool(after[-20:]) and all(after[-20:])


def failures_around(results: list[tuple[float, bool]], event: float, step: float = 0.05
                    ) -> str:
    """The failed probes as runs of consecutive ones, in seconds from `event`: what an
    assertion or a bench prints when traffic did not recover, short enough to read
    (a list of 90 start times is not)."""
    failed = [round(t - event, 2) for t, ok in results if not ok]
    if not results:
        return "no probe ran"
    runs: list[list[float]] = []
    for t in failed:
        if runs and t - runs[-1][-1] <= 1.5 * step:
            runs[-1].append(t)
        else:
            runs.append([t])
    shown = ", ".join(f"{r[0]:+.2f}" if len(r) == 1 else f"{r[0]:+.2f}..{r[-1]:+.2f} ({len(r)})"
                      for r in runs)
    first, last = results[0][0] - event, results[-1][0] - event
    return (f"{len(failed)} of {len(results)} probes failed"
            f"{', at ' + shown + ' s from the event' if failed else ''}; "
            f"the probes ran {first:+.2f}..{last:+.2f} s")


def echo_server_manifest(name: str = "echo", image: str = "globalnet/test:lab",
                         node: str | None = None) -> str:
    """A Pod running the echo server (on `node`, if given) and its Service, as a
    kubectl-applicable List."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
         "spec": {**({"nodeName": node} if node else {}),
                  "containers": [{"name": name, "image": image, "imagePullPolicy": "Never",
                                  "command": ["python3", "-c", ECHO_SERVER]}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default"},
         "spec": {"selector": {"app": name},
                  "ports": [{"port": ECHO_PORT, "targetPort": ECHO_PORT}]}}]})


class Streams:
    """`count` long-lived echo connections from a pod; `stop()` ends them (through a
    file in the pod) and returns each connection's report."""

    def __init__(self, argv_in_pod: list[str], ip: str, count: int, *,
                 interval: float = 0.05, stop_file: str = "/tmp/globalnet-streams-stop"
                 ) -> None:
        self.argv, self.stop_file = argv_in_pod, stop_file
        subprocess.run([*argv_in_pod, "rm", "-f", stop_file], check=True)
        self.proc = subprocess.Popen(
            [*argv_in_pod, "python3", "-c", STREAMS, ip, str(ECHO_PORT), str(count),
             str(interval), stop_file], stdout=subprocess.PIPE, text=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> list[dict[str, Any]]:
        subprocess.run([*self.argv, "touch", self.stop_file], check=False)
        out, _ = self.proc.communicate(timeout=90)
        reports: list[dict[str, Any]] = json.loads(out)
        return reports
