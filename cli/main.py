"""Entry point of `gnctl`."""

from __future__ import annotations

import argparse
import sys

from cli import clusterset_cmd, lab_cmd, show_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnctl",
        description="Globalnet: join Kubernetes clusters whose pod and service CIDRs overlap.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    clusterset_cmd.register(sub)
    lab_cmd.register(sub)
    show_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
