"""ActAdd (Turner et al. 2023; METHODS.md §2): add the activation difference of contrast prompts.

v = mean(a⁺) − mean(a⁻) over last-token activations of the positive and negative prompts at
one module; T(h) = h + v there. The strength grid may reach beyond 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from dsas_bench.errors import UsageError
from dsas_bench.models import LoadedModel
from dsas_bench.steering.base import FitSets, SteeringMethod
from dsas_bench.steering.hooks import SteeringMap
from dsas_bench.steering.maps import ShiftMap
from dsas_bench.steering.registry import register_method


@register_method("actadd", "act-add")
class ActAdd(SteeringMethod):
    """One steering vector from contrast prompts, added at one module."""

    defaults = {
        "positive": ("Love",),
        "negative": ("Hate",),
        "layer": None,  # index into the selected modules; None: a quarter of the way down
    }
    default_modules = "layers"
    pooling = "last"
    strength_range = (*(i / 10 for i in range(1, 11)), 2.0, 3.0, 4.0, 5.0)  # AcT's ActAdd sweep (METHODS.md §2)

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        """Uses the contrast prompts in the options; the fit sets are not needed."""
        positive, negative = list(self.options["positive"]), list(self.options["negative"])
        if len(positive) != len(negative) or not positive:
            raise UsageError("actadd needs as many positive as negative contrast prompts (at least one pair)")
        layer = self.options["layer"]
        index = len(modules) // 4 if layer is None else layer
        if not -len(modules) <= index < len(modules):
            raise UsageError(f"actadd layer {layer} is out of range for the {len(modules)} selected modules")
        module = modules[index]
        self._bind(lm)
        plus, minus = (self.activations(lm, texts, [module], batch_size=batch_size, progress=False)[module]
                       for texts in (positive, negative))
        self.state = {module: {"v": plus.mean(0) - minus.mean(0)}}
        return self

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return ShiftMap(params["v"])
