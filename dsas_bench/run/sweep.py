"""The sweep: methods × DSAS modes × strengths × seeds, each cell fitted, generated, scored, stored.

The parent validates everything first (no partial output on bad input), then runs the cells
not yet in the results store through joblib — local processes (``loky``) or a Dask cluster —
and appends each row as it arrives. A worker loads the model once and reuses fitted
interventions across strengths; fitted states are also cached on disk, keyed by everything
that affects them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import torch
from tqdm.auto import tqdm

from dsas_bench.behaviors import get_behavior
from dsas_bench.behaviors.base import Behavior, Scorer, data_source
from dsas_bench.core.activations import atomic_save, model_fingerprint
from dsas_bench.core.data import FitSets, Prompt, fit_sets, load_texts
from dsas_bench.core.devices import device_for, run_per_device, worker_devices
from dsas_bench.core.errors import UsageError, warn
from dsas_bench.core.generation import SamplingConfig, generate_continuations
from dsas_bench.core.hooks import Scaler, steer
from dsas_bench.core.models import LoadedModel, cache_dir, load_model
from dsas_bench.core.modules import select_modules
from dsas_bench.core.progress import quiet
from dsas_bench.formats import load_method
from dsas_bench.methods import get_method
from dsas_bench.methods.base import SteeringMethod
from dsas_bench.methods.shift import IMPORT_HINT
from dsas_bench.run.calibration import calibrate
from dsas_bench.run.config import RunConfig, config_hash
from dsas_bench.run.evaluate import Evaluated, evaluate_strengths, fit_key, strength_groups
from dsas_bench.run.results import EXPLOSION_FACTOR, ResultsStore, quality_flags
from dsas_bench.run.strengths import AUTO, grid_for, parse_budget, spaced
from dsas_bench.scalers import OFF, fit_scaler, load_scaler, trains_method
from dsas_bench.utility import build_utility
from dsas_bench.utility.base import UtilityInputs, UtilityMetric, measure_utility
from dsas_bench.utility.perplexity import perplexity

CALIBRATION_SEED = 0  # the calibration texts: a seeded sample of the neutral texts left after the perplexity ones
HUB_CONTROL_POOL = 2000  # neutral hub texts streamed past the perplexity texts to sample the control set from
BASELINE = "none"  # the method name of the unsteered rows
PACKAGES = ("dsas-bench", "torch", "transformers", "lm_eval", "detoxify", "datasets", "scikit-learn", "numpy",
            "scipy", "vaderSentiment")
FIT_FIELDS = ("model", "dtype", "method", "method_options", "modules", "intervention", "fit_data", "fit_label",
              "control_data", "fit_n", "batch_size")


@dataclass(frozen=True)
class Cell:
    """One result row: a method (or the unsteered baseline) in a DSAS mode at a strength and seed."""

    method: str
    dsas: str
    strength: float
    seed: int


def plan(config: RunConfig, calibrate: bool = True) -> list[Cell]:
    """The unsteered baseline per seed, then every method × DSAS mode × seed × strength.

    With calibrated strengths (``--strengths auto``) this fits and calibrates each (method, DSAS
    mode, seed) first, or reads both from the cache; with ``calibrate`` False an uncalibrated line
    gets ``n_strengths`` cells of unknown (NaN) strength instead, for a dry run to count.
    """
    cells = [Cell(BASELINE, "off", 0.0, seed) for seed in config.seeds]
    cells += [Cell(method, dsas, float(strength), seed)
              for method in config.methods for dsas in config.dsas for seed in config.seeds
              for strength in cell_strengths(config, method, dsas, seed, calibrate)[0]]
    return cells


def cell_strengths(config: RunConfig, method: str, dsas: str, seed: int,
                   calibrate: bool = True) -> tuple[list[float], dict | None]:
    """The strengths of one (method, DSAS mode, seed), and the calibration that chose them (None for a grid;
    NaN strengths for an uncalibrated line unless ``calibrate``)."""
    grid = grid_for(config.strengths, method, dsas)
    if grid != AUTO:
        return grid, None
    if not calibrate and not calibration_path(config, method, dsas, seed).exists():
        return [math.nan] * config.n_strengths, None
    record = calibrated(config, method, dsas, seed)
    return (spaced(record["lambda_max"], config.n_strengths, config.strength_spacing),
            {**record, "n_strengths": config.n_strengths, "spacing": config.strength_spacing})


def calibrated(config: RunConfig, method: str, dsas: str, seed: int) -> dict[str, Any]:
    """λ_max of one fitted (method, DSAS mode, seed) for the run's budget, cached beside the fitted state."""
    budget, inputs = parse_budget(config.max_delta_ppl), _inputs(config)
    path = calibration_path(config, method, dsas, seed)
    if not path.exists():
        steering, scaler, _ = fitted(config, method, dsas, seed)
        atomic_save(calibrate(_lm(config), steering, scaler, inputs.calibration, budget,
                              max_tokens=config.perplexity_tokens, batch_size=config.batch_size), path)
    return torch.load(path)


