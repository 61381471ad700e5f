"""``dsas-bench explain``: which tokens DSAS steers, per layer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsas_bench.cli.args import seed_arg, strength_arg
from dsas_bench.core.errors import UsageError


def explain(args: argparse.Namespace) -> int:
    """explain: the DSAS scale of each token at each steered module, as a heatmap and coloured text."""
    import os

    from dsas_bench.run.results import check_output_dir, load_rows

    if args.output and Path(args.output).is_dir():
        raise UsageError(f"--output {args.output} is a folder: give the heatmap's file name, e.g. {args.output}/x.png")
    rows = load_rows([args.run])
    check_output_dir(Path(args.output).parent if args.output else args.run)
    from dsas_bench.analysis.explain import choose_intervention, heatmap, render_terminal, token_scales
    from dsas_bench.core.models import load_model
    from dsas_bench.run.interventions import intervention_dir, load_intervention

    row = choose_intervention(rows, args.run, args.method, args.dsas, args.seed)
    method, mode, seed, config = row["method"], row["dsas"], row["seed"], row["config"]
    lm = load_model(config["model"], device=args.device or config["device"], dtype=config["dtype"])
    steering, scaler = load_intervention(intervention_dir(args.run, method, mode, seed), lm)
    tokens, modules, scales = token_scales(lm, steering, scaler, args.text, args.strength)
    title = f"{args.run} · {method} · DSAS {mode} · seed {seed} · λ = {args.strength:g}"
    out = heatmap(tokens, modules, scales, args.output or Path(args.run) / f"explain-{method}-{mode}-seed{seed}.png",
                  title)
    color = not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print(title)
    print(render_terminal(tokens, modules, scales, color=color, gated=scaler.diagnostics.get("gated", [])))
    print(f"heatmap: {out}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``explain`` to the subcommands."""
    explain_parser = commands.add_parser(
        "explain", help="which tokens DSAS steers, per layer",
        description="Run a text through the model with a run's fitted steering and DSAS scaler and show the scale "
                    "s in [0, 1] of every token at every steered module: a heatmap image and the text coloured "
                    "by each token's mean scale (annotated as token[0.83] when not on a terminal).")
    add = explain_parser.add_argument
    add("text", help="the text to explain, e.g. \"You are such a\"")
    add("--run", default="results/demo", help="results directory of a run with a DSAS mode (default: results/demo)")
    add("--method", help="method of the run to explain (needed when the run has several)")
    add("--dsas", metavar="MODE", help="DSAS mode to explain, e.g. on (default: the run's only DSAS mode)")
    add("--seed", type=seed_arg, help="fit seed (needed when the run has several)")
    add("--strength", type=strength_arg, default=1.0, help="strength λ of the steering (default: 1)")
    add("--device", help="auto, cpu, cuda, cuda:N or mps (default: the run's device)")
    add("--output", "-o", help="heatmap PNG path (default: <run>/explain-<method>-<dsas>-seed<N>.png)")
    add("--no-color", dest="no_color", action="store_true",
        help="plain token[0.83] annotations instead of ANSI colours (also when not on a terminal)")
    explain_parser.set_defaults(handler=explain)
