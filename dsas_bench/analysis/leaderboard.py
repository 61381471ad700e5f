"""The leaderboard: one line per (method, DSAS mode), ranked, with DSAS-vs-plain deltas and published rows.

Ranking key (deterministic whatever the row order): lines that reach a point within the perplexity
budget first; then the best objective within the budget (AcT's summary; the objective of the behaviour
the rows measured, e.g. the lowest % toxic or the highest mean VADER score); then the larger
hypervolume of (objective, perplexity); then method name, then DSAS mode name. The unsteered baseline
and the behaviour's published reference rows are listed but never ranked.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dsas_bench.analysis.pareto import (
    BASELINE_METHOD,
    DEFAULT_SLACK,
    NO_GAIN,
    PLAIN_MODE,
    UTILITY_DIRECTION,
    Row,
    act_summary,
    aggregate_seeds,
    baseline_point,
    check_comparable,
    compare_fronts,
    exploded,
    hypervolume,
    line_objective,
    metric_points,
    objective_of,
    reference_point,
)
from dsas_bench.behaviors import get_behavior, row_behavior
from dsas_bench.behaviors.base import Behavior, Objective
from dsas_bench.run.results import EXPLOSION_FACTOR
from dsas_bench.run.strengths import Budget, parse_budget

COLUMNS = ("rank", "source", "model", "method", "dsas", "best_objective", "best_strength", "ppl_at_best",
           "delta_ppl_at_best", "accuracy_at_best", "accuracy_stderr_at_best", "accuracy_task",
           "hv_ppl", "hv_acc", "d_best_objective", "d_hv_ppl",
           "d_hv_ppl_ci_low", "d_hv_ppl_ci_high", "front_vs_plain", "n_seeds", "scorer", "prompt_set", "objective",
           "lambda_max", "calibrated_budget", "n_exploded", "behavior")
MEASURED = "measured"
UNSTEERED = "measured: unsteered baseline"
MMLU = "mmlu"  # the lm-eval task of the published accuracy column


def _line(**values: Any) -> dict[str, Any]:
    """A leaderboard line with every column, ``None`` where not given."""
    return {column: values.get(column) for column in COLUMNS}


Point = Mapping[str, Any]


def _hv(points: Sequence[Point], base: Point, metric: str, slack: float | None, objective: Objective) -> float | None:
    """Hypervolume of ``points`` for ``metric``; ``None`` when the metric is missing anywhere."""
    if any(p[metric] is None for p in (*points, base)):
        return None
    return hypervolume(metric_points(points, metric, objective), reference_point(base, metric, slack, objective),
                       (objective.direction, UTILITY_DIRECTION[metric]))


def accuracy_task(rows: Sequence[Row]) -> str | None:
    """The lm-eval task(s) behind the rows' ``accuracy``, as given to --lm-eval-tasks (``mmlu``,
    ``hellaswag:acc_norm``); rows of different task lists are joined with " | "; None without lm-eval."""
    def label(lmeval: Mapping[str, Any]) -> str:
        return ",".join(name if not isinstance(record, Mapping) or record.get("metric", "acc") == "acc"
                        else f"{name}:{record['metric']}" for name, record in lmeval.items())

    labels = sorted({label(row["metrics"]["lmeval"]) for row in rows if row["metrics"].get("lmeval")})
    return " | ".join(labels) or None


def _at(point: Point | None, base: Point, task: str | None, objective: Objective) -> dict[str, Any]:
    """The columns describing the chosen ``point`` (none without a point) and its context."""
    context = {"model": base["model"], "scorer": base["scorer"], "prompt_set": base["prompt_set"],
               "accuracy_task": task, "objective": objective.name, "behavior": base["behavior"]}
    if point is None:
        return context
    return {**context, "best_objective": point[objective.name], "best_strength": point["strength"],
            "ppl_at_best": point["perplexity"], "delta_ppl_at_best": point["perplexity"] - base["perplexity"],
            "accuracy_at_best": point["accuracy"], "accuracy_stderr_at_best": point.get("accuracy_stderr")}


def _measured(points: Sequence[Point], base: Point, max_delta_ppl: float, task: str | None, objective: Objective,
              calibrations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The line of one (method, DSAS mode) from its aggregated points and its rows' calibrations."""
    best = act_summary(points, base["perplexity"], max_delta_ppl, objective)
    lambda_max = sum(c["lambda_max"] for c in calibrations) / len(calibrations) if calibrations else None
    return _line(source=MEASURED, method=points[0]["method"], dsas=points[0]["dsas"],
                 **_at(best, base, task, objective), hv_ppl=_hv(points, base, "perplexity", max_delta_ppl, objective),
                 hv_acc=_hv(points, base, "accuracy", None, objective),
                 n_seeds=len({seed for p in points for seed in p["seeds"]}), lambda_max=lambda_max,
                 calibrated_budget=", ".join(sorted({c["budget"] for c in calibrations})) or None)


