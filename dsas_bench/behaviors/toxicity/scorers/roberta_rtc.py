"""``roberta-rtc``: ``s-nlp/roberta_toxicity_classifier``, the classifier of the AcT / LinEAS papers."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dsas_bench.behaviors.toxicity.scorers.base import ToxicityScorer
from dsas_bench.core.errors import UsageError

ROBERTA_RTC_MODEL = "s-nlp/roberta_toxicity_classifier"


class RobertaRTCScorer(ToxicityScorer):
    """P(``toxic``) of a RoBERTa sequence classifier through a transformers text-classification pipeline."""

    defaults = {"model": ROBERTA_RTC_MODEL, "device": "cpu", "batch_size": 32, "label": "toxic"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from transformers import pipeline

        model, label = self.options["model"], self.options["label"]

        try:
            self.pipe = pipeline("text-classification", model=str(model), device=self.options["device"])
        except OSError as exc:
            raise UsageError(
                f"roberta-rtc could not load {str(model)!r}: it is neither a local model directory nor in "
                f"the Hugging Face cache and the hub is unreachable (HF_HUB_OFFLINE="
                f"{os.environ.get('HF_HUB_OFFLINE', 'unset')}). Download it once with hub access, pass "
                f"model=<local directory>, or use another scorer (`dsas-bench ls scorers`). Cause: {exc}"
            ) from exc
        labels = [str(value) for value in self.pipe.model.config.id2label.values()]
        if label not in labels:
            raise UsageError(f"the model {str(model)!r} has no label {label!r} "
                             f"(labels: {', '.join(labels)}); pass label=<its toxic label>")
        self.label = label
        self.variant = f"label={label}"
        self.weights = str(model)
        self.note = f"softmax probability of the {label!r} label (the AcT/LinEAS papers' classifier)"

    def _score_batch(self, texts: list[str]) -> np.ndarray:
        outputs = self.pipe(texts, top_k=None, function_to_apply="softmax", batch_size=self.batch_size,
                            truncation=True)
        return np.array([next(entry["score"] for entry in row if entry["label"] == self.label)
                         for row in outputs])
