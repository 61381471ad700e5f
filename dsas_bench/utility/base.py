"""What every utility metric shares: options from ``defaults``, the row fields it writes, one ``measure`` call.

A utility metric measures the model as it is when called: the sweep calls ``measure`` inside the cell's
``steer(...)`` block, so the hooks (method, scaler, λ) are active. It returns its row fields, which go
into the row's ``metrics`` next to the toxicity numbers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from dsas_bench.core.registry import resolve_options
from dsas_bench.utility import UTILITY

if TYPE_CHECKING:
    from dsas_bench.core.models import LoadedModel


@dataclass(frozen=True)
class UtilityInputs:
    """What a utility metric measures on: the (steered) model, the run's neutral texts and its config."""

    lm: LoadedModel
    texts: Sequence[str]  # the run's perplexity texts: neutral, never in the fit, control or calibration sets
    config: Mapping[str, Any]  # the cell's resolved run config, as its row records it
    per_sequence: bool = False  # the active scaler pools whole sequences: batches must not carry pads it would pool


class UtilityMetric(ABC):
    """Base of the utility metrics: subclasses set ``fields`` (and ``defaults`` for options) and implement
    ``measure``; the registry sets ``name``. ``options``: the defaults overridden by the given ones, checked."""

    name: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()  # the row metrics ``measure`` returns
    defaults: ClassVar[dict[str, Any]] = {}
    option_types: ClassVar[dict[str, Any]] = {}  # types of the options whose type is not their default's

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.name = UTILITY.name_for(cls)  # a built-in's registry name, also when its module is imported directly

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options = resolve_options(f"utility metric {self.name!r}", self.defaults, options or {},
                                       self.option_types)

    def check(self, config: Mapping[str, Any]) -> None:  # noqa: B027 (optional: most metrics need no check)
        """Raise a UsageError for what would fail later on this run config (called before any work)."""

    @abstractmethod
    def measure(self, inputs: UtilityInputs) -> dict[str, Any]:
        """This metric's ``fields`` for the model as it is steered now."""


def measure_utility(metrics: Sequence[UtilityMetric], inputs: UtilityInputs, times: dict[str, float],
                    shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every metric's fields, in order, each metric's wall time in ``times`` (``lm-eval`` as ``lm_eval``).

    A metric whose fields ``shared`` holds (measured in strength-batched passes) is taken from there."""
    shared = shared or {}
    values: dict[str, Any] = {}
    for metric in metrics:
        if metric.fields and set(metric.fields) <= set(shared):
            values.update({field: shared[field] for field in metric.fields})
            continue
        start = time.perf_counter()
        measured = metric.measure(inputs)
        times[metric.name.replace("-", "_")] = time.perf_counter() - start
        if set(measured) != set(metric.fields):
            raise ValueError(f"utility metric {metric.name!r} returned {sorted(measured)}, not the fields it "
                             f"declares: {sorted(metric.fields)}")
        values.update(measured)
    return values
