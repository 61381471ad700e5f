"""The one hook manager: every forward hook dsas_bench puts on a model goes through it.

At each steered module ℓ and every token position it applies (METHODS.md §1)

    h' = h + λ · s_ℓ(h) · (T_ℓ(h) − h)

where T_ℓ is the method's map, λ the global strength and s_ℓ the scale from an optional scaler
(1 when there is none). λ is a float, or one strength per batch row: a (batch, 1, 1) tensor, given
to ``steer`` or set for the batch in progress with ``HookManager.row_strengths`` (strength-batched
evaluation: the rows of several cells of one intervention share a batch). A map may steer only
some positions (T(h) = h at the others), chosen from the ``TokenContext`` the manager keeps for
each pass. It also captures pooled activations, with pads excluded. Use it as a context manager;
every hook is removed on exit, also when an exception is raised::

    with steer(model, method.maps(), strength=0.5):
        model.generate(**batch)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

Pooling = Literal["mean", "last"]
Site = Literal["output", "input"]


class SteeringMap(nn.Module):
    """T_ℓ for one module: maps activations h (float32, shape (..., d)) to their steered target.

    Subclasses keep their parameters as buffers (so ``fingerprint`` and ``state_dict`` see them)
    and implement ``forward``; affine maps may override ``displacement`` with a fused expression.
    A map that steers only some token positions overrides ``step``, which sees the ``TokenContext``;
    settings other than tensors go in ``extra_repr`` (the fingerprint hashes it).
    """

    def displacement(self, h: Tensor) -> Tensor:
        """T(h) − h."""
        return self(h) - h

    def step(self, h: Tensor, context: TokenContext) -> Tensor:
        """T(h) − h for the tokens of this pass (``context`` says which positions they are); by default every token."""
        return self.displacement(h)

    def fingerprint(self) -> str:
        """A hash of the map's type, settings and tensors, for cache keys."""
        digest = hashlib.sha256(type(self).__name__.encode())
        digest.update(self.extra_repr().encode())
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


@dataclass
class TokenContext:
    """What hooks know about the tokens of the forward pass in progress.

    ``mask`` (batch, new tokens) is True at real tokens and False at pads, or None when the
    caller passed no attention mask. ``new_sequence`` is True on a pass that starts sequences
    (a prefill, or any pass without a KV cache) and False on cached decoding steps. ``strength``,
    when set, replaces every steering's λ.
    ``positions`` (batch, new tokens) counts each token's place among the real tokens of its
    sequence (0 for the first; pads before it get −1), across KV-cached passes. ``prompt_length``
    (batch,) is the number of real tokens of the pass that started the sequences, kept by cached
    steps and by passes without a cache that re-run those sequences with tokens appended.
    """

    mask: Tensor | None = None
    new_sequence: bool = True
    strength: Tensor | None = None  # per-row λ (batch, 1, 1) of the batch in progress; None: the global λ
    positions: Tensor | None = None
    prompt_length: Tensor | None = None


class StopForward(Exception):
    """Raised by a ``stop_after`` hook to end a forward pass early; the caller catches it."""


class Scaler(Protocol):
    """s_ℓ(h): how much to steer, from the un-steered value ``h`` at module ``module``."""

    def __call__(self, module: str, h: Tensor, context: TokenContext) -> Tensor:
        """Return scales in [0, 1] broadcastable to h, typically (batch, tokens, 1)."""
        ...


