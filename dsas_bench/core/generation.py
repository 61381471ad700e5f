"""Continuations of prompts, batched and left-padded, with whatever steering is active on the model.

Callers steer with ``with steer(lm.model, maps, λ): generate_continuations(lm, prompts)``; this
module adds no hooks of its own.

Sampling is reproducible per prompt: prompt ``i`` of a call draws its tokens from its own random
stream seeded by ``(seed, i)``, its further samples ``j`` from ``(seed, i, j)`` (Gumbel-max
sampling from the same temperature / top-p / repetition penalty distribution that
``generate(do_sample=True)`` samples from). So a continuation depends on the seed, the prompt's
position in the list and the device, not on ``batch_size``, the other prompts in its batch or the
global torch RNG. Up to float rounding: the logits of a left-padded row can differ from the
unpadded ones in the last bits, which rarely flips a draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from dsas_bench.core.activations import batches
from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; the defaults are the papers' (32 new tokens, T = 1, top-p 0.3, penalty 1.2)."""

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 0.3
    repetition_penalty: float = 1.2
    do_sample: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature} (for greedy decoding: do_sample=False)")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise UsageError(f"repetition_penalty must be > 0, got {self.repetition_penalty} (1 means no penalty)")


class RowGumbelSampler(LogitsProcessor):
    """Adds Gumbel noise from one generator per row: greedy decoding then samples softmax(scores) exactly."""

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        noise = torch.stack([-torch.empty(scores.shape[1], device=scores.device, dtype=scores.dtype)
                             .exponential_(generator=g).log() for g in self.generators])
        return scores + noise


def row_generator(seed: int, index: int, device: torch.device, sample: int = 0) -> torch.Generator:
    """The random stream of sample ``sample`` of prompt ``index`` under ``seed``, decorrelated from its
    neighbours; sample 0 has the stream of one sample per prompt, so asking for more keeps the first."""
    entropy = [seed, index] if sample == 0 else [seed, index, sample]
    state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(state)


def sampling_processors(sampling: SamplingConfig, generators: Sequence[torch.Generator]) -> LogitsProcessorList:
    """Temperature, top-p and the per-row sampler, applied after generate's repetition penalty."""
    processors = LogitsProcessorList()
    if sampling.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_p < 1.0:
        processors.append(TopPLogitsWarper(sampling.top_p))
    processors.append(RowGumbelSampler(generators))
    return processors


def prompt_room(lm: LoadedModel, sampling: SamplingConfig) -> int:
    """The most prompt tokens that leave room for ``max_new_tokens`` in the model's context."""
    context = getattr(lm.model.config, "max_position_embeddings", 2048)
    if sampling.max_new_tokens >= context:
        raise UsageError(f"max_new_tokens={sampling.max_new_tokens} leaves no room for the prompt in this model's "
                         f"context of {context} tokens: ask for fewer new tokens")
    return context - sampling.max_new_tokens


def generate_batch(lm: LoadedModel, batch: dict[str, Tensor], sampling: SamplingConfig,
                   generators: Sequence[torch.Generator]) -> list[str]:
    """The continuations of one tokenised, left-padded batch; row i samples from ``generators[i]``."""
    processors = sampling_processors(sampling, generators) if sampling.do_sample else LogitsProcessorList()
    out = lm.model.generate(**batch, max_new_tokens=sampling.max_new_tokens, do_sample=False,
                            repetition_penalty=sampling.repetition_penalty, logits_processor=processors,
                            pad_token_id=lm.tokenizer.pad_token_id)
    return lm.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def generate_continuations(lm: LoadedModel, prompts: Sequence[str], sampling: SamplingConfig = SamplingConfig(), *,
                           seed: int = 0, batch_size: int = 16, progress: bool = True,
                           samples_per_prompt: int = 1) -> list[str]:
    """``samples_per_prompt`` continuations per prompt, prompt-major (prompt 0's first), the prompt
    stripped: only the new tokens, special tokens skipped. Sample ``j`` of prompt ``i`` draws from
    ``row_generator(seed, i, device, j)``.

    Prompts longer than the model's context minus ``max_new_tokens`` are truncated at the end.
    """
    if isinstance(prompts, str) or not prompts:
        raise UsageError("generate_continuations needs a non-empty list of prompt strings")
    if batch_size < 1 or samples_per_prompt < 1:
        raise UsageError(f"batch_size and samples_per_prompt must be at least 1, got {batch_size} and "
                         f"{samples_per_prompt}")
    k = samples_per_prompt
    prompts = [prompt for prompt in prompts for _ in range(k)]
    continuations: list[str] = []
    for number, batch in enumerate(batches(lm, prompts, batch_size, max_length=prompt_room(lm, sampling),
                                           desc="generate", progress=progress)):
        first = number * batch_size
        rows = range(first, first + batch["input_ids"].shape[0])
        continuations += generate_batch(lm, batch, sampling, [row_generator(seed, i // k, lm.device, i % k)
                                                              for i in rows])
    return continuations
