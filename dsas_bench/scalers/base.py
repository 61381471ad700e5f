"""What every scaler shares: fitting from options, opt-in recording of its scales, a saved state.

A scaler is an ``nn.Module`` implementing the hook manager's ``Scaler`` protocol: called with a
module name, the un-steered value h (batch, tokens, d) there and the ``TokenContext``, it
returns scales (batch, tokens, 1). It is built by ``fit`` from its ``defaults`` overridden by the
run's options. Recording is off by default and then costs one flag check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dsas_bench.core.activations import atomic_save, load_state
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import TokenContext
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.scalers import SCALERS

SCALER_FORMAT = "dsas_bench.scalers-state"


class ScalerBase(nn.Module, ABC):
    """Base of the scalers: subclasses set ``defaults`` and implement ``fit``, ``scales``, ``hidden_size``
    and ``config``; the registry sets ``name``, which also names the saved state's kind.

    ``options`` (what was asked for) and ``diagnostics`` (what fitting found) go into results.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # how plots name it; the registry name when empty
    defaults: ClassVar[dict[str, Any]] = {}
    option_types: ClassVar[dict[str, Any]] = {}  # types of the options whose type is not their default's
    state_version: ClassVar[int] = 2
    per_sequence: ClassVar[bool] = False  # True: one decision pools a whole sequence, so pads must be masked
    trains_method: ClassVar[bool] = False  # True: ``fit`` trains the method jointly (it is not fitted alone)

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.name = SCALERS.name_for(cls)  # a built-in's registry name, also when its module is imported directly

    def __init__(self, options: dict[str, Any] | None = None, model_name: str | None = None):
        super().__init__()
        self.options: dict[str, Any] = dict(options or {})
        self.diagnostics: dict[str, Any] = {}
        self.model_name = model_name
        self.records: dict[str, list[Tensor]] = {}
        self._recording = False

    @classmethod
    @abstractmethod
    def fit(cls, lm: LoadedModel, method: SteeringMethod | None, modules: Sequence[str], sets: FitSets,
            options: dict[str, Any]) -> ScalerBase:
        """The scaler fitted for ``method`` on ``modules`` from ``sets``; ``options`` has every key of ``defaults``."""

    @classmethod
    def check_values(cls, options: dict[str, Any]) -> None:
        """Raise a UsageError for option values that are wrong whatever the data (called before any work)."""

    @classmethod
    def check_method(cls, method: str) -> None:
        """Raise a UsageError when this scaler cannot wrap the registered steering method ``method``."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """The width d of the activations this scaler reads."""

    @abstractmethod
    def scales(self, module: str, h: Tensor, context: TokenContext) -> Tensor:
        """(batch, tokens, 1) scales for the un-steered value h at ``module``."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor arguments other than the tensors of ``state_dict`` and the common ones."""

    def forward(self, module: str, h: Tensor, context: TokenContext) -> Tensor:
        s = self.scales(module, h, context)
        if self._recording:
            self.records.setdefault(module, []).append(s.detach()[..., 0])
        return s

    # -- recording ---------------------------------------------------------------------------
    @contextmanager
    def recording(self) -> Iterator[dict[str, list[Tensor]]]:
        """Record inside the block: per module, one (batch, tokens) tensor of scales per forward pass."""
        self.records = {}
        self._recording = True
        try:
            yield self.records
        finally:
            self._recording = False

    def token_scales(self) -> dict[str, Tensor]:
        """The recorded passes joined along tokens, per module (a KV-cached generation: prompt, then each new token)."""
        return {module: torch.cat(parts, dim=1) for module, parts in self.records.items()}

    # -- state -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the scaler (small, versioned) atomically."""
        path = Path(path)
        atomic_save({"format": SCALER_FORMAT, "kind": self.name, "version": self.state_version,
                     "options": self.options, "diagnostics": self.diagnostics, "model": self.model_name,
                     "hidden_size": self.hidden_size, "config": self.config(),
                     "tensors": {key: value.detach().cpu() for key, value in self.state_dict().items()}}, path)
        return path


def load_scaler_state(path: str | Path, lm: LoadedModel | None = None) -> ScalerBase:
    """Load a saved scaler of any registered kind; with ``lm``, refuse one fitted on another model or hidden size."""
    return scaler_from_saved(load_state(path, SCALER_FORMAT, "scaler state"), path, lm)


def scaler_from_saved(saved: dict, path: str | Path, lm: LoadedModel | None = None) -> ScalerBase:
    """The scaler of a saved-scaler dict (format checked) read from ``path``, checked as ``load_scaler_state`` does."""
    from dsas_bench.scalers import SCALERS

    try:
        cls = SCALERS.get(saved["kind"])
    except UsageError:
        cls = None
    if cls is None or saved["version"] != cls.state_version:
        raise UsageError(f"{path} holds a {saved['kind']!r} scaler of version {saved['version']} that this "
                         f"dsas_bench cannot read: refit it")
    if lm is not None and (saved["hidden_size"], saved["model"]) != (lm.hidden_size, lm.name):
        raise UsageError(f"{path} was fitted on model {saved['model']!r} with hidden size {saved['hidden_size']}, "
                         f"not on {lm.name!r} with hidden size {lm.hidden_size}: refit the scaler for this model")
    scaler = cls(**saved["config"], **saved["tensors"], options=saved["options"], model_name=saved["model"])
    scaler.diagnostics = saved["diagnostics"]
    return scaler.to(lm.device) if lm is not None else scaler
