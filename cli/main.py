"""Entry point of `gnctl`, and the one place its errors reach the user.

A user's mistake (a bad flag value, an unusable kubeconfig or broker-info file, an
unknown context, a file that cannot be read or written) and an unreachable or refusing
API server are not bugs: they end as one line, `gnctl: <what is wrong and what to do>`,
with exit status 1 (argparse's usage errors keep 2). Commands raise the packages' own
error types with that line as their message; `explain` below turns those, OS errors
and the client's connection and API errors into it. Anything else is a bug and keeps
its traceback. `--debug` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cli import clusterset_cmd, diagnose_cmd, lab_cmd, show_cmd, verify_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnctl",
        description="Globalnet: join Kubernetes clusters whose pod and service CIDRs overlap.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show its traceback instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    clusterset_cmd.register(sub)
    diagnose_cmd.register(sub)
    lab_cmd.register(sub)
    show_cmd.register(sub)
    verify_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gnctl show ... | head`: the reader left; nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        line = explain(exc)
        if line is None or args.debug:
            raise
        print(f"gnctl: {line}", file=sys.stderr)
        return 1


def _user_errors() -> tuple[type[Exception], ...]:
    """Our packages' error types whose message is already a line for the user."""
    from deploy.broker import BrokerIdentityError
    from deploy.brokerinfo import BrokerInfoError
    from deploy.discover import DiscoveryError
    from deploy.install import InstallError
    from deploy.manifests import OptionsError
    from gateway.clusterset import ClustersetError
    from globalnet.broker import BrokerConflictError
    from globalnet.cidr_allocation import CidrAllocationError
    from kube.client import KubeconfigError
    from lab.lab import LabError
    from lab.topology import TopologyError
    from ops.errors import InventoryError
    from verify.errors import VerifyError

    return (BrokerIdentityError, BrokerInfoError, DiscoveryError, InstallError, OptionsError,
            ClustersetError, BrokerConflictError, CidrAllocationError, KubeconfigError,
            LabError, TopologyError, InventoryError, VerifyError)


def explain(exc: BaseException) -> str | None:
    """The one line for an error the user can act on; None for a bug (a traceback)."""
    from kube import errors

    if isinstance(exc, _user_errors()):
        return one_line(str(exc))
    if errors.status_of(exc) is not None:
        return _api_error(exc)
    # The client's errors (urllib3's), and OS errors only of a socket: a file's, or a
    # full disk's, is not about a server.
    if (errors.is_connection_error(exc) and not isinstance(exc, OSError)) or (
            isinstance(exc, ConnectionError | TimeoutError) and exc.filename is None):
        url = errors.server_url(exc)
        return (f"cannot reach the API server{' ' + url if url else ''}: "
                f"{errors.connection_reason(exc)} (is the cluster up, and are --kubeconfig "
                "and --context the right ones?)")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{(exc.strerror or str(exc)).lower()}"
    return None


def one_line(text: str) -> str:
    """Several lines joined into one, so the message stays one line whatever it quotes."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "error"


def _api_error(exc: Any) -> str:
    from kube.rest import status_message

    status = int(exc.status or 0)
    message = one_line(status_message(exc))
    if status == 401:
        return (f"the API server refused the credentials (401 Unauthorized): {message}; "
                "check the kubeconfig's user (--kubeconfig, --context)")
    if status == 403:
        return f"the API server refused (403 Forbidden): {message}"
    return f"the API server answered {status} {exc.reason or ''}: {message}".replace("  ", " ")


if __name__ == "__main__":
    sys.exit(main())
