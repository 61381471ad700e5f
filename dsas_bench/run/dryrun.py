"""``--dry-run``: what a run would do and roughly how long it would take, without writing anything.

It prints the plan (cells, the fits they need and which are cached, what the results store already
holds, how the cells share batches) and the work of the cells still to run: tokens to generate,
texts to score, perplexity tokens, lm-eval requests. The time is an estimate: a few seconds of this
machine's throughput on the run's device (one shared generation batch of a few new tokens, one
perplexity batch, one scorer batch), scaled to the work; lm-eval requests are timed as perplexity
rows and fitting is not included, so it is a lower bound for a sweep that still has to fit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

from dsas_bench.core.errors import UsageError
from dsas_bench.run.config import RunConfig
from dsas_bench.run.evaluate import Evaluated, evaluate_strengths, fit_key, strength_groups
from dsas_bench.run.inputs import inputs_for, model_for, sampling_for, scorer_for
from dsas_bench.run.interventions import METHOD_FILE, SCALER_FILE, fit_cache, scaler_cache
from dsas_bench.run.plan import BASELINE, Cell, cell_identity, plan
from dsas_bench.run.results import ResultsStore
from dsas_bench.run.sweep import check, worker_count
from dsas_bench.scalers import OFF, trains_method

PROBE_TOKENS = 4  # new tokens per row of the timed generation batch


@dataclass(frozen=True)
class Work:
    """What the cells still to run compute."""

    cells: int
    new_tokens: int  # at most: a continuation may stop early at its end-of-text token
    scored_texts: int
    perplexity_tokens: int
    lm_eval_requests: int


def _fits(config: RunConfig, cells: list[Cell]) -> tuple[set[Path], set[Path]]:
    """The saved states the steered ``cells`` need: each method's (fitted once for every DSAS mode; jointly with
    its scaler for one that trains it) and each scaler's over it."""
    methods, scalers = set(), set()
    for method, dsas, seed in {fit_key(cell) for cell in cells if cell.method != BASELINE}:
        folder = fit_cache(config, method, dsas, seed)
        methods.add(folder / METHOD_FILE)
        if dsas != OFF and not trains_method(dsas):
            scalers.add(scaler_cache(config, folder, dsas) / SCALER_FILE)
    return methods, scalers


def dry_run(config: RunConfig, fresh: bool = False) -> str:
    """The plan, the work and an estimated time of ``config``'s run, as text; nothing is written."""
    check(config, store=None)
    cells = plan(config, calibrate=False)
    lines_to_calibrate = sum(math.isnan(cell.strength) for cell in cells) // max(config.n_strengths, 1)
    done = set() if fresh else ResultsStore(config.output).done()
    todo = [cell for cell in cells if cell_identity(config, cell)[2] not in done]
    groups = strength_groups(todo, config.cells_per_batch, BASELINE, workers=worker_count(config))
    work = count_work(config, todo)
    methods, scalers = _fits(config, todo)
    cached = {path for path in methods | scalers if path.exists()}
    widest = max((len(group) for group in groups), default=0)
    lines = [
        f"plan: {len(cells)} cells ({len(config.methods)} methods × {len(config.dsas)} DSAS modes × "
        f"{len(config.seeds)} seeds × their strengths, and {len(config.seeds)} unsteered)",
        f"results store {ResultsStore(config.output).path}: holds {len(cells) - len(todo)} of them"
        + (" (recomputed: --fresh)" if fresh and done else "") + f"; {len(todo)} to run",
        f"fits: method states {len(methods)} ({len(methods & cached)} cached), scaler states {len(scalers)} "
        f"({len(scalers & cached)} cached); {len(methods | scalers) - len(cached)} to fit",
        f"calibrations: {lines_to_calibrate} (method, DSAS mode, seed) lines to calibrate before planning "
        f"their {config.n_strengths} strengths each (counted above, λ unknown yet)" if lines_to_calibrate
        else "calibrations: none to run (the strengths are given or cached)",
        f"shared batches: {len(groups)} groups of cells, up to {widest} cells × {config.batch_size} rows per batch",
        f"work: {work.new_tokens:,} tokens to generate (at most), {work.scored_texts:,} texts to score, "
        f"{work.perplexity_tokens:,} perplexity tokens, {work.lm_eval_requests:,} lm-eval requests",
    ]
    if todo:
        seconds = estimate_seconds(config, work, max(widest, 1))
        workers = worker_count(config)
        lines.append(f"estimated time: about {_duration(seconds / workers)} on {model_for(config).device}"
                     + (f" with {workers} workers" if workers > 1 else "")
                     + " (an estimate from a few seconds of measured throughput; fitting not included)")
    lines.append("dry run: nothing was written")
    return "\n".join(lines)


