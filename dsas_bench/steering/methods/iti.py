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
from torch import Tensor, nn

from dsas_bench.errors import UsageError
from dsas_bench.models import LoadedModel
from dsas_bench.steering.base import FitSets, SteeringMethod
from dsas_bench.steering.hooks import SteeringMap
from dsas_bench.steering.maps import ShiftMap
from dsas_bench.steering.registry import register_method


def output_shift(projection: nn.Module, shift: Tensor) -> Tensor:
    """What adding ``shift`` to a linear projection's input adds to its output."""
    parameter = next(projection.parameters())
    with torch.no_grad():
        x = shift.to(parameter.device, parameter.dtype)[None]
        return (projection(x) - projection(torch.zeros_like(x)))[0].float().cpu()


def probe_accuracy(features: np.ndarray, labels: np.ndarray, seed: int, val_fraction: float) -> float:
    """Held-out accuracy of a logistic probe."""
    x_train, x_val, y_train, y_val = train_test_split(features, labels, test_size=val_fraction,
                                                      random_state=seed, stratify=labels)
    return float(LogisticRegression(max_iter=1000).fit(x_train, y_train).score(x_val, y_val))


@register_method("iti")
class ITI(SteeringMethod):
    """ITI with per-head probes (``variant="heads"``) or one classifier normal per layer (``"c"``)."""

    defaults = {"variant": "heads", "top_k": 48, "alpha": 15.0, "val_fraction": 0.3, "seed": 0}
    # λ scales α: λ = 1 is ITI's chosen α = 15; the grid brackets it, as AcT's ActAdd sweep does
    strength_range = (*(i / 10 for i in range(1, 11)), 1.5, 2.0)

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
        n_heads = lm.model.config.num_attention_heads
        acts, labels = self._labelled(lm, modules, data, batch_size, pooling="last", site="input")
        heads = {name: acts[name].reshape(len(labels), n_heads, -1) for name in modules}
        ranked = sorted(
            (-probe_accuracy(heads[name][:, head].numpy(), labels, self.options["seed"], self.options["val_fraction"]),
             index, head)
            for index, name in enumerate(modules) for head in range(n_heads))
        kept = sorted((index, head) for _, index, head in ranked[: int(self.options["top_k"])])
        is_target = torch.from_numpy(labels).bool()
        projections = dict(lm.model.named_modules())
        state = {}
        for index in sorted({index for index, _ in kept}):
            name = modules[index]
            chosen = torch.tensor([head for i, head in kept if i == index])
            head_acts = heads[name][:, chosen]  # (n, k, head_dim)
            theta = head_acts[is_target].mean(0) - head_acts[~is_target].mean(0)
            theta = theta / theta.norm(dim=-1, keepdim=True)
            sigma = torch.einsum("nkd,kd->nk", head_acts, theta).std(0)
            shift = torch.zeros(n_heads, head_acts.shape[-1])
            shift[chosen] = self.options["alpha"] * sigma[:, None] * theta
            state[name] = {"v": output_shift(projections[name], shift.reshape(-1)), "heads": chosen,
                           "theta": theta, "sigma": sigma}
        return state

    def _fit_classifier_normals(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int):
        acts, labels = self._labelled(lm, modules, data, batch_size)
        state = {}
        for name in modules:
            classifier = LogisticRegression(max_iter=1000).fit(acts[name].numpy(), labels)
            normal = torch.from_numpy(classifier.coef_[0]).float()
            normal = normal / normal.norm()
            sigma = (acts[name] @ normal).std()
            state[name] = {"v": self.options["alpha"] * sigma * normal}
        return state

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return ShiftMap(params["v"])