def calibration_path(config: RunConfig, method: str, dsas: str, seed: int) -> Path:
    """Where the calibration of one (method, DSAS mode, seed) to the run's budget is cached."""
    key = config_hash({"budget": str(parse_budget(config.max_delta_ppl)),
                       "texts": _inputs(config).digests["calibration"], "tokens": config.perplexity_tokens,
                       "batch_size": config.batch_size})
    return scaler_cache(config, fit_cache(config, method, dsas, seed), dsas) / f"calibration-{key[:8]}.pt"


def cell_identity(config: RunConfig, cell: Cell) -> tuple[dict[str, Any], str, str]:
    """(resolved run config, its hash, the cell id) of one cell.

    The id also covers the content of the files the cell reads, so editing a prompt or data file in
    place makes its cells run again instead of being skipped as done.
    """
    run_config = config.cell_config(cell.method, cell.dsas)
    digest = config_hash(run_config)
    texts = _inputs(config).digests
    read = {"scored": texts["scored"]} if cell.method == BASELINE else {**texts, **_intervention_digest(config)}
    return run_config, digest, config_hash({"config": digest, "texts": read, "strength": cell.strength,
                                            "seed": cell.seed})


def _intervention_digest(config: RunConfig) -> dict[str, str]:
    """The hash of the saved state given with --intervention, if any."""
    if not config.intervention:
        return {}
    return {"intervention": hashlib.sha256(Path(config.intervention).read_bytes()).hexdigest()[:16]}


# -- inputs, loaded once per process --------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    """The texts a run reads.

    ``control`` never holds a perplexity text (``neutral``): DSAS is fitted to leave control text alone,
    so a control sentence scored for perplexity would flatter every DSAS mode. ``calibration`` (the
    texts ``--strengths auto`` calibrates λ_max on) is disjoint from both, for the same reason.
    """

    prompts: list[Prompt]
    source: list[str]  # the behaviour's texts to steer away from
    target: list[str]  # and towards
    control: list[str]
    neutral: list[str]
    calibration: list[str]

    def fit_sets(self, config: RunConfig, seed: int) -> FitSets:
        if len(self.control) < config.fit_n:
            raise UsageError(f"asked for {config.fit_n} control texts, but only {len(self.control)} of the control "
                             f"data are not among the {len(self.neutral)} perplexity texts and the "
                             f"{len(self.calibration)} calibration texts: lower --fit-n or --n-perplexity-texts, "
                             f"or give more neutral text with --control-data")
        return fit_sets(self.source, self.target, self.control, config.fit_n, seed)

    @property
    def prompt_set(self) -> str:
        return config_hash([p.text for p in self.prompts])[:8]

    @functools.cached_property
    def digests(self) -> dict[str, str]:
        """Hashes of the texts a cell is measured on (``scored``) and of those steering is fitted on (``fit``)."""
        return {"scored": config_hash({"prompts": [(p.text, p.toxicity) for p in self.prompts],
                                       "perplexity": self.neutral}),
                "fit": config_hash({"source": self.source, "target": self.target, "control": self.control}),
                "calibration": config_hash(self.calibration)}


INPUT_FIELDS = ("fit_data", "fit_label", "control_data", "prompts", "challenging_only", "n_prompts", "prompt_seed",
                "perplexity_data", "n_perplexity_texts", "n_calibration_texts")


def _inputs(config: RunConfig) -> Inputs:
    return _load_inputs(_behavior_key(config), *(getattr(config, name) for name in INPUT_FIELDS))


def _behavior_key(config: RunConfig) -> str:
    """The run's behaviour and its options, as the hashable key the per-process caches take."""
    return json.dumps([config.behavior, config.behavior_options], sort_keys=True)


