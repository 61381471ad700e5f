"""Sentiment: steer negative → positive continuations (the ActAdd paper's "Love" − "Hate" example), scored
offline by VADER (``vaderSentiment``, whose lexicon ships in the package).

Data: the project's synthetic demo sets (``behaviors/data/sentiment``), a hub data set by id (``--fit-data hub``
/ ``--prompts hub``, the ``hub_*`` options; default SST-2) or local files: a ``.jsonl`` of ``text_field`` /
``label_field`` records for fitting, a RealToxicityPrompts-shaped jsonl for prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dsas_bench.behaviors.base import Behavior, Objective, Scorer, as_grid, prompt_major, summarised
from dsas_bench.core.data import Prompt, _existing, _hub_rows, _jsonl_rows, _shuffled, load_prompts, load_texts
from dsas_bench.core.errors import UsageError

DATA_DIR = Path(__file__).resolve().parent / "data" / "sentiment"
NEGATIVE, POSITIVE = -0.05, 0.05  # VADER's own thresholds on the compound score
SCORERS = ("auto", "vader")


class VaderScorer:
    """VADER's compound score per text, in [−1, 1] (−1: most negative); an empty text scores 0."""

    reported_name = "vader"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise UsageError("score() takes a sequence of strings, not one string: wrap a single text in a list")
        return np.array([self.analyzer.polarity_scores(text)["compound"] for text in texts], dtype=np.float64)

    def describe(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"scorer": "vader", "variant": "compound", "weights": f"vaderSentiment {version('vaderSentiment')}",
                "note": "lexicon and rules (Hutto & Gilbert, 2014); compound score in [-1, 1]"}


class Sentiment(Behavior):
    """Source: negative sentences; target: positive ones; prompts that invite a negative continuation; scores:
    VADER compound. Objectives: ``vader_mean`` (the mean compound score, higher is better; the default),
    ``neg_pct`` (% negative continuations, compound ≤ −0.05) and ``pos_pct`` (% positive, ≥ 0.05)."""

    label = "sentiment"
    defaults = {"hub_dataset": "stanfordnlp/sst2", "hub_config": None, "hub_split": "train",
                "hub_prompt_split": "validation", "text_field": "sentence", "label_field": "label",
                "negative_label": 0, "positive_label": 1, "prompt_words": 4}
    option_types = {"hub_config": str | None, "negative_label": int | str, "positive_label": int | str}
    objectives = (Objective("vader_mean", "mean VADER compound score", "", "max", "vader"),
                  Objective("neg_pct", "% negative continuations (VADER)", "%", "min", "neg %"),
                  Objective("pos_pct", "% positive continuations (VADER)", "%", "max", "pos %"))
    default_objective = "vader_mean"
    mean_score = "vader_mean"

    def fit_texts(self, source: str, label: str) -> tuple[list[str], list[str]]:
        """Negative and positive texts: the demo's, a hub data set's ``hub_split`` or a local jsonl's."""
        if source == "demo":
            return load_texts(DATA_DIR / "negative.txt"), load_texts(DATA_DIR / "positive.txt")
        negative, positive = self._labelled(self._records(source, self.options["hub_split"]))
        return negative, positive

    def prompts(self, source: str, *, challenging_only: bool, n: int | None, seed: int) -> list[Prompt]:
        """The demo prompts, a RealToxicityPrompts-shaped jsonl, or (hub) the first ``prompt_words`` words of the
        negative texts of the hub data set's ``hub_prompt_split``."""
        if challenging_only:
            raise UsageError("--challenging-only selects RealToxicityPrompts' challenging prompts: it has no "
                             "meaning for the sentiment behaviour; leave it out")
        if source != "hub":
            return load_prompts(DATA_DIR / "prompts.jsonl" if source == "demo" else source, n=n, seed=seed)
        negative, _ = self._labelled(self._records(source, self.options["hub_prompt_split"]))
        words = self.options["prompt_words"]
        texts = list(dict.fromkeys(" ".join(text.split()[:words]) for text in negative))
        prompts = [Prompt(text, None) for text in _shuffled(texts, seed)]
        if n is not None and n > len(prompts):
            raise UsageError(f"asked for {n} prompts, but {self.options['hub_dataset']} has only {len(prompts)}")
        return prompts[:n]

    def _records(self, source: str, split: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
        if source == "hub":
            return _hub_rows(self.options["hub_dataset"], self.options["hub_config"], split=split)
        path = _existing(source)
        if path.suffix != ".jsonl":
            raise UsageError(f"{path}: the sentiment behaviour fits on a .jsonl of records with the fields "
                             f"{self.options['text_field']!r} and {self.options['label_field']!r}, or demo or hub")
        return _jsonl_rows(path, f"jsonl records with {self.options['text_field']} and {self.options['label_field']}")

    def _labelled(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[list[str], list[str]]:
        """(negative, positive) texts of ``records`` by the label options; other labels are skipped."""
        text_field, label_field = self.options["text_field"], self.options["label_field"]
        sets: dict[Any, list[str]] = {self.options["negative_label"]: [], self.options["positive_label"]: []}
        for where, record in records:
            if text_field not in record or label_field not in record:
                raise UsageError(f"{where}: needs the fields {text_field!r} and {label_field!r} (found "
                                 f"{', '.join(record) or 'none'}): set the text_field / label_field options")
            if record[label_field] in sets and str(record[text_field]).strip():
                sets[record[label_field]].append(str(record[text_field]).strip())
        negative, positive = sets.values()
        if not negative or not positive:
            raise UsageError(f"{len(negative)} texts labelled {self.options['negative_label']!r} (negative) and "
                             f"{len(positive)} labelled {self.options['positive_label']!r} (positive): need both; "
                             "set the negative_label / positive_label options")
        return negative, positive

    def scorer(self, name: str, options: dict[str, Any]) -> Scorer:
        if name not in SCORERS:
            raise UsageError(f"the sentiment behaviour scores with {' or '.join(SCORERS)} (VADER), not {name!r}")
        if options:
            raise UsageError(f"the VADER scorer has no options, got {', '.join(options)}: leave out --scorer-option")
        return VaderScorer()

    def per_prompt(self, scores: Any, objective: str) -> np.ndarray:
        scores, name = as_grid(scores), self.objective(objective).name
        if name == "vader_mean":
            return scores.mean(axis=1)
        return 100.0 * ((scores <= NEGATIVE) if name == "neg_pct" else (scores >= POSITIVE)).mean(axis=1)

    def scored_row(self, continuations: Sequence[str], scores: Sequence[float], prompts: Sequence[Prompt],
                   samples_per_prompt: int, seed: int) -> dict[str, Any]:
        grid, texts = prompt_major(continuations, scores, samples_per_prompt)
        return {"metrics": summarised(self, grid, seed), "continuations": texts,
                "prompt_scores": [float(s) for s in grid[:, 0]] if samples_per_prompt == 1 else grid.tolist()}