def pool(h: Tensor, mask: Tensor | None, pooling: Pooling) -> Tensor:
    """Pool (batch, tokens, d) to (batch, d) over real tokens: their mean, or the last one."""
    if mask is None:
        return h.mean(dim=1) if pooling == "mean" else h[:, -1]
    weights = mask.to(h.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    last = mask.shape[1] - 1 - mask.flip(1).to(torch.int64).argmax(dim=1)
    return h[torch.arange(h.shape[0], device=h.device), last]


@dataclass
class Capture:
    """Pooled activations per module, one (batch, d) tensor per forward pass."""

    pooling: Pooling = "mean"
    site: Site = "output"
    keep_grad: bool = False
    batches: dict[str, list[Tensor]] = field(default_factory=dict)

    def stacked(self) -> dict[str, Tensor]:
        """(sentences, d) per module, in the order the sentences were fed."""
        return {name: torch.cat(parts) for name, parts in self.batches.items()}

    def clear(self) -> None:
        self.batches.clear()


def _main_tensor(output: Tensor | tuple) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_main(output: Tensor | tuple, value: Tensor) -> Tensor | tuple:
    return (value, *output[1:]) if isinstance(output, tuple) else value


class HookManager:
    """Owns the forward hooks on one model; hooks run in the order they were added."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.context = TokenContext()
        self._sequence_ids: Tensor | None = None
        self._pending: list[tuple[str, Callable]] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._modules = dict(model.named_modules())

    # -- building -------------------------------------------------------------------------
    def steer(self, maps: Mapping[str, SteeringMap], strength: float | Tensor = 1.0,
              scaler: Scaler | None = None) -> HookManager:
        """Steer each named module with its map at strength λ (a float, or (batch, 1, 1) per row), scaled by
        ``scaler``."""
        for name, steering_map in maps.items():
            self._pending.append((self._checked(name), self._steering_hook(name, steering_map, strength, scaler)))
        return self

    def capture(self, modules: Iterable[str], pooling: Pooling = "mean", site: Site = "output",
                keep_grad: bool = False) -> Capture:
        """Record pooled activations (module output, or its input) at each named module.

        A capture added after ``steer`` on the same module sees the steered output; added
        before, the un-steered one.
        """
        capture = Capture(pooling=pooling, site=site, keep_grad=keep_grad)
        for name in modules:
            self._pending.append((self._checked(name), self._capture_hook(name, capture)))
        return capture

    def stop_after(self, modules: Iterable[str]) -> HookManager:
        """End every forward pass by raising ``StopForward`` once the last of ``modules`` has run.

        For passes that only need activations up to those modules (training on pooled captures).
        "Last" is in ``named_modules()`` order; call this after ``steer`` and ``capture``, since the
        hooks on one module run in the order they were added.
        """
        order = list(self._modules)
        last = max((self._checked(name) for name in modules), key=order.index)
        self._pending.append((last, self._stop_hook))
        return self

    def _checked(self, name: str) -> str:
        if name not in self._modules:
            raise KeyError(f"model has no module named {name!r}")
        return name

    # -- the hooks ------------------------------------------------------------------------
    def _steering_hook(self, name: str, steering_map: SteeringMap, strength: float | Tensor,
                       scaler: Scaler | None) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple:
            h = _main_tensor(output)
            x = h.float()
            step = steering_map.step(x, self.context)
            if scaler is not None:
                step = step * scaler(name, x, self.context)
            lam = strength if self.context.strength is None else self.context.strength
            # addcmul rounds a row exactly as add(alpha=λ) does, so a row's λ gives the same bits either way
            steered = torch.addcmul(x, step, lam) if isinstance(lam, Tensor) else torch.add(x, step, alpha=lam)
            return _replace_main(output, steered.to(h.dtype))

        return hook

    def _capture_hook(self, name: str, capture: Capture) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
            h = args[0] if capture.site == "input" else _main_tensor(output)
            pooled = pool(h.float(), self.context.mask, capture.pooling)
            if not capture.keep_grad:
                pooled = pooled.detach().cpu()
            capture.batches.setdefault(name, []).append(pooled)

        return hook

    @staticmethod
    def _stop_hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
        raise StopForward

    def _track_tokens(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Root pre-hook: record which of this pass's tokens are real, where they sit in their sequences and
        whether the pass starts sequences."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        tokens = kwargs["inputs_embeds"] if ids is None else ids
        batch, length = tokens.shape[:2]
        mask = kwargs.get("attention_mask")
        context = self.context
        if isinstance(mask, Tensor) and mask.dim() == 2:
            counts = mask.bool().cumsum(1)
            context.mask = mask[:, -length:].bool()
        else:
            cache = kwargs.get("past_key_values")
            past = 0 if cache is None else cache.get_seq_length()
            counts = torch.arange(1, past + length + 1, device=tokens.device).expand(batch, -1)
            context.mask = None
        context.new_sequence = counts.shape[1] == length
        context.positions = counts[:, -length:] - 1
        if context.new_sequence:
            if not self._reruns(ids):
                context.prompt_length = counts[:, -1]
            self._sequence_ids = ids

    def _reruns(self, ids: Tensor | None) -> bool:
        """Whether a pass that starts sequences re-runs the last such pass's sequences with tokens appended
        (generation without a KV cache)."""
        last = self._sequence_ids
        return (ids is not None and last is not None and ids.shape[0] == last.shape[0]
                and ids.shape[1] > last.shape[1] and bool((ids[:, :last.shape[1]] == last).all()))

    @contextlib.contextmanager
    def row_strengths(self, strengths: Tensor) -> Iterator[None]:
        """Inside the block, batch row i is steered at ``strengths[i]`` (shape (batch,)) instead of the global λ."""
        self.context.strength = strengths.reshape(-1, 1, 1).float()
        try:
            yield
        finally:
            self.context.strength = None

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> HookManager:
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._track_tokens, with_kwargs=True))
            for name, hook in self._pending:
                self._handles.append(self._modules[name].register_forward_hook(hook))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this manager registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def steer(model: nn.Module, maps: Mapping[str, SteeringMap], strength: float | Tensor = 1.0,
          scaler: Scaler | None = None) -> HookManager:
    """``with steer(model, maps, λ):`` — steering active inside the block only."""
    return HookManager(model).steer(maps, strength, scaler)


def hook_count(model: nn.Module) -> int:
    """How many forward and pre-forward hooks the modules of ``model`` carry, ours and others' (transformers
    itself adds some, e.g. the first time hidden states are asked for): compare before and after."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
