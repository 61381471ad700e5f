"""lm-eval accuracy of the model as it is, steered or not (METHODS.md §4: MMLU 5-shot in the papers).

lm-eval's ``HFLM`` wraps the model instance itself, so hooks registered on it are active during
evaluation: ``with steer(lm.model, maps, λ): evaluate_tasks(lm, ["demo_mc"])``. This module adds
no hooks.

Local tasks are the YAMLs in ``DEFAULT_TASKS_DIR`` (or ``include_path``); relative
``dataset_kwargs.data_files`` in them are resolved against the YAML's folder, so they work from any
working directory, and evaluating them makes no network call. Other names go to lm-eval's own
registry (indexed once per process, several seconds), whose data must be reachable: offline, only
what is already in the datasets cache.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dsas_bench.config import TASKS_DIR
from dsas_bench.errors import UsageError
from dsas_bench.models import LoadedModel

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

DEFAULT_TASKS_DIR = TASKS_DIR / "lm_eval"
SEED = 1234  # lm-eval's default seed for numpy, torch and few-shot sampling


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
    """A task's full config as lm-eval reads it, with relative data files resolved against its folder."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(yaml_path, resolve_func=True)
    kwargs = config.get("dataset_kwargs") or {}
    if "data_files" in kwargs:
        config["dataset_kwargs"] = {**kwargs, "data_files": _absolute(kwargs["data_files"], yaml_path.parent)}
    return config


@lru_cache(maxsize=4)
def _registry_manager(folder: Path) -> TaskManager:
    """lm-eval's built-in tasks plus ``folder`` (local names win); slow to index, so kept for the process."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder))


def load_tasks(tasks: Sequence[str], include_path: Path | None = None) -> tuple[list[str | dict[str, Any]],
                                                                                  TaskManager]:
    """Task specs for ``TaskManager.load`` and the manager that resolves them.

    Tasks defined by a YAML become inline configs with absolute data paths; groups and tags are
    passed by name (their tasks' data paths must then be absolute). lm-eval's registry is indexed
    only when a name is not local.
    """
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind

    if isinstance(tasks, str) or not tasks:
        raise UsageError("evaluate_tasks needs a non-empty list of lm-eval task names, e.g. ['demo_mc']")
    folder = Path(include_path or DEFAULT_TASKS_DIR).resolve()
    if not folder.is_dir():
        raise UsageError(f"lm-eval task folder {folder} not found: pass include_path=<folder of task YAMLs>")
    with quiet_lm_eval():
        manager = TaskManager(include_path=str(folder), include_defaults=False)
        local = manager.all_tasks
        if any(name not in manager.task_index for name in tasks):
            manager = _registry_manager(folder)
    unknown = [name for name in tasks if name not in manager.task_index]
    if unknown:
        raise UsageError(f"unknown lm-eval task(s) {', '.join(unknown)}: local tasks in {folder} are "
                         f"{', '.join(local) or 'none'}; any lm-eval registry task (`lm-eval ls tasks`) "
                         "works when its data is reachable")
    entries = [manager.task_index[name] for name in tasks]
    specs = [task_config(Path(entry.yaml_path)) if entry.kind is Kind.TASK and entry.yaml_path else entry.name
             for entry in entries]
    return specs, manager


def evaluate_tasks(lm: LoadedModel, tasks: Sequence[str], *, include_path: Path | None = None,
                   num_fewshot: int | None = None, limit: int | None = None, batch_size: int = 8,
                   seed: int = SEED) -> dict[str, float]:
    """Accuracy (lm-eval's ``acc``) per task, with whatever steering is active on ``lm.model``.

    Groups (e.g. ``mmlu``) add their own row next to their subtasks'. ``num_fewshot`` overrides
    every task's default (a task's own, else 0); ``limit`` caps the documents per task; ``seed``
    seeds Python's, numpy's and torch's global generators (as lm-eval does) and the few-shot sampler.
    Calls ``lm_eval.evaluator.evaluate`` directly: ``simple_evaluate`` adds seconds of environment
    reporting (pip, git) per call.
    """
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    if limit is not None and limit < 1:
        raise UsageError(f"limit must be a positive number of documents per task, got {limit}")
    specs, manager = load_tasks(tasks, include_path)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with quiet_lm_eval():
        try:
            loaded = manager.load(specs)
        except (ConnectionError, FileNotFoundError) as error:
            raise UsageError(f"could not load the data of lm-eval task(s) {', '.join(tasks)}: {error}. Check the "
                             "tasks' data_files; data on the Hugging Face hub must be in the datasets cache when "
                             "offline (HF_DATASETS_OFFLINE=1)") from error
        for task in loaded["tasks"].values():
            shots = num_fewshot if num_fewshot is not None else task.get_config("num_fewshot") or 0
            task.set_config(key="num_fewshot", value=shots)
            task.set_fewshot_seed(seed=seed)
        model = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size, device=str(lm.device))
        results = evaluate(lm=model, task_dict=loaded, limit=limit, bootstrap_iters=0, log_samples=False)
    accuracy = {task: float(row["acc,none"]) for task, row in results["results"].items() if "acc,none" in row}
    missing = [name for name in tasks if name not in accuracy]
    if missing:
        raise UsageError(f"lm-eval task(s) {', '.join(missing)} report no 'acc' metric: pick multiple-choice "
                         "tasks whose metric_list includes acc")
    return accuracy
