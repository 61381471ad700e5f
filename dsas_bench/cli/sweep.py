"""``dsas-bench sweep``: methods × DSAS modes × strengths × seeds, through joblib or Dask."""

from __future__ import annotations

import argparse

from dsas_bench.cli.args import add_common, list_arg
from dsas_bench.cli.run import run


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the subcommands."""
    sweep_parser = commands.add_parser(
        "sweep", help="methods × DSAS modes × strengths × seeds",
        description="Run a matrix of cells through joblib (local processes with --jobs, or a Dask cluster with "
                    "--backend dask --scheduler ADDRESS). Same store and resume rules as run.")
    sweep_parser.add_argument("--methods", type=list_arg(str), help="comma-separated methods, e.g. linacts,iti")
    sweep_parser.add_argument("--dsas-modes", type=list_arg(str),
                              help="comma-separated DSAS modes, e.g. off,on,gate (see `dsas-bench ls scalers`)")
    add_common(sweep_parser)
    sweep_parser.set_defaults(handler=run)