def _calibrations(rows: Sequence[Row], method: str, mode: str) -> list[Mapping[str, Any]]:
    """The distinct calibrations (one per seed) recorded in the rows of one (method, DSAS mode)."""
    found = {(r["seed"], r["calibration"]["lambda_max"]): r["calibration"] for r in rows
             if r["method"] == method and r["dsas"] == mode and r.get("calibration")}
    return list(found.values())


def budget_of(rows: Sequence[Row], max_delta_ppl: float | str | Budget | None) -> Budget:
    """The budget given, else the one every calibrated row was calibrated to, else AcT's +1."""
    if max_delta_ppl is None:
        recorded = {r["calibration"]["budget"] for r in rows if r.get("calibration")}
        return parse_budget(recorded.pop()) if len(recorded) == 1 else Budget(1.0)
    return max_delta_ppl if isinstance(max_delta_ppl, Budget) else parse_budget(max_delta_ppl)


def _published(behavior: Behavior) -> list[dict[str, Any]]:
    """The behaviour's published reference rows (in its default objective), as leaderboard lines."""
    originals = {p.source: p.perplexity for p in behavior.published if p.method in ("original", "none")}
    return [_line(source=p.source, model=p.model, method=p.method, dsas=PLAIN_MODE, best_objective=p.value,
                  ppl_at_best=p.perplexity, delta_ppl_at_best=p.perplexity - originals[p.source],
                  accuracy_at_best=p.accuracy, accuracy_task=MMLU, scorer=p.scorer, prompt_set=p.prompt_set,
                  objective=behavior.default_objective,
                  behavior=behavior.name)
            for p in behavior.published]


def _rank_key(line: Mapping[str, Any], objective: Objective) -> tuple:
    best = line["best_objective"]
    better = 0.0 if best is None else -objective.gain(best, 0.0)  # ascending: the best first
    return best is None, better, -(line["hv_ppl"] or 0.0), line["method"], line["dsas"]


def leaderboard(rows: Sequence[Row], *, max_delta_ppl: float | str | Budget | None = 1.0, n_boot: int = 1000,
                seed: int = 0, include_published: bool = True,
                objective: str | None = None) -> list[dict[str, Any]]:
    """Leaderboard lines (dicts with ``COLUMNS``): ranked measured lines, the baseline, published rows.

    Refuses rows mixing models, scorers or prompt sets (``UsageError`` naming the values and the
    filter). ``best_*``: AcT's summary within ``max_delta_ppl`` of the unsteered perplexity (absolute,
    or relative as ``"5%"``; None: ``budget_of`` the rows); rows whose perplexity exploded are left out;
    ``hv_ppl``: hypervolume with that same budget as the reference's slack; ``d_*`` and
    ``front_vs_plain`` on DSAS lines: DSAS − plain of the same method (``compare_fronts`` with
    ``n_boot`` prompt resamples, seeded by ``seed``). ``objective``: the objective of the rows' behaviour
    that ranks and bounds the fronts (its default when None), in the ``best_objective`` column whatever
    it is; published rows are always in the behaviour's default objective.
    """
    check_comparable(rows)
    behavior, chosen = row_behavior(rows), objective_of(rows, objective)
    base = baseline_point(rows)
    max_delta_ppl = budget_of(rows, max_delta_ppl).delta(base["perplexity"])
    by_line: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for point in aggregate_seeds(rows):
        if point["method"] != BASELINE_METHOD:
            by_line.setdefault((point["method"], point["dsas"]), []).append(point)
    task = accuracy_task(rows)
    steered = sorted({(r["method"], r["dsas"]) for r in rows if r["method"] != BASELINE_METHOD})
    lines = {key: _measured(by_line[key], base, max_delta_ppl, task, chosen, _calibrations(rows, *key))
             if key in by_line else _line(source=MEASURED, method=key[0], dsas=key[1],
                                          **_at(None, base, task, chosen))
             for key in steered}
    for (method, mode), line in lines.items():
        line["n_exploded"] = sum(exploded(r) for r in rows if r["method"] == method and r["dsas"] == mode)
    unsteered = [r for r in rows if r["method"] == BASELINE_METHOD]
    for (method, mode), line in lines.items():
        plain = lines.get((method, PLAIN_MODE))
        if mode == PLAIN_MODE or plain is None:
            continue
        cmp = compare_fronts([r for r in rows if r["method"] == method and r["dsas"] == PLAIN_MODE],
                             [r for r in rows if r["method"] == method and r["dsas"] == mode], unsteered,
                             slack=max_delta_ppl, n_boot=n_boot, seed=seed, objective=chosen.name)
        both = line["best_objective"] is not None and plain["best_objective"] is not None
        low, high = cmp["hv_diff_ci"] or (None, None)
        line.update(d_best_objective=line["best_objective"] - plain["best_objective"] if both else None,
                    d_hv_ppl=cmp["hv_diff"], d_hv_ppl_ci_low=low, d_hv_ppl_ci_high=high,
                    front_vs_plain=cmp["relation"])
    ranked = sorted(lines.values(), key=lambda line: _rank_key(line, chosen))
    for rank, line in enumerate(ranked, start=1):
        line["rank"] = rank
    baseline_line = _line(source=UNSTEERED, method=BASELINE_METHOD, dsas=PLAIN_MODE, **_at(base, base, task, chosen),
                          n_seeds=base["n_seeds"])
    return [*ranked, baseline_line, *(_published(behavior) if include_published else [])]


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "–"
    return format(value, spec) if isinstance(value, float) else str(value)


