"""Host-side TCP relay into lab namespaces.

A lab's API servers listen inside their control-plane namespaces. So that a
user's kubectl and gnctl reach them without any change to the host's own
networking, this relay listens on loopback in the namespace that ran
`lab up` and, per connection, opens a socket *inside* the target namespace
(sockets keep the namespace they were created in) and pipes bytes both ways.

Run as `python -m lab.relay CONFIG.json`; the config maps listen ports to
`[netns, address, port]`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from lab import netns

BUFFER = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _socket_in(ns: str) -> socket.socket:
    with netns.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def _handler(target_ns: str, host: str, port: int):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        sock = _socket_in(target_ns)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout=5)
        except (OSError, TimeoutError):
            sock.close()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=sock)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def serve(routes: dict[int, tuple[str, str, int]], listen: str = "127.0.0.1") -> None:
    servers = []
    for listen_port, (ns, host, port) in routes.items():
        servers.append(
            await asyncio.start_server(_handler(ns, host, port), listen, listen_port,
                                       reuse_address=True)
        )
    print(f"relay listening on {listen} ports {sorted(routes)}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    routes = {int(k): (v[0], v[1], int(v[2])) for k, v in config["routes"].items()}
    asyncio.run(serve(routes, config.get("listen", "127.0.0.1")))


if __name__ == "__main__":
    main()
