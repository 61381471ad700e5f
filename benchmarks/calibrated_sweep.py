"""Calibrated sweep: does ``--strengths auto`` give every method, plain and DSAS, points inside the budget?

    python benchmarks/calibrated_sweep.py [--task shared-rtp] [--methods actadd,iti,linacts,lineas]
        [--dsas-modes off,on] [--n-strengths 3] [--max-delta-ppl 5%] [--n-prompts 100] [--lineas-steps 1000]
        [--output results/calibrated-sweep] [--jobs 1]

Runs the sweep as ``dsas-bench sweep --task TASK --methods ... --dsas-modes ... --strengths auto`` does
(the parent fits each method once, fits each scaler on top, calibrates λ_max per (method, DSAS mode,
seed), then runs the cells; a rerun resumes), then prints per (method, DSAS mode): λ_max, the probes
it took, whether the budget was reached, how many of its points lie within the budget of the
unsteered perplexity, the best toxicity there, and a verdict (at least two points within the budget).
The whole wall time is printed too. LinEAS' training steps (paper: 1,000) can be lowered with
``--lineas-steps`` on a CPU; say so next to the numbers.
"""

from __future__ import annotations

import argparse
import time

from _timing import machine, table

from dsas_bench.analysis import aggregate_seeds, baseline_point
from dsas_bench.analysis.leaderboard import budget_of
from dsas_bench.analysis.pareto import BASELINE_METHOD, act_summary, exploded, objective_of
from dsas_bench.run.config import load_config
from dsas_bench.run.results import ResultsStore
from dsas_bench.run.sweep import run_sweep

MIN_POINTS = 2  # points within the budget every (method, DSAS mode) must have


def summary(rows: list[dict], budget: str) -> list[list[str]]:
    """One table line per (method, DSAS mode) of ``rows``."""
    base = baseline_point(rows)
    limit = base["perplexity"] + budget_of(rows, budget).delta(base["perplexity"])
    points = aggregate_seeds(rows)
    lines = []
    for method, mode in sorted({(r["method"], r["dsas"]) for r in rows if r["method"] != BASELINE_METHOD}):
        mine = [p for p in points if (p["method"], p["dsas"]) == (method, mode)]
        inside = [p for p in mine if p["perplexity"] <= limit]
        calibration = next(r["calibration"] for r in rows if (r["method"], r["dsas"]) == (method, mode))
        blown = sum(exploded(r) for r in rows if (r["method"], r["dsas"]) == (method, mode))
        chosen = act_summary(inside, base["perplexity"], limit - base["perplexity"])
        best = None if chosen is None else chosen[objective_of(rows).name]
        lines.append([method, mode, f"{calibration['lambda_max']:.4g}", str(len(calibration["probes"])),
                      "yes" if calibration["reached"] else "no", f"{len(inside)}/{len(mine)}", str(blown),
                      "–" if best is None else f"{best:.1f}", "ok" if len(inside) >= MIN_POINTS else "FAIL"])
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="shared-rtp", help="task config (default shared-rtp)")
    parser.add_argument("--methods", default="actadd,iti,linacts,lineas")
    parser.add_argument("--dsas-modes", default="off,on")
    parser.add_argument("--n-strengths", type=int, default=3)
    parser.add_argument("--max-delta-ppl", default="5%", help="budget, absolute (1) or relative (5%%)")
    parser.add_argument("--n-prompts", type=int, default=100)
    parser.add_argument("--lineas-steps", type=int, default=None, help="LinEAS training steps (paper: 1000)")
    parser.add_argument("--lm-eval-tasks", default=None, help="comma-separated; '' for none (default: the task's)")
    parser.add_argument("--output", default="results/calibrated-sweep")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    overrides = {"methods": args.methods.split(","), "dsas": args.dsas_modes.split(","), "strengths": "auto",
                 "n_strengths": args.n_strengths, "max_delta_ppl": args.max_delta_ppl, "n_prompts": args.n_prompts,
                 "output": args.output, "jobs": args.jobs}
    if args.lineas_steps is not None:
        overrides["method_options"] = {"lineas": {"steps": args.lineas_steps}}
    if args.lm_eval_tasks is not None:
        overrides["lm_eval_tasks"] = [t for t in args.lm_eval_tasks.split(",") if t]
    config = load_config(args.task, overrides)
    print(machine())
    start = time.perf_counter()
    new = list(run_sweep(config))
    wall = time.perf_counter() - start
    rows = ResultsStore(config.output).rows()
    steps = config.method_options.get("lineas", {}).get("steps", "default")
    print(f"\n## Calibrated sweep: task {args.task}, {config.n_prompts} prompts, budget {args.max_delta_ppl}, "
          f"{config.n_strengths} strengths per line, LinEAS steps {steps}; {len(new)} new cells in "
          f"{wall / 60:.1f} min\n")
    print(table(["method", "DSAS", "λ_max", "probes", "reached", "in budget", "exploded", "best tox %", "verdict"],
                summary(rows, args.max_delta_ppl)))


if __name__ == "__main__":
    main()
