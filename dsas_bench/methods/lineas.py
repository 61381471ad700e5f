"""LinEAS (Rodriguez et al. 2025; METHODS.md §2): per-dimension affine maps learned end to end.

Every hooked module gets T(h) = ω ⊙ h + b, the identity at the start. All maps are trained jointly
through the frozen model: source sentences run with every map active, and at each module their
mean-pooled steered activations are matched to the pooled activations of the target sentences in
the un-steered model by the per-dimension sorted (1-D Wasserstein-2) loss, averaged over modules.
SGD with cosine decay by default; an optional sparse group lasso acts through a proximal step
after each update (soft-threshold by τγλ₁ on ω − 1 and b, then group shrinkage by τγλ_G√d).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dsas_bench.core.activations import MAX_LENGTH, partial_forward, pooled_activations
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import HookManager, Scaler, SteeringMap
from dsas_bench.core.models import LoadedModel
from dsas_bench.core.progress import bar
from dsas_bench.methods.base import FitSets, SteeringMethod

ExtraLoss = Callable[[dict[str, SteeringMap]], Tensor]


class AffineMap(SteeringMap):
    """T(h) = ω ⊙ h + b."""

    def __init__(self, omega: Tensor, bias: Tensor):
        super().__init__()
        self.register_buffer("omega", omega.float())
        self.register_buffer("bias", bias.float())

    def forward(self, h: Tensor) -> Tensor:
        return torch.addcmul(self.bias, self.omega, h)

    def displacement(self, h: Tensor) -> Tensor:
        return torch.addcmul(self.bias, self.omega - 1, h)


def sorted_w2(source: Tensor, target: Tensor) -> Tensor:
    """Mean over rows and dimensions of (sort(source)[:, j] − sort(target)[:, j])²; equal row counts."""
    return (source.sort(dim=0).values - target.sort(dim=0).values).pow(2).mean()


def shrink(delta: Tensor, l1: float, group: float) -> Tensor:
    """Proximal map of l1·‖δ‖₁ + group·‖δ‖₂: soft-threshold each entry, then shrink the whole group."""
    delta = torch.sign(delta) * (delta.abs() - l1).clamp_min(0)
    return delta * (1 - group / delta.norm().clamp_min(1e-12)).clamp_min(0)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Model parameters without gradients inside the block; their flags are restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class LinEAS(SteeringMethod):
    """Affine maps on every hooked module, trained jointly with a distributional (sorted W2) loss."""

    defaults = {
        "steps": 1000,
        "lr": 0.1,
        "optimizer": "sgd",  # or "adam"
        "schedule": "cosine",  # or "constant"
        "sample_size": 32,  # sentences drawn from source and from target at each step
        "max_length": MAX_LENGTH,
        "gamma": 0.0,  # sparse group lasso weight γ; 0 (the papers' toxicity setting) turns it off
        "l1": 1.0,  # λ₁
        "group": 1.0,  # λ_G
        "seed": 0,
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        for option, allowed in (("optimizer", ("sgd", "adam")), ("schedule", ("cosine", "constant"))):
            if self.options[option] not in allowed:
                raise UsageError(f"unknown {option} {self.options[option]!r} for {self.name}: "
                                 f"use {' or '.join(allowed)}")
        self.losses: list[float] = []

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        self.train(lm, modules, data, batch_size=batch_size)
        return self

    def train(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, *, scaler: Scaler | None = None,
              extra_groups: Sequence[dict[str, Any]] = (), extra_loss: ExtraLoss | None = None,
              batch_size: int = 16) -> list[float]:
        """Train the maps from the identity; return the loss at each step (also kept as ``self.losses``).

        ``scaler`` scales the steps during training, ``extra_groups`` are optimizer parameter groups
        trained alongside the maps and ``extra_loss(maps)`` is added to each step's loss (E2E-DSAS).
        """
        if next(lm.model.parameters()).dtype != torch.float32:
            raise UsageError("LinEAS trains in float32: load the model with dtype float32 (--dtype float32)")
        if not data.source or not data.target:
            raise UsageError("LinEAS needs source and target sentences to train on")
        options = self.options
        self._bind(lm)
        max_length = int(options["max_length"])
        target = pooled_activations(lm, data.target, modules, batch_size=batch_size, max_length=max_length,
                                    progress=False)
        params = {name: (torch.ones(lm.hidden_size, device=lm.device, requires_grad=True),
                         torch.zeros(lm.hidden_size, device=lm.device, requires_grad=True)) for name in modules}
        maps: dict[str, SteeringMap] = {name: AffineMap(*pair) for name, pair in params.items()}
        optimizer = self._optimizer([{"params": [p for pair in params.values() for p in pair]}, *extra_groups])
        steps = int(options["steps"])
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
                    if options["schedule"] == "cosine" else torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0))
        n = min(int(options["sample_size"]), len(data.source), len(data.target))
        generator = torch.Generator().manual_seed(int(options["seed"]))
        self.losses = []
        with frozen(lm.model), torch.enable_grad():
            for _ in bar(range(steps), f"train {self.name}"):
                source_rows = torch.randperm(len(data.source), generator=generator)[:n].tolist()
                target_rows = torch.randperm(len(data.target), generator=generator)[:n]
                manager = HookManager(lm.model).steer(maps, 1.0, scaler)
                capture = manager.capture(modules, keep_grad=True)
                partial_forward(lm, manager, modules, [data.source[i] for i in source_rows], max_length)
                pooled = capture.stacked()
                loss = torch.stack([sorted_w2(pooled[name], target[name][target_rows].to(lm.device))
                                    for name in modules]).mean()
                if extra_loss is not None:
                    loss = loss + extra_loss(maps)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if options["gamma"]:
                    self._proximal_step(params.values(), optimizer.param_groups[0]["lr"])
                schedule.step()
                self.losses.append(loss.item())
        self.state = {name: {"omega": omega.detach().cpu(), "bias": bias.detach().cpu()}
                      for name, (omega, bias) in params.items()}
        return self.losses

    def _optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        optimizer = torch.optim.SGD if self.options["optimizer"] == "sgd" else torch.optim.Adam
        return optimizer(groups, lr=float(self.options["lr"]))

    @torch.no_grad()
    def _proximal_step(self, params: Iterable[tuple[Tensor, Tensor]], lr: float) -> None:
        weight = lr * float(self.options["gamma"])
        l1, group = weight * float(self.options["l1"]), weight * float(self.options["group"])
        for omega, bias in params:
            scale = math.sqrt(omega.numel())
            omega.copy_(1 + shrink(omega - 1, l1, group * scale))
            bias.copy_(shrink(bias, l1, group * scale))

    def support(self) -> float:
        """Fraction of the entries of ω − 1 and b, over all modules, that are not exactly zero."""
        entries = torch.cat([torch.cat([p["omega"] - 1, p["bias"]]) for p in self.state.values()])
        return float((entries != 0).float().mean())

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return AffineMap(params["omega"], params["bias"])
