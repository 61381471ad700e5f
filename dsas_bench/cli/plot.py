"""``dsas-bench plot``: Pareto fronts (PNG and SVG)."""

from __future__ import annotations

import argparse

from dsas_bench.cli.args import add_objective, add_report_args, report_dir, report_rows
from dsas_bench.core.errors import UsageError

PLOT_METRICS = {"perplexity": ("perplexity",), "accuracy": ("accuracy",), "both": ("perplexity", "accuracy")}


def make_plots(args: argparse.Namespace) -> int:
    """plot: Pareto fronts per utility metric as PNG and SVG; print the paths."""
    from dsas_bench.analysis.plots import plot_pareto

    rows, out = report_rows(args), report_dir(args)
    if args.metric != "perplexity" and any(row.get("metrics", {}).get("accuracy") is None for row in rows):
        raise UsageError("some results rows have no accuracy (their run had no lm-eval tasks): use --metric "
                         "perplexity, or rerun with --lm-eval-tasks demo_mc")
    from dsas_bench.analysis.pareto import objective_of

    named = args.objective and objective_of(rows, args.objective).name != objective_of(rows).name
    for metric in PLOT_METRICS[args.metric]:
        stem = out / "-".join(["pareto", *([metric] if metric != "perplexity" else []),
                                *([args.objective] if named else [])])
        paths = plot_pareto(rows, stem, metric=metric, objective=args.objective)
        print(f"Pareto plot ({metric}): " + ", ".join(map(str, paths)))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``plot`` to the subcommands."""
    plot_parser = commands.add_parser(
        "plot", help="Pareto fronts (PNG and SVG)",
        description="Plot toxicity against perplexity and/or accuracy, one panel per method, every DSAS mode in "
                    "each panel: pareto.png/.svg (perplexity) and pareto-accuracy.png/.svg.")
    add_report_args(plot_parser)
    plot_parser.add_argument("--metric", choices=list(PLOT_METRICS), default="perplexity",
                             help="utility axis: perplexity (default), accuracy (needs lm-eval results) or both")
    add_objective(plot_parser)
    plot_parser.set_defaults(handler=make_plots)
