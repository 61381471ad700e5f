"""Toxicity scorers: one interface, one registry, one module per classifier the benchmark can score with.

``get_scorer(name, **options)`` builds one; ``score(texts)`` returns P(toxic) per text. Numbers
from different scorers are not comparable, so every result row records ``describe()``.

- ``detoxify``: the main scorer (Detoxify, ``toxicity`` output); offline from a local checkpoint.
- ``roberta-rtc``: ``s-nlp/roberta_toxicity_classifier``, the classifier of the AcT/LinEAS papers.
- ``jigsaw-bilstm``: a PyTorch port of the Keras BiLSTM shipped by the ``toxic-comment-classifier``
  wheel; always available offline, weaker than Detoxify.
- ``profanity``: ``alt-profanity-check``, a profanity detector (a rough proxy only).
- ``auto`` (default): Detoxify when its weights are on this machine, else ``jigsaw-bilstm``.

Another package adds a scorer (a ``ToxicityScorer`` subclass) through the ``dsas_bench.scorers``
entry-point group. This module imports no torch.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from dsas_bench.core.errors import UsageError
from dsas_bench.core.registry import Registry, resolve_options

if TYPE_CHECKING:
    from dsas_bench.behaviors.toxicity.scorers.base import ToxicityScorer

logger = logging.getLogger(__name__)

AUTO = "auto"
SCORERS: Registry[ToxicityScorer] = Registry("toxicity scorer",
                                             "dsas_bench.behaviors.toxicity.scorers.base:ToxicityScorer",
                                             "dsas_bench.scorers",
                                             fixed={AUTO: "detoxify when its weights are here, else jigsaw-bilstm"})
_HERE = "dsas_bench.behaviors.toxicity.scorers"
SCORERS.add("detoxify", f"{_HERE}.detoxify:DetoxifyScorer")
SCORERS.add("jigsaw-bilstm", f"{_HERE}.jigsaw_bilstm:JigsawBiLSTMScorer")
SCORERS.add("profanity", f"{_HERE}.profanity:ProfanityScorer")
SCORERS.add("roberta-rtc", f"{_HERE}.roberta_rtc:RobertaRTCScorer")
register_scorer = SCORERS.register

__all__ = ["AUTO", "SCORERS", "get_scorer", "register_scorer", "scorer_names"]


def scorer_names() -> list[str]:
    """The names ``get_scorer`` accepts: ``auto``, then the registered scorers."""
    return SCORERS.names()


def get_scorer(name: str = AUTO, **options: Any) -> ToxicityScorer:
    """Build the scorer registered under ``name`` with its keyword ``options``.

    ``auto`` takes Detoxify's options; its fallback, ``jigsaw-bilstm``, is built with its defaults.
    """
    key = SCORERS.canonical(name)
    if key == AUTO:
        return _choose_automatically(options)
    return SCORERS.get(key)(**options)


def _choose_automatically(options: dict[str, Any]) -> ToxicityScorer:
    """Detoxify (built with ``options``) when its weights are local, else ``jigsaw-bilstm`` with a warning.

    An explicitly given checkpoint that fails to load raises; Detoxify's own cached download
    that fails to load (e.g. its base model is not reachable offline) falls back.
    """
    from dsas_bench.behaviors.toxicity.scorers.detoxify import (
        CHECKPOINT_ENV,
        TORCH_HUB_CACHE,
        DetoxifyScorer,
        detoxify_cache_path,
        local_checkpoint,
    )

    resolve_options(f"scorer {AUTO!r} (Detoxify's options)", DetoxifyScorer.defaults, options)
    variant = options.get("variant", "original")
    local, source = local_checkpoint(variant, options.get("checkpoint"))
    if local is None:
        reason = (f"no local Detoxify weights were found (no checkpoint option, {CHECKPOINT_ENV} unset, "
                  f"nothing at {detoxify_cache_path(variant)})")
    else:
        try:
            scorer = get_scorer("detoxify", **options)
        except UsageError as exc:
            if source != TORCH_HUB_CACHE:
                raise
            reason = f"Detoxify's cached weights at {local} did not load: {exc}"
        else:
            scorer.choice = {"chosen_by": AUTO, "reason": f"Detoxify weights found via {source}"}
            logger.info("toxicity scorer: detoxify (weights from %s)", source)
            return scorer
    warnings.warn(f"toxicity scorer 'auto' falls back to 'jigsaw-bilstm' (weaker than Detoxify; its scores "
                  f"are not comparable with Detoxify's) because {reason}", UserWarning, stacklevel=3)
    scorer = get_scorer("jigsaw-bilstm")
    scorer.choice = {"chosen_by": AUTO, "reason": f"fallback to jigsaw-bilstm: {reason}"}
    return scorer
