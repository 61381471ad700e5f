"""Inference-Time Intervention (Li et al. 2023; METHODS.md §2), in two variants.

``heads`` (default): per attention head, the input of the output projection split into heads;
a logistic probe per head on last-token activations (source vs target), heads ranked by
held-out probe accuracy, the top K kept. Each kept head h moves by α·σ_h·θ_h, θ_h the unit
mass-mean shift (mean target − mean source) and σ_h the std of activations projected on θ_h.
The projection is linear, so the per-head shifts become one vector added to the projection's
output: T(h) = h + o_proj(shift) − o_proj(0).

``c`` (Apple's ITI-c): per hooked module, θ = unit normal of a logistic classifier on pooled
activations, oriented towards the target; T(h) = h + α·σ·θ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import Tensor

from dsas_bench.errors import UsageError
from dsas_bench.models import LoadedModel
from dsas_bench.steering.base import FitSets, SteeringMethod
from dsas_bench.steering.hooks import SteeringMap
from dsas_bench.steering.maps import ShiftMap
from dsas_bench.steering.registry import register_method


def projected_std(acts: Tensor, direction: Tensor) -> Tensor:
    """Standard deviation of the activations projected on a unit direction."""
    return (acts @ direction).std()


def probe_accuracy(features: np.ndarray, labels: np.ndarray, seed: int, val_fraction: float) -> float:
    """Held-out accuracy of a logistic probe."""
    x_train, x_val, y_train, y_val = train_test_split(features, labels, test_size=val_fraction,
                                                      random_state=seed, stratify=labels)
    return float(LogisticRegression(max_iter=1000).fit(x_train, y_train).score(x_val, y_val))


@register_method("iti")
class ITI(SteeringMethod):
    """ITI with per-head probes (``variant="heads"``) or one classifier normal per layer (``"c"``)."""

    defaults = {"variant": "heads", "top_k": 48, "alpha": 15.0, "val_fraction": 0.3, "seed": 0}

    @property
    def default_modules(self) -> str:  # type: ignore[override]
        return "o-proj" if self.options["variant"] == "heads" else "post-attn-norm"

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        variant = self.options["variant"]
        if variant not in {"heads", "c"}:
            raise UsageError(f"unknown ITI variant {variant!r}: use heads or c")
        self._bind(lm)
        fit = self._fit_heads if variant == "heads" else self._fit_classifier_normals
        self.state = fit(lm, modules, data, batch_size)
        return self

    def _labelled(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int, **kwargs):
        texts = [*data.source, *data.target]
        acts = self.activations(lm, texts, modules, batch_size=batch_size, **kwargs)
        labels = np.r_[np.zeros(len(data.source)), np.ones(len(data.target))]
        return acts, labels

    def _fit_heads(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int):
        config = lm.model.config
        n_heads = config.num_attention_heads
        acts, labels = self._labelled(lm, modules, data, batch_size, pooling="last", site="input")
        is_target = torch.from_numpy(labels).bool()
        candidates = []  # (held-out accuracy, module, head)
        for name in modules:
            heads = acts[name].reshape(len(labels), n_heads, -1)
            for head in range(n_heads):
                accuracy = probe_accuracy(heads[:, head].numpy(), labels, self.options["seed"],
                                          self.options["val_fraction"])
                candidates.append((-accuracy, modules.index(name), head))
        top_k = min(int(self.options["top_k"]), len(candidates))
        kept = sorted(candidates)[:top_k]
        shifts = {name: torch.zeros_like(acts[name][0]).reshape(n_heads, -1) for name in modules}
        for _, module_index, head in kept:
            name = modules[module_index]
            head_acts = acts[name].reshape(len(labels), n_heads, -1)[:, head]
            direction = head_acts[is_target].mean(0) - head_acts[~is_target].mean(0)
            direction = direction / direction.norm()
            shifts[name][head] = self.options["alpha"] * projected_std(head_acts, direction) * direction
        layers = dict(lm.model.named_modules())
        state = {}
        with torch.no_grad():
            for name, shift in shifts.items():
                if shift.any():
                    projection = layers[name]
                    flat = shift.reshape(1, -1).to(lm.device, next(projection.parameters()).dtype)
                    v = projection(flat) - projection(torch.zeros_like(flat))
                    state[name] = {"v": v[0].float().cpu(),
                                   "heads": torch.tensor([h for _, i, h in kept if modules[i] == name])}
        return state

    def _fit_classifier_normals(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int):
        acts, labels = self._labelled(lm, modules, data, batch_size)
        state = {}
        for name in modules:
            classifier = LogisticRegression(max_iter=1000).fit(acts[name].numpy(), labels)
            normal = torch.from_numpy(classifier.coef_[0]).float()
            normal = normal / normal.norm()
            state[name] = {"v": self.options["alpha"] * projected_std(acts[name], normal) * normal}
        return state

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return ShiftMap(params["v"])
