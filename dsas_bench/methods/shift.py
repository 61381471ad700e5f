"""Steering vectors made by other tools (METHODS.md §2 ActAdd's map): T(h) = h + v at each of their modules.

A llama.cpp / repeng GGUF control vector or a ``steering-vectors`` ``SteeringVector`` given with
``--intervention`` loads as a state of this method (``dsas_bench/interop``), so the harness can
benchmark it, with and without DSAS, like a method it fitted. ``source`` records where it came from.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import SteeringMap
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.maps import ShiftMap

IMPORT_HINT = ("give the vectors with --intervention FILE: a GGUF control vector (.gguf, llama.cpp / repeng), "
               "a steering-vectors SteeringVector's layer activations saved with torch.save, or a dsas-bench export")


class Shift(SteeringMethod):
    """Imported constant shifts, one vector per module; not fitted by dsas_bench."""

    defaults = {"source": None}  # the format the vectors were imported from
    default_modules = "layers"
    imported_only = True

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        raise UsageError(f"method 'shift' runs steering vectors made elsewhere and fits nothing: {IMPORT_HINT}")

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return ShiftMap(params["v"])
