"""The map shapes the built-in methods share; each keeps its parameters as buffers."""

from __future__ import annotations

import torch
from torch import Tensor

from dsas_bench.steering.hooks import SteeringMap


class ShiftMap(SteeringMap):
    """T(h) = h + v (ActAdd, ITI)."""

    def __init__(self, v: Tensor):
        super().__init__()
        self.register_buffer("v", v.float())

    def forward(self, h: Tensor) -> Tensor:
        return h + self.v

    def displacement(self, h: Tensor) -> Tensor:
        return self.v.expand_as(h)


class SupportedAffineMap(SteeringMap):
    """T(h) = ω ⊙ h + β where lo < h < hi, identity elsewhere (Linear-AcT, Mean-AcT)."""

    def __init__(self, omega: Tensor, beta: Tensor, lo: Tensor, hi: Tensor):
        super().__init__()
        for name, value in {"omega": omega, "beta": beta, "lo": lo, "hi": hi}.items():
            self.register_buffer(name, value.float())

    def forward(self, h: Tensor) -> Tensor:
        return h + self.displacement(h)

    def displacement(self, h: Tensor) -> Tensor:
        inside = (h > self.lo) & (h < self.hi)
        return torch.where(inside, torch.addcmul(self.beta, self.omega - 1, h), 0.0)
