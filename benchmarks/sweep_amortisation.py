"""Sweep amortisation: the cost of a K-point strength sweep over K times the cost of one point.

    python benchmarks/sweep_amortisation.py [--k 8] [--method linacts] [--dsas off] [--prompts 16]
        [--perplexity-texts 16] [--repeats 2] [--jobs 2] [--quick]

A point is one sweep cell as ``run_cell`` runs it: fit (or reuse) the method and scaler, generate a
continuation per prompt, measure perplexity, score toxicity. Each measurement starts from an empty cache
(a fresh temporary ``DSAS_BENCH_CACHE``), so a lone point pays the fit once, and so do K points at one
seed: the others reuse the fitted state; the model, data and scorer are loaded once per process (an
unsteered cell runs first, untimed, to load them). One point and K points alternate, ``--repeats`` times.
Cells run with the threads ``run_cell`` gives them: cores // ``--jobs`` (default 2: one thread each, as in a
two-worker sweep; on a shared machine that also keeps threads from waiting on each other).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from statistics import median
from typing import Any

from _timing import fresh_cache, interleaved, machine, table

from dsas_bench.run.cell import run_cell
from dsas_bench.run.config import load_config
from dsas_bench.run.plan import BASELINE, Cell

Rows = list[dict[str, Any]]
STAGES = ("fit", "generate", "perplexity", "score")


def points(config: Any, method: str, dsas: str, strengths: list[float]) -> Callable[[], tuple[float, Rows]]:
    """A call running one cell per strength (seed 0) from an empty cache; returns its wall seconds and rows."""
    def run() -> tuple[float, Rows]:
        with fresh_cache():
            start = time.perf_counter()
            rows = [run_cell(config, Cell(method, dsas, strength, 0)) for strength in strengths]
            return time.perf_counter() - start, rows
    return run


def stage_medians(results: list[tuple[float, Rows]]) -> dict[str, float]:
    """Median over repeats of each stage's seconds, summed over the cells of a repeat."""
    return {stage: median(sum(row["wall_time_s"].get(stage, 0.0) for row in rows) for _, rows in results)
            for stage in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=8, help="strengths in the sweep (default 8)")
    parser.add_argument("--method", default="linacts", help="steering method (default linacts, incremental)")
    parser.add_argument("--dsas", default="off", help="DSAS mode (default off)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per point (default 16)")
    parser.add_argument("--perplexity-texts", type=int, default=16, help="perplexity texts per point (default 16)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="run_cell's threads are cores // jobs (default 2)")
    parser.add_argument("--quick", action="store_true", help="K = 4, 8 prompts, 8 texts, 8 fit sentences, 1 round")
    args = parser.parse_args()
    k, prompts, texts, repeats = (4, 8, 8, 1) if args.quick else (args.k, args.prompts, args.perplexity_texts,
                                                                  args.repeats)
    if k < 2:
        parser.error("--k must be at least 2")
    strengths = [round((i + 1) / k, 4) for i in range(k)]
    output = tempfile.mkdtemp(prefix="dsas-bench-sweep-")
    config = load_config("demo", {"methods": [args.method], "dsas": [args.dsas], "strengths": strengths,
                                  "n_prompts": prompts, "n_perplexity_texts": texts, "lm_eval_tasks": [],
                                  "fit_n": 8 if args.quick else 32, "output": output, "progress": False,
                                  "jobs": args.jobs})
    start = time.perf_counter()
    scorer = run_cell(config, Cell(BASELINE, "off", 0.0, 0))["scorer"]  # loads model, data, scorer for the process
    print(machine())
    print(f"unsteered warm-up cell (with loading): {time.perf_counter() - start:.1f} s")
    results = interleaved({"1 point": points(config, args.method, args.dsas, strengths[-1:]),
                           f"{k} points": points(config, args.method, args.dsas, strengths)}, repeats, warmup=0)
    one, many = (median(wall for wall, _ in results[name]) for name in ("1 point", f"{k} points"))
    ratios = [b / (k * a) for (a, _), (b, _) in zip(results["1 point"], results[f"{k} points"], strict=True)]
    rows = [[name, f"{median(wall for wall, _ in results[name]):.1f}",
             *(f"{seconds:.1f}" for seconds in stage_medians(results[name]).values())] for name in results]
    print(f"\n## Sweep amortisation: {args.method}, DSAS {args.dsas}, {prompts} prompts of {config.max_new_tokens} "
          f"new tokens, {texts} perplexity texts, {config.fit_n} fit sentences per set, scorer {scorer}, "
          f"{repeats} round(s), medians in seconds\n")
    print(table(["run", "wall", *STAGES], rows))
    alone = stage_medians(results["1 point"])
    print(f"\ncost({k}) / ({k} × cost(1)) = {median(ratios):.3f} (target ≤ 1.10)")
    print(f"each further point: {(many - one) / (k - 1):.1f} s; a lone point without its fit: "
          f"{one - alone['fit']:.1f} s; its fit: {alone['fit']:.1f} s")


if __name__ == "__main__":
    main()
