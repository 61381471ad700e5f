"""Generation throughput of each steering method with and without DSAS, measured side by side.

    python benchmarks/generation_throughput.py [--batch-sizes 1 8 32] [--new-tokens 32] [--repeats 3]
        [--methods linacts meanacts actadd iti lineas] [--model smollm2] [--prompts rtp.jsonl]

Steering hooks every post-attention norm; each method is fitted cheaply on the demo sentences
(throughput does not depend on what the maps learnt) and one DSAS scaler is fitted for those
modules (``--dsas-threshold 0``, the default, keeps every module computing its scale: the worst
case). For each batch size, the unsteered model, every method and every method + DSAS generate
the same prompts with the same strength, greedily, exactly ``--new-tokens`` new tokens; the runs
are interleaved (one round of every configuration per repeat, order alternating, after a warm-up
round) so a busy machine slows them alike. The table gives medians over rounds of new tokens per
wall-clock second and per CPU-second of this process, and of the ratios steered/unsteered and
method + DSAS/method taken within each round (paired runs: slow drifts in the load cancel out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from dsas_bench.core.data import fit_sets, load_jigsaw, load_prompts, load_texts  # noqa: E402
from dsas_bench.core.errors import UsageError  # noqa: E402
from dsas_bench.core.hooks import SteeringMap, steer  # noqa: E402
from dsas_bench.core.models import LoadedModel, load_model  # noqa: E402
from dsas_bench.core.modules import select_modules  # noqa: E402
from dsas_bench.methods import get_method  # noqa: E402
from dsas_bench.scalers import fit_scaler  # noqa: E402
from dsas_bench.scalers.base import ScalerBase  # noqa: E402

METHODS = ("linacts", "meanacts", "actadd", "iti", "lineas")
# Quick fits: throughput depends on the maps' shape, not on how well they were fitted.
QUICK_OPTIONS = {"linacts": {"estimation": "at-once"}, "meanacts": {"estimation": "at-once"},
                 "iti": {"variant": "c"}, "lineas": {"steps": 3}}


@dataclass
class Config:
    """One way of generating: its maps (none: unsteered) and scaler, and what it measured."""

    name: str
    maps: dict[str, SteeringMap] = field(default_factory=dict)
    scaler: ScalerBase | None = None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def configurations(lm: LoadedModel, methods: list[str], dsas_threshold: float, context: str) -> list[Config]:
    """Unsteered, then each method and the method + DSAS, all on every post-attention norm."""
    modules = select_modules(lm.model, "post-attn-norm")
    toxic, nontoxic = load_jigsaw()
    sets = fit_sets(toxic, nontoxic, load_texts(), n=16, seed=0)
    scaler = fit_scaler("on", lm, None, modules, sets, threshold=dsas_threshold, context=context)
    configs = [Config("unsteered")]
    for name in methods:
        method = get_method(name)(**QUICK_OPTIONS.get(name, {})).fit(lm, modules, sets)
        maps = method.maps(lm.device)
        configs += [Config(name, maps), Config(f"{name}+dsas", maps, scaler)]
    return configs


def run(lm: LoadedModel, config: Config, batch: dict, new_tokens: int, strength: float) -> tuple[float, float]:
    """Seconds of wall clock and of CPU for one generation."""
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode(), steer(lm.model, config.maps, strength, config.scaler):
        lm.model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(lm: LoadedModel, configs: list[Config], prompts: list[str], args: argparse.Namespace) -> None:
    """Interleaved rounds over the configurations, in rotating order (each starts rounds equally often);
    the first (warm-up) round is discarded."""
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True).to(lm.device)
    tokens = len(prompts) * args.new_tokens
    for config in configs:
        config.wall.clear()
        config.cpu.clear()
    for round_index in range(args.repeats + 1):
        shift = round_index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            wall, cpu = run(lm, config, batch, args.new_tokens, args.strength)
            if round_index:
                config.wall.append(tokens / wall)
                config.cpu.append(tokens / cpu)


def paired(config: Config, reference: Config) -> float:
    """Median over rounds of the throughput ratio config/reference within the same round."""
    return statistics.median(a / b for a, b in zip(config.wall, reference.wall, strict=True))


def report(batch_size: int, configs: list[Config]) -> None:
    """One table row per configuration: medians and the two paired ratios."""
    by_name = {config.name: config for config in configs}
    print(f"\nbatch {batch_size}: new tokens/s and paired ratios (medians over rounds)")
    print(f"{'configuration':<16}{'tok/s':>9}{'tok/cpu-s':>11}{'vs unsteered':>14}{'+dsas vs method':>17}")
    for config in configs:
        versus_method = ""
        if config.scaler is not None:
            versus_method = f"{paired(config, by_name[config.name.removesuffix('+dsas')]):.3f}"
        print(f"{config.name:<16}{statistics.median(config.wall):>9.1f}{statistics.median(config.cpu):>11.1f}"
              f"{paired(config, by_name['unsteered']):>14.3f}{versus_method:>17}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--dsas-threshold", type=float, default=0.0)
    parser.add_argument("--context", default="token", choices=["token", "running-mean"])
    parser.add_argument("--prompts", default=None, help="RealToxicityPrompts jsonl (default: the demo prompts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        lm = load_model(args.model, device="cpu", dtype="float32")
        prompts = [p.text for p in load_prompts(args.prompts, n=max(args.batch_sizes))]
        if len(prompts) < max(args.batch_sizes):
            raise UsageError(f"{len(prompts)} prompts for batch size {max(args.batch_sizes)}: give more prompts")
        configs = configurations(lm, args.methods, args.dsas_threshold, args.context)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model {args.model}, {len(configs[1].maps) if len(configs) > 1 else 0} hooked modules per method, "
          f"{args.new_tokens} new tokens, strength {args.strength}, {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads, DSAS threshold {args.dsas_threshold}, context {args.context}")
    for batch_size in args.batch_sizes:
        measure(lm, configs, prompts[:batch_size], args)
        report(batch_size, configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
