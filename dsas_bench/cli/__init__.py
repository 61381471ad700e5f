"""dsas-bench: does conditional steering buy a better toxicity/utility trade-off, on my model, for my method?

  dsas-bench run --method linacts --dsas     fit, sweep strengths, score, plot (offline demo by default)
  dsas-bench sweep --methods linacts,iti --dsas-modes off,on --jobs 2
  dsas-bench leaderboard results/demo         ranked table of methods with and without DSAS
  dsas-bench plot results/demo                Pareto fronts (PNG and SVG)
  dsas-bench explain "some text" --run results/demo   which tokens DSAS steers, per layer
  dsas-bench ls scalers                       what is registered: methods, scalers, scorers, utility, behaviors, tasks
  dsas-bench lm-eval --intervention DIR --strength 0.5 -- --tasks mmlu   lm-eval's own CLI, steered
  dsas-bench export DIR --format safetensors --out x.safetensors        for llama.cpp, lm-eval, the Hub
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dsas_bench.cli import explain, export, leaderboard, lm_eval, ls, plot, run, sweep
from dsas_bench.core.errors import UsageError

SUBCOMMANDS = (run, sweep, leaderboard, plot, explain, lm_eval, export, ls)  # in --help's order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsas-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as exc:
        print(f"dsas-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsas-bench: interrupted; finished rows are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception:  # not bad input: a bug, shown in full
        import traceback

        traceback.print_exc()
        print("dsas-bench: internal error (a bug, not your input): please report it on the dsas_bench issue "
              "tracker with the command line and the traceback above", file=sys.stderr)
        return 1
