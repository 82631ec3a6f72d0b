"""The two clusters `gnctl verify` and `gnctl benchmark` work between, named as subctl
names them: `--kubeconfig`/`--context` for the first (cli/kubeargs.py, the one way),
`--tocontext` (and `--tokubeconfig` when it is in another file) for the second; or
`--lab NAME`, where `--context`/`--tocontext` name lab clusters (default c1, c2).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from cli import kubeargs
from cli.lab_cmd import lab_name, up_lab

DEFAULT_IMAGE = "globalnet/test:lab"
LAB_DEFAULTS = ("c1", "c2")


def add_flags(parser: argparse.ArgumentParser) -> None:
    kubeargs.add_flags(parser, "the cluster to test from")
    parser.add_argument("--tokubeconfig", type=Path, default=None, metavar="PATH",
                        help="kubeconfig of the cluster to test against (default: --kubeconfig)")
    parser.add_argument("--tocontext", metavar="NAME",
                        help="the context of the cluster to test against")
    parser.add_argument("--lab", type=lab_name, metavar="NAME",
                        help="test lab NAME (`gnctl lab up --globalnet`): --context and "
                             "--tocontext then name its clusters (default c1 and c2)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, type=image_reference,
                        help="image of the test pods: python3 (and iperf3 for throughput) "
                             f"(default {DEFAULT_IMAGE})")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                        help="how long one check waits for the clusterset to converge "
                             "(default 30)")


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 3600 or math.isnan(seconds):
        raise argparse.ArgumentTypeError(f"{value!r}: give 0 < SECONDS <= 3600")
    return seconds


def bounded_int(low: int, high: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value!r}: give {low} to {high}")
        return number

    return parse


def image_reference(value: str) -> str:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})",
                        value) or "//" in value or ".." in value:
        raise argparse.ArgumentTypeError(f"{value!r} is not an image reference "
                                         "(REPOSITORY:TAG, lower-case repository)")
    return value


def clusters(args: argparse.Namespace, progress: Any) -> tuple[Any, Any]:
    """The two clusters as `verify.clusters.Cluster`s, inspected."""
    from verify.clusters import inspect

    # Nothing is printed before both answered: a mistake stays one line on stderr.
    (first, first_api), (second, second_api) = _apis(args)
    return inspect(first_api, first), inspect(second_api, second)


def _apis(args: argparse.Namespace) -> tuple[tuple[str, Any], tuple[str, Any]]:
    from kube.client import new_api_client
    from verify.errors import VerifyError

    if args.lab is not None:
        if args.kubeconfig is not None or args.tokubeconfig is not None:
            raise VerifyError("--lab names the clusters: leave out --kubeconfig and "
                              "--tokubeconfig")
        lab = up_lab(args.lab, globalnet=True)
        names = (args.context or LAB_DEFAULTS[0], args.tocontext or LAB_DEFAULTS[1])
        return ((names[0], new_api_client(lab.cluster(names[0]).kubeconfig, retries=0)),
                (names[1], new_api_client(lab.cluster(names[1]).kubeconfig, retries=0)))
    if args.tocontext is None and args.tokubeconfig is None:
        raise VerifyError("name the cluster to test against: --tocontext NAME (with "
                          "--tokubeconfig PATH if it is in another file), or --lab NAME")
    if args.tokubeconfig is None and args.tocontext == args.context:
        raise VerifyError(f"--context and --tocontext name the same context "
                          f"{args.context!r}: give two clusters")
    to = argparse.Namespace(kubeconfig=args.tokubeconfig or args.kubeconfig,
                            context=args.tocontext)
    return ((args.context or "--context", kubeargs.api_client(args)),
            (args.tocontext or "--tocontext", kubeargs.api_client(to)))
