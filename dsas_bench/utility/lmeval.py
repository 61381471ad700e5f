"""lm-eval accuracy of the model as it is, steered or not (METHODS.md §4: MMLU 5-shot in the papers).

lm-eval's ``HFLM`` wraps the model instance itself, so hooks registered on it are active during
evaluation: ``with steer(lm.model, maps, λ): evaluate_tasks(lm, ["demo_mc"])``. This module adds
no hooks.

Local tasks are the YAMLs in ``DEFAULT_TASKS_DIR`` and the ``include_paths`` folders; relative
``dataset_kwargs.data_files`` in them are resolved against the YAML's folder, so they work from any
working directory, and evaluating them makes no network call. Other names go to lm-eval's own
registry (indexed once per process, several seconds), whose data must be reachable: offline, only
what is already in the datasets cache.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dsas_bench.core.data import TASKS_DIR
from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel
from dsas_bench.utility.base import UtilityInputs, UtilityMetric

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

DEFAULT_TASKS_DIR = TASKS_DIR / "lm_eval"
SEED = 1234  # lm-eval's default seed for numpy, torch and few-shot sampling
DEFAULT_METRIC = "acc"
# lm-eval's default. Means (acc, acc_norm, ...) get their closed-form standard error, sample std / √n, whatever
# the number; only metrics lm-eval bootstraps (median, F1, BLEU, ...) use the draws. 0 would drop every stderr.
BOOTSTRAP_ITERS = 100_000


@contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """lm-eval's loggers at ERROR, and no ``datasets`` download-count ping, for the block."""
    import datasets.config

    logger = logging.getLogger("lm_eval")
    level, pings = logger.level, datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    logger.setLevel(logging.ERROR)
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        logger.setLevel(level)
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = pings


def _absolute(files: Any, folder: Path) -> Any:
    """``data_files`` (a path, a list, or split → paths) with relative local paths made absolute."""
    if isinstance(files, dict):
        return {split: _absolute(value, folder) for split, value in files.items()}
    if isinstance(files, list):
        return [_absolute(value, folder) for value in files]
    if isinstance(files, str) and "://" not in files and not Path(files).expanduser().is_absolute():
        return str(folder / files)
    return files


def task_config(yaml_path: Path) -> dict[str, Any]:
    """A task's full config as lm-eval reads it, with relative data files resolved against its folder.

    lm-eval has no public reader of one YAML with its ``include:`` and ``!function`` resolved, hence
    its private ``load_yaml``; the rest of this module uses ``TaskManager``'s public interface.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(yaml_path, resolve_func=True)
    kwargs = config.get("dataset_kwargs") or {}
    if "data_files" in kwargs:
        config["dataset_kwargs"] = {**kwargs, "data_files": _absolute(kwargs["data_files"], yaml_path.parent)}
    return config


@lru_cache(maxsize=4)
def _registry_manager(folders: tuple[Path, ...]) -> TaskManager:
    """lm-eval's built-in tasks plus ``folders`` (local names win); slow to index, so kept for the process."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(map(str, folders)))


