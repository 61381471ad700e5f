"""DSAS (METHODS.md §3): how much to steer, per token and module, from a linear probe on the un-steered value.

For each steered module a probe — centring and PCA to r components (whitened with ``whiten=True``),
then logistic regression — separates mean-pooled source activations (label 1) from control ones (label 0). Its
cross-validated accuracy decides whether the module is trusted: below the threshold the module is
gated off (s ≡ 0, or s ≡ 1 with policy ``full``). The probe is affine before its sigmoid, so it
folds into one vector and a bias: s(h) = σ(uᵀh + c), a dot product and a sigmoid per token.

``LinearScaler``, the formula, also serves E2E-DSAS (learned u, c; sigmoid or ReLU gate) and the
layer-selection gate. It reads the token's
value, or (``context="running-mean"``) the mean of the un-steered values of the sequence's real
tokens so far; uᵀ(mean h) = mean(uᵀh), so only a running sum of uᵀh per sequence is carried
across KV-cached passes.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import TokenContext
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.scalers.base import ScalerBase

GATES = {"sigmoid": torch.sigmoid, "relu": torch.relu}
CONTEXTS = ("token", "running-mean")
POLICIES = ("off", "full")  # what a module gated off by the accuracy threshold does: s ≡ 0 or s ≡ 1


def check_choice(kind: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else a UsageError listing them."""
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}: use one of {', '.join(allowed)}")
    return value


def make_probe(n_components: int | None, seed: int, whiten: bool = False) -> Pipeline:
    """Centring and PCA to ``n_components`` components, whitened or not (or, with None, standardisation), then
    logistic regression. With its L2 penalty, whitening changes the probe; METHODS.md §3 does not whiten."""
    reduce = PCA(n_components, whiten=whiten, random_state=seed) if n_components else StandardScaler()
    return make_pipeline(reduce, LogisticRegression(max_iter=1000))


def fold(probe: Pipeline, dim: int) -> tuple[Tensor, Tensor]:
    """u (dim,) and c with uᵀx + c equal to the fitted probe's decision function, which is affine in x."""
    scores = probe.decision_function(np.vstack([np.zeros(dim), np.eye(dim)]))
    return torch.from_numpy(scores[1:] - scores[0]).float(), torch.tensor(scores[0]).float()


def fit_texts(sets: FitSets) -> tuple[list[str], np.ndarray]:
    """Source then control sentences, and their labels 1 / 0."""
    if not sets.source or not sets.control:
        raise UsageError("a scaler is fitted on source and control sentences: give both (control = neutral text)")
    return [*sets.source, *sets.control], np.r_[np.ones(len(sets.source)), np.zeros(len(sets.control))]


class LinearScaler(ScalerBase, ABC):
    """s_ℓ = g(u_ℓᵀx + c_ℓ) per token, g a sigmoid or ReLU, x the token's un-steered value or the running mean.

    ``modes`` per module: ``on`` (the formula), ``off`` (s ≡ 0) or ``full`` (s ≡ 1). Subclasses say how
    u, c and the modes are fitted.
    """

    def __init__(self, module_names: Sequence[str], u: Tensor, c: Tensor, modes: Sequence[str] | None = None,
                 gate: str = "sigmoid", context: str = "token", options: dict[str, Any] | None = None,
                 model_name: str | None = None):
        super().__init__(options, model_name)
        self.module_names = list(module_names)
        self.modes = list(modes) if modes is not None else ["on"] * len(self.module_names)
        for mode in self.modes:
            check_choice("scaler mode", mode, ("on", *POLICIES))
        if u.dim() != 2 or not len(self.module_names) == len(u) == len(c) == len(self.modes):
            raise UsageError(f"a LinearScaler needs one u row, c and mode per module; got {len(self.module_names)} "
                             f"modules, u {tuple(u.shape)}, c {tuple(c.shape)}, {len(self.modes)} modes")
        self.gate, self.context = check_choice("gate", gate, tuple(GATES)), check_choice("context", context, CONTEXTS)
        self._gate = GATES[gate]
        self._index = {name: i for i, name in enumerate(self.module_names)}
        self.u = nn.Parameter(u.float(), requires_grad=False)
        self.c = nn.Parameter(c.float(), requires_grad=False)
        self._prefix: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def hidden_size(self) -> int:
        return self.u.shape[1]

    def config(self) -> dict[str, Any]:
        return {"module_names": self.module_names, "modes": self.modes, "gate": self.gate, "context": self.context}

    def scales(self, module: str, h: Tensor, context: TokenContext) -> Tensor:
        i = self._index.get(module)
        if i is None:
            raise UsageError(f"the scaler was fitted for {len(self.module_names)} modules, not {module!r}: "
                             f"fit it on the modules the method steers")
        mode = self.modes[i]
        if mode != "on":
            return h.new_full((*h.shape[:-1], 1), float(mode == "full"))
        z = h @ self.u[i]
        if self.context == "running-mean":
            z = self._running_mean(module, z, context)
        return self._gate(z + self.c[i]).unsqueeze(-1)

    def _running_mean(self, module: str, z: Tensor, context: TokenContext) -> Tensor:
        """(batch, tokens): mean of z over the real tokens of each sequence up to each position."""
        weights = torch.ones_like(z) if context.mask is None else context.mask.to(z.dtype)
        sums, counts = torch.cumsum(z * weights, dim=1), torch.cumsum(weights, dim=1)
        if not context.new_sequence and module in self._prefix:
            before_sum, before_count = self._prefix[module]
            sums, counts = sums + before_sum, counts + before_count
        self._prefix[module] = (sums[:, -1:].detach(), counts[:, -1:])
        return sums / counts.clamp_min(1.0)


