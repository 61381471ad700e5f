"""Strength-batched evaluation against cell by cell: K strengths of one Linear-AcT (+ DSAS) intervention.

    python benchmarks/strength_batching.py [--strengths 0.25 0.5 0.75 1] [--prompts 32] [--new-tokens 32]
        [--texts 50] [--batch-size 32] [--repeats 5] [--device auto] [--threads 1] [--quick] [--profile]

Per intervention (Linear-AcT, and Linear-AcT + DSAS), two ways to evaluate its K cells, timed side by side in
interleaved rounds (rotating order, one warm-up round):
- cell by cell: for each λ, ``generate_continuations`` of the prompts (sampled with per-prompt streams) and
  ``per_text_perplexity`` of the texts, at ``--batch-size``, with the hooks at that λ (what a sweep did before);
- strength-batched: ``evaluate_strengths``, the same prompts and texts in shared batches of K × ``--batch-size``
  rows, each row at its cell's λ.
Both give the same continuations and perplexities (checked before timing; that check is the warm-up round). The
table gives medians over rounds of wall-clock and CPU seconds of this process, the median per-round ratio batched /
cell by cell (below 1: the batched way is faster), and that ratio for generation and perplexity alone (wall). On a
GPU (``--device cuda``) the same comparison holds; outputs are read back to the host each batch, so the times
include the device's work. ``--profile`` prints where the time of one batched and
one cell-by-cell evaluation goes (torch.profiler, by operator).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from _timing import demo_fit_sets, fresh_cache, interleaved, ratio, script_parser, start, table, timed

from dsas_bench.core.data import load_prompts, load_texts
from dsas_bench.core.generation import SamplingConfig, generate_continuations
from dsas_bench.core.hooks import Scaler, SteeringMap, steer
from dsas_bench.core.models import LoadedModel, load_model
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.run.evaluate import evaluate_strengths
from dsas_bench.scalers import fit_scaler
from dsas_bench.utility.perplexity import per_text_perplexity

Intervention = tuple[dict[str, SteeringMap], Scaler | None]


def interventions(lm: LoadedModel) -> dict[str, Intervention]:
    """Linear-AcT fitted at once on the demo sets (its default modules), and the same with the DSAS scaler."""
    with fresh_cache():
        sets = demo_fit_sets()
        method = get_method("linacts")(estimation="at-once")
        modules = select_modules(lm.model, method.default_modules)
        maps = method.fit(lm, modules, sets).maps(lm.device)
        return {"Linear-AcT": (maps, None), "Linear-AcT + DSAS": (maps, fit_scaler("on", lm, method, modules, sets))}


class Workload:
    """The prompts, texts and settings both ways evaluate."""

    def __init__(self, lm: LoadedModel, args: argparse.Namespace):
        self.lm, self.strengths, self.batch_size = lm, args.strengths, args.batch_size
        self.stages: dict[str, list[dict[str, float]]] = {"cell by cell": [], "batched": []}  # seconds per call
        self.prompts = [p.text for p in load_prompts(n=args.prompts)]
        self.texts = load_texts(kind="neutral", limit=args.texts)
        self.sampling = SamplingConfig(max_new_tokens=args.new_tokens)

    def cell_by_cell(self, maps: dict[str, SteeringMap], scaler: Scaler | None) -> list[tuple[list[str], float]]:
        results, stages = [], {"generate": 0.0, "perplexity": 0.0}
        for strength in self.strengths:
            with steer(self.lm.model, maps, strength, scaler):
                start = time.perf_counter()
                continuations = generate_continuations(self.lm, self.prompts, self.sampling, seed=0,
                                                       batch_size=self.batch_size, progress=False)
                middle = time.perf_counter()
                ppl = per_text_perplexity(self.lm, self.texts, batch_size=self.batch_size, progress=False)
                stages["generate"] += middle - start
                stages["perplexity"] += time.perf_counter() - middle
            results.append((continuations, float(np.mean(ppl))))
        self.stages["cell by cell"].append(stages)
        return results

    def batched(self, maps: dict[str, SteeringMap], scaler: Scaler | None) -> list[tuple[list[str], float]]:
        evaluated = evaluate_strengths(self.lm, maps, scaler, self.strengths, self.prompts, self.texts, self.sampling,
                                       seed=0, batch_size=self.batch_size, max_tokens=50, progress=False)
        self.stages["batched"].append({stage: share * len(evaluated) for stage, share in evaluated[0].times.items()})
        return [(e.continuations, e.perplexity) for e in evaluated]

    def stage_ratio(self, stage: str, rounds: int) -> float:
        """Median over the last ``rounds`` calls of batched / cell-by-cell wall time of one stage."""
        pairs = zip(self.stages["batched"][-rounds:], self.stages["cell by cell"][-rounds:], strict=True)
        return statistics.median(batched[stage] / alone[stage] for batched, alone in pairs)


def check_equal(workload: Workload, maps: dict[str, SteeringMap], scaler: Scaler | None) -> str:
    """How the two ways' outputs compare: continuations equal, largest relative perplexity difference."""
    alone, shared = workload.cell_by_cell(maps, scaler), workload.batched(maps, scaler)
    same = sum(a == b for (texts_a, _), (texts_b, _) in zip(alone, shared, strict=True)
               for a, b in zip(texts_a, texts_b, strict=True))
    gap = max(abs(a - b) / a for (_, a), (_, b) in zip(alone, shared, strict=True))
    return f"{same}/{len(alone) * len(workload.prompts)} continuations equal, perplexity within {gap:.1e} relative"