def parse_task_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["mmlu", "hellaswag:acc_norm"]`` as {task: metric}; the metric defaults to ``acc``."""
    if isinstance(specs, str) or not specs:
        raise UsageError("evaluate_tasks needs a non-empty list of lm-eval task names, e.g. ['demo_mc']")
    parsed: dict[str, str] = {}
    for spec in specs:
        name, _, metric = spec.partition(":")
        if not name or name in parsed or (_ and not metric):
            raise UsageError(f"lm-eval task {spec!r} is not TASK or TASK:METRIC (each task once), e.g. "
                             "mmlu or hellaswag:acc_norm")
        parsed[name] = metric or DEFAULT_METRIC
    return parsed


def _folders(include_paths: Sequence[Path | str]) -> tuple[Path, ...]:
    """``DEFAULT_TASKS_DIR`` and the given task folders, resolved and checked to exist."""
    folders = tuple(dict.fromkeys(Path(p).expanduser().resolve() for p in (DEFAULT_TASKS_DIR, *include_paths)))
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"lm-eval task folder {folder} not found: pass --lm-eval-include <folder of task YAMLs>")
    return folders


def _declared_metrics(config: dict[str, Any]) -> list[str]:
    """The metrics a task's (``metric_list``) or group's (``aggregate_metric_list``) config reports."""
    listed = config.get("metric_list") or config.get("aggregate_metric_list") or []
    return [entry["metric"] for entry in (listed if isinstance(listed, list) else [listed])
            if isinstance(entry, dict) and isinstance(entry.get("metric"), str)]


def _check_metric(name: str, metric: str, reported: Sequence[str]) -> None:
    if metric not in reported:
        raise UsageError(f"lm-eval task {name} does not report {metric!r}; it reports "
                         f"{', '.join(reported) or 'no metric (a tag or a group without aggregate_metric_list)'}: "
                         f"pick one with --lm-eval-tasks {name}:METRIC")


def load_tasks(tasks: Sequence[str], include_paths: Sequence[Path | str] = ()) -> tuple[
        list[str | dict[str, Any]], TaskManager]:
    """Task specs for ``TaskManager.load`` and the manager that resolves them.

    ``tasks``: names or ``name:metric`` (see ``parse_task_specs``); a metric missing from the metrics
    a task's (or group's) YAML declares is refused here, before any evaluation. Tasks defined by a
    YAML become inline configs with absolute data paths; groups and tags are passed by name (their
    tasks' data paths must then be absolute). lm-eval's registry is indexed only when a name is not local.
    """
    from lm_eval.tasks import TaskManager

    wanted = parse_task_specs(tasks)
    folders = _folders(include_paths)
    with quiet_lm_eval():
        manager = TaskManager(include_path=list(map(str, folders)), include_defaults=False)
        local = manager.all_tasks
        if any(name not in manager.all_tasks for name in wanted):
            manager = _registry_manager(folders)
    unknown = [name for name in wanted if name not in manager.all_tasks]
    if unknown:
        raise UsageError(f"unknown lm-eval task(s) {', '.join(unknown)}: local tasks in "
                         f"{', '.join(map(str, folders))} are {', '.join(local) or 'none'}; any lm-eval registry "
                         "task (`lm-eval ls tasks`) works when its data is reachable")
    specs: list[str | dict[str, Any]] = []
    for name, metric in wanted.items():
        yaml_path = manager.task_index[name].yaml_path
        config = task_config(Path(yaml_path)) if yaml_path else {}
        if declared := _declared_metrics(config):  # else known after evaluation (output-type defaults)
            _check_metric(name, metric, declared)
        inline = name in manager.all_subtasks and yaml_path and "class" not in config  # a YAML task, not Python
        specs.append(config if inline else name)
    return specs, manager


def _number(value: Any) -> float | None:
    """A float of lm-eval's value, None for its "N/A"."""
    return float(value) if isinstance(value, int | float) else None


def task_result(results: dict[str, Any], name: str, metric: str) -> dict[str, Any]:
    """One requested task's record from lm-eval's results: its own (group) number and standard error."""
    row = results["results"].get(name, {})
    keys = [key for key in row if key.partition(",")[0] == metric and "_stderr" not in key]
    reported = sorted({key.partition(",")[0] for key in row if "," in key and "_stderr" not in key})
    _check_metric(name, metric, reported)
    if len(keys) > 1:
        raise UsageError(f"lm-eval task {name} reports {metric!r} under several filters ({', '.join(keys)}): "
                         "dsas_bench takes a metric with one filter only")
    key = keys[0]
    value, filtered = row[key], key.partition(",")[2]
    return {"metric": metric, "filter": filtered, "value": float(value),
            "stderr": _number(row.get(f"{metric}_stderr,{filtered}")), "n_docs": int(row["sample_len"]),
            "n_shot": results["n-shot"].get(name), "version": results["versions"].get(name),
            "kind": "group" if name in results.get("groups", {}) else "task"}


def evaluate_tasks(lm: LoadedModel, tasks: Sequence[str], *, include_paths: Sequence[Path | str] = (),
                   num_fewshot: int | None = None, limit: int | None = None, batch_size: int = 8,
                   seed: int = SEED) -> dict[str, dict[str, Any]]:
    """lm-eval's own number per requested task, with whatever steering is active on ``lm.model``.

    ``tasks``: names or ``name:metric`` (default ``acc``). A group's number is lm-eval's group
    aggregate (``aggregate_metric_list``, e.g. MMLU's size-weighted mean), not a mean of its rows.
    Each record: ``metric``, ``filter``, ``value``, ``stderr`` (lm-eval's closed form for means),
    ``n_docs``, ``n_shot``, ``version``, ``kind`` (task / group). ``include_paths``: task folders
    besides ``DEFAULT_TASKS_DIR``. ``num_fewshot`` overrides every task's default (a task's own,
    else 0); ``limit`` caps the documents per task; ``seed`` seeds Python's, numpy's and torch's
    global generators (as lm-eval does) and the few-shot sampler. Calls ``lm_eval.evaluator.evaluate``
    directly: ``simple_evaluate`` adds seconds of environment reporting (pip, git) per call.
    """
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    if limit is not None and limit < 1:
        raise UsageError(f"limit must be a positive number of documents per task, got {limit}")
    wanted = parse_task_specs(tasks)
    specs, manager = load_tasks(tasks, include_paths)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with quiet_lm_eval():
        try:
            loaded = manager.load(specs)
        except (ConnectionError, FileNotFoundError) as error:
            raise UsageError(f"could not load the data of lm-eval task(s) {', '.join(wanted)}: {error}. Check the "
                             "tasks' data_files; data on the Hugging Face hub must be in the datasets cache when "
                             "offline (HF_DATASETS_OFFLINE=1)") from error
        for task in loaded["tasks"].values():
            shots = num_fewshot if num_fewshot is not None else task.get_config("num_fewshot") or 0
            task.set_config(key="num_fewshot", value=shots)
            task.set_fewshot_seed(seed=seed)
        model = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size, device=str(lm.device))
        results = evaluate(lm=model, task_dict=loaded, limit=limit, bootstrap_iters=BOOTSTRAP_ITERS,
                           log_samples=False)
    return {name: task_result(results, name, metric) for name, metric in wanted.items()}


