"""E2E-DSAS (METHODS.md §3.4): the scaler trained jointly with LinEAS.

A ``LinearScaler`` with learned u_ℓ, c_ℓ (start u = 0, c = 0; a ReLU gate starts at c = 1, since
ReLU has no gradient at 0) scales every token's step during LinEAS training. The loss is the
LinEAS loss on the source sentences plus β · mean (h' − h)² over the real tokens of control
sentences, their dimensions and the modules, which keeps neutral text unchanged. Like the LinEAS
loss it averages over dimensions (‖h' − h‖² / d), so β = 1 weighs the two terms alike; summing
over dimensions instead makes the penalty ~d times larger and, at β = 1, switches steering off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dsas_bench.activations import partial_forward
from dsas_bench.errors import UsageError
from dsas_bench.models import LoadedModel
from dsas_bench.scaler.dsas import CONTEXTS, GATES, LinearScaler, check_choice
from dsas_bench.steering.base import FitSets, SteeringMethod
from dsas_bench.steering.hooks import HookManager, SteeringMap, TokenContext
from dsas_bench.steering.methods.lineas import LinEAS


class StepSize:
    """A scaler wrapper for training: passes the scales on and keeps, per call, the mean (h' − h)² over real tokens
    and dimensions."""

    def __init__(self, scaler: LinearScaler, maps: dict[str, SteeringMap]):
        self.scaler, self.maps = scaler, maps
        self.squares: list[Tensor] = []

    def __call__(self, module: str, h: Tensor, context: TokenContext) -> Tensor:
        s = self.scaler(module, h, context)
        squares = (s * self.maps[module].displacement(h)).pow(2).mean(-1)
        weights = torch.ones_like(squares) if context.mask is None else context.mask.to(squares.dtype)
        self.squares.append((squares * weights).sum() / weights.sum())
        return s


class ControlPenalty:
    """β · mean (h' − h)² on a fresh sample of control sentences at each call (an extra loss for LinEAS)."""

    def __init__(self, lm: LoadedModel, scaler: LinearScaler, control: Sequence[str], beta: float,
                 sample_size: int, max_length: int, seed: int):
        self.lm, self.scaler, self.control, self.beta = lm, scaler, control, beta
        self.sample_size, self.max_length = min(sample_size, len(control)), max_length
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, maps: dict[str, SteeringMap]) -> Tensor:
        rows = torch.randperm(len(self.control), generator=self.generator)[:self.sample_size].tolist()
        probe = StepSize(self.scaler, maps)
        partial_forward(self.lm, HookManager(self.lm.model).steer(maps, 1.0, probe), list(maps),
                        [self.control[i] for i in rows], self.max_length)
        return self.beta * torch.stack(probe.squares).mean()


def check_e2e_options(*, beta: float, gate: str, context: str, **_: Any) -> None:
    """The checks of ``train_e2e``'s options that need no data."""
    check_choice("gate", gate, tuple(GATES))
    check_choice("context", context, CONTEXTS)
    if beta < 0:
        raise UsageError(f"beta must be ≥ 0, not {beta}")


def train_e2e(lm: LoadedModel, method: SteeringMethod, modules: Sequence[str], sets: FitSets, *, beta: float = 1.0,
              gate: str = "sigmoid", context: str = "token", init_bias: float | None = None,
              scaler_lr: float | None = None) -> LinearScaler:
    """Train ``method`` (LinEAS, its state replaced in place) and a scaler jointly; return the scaler.

    ``scaler_lr`` defaults to the method's learning rate; LinEAS options (steps, lr, ...) come from the method.
    """
    if not isinstance(method, LinEAS):
        raise UsageError(f"E2E-DSAS trains the scaler jointly with LinEAS, not {method.name!r}: "
                         f"use the lineas method with --dsas e2e, or --dsas on for other methods")
    check_e2e_options(beta=beta, gate=gate, context=context)
    if beta > 0 and not sets.control:
        raise UsageError("E2E-DSAS with beta > 0 needs control sentences (neutral text): give a control set")
    bias = (1.0 if gate == "relu" else 0.0) if init_bias is None else float(init_bias)
    n = len(modules)
    options = {"mode": "e2e", "beta": beta, "gate": gate, "context": context, "init_bias": bias,
               "scaler_lr": scaler_lr, "lineas": dict(method.options)}
    scaler = LinearScaler(modules, torch.zeros(n, lm.hidden_size), torch.full((n,), bias), gate=gate,
                          context=context, options=options, model_name=lm.name).to(lm.device)
    group = {"params": [scaler.u, scaler.c], **({} if scaler_lr is None else {"lr": scaler_lr})}
    penalty = None
    if beta > 0:
        penalty = ControlPenalty(lm, scaler, sets.control, beta, int(method.options["sample_size"]),
                                 int(method.options["max_length"]), int(method.options["seed"]) + 1)
    scaler.requires_grad_(True)
    try:
        losses = method.train(lm, modules, sets, scaler=scaler, extra_groups=[group], extra_loss=penalty)
    finally:
        scaler.requires_grad_(False)
    scaler.diagnostics = {"final_loss": losses[-1] if losses else None}
    return scaler
