"""Pooled activations per sentence and module, batched, pads excluded, cached on disk.

The cache key covers everything that changes the numbers: the model (name, config and a
weight fingerprint), the modules, the texts, the pooling, the site (module input or output),
the truncation length and any steering active while collecting. Passes stop right after the
last module they need: neither later layers nor the LM head run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import HookManager, Pooling, Scaler, Site, SteeringMap, StopForward
from dsas_bench.core.models import LoadedModel, cache_dir
from dsas_bench.core.progress import bar

MAX_LENGTH = 128


def model_fingerprint(lm: LoadedModel) -> str:
    """Name, config and a sample of every weight tensor: cheap, and changes when the weights do."""
    if not hasattr(lm, "_fingerprint"):
        digest = hashlib.sha256(lm.name.encode())
        digest.update(lm.model.config.to_json_string().encode())
        for key, value in lm.model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().flatten()[:4096].float().cpu().numpy().tobytes())
        lm._fingerprint = digest.hexdigest()[:16]
    return lm._fingerprint


def batches(lm: LoadedModel, texts: Sequence[str], batch_size: int, max_length: int = MAX_LENGTH,
            desc: str = "", progress: bool = True):
    """Tokenised, left-padded batches on the model's device, with a progress bar on long runs."""
    starts = range(0, len(texts), batch_size)
    for start in bar(starts, desc) if progress else starts:
        yield lm.tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                           truncation=True, max_length=max_length).to(lm.device)


def real_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so left padding does not shift absolute positions."""
    return (mask.cumsum(-1) - 1).clamp_min(0)


def partial_forward(lm: LoadedModel, manager: HookManager, modules: Sequence[str], texts: Sequence[str],
                    max_length: int = MAX_LENGTH, batch_size: int | None = None, progress: bool = False) -> None:
    """Run ``texts`` (in batches, all at once by default) with ``manager``'s hooks, each pass stopped
    after the last of ``modules``; left pads do not shift the positions of real tokens."""
    manager.stop_after(modules)
    with manager:
        for batch in batches(lm, texts, batch_size or len(texts), max_length, desc="activations", progress=progress):
            with contextlib.suppress(StopForward):
                lm.model(**batch, position_ids=real_positions(batch["attention_mask"]), use_cache=False)


def pooled_activations(lm: LoadedModel, texts: Sequence[str], modules: Sequence[str], *,
                       pooling: Pooling = "mean", site: Site = "output",
                       steering: Mapping[str, SteeringMap] | None = None, scaler: Scaler | None = None,
                       batch_size: int = 16, max_length: int = MAX_LENGTH, progress: bool = True,
                       use_cache: bool = True) -> dict[str, Tensor]:
    """(len(texts), d) float32 activations per module, pooled over each text's real tokens.

    ``steering`` maps are active at λ = 1 while collecting (incremental estimation), scaled by
    ``scaler`` if given; activations collected with a scaler are not cached.
    """
    use_cache = use_cache and scaler is None
    key = _cache_key(lm, texts, modules, pooling, site, steering, max_length)
    path = cache_dir() / "activations" / f"{key}.pt"
    if use_cache and path.exists():
        return torch.load(path)
    manager = HookManager(lm.model).steer(steering or {}, 1.0, scaler)
    capture = manager.capture(modules, pooling=pooling, site=site)
    with torch.no_grad():
        partial_forward(lm, manager, modules, texts, max_length, batch_size, progress)
    result = capture.stacked()
    if use_cache:
        atomic_save(result, path)
    return result


def _cache_key(lm: LoadedModel, texts: Sequence[str], modules: Sequence[str], pooling: str, site: str,
               steering: Mapping[str, SteeringMap] | None, max_length: int) -> str:
    spec = {"model": model_fingerprint(lm), "modules": list(modules), "pooling": pooling, "site": site,
            "max_length": max_length, "texts": hashlib.sha256("\x1e".join(texts).encode()).hexdigest(),
            "steering": {name: m.fingerprint() for name, m in (steering or {}).items()}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def load_state(path: str | Path, fmt: str, what: str) -> dict:
    """A dict saved with ``atomic_save`` whose ``format`` is ``fmt``, or a UsageError saying what is wrong."""
    return checked_state(read_torch(path, what), path, fmt, what)


def read_torch(path: str | Path, what: str) -> object:
    """What ``torch.load`` reads from ``path``, or a UsageError saying why it cannot."""
    try:
        return torch.load(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; give a saved {what} (.pt)") from None
    except Exception as exc:  # torch.load raises many kinds for a file that is not a state (pickle, zip, EOF...)
        raise UsageError(f"{path} is not a dsas_bench {what} ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); refit it, or give another file") from exc


def checked_state(saved: object, path: str | Path, fmt: str, what: str) -> dict:
    """``saved`` if it is a dict of format ``fmt``, else a UsageError."""
    if not isinstance(saved, dict) or saved.get("format") != fmt:
        raise UsageError(f"{path} is not a dsas_bench {what}")
    return saved


def atomic_save(obj: object, path: Path) -> None:
    """torch.save to a temporary file, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)
