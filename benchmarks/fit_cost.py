"""Fit cost: wall time, CPU time and peak memory of fitting each steering method and the DSAS scaler on SmolLM2.

    python benchmarks/fit_cost.py [--repeats 1] [--lineas-steps 10] [--threads 1] [--quick]

Every fit starts from an empty activation cache (a fresh temporary ``DSAS_BENCH_CACHE``), on the demo fit
sets (32 toxic source, 32 non-toxic target, 32 neutral control sentences), each method on its default
modules. Peak memory is the process's peak resident set size during the fit minus its resident size
before (Python, torch and scikit-learn allocations alike). LinEAS is timed at 1 and at ``--lineas-steps``
steps; the difference gives the time per training step and a projection to the papers' 1,000 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

import torch
from _timing import demo_fit_sets, fresh_cache, interleaved, peak_rss, script_parser, start, table, timed

from dsas_bench.core.data import FitSets
from dsas_bench.core.models import LoadedModel, load_model
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.scalers import fit_scaler

PAPER_STEPS = 1000
Measurement = tuple[float, float, float]  # wall seconds, CPU seconds, peak RSS growth in MiB


def method_fit(lm: LoadedModel, sets: FitSets, name: str, **options: object) -> tuple[Callable[[], object], str]:
    """A call fitting method ``name`` on its default modules, and the modules' preset."""
    method = get_method(name)(**options)
    modules = select_modules(lm.model, method.default_modules)
    return lambda: type(method)(**options).fit(lm, modules, sets), f"{method.default_modules} ({len(modules)})"


def fits(lm: LoadedModel, sets: FitSets, lineas_steps: int) -> dict[str, tuple[Callable[[], object], str]]:
    """name -> (a call that fits, the modules it fits)."""
    norms = select_modules(lm.model, "post-attn-norm")
    return {
        "linacts incremental": method_fit(lm, sets, "linacts"),
        "linacts at-once": method_fit(lm, sets, "linacts", estimation="at-once"),
        "meanacts (incremental)": method_fit(lm, sets, "meanacts"),
        "iti (heads)": method_fit(lm, sets, "iti"),
        "iti (c)": method_fit(lm, sets, "iti", variant="c"),
        "actadd": method_fit(lm, sets, "actadd"),
        "lineas, 1 step": method_fit(lm, sets, "lineas", steps=1),
        f"lineas, {lineas_steps} steps": method_fit(lm, sets, "lineas", steps=lineas_steps),
        "DSAS scaler": (lambda: fit_scaler("on", lm, None, norms, sets), f"post-attn-norm ({len(norms)})"),
    }


def measured(call: Callable[[], object]) -> Callable[[], Measurement]:
    """``call`` in a fresh cache, made to return its wall and CPU seconds and peak RSS growth."""
    def run() -> Measurement:
        with fresh_cache(), peak_rss() as peak:
            wall, cpu = timed(call)()
        return wall, cpu, peak["mib"]
    return run


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds of every fit (default 1)")
    parser.add_argument("--lineas-steps", type=int, default=10, help="LinEAS steps of the longer run (default 10)")
    parser.add_argument("--quick", action="store_true", help="LinEAS at 1 and 3 steps, 8 sentences per set")
    args = parser.parse_args()
    steps = 3 if args.quick else args.lineas_steps
    if steps < 2:
        parser.error("--lineas-steps must be at least 2")
    start(args)
    lm = load_model("smollm2")
    sets = demo_fit_sets(8 if args.quick else 32)
    cases = fits(lm, sets, steps)
    measured(cases["linacts at-once"][0])()  # untimed: the process's one-off costs of a first fit
    results = interleaved({name: measured(call) for name, (call, _) in cases.items()}, args.repeats, warmup=0)
    rows = []
    for name, (_, modules) in cases.items():
        wall, cpu, mib = (median(values) for values in zip(*results[name], strict=True))
        rows.append([name, modules, f"{wall:.1f}", f"{cpu:.1f}", f"{mib:.0f}"])
    print(f"\n## Fit cost: {len(sets.source)} sentences per set, {torch.get_num_threads()} torch threads, "
          f"median of {args.repeats} round(s)\n")
    print(table(["fit", "modules", "wall s", "CPU s", "peak RSS growth MiB"], rows))
    for unit, column in (("wall", 0), ("CPU", 1)):
        one, many = (median(result[column] for result in results[name])
                     for name in ("lineas, 1 step", f"lineas, {steps} steps"))
        per_step = (many - one) / (steps - 1)
        print(f"\nLinEAS ({unit}): {per_step:.2f} s per training step, setup {one - per_step:.1f} s, "
              f"projected {PAPER_STEPS}-step fit {one + (PAPER_STEPS - 1) * per_step:.0f} s")

if __name__ == "__main__":
    main()
