"""The texts, model, behaviour, scorer and utility metrics a run reads, loaded once per process."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass

from dsas_bench.behaviors import get_behavior
from dsas_bench.behaviors.base import Behavior, Scorer, data_source
from dsas_bench.core.data import FitSets, Prompt, fit_sets, load_texts
from dsas_bench.core.devices import device_for
from dsas_bench.core.errors import UsageError
from dsas_bench.core.generation import SamplingConfig
from dsas_bench.core.models import LoadedModel, load_model
from dsas_bench.run.config import RunConfig, config_hash
from dsas_bench.utility import build_utility
from dsas_bench.utility.base import UtilityMetric

CALIBRATION_SEED = 0  # the calibration texts: a seeded sample of the neutral texts left after the perplexity ones
HUB_CONTROL_POOL = 2000  # neutral hub texts streamed past the perplexity texts to sample the control set from


@dataclass(frozen=True)
class Inputs:
    """The texts a run reads.

    ``control`` never holds a perplexity text (``neutral``): DSAS is fitted to leave control text alone,
    so a control sentence scored for perplexity would flatter every DSAS mode. ``calibration`` (the
    texts ``--strengths auto`` calibrates λ_max on) is disjoint from both, for the same reason.
    """

    prompts: list[Prompt]
    source: list[str]  # the behaviour's texts to steer away from
    target: list[str]  # and towards
    control: list[str]
    neutral: list[str]
    calibration: list[str]

    def fit_sets(self, config: RunConfig, seed: int) -> FitSets:
        if len(self.control) < config.fit_n:
            raise UsageError(f"asked for {config.fit_n} control texts, but only {len(self.control)} of the control "
                             f"data are not among the {len(self.neutral)} perplexity texts and the "
                             f"{len(self.calibration)} calibration texts: lower --fit-n or --n-perplexity-texts, "
                             f"or give more neutral text with --control-data")
        return fit_sets(self.source, self.target, self.control, config.fit_n, seed)

    @property
    def prompt_set(self) -> str:
        return config_hash([p.text for p in self.prompts])[:8]

    @functools.cached_property
    def digests(self) -> dict[str, str]:
        """Hashes of the texts a cell is measured on (``scored``) and of those steering is fitted on (``fit``)."""
        return {"scored": config_hash({"prompts": [(p.text, p.toxicity) for p in self.prompts],
                                       "perplexity": self.neutral}),
                "fit": config_hash({"source": self.source, "target": self.target, "control": self.control}),
                "calibration": config_hash(self.calibration)}


INPUT_FIELDS = ("fit_data", "fit_label", "control_data", "prompts", "challenging_only", "n_prompts", "prompt_seed",
                "perplexity_data", "n_perplexity_texts", "n_calibration_texts", "neutral_field", "neutral_filter")


def inputs_for(config: RunConfig) -> Inputs:
    return _load_inputs(_behavior_key(config), *(getattr(config, name) for name in INPUT_FIELDS))


def _behavior_key(config: RunConfig) -> str:
    """The run's behaviour and its options, as the hashable key the per-process caches take."""
    return json.dumps([config.behavior, config.behavior_options], sort_keys=True)


def behavior_for(config: RunConfig) -> Behavior:
    return _cached_behavior(_behavior_key(config))


@functools.lru_cache(maxsize=2)
def _cached_behavior(key: str) -> Behavior:
    name, options = json.loads(key)
    return get_behavior(name, **options)


@functools.lru_cache(maxsize=2)
def _load_inputs(behavior: str, fit_data: str, fit_label: str, control_data: str, prompts: str,
                 challenging_only: bool, n_prompts: int | None, prompt_seed: int, perplexity_data: str,
                 n_perplexity_texts: int, n_calibration_texts: int, neutral_field: str,
                 neutral_filter: str | None) -> Inputs:
    chosen = _cached_behavior(behavior)
    source, target = chosen.fit_texts(fit_data, fit_label)
    neutral = load_texts(**data_source(perplexity_data), kind="neutral", limit=n_perplexity_texts,
                         field=neutral_field, condition=neutral_filter)
    pool = chosen.control_texts(control_data, hub_limit=n_perplexity_texts + HUB_CONTROL_POOL,
                                field=neutral_field, condition=neutral_filter)
    scored = set(neutral)
    rest = list(dict.fromkeys(text for text in pool if text not in scored))  # distinct, in order
    picked = set(random.Random(CALIBRATION_SEED).sample(range(len(rest)), min(n_calibration_texts, len(rest))))
    return Inputs(
        prompts=chosen.prompts(prompts, challenging_only=challenging_only, n=n_prompts, seed=prompt_seed),
        source=source, target=target, neutral=neutral,
        calibration=[text for i, text in enumerate(rest) if i in picked],
        control=[text for i, text in enumerate(rest) if i not in picked])


@functools.lru_cache(maxsize=1)
def _model(name: str, device: str, dtype: str) -> LoadedModel:
    return load_model(name, device=device, dtype=dtype)


def scorer_for(config: RunConfig) -> Scorer:
    return _cached_scorer(_behavior_key(config), config.scorer, json.dumps(config.scorer_options, sort_keys=True))


@functools.lru_cache(maxsize=1)
def _cached_scorer(behavior: str, name: str, options: str) -> Scorer:
    return _cached_behavior(behavior).scorer(name, json.loads(options))


def utility_for(config: RunConfig) -> list[UtilityMetric]:
    """The run's utility metrics (``perplexity``, ``lm-eval`` and plug-ins), built with their options."""
    return build_utility(config.utility, config.utility_options)


def model_for(config: RunConfig) -> LoadedModel:
    return _model(config.model, device_for(config.device), config.dtype)


def sampling_for(config: RunConfig) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          top_p=config.top_p, repetition_penalty=config.repetition_penalty)