def _behavior(config: RunConfig) -> Behavior:
    return _cached_behavior(_behavior_key(config))


@functools.lru_cache(maxsize=2)
def _cached_behavior(key: str) -> Behavior:
    name, options = json.loads(key)
    return get_behavior(name, **options)


@functools.lru_cache(maxsize=2)
def _load_inputs(behavior: str, fit_data: str, fit_label: str, control_data: str, prompts: str,
                 challenging_only: bool, n_prompts: int | None, prompt_seed: int, perplexity_data: str,
                 n_perplexity_texts: int, n_calibration_texts: int) -> Inputs:
    chosen = _cached_behavior(behavior)
    source, target = chosen.fit_texts(fit_data, fit_label)
    neutral = load_texts(**data_source(perplexity_data), kind="neutral", limit=n_perplexity_texts)
    pool = chosen.control_texts(control_data, hub_limit=n_perplexity_texts + HUB_CONTROL_POOL)
    scored = set(neutral)
    rest = list(dict.fromkeys(text for text in pool if text not in scored))  # distinct, in order
    picked = set(random.Random(CALIBRATION_SEED).sample(range(len(rest)), min(n_calibration_texts, len(rest))))
    return Inputs(
        prompts=chosen.prompts(prompts, challenging_only=challenging_only, n=n_prompts, seed=prompt_seed),
        source=source, target=target, neutral=neutral,
        calibration=[text for i, text in enumerate(rest) if i in picked],
        control=[text for i, text in enumerate(rest) if i not in picked])


@functools.lru_cache(maxsize=1)
def _model(name: str, device: str, dtype: str) -> LoadedModel:
    return load_model(name, device=device, dtype=dtype)


def _scorer(config: RunConfig) -> Scorer:
    return _cached_scorer(_behavior_key(config), config.scorer, json.dumps(config.scorer_options, sort_keys=True))


@functools.lru_cache(maxsize=1)
def _cached_scorer(behavior: str, name: str, options: str) -> Scorer:
    return _cached_behavior(behavior).scorer(name, json.loads(options))


def _utility(config: RunConfig) -> list[UtilityMetric]:
    """The run's utility metrics (``perplexity``, ``lm-eval`` and plug-ins), built with their options."""
    return build_utility(config.utility, config.utility_options)


def _lm(config: RunConfig) -> LoadedModel:
    return _model(config.model, device_for(config.device), config.dtype)


# -- fitting ---------------------------------------------------------------------------------------
def fitted(config: RunConfig, method: str, dsas: str, seed: int) -> tuple[SteeringMethod, Scaler | None, float]:
    """The fitted method and scaler for one (method, DSAS mode, seed), from the disk cache when there.

    The method is fitted once whatever the DSAS modes (E2E-DSAS aside, which trains it jointly with
    its scaler); a scaler is fitted on top of the cached method, on the modules the method steers.
    A copy goes to ``<output>/interventions/<method>-<dsas>-seed<seed>/`` for ``explain`` and reuse.
    """
    lm = _lm(config)
    cached = fit_cache(config, method, dsas, seed)
    start = time.perf_counter()
    with _locked(cached.with_name(f"{cached.name}.lock")):  # cells of one fit in parallel: the first fits
        steering = _cached_method(config, cached, method, dsas, seed, lm)
        scaler = _cached_scaler(config, cached, steering, dsas, seed, lm)
    fit_time = time.perf_counter() - start
    save_intervention(intervention_dir(config.output, method, dsas, seed), steering, scaler)
    return steering, scaler, fit_time


