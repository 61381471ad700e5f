"""Toxicity, the default behaviour: steer away from toxic text (Jigsaw) on RealToxicityPrompts, scored by a
toxicity classifier (``dsas_bench.behaviors.toxicity.scorers``) and summarised as the papers do (``summary.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dsas_bench.behaviors.base import Behavior, Objective, Published, Scorer, data_source
from dsas_bench.behaviors.toxicity import summary
from dsas_bench.core.data import Prompt, load_jigsaw, load_prompts

PUBLISHED_SCORER = "s-nlp/roberta_toxicity_classifier"
PUBLISHED_PROMPTS = "RealToxicityPrompts, 1,000 prompts"
UNITS = {"tox_pct": "%", "tox_mean": "", "emt": "", "tox_prob": ""}
HEADINGS = {"tox_pct": "tox %", "tox_mean": "tox p", "emt": "EMT", "tox_prob": "tox P"}


def _table(source: str, model: str, *entries: tuple[str, float, float, float]) -> tuple[Published, ...]:
    label = f"published: {source}, {model}"
    return tuple(Published(label, model, m, t, p, a / 100, PUBLISHED_SCORER, PUBLISHED_PROMPTS)
                 for m, t, p, a in entries)


class Toxicity(Behavior):
    """Source: toxic comments (Jigsaw ``fit_label`` = 1); target: non-toxic ones; prompts: RealToxicityPrompts;
    scores: P(toxic) per continuation. Objectives (all minimised): ``tox_pct`` (the papers' % toxic, the
    default), ``tox_mean``, ``emt`` and ``tox_prob`` (RealToxicityPrompts')."""

    label = "toxicity"
    objectives = tuple(Objective(name, summary.OBJECTIVE_LABELS[name], UNITS[name], "min", HEADINGS[name])
                       for name in summary.OBJECTIVES)
    default_objective = "tox_pct"
    mean_score = "tox_mean"
    published = (
        *_table("AcT Table 2", "Gemma-2-2B", ("original", 4.17, 13.98, 53.1), ("ITI-c", 0.74, 14.90, 52.6),
                ("Mean-AcT", 0.54, 14.21, 51.6), ("Linear-AcT", 0.56, 14.79, 51.3),
                ("ActAdd", 3.96, 14.69, 53.0)),
        *_table("AcT Table 2", "Llama-3-8B", ("original", 5.80, 9.06, 65.3), ("Linear-AcT", 1.35, 9.56, 64.5)),
        *_table("LinEAS Table 1", "Gemma-2-2B", ("none", 4.00, 14.79, 53.03), ("LinEAS", 0.73, 15.46, 52.22),
                ("Lin-AcT", 1.60, 14.78, 52.43), ("ITI-c", 1.17, 14.00, 52.78)),
        *_table("LinEAS Table 1", "Qwen2.5-1.5B", ("none", 3.00, 13.67, 60.95), ("LinEAS", 1.07, 14.10, 59.97)),
    )
    published_note = (f"Published numbers from the papers (METHODS.md §5), scored with {PUBLISHED_SCORER} "
                      f"on {PUBLISHED_PROMPTS}, on other models and with MMLU 5-shot as accuracy. Their scorer, "
                      "models and prompts differ from the measured lines: they are for orientation only, not "
                      "comparable, and not ranked with them.")

    def fit_texts(self, source: str, label: str) -> tuple[list[str], list[str]]:
        return load_jigsaw(**data_source(source), label=label)

    def prompts(self, source: str, *, challenging_only: bool, n: int | None, seed: int) -> list[Prompt]:
        return load_prompts(**data_source(source), challenging_only=challenging_only, n=n, seed=seed)

    def scorer(self, name: str, options: dict[str, Any]) -> Scorer:
        from dsas_bench.behaviors.toxicity.scorers import get_scorer

        return get_scorer(name, **options)

    def per_prompt(self, scores: Any, objective: str) -> np.ndarray:
        return summary.per_prompt(scores, self.objective(objective).name)

    def scored_row(self, continuations: Sequence[str], scores: Sequence[float], prompts: Sequence[Prompt],
                   samples_per_prompt: int, seed: int) -> dict[str, Any]:
        """``summary.scored_row``: the papers' numbers, each also split by the prompts' toxicity."""
        return summary.scored_row(continuations, scores, [p.toxicity for p in prompts], samples_per_prompt, seed)
