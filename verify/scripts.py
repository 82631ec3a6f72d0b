"""The programs verify's pods run with the test image's python3 (`python3 -c`).

Nothing is baked into an image: any image with python3 (and iperf3, for
`benchmark throughput`) will do. Probes take one JSON argument and end by writing
one JSON object (under the kubelet's 4 KiB limit) to /dev/termination-log (or
$TERMINATION_LOG: the unit tests run them on loopback), which the kubelet copies
into the pod's status; the exit status says pass (0) or fail.
Probes retry on their own until their deadline: a Service just exported takes a
moment to be allocated, programmed and resolvable, and a new pod per retry would
cost seconds each.
"""

from __future__ import annotations

# Where servers listen (not 80: the pods run unprivileged where they can).
ECHO_PORT = 8080
IPERF_PORT = 5201

# A TCP server that greets each connection with one JSON line - its cluster, its pod
# and the peer address it sees (the source IP check reads it) - then echoes what
# comes (the latency benchmark's round trips).
SERVER = r"""
import json, os, socket, sys, threading
port, cluster = int(sys.argv[1]), sys.argv[2]
bind = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
who = {"cluster": cluster, "pod": os.environ.get("POD_NAME") or socket.gethostname()}
srv = socket.create_server((bind, port), backlog=128)
def serve(conn, peer):
    try:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall((json.dumps({**who, "peer": peer[0]}) + "\n").encode())
            print(f"client={peer[0]}:{peer[1]}", flush=True)
            while data := conn.recv(65536):
                conn.sendall(data)
    except OSError:
        pass
while True:
    threading.Thread(target=serve, args=srv.accept(), daemon=True).start()
"""

