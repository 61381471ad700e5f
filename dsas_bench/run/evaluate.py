"""Strength-batched evaluation: the cells of one fitted intervention share their generation and perplexity batches.

The cells of a sweep that share one fitted intervention (a method in a DSAS mode for one seed) differ
only in λ. Their rows go through the model together: each batch of prompts (or perplexity texts) is
repeated once per cell, and row r is steered at its cell's λ (``HookManager.row_strengths``; the
unsteered baseline is λ = 0, which leaves every activation exactly as it is). The batches keep the
padding of a cell-by-cell batch of the same prompts, prompt i of every cell draws from the random
stream ``row_generator(seed, i)``, and the scalers keep their state per row (the DSAS running mean
per sequence, the CAST decision per sequence), so a cell's continuations and perplexities are those
of evaluating it alone, up to float rounding of a larger batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from dsas_bench.core.activations import batches
from dsas_bench.core.generation import SamplingConfig, generate_batch, prompt_room, row_generator
from dsas_bench.core.hooks import HookManager, Scaler, SteeringMap, steer
from dsas_bench.core.models import LoadedModel
from dsas_bench.utility.perplexity import batch_perplexity, check_texts


class CellLike(Protocol):
    method: str
    dsas: str
    strength: float
    seed: int


def fit_key(cell: CellLike) -> tuple[str, str, int]:
    """What decides a cell's fitted intervention, apart from the strength: (method, DSAS mode, seed)."""
    return cell.method, cell.dsas, cell.seed


def strength_groups(cells: Sequence[CellLike], cells_per_batch: int | None, baseline: str,
                    workers: int = 1) -> list[list[Any]]:
    """``cells`` grouped by fitted intervention, in plan order, at most ``cells_per_batch`` per group.

    The unsteered cell of a seed (method ``baseline``) joins the first group of that seed as λ = 0, or
    stays alone when there is none. ``cells_per_batch`` None: whole groups, or, when there are fewer
    groups than ``workers``, groups split so that every worker gets cells.
    """
    groups: dict[tuple[str, str, int], list[Any]] = {}
    for cell in cells:
        if cell.method != baseline:
            groups.setdefault(fit_key(cell), []).append(cell)
    for cell in cells:
        if cell.method == baseline:
            joined = next((group for key, group in groups.items() if key[2] == cell.seed), None)
            if joined is None:
                groups[fit_key(cell)] = [cell]
            else:
                joined.insert(0, cell)
    size = cells_per_batch or max((len(group) for group in groups.values()), default=1)
    if cells_per_batch is None and len(groups) < workers:
        size = max(1, -(-len(cells) // workers))  # ceil: about as many cells per worker
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


@dataclass(frozen=True)
class Evaluated:
    """What a cell got from the shared passes: its continuations, its perplexity, its share of their wall time."""

    continuations: list[str]
    perplexity: float
    times: dict[str, float]
    cells: int  # how many cells shared the batches


def evaluate_strengths(lm: LoadedModel, maps: dict[str, SteeringMap], scaler: Scaler | None,
                       strengths: Sequence[float], prompts: Sequence[str], texts: Sequence[str],
                       sampling: SamplingConfig, *, seed: int, batch_size: int, max_tokens: int,
                       samples_per_prompt: int = 1, progress: bool = True) -> list[Evaluated]:
    """Continuations of ``prompts`` (``samples_per_prompt`` each, as ``generate_continuations``) and mean
    perplexity of ``texts`` at each of ``strengths``, in shared batches of ``batch_size`` prompts or texts ×
    ``len(strengths)`` rows."""
    check_texts(lm, texts, max_tokens)
    k = samples_per_prompt
    prompts = [prompt for prompt in prompts for _ in range(k)]
    lam = torch.tensor([float(s) for s in strengths], device=lm.device)
    continuations: list[list[str]] = [[] for _ in strengths]
    scores: list[list[np.ndarray]] = [[] for _ in strengths]
    times = {}
    with steer(lm.model, maps, 1.0, scaler) as manager:
        with _timed(times, "generate"):
            for number, batch in enumerate(batches(lm, prompts, batch_size, max_length=prompt_room(lm, sampling),
                                                   desc="generate", progress=progress)):
                first = number * batch_size
                rows = range(first, first + batch["input_ids"].shape[0])
                generators = [row_generator(seed, i // k, lm.device, i % k) for _ in strengths for i in rows]
                with _rows_at(manager, lam, len(rows)):
                    _split(generate_batch(lm, _repeated(batch, len(strengths)), sampling, generators), continuations)
        with _timed(times, "perplexity"), torch.inference_mode():
            for batch in batches(lm, texts, batch_size, max_length=max_tokens, desc="perplexity", progress=progress):
                with _rows_at(manager, lam, batch["input_ids"].shape[0]):
                    _split(list(batch_perplexity(lm, _repeated(batch, len(strengths)))), scores)
    share = {stage: seconds / len(strengths) for stage, seconds in times.items()}
    return [Evaluated(texts_k, float(np.mean(scores_k)), share, len(strengths))
            for texts_k, scores_k in zip(continuations, scores, strict=True)]


def _repeated(batch: dict[str, Tensor], times: int) -> dict[str, Tensor]:
    """The batch's rows ``times`` times over, one copy after the other (same padding as the batch alone)."""
    return {key: value.repeat(times, *([1] * (value.dim() - 1))) for key, value in batch.items()}


@contextmanager
def _rows_at(manager: HookManager, lam: Tensor, rows: int) -> Iterator[None]:
    """Steer copy k of a ``rows``-row batch at ``lam[k]``."""
    with manager.row_strengths(lam.repeat_interleave(rows)):
        yield


def _split(values: list[Any], into: list[list[Any]]) -> None:
    """Append the k-th equal slice of ``values`` to ``into[k]``."""
    size = len(values) // len(into)
    for k, part in enumerate(into):
        part.extend(values[k * size:(k + 1) * size])


@contextmanager
def _timed(times: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        times[stage] = time.perf_counter() - start
