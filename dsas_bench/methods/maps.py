"""The map shapes the built-in methods share; each keeps its parameters as buffers."""

from __future__ import annotations

import torch
from torch import Tensor

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import SteeringMap, TokenContext

# Where a shift applies: every position (METHODS.md §2), the first positions of each sequence, row i of an
# (n, d) v at position i (ActAdd, Turner et al.), or the last prompt token and every token after it (ITI, Li et al.).
SHIFT_POSITIONS = ("all", "prompt-start", "from-last-prompt-token")


class ShiftMap(SteeringMap):
    """T(h) = h + v (ActAdd, ITI), at the token positions ``positions`` names (``SHIFT_POSITIONS``).

    With ``prompt-start``, v is (n, d): row i is added at position i of each sequence, positions ≥ n are
    left alone. With ``from-last-prompt-token``, a pass that only scores text (perplexity, lm-eval)
    steers its last token only, since the whole text is its prompt.
    """

    def __init__(self, v: Tensor, positions: str = "all"):
        super().__init__()
        if positions not in SHIFT_POSITIONS:
            raise UsageError(f"unknown shift positions {positions!r}: use one of {', '.join(SHIFT_POSITIONS)}")
        if v.dim() != 1 + (positions == "prompt-start"):
            raise UsageError(f"a shift at positions {positions!r} needs a v of {1 + (positions == 'prompt-start')} "
                             f"dimensions, not of shape {tuple(v.shape)}")
        self.positions = positions
        self.register_buffer("v", v.float())

    def extra_repr(self) -> str:
        return f"positions={self.positions}"

    def forward(self, h: Tensor) -> Tensor:
        return h + self.displacement(h)

    def displacement(self, h: Tensor) -> Tensor:
        """v at every token; a ``prompt-start`` shift depends on the positions, which only ``step`` knows."""
        if self.v.dim() != 1:
            raise UsageError("a prompt-start shift depends on token positions: apply it through the hook manager")
        return self.v.expand_as(h)

    def step(self, h: Tensor, context: TokenContext) -> Tensor:
        if self.positions == "all":
            return self.displacement(h)
        index = context.positions
        if self.positions == "prompt-start":
            inside = (index >= 0) & (index < len(self.v))
            return self.v[index.clamp(0, len(self.v) - 1)] * inside.unsqueeze(-1)
        inside = index >= context.prompt_length.unsqueeze(-1) - 1
        return self.v * inside.unsqueeze(-1)


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
