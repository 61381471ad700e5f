"""Fitted interventions: a method fitted once per seed (whatever the DSAS modes), the scalers over it,
and the strengths calibrated for a budget, all cached on disk by everything that affects them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dsas_bench.core.activations import atomic_save, model_fingerprint
from dsas_bench.core.hooks import Scaler
from dsas_bench.core.models import LoadedModel, cache_dir
from dsas_bench.core.modules import select_modules
from dsas_bench.formats import load_method
from dsas_bench.methods import get_method
from dsas_bench.methods.base import SteeringMethod
from dsas_bench.run.calibration import calibrate
from dsas_bench.run.config import RunConfig, config_hash
from dsas_bench.run.inputs import inputs_for, model_for
from dsas_bench.run.strengths import parse_budget
from dsas_bench.scalers import OFF, fit_scaler, load_scaler, trains_method

FIT_FIELDS = ("model", "dtype", "method", "method_options", "modules", "intervention", "fit_data", "fit_label",
              "control_data", "fit_n", "batch_size")
METHOD_FILE, SCALER_FILE = "method.pt", "scaler.pt"


def fitted(config: RunConfig, method: str, dsas: str, seed: int) -> tuple[SteeringMethod, Scaler | None, float]:
    """The fitted method and scaler for one (method, DSAS mode, seed), from the disk cache when there.

    The method is fitted once whatever the DSAS modes (E2E-DSAS aside, which trains it jointly with
    its scaler); a scaler is fitted on top of the cached method, on the modules the method steers.
    A copy goes to ``<output>/interventions/<method>-<dsas>-seed<seed>/`` for ``explain`` and reuse.
    """
    lm = model_for(config)
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
    sets = inputs_for(config).fit_sets(config, seed)
    if config.intervention:
        steering = load_method(config.intervention, lm)
        modules = list(steering.state)
    else:
        steering = get_method(method)(**config.method_options.get(method, {}))
        modules = modules_for(config, method, lm)
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
        sets = inputs_for(config).fit_sets(config, seed)
        scaler = fit_scaler(dsas, lm, steering, list(steering.state), sets, **config.dsas_options.get(dsas, {}))
        path.parent.mkdir(parents=True, exist_ok=True)
        scaler.save(path)
    return load_scaler(path, lm)


def fit_cache(config: RunConfig, method: str, dsas: str, seed: int) -> Path:
    """The disk-cache folder of one fitted method and seed, keyed by everything that affects the fit.

    The DSAS mode is not part of the key (the modes share the method's fit), except for a scaler that
    trains the method itself (E2E-DSAS): its folder holds the jointly trained method and scaler.
    """
    run_config = config.cell_config(method, dsas)
    joint = {"dsas": dsas, "dsas_options": config.dsas_options.get(dsas, {})} if trains_method(dsas) else {}
    key = config_hash({"fit": {k: run_config[k] for k in FIT_FIELDS}, **joint, "seed": seed,
                       "model": model_fingerprint(model_for(config)), "texts": inputs_for(config).digests["fit"],
                       **intervention_digest(config)})
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


def modules_for(config: RunConfig, method: str, lm: LoadedModel) -> list[str]:
    cls = get_method(method)
    pattern = config.modules or cls(**config.method_options.get(method, {})).default_modules
    return select_modules(lm.model, pattern)


def intervention_digest(config: RunConfig) -> dict[str, str]:
    """The hash of the saved state given with --intervention, if any."""
    if not config.intervention:
        return {}
    return {"intervention": hashlib.sha256(Path(config.intervention).read_bytes()).hexdigest()[:16]}


def calibrated(config: RunConfig, method: str, dsas: str, seed: int) -> dict[str, Any]:
    """λ_max of one fitted (method, DSAS mode, seed) for the run's budget, cached beside the fitted state."""
    budget, inputs = parse_budget(config.max_delta_ppl), inputs_for(config)
    path = calibration_path(config, method, dsas, seed)
    if not path.exists():
        steering, scaler, _ = fitted(config, method, dsas, seed)
        atomic_save(calibrate(model_for(config), steering, scaler, inputs.calibration, budget,
                              max_tokens=config.perplexity_tokens, batch_size=config.batch_size), path)
    return torch.load(path)


def calibration_path(config: RunConfig, method: str, dsas: str, seed: int) -> Path:
    """Where the calibration of one (method, DSAS mode, seed) to the run's budget is cached."""
    key = config_hash({"budget": str(parse_budget(config.max_delta_ppl)),
                       "texts": inputs_for(config).digests["calibration"], "tokens": config.perplexity_tokens,
                       "batch_size": config.batch_size})
    return scaler_cache(config, fit_cache(config, method, dsas, seed), dsas) / f"calibration-{key[:8]}.pt"
