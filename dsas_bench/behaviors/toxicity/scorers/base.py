"""What every toxicity scorer shares: options, batching by length, clipping, and what rows record."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dsas_bench.behaviors.toxicity.scorers import SCORERS
from dsas_bench.core.errors import UsageError
from dsas_bench.core.progress import bar
from dsas_bench.core.registry import resolve_options


class ToxicityScorer(ABC):
    """Maps texts to P(toxic) in [0, 1]; subclasses score one batch in ``_score_batch``.

    Subclasses declare their options in ``defaults`` (a ``batch_size`` among them) and set ``variant``,
    ``weights`` and ``note``, which ``describe()`` records.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 32}
    variant: str = "default"
    weights: str = ""
    note: str = ""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.name = SCORERS.name_for(cls)  # a built-in's registry name, also when its module is imported directly

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(f"scorer {self.name!r}", self.defaults, options)
        self.batch_size = self.options["batch_size"]
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {self.batch_size}")
        self.choice: dict[str, str] = {}  # set by ``auto``: how and why this scorer was chosen

    @property
    def reported_name(self) -> str:
        """The scorer as results name it: scores under different names are not comparable."""
        return self.name

    def describe(self) -> dict[str, str]:
        """What identifies these scores in a result row."""
        return {"scorer": self.name, "variant": self.variant, "weights": self.weights, "note": self.note,
                **self.choice}

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(toxic) per text, float64 in [0, 1]; batched by length to keep padding small."""
        if isinstance(texts, str):
            raise UsageError("score() takes a sequence of strings, not one string: "
                             "wrap a single text in a list")
        texts = list(texts)
        if not all(isinstance(text, str) for text in texts):
            kinds = sorted({type(text).__name__ for text in texts if not isinstance(text, str)})
            raise UsageError(f"score() takes strings only, got {', '.join(kinds)}: "
                             "convert or drop those items")
        order = np.argsort([len(text) for text in texts], kind="stable")
        batches = [order[start:start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        scores = np.empty(len(texts), dtype=np.float64)
        scored = self._map_batches([[texts[i] for i in b] for b in batches])
        for batch, batch_scores in zip(batches, bar(scored, f"score ({self.name})", len(batches)), strict=True):
            scores[batch] = batch_scores
        return np.clip(scores, 0.0, 1.0)

    def _map_batches(self, batches: list[list[str]]) -> Iterable[np.ndarray]:
        """Scores of each batch, in order; a scorer may override this to run batches in parallel."""
        return map(self._score_batch, batches)

    @abstractmethod
    def _score_batch(self, texts: list[str]) -> np.ndarray:
        """P(toxic) for a non-empty batch."""


def existing_path(path: str | Path | None, what: str, fix: str) -> Path | None:
    """``path`` as a Path when given, None when not; a UsageError naming ``what`` and ``fix`` when it is missing."""
    if path is None or str(path) == "":
        return None
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UsageError(f"{what} {resolved} does not exist: {fix}")
    return resolved
