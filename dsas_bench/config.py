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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsas_bench.errors import UsageError


def _tasks_dir() -> Path:
    """The repository's ``tasks/`` in a source checkout; the copy a wheel installs under ``<prefix>/share``."""
    checkout = Path(__file__).resolve().parents[1] / "tasks"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "dsas_bench" / "tasks"


TASKS_DIR = _tasks_dir()
# Fields that decide how a run executes, not what it computes: left out of the config hash.
# The strengths and what chooses them enter each cell's id as the strength itself.
EXECUTION_FIELDS = ("strengths", "n_strengths", "strength_spacing", "max_delta_ppl", "seeds", "output", "jobs",
                    "backend", "scheduler", "progress")
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
    methods: list[str] = field(default_factory=lambda: ["linacts"])
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dsas: list[str] = field(default_factory=lambda: ["off"])
    dsas_options: dict[str, Any] = field(default_factory=dict)
    modules: str | None = None  # a preset or regex; None: each method's default preset
    intervention: str | None = None  # a saved fitted state to use instead of fitting
    # auto | paper | a list | {method or method:mode: grid}, see dsas_bench/strengths.py
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
    # measurements
    scorer: str = "auto"
    scorer_options: dict[str, Any] = field(default_factory=dict)  # e.g. variant: unbiased for detoxify
    perplexity_data: str = "demo"  # demo | hub | path to neutral texts
    n_perplexity_texts: int = 50  # the papers: 20,000; the rest of the neutral text is the control pool
    perplexity_tokens: int = 50
    lm_eval_tasks: list[str] = field(default_factory=lambda: ["demo_mc"])
    lm_eval_fewshot: int | None = None
    lm_eval_limit: int | None = None
    # execution
    batch_size: int = 16
    output: str = "results/demo"
    jobs: int = 1
    backend: str = "loky"  # loky (local processes) | dask (a Dask cluster, see --scheduler)
    scheduler: str | None = None  # Dask scheduler address, e.g. tcp://10.0.0.5:8786
    progress: bool = True

    def validate(self) -> RunConfig:
        """Check what can be checked without loading anything; raise UsageError naming the fix."""
        from dsas_bench.scaler import scaler_options
        from dsas_bench.steering.registry import get_method
        from dsas_bench.strengths import SPACINGS, check_strengths, parse_budget

        self.methods = [get_method(name).name for name in self.methods]
        for name in self.methods:
            get_method(name)(**self.method_options.get(name, {}))  # unknown options fail here
        for mode in self.dsas:
            unknown = sorted(set(self.dsas_options) - set(scaler_options(mode))) if mode != "off" else []
            if unknown:
                raise UsageError(f"DSAS mode {mode!r} has no option {', '.join(unknown)}; its options are: "
                                 f"{', '.join(scaler_options(mode))}")
        if "e2e" in self.dsas and any(name != "lineas" for name in self.methods):
            raise UsageError("--dsas e2e trains the scaler jointly with LinEAS: use it with --method lineas only")
        if self.intervention and (len(self.methods) > 1 or len(self.dsas) > 1):
            raise UsageError("--intervention gives one fitted state: use it with a single method and DSAS mode")
        self.strengths = check_strengths(self.strengths)
        parse_budget(self.max_delta_ppl)
        if self.strength_spacing not in SPACINGS:
            raise UsageError(f"unknown strength spacing {self.strength_spacing!r}: use one of {', '.join(SPACINGS)}")
        if not self.seeds:
            raise UsageError("give at least one seed")
        for name in ("n_strengths", "n_calibration_texts", "fit_n", "max_new_tokens", "batch_size", "jobs",
                     "n_perplexity_texts", "perplexity_tokens"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_prompts is not None and self.n_prompts < 1:
            raise UsageError(f"n_prompts must be at least 1, got {self.n_prompts}")
        if self.backend not in {"loky", "dask"}:
            raise UsageError(f"unknown backend {self.backend!r}: use loky (local processes) or dask")
        return self

    def cell_config(self, method: str, dsas: str) -> dict[str, Any]:
        """The resolved config of one (method, DSAS mode) run, without the execution fields.

        The unsteered baseline (method ``none``) also drops the steering fields.
        """
        skipped = (*EXECUTION_FIELDS, "methods", "dsas", "method_options")
        if method == "none":
            skipped += STEERING_FIELDS
        config = {k: v for k, v in dataclasses.asdict(self).items() if k not in skipped}
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
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise UsageError(f"{path}: a task file is a mapping of config keys, got {type(values).__name__}")
    return values


def demo_values() -> dict[str, Any]:
    """Every config key as a run of the default ``demo`` task sees it (unvalidated)."""
    return {**dataclasses.asdict(RunConfig()), **task_values("demo")}


def load_config(task: str = "demo", overrides: dict[str, Any] | None = None) -> RunConfig:
    """The task's YAML over the defaults, then ``overrides`` (flags given on the command line)."""
    path = task_path(task)
    values = task_values(task)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    for source, keys in ((str(path), values), ("command line", overrides or {})):
        unknown = sorted(set(keys) - known)
        if unknown:
            raise UsageError(f"{source}: unknown config key {', '.join(map(repr, unknown))}; "
                             f"known keys: {', '.join(sorted(known))}")
    values.pop("task", None)
    return RunConfig(task=task, **{**values, **(overrides or {})}).validate()
