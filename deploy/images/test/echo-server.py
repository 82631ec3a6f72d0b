#!/usr/bin/python3
"""gn-echo: the test image's HTTP and UDP echo server, on one port number.

HTTP `GET /` answers the message (default "hello from HOSTNAME"), `/clientip`
the caller's address as the server saw it (what source-NAT tests check),
`/hostname` the pod's name; every request is logged with the caller's address.
UDP datagrams come back unchanged. PID 1 of a container ignores SIGTERM unless
it handles it, which would make every pod delete wait for its grace period:
this server exits at once on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import signal
import socket
import sys
import threading
from types import FrameType


def _bind_family(port: int, kind: socket.SocketKind) -> socket.socket:
    """A dual-stack socket when the namespace has IPv6, else IPv4 only."""
    if socket.has_ipv6:
        with contextlib.suppress(OSError):
            sock = socket.socket(socket.AF_INET6, kind)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            return sock
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    return sock


def _peer(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host = address[0].removeprefix("::ffff:")
    return f"{host}:{address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    message = ""
    server_version = "gn-echo"

    def do_GET(self) -> None:
        peer = _peer(self.client_address)
        paths = {"/clientip": peer, "/hostname": socket.gethostname()}
        body = (paths.get(self.path.split("?")[0], self.message) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"client={_peer(self.client_address)} {format % args}", flush=True)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.socket.listen(128)


def _udp_echo(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gn-echo", description=__doc__.splitlines()[0])
    # Kubernetes sets ECHO_PORT=tcp://IP:PORT in every pod of a namespace with a
    # Service named echo (service links): only a plain number counts as ours.
    env_port = os.environ.get("ECHO_PORT", "")
    parser.add_argument("--port", type=int, default=int(env_port) if env_port.isdigit() else 8080)
    parser.add_argument("--message", default=os.environ.get("ECHO_MESSAGE"))
    args = parser.parse_args(argv)

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _Handler.message = args.message or f"hello from {socket.gethostname()}"
    udp = _bind_family(args.port, socket.SOCK_DGRAM)
    threading.Thread(target=_udp_echo, args=(udp,), daemon=True).start()
    server = _Server(_bind_family(args.port, socket.SOCK_STREAM))
    print(f"gn-echo: HTTP and UDP echo on port {args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
