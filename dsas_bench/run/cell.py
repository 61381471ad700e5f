"""One cell, or a strength-batched group of cells of one intervention: steer, generate, score, measure,
and the result row.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from dsas_bench.core.generation import generate_continuations
from dsas_bench.core.hooks import steer
from dsas_bench.core.progress import quiet
from dsas_bench.run.config import RunConfig
from dsas_bench.run.evaluate import Evaluated, evaluate_strengths, fit_key
from dsas_bench.run.inputs import behavior_for, inputs_for, model_for, sampling_for, scorer_for, utility_for
from dsas_bench.run.interventions import fitted
from dsas_bench.run.plan import BASELINE, Cell, cell_identity, cell_strengths
from dsas_bench.run.results import EXPLOSION_FACTOR, quality_flags
from dsas_bench.utility.base import UtilityInputs, measure_utility
from dsas_bench.utility.perplexity import perplexity

PACKAGES = ("dsas-bench", "torch", "transformers", "lm_eval", "detoxify", "datasets", "scikit-learn", "numpy",
            "scipy", "vaderSentiment")


def run_cell(config: RunConfig, cell: Cell) -> dict[str, Any]:
    """Fit (or reuse), steer, generate, score and measure one cell; return its result row."""
    return run_group(config, [cell])[0]


def run_group(config: RunConfig, cells: list[Cell]) -> list[dict[str, Any]]:
    """The rows of cells of one fitted intervention (``evaluate.strength_groups``): with more than one cell,
    generation and perplexity run in shared batches, each row at its cell's λ; lm-eval and scoring per cell."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.jobs))
    with quiet(not (config.progress and config.jobs == 1)):  # inner bars only when cells run one at a time
        if len(cells) == 1:
            return [_run_cell(config, cells[0])]
        lm, inputs = model_for(config), inputs_for(config)
        steering, scaler, _ = fitted(config, *next(fit_key(c) for c in cells if c.method != BASELINE))
        shared = evaluate_strengths(lm, steering.maps(lm.device), scaler, [c.strength for c in cells],
                                    [p.text for p in inputs.prompts], inputs.neutral, sampling_for(config),
                                    seed=cells[0].seed, batch_size=config.batch_size,
                                    max_tokens=config.perplexity_tokens, samples_per_prompt=config.samples_per_prompt)
        return [_run_cell(config, cell, evaluated) for cell, evaluated in zip(cells, shared, strict=True)]


def _run_cell(config: RunConfig, cell: Cell, evaluated: Evaluated | None = None) -> dict[str, Any]:
    """One cell's row; ``evaluated``: its continuations and perplexity from strength-batched passes."""
    lm, inputs, scorer = model_for(config), inputs_for(config), scorer_for(config)
    times: dict[str, float] = {"fit": 0.0}
    maps, scaler, intervention, calibration, exploded = {}, None, None, None, False
    if cell.method != BASELINE:
        calibration = cell_strengths(config, cell.method, cell.dsas, cell.seed)[1]
        steering, scaler, times["fit"] = fitted(config, cell.method, cell.dsas, cell.seed)
        maps = steering.maps(lm.device)
        intervention = {"method_options": steering.options, "modules": list(steering.state),
                        "method_diagnostics": steering.diagnostics,
                        "scaler": scaler and {"options": scaler.options, "diagnostics": scaler.diagnostics}}
    run_config, digest, cell_id = cell_identity(config, cell)
    utility_inputs = UtilityInputs(lm, inputs.neutral, run_config, getattr(scaler, "per_sequence", False))
    with steer(lm.model, maps, cell.strength, scaler):
        if evaluated is None:
            with _timed(times, "generate"):
                continuations = generate_continuations(lm, [p.text for p in inputs.prompts], sampling_for(config),
                                                       seed=cell.seed, batch_size=config.batch_size,
                                                       samples_per_prompt=config.samples_per_prompt)
            shared = {}
        else:
            continuations, shared = evaluated.continuations, {"perplexity": evaluated.perplexity}
            times.update(evaluated.times)
        utility = measure_utility(utility_for(config), utility_inputs, times, shared)
    ppl = utility["perplexity"]
    if cell.method != BASELINE:
        exploded = not ppl <= EXPLOSION_FACTOR * _unsteered_perplexity(config)  # NaN too
    with _timed(times, "score"):
        behavior = behavior_for(config)
        scored = behavior.scored_row(continuations, scorer.score(continuations), inputs.prompts,
                                     config.samples_per_prompt, cell.seed)
    scorer_info = scorer.describe()
    metrics = {**scored["metrics"], "perplexity": ppl, "perplexity_exploded": exploded, **utility}
    return {
        "cell_id": cell_id, "config_hash": digest, "config": run_config,
        "behavior": behavior.name, "behavior_options": behavior.options,
        "model": config.model, "method": cell.method, "dsas": cell.dsas, "strength": cell.strength, "seed": cell.seed,
        "intervention": intervention, "calibration": calibration,
        "scorer": scorer.reported_name, "scorer_info": scorer_info,
        "prompt_set": f"{Path(config.prompts).name}:{inputs.prompt_set}",
        "metrics": metrics, "flags": quality_flags(metrics, continuations, behavior.mean_score, behavior.name),
        "prompt_scores": scored["prompt_scores"], "continuations": scored["continuations"],
        "versions": versions(), "device": str(lm.device), "strength_batch": evaluated.cells if evaluated else 1,
        "wall_time_s": {k: round(v, 3) for k, v in times.items()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _unsteered_perplexity(config: RunConfig) -> float:
    """The unsteered model's perplexity on the run's perplexity texts, once per process and input."""
    key = (config.model, config.device, config.dtype, inputs_for(config).digests["scored"], config.perplexity_tokens)
    if key not in _UNSTEERED:
        _UNSTEERED[key] = perplexity(model_for(config), inputs_for(config).neutral, max_tokens=config.perplexity_tokens,
                                     batch_size=config.batch_size, progress=False)
    return _UNSTEERED[key]


_UNSTEERED: dict[tuple, float] = {}


class _timed:
    """``with _timed(times, "stage"):`` adds the stage's wall time to ``times``."""

    def __init__(self, times: dict[str, float], stage: str):
        self.times, self.stage = times, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self.times[self.stage] = time.perf_counter() - self.start


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide the numbers."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