def profile(call: Callable[[], object], rows: int = 12) -> str:
    """The operators taking the most self CPU time in one call."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        call()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--texts", type=int, default=50, help="perplexity texts (default 50)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts or texts per cell per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 8 prompts of 8 tokens, 16 texts")
    parser.add_argument("--profile", action="store_true", help="also print an operator profile of each way")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.prompts, args.new_tokens, args.texts = 2, 8, 8, 16
    start(args)
    lm = load_model(args.model, device=args.device)
    print(f"model {args.model} on {lm.device} ({next(lm.model.parameters()).dtype}), K = {len(args.strengths)} "
          f"strengths {args.strengths}, {args.prompts} prompts × {args.new_tokens} new tokens (sampled), "
          f"{args.texts} perplexity texts, batch {args.batch_size} per cell, {args.repeats} rounds")
    workload = Workload(lm, args)
    headers = ["intervention", "cell by cell wall s", "cell by cell CPU s", "batched wall s", "batched CPU s",
               "ratio (wall)", "ratio (CPU)", "generation ratio (wall)", "perplexity ratio (wall)"]
    rows = []
    for name, (maps, scaler) in interventions(lm).items():
        print(f"{name}: {check_equal(workload, maps, scaler)}", flush=True)
        cases = {"cell by cell": timed(functools.partial(workload.cell_by_cell, maps, scaler)),
                 "batched": timed(functools.partial(workload.batched, maps, scaler))}
        times = interleaved(cases, args.repeats, warmup=0)  # check_equal ran both ways once: the warm-up
        rows.append([name, *(f"{statistics.median(t[clock] for t in times[case]):.1f}"
                             for case in cases for clock in (0, 1)),
                     f"{ratio(times, 'batched', 'cell by cell', 0):.3f}",
                     f"{ratio(times, 'batched', 'cell by cell', 1):.3f}",
                     *(f"{workload.stage_ratio(stage, args.repeats):.3f}" for stage in ("generate", "perplexity"))])
        print(table(headers, rows[-1:]), flush=True)  # each row as it is measured: a long run can be cut short
        if args.profile:
            for case, call in cases.items():
                print(f"\n{name}, {case}: operators by self CPU time\n{profile(call)}")
    print()
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
