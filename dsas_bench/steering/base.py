"""The contract every steering method meets: fit on activations, expose maps, save a small state.

A method keeps its fitted parameters as ``state``: module name → {parameter name → tensor}.
``maps()`` turns that state into one ``SteeringMap`` per module for the hook manager; DSAS and
the strength λ are applied by the hook manager, never by the method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from dsas_bench.activations import atomic_save, pooled_activations
from dsas_bench.data.loaders import FitSets
from dsas_bench.errors import UsageError
from dsas_bench.models import LoadedModel
from dsas_bench.steering.hooks import Pooling, Site, SteeringMap

STATE_FORMAT = "dsas_bench.steering-state"


class SteeringMethod(ABC):
    """A registered steering method. Subclasses set ``defaults`` and implement the abstract parts."""

    name: ClassVar[str] = ""
    state_version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {}
    default_modules: ClassVar[str] = "post-attn-norm"
    pooling: ClassVar[Pooling] = "mean"
    site: ClassVar[Site] = "output"
    # The paper's λ grid (``--strengths paper``; the start of the calibration's search): λ ∈ (0, 1]
    # for a transport such as AcT's, LinEAS' or Mean-AcT's (METHODS.md §2)
    strength_range: ClassVar[tuple[float, ...]] = tuple(i / 10 for i in range(1, 11))

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise UsageError(f"method {self.name!r} has no option {', '.join(unknown)}; "
                             f"its options are: {', '.join(sorted(self.defaults)) or 'none'}")
        self.options: dict[str, Any] = {**self.defaults, **options}
        self.state: dict[str, dict[str, Tensor]] = {}
        self.hidden_size: int | None = None
        self.model_name: str | None = None

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        """Fit every module at once from pooled source and target activations."""
        self._bind(lm)
        source, target = (self.activations(lm, texts, modules, batch_size=batch_size)
                          for texts in (data.source, data.target))
        self.state = {name: self.fit_module(source[name], target[name]) for name in modules}
        return self

    def activations(self, lm: LoadedModel, texts: Sequence[str], modules: Sequence[str], **kwargs: Any) -> dict:
        """Pooled activations, by default with this method's pooling and site."""
        return pooled_activations(lm, texts, modules, **{"pooling": self.pooling, "site": self.site, **kwargs})

    def fit_module(self, source: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Parameters of one module's map from (n, d) source and target activations."""
        raise NotImplementedError(f"{type(self).__name__} fits in fit(), not per module")

    def _bind(self, lm: LoadedModel) -> None:
        self.hidden_size, self.model_name = lm.hidden_size, lm.name

    # -- applying ---------------------------------------------------------------------------
    @abstractmethod
    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        """The map T for one module's fitted parameters."""

    def maps(self, device: torch.device | str | None = None) -> dict[str, SteeringMap]:
        """One map per fitted module, on ``device``."""
        if not self.state:
            raise UsageError(f"method {self.name!r} is not fitted yet: call fit() or load a saved state")
        return {name: self.make_map(params).to(device) for name, params in self.state.items()}

    # -- state ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted state (small, versioned) atomically."""
        path = Path(path)
        atomic_save({"format": STATE_FORMAT, "method": self.name, "version": self.state_version,
                     "options": self.options, "hidden_size": self.hidden_size, "model": self.model_name,
                     "state": {m: {k: v.detach().cpu() for k, v in p.items()} for m, p in self.state.items()}},
                    path)
        return path

    @staticmethod
    def load(path: str | Path, lm: LoadedModel | None = None) -> SteeringMethod:
        """Load a saved state; with ``lm``, refuse one fitted on another model or hidden size."""
        from dsas_bench.steering.registry import get_method

        saved = torch.load(path)
        if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
            raise UsageError(f"{path} is not a dsas_bench steering state")
        cls = get_method(saved["method"])
        if saved["version"] != cls.state_version:
            raise UsageError(f"{path} holds {saved['method']} state version {saved['version']}, this dsas_bench "
                             f"reads version {cls.state_version}: refit the method")
        if lm is not None and saved["hidden_size"] != lm.hidden_size:
            raise UsageError(f"{path} was fitted on hidden size {saved['hidden_size']} (model {saved['model']!r}) "
                             f"but model {lm.name!r} has hidden size {lm.hidden_size}: refit for this model")
        if lm is not None and saved["model"] != lm.name:
            raise UsageError(f"{path} was fitted on model {saved['model']!r}, not {lm.name!r}: refit for this model")
        method = cls(**saved["options"])
        method.state, method.hidden_size, method.model_name = saved["state"], saved["hidden_size"], saved["model"]
        return method
