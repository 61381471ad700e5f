"""The sweep: methods × DSAS modes × strengths × seeds, each cell fitted, generated, scored, stored.

The parent validates everything first (no partial output on bad input), then runs the cells
not yet in the results store through joblib — local processes (``loky``) or a Dask cluster —
and appends each row as it arrives. A worker loads the model once and reuses fitted
interventions across strengths; fitted states are also cached on disk, keyed by everything
that affects them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import shutil
from collections.abc import Iterator
from typing import Any

import joblib
from tqdm.auto import tqdm

from dsas_bench.core.data import Prompt
from dsas_bench.core.devices import run_per_device, worker_devices
from dsas_bench.core.errors import UsageError, warn
from dsas_bench.core.models import LoadedModel
from dsas_bench.core.progress import quiet
from dsas_bench.formats import load_method
from dsas_bench.methods import get_method
from dsas_bench.methods.shift import IMPORT_HINT
from dsas_bench.run.cell import run_group
from dsas_bench.run.config import RunConfig
from dsas_bench.run.evaluate import strength_groups
from dsas_bench.run.inputs import inputs_for, model_for, sampling_for, scorer_for, utility_for
from dsas_bench.run.interventions import fit_cache, modules_for
from dsas_bench.run.plan import BASELINE, Cell, cell_identity, plan
from dsas_bench.run.results import ResultsStore
from dsas_bench.run.strengths import AUTO, grid_for


def check(config: RunConfig, store: ResultsStore | None) -> None:
    """Everything that can fail on bad input, before any output is written (``store`` None: a dry run, that
    writes nothing)."""
    if store is not None:
        store.check_writable()
    if config.devices:
        worker_devices(config.devices)
    sampling_for(config)
    inputs = inputs_for(config)
    calibrating = any(grid_for(config.strengths, m, d) == AUTO for m in config.methods for d in config.dsas)
    if calibrating and len(inputs.calibration) < config.n_calibration_texts:
        raise UsageError(f"--strengths auto needs {config.n_calibration_texts} calibration texts, but only "
                         f"{len(inputs.calibration)} neutral texts are left after the {len(inputs.neutral)} "
                         f"perplexity texts: lower --n-calibration-texts or --n-perplexity-texts, or give more "
                         f"neutral text with --control-data")
    for seed in config.seeds:
        inputs.fit_sets(config, seed)
    scorer_for(config)
    for metric in utility_for(config):
        metric.check(dataclasses.asdict(config))
    lm = model_for(config)
    for method in config.methods:
        if get_method(method).imported_only and not config.intervention:
            raise UsageError(f"method {method!r} runs steering vectors made elsewhere: {IMPORT_HINT}")
        modules_for(config, method, lm)
    if config.intervention:
        saved = load_method(config.intervention, lm)
        if saved.name != config.methods[0]:
            raise UsageError(f"{config.intervention} holds a fitted {saved.name!r} state, not {config.methods[0]!r}: "
                             f"run it with --method {saved.name}")
    _check_length(config, lm, inputs.prompts)


def _check_length(config: RunConfig, lm: LoadedModel, prompts: list[Prompt]) -> None:
    """The longest prompt plus --max-new-tokens must fit the model's positions."""
    positions = getattr(lm.model.config, "max_position_embeddings", None)
    longest = max(len(lm.tokenizer(p.text).input_ids) for p in prompts)
    if positions and longest + config.max_new_tokens > positions:
        raise UsageError(f"--max-new-tokens {config.max_new_tokens} after a prompt of {longest} tokens exceeds the "
                         f"{positions} positions of {config.model}: give at most {positions - longest}")


def run_sweep(config: RunConfig, fresh: bool = False) -> Iterator[dict[str, Any]]:
    """Run every cell not yet stored, appending rows as they finish; yields the new rows."""
    store = ResultsStore(config.output)
    check(config, store)
    with _backend(config), store.writing():  # the folder is created only now, and one sweep writes it at a time
        if fresh:  # this run's fitted states (and calibrations) only, before planning recalibrates them
            for method, dsas, seed in itertools.product(config.methods, config.dsas, config.seeds):
                shutil.rmtree(fit_cache(config, method, dsas, seed), ignore_errors=True)
        with quiet(not config.progress):  # planning may fit and calibrate
            cells = {cell_identity(config, cell)[2]: cell for cell in plan(config)}
        store.repair()
        if fresh:  # this run's rows only: other runs in the same directory keep theirs
            store.forget(set(cells))
        done = store.done()
        todo = [cell for cell_id, cell in cells.items() if cell_id not in done]
        with tqdm(total=len(todo), desc="sweep cells", disable=not config.progress) as bar:
            groups = strength_groups(todo, config.cells_per_batch, BASELINE, workers=worker_count(config))
            for rows in _evaluated_groups(config, groups):
                for row in rows:
                    store.append(row)
                    if row["flags"]:
                        warn(f"{row['method']} λ = {row['strength']:g} seed {row['seed']}: "
                             f"{', '.join(row['flags'])}; the row is kept but left out of fronts and leaderboards")
                    bar.update()
                    yield row


def worker_count(config: RunConfig) -> int:
    """How many workers evaluate cells at once: one per device of ``--devices``, else ``--jobs``."""
    return len(worker_devices(config.devices)) if config.devices else config.jobs


def _evaluated_groups(config: RunConfig, groups: list[list[Cell]]) -> Iterator[list[dict[str, Any]]]:
    """The rows of each group, as groups finish: one worker per device of ``--devices``, else ``--jobs`` workers
    of the joblib backend the caller entered (``_backend``)."""
    if config.devices:
        workers = dataclasses.replace(config, jobs=worker_count(config))
        yield from run_per_device(run_group, [(workers, group) for group in groups], worker_devices(config.devices))
        return
    parallel = joblib.Parallel(n_jobs=config.jobs, return_as="generator_unordered")
    yield from parallel(joblib.delayed(run_group)(config, group) for group in groups)


@contextlib.contextmanager
def _backend(config: RunConfig) -> Iterator[None]:
    """Local worker processes (loky), or a Dask cluster at ``config.scheduler`` (a local one when unset)."""
    if config.backend == "loky":
        with joblib.parallel_config(backend="loky"):
            yield
        return
    from dask.distributed import Client

    try:
        client = Client(config.scheduler) if config.scheduler else Client(
            processes=True, n_workers=config.jobs, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler {config.scheduler}: {exc}") from exc
    with client, joblib.parallel_config(backend="dask"):
        yield
