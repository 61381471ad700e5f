"""When to steer: the registry of scalers and the three calls the sweep makes.

A scaler plugs into the hook manager (``steer(model, maps, λ, scaler)``) and scales each token's
step at each module without the method knowing. Built in: ``on`` (DSAS), ``e2e`` (DSAS trained
jointly with LinEAS), ``cast`` (a CAST-style per-sequence gate) and ``gate`` (DSAS's layer
selection alone); ``off`` is plain steering (no scaler). Another package adds one through the
``dsas_bench.scalers`` entry-point group (a ``ScalerBase`` subclass)::

    scaler = fit_scaler("on", lm, method, modules, sets, threshold=0.75)
    with steer(lm.model, method.maps(lm.device), strength, scaler), scaler.recording():
        lm.model.generate(**batch)
    scaler.token_scales()  # module -> (batch, tokens) scales, for ``explain``

This module imports no torch: names and options can be checked before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsas_bench.core.errors import UsageError
from dsas_bench.core.registry import Registry, check_options

if TYPE_CHECKING:
    from dsas_bench.core.models import LoadedModel
    from dsas_bench.methods.base import FitSets, SteeringMethod
    from dsas_bench.scalers.base import ScalerBase

__all__ = ["OFF", "SCALERS", "check_scaler", "fit_scaler", "load_scaler", "register_scaler", "scaler_label",
           "scaler_names", "scaler_options", "trains_method"]

OFF = "off"  # plain steering: no scaler, s ≡ 1
SCALERS: Registry[ScalerBase] = Registry("DSAS mode", "dsas_bench.scalers.base:ScalerBase",
                                         "dsas_bench.scalers", fixed={OFF: "plain steering: no scaler, s ≡ 1"})
SCALERS.add("on", "dsas_bench.scalers.dsas:DSAS", "dsas")
SCALERS.add("e2e", "dsas_bench.scalers.e2e:E2EDSAS", "e2e-dsas")
SCALERS.add("cast", "dsas_bench.scalers.cast:CastGate")
SCALERS.add("gate", "dsas_bench.scalers.gate:LayerGate", "layer-selection")
register_scaler = SCALERS.register


def scaler_names() -> list[str]:
    """``off``, the built-in scalers, then the plug-ins."""
    return SCALERS.names()


def scaler_label(mode: str) -> str:
    """How plots and tables name the mode: ``plain``, the scaler's ``label``, or the mode itself when unknown."""
    try:
        return "plain" if SCALERS.canonical(mode) == OFF else SCALERS.get(mode).label or mode
    except UsageError:  # rows of a plug-in that is not installed here
        return mode


def scaler_options(mode: str) -> dict[str, Any]:
    """The options of scaler ``mode`` with their defaults (none for ``off``)."""
    return {} if SCALERS.canonical(mode) == OFF else dict(SCALERS.get(mode).defaults)


def trains_method(mode: str) -> bool:
    """True for a scaler that trains the method jointly with itself (E2E-DSAS): the method is not fitted alone."""
    return SCALERS.canonical(mode) != OFF and SCALERS.get(mode).trains_method


def check_scaler(mode: str, method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of scaler ``mode`` checked (names, types, the values that need no data) and coerced, for
    steering method ``method``; a UsageError also for a method the scaler cannot wrap. Nothing is fitted."""
    if SCALERS.canonical(mode) == OFF:
        return check_options(f"DSAS mode {OFF!r}", {}, options)
    cls = SCALERS.get(mode)
    cls.check_method(method)
    checked = check_options(f"DSAS mode {cls.name!r}", cls.defaults, options, cls.option_types)
    cls.check_values({**cls.defaults, **checked})
    return checked


def fit_scaler(mode: str, lm: LoadedModel, method: SteeringMethod | None, modules: Sequence[str], sets: FitSets,
               **options: Any) -> ScalerBase | None:
    """``off``: None; otherwise scaler ``mode`` fitted for ``method`` on ``modules`` (``sets.source`` vs
    ``sets.control``). A scaler that ``trains_method`` updates ``method``'s state in place."""
    checked = check_scaler(mode, method.name if method is not None else "", options)
    if SCALERS.canonical(mode) == OFF:
        return None
    cls = SCALERS.get(mode)
    return cls.fit(lm, method, modules, sets, {**cls.defaults, **checked}).to(lm.device)


def load_scaler(path: str | Path, lm: LoadedModel | None = None) -> ScalerBase:
    """A saved scaler of any registered kind; with ``lm``, refused when fitted on another model or hidden size."""
    from dsas_bench.scalers.base import load_scaler_state

    return load_scaler_state(path, lm)
