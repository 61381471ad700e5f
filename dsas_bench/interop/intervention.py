"""A fitted intervention given by path, with its scaler: a run's folder (``method.pt`` + ``scaler.pt``) or one file.

A file is any format ``formats.read_state`` reads; only a ``.safetensors`` export carries its
scaler inside, and a lone ``method.pt`` has none (so giving it drops the folder's scaler).
"""

from __future__ import annotations

import math
from pathlib import Path

from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel, load_model
from dsas_bench.formats import load_method
from dsas_bench.formats.safetensors_format import read_scaler
from dsas_bench.methods.base import SteeringMethod
from dsas_bench.run.interventions import METHOD_FILE, load_intervention
from dsas_bench.scalers import OFF, SCALERS, load_scaler
from dsas_bench.scalers.base import ScalerBase


def load_any(path: str | Path, lm: LoadedModel | None = None) -> tuple[SteeringMethod, ScalerBase | None]:
    """(method, scaler or None) saved at ``path``; with ``lm``, checked against it."""
    path = existing_intervention(path)
    if path.is_dir():
        return load_intervention(path, lm)
    return load_method(path, lm), read_scaler(path, lm) if path.suffix == ".safetensors" else None


def existing_intervention(path: str | Path) -> Path:
    """``path`` if it is an intervention folder or an existing file, else a UsageError."""
    path = Path(path)
    if path.is_dir() and not (path / METHOD_FILE).exists():
        raise UsageError(f"{path} holds no {METHOD_FILE}: give a folder under <output>/interventions/ or a file")
    if not path.exists():
        raise UsageError(f"intervention {path} not found: give a folder under <output>/interventions/ or a saved file")
    return path


def intervention_model(path: str | Path) -> str:
    """The model the intervention at ``path`` was fitted on, read without loading a model."""
    return load_any(path)[0].model_name


def load_steered(intervention: str | Path | None, model: str | None = None, scaler: str | Path | None = None,
                 dsas: str | None = None, device: str = "auto",
                 dtype: str = "auto") -> tuple[LoadedModel, SteeringMethod, ScalerBase | None]:
    """The model (default: the intervention's), the method and the scaler ``dsas`` asks for.

    ``dsas`` None keeps the intervention's scaler (or ``scaler``, a scaler file), ``off`` drops it,
    any other registered mode (``on``, ``e2e``, ``cast``, ``gate``, plug-ins) requires one of that kind.
    """
    if not intervention:
        raise UsageError("no intervention given: pass intervention=<folder or file> (a run's "
                         "<output>/interventions/<method>-<dsas>-seed<N>, or an exported file)")
    lm = load_model(model or intervention_model(intervention), device=device, dtype=dtype)
    method, saved = load_any(intervention, lm)
    if scaler:
        saved = load_scaler(scaler, lm)
    return lm, method, chosen_scaler(saved, dsas)


def chosen_scaler(scaler: ScalerBase | None, dsas: str | None) -> ScalerBase | None:
    """The scaler for DSAS mode ``dsas`` (None: whatever was saved)."""
    if dsas is None:
        return scaler
    dsas = SCALERS.canonical(dsas)
    if dsas == OFF:
        return None
    if scaler is None:
        raise UsageError(f"DSAS mode {dsas!r} needs the scaler fitted with the intervention: give the run's "
                         "intervention folder (it holds scaler.pt), a safetensors export, or a scaler file")
    if scaler.name != dsas:
        raise UsageError(f"the scaler given was fitted for DSAS mode {scaler.name!r}, not {dsas!r}: give that "
                         f"mode's intervention, or leave the DSAS mode out")
    return scaler


def checked_strength(strength: object) -> float:
    """λ as a finite float."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"strength {strength!r} is not a finite number: use e.g. strength=0.5")
    return value
