"""Choose the modules to steer: regexes full-matched against ``named_modules()``, or named presets."""

from __future__ import annotations

import difflib
import re

from torch import nn

from dsas_bench.core.errors import UsageError

# Preset -> regex per architecture family (matched on ``config.model_type``). On Gemma-2/3, whose layers
# also norm the MLP output, "post-attn-norm" is the papers' ``.*post.*layernorm``: both post norms
# (ml-act's Gemma-2 default).
PRESETS: dict[str, dict[str, str]] = {
    "post-attn-norm": {
        "llama": r"model\.layers\.\d+\.post_attention_layernorm",
        "qwen2": r"model\.layers\.\d+\.post_attention_layernorm",
        "gemma2": r"model\.layers\.\d+\.post_(attention|feedforward)_layernorm",
        "gemma3_text": r"model\.layers\.\d+\.post_(attention|feedforward)_layernorm",
        "gpt2": r"transformer\.h\.\d+\.ln_2",
    },
    "o-proj": {
        "llama": r"model\.layers\.\d+\.self_attn\.o_proj",
        "qwen2": r"model\.layers\.\d+\.self_attn\.o_proj",
        "gemma2": r"model\.layers\.\d+\.self_attn\.o_proj",
        "gemma3_text": r"model\.layers\.\d+\.self_attn\.o_proj",
        "gpt2": r"transformer\.h\.\d+\.attn\.c_proj",
    },
    "layers": {
        "llama": r"model\.layers\.\d+",
        "qwen2": r"model\.layers\.\d+",
        "gemma2": r"model\.layers\.\d+",
        "gemma3_text": r"model\.layers\.\d+",
        "gpt2": r"transformer\.h\.\d+",
    },
}
# The papers' LinEAS / Linear-AcT hook pattern; Llama-family names match it too.
PRESETS["post-attn-norm"]["*"] = r".*post.*layernorm"


def preset_regex(preset: str, model_type: str) -> str:
    """The regex a preset stands for on this architecture family."""
    family = PRESETS[preset]
    if model_type in family:
        return family[model_type]
    if "*" in family:
        return family["*"]
    raise UsageError(f"preset {preset!r} has no pattern for model type {model_type!r} "
                     f"(known: {', '.join(sorted(family))}); pass a regex instead")


def select_modules(model: nn.Module, pattern: str) -> list[str]:
    """Names of the modules that ``pattern`` (a preset name or a regex) full-matches, in forward order.

    A pattern that matches nothing is an error naming the closest module names.
    """
    if pattern in PRESETS:
        pattern = preset_regex(pattern, getattr(model.config, "model_type", ""))
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"module pattern {pattern!r} is not a valid regex: {exc}") from exc
    names = [name for name, _ in model.named_modules() if name]
    chosen = [name for name in names if regex.fullmatch(name)]
    if not chosen:
        close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.3) or names[:5]
        raise UsageError(f"module pattern {pattern!r} matches no module of this model "
                         f"(regexes must match the whole name). Closest module names: {', '.join(close)}. "
                         f"Presets: {', '.join(PRESETS)}")
    return chosen
