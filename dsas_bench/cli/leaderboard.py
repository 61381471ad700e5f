"""``dsas-bench leaderboard``: the ranked table of methods with and without DSAS."""

from __future__ import annotations

import argparse

from dsas_bench.cli.args import add_objective, add_report_args, budget_arg, report_dir, report_rows, seed_arg


def make_leaderboard(args: argparse.Namespace) -> int:
    """leaderboard: write leaderboard.md/.csv/.png, print the table and the paths."""
    from dsas_bench.analysis import write_leaderboard

    rows, out = report_rows(args), report_dir(args)
    paths = write_leaderboard(rows, out, max_delta_ppl=args.max_delta_ppl, n_boot=args.n_boot, seed=args.seed,
                              objective=args.objective)
    print(paths["md"].read_text(encoding="utf-8"))
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``leaderboard`` to the subcommands."""
    board_parser = commands.add_parser(
        "leaderboard", help="ranked table of methods with and without DSAS",
        description="Rank each (method, DSAS mode) of the results by its lowest toxicity within a perplexity "
                    "budget, with DSAS-vs-plain deltas; write leaderboard.md, .csv and .png and print the table.")
    add_report_args(board_parser)
    board_parser.add_argument("--max-delta-ppl", dest="max_delta_ppl", type=budget_arg, default=None,
                              help="perplexity budget above the unsteered model, absolute (1: AcT's +1) or "
                                   "relative (5%%) (default: the budget the rows were calibrated to, else 1)")
    board_parser.add_argument("--n-boot", dest="n_boot", type=int, default=1000,
                              help="prompt resamples for the DSAS-vs-plain hypervolume interval; 0 skips the "
                                   "interval, e.g. for rows without per-prompt scores (default: 1000)")
    board_parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the bootstrap (default: 0)")
    add_objective(board_parser)
    board_parser.set_defaults(handler=make_leaderboard)
