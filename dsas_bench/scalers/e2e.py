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

from dsas_bench.core.activations import partial_forward
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import HookManager, SteeringMap, TokenContext
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.lineas import LinEAS
from dsas_bench.scalers.dsas import CONTEXTS, GATES, LinearScaler, check_choice


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


class E2EDSAS(LinearScaler):
    """E2E-DSAS: u_ℓ, c_ℓ learned jointly with LinEAS's maps (LinEAS's options — steps, lr, … — are the method's)."""

    label = "E2E-DSAS"
    defaults = {"beta": 1.0, "gate": "sigmoid", "context": "token", "init_bias": None, "scaler_lr": None}
    option_types = {"init_bias": float | None, "scaler_lr": float | None}
    trains_method = True

    @classmethod
    def check_values(cls, options: dict[str, Any]) -> None:
        check_choice("gate", options["gate"], tuple(GATES))
        check_choice("context", options["context"], CONTEXTS)
        if options["beta"] < 0:
            raise UsageError(f"beta must be ≥ 0, not {options['beta']}")

    @classmethod
    def check_method(cls, method: str) -> None:
        from dsas_bench.methods import get_method

        if not (method and issubclass(get_method(method), LinEAS)):
            raise UsageError(f"E2E-DSAS trains the scaler jointly with LinEAS, not {method!r}: run it with "
                             f"--method lineas, or use --dsas on for other methods")

    @classmethod
    def fit(cls, lm: LoadedModel, method: SteeringMethod | None, modules: Sequence[str], sets: FitSets,
            options: dict[str, Any]) -> E2EDSAS:
        """Train ``method`` (LinEAS, its state replaced in place) and the scaler jointly; ``scaler_lr`` defaults
        to the method's learning rate."""
        gate, beta = options["gate"], options["beta"]
        if beta > 0 and not sets.control:
            raise UsageError("E2E-DSAS with beta > 0 needs control sentences (neutral text): give a control set")
        bias = (1.0 if gate == "relu" else 0.0) if options["init_bias"] is None else float(options["init_bias"])
        n = len(modules)
        recorded = {**options, "init_bias": bias, "lineas": dict(method.options)}
        scaler = cls(modules, torch.zeros(n, lm.hidden_size), torch.full((n,), bias), gate=gate,
                     context=options["context"], options=recorded, model_name=lm.name).to(lm.device)
        scaler_lr = options["scaler_lr"]
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