def _cached_method(config: RunConfig, folder: Path, method: str, dsas: str, seed: int,
                   lm: LoadedModel) -> SteeringMethod:
    """The method's fitted state in ``folder``, fitted there first (with its scaler, for E2E-DSAS)."""
    if (folder / METHOD_FILE).exists():
        return SteeringMethod.load(folder / METHOD_FILE, lm)
    sets = _inputs(config).fit_sets(config, seed)
    if config.intervention:
        steering = load_method(config.intervention, lm)
        modules = list(steering.state)
    else:
        steering = get_method(method)(**config.method_options.get(method, {}))
        modules = _modules(config, method, lm)
    scaler = None
    if trains_method(dsas):  # E2E-DSAS trains the method itself, jointly with its scaler
        scaler = fit_scaler(dsas, lm, steering, modules, sets, **config.dsas_options.get(dsas, {}))
    elif not config.intervention:
        steering.fit(lm, modules, sets, batch_size=config.batch_size)
    save_intervention(folder, steering, scaler)
    return steering


def _cached_scaler(config: RunConfig, folder: Path, steering: SteeringMethod, dsas: str, seed: int,
                   lm: LoadedModel) -> Scaler | None:
    """The scaler of ``dsas`` over the fitted ``steering``, from ``scaler_cache`` or fitted there."""
    if dsas == OFF:
        return None
    path = scaler_cache(config, folder, dsas) / SCALER_FILE
    if not path.exists():
        sets = _inputs(config).fit_sets(config, seed)
        scaler = fit_scaler(dsas, lm, steering, list(steering.state), sets, **config.dsas_options.get(dsas, {}))
        path.parent.mkdir(parents=True, exist_ok=True)
        scaler.save(path)
    return load_scaler(path, lm)


METHOD_FILE, SCALER_FILE = "method.pt", "scaler.pt"


def fit_cache(config: RunConfig, method: str, dsas: str, seed: int) -> Path:
    """The disk-cache folder of one fitted method and seed, keyed by everything that affects the fit.

    The DSAS mode is not part of the key (the modes share the method's fit), except for a scaler that
    trains the method itself (E2E-DSAS): its folder holds the jointly trained method and scaler.
    """
    run_config = config.cell_config(method, dsas)
    joint = {"dsas": dsas, "dsas_options": config.dsas_options.get(dsas, {})} if trains_method(dsas) else {}
    key = config_hash({"fit": {k: run_config[k] for k in FIT_FIELDS}, **joint, "seed": seed,
                       "model": model_fingerprint(_lm(config)), "texts": _inputs(config).digests["fit"],
                       **_intervention_digest(config)})
    return cache_dir() / "interventions" / key


def scaler_cache(config: RunConfig, method_folder: Path, dsas: str) -> Path:
    """Where the scaler of ``dsas`` over the method fitted in ``method_folder`` is cached (the folder
    itself for off and a scaler that trains the method, which keep none or their joint one there)."""
    if dsas == OFF or trains_method(dsas):
        return method_folder
    return method_folder / f"scaler-{dsas}-{config_hash(config.dsas_options.get(dsas, {}))[:8]}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes for the block (POSIX advisory lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def intervention_dir(output: str | Path, method: str, dsas: str, seed: int) -> Path:
    """Where a run keeps the fitted state of one (method, DSAS mode, seed)."""
    return Path(output) / "interventions" / f"{method}-{dsas}-seed{seed}"


def save_intervention(folder: Path, steering: SteeringMethod, scaler: Scaler | None) -> None:
    """The method's state and the scaler's; the method file last, as it marks a complete entry."""
    folder.mkdir(parents=True, exist_ok=True)
    if scaler is not None:
        scaler.save(folder / SCALER_FILE)
    steering.save(folder / METHOD_FILE)


