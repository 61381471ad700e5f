"""The command line: ``dsas-bench run|sweep|methods|leaderboard|plot|explain``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dsas_bench.errors import UsageError


def list_methods(args: argparse.Namespace) -> int:
    from dsas_bench.steering.registry import method_names

    print("\n".join(method_names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsas-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    methods = commands.add_parser("methods", help="list the registered steering methods (plugins included)")
    methods.set_defaults(handler=list_methods)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"dsas-bench: error: {exc}", file=sys.stderr)
        return 2
