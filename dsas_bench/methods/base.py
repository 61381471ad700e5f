"""The contract every steering method meets: fit on activations, expose maps, save a small state.

A method keeps its fitted parameters as ``state``: module name → {parameter name → tensor}, and what
fitting found (e.g. how many heads ITI kept) as ``diagnostics``, which result rows record.
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

from dsas_bench.core.activations import atomic_save, load_state, pooled_activations
from dsas_bench.core.data import FitSets
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import Pooling, Site, SteeringMap
from dsas_bench.core.models import LoadedModel
from dsas_bench.core.registry import resolve_options
from dsas_bench.methods import METHODS

STATE_FORMAT = "dsas_bench.steering-state"


class SteeringMethod(ABC):
    """A registered steering method. Subclasses set ``defaults`` and implement the abstract parts."""

    name: ClassVar[str] = ""
    state_version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {}
    option_types: ClassVar[dict[str, Any]] = {}  # types of the options whose type is not their default's
    default_modules: ClassVar[str] = "post-attn-norm"
    pooling: ClassVar[Pooling] = "mean"
    site: ClassVar[Site] = "output"
    # The paper's λ grid (``--strengths paper``; the start of the calibration's search): λ ∈ (0, 1]
    # for a transport such as AcT's, LinEAS' or Mean-AcT's (METHODS.md §2)
    strength_range: ClassVar[tuple[float, ...]] = tuple(i / 10 for i in range(1, 11))
    imported_only: ClassVar[bool] = False  # True: runs vectors given with --intervention, never fitted here

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.name = METHODS.name_for(cls)  # a built-in's registry name, also when its module is imported directly

    def __init__(self, **options: Any):
        self.options = resolve_options(f"method {self.name!r}", self.defaults, options, self.option_types)
        self.check_values()
        self.state: dict[str, dict[str, Tensor]] = {}
        self.diagnostics: dict[str, Any] = {}
        self.hidden_size: int | None = None
        self.model_name: str | None = None

    def check_values(self) -> None:  # noqa: B027  (an optional hook)
        """Raise a UsageError for option values that are wrong whatever the model (names and types are checked
        already), so bad options fail before any work."""

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
        state = {m: {k: v.detach().cpu() for k, v in p.items()} for m, p in self.state.items()}
        atomic_save({"format": STATE_FORMAT, "method": self.name, "version": self.state_version,
                     "options": self.options, "diagnostics": self.diagnostics, "hidden_size": self.hidden_size,
                     "model": self.model_name, "state": state}, path)
        return path

    @staticmethod
    def load(path: str | Path, lm: LoadedModel | None = None) -> SteeringMethod:
        """Load a saved state; with ``lm``, refuse one fitted on another model or hidden size."""
        return SteeringMethod.from_saved(load_state(path, STATE_FORMAT, "steering state"), path, lm)

    @staticmethod
    def from_saved(saved: dict, path: str | Path, lm: LoadedModel | None = None) -> SteeringMethod:
        """The method of a saved-state dict (format checked) read from ``path``, checked as ``load`` does."""
        from dsas_bench.methods import get_method

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
        method.diagnostics = saved.get("diagnostics", {})
        return method