class DSAS(LinearScaler):
    """The DSAS scaler: per module a folded PCA + logistic probe of source (toxic) vs control (neutral).

    Modules whose ``cv``-fold accuracy is below ``threshold`` follow ``policy`` (off: s ≡ 0, full: s ≡ 1).
    ``whiten=True`` whitens the PCA components before the regression (not in METHODS.md §3).
    """

    label = "DSAS"
    option_types = {"threshold": float}
    defaults = {"n_components": 5, "threshold": 0.75, "policy": "off", "context": "token", "cv": 5, "seed": 0,
                "whiten": False, "batch_size": 16}

    @classmethod
    def check_values(cls, options: dict[str, Any]) -> None:
        check_choice("weak-layer policy", options["policy"], POLICIES)
        check_choice("context", options["context"], CONTEXTS)
        if options["n_components"] < 1:
            raise UsageError(f"n_components must be at least 1, got {options['n_components']}")
        if options["cv"] < 2:
            raise UsageError(f"cv must be at least 2 folds, got {options['cv']}")

    @classmethod
    def fit(cls, lm: LoadedModel, method: SteeringMethod | None, modules: Sequence[str], sets: FitSets,
            options: dict[str, Any]) -> DSAS:
        texts, labels = fit_texts(sets)
        folds = int(min(options["cv"], len(sets.source), len(sets.control)))
        if folds < 2:
            raise UsageError("cross-validation needs at least 2 folds and 2 sentences per set: raise cv or add "
                             "sentences")
        n_components, seed = options["n_components"], options["seed"]
        largest = min(lm.hidden_size, len(labels) - len(labels) // folds - 1)
        if not 1 <= n_components <= largest:
            raise UsageError(f"n_components must be between 1 and {largest} for {len(labels)} sentences in {folds} "
                             f"folds: lower it or add sentences")
        acts = {name: value.double().numpy() for name, value in
                pooled_activations(lm, texts, modules, batch_size=options["batch_size"], progress=False).items()}
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        accuracy, us, cs, modes = {}, [], [], []
        for name in modules:
            probe = make_probe(n_components, seed, options["whiten"])
            accuracy[name] = float(cross_val_score(probe, acts[name], labels, cv=splitter).mean())
            u, c = fold(probe.fit(acts[name], labels), lm.hidden_size)
            us.append(u)
            cs.append(c)
            modes.append("on" if accuracy[name] >= options["threshold"] else options["policy"])
        scaler = cls(modules, torch.stack(us), torch.stack(cs), cls.kept_modes(modes), "sigmoid",
                     options["context"], {**options, "cv": folds}, lm.name)
        gated = [name for name, mode in zip(modules, modes, strict=True) if mode != "on"]
        scaler.diagnostics = {"accuracy": accuracy, "gated": gated}
        return scaler

    @staticmethod
    def kept_modes(modes: list[str]) -> list[str]:
        """The modes the scaler applies, given the probes' (``on`` for a module that passed the threshold)."""
        return modes
