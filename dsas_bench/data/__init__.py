"""Data: RealToxicityPrompts prompts, Jigsaw toxic / non-toxic comments, neutral texts, seeded fit sets."""

from dsas_bench.data.loaders import (
    DEMO_DIR,
    JIGSAW_HUB,
    JIGSAW_LABELS,
    RTP_HUB,
    TEXT_HUB,
    TEXT_HUB_CONFIG,
    FitSets,
    Prompt,
    balanced_sample,
    fit_sets,
    load_jigsaw,
    load_prompts,
    load_texts,
)

__all__ = [
    "DEMO_DIR",
    "JIGSAW_HUB",
    "JIGSAW_LABELS",
    "RTP_HUB",
    "TEXT_HUB",
    "TEXT_HUB_CONFIG",
    "FitSets",
    "Prompt",
    "balanced_sample",
    "fit_sets",
    "load_jigsaw",
    "load_prompts",
    "load_texts",
]
