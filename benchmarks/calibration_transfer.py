"""Calibration transfer: does a λ_max calibrated on some neutral texts cost the budget on others?

    python benchmarks/calibration_transfer.py [--task shared-rtp] [--methods iti,actadd] [--dsas off]
        [--n-eval 300] [--n-calib 200] [--splits 2000] [--seed 0] [--neutral-field F] [--neutral-filter C]

For each method, the run's λ_max (``--strengths auto``: fitted and calibrated as the sweep does, or read
from the cache) steers the model over every neutral text of the task (perplexity, calibration and
control texts together); each text's perplexity is measured steered and unsteered. Random disjoint
splits of those texts into ``--n-eval`` "perplexity" and ``--n-calib`` "calibration" texts then give the
ratio of the relative cost (mean steered / mean unsteered perplexity − 1) on the first to that on the
second: near 1 when a calibration on that many texts predicts the cost on that many others. Printed:
its 5 / 25 / 50 / 75 / 95 % quantiles, and the share of the cost carried by the 3 texts that add most.
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import machine, table

from dsas_bench.core.hooks import steer
from dsas_bench.run.config import load_config
from dsas_bench.run.inputs import inputs_for, model_for
from dsas_bench.run.interventions import calibrated, fitted
from dsas_bench.utility.perplexity import per_text_perplexity

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def cost(steered: np.ndarray, base: np.ndarray) -> float:
    """The relative cost of steering on these texts: mean steered perplexity over mean unsteered, minus 1."""
    return float(steered.mean() / base.mean() - 1)


def transfer(steered: np.ndarray, base: np.ndarray, n_eval: int, n_calib: int, splits: int,
             seed: int) -> np.ndarray:
    """cost on ``n_eval`` texts / cost on ``n_calib`` others, over ``splits`` seeded random disjoint splits."""
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(splits):
        order = rng.permutation(len(base))
        evaluated, calibration = order[:n_eval], order[n_eval:n_eval + n_calib]
        ratios.append(cost(steered[evaluated], base[evaluated]) / cost(steered[calibration], base[calibration]))
    return np.asarray(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="shared-rtp")
    parser.add_argument("--methods", default="iti,actadd")
    parser.add_argument("--dsas", default="off", help="the DSAS mode whose λ_max steers (default off)")
    parser.add_argument("--n-eval", type=int, default=300, help="perplexity texts per split (default 300)")
    parser.add_argument("--n-calib", type=int, default=200, help="calibration texts per split (default 200)")
    parser.add_argument("--splits", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--neutral-field", help="read the task's neutral jsonl records at this field instead")
    parser.add_argument("--neutral-filter", help="keep the neutral records this holds for instead ('' for all)")
    args = parser.parse_args()
    overrides = {"methods": args.methods.split(","), "dsas": [args.dsas], "strengths": "auto", "progress": False}
    if args.neutral_field is not None:
        overrides["neutral_field"] = args.neutral_field
    if args.neutral_filter is not None:
        overrides["neutral_filter"] = args.neutral_filter or None
    config = load_config(args.task, overrides)
    inputs, lm = inputs_for(config), model_for(config)
    texts = [*inputs.neutral, *inputs.calibration, *inputs.control]
    if args.n_eval + args.n_calib > len(texts):
        parser.error(f"--n-eval + --n-calib exceed the task's {len(texts)} neutral texts")
    print(machine())
    measure = {"max_tokens": config.perplexity_tokens, "batch_size": config.batch_size, "progress": False}
    base = per_text_perplexity(lm, texts, **measure)
    tokens = np.mean([min(len(ids), config.perplexity_tokens) for ids in lm.tokenizer(texts).input_ids])
    print(f"\n## Calibration transfer: task {args.task}, {len(texts)} neutral texts of {tokens:.1f} tokens on "
          f"average, unsteered perplexity mean {base.mean():.1f} / median {np.median(base):.1f}; "
          f"{args.splits} splits into {args.n_eval} perplexity and {args.n_calib} calibration texts\n")
    lines = []
    for method in config.methods:
        steering, scaler, _ = fitted(config, method, args.dsas, seed=0)
        lambda_max = calibrated(config, method, args.dsas, seed=0)["lambda_max"]
        with steer(lm.model, steering.maps(lm.device), lambda_max, scaler):
            steered = per_text_perplexity(lm, texts, **measure)
        added = np.sort(steered - base)[::-1]
        ratios = transfer(steered, base, args.n_eval, args.n_calib, args.splits, args.seed)
        lines.append([method, args.dsas, f"{lambda_max:.4g}", f"{100 * cost(steered, base):+.1f} %",
                      f"{100 * added[:3].sum() / added.sum():.0f} %",
                      *(f"{q:.2f}" for q in np.quantile(ratios, QUANTILES))])
    print(table(["method", "DSAS", "λ_max", "cost, all texts", "top-3 share",
                 *(f"q{int(100 * q)}" for q in QUANTILES)], lines))


if __name__ == "__main__":
    main()
