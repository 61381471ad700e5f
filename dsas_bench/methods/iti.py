"""Inference-Time Intervention (Li et al. 2023; METHODS.md §2), in two variants.

``heads`` (default): per attention head, the input of the output projection split into heads;
a logistic probe per head on last-token activations (source vs target), heads ranked by
held-out probe accuracy, the top K kept (``top_k``: a count, or a fraction 0 < K < 1 of all heads;
the count used is in ``diagnostics``). Each kept head h moves by α·σ_h·θ_h, θ_h the unit mass-mean
shift (mean target − mean source) and σ_h the std of activations projected on θ_h. The projection
is linear, so the per-head shifts become one vector added to the projection's output:
T(h) = h + o_proj(shift) − o_proj(0).

``c`` (Apple's ITI-c): per hooked module, θ = unit normal of a logistic classifier on pooled
activations, oriented towards the target; T(h) = h + θ (``normal_scale="unit"``, METHODS.md §2: λ
scales the normal itself; ml-act publishes no ITI-c code) or T(h) = h + α·σ·θ (``"sigma"``, ITI's
head scaling), σ the std of the activations projected on θ.

``positions``: ``all`` (default) shifts every token, prompt included; ``from-last-prompt-token``
shifts the last prompt token and every generated one, as ITI does (``ShiftMap``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import SteeringMap
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.maps import ShiftMap


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


class ITI(SteeringMethod):
    """ITI with per-head probes (``variant="heads"``) or one classifier normal per layer (``"c"``)."""

    state_version = 2  # version 1: ITI-c's v was always α·σ·θ
    defaults = {"variant": "heads", "top_k": 48, "alpha": 15.0, "normal_scale": "unit", "positions": "all",
                "val_fraction": 0.3, "seed": 0}
    # λ scales α: λ = 1 is ITI's chosen α = 15; the grid brackets it, as AcT's ActAdd sweep does
    strength_range = (*(i / 10 for i in range(1, 11)), 1.5, 2.0)

    @property
    def default_modules(self) -> str:  # type: ignore[override]
        return "o-proj" if self.options["variant"] == "heads" else "post-attn-norm"

    option_types = {"top_k": int | float}  # a count of heads, or a fraction of all heads

    def check_values(self) -> None:
        if self.options["variant"] not in {"heads", "c"}:
            raise UsageError(f"unknown ITI variant {self.options['variant']!r}: use heads or c")
        for option, allowed in (("normal_scale", ("unit", "sigma")), ("positions", ("all", "from-last-prompt-token"))):
            if self.options[option] not in allowed:
                raise UsageError(f"unknown ITI {option} {self.options[option]!r}: use {' or '.join(allowed)}")

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        variant = self.options["variant"]
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
        count = self._head_count(len(ranked))
        kept = sorted((index, head) for _, index, head in ranked[:count])
        self.diagnostics = {"heads_kept": count, "heads_total": len(ranked)}
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

    def _head_count(self, total: int) -> int:
        """``top_k`` as a number of heads: a count ≥ 1 (at most ``total``) or a fraction 0 < K < 1 of ``total``
        (rounded, at least 1)."""
        k = self.options["top_k"]
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0 or (k >= 1 and k != int(k)):
            raise UsageError(f"ITI top_k must be a whole number of heads or a fraction in (0, 1), not {k!r}")
        return min(total, int(k)) if k >= 1 else max(1, round(k * total))

    def _fit_classifier_normals(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int):
        acts, labels = self._labelled(lm, modules, data, batch_size)
        state = {}
        for name in modules:
            classifier = LogisticRegression(max_iter=1000).fit(acts[name].numpy(), labels)
            normal = torch.from_numpy(classifier.coef_[0]).float()
            normal = normal / normal.norm()
            if self.options["normal_scale"] == "sigma":
                normal = self.options["alpha"] * (acts[name] @ normal).std() * normal
            state[name] = {"v": normal}
        return state

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return ShiftMap(params["v"], self.options["positions"])
