"""Perplexity of neutral text under the model as it is, steered or not (METHODS.md §4).

Each text is cut to its first ``max_tokens`` tokens; its perplexity is exp(mean NLL) over its own
next-token predictions (pads excluded), and the summary is the mean over texts. Callers steer
with ``with steer(lm.model, maps, λ): perplexity(lm, texts)``; this module adds no hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from dsas_bench.core.activations import batches, real_positions
from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel
from dsas_bench.utility.base import UtilityInputs, UtilityMetric

MAX_TOKENS = 50


def per_text_perplexity(lm: LoadedModel, texts: Sequence[str], *, max_tokens: int = MAX_TOKENS,
                        batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """exp(mean NLL) of each text's first ``max_tokens`` tokens, shape (len(texts),), float64.

    Batches are left-padded; position ids count real tokens only, so a text scores the same
    alone as in any batch (up to float rounding).
    """
    check_texts(lm, texts, max_tokens)
    with torch.inference_mode():
        return np.concatenate([batch_perplexity(lm, batch) for batch in
                               batches(lm, texts, batch_size, max_length=max_tokens, desc="perplexity",
                                       progress=progress)])


def check_texts(lm: LoadedModel, texts: Sequence[str], max_tokens: int) -> None:
    """Refuse what perplexity cannot be measured on: no texts, or a text of fewer than 2 tokens.

    Checked before any forward pass, so a NaN perplexity always means non-finite logits (a model
    steered too hard), which result rows flag."""
    if isinstance(texts, str) or not texts:
        raise UsageError("perplexity needs a non-empty list of texts")
    if max_tokens < 2:
        raise UsageError(f"max_tokens must be at least 2 (one next-token prediction), got {max_tokens}")
    lengths = [len(ids) for ids in lm.tokenizer(list(texts), truncation=True, max_length=max_tokens).input_ids]
    short = next((i for i, length in enumerate(lengths) if length < 2), None)
    if short is not None:
        raise UsageError(f"text {short} ({texts[short]!r}) has fewer than 2 tokens: drop empty or one-token texts "
                         "before measuring perplexity")


def batch_perplexity(lm: LoadedModel, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """exp(mean NLL) of each row of one tokenised, left-padded batch (rows of at least 2 tokens)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits = lm.model(input_ids=ids, attention_mask=mask, position_ids=real_positions(mask)).logits[:, :-1]
    nll = F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none")
    real = (mask[:, :-1] * mask[:, 1:]).to(nll.dtype)
    return ((nll * real).sum(-1) / real.sum(-1)).exp().double().cpu().numpy()


def perplexity(lm: LoadedModel, texts: Sequence[str], *, max_tokens: int = MAX_TOKENS, batch_size: int = 16,
               progress: bool = True) -> float:
    """Mean over texts of each text's perplexity (see ``per_text_perplexity``)."""
    return float(per_text_perplexity(lm, texts, max_tokens=max_tokens, batch_size=batch_size,
                                     progress=progress).mean())


class Perplexity(UtilityMetric):
    """The ``perplexity`` utility metric: the mean perplexity of the run's neutral texts, each cut to
    ``perplexity_tokens`` tokens (the strength-batched passes measure it in their shared batches)."""

    fields = ("perplexity",)

    def measure(self, inputs: UtilityInputs) -> dict[str, float]:
        return {"perplexity": perplexity(inputs.lm, inputs.texts, max_tokens=inputs.config["perplexity_tokens"],
                                         batch_size=inputs.config["batch_size"])}