def count_work(config: RunConfig, cells: list[Cell]) -> Work:
    """Tokens, texts and requests the cells compute (each cell: every prompt, every perplexity text, lm-eval)."""
    inputs = inputs_for(config)
    per_cell = Work(1, len(inputs.prompts) * config.max_new_tokens, len(inputs.prompts),
                    _perplexity_tokens(config, inputs.neutral), lm_eval_requests(config))
    n = len(cells)
    return Work(n, n * per_cell.new_tokens, n * per_cell.scored_texts, n * per_cell.perplexity_tokens,
                n * per_cell.lm_eval_requests)


def lm_eval_requests(config: RunConfig) -> int:
    """Requests of one cell's lm-eval pass: one per answer choice of a multiple-choice document, else one per
    document."""
    if not config.lm_eval_tasks or "lm-eval" not in config.utility:
        return 0
    from dsas_bench.utility.lmeval import load_tasks, quiet_lm_eval

    specs, manager = load_tasks(config.lm_eval_tasks)
    with quiet_lm_eval():
        try:
            tasks = manager.load(specs)["tasks"].values()
        except (ConnectionError, FileNotFoundError) as error:
            raise UsageError(f"could not load the data of lm-eval task(s) {', '.join(config.lm_eval_tasks)} to "
                             f"count their requests: {error}") from error
        return sum(len(task.doc_to_choice(doc)) if task.OUTPUT_TYPE == "multiple_choice" else 1
                   for task in tasks for doc in list(task.eval_docs)[:config.lm_eval_limit])


def estimate_seconds(config: RunConfig, work: Work, cells_per_batch: int) -> float:
    """Seconds for ``work`` at the throughput measured on shared batches of ``cells_per_batch`` copies of the first
    prompts and texts, unsteered (steering costs a few per cent). Generation is timed at 1 and ``PROBE_TOKENS`` new
    tokens, which separates the prefill from the cost per new token."""
    inputs, lm, scorer = inputs_for(config), model_for(config), scorer_for(config)
    prompts, texts = [p.text for p in inputs.prompts[:config.batch_size]], inputs.neutral[:config.batch_size]

    def shared(new_tokens: int) -> list[Evaluated]:
        sampling = dataclasses.replace(sampling_for(config), max_new_tokens=new_tokens)
        return evaluate_strengths(lm, {}, None, [0.0] * cells_per_batch, prompts, texts, sampling, seed=0,
                                  batch_size=config.batch_size, max_tokens=config.perplexity_tokens, progress=False)

    shared(1)  # warm-up
    short, long = shared(1)[0].times, shared(PROBE_TOKENS)[0].times
    per_token = max(long["generate"] - short["generate"], 0.0) / (PROBE_TOKENS - 1)
    prefill = max(short["generate"] - per_token, 0.0)
    start = time.perf_counter()
    scorer.score(prompts)
    score = (time.perf_counter() - start) / len(prompts)
    ppl = long["perplexity"] / len(texts)  # the shares of one cell: seconds per text of one cell
    ppl_tokens = _perplexity_tokens(config, texts) / len(texts)
    batches = work.scored_texts / len(prompts)  # generation batches of one cell's share
    return (batches * (prefill + config.max_new_tokens * per_token) + work.perplexity_tokens * ppl / ppl_tokens
            + work.scored_texts * score + work.lm_eval_requests * ppl)


def _perplexity_tokens(config: RunConfig, texts: list[str]) -> int:
    """Tokens of ``texts`` scored for perplexity (each cut to ``perplexity_tokens``)."""
    ids = model_for(config).tokenizer(texts, truncation=True, max_length=config.perplexity_tokens)["input_ids"]
    return sum(len(row) for row in ids)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
