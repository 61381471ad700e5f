"""When to steer: the DSAS scaler, E2E-DSAS and the CAST-style gate, for any steering method.

A scaler plugs into the hook manager (``steer(model, maps, λ, scaler)``) and scales each token's
step at each module without the method knowing. ``fit_scaler`` is the one entry point::

    scaler = fit_scaler("on", lm, method, modules, sets, threshold=0.75)
    with steer(lm.model, method.maps(lm.device), strength, scaler), scaler.recording():
        lm.model.generate(**batch)
    scaler.token_scales()  # module -> (batch, tokens) scales, for ``explain``
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from dsas_bench.errors import UsageError
from dsas_bench.fieldtypes import check_value, declared_types
from dsas_bench.models import LoadedModel
from dsas_bench.scaler.base import ScalerBase, load_scaler
from dsas_bench.scaler.cast import CastGate, check_cast_options, fit_cast
from dsas_bench.scaler.dsas import LinearScaler, check_dsas_options, fit_dsas
from dsas_bench.scaler.e2e import check_e2e_options, train_e2e
from dsas_bench.steering.base import FitSets, SteeringMethod

__all__ = ["DSAS_MODES", "CastGate", "LinearScaler", "ScalerBase", "check_scaler_options", "fit_scaler", "load_scaler",
           "scaler_options"]

DSAS_MODES = ("off", "on", "e2e", "cast")
_FITTERS = {"on": fit_dsas, "e2e": train_e2e, "cast": fit_cast}
_CHECKS = {"on": check_dsas_options, "e2e": check_e2e_options, "cast": check_cast_options}


def scaler_options(mode: str) -> dict[str, Any]:
    """The options ``fit_scaler`` accepts for ``mode``, with their defaults."""
    if mode not in DSAS_MODES:
        raise UsageError(f"unknown DSAS mode {mode!r}: use one of {', '.join(DSAS_MODES)}")
    if mode == "off":
        return {}
    parameters = inspect.signature(_FITTERS[mode]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_scaler_options(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for ``mode`` checked before any work: known names, declared types, the values that need no data."""
    known = scaler_options(mode)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(f"DSAS mode {mode!r} has no option {', '.join(unknown)}; its options are: "
                         f"{', '.join(known) or 'none'}")
    if mode == "off":
        return dict(options)
    typed = declared_types(_FITTERS[mode])
    checked = {key: check_value(value, typed[key], f"DSAS option {key}") for key, value in options.items()}
    _CHECKS[mode](**{**known, **checked})
    return checked


def fit_scaler(mode: str, lm: LoadedModel, method: SteeringMethod, modules: Sequence[str], sets: FitSets,
               **options: Any) -> ScalerBase | None:
    """``off``: None; ``on``: the DSAS scaler fitted on ``sets.source`` vs ``sets.control``; ``cast``: the
    CAST-style gate; ``e2e``: train LinEAS ``method`` (its state updated in place) jointly with a scaler."""
    options = check_scaler_options(mode, options)
    if mode == "off":
        return None
    if mode == "e2e":
        return train_e2e(lm, method, modules, sets, **options)
    return _FITTERS[mode](lm, modules, sets, **options)
