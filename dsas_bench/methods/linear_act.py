"""Linear-AcT and Mean-AcT (AcT, Rodriguez et al. 2025; METHODS.md §2).

Per output dimension j, an affine transport map T(h)_j = ω_j h_j + β_j fitted on sorted source
and target values, applied only where h_j lies in the support (by default strictly inside the
source range; a mask, not a clip). Incremental estimation (the default) fits module by module in
forward order with the maps of earlier modules active.

Mean-AcT follows ml-act's ``mean_ot`` by default: an unbounded support, and channels whose source or
target standard deviation is at most ``std_eps`` (1e-4) left untouched; ``support="source-range"``
restores Linear-AcT's mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import SteeringMap
from dsas_bench.core.models import LoadedModel
from dsas_bench.core.progress import bar
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.maps import SupportedAffineMap

JITTER = 1e-8


def balance(source: Tensor, target: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """Sub-sample the larger set (seeded) so both have the same number of rows."""
    n = min(len(source), len(target))
    generator = torch.Generator().manual_seed(seed)

    def take(x: Tensor) -> Tensor:
        return x if len(x) == n else x[torch.randperm(len(x), generator=generator)[:n].sort().values]

    return take(source), take(target)


def sorted_linear_fit(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per column, least squares b_(i) ≈ ω a_(i) + β on sorted values, closed form in float64."""
    a = source.double().sort(dim=0).values
    b = target.double().sort(dim=0).values
    a_centred, b_centred = a - a.mean(0), b - b.mean(0)
    omega = (a_centred * b_centred).sum(0) / ((a_centred**2).sum(0) + JITTER)
    beta = b.mean(0) - omega * a.mean(0)
    return omega, beta


class LinearAcT(SteeringMethod):
    """Linear-AcT: per-dimension sorted least-squares transport from source to target."""

    defaults = {
        "estimation": "incremental",  # or "at-once"
        "support": "source-range",  # or "quantiles" (with `quantiles`) or "unbounded"
        "quantiles": (0.0, 1.0),
        "seed": 0,
    }

    def check_values(self) -> None:
        if self.options["estimation"] not in ("incremental", "at-once"):
            raise UsageError(f"unknown estimation {self.options['estimation']!r} for {self.name}: "
                             f"use incremental or at-once")
        if self.options["support"] not in ("source-range", "quantiles", "unbounded"):
            raise UsageError(f"unknown support {self.options['support']!r} for {self.name}: "
                             f"use source-range, quantiles or unbounded")

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        if self.options["estimation"] == "at-once":
            return super().fit(lm, modules, data, batch_size)
        self._bind(lm)
        self.state = {}
        texts = [*data.source, *data.target]
        for name in bar(modules, f"fit {self.name} (incremental)"):
            earlier = self.maps(lm.device) if self.state else None
            acts = self.activations(lm, texts, [name], steering=earlier, batch_size=batch_size, progress=False)[name]
            self.state[name] = self.fit_module(acts[: len(data.source)], acts[len(data.source):])
        return self

    def fit_module(self, source: Tensor, target: Tensor) -> dict[str, Tensor]:
        source, target = balance(source, target, self.options["seed"])
        omega, beta = self.transport(source, target)
        lo, hi = self.support(source)
        return {"omega": omega.float(), "beta": beta.float(), "lo": lo.float(), "hi": hi.float()}

    def transport(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """ω and β of the map, each of shape (d,)."""
        return sorted_linear_fit(source, target)

    def support(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Bounds (lo, hi) of the open interval where the map applies."""
        kind = self.options["support"]
        if kind == "source-range":
            return source.min(0).values, source.max(0).values
        if kind == "quantiles":
            q = torch.tensor(self.options["quantiles"], dtype=source.dtype)
            bounds = torch.quantile(source, q, dim=0)
            return bounds[0], bounds[1]
        inf = torch.full((source.shape[1],), float("inf"))  # "unbounded", the one kind left by check_values
        return -inf, inf

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return SupportedAffineMap(**params)


class MeanAcT(LinearAcT):
    """Mean-AcT: T(h) = h − μ_source + μ_target, on every value (ml-act) or on a support; near-constant
    channels (std ≤ ``std_eps`` in either set) are left untouched."""

    state_version = 2  # version 1 used Linear-AcT's support and moved near-constant channels too
    defaults = {**LinearAcT.defaults, "support": "unbounded", "std_eps": 1e-4}

    def transport(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        source, target = source.double(), target.double()
        if min(len(source), len(target)) < 2:
            raise UsageError(f"{self.name} skips channels whose spread is at most std_eps, which needs at least 2 "
                             f"source and 2 target sentences: add sentences")
        varying = (source.std(0) > self.options["std_eps"]) & (target.std(0) > self.options["std_eps"])
        shift = (target.mean(0) - source.mean(0)) * varying
        return torch.ones_like(shift), shift
