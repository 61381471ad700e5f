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
        self.register_buffer("slope", self.omega - 1, persistent=False)  # ω − 1, once rather than per call

    def forward(self, h: Tensor) -> Tensor:
        return h + self.displacement(h)

    def displacement(self, h: Tensor) -> Tensor:
        """(ω − 1) ⊙ h + β inside the support, 0 outside; equal to ``torch.where(lo < h < hi, …, 0)`` for finite h.

        The support mask is float 0/1: CPU kernels that write or read bool masks (comparisons, ``torch.where``)
        run element by element and cost several times more (benchmarks/hook_overhead.py).
        """
        inside = torch.gt(h, self.lo, out=torch.empty_like(h)).mul_(torch.lt(h, self.hi, out=torch.empty_like(h)))
        return torch.addcmul(self.beta, self.slope, h).mul_(inside)