def load_intervention(folder: Path, lm: LoadedModel) -> tuple[SteeringMethod, Scaler | None]:
    """A saved (method, scaler) pair, checked against ``lm``."""
    scaler_path = folder / SCALER_FILE
    return (SteeringMethod.load(folder / METHOD_FILE, lm),
            load_scaler(scaler_path, lm) if scaler_path.exists() else None)


def _modules(config: RunConfig, method: str, lm: LoadedModel) -> list[str]:
    cls = get_method(method)
    pattern = config.modules or cls(**config.method_options.get(method, {})).default_modules
    return select_modules(lm.model, pattern)


# -- one cell --------------------------------------------------------------------------------------
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
        lm, inputs = _lm(config), _inputs(config)
        steering, scaler, _ = fitted(config, *next(fit_key(c) for c in cells if c.method != BASELINE))
        shared = evaluate_strengths(lm, steering.maps(lm.device), scaler, [c.strength for c in cells],
                                    [p.text for p in inputs.prompts], inputs.neutral, _sampling(config),
                                    seed=cells[0].seed, batch_size=config.batch_size,
                                    max_tokens=config.perplexity_tokens, samples_per_prompt=config.samples_per_prompt)
        return [_run_cell(config, cell, evaluated) for cell, evaluated in zip(cells, shared, strict=True)]


def _sampling(config: RunConfig) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          top_p=config.top_p, repetition_penalty=config.repetition_penalty)


def _run_cell(config: RunConfig, cell: Cell, evaluated: Evaluated | None = None) -> dict[str, Any]:
    """One cell's row; ``evaluated``: its continuations and perplexity from strength-batched passes."""
    lm, inputs, scorer = _lm(config), _inputs(config), _scorer(config)
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
                continuations = generate_continuations(lm, [p.text for p in inputs.prompts], _sampling(config),
                                                       seed=cell.seed, batch_size=config.batch_size,
                                                       samples_per_prompt=config.samples_per_prompt)
            shared = {}
        else:
            continuations, shared = evaluated.continuations, {"perplexity": evaluated.perplexity}
            times.update(evaluated.times)
        utility = measure_utility(_utility(config), utility_inputs, times, shared)
    ppl = utility["perplexity"]
    if cell.method != BASELINE:
        exploded = not ppl <= EXPLOSION_FACTOR * _unsteered_perplexity(config)  # NaN too
    with _timed(times, "score"):
        behavior = _behavior(config)
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


def _sampling(config: RunConfig) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          top_p=config.top_p, repetition_penalty=config.repetition_penalty)


