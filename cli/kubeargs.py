"""`--kubeconfig` and `--context`, taken as kubectl takes them, by every command that
talks to a cluster.

There is one way to name a cluster: a kubeconfig file (default: the first path of
`$KUBECONFIG`, then `~/.kube/config`, resolved when the command runs, not when the
parser is built) and one of its contexts (default: its current context). The client is
made by `kube.client.new_api_client`, which reports an unusable file or an unknown
context as a one-line `KubeconfigError` (main.py prints it). CLI clients do not
retry: a user waiting on an unreachable server wants the answer now.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kube import validation


def default_kubeconfig() -> Path:
    """kubectl's default: the first non-empty path of `$KUBECONFIG`, else ~/.kube/config."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(paths[0] if paths else "~/.kube/config").expanduser()


def add_flags(parser: argparse.ArgumentParser, what: str, *,
              kubeconfig_help: str | None = None) -> None:
    """Add `--kubeconfig PATH` and `--context NAME`; `what` names the cluster in the help."""
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, metavar="PATH",
        help=kubeconfig_help or f"kubeconfig of {what} (default: $KUBECONFIG, then "
                                "~/.kube/config)")
    parser.add_argument("--context", metavar="NAME",
                        help="the kubeconfig context to use (default: its current context)")


def kubeconfig_of(args: argparse.Namespace) -> Path:
    """The kubeconfig the command uses: `--kubeconfig`, else the default."""
    path: Path | None = args.kubeconfig
    return path if path is not None else default_kubeconfig()


def api_client(args: argparse.Namespace) -> Any:
    """A client for the cluster `--kubeconfig`/`--context` name, checked to be usable
    as a file; unreachable servers show at the first request."""
    from kube.client import KubeconfigError, new_api_client

    path = kubeconfig_of(args)
    if not path.exists() and args.kubeconfig is None:
        raise KubeconfigError(f"kubeconfig {path} not found (pass --kubeconfig or set "
                              "$KUBECONFIG)")
    return new_api_client(path, context=args.context, retries=0)


def server_of(args: argparse.Namespace) -> str:
    """The API server URL of the cluster `--kubeconfig`/`--context` name."""
    from kube.client import new_configuration

    return str(new_configuration(kubeconfig_of(args), context=args.context).host)


def context_names(text: str) -> list[str]:
    """`--contexts a,b`: the names, none empty (an argparse type)."""
    found = [name.strip() for name in text.split(",")]
    if not all(found):
        raise argparse.ArgumentTypeError(f"{text!r}: a context name is empty")
    return found


def namespace_name(text: str) -> str:
    """A namespace name (a DNS label; an argparse type)."""
    if not validation.is_dns_label(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a namespace name (a DNS label)")
    return text


def contexts_of(args: argparse.Namespace) -> list[str | None]:
    """`--context` then every `--contexts`, in order, each once; [None]: the
    kubeconfig's current context."""
    wanted = [*([args.context] if args.context else []),
              *(name for group in args.contexts for name in group)]
    return list(dict.fromkeys(wanted)) or [None]


def current_context(path: Path) -> str:
    """The kubeconfig's current-context ("" when unreadable: only a label)."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ""
    return str(config.get("current-context") or "") if isinstance(config, dict) else ""
