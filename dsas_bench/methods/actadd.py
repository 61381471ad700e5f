"""ActAdd (Turner et al. 2023; METHODS.md §2): add the activation difference of contrast prompts.

v = mean(a⁺) − mean(a⁻) over last-token activations of the positive and negative prompts at
one module; T(h) = h + v there, at every position (``positions="all"``, as AcT and METHODS.md §2).
``positions="prompt-start"`` is Turner et al.'s own form: the prompts' activations position by
position, their difference h_A (n, d) added at the first n positions of each sequence (the prompts
of a pair must then have as many tokens; Turner et al. pad the shorter with spaces).

Without a prefix, on tokenizers that add no BOS (SmolLM2's), "Love" sits alone at position 0, the
attention sink, whose activation norm is several times a typical token's. ``prefix="auto"``
(default) puts a newline before each contrast prompt when the tokenizer adds no BOS itself, a
neutral token that takes position 0; ``"bos"`` puts the tokenizer's BOS token there instead (its
EOS when it has none), which on SmolLM2 (BOS ``<|im_start|>``) leaves "Love" nearly as large;
``"none"`` uses the prompts as they are; any other text is put before them literally. The prefix
used is in ``diagnostics``. The strength grid may reach beyond 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dsas_bench.core.activations import real_positions
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import HookManager, SteeringMap
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.maps import ShiftMap


def contrast_prefix(tokenizer, prefix: str) -> str:
    """The text put before each contrast prompt (``auto`` and ``bos``: '' when the tokenizer adds its own BOS)."""
    if not isinstance(prefix, str):
        raise UsageError(f"actadd prefix must be 'auto', 'bos', 'none' or a text, not {prefix!r}")
    if prefix not in ("auto", "bos"):
        return "" if prefix == "none" else prefix
    if tokenizer.bos_token_id is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        return ""
    if prefix == "auto":
        return "\n"
    start = tokenizer.bos_token or tokenizer.eos_token
    if start is None:
        raise UsageError("actadd prefix 'bos': this tokenizer has neither a BOS nor an EOS token; "
                         "use prefix='auto', a neutral prefix text or prefix='none'")
    return start


def token_activations(lm: LoadedModel, texts: Sequence[str], module: str) -> Tensor:
    """(texts, tokens, d) output of ``module`` at every token of ``texts``, which must have one token length."""
    ids = [lm.tokenizer(text)["input_ids"] for text in texts]
    lengths = sorted({len(row) for row in ids})
    if len(lengths) > 1:
        raise UsageError(f"actadd positions 'prompt-start' adds the prompts' activations position by position, so "
                         f"every contrast prompt needs the same number of tokens (got {lengths}): pad the shorter "
                         f"ones with spaces, as Turner et al. do")
    prefixes = [row[:n] for row in ids for n in range(1, lengths[0] + 1)]  # causal: the last token of each prefix
    batch = lm.tokenizer.pad({"input_ids": prefixes}, return_tensors="pt").to(lm.device)
    manager = HookManager(lm.model)
    capture = manager.capture([module], pooling="last")
    with manager, torch.no_grad():
        lm.model(**batch, position_ids=real_positions(batch["attention_mask"]), use_cache=False)
    return capture.stacked()[module].reshape(len(texts), lengths[0], -1)


class ActAdd(SteeringMethod):
    """One steering vector from contrast prompts, added at one module."""

    state_version = 2  # version 1 had no BOS prefix and no positions option
    defaults = {
        "positive": ("Love",),
        "negative": ("Hate",),
        "layer": None,  # index into the selected modules; None: a quarter of the way down
        "prefix": "auto",  # or "bos", "none", or a neutral text put before each contrast prompt
        "positions": "all",  # or "prompt-start" (Turner et al.)
    }
    default_modules = "layers"
    pooling = "last"
    strength_range = (*(i / 10 for i in range(1, 11)), 2.0, 3.0, 4.0, 5.0)  # AcT's ActAdd sweep (METHODS.md §2)

    def fit(self, lm: LoadedModel, modules: Sequence[str], data: FitSets, batch_size: int = 16) -> SteeringMethod:
        """Uses the contrast prompts in the options; the fit sets are not needed."""
        positive, negative = list(self.options["positive"]), list(self.options["negative"])
        if len(positive) != len(negative) or not positive:
            raise UsageError("actadd needs as many positive as negative contrast prompts (at least one pair)")
        if self.options["positions"] not in ("all", "prompt-start"):
            raise UsageError(f"unknown actadd positions {self.options['positions']!r}: use all or prompt-start")
        layer = self.options["layer"]
        index = len(modules) // 4 if layer is None else layer
        if not -len(modules) <= index < len(modules):
            raise UsageError(f"actadd layer {layer} is out of range for the {len(modules)} selected modules")
        module = modules[index]
        self._bind(lm)
        prefix = contrast_prefix(lm.tokenizer, self.options["prefix"])
        plus, minus = ([prefix + text for text in texts] for texts in (positive, negative))
        if self.options["positions"] == "prompt-start":
            plus, minus = token_activations(lm, [*plus, *minus], module).split(len(plus))
        else:
            plus, minus = (self.activations(lm, texts, [module], batch_size=batch_size, progress=False)[module]
                           for texts in (plus, minus))
        self.state = {module: {"v": plus.mean(0) - minus.mean(0)}}
        self.diagnostics = {"contrast_prefix": prefix}
        return self

    def make_map(self, params: dict[str, Tensor]) -> SteeringMap:
        return ShiftMap(params["v"], self.options["positions"])