def _unsteered_perplexity(config: RunConfig) -> float:
    """The unsteered model's perplexity on the run's perplexity texts, once per process and input."""
    key = (config.model, config.device, config.dtype, _inputs(config).digests["scored"], config.perplexity_tokens)
    if key not in _UNSTEERED:
        _UNSTEERED[key] = perplexity(_lm(config), _inputs(config).neutral, max_tokens=config.perplexity_tokens,
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


# -- the whole sweep -------------------------------------------------------------------------------
def check(config: RunConfig, store: ResultsStore | None) -> None:
    """Everything that can fail on bad input, before any output is written (``store`` None: a dry run, that
    writes nothing)."""
    if store is not None:
        store.check_writable()
    if config.devices:
        worker_devices(config.devices)
    _sampling(config)
    inputs = _inputs(config)
    calibrating = any(grid_for(config.strengths, m, d) == AUTO for m in config.methods for d in config.dsas)
    if calibrating and len(inputs.calibration) < config.n_calibration_texts:
        raise UsageError(f"--strengths auto needs {config.n_calibration_texts} calibration texts, but only "
                         f"{len(inputs.calibration)} neutral texts are left after the {len(inputs.neutral)} "
                         f"perplexity texts: lower --n-calibration-texts or --n-perplexity-texts, or give more "
                         f"neutral text with --control-data")
    for seed in config.seeds:
        inputs.fit_sets(config, seed)
    _scorer(config)
    for metric in _utility(config):
        metric.check(dataclasses.asdict(config))
    lm = _lm(config)
    for method in config.methods:
        if get_method(method).imported_only and not config.intervention:
            raise UsageError(f"method {method!r} runs steering vectors made elsewhere: {IMPORT_HINT}")
        _modules(config, method, lm)
    if config.intervention:
        saved = load_method(config.intervention, lm)
        if saved.name != config.methods[0]:
            raise UsageError(f"{config.intervention} holds a fitted {saved.name!r} state, not {config.methods[0]!r}: "
                             f"run it with --method {saved.name}")
    _check_length(config, lm, inputs.prompts)


def _check_length(config: RunConfig, lm: LoadedModel, prompts: list[Prompt]) -> None:
    """The longest prompt plus --max-new-tokens must fit the model's positions."""
    positions = getattr(lm.model.config, "max_position_embeddings", None)
    longest = max(len(lm.tokenizer(p.text).input_ids) for p in prompts)
    if positions and longest + config.max_new_tokens > positions:
        raise UsageError(f"--max-new-tokens {config.max_new_tokens} after a prompt of {longest} tokens exceeds the "
                         f"{positions} positions of {config.model}: give at most {positions - longest}")


def run_sweep(config: RunConfig, fresh: bool = False) -> Iterator[dict[str, Any]]:
    """Run every cell not yet stored, appending rows as they finish; yields the new rows."""
    store = ResultsStore(config.output)
    check(config, store)
    with _backend(config), store.writing():  # the folder is created only now, and one sweep writes it at a time
        if fresh:  # this run's fitted states (and calibrations) only, before planning recalibrates them
            for method, dsas, seed in itertools.product(config.methods, config.dsas, config.seeds):
                shutil.rmtree(fit_cache(config, method, dsas, seed), ignore_errors=True)
        with quiet(not config.progress):  # planning may fit and calibrate
            cells = {cell_identity(config, cell)[2]: cell for cell in plan(config)}
        store.repair()
        if fresh:  # this run's rows only: other runs in the same directory keep theirs
            store.forget(set(cells))
        done = store.done()
        todo = [cell for cell_id, cell in cells.items() if cell_id not in done]
        with tqdm(total=len(todo), desc="sweep cells", disable=not config.progress) as bar:
            groups = strength_groups(todo, config.cells_per_batch, BASELINE, workers=_workers(config))
            for rows in _evaluated_groups(config, groups):
                for row in rows:
                    store.append(row)
                    if row["flags"]:
                        warn(f"{row['method']} λ = {row['strength']:g} seed {row['seed']}: "
                             f"{', '.join(row['flags'])}; the row is kept but left out of fronts and leaderboards")
                    bar.update()
                    yield row


def _workers(config: RunConfig) -> int:
    """How many workers evaluate cells at once: one per device of ``--devices``, else ``--jobs``."""
    return len(worker_devices(config.devices)) if config.devices else config.jobs


def _evaluated_groups(config: RunConfig, groups: list[list[Cell]]) -> Iterator[list[dict[str, Any]]]:
    """The rows of each group, as groups finish: one worker per device of ``--devices``, else ``--jobs`` workers
    of the joblib backend the caller entered (``_backend``)."""
    if config.devices:
        workers = dataclasses.replace(config, jobs=_workers(config))
        yield from run_per_device(run_group, [(workers, group) for group in groups], worker_devices(config.devices))
        return
    parallel = joblib.Parallel(n_jobs=config.jobs, return_as="generator_unordered")
    yield from parallel(joblib.delayed(run_group)(config, group) for group in groups)


@contextlib.contextmanager
def _backend(config: RunConfig) -> Iterator[None]:
    """Local worker processes (loky), or a Dask cluster at ``config.scheduler`` (a local one when unset)."""
    if config.backend == "loky":
        with joblib.parallel_config(backend="loky"):
            yield
        return
    from dask.distributed import Client

    try:
        client = Client(config.scheduler) if config.scheduler else Client(
            processes=True, n_workers=config.jobs, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler {config.scheduler}: {exc}") from exc
    with client, joblib.parallel_config(backend="dask"):
        yield