def _ci(line: Mapping[str, Any]) -> str:
    low, high = line["d_hv_ppl_ci_low"], line["d_hv_ppl_ci_high"]
    return "–" if low is None else f"[{low:+.2f}, {high:+.2f}]"


Column = tuple[str, Callable[[Mapping[str, Any]], str]]


def _value(value: float | None, objective: Objective, sign: str = "") -> str:
    """An objective's value: a percentage to two decimals, a score to three."""
    return _fmt(value, f"{sign}.2f" if objective.unit == "%" else f"{sign}.3f")


def _measured_table(objective: Objective) -> tuple[Column, ...]:
    return (
        ("rank", lambda r: _fmt(r["rank"])), ("method", lambda r: r["method"]), ("DSAS", lambda r: r["dsas"]),
        (f"best {objective.label} (ΔPPL ≤ budget)", lambda r: _value(r["best_objective"], objective)),
        ("λ", lambda r: _fmt(r["best_strength"], "g")), ("PPL", lambda r: _fmt(r["ppl_at_best"])),
        ("ΔPPL", lambda r: _fmt(r["delta_ppl_at_best"], "+.2f")),
        ("accuracy ± s.e.", lambda r: _fmt(r["accuracy_at_best"], ".3f") + (
            "" if r["accuracy_stderr_at_best"] is None else f" ± {r['accuracy_stderr_at_best']:.3f}")),
        ("HV ×PPL", lambda r: _fmt(r["hv_ppl"])), ("HV ×acc", lambda r: _fmt(r["hv_acc"], ".4f")),
        ("Δ best vs plain", lambda r: _value(r["d_best_objective"], objective, "+")),
        ("Δ HV vs plain", lambda r: _fmt(r["d_hv_ppl"], "+.2f")), ("Δ HV 95% CI", _ci),
        ("front vs plain", lambda r: _fmt(r["front_vs_plain"])), ("seeds", lambda r: _fmt(r["n_seeds"])),
        ("λ_max (calibrated)", lambda r: _fmt(r["lambda_max"], ".3g")),
    )


def _published_table(objective: Objective) -> tuple[Column, ...]:
    return (
        ("source", lambda r: r["source"]), ("method", lambda r: r["method"]),
        (objective.label, lambda r: _fmt(r["best_objective"])), ("PPL", lambda r: _fmt(r["ppl_at_best"])),
        ("ΔPPL", lambda r: _fmt(r["delta_ppl_at_best"], "+.2f")),
        ("MMLU %", lambda r: _fmt(100 * r["accuracy_at_best"], ".2f")),
    )


def _markdown_table(columns: Sequence[Column], lines: Sequence[Mapping[str, Any]]) -> list[str]:
    return ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cell(line) for _, cell in columns) + " |" for line in lines)]


