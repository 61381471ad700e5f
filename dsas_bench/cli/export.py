"""``dsas-bench export``: a fitted intervention in a format other tools load."""

from __future__ import annotations

import argparse

from dsas_bench.interop import EXPORT_FORMATS


def export(args: argparse.Namespace) -> int:
    """export: write a fitted intervention in a format other tools load; print the path."""
    from dsas_bench.interop.export import export_intervention

    print(f"{args.format}: {export_intervention(args.intervention, args.format, args.out)}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``export`` to the subcommands."""
    export_parser = commands.add_parser(
        "export", help="a fitted intervention in a format other tools load",
        description="safetensors: every tensor by module name, method, options, modules, model and scaler in the "
                    "header (--intervention reads it back). gguf-control-vector: llama.cpp / repeng control vectors "
                    "(constant shifts at decoder-layer outputs only). lm-eval-steered: the .pt of lm-eval's "
                    "--model steered (constant shifts at any module).")
    export_parser.add_argument("intervention", metavar="INTERVENTION",
                               help="a run's <output>/interventions/<method>-<dsas>-seed<N> folder or a saved file")
    export_parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export_parser.add_argument("--out", required=True, help="the file to write")
    export_parser.set_defaults(handler=export)
