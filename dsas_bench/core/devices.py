"""One worker process per device: ``--devices cuda:0,cuda:1`` (or ``cpu,cpu``, or ``auto``: every visible GPU).

Each worker is a loky process of its own whose environment names its device (``DSAS_BENCH_DEVICE``);
the sweep's model loader reads it, so the worker loads the model once, there. Workers take the next
task as soon as they finish one. On a Dask cluster there is no such list: each worker runs with
``--device auto`` on whatever its own environment shows it (``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

import torch

from dsas_bench.core.models import resolve_device

WORKER_DEVICE = "DSAS_BENCH_DEVICE"


def worker_devices(devices: list[str]) -> list[str]:
    """The devices to start one worker on, each checked: ``auto`` is every visible GPU, else the CPU."""
    if devices == ["auto"]:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    for device in devices:
        resolve_device(device)
    return devices


def device_for(configured: str) -> str:
    """This process's device: the one its worker was started for, else ``configured``."""
    return os.environ.get(WORKER_DEVICE) or configured


def run_per_device(function: Callable[..., Any], tasks: Iterable[tuple], devices: list[str]) -> Iterator[Any]:
    """``function(*task)`` for every task, one loky worker per device, results in the order they finish."""
    from joblib.externals.loky import ProcessPoolExecutor

    pending = iter(tasks)
    executors = [ProcessPoolExecutor(max_workers=1, env={WORKER_DEVICE: device}) for device in devices]
    running: dict[Future, ProcessPoolExecutor] = {}
    try:
        for executor in executors:
            _submit_next(executor, function, pending, running)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                _submit_next(running.pop(future), function, pending, running)
                yield future.result()
    finally:
        for executor in executors:
            executor.shutdown(wait=False, kill_workers=True)


def _submit_next(executor: Any, function: Callable[..., Any], pending: Iterator[tuple],
                 running: dict[Future, Any]) -> None:
    task = next(pending, None)
    if task is not None:
        running[executor.submit(function, *task)] = executor