def lmeval_metrics(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A row's lm-eval metrics: the records, ``accuracy`` = the mean of the requested tasks' values and
    ``accuracy_stderr`` = its standard error, √(Σ se²)/k (tasks independent); None without tasks."""
    values = [record["value"] for record in results.values()]
    errors = [record["stderr"] for record in results.values()]
    known = values and None not in errors
    return {"lmeval": results, "accuracy": sum(values) / len(values) if values else None,
            "accuracy_stderr": math.sqrt(sum(e * e for e in errors)) / len(errors) if known else None}


class LmEvalAccuracy(UtilityMetric):
    """The ``lm-eval`` utility metric: lm-eval's numbers on the run's ``lm_eval_tasks`` (none evaluated without
    tasks: the fields are then empty), with its ``lm_eval_include``, ``lm_eval_fewshot`` and ``lm_eval_limit``."""

    fields = ("lmeval", "accuracy", "accuracy_stderr")

    def check(self, config: Mapping[str, Any]) -> None:
        if config["lm_eval_tasks"]:
            load_tasks(config["lm_eval_tasks"], config["lm_eval_include"])

    def measure(self, inputs: UtilityInputs) -> dict[str, Any]:
        config = inputs.config
        if not config["lm_eval_tasks"]:
            return lmeval_metrics({})
        # lm-eval right-pads its batches and passes no attention mask: a gate pooling whole
        # sequences would pool the pads too, so it gets one sequence per batch
        return lmeval_metrics(evaluate_tasks(inputs.lm, config["lm_eval_tasks"],
                                             include_paths=config["lm_eval_include"],
                                             num_fewshot=config["lm_eval_fewshot"], limit=config["lm_eval_limit"],
                                             batch_size=1 if inputs.per_sequence else config["batch_size"]))