def _notes(measured: Sequence[Mapping[str, Any]]) -> list[str]:
    """Which lines have no point within the budget (and what to do), and which cells exploded."""
    notes = []
    outside = [f"{line['method']} ({line['dsas']})" for line in measured
               if line["source"] == MEASURED and line["best_objective"] is None]
    if outside:
        notes.append(f"No point within the budget: {', '.join(outside)}. One strength grid cannot serve every "
                     "method (λ scales a transport in [0, 1] but a raw vector's full norm): rerun the sweep with "
                     "`--strengths auto` to calibrate each method's strengths to the budget.")
    blown = [f"{line['method']} ({line['dsas']}): {line['n_exploded']}" for line in measured if line["n_exploded"]]
    if blown:
        notes.append(f"Cells whose perplexity exploded (over {EXPLOSION_FACTOR}× the unsteered, or NaN) are left "
                     f"out of every front: {', '.join(blown)}.")
    return [note for text in notes for note in ("", text)]


def _markdown(lines: Sequence[Mapping[str, Any]], budget: str, n_boot: int, seed: int) -> str:
    measured = [line for line in lines if line["source"] in (MEASURED, UNSTEERED)]
    published = [line for line in lines if line["source"] not in (MEASURED, UNSTEERED)]
    first = measured[0]
    objective = line_objective(first)
    label = objective.label
    text = [
        "# Leaderboard", "",
        f"Behaviour `{first['behavior']}` · model `{first['model']}` · scorer `{first['scorer']}` · prompt set "
        f"`{first['prompt_set']}`.", "",
        f"Ranked by the best {label} ({objective.better}) with perplexity at most {budget} "
        "above the unsteered model (AcT's summary; lines without such a point last), then by the larger "
        f"hypervolume, then by method and DSAS mode names. Hypervolume (HV): the area of ({label}, "
        "utility) that a line's front gains over the unsteered point, with the utility budget as slack "
        f"(perplexity {budget}; accuracy −{DEFAULT_SLACK['accuracy']:g}). Δ columns on DSAS "
        "lines: DSAS − plain for the same method; the HV interval is a 95% bootstrap over prompts "
        f"({n_boot} resamples, seed {seed}); \"front vs plain\" tells whether the DSAS front dominates, is "
        "dominated by, crosses or equals the plain front within the budget (\"no point within budget\": "
        f"neither front has one; widen the budget with --max-delta-ppl; \"{NO_GAIN}\": no point inside it is "
        f"better in {label} than the unsteered model). Seed means; the unsteered line "
        "is context, not ranked. λ_max: the strength calibrated to the budget (`--strengths auto`), seed mean.", "",
        *_markdown_table(_measured_table(objective), measured), *_notes(measured),
    ]
    task = first["accuracy_task"]
    if task:
        text += ["", f"Accuracy: lm-eval `{task}` (mean over the requested tasks; ± lm-eval's standard error, "
                 "seed mean)."]
    if published:
        behavior = get_behavior(first["behavior"])
        text += ["", "## Reference rows (published; not ranked)", "", behavior.published_note + _mmlu_note(task), "",
                 *_markdown_table(_published_table(behavior.objective()), published)]
    return "\n".join(text) + "\n"


def _mmlu_note(task: str | None) -> str:
    """Whether the measured accuracy can stand beside the published MMLU column."""
    if task == MMLU:
        return " The measured accuracy is lm-eval's `mmlu` too."
    measured = f"of lm-eval `{task}`" if task else "not measured (no lm-eval task)"
    return f" The measured accuracy is {measured}, not MMLU: do not compare it with the MMLU column."


def write_leaderboard(rows: Sequence[Row], out_dir: str | Path, *, max_delta_ppl: float | str | Budget | None = 1.0,
                      n_boot: int = 1000, seed: int = 0, include_published: bool = True,
                      objective: str | None = None) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` into ``out_dir``.

    Returns their paths under the keys ``"md"``, ``"csv"`` and ``"png"``; options as ``leaderboard``.
    """
    from dsas_bench.analysis.plots import plot_leaderboard  # matplotlib is loaded only when rendering

    lines = leaderboard(rows, max_delta_ppl=max_delta_ppl, n_boot=n_boot, seed=seed,
                        include_published=include_published, objective=objective)
    budget = budget_of(rows, max_delta_ppl)
    delta = budget.delta(baseline_point(rows)["perplexity"])
    label = f"{budget} (+{delta:.3g} PPL)" if budget.relative else str(budget)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "png": out / "leaderboard.png"}
    paths["md"].write_text(_markdown(lines, label, n_boot, seed), encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in line.items()} for line in lines)
    plot_leaderboard([line for line in lines if line["source"] == MEASURED], paths["png"], delta)
    return paths
