"""Run configuration: task YAMLs in ``tasks/``, overridden by command-line flags, validated up front.

Every field has a default: offline inputs (the project's demo data, the packaged SmolLM2) and the
papers' protocol settings; ``tasks/demo.yaml`` trims the sizes to minutes on a CPU. A task file
sets any subset of the fields; an unknown key is an error. Data fields take ``demo`` (the project's
own data), ``hub`` (the Hugging Face hub) or a local path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsas_bench.core.data import TASKS_DIR
from dsas_bench.core.errors import UsageError
from dsas_bench.core.fieldtypes import check_value, declared_types, describe, parse_setting
from dsas_bench.utility import DEFAULT_UTILITY, check_utility

# Fields that decide how a run executes, not what it computes: left out of the config hash.
# The strengths and what chooses them enter each cell's id as the strength itself.
EXECUTION_FIELDS = ("strengths", "n_strengths", "strength_spacing", "max_delta_ppl", "seeds", "output", "jobs",
                    "backend", "scheduler", "progress", "devices", "cells_per_batch")
# Fields that only concern steering: left out of the unsteered baseline's config, so every sweep shares it.
STEERING_FIELDS = ("modules", "intervention", "fit_data", "fit_label", "control_data", "fit_n", "dsas_options",
                   "n_calibration_texts")


@dataclass
class RunConfig:
    """Everything a run needs; the defaults run offline with the papers' protocol settings."""

    task: str = "demo"
    # what to steer
    model: str = "smollm2"
    device: str = "auto"
    dtype: str = "auto"
    # what to steer away from and towards: toxicity | sentiment | a plug-in (dsas_bench/behaviors)
    behavior: str = "toxicity"
    behavior_options: dict[str, Any] = field(default_factory=dict)  # e.g. hub_dataset for sentiment
    methods: list[str] = field(default_factory=lambda: ["linacts"])
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dsas: list[str] = field(default_factory=lambda: ["off"])
    dsas_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per DSAS mode
    modules: str | None = None  # a preset or regex; None: each method's default preset
    intervention: str | None = None  # a saved fitted state to use instead of fitting
    # auto | paper | a list | {method or method:mode: grid}, checked by dsas_bench/strengths.py
    strengths: Any = "auto"
    n_strengths: int = 3  # auto: strengths per (method, DSAS mode, seed), in (0, λ_max]
    strength_spacing: str = "linear"  # auto: linear | geometric (halving from λ_max)
    max_delta_ppl: float | str = 1.0  # auto: the utility budget, absolute (AcT's +1) or relative ("5%")
    # neutral texts for calibration, kept apart from perplexity and control texts; 8 were too few on SmolLM2:
    # a mean of per-text perplexities is heavy-tailed (ActAdd: +5 % on 8 texts, +28 % on the other 62)
    n_calibration_texts: int = 32
    seeds: list[int] = field(default_factory=lambda: [0])
    # fitting data
    fit_data: str = "demo"  # demo | hub | path to a Jigsaw train.csv
    fit_label: str = "toxic"
    control_data: str = "demo"  # demo | hub | path to neutral texts
    fit_n: int = 32
    # prompts and generation
    prompts: str = "demo"  # demo | hub | path to a RealToxicityPrompts jsonl
    n_prompts: int | None = 40
    challenging_only: bool = False
    prompt_seed: int = 42
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 0.3
    repetition_penalty: float = 1.2
    samples_per_prompt: int = 1  # the papers' % toxic: 1; RealToxicityPrompts' EMT / Toxicity Probability: 25
    # measurements
    scorer: str = "auto"
    scorer_options: dict[str, Any] = field(default_factory=dict)  # e.g. variant: unbiased for detoxify
    perplexity_data: str = "demo"  # demo | hub | path to neutral texts
    n_perplexity_texts: int = 50  # the papers: 20,000; the rest of the neutral text is the control pool
    perplexity_tokens: int = 50
    # the jsonl field of the neutral texts (perplexity, control, calibration): a dotted path, "+" concatenates
    neutral_field: str = "text"
    neutral_filter: str | None = None  # keep the neutral records it holds for, e.g. continuation.toxicity<0.5
    lm_eval_tasks: list[str] = field(default_factory=lambda: ["demo_mc"])  # TASK or TASK:METRIC (default acc)
    lm_eval_include: list[str] = field(default_factory=list)  # lm-eval task folders besides tasks/lm_eval
    lm_eval_fewshot: int | None = None
    lm_eval_limit: int | None = None
    utility: list[str] = field(default_factory=lambda: list(DEFAULT_UTILITY))  # utility metrics, in order
    utility_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per utility metric
    # execution
    batch_size: int = 16
    output: str = "results/demo"
    jobs: int = 1
    backend: str = "loky"  # loky (local processes) | dask (a Dask cluster, see --scheduler)
    scheduler: str | None = None  # Dask scheduler address, e.g. tcp://10.0.0.5:8786
    progress: bool = True
    devices: list[str] | None = None  # one worker per device (auto: every visible GPU, else the CPU); None: --jobs
    cells_per_batch: int | None = None  # cells of one intervention sharing a batch; None: all its strengths

    def validate(self) -> RunConfig:
        """Check what can be checked without loading anything; raise UsageError naming the fix."""
        from dsas_bench.run.strengths import SPACINGS, check_strengths, parse_budget

        self.check_values()
        self.strengths = check_strengths(self.strengths)
        parse_budget(self.max_delta_ppl)
        if self.strength_spacing not in SPACINGS:
            raise UsageError(f"unknown strength spacing {self.strength_spacing!r}: use one of {', '.join(SPACINGS)}")
        if not self.seeds:
            raise UsageError("give at least one seed")
        for name in ("n_strengths", "n_calibration_texts", "fit_n", "max_new_tokens", "samples_per_prompt",
                     "batch_size", "jobs", "n_perplexity_texts", "perplexity_tokens"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_prompts is not None and self.n_prompts < 1:
            raise UsageError(f"n_prompts must be at least 1, got {self.n_prompts}")
        if self.backend not in {"loky", "dask"}:
            raise UsageError(f"unknown backend {self.backend!r}: use loky (local processes) or dask")
        self._validate_workers()
        self.check_steering()
        self.utility, self.utility_options = check_utility(self.utility, self.utility_options)
        return self

    def check_steering(self) -> None:
        """Methods, DSAS modes and their options (this imports torch: after the checks that need nothing)."""
        from dsas_bench.methods import get_method
        from dsas_bench.scalers import SCALERS, check_scaler

        self.methods = [get_method(name).name for name in self.methods]
        for name in self.methods:
            get_method(name)(**self.method_options.get(name, {}))  # unknown options fail here
        self.dsas = [SCALERS.canonical(mode) for mode in self.dsas]
        self.dsas_options = {SCALERS.canonical(mode): options for mode, options in self.dsas_options.items()}
        unused = sorted(set(self.dsas_options) - set(self.dsas))
        if unused:
            raise UsageError(f"DSAS options given for mode {', '.join(unused)}, which this run does not use "
                             f"(its modes: {', '.join(self.dsas)}): name a mode of the run")
        for mode in self.dsas:
            for name in self.methods:
                self.dsas_options[mode] = check_scaler(mode, name, self.dsas_options.get(mode, {}))
        self.dsas_options = {mode: options for mode, options in self.dsas_options.items() if options}
        if self.intervention and (len(self.methods) > 1 or len(self.dsas) > 1):
            raise UsageError("--intervention gives one fitted state: use it with a single method and DSAS mode")

    def check_values(self) -> None:
        """The checks that need no model and no torch: shapes, ranges, the files named."""
        from dsas_bench.behaviors import check_behavior

        self.behavior, self.behavior_options = check_behavior(self.behavior, self.behavior_options)
        for name in ("methods", "dsas"):
            if not getattr(self, name):
                raise UsageError(f"{name} is empty: give at least one, e.g. --methods linacts --dsas-modes off,on")
        if self.temperature <= 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise UsageError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.intervention and not Path(self.intervention).is_file():
            raise UsageError(f"--intervention {self.intervention}: no such file; give a saved state (.pt), e.g. "
                             f"<output>/interventions/<method>-<dsas>-seed0/method.pt")

    def _validate_workers(self) -> None:
        """--devices starts one local worker per device, so it takes neither --jobs nor a Dask cluster."""
        if self.cells_per_batch is not None and self.cells_per_batch < 1:
            raise UsageError(f"cells_per_batch must be at least 1 (1: every cell alone), got {self.cells_per_batch}")
        if self.devices is None:
            return
        if isinstance(self.devices, str):  # a task file's "devices: cuda:0,cuda:1"
            self.devices = [device.strip() for device in self.devices.split(",") if device.strip()]
        if not self.devices or ("auto" in self.devices and len(self.devices) > 1):
            raise UsageError(f"--devices {','.join(self.devices)}: give auto alone or a list such as cuda:0,cuda:1")
        if self.jobs != 1:
            raise UsageError("--devices starts one worker per device: leave out --jobs (or give --jobs 1)")
        if self.backend != "loky":
            raise UsageError("--devices places local workers; on a Dask cluster each worker takes its device from "
                             "its own environment (CUDA_VISIBLE_DEVICES): leave out --devices, use --device auto")

    def cell_config(self, method: str, dsas: str) -> dict[str, Any]:
        """The resolved config of one (method, DSAS mode) run, without the execution fields.

        The unsteered baseline (method ``none``) also drops the steering fields.
        """
        skipped = (*EXECUTION_FIELDS, "methods", "dsas", "method_options")
        if method == "none":
            skipped += STEERING_FIELDS
        config = {k: v for k, v in dataclasses.asdict(self).items() if k not in skipped}
        if method != "none":
            config["dsas_options"] = self.dsas_options.get(dsas, {})
        return {**config, "method": method, "dsas": dsas, "method_options": self.method_options.get(method, {})}


def config_hash(config: dict[str, Any]) -> str:
    """A stable short hash of a JSON-able config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def task_path(task: str) -> Path:
    """A task name from ``tasks/`` or a path to a YAML file."""
    path = Path(task)
    if path.suffix in {".yaml", ".yml"}:
        if not path.exists():
            raise UsageError(f"task file {path} not found")
        return path
    path = TASKS_DIR / f"{task}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))
        raise UsageError(f"unknown task {task!r}: use one of {', '.join(known)} or a path to a YAML file")
    return path


def task_values(task: str) -> dict[str, Any]:
    """The keys a task file sets."""
    path = task_path(task)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid YAML: {' '.join(str(exc).split())}; fix the file") from exc
    if not isinstance(values, dict):
        raise UsageError(f"{path}: a task file is a mapping of config keys, got {type(values).__name__}")
    return values


def demo_values() -> dict[str, Any]:
    """Every config key as a run of the default ``demo`` task sees it (unvalidated)."""
    return {**dataclasses.asdict(RunConfig()), **task_values("demo")}


def load_config(task: str = "demo", overrides: dict[str, Any] | None = None) -> RunConfig:
    """The task's YAML over the defaults, then ``overrides`` (flags given on the command line)."""
    values = _checked(str(task_path(task)), task_values(task))
    given = _checked("command line", overrides or {})
    values.pop("task", None)
    return RunConfig(task=task, **{**values, **given}).validate()


def _checked(source: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against the fields' names and declared types (and coerced to them)."""
    typed = field_types()
    unknown = sorted(set(values) - set(typed))
    if unknown:
        raise UsageError(f"{source}: unknown config key {', '.join(map(repr, unknown))}; "
                         f"known keys: {', '.join(sorted(typed))}")
    return {key: _field_value(key, check_value(value, typed[key], f"{source}: {key}"), f"{source}: {key}")
            for key, value in values.items()}


def _field_value(key: str, value: Any, where: str) -> Any:
    """``value`` of field ``key`` checked beyond its type where a field's meaning needs it (``strengths``)."""
    if key != "strengths":
        return value
    from dsas_bench.run.strengths import check_strengths

    try:
        return check_strengths(value)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def field_types() -> dict[str, Any]:
    """Every config field and its declared type."""
    return declared_types(RunConfig)


def settable_fields() -> dict[str, Any]:
    """The fields ``--set`` takes (all but ``task``, which ``--task`` names) and their declared types."""
    return {name: kind for name, kind in field_types().items() if name != "task"}


def parse_settings(settings: list[tuple[str, str]]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as config values, each parsed and checked by its field's type."""
    typed = settable_fields()
    parsed: dict[str, Any] = {}
    for key, text in settings:
        if key not in typed:
            raise UsageError(f"--set {key}: no such config field; the fields are: "
                             f"{', '.join(f'{name} ({describe(kind)})' for name, kind in typed.items())}")
        parsed[key] = _field_value(key, parse_setting(text, typed[key], f"--set {key}"), f"--set {key}")
    return parsed