PROBE = r"""
import json, os, socket, subprocess, sys, time
mode, args = sys.argv[1], json.loads(sys.argv[2])
start = time.monotonic()
def elapsed():
    return round(time.monotonic() - start, 3)
def resolve(host, port):
    return sorted({a[4][0] for a in socket.getaddrinfo(host, port, socket.AF_INET,
                                                       socket.SOCK_STREAM)})
def hello(ip, port, timeout):
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.settimeout(timeout)
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(512)
            if not chunk:
                raise ConnectionError("closed before its greeting")
            line += chunk
        reply = json.loads(line)
        reply["local"] = s.getsockname()[0]
        return reply
def connect(a):
    # Resolve, connect to every address, until each answered as expected.
    out, deadline = {"ok": False}, start + a["deadline"]
    while True:
        out["attempts"] = out.get("attempts", 0) + 1
        try:
            addrs = resolve(a["host"], a["port"])
        except socket.gaierror as exc:
            out.update(addresses=[], replies={}, errors={"resolve": str(exc)})
        else:
            replies, errors = {}, {}
            for ip in addrs:
                try:
                    replies[ip] = hello(ip, a["port"], a.get("timeout", 2.0))
                except (OSError, ValueError) as exc:
                    errors[ip] = f"{type(exc).__name__}: {exc}"
            out.update(addresses=addrs, replies=replies, errors=errors)
            want = a.get("cluster")
            out["ok"] = bool(addrs) and not errors and (
                want is None or all(r.get("cluster") == want for r in replies.values())) and (
                a.get("addresses") is None or addrs == sorted(a["addresses"]))
        if out["ok"] or time.monotonic() > deadline:
            return out
        time.sleep(0.5)
def gone(a):
    # Until the name has no address (NXDOMAIN or no data), three times in a row.
    out, streak, deadline = {"ok": False, "addresses": []}, 0, start + a["deadline"]
    while time.monotonic() < deadline:
        try:
            out["addresses"], streak = resolve(a["host"], 80), 0
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
                streak += 1
                out.setdefault("first_gone_s", elapsed())
            else:
                streak, out["error"] = 0, str(exc)
        if streak >= 3:
            out.update(ok=True, addresses=[])
            return out
        time.sleep(0.3)
    return out
def streak(a):
    # New connections every interval; done once min_s passed and the last recover_s
    # all answered (or max_s passed). The longest gap between answers is the outage.
    seen, last_ok, gap, failed = [], None, 0.0, 0
    while True:
        t = time.monotonic()
        try:
            hello(a["host"], a["port"], 0.5)
            ok = True
        except (OSError, ValueError):
            ok, failed = False, failed + 1
        if ok:
            gap = max(gap, t - (last_ok if last_ok is not None else start))
            last_ok = t
        seen.append((t, ok))
        recent = [k for s, k in seen if s >= t - a["recover_s"]]
        done = t - start >= a["min_s"] and all(recent) and t - seen[0][0] >= a["recover_s"]
        if done or t - start >= a["max_s"]:
            return {"ok": done, "answered": len(seen) - failed, "failed": failed,
                    "max_gap_s": round(gap, 3), "seconds": elapsed()}
        time.sleep(max(0.0, a["interval"] - (time.monotonic() - t)))
def iperf(a):
    out, deadline = {"ok": False}, start + a["deadline"]
    while True:
        run = subprocess.run(["iperf3", "-c", a["host"], "-p", str(a["port"]), "-t",
                              str(a["seconds"]), "-J"], capture_output=True, text=True)
        try:
            doc = json.loads(run.stdout)
        except ValueError:
            doc = {"error": (run.stderr or run.stdout).strip()[-300:] or "no output"}
        if "error" not in doc:
            end = doc["end"]
            return {"ok": True, "mbps": round(end["sum_received"]["bits_per_second"] / 1e6, 1),
                    "retransmits": end["sum_sent"].get("retransmits")}
        out["error"] = str(doc["error"])[:300]
        if time.monotonic() > deadline:
            return out
        time.sleep(1.0)
def rr(a):
    # Round trips of `size` bytes on one connection: the request/response latency.
    out, deadline = {"ok": False}, start + a["deadline"]
    while True:
        try:
            s = socket.create_connection((a["host"], a["port"]), timeout=2.0)
            break
        except OSError as exc:
            out["error"] = str(exc)
            if time.monotonic() > deadline:
                return out
            time.sleep(0.5)
    with s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(5.0)
        f = s.makefile("rb")
        out["server"] = json.loads(f.readline())
        payload, times = b"x" * a["size"], []
        began = time.perf_counter()
        for i in range(a["warmup"] + a["count"]):
            t = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < len(payload):
                chunk = s.recv(len(payload) - got)
                if not chunk:
                    out["error"] = "closed by the server"
                    return out
                got += len(chunk)
            if i >= a["warmup"]:
                times.append(time.perf_counter() - t)
        total = time.perf_counter() - began
    times.sort()
    def pct(p):
        return round(times[min(len(times) - 1, int(p * len(times)))] * 1e6, 1)
    return {"ok": True, "count": len(times), "min_us": pct(0), "p50_us": pct(0.5),
            "p90_us": pct(0.9), "p99_us": pct(0.99),
            "mean_us": round(sum(times) / len(times) * 1e6, 1),
            "tps": round((a["warmup"] + a["count"]) / total, 1), "server": out["server"]}
try:
    result = {"connect": connect, "gone": gone, "streak": streak, "iperf": iperf,
              "rr": rr}[mode](args)
except Exception as exc:
    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
result.setdefault("seconds", elapsed())
text = json.dumps(result)
if len(text) > 3900:
    text = json.dumps({k: v for k, v in result.items() if k in ("ok", "error", "seconds")})
print(text, flush=True)
try:
    with open(os.environ.get("TERMINATION_LOG", "/dev/termination-log"), "w") as f:
        f.write(text)
except OSError:
    pass
sys.exit(0 if result.get("ok") else 1)
"""

# The probe modes (the keys of PROBE's table), checked before a pod is made.
PROBE_MODES = ("connect", "gone", "streak", "iperf", "rr")
