"""Forward passes that end right after the last module they need (training losses, early-module probes).

Nothing after that module runs — neither later layers nor the LM head — so activations at early
modules cost a fraction of a full pass. Uncached: use ``activations.pooled_activations`` for
full-depth activations worth keeping on disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from dsas_bench.activations import MAX_LENGTH, batches
from dsas_bench.models import LoadedModel
from dsas_bench.steering.hooks import HookManager, Scaler, SteeringMap, StopForward


def partial_forward(lm: LoadedModel, manager: HookManager, modules: Sequence[str], texts: Sequence[str],
                    max_length: int = MAX_LENGTH, batch_size: int | None = None) -> None:
    """Run ``texts`` (in batches, all at once by default) with ``manager``'s hooks, each pass stopped
    after the last of ``modules``."""
    manager.stop_after(modules)
    for batch in batches(lm, texts, batch_size or len(texts), max_length, progress=False):
        with manager, contextlib.suppress(StopForward):
            lm.model(**batch, use_cache=False)


def pooled_until(lm: LoadedModel, texts: Sequence[str], modules: Sequence[str], *,
                 maps: Mapping[str, SteeringMap] | None = None, strength: float = 1.0, scaler: Scaler | None = None,
                 batch_size: int = 16, max_length: int = MAX_LENGTH) -> dict[str, Tensor]:
    """(len(texts), d) mean-pooled activations per module (pads excluded), with ``maps`` steering if given."""
    manager = HookManager(lm.model).steer(maps or {}, strength, scaler)
    capture = manager.capture(modules)
    with torch.no_grad():
        partial_forward(lm, manager, modules, texts, max_length, batch_size)
    return capture.stacked()
