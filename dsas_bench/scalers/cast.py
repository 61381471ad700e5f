"""A CAST-style gate, the "when to steer" baseline of METHODS.md §3: one yes/no per sequence.

The decision is taken on the pass that starts the sequences (``TokenContext.new_sequence``) at
one steered module, by default the first in forward order, whose input no steering has touched
yet: the prompt's activation there, mean-pooled over real tokens, goes through a logistic
classifier (source vs control), folded like the DSAS probe into uᵀx + c, compared with a cut.
Every module then steers that sequence at full strength or not at all, and the decision is kept
for the KV-cached decoding steps until the next new sequence. Without a KV cache every pass starts
the sequences again, so the decision is retaken on the whole prefix (prompt and tokens so far).

lm-eval scores each request (context and continuation) in one pass, so there the gate decides on
the whole scored sequence; its batches are right-padded without an attention mask, so a sweep
evaluates a gated model one sequence at a time (``per_sequence``).

``decide_at=k`` decides at the k-th steered module instead, where the prompt is better
understood; the k modules before it do not steer the prompt's tokens (the decision does not exist
yet when they run, and their silence keeps the deciding module's input un-steered), and steer
every generated token like the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from torch import Tensor

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import TokenContext, pool
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.scalers.base import ScalerBase
from dsas_bench.scalers.dsas import fit_texts, fold, make_probe


def balanced_cut(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut on decision scores (steer when score > cut) with the best balanced accuracy, a midpoint
    between neighbouring scores; the middle one of equally good cuts."""
    values = np.unique(scores)
    cuts = np.r_[values[0] - 1, (values[1:] + values[:-1]) / 2, values[-1] + 1]
    flagged = scores[None, :] > cuts[:, None]
    balanced = flagged[:, labels == 1].mean(1) + (~flagged[:, labels == 0]).mean(1)
    best = np.flatnonzero(balanced == balanced.max())
    return float(cuts[best[len(best) // 2]])


class CastGate(ScalerBase):
    """s ∈ {0, 1} per sequence, decided from the prompt's mean-pooled activation at ``module``."""

    label = "CAST gate"
    defaults = {"threshold": "balanced", "val_fraction": 0.3, "n_components": None, "decide_at": 0, "seed": 0,
                "whiten": False, "batch_size": 16}
    option_types = {"threshold": float | str, "n_components": int | None}
    per_sequence = True

    def __init__(self, module: str, u: Tensor, c: Tensor, cut: float, before: Sequence[str] = (),
                 options: dict[str, Any] | None = None, model_name: str | None = None):
        super().__init__(options, model_name)
        self.module, self.cut, self.before = module, float(cut), list(before)
        self.register_buffer("u", u.float())
        self.register_buffer("c", c.float())
        self._steer: Tensor | None = None

    @property
    def hidden_size(self) -> int:
        return self.u.shape[0]

    def config(self) -> dict[str, Any]:
        return {"module": self.module, "cut": self.cut, "before": self.before}

    @classmethod
    def check_values(cls, options: dict[str, Any]) -> None:
        threshold, n_components = options["threshold"], options["n_components"]
        if threshold != "balanced" and not (isinstance(threshold, float) and 0 < threshold < 1):
            raise UsageError(f"CAST threshold must be 'balanced' or a probability in (0, 1), not {threshold!r}")
        if not 0 < options["val_fraction"] < 1:
            raise UsageError(f"val_fraction must be in (0, 1), got {options['val_fraction']}")
        if n_components is not None and n_components < 1:
            raise UsageError(f"n_components must be at least 1 (or null: standardise), got {n_components}")
        if options["decide_at"] < 0:
            raise UsageError(f"decide_at indexes the steered modules from 0, got {options['decide_at']}")

    @classmethod
    def fit(cls, lm: LoadedModel, method: SteeringMethod | None, modules: Sequence[str], sets: FitSets,
            options: dict[str, Any]) -> CastGate:
        """Fit the gate's classifier on source vs control at the ``decide_at``-th of ``modules``; pick the cut.

        ``threshold="balanced"`` chooses the cut with the best balanced accuracy on a held-out
        ``val_fraction`` of the sentences; a number in (0, 1) is a probability threshold instead.
        ``n_components=None`` standardises instead of PCA.
        """
        threshold, decide_at, seed = options["threshold"], options["decide_at"], options["seed"]
        chosen = set(modules)
        ordered = [name for name, _ in lm.model.named_modules() if name in chosen]
        if not 0 <= decide_at < len(ordered):
            raise UsageError(f"decide_at must index the {len(ordered)} steered modules (0 to {len(ordered) - 1}), "
                             f"not {decide_at}")
        module = ordered[decide_at]
        texts, labels = fit_texts(sets)
        acts = pooled_activations(lm, texts, [module], batch_size=options["batch_size"],
                                  progress=False)[module].double().numpy()
        try:
            x_fit, x_val, y_fit, y_val = train_test_split(acts, labels, test_size=options["val_fraction"],
                                                          random_state=seed, stratify=labels)
        except ValueError as exc:
            raise UsageError(f"cannot hold out {options['val_fraction']} of the sentences for the CAST threshold "
                             f"({exc}): add sentences or change val_fraction") from exc
        probe = make_probe(options["n_components"], seed, options["whiten"]).fit(x_fit, y_fit)
        u, c = fold(probe, lm.hidden_size)
        scores = probe.decision_function(x_val)
        cut = balanced_cut(scores, y_val) if threshold == "balanced" else float(np.log(threshold / (1 - threshold)))
        gate = cls(module, u, c, cut, ordered[:decide_at], options, lm.name)
        flagged = scores > cut
        gate.diagnostics = {"module": module, "cut": cut,
                            "validation_steered_source": float(flagged[y_val == 1].mean()),
                            "validation_steered_control": float(flagged[y_val == 0].mean())}
        return gate

    def scales(self, module: str, h: Tensor, context: TokenContext) -> Tensor:
        if context.new_sequence and module in self.before:
            return h.new_zeros((*h.shape[:-1], 1))
        if context.new_sequence and module == self.module:
            self._steer = (pool(h, context.mask, "mean") @ self.u + self.c > self.cut).to(h.dtype)
        if self._steer is None or self._steer.shape[0] != h.shape[0]:
            raise UsageError(f"the CAST gate decides at {self.module!r}, which this steering did not reach before "
                             f"{module!r}: steer the modules the gate was fitted for")
        return self._steer[:, None, None].expand(*h.shape[:-1], 1)
