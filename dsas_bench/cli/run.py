"""``dsas-bench run``: one method, with or without DSAS, swept over strengths (``sweep`` runs the same)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dsas_bench.cli.args import add_common, overrides
from dsas_bench.cli.ls import list_registered
from dsas_bench.core.errors import UsageError, warn


def run(args: argparse.Namespace) -> int:
    """run / sweep: validate, run the cells not yet stored, summarise, plot."""
    from dsas_bench.run.config import load_config

    if getattr(args, "list_methods", False):
        return list_registered(args)
    if args.command == "run":
        methods = [args.method] if args.method else None
        dsas = [args.dsas] if args.dsas else None
    else:
        methods, dsas = args.methods, args.dsas_modes
    config = load_config(args.task, overrides(args, methods, dsas))
    if args.dry_run:
        from dsas_bench.run.dryrun import dry_run

        print(dry_run(config, fresh=args.fresh))
        return 0

    from dsas_bench.run.sweep import run_sweep  # torch and the models: only once the flags are known to be good

    new_rows = list(run_sweep(config, fresh=args.fresh))
    from dsas_bench.run.results import ResultsStore

    rows = ResultsStore(config.output).rows()
    print(summary_table(rows))
    print(f"\n{len(new_rows)} new rows, {len(rows)} in all: {Path(config.output) / 'results.jsonl'} "
          f"(and results.csv)")
    if not args.no_plot:
        from dsas_bench.analysis.plots import plot_pareto

        try:
            paths = plot_pareto(rows, Path(config.output) / "pareto")
        except UsageError as exc:  # the rows are stored; only the picture has nothing to show
            warn(f"no Pareto plot: {exc}")
        else:
            print("Pareto plot: " + ", ".join(map(str, paths)))
    return 0


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the rows, sorted by method, DSAS mode, strength and seed, with the first two
    objectives of their behaviour, exploded perplexities flagged; then the calibrated λ_max of each (method,
    DSAS mode, seed)."""
    from dsas_bench.analysis.pareto import exploded
    from dsas_bench.behaviors import row_behavior
    from dsas_bench.run.results import EXPLOSION_FACTOR

    shown = row_behavior(rows).objectives[:2]
    lines = [f"{'method':<10} {'dsas':<5} {'λ':>7} {'seed':>4} "
             + " ".join(f"{o.heading:>7}" for o in shown) + f" {'ppl':>8} {'acc':>6}"]
    calibrations = {}
    for row in sorted(rows, key=lambda r: (r["method"] != "none", r["method"], r["dsas"], r["strength"], r["seed"])):
        m = row["metrics"]
        accuracy = "-" if m.get("accuracy") is None else f"{m['accuracy']:.3f}"
        flag = f"  exploded (> {EXPLOSION_FACTOR}× unsteered PPL): kept out of fronts" if exploded(row) else ""
        values = " ".join(f"{m[o.name]:>7.2f}" if o.unit == "%" else f"{m[o.name]:>7.3f}" for o in shown)
        lines.append(f"{row['method']:<10} {row['dsas']:<5} {row['strength']:>7.4g} {row['seed']:>4} "
                     f"{values} {m['perplexity']:>8.2f} {accuracy:>6}{flag}")
        if row.get("calibration"):
            calibrations[row["method"], row["dsas"], row["seed"]] = row["calibration"]
    for (method, mode, seed), c in calibrations.items():
        reached = "" if c["reached"] else ", budget not reached"
        lines.append(f"calibrated {method} ({mode}, seed {seed}): λ_max {c['lambda_max']:.4g} for ΔPPL {c['budget']} "
                     f"on {c['n_texts']} texts, {len(c['probes'])} probes{reached}")
    return "\n".join(lines)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` to the subcommands."""
    run_parser = commands.add_parser(
        "run", help="one method, with or without DSAS, swept over strengths",
        description="Fit a steering method (and the DSAS scaler), sweep its strength, score toxicity, perplexity "
                    "and lm-eval accuracy with the hooks active, store one row per (strength, seed) and plot the "
                    "Pareto front next to the unsteered model. Reruns resume; --fresh recomputes.")
    run_parser.add_argument("--method", help="registered method (see `dsas-bench methods`); default linacts")
    run_parser.add_argument("--dsas", nargs="?", const="on", default=None, metavar="MODE",
                            help="when to steer: off (default when absent), on (DSAS; the bare flag), e2e "
                                 "(DSAS trained jointly with LinEAS), cast (a CAST-style per-sequence gate), gate "
                                 "(DSAS's layer selection alone, s = 1) or a plug-in (`dsas-bench ls scalers`)")
    run_parser.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")
    add_common(run_parser)
    run_parser.set_defaults(handler=run)
