"""Pareto fronts, hypervolume, seed aggregation and front comparison over results rows (numpy, scipy).

Objectives are 2-D: the behaviour's objective (one of the ``objectives`` of the behaviour the rows
measured, its default unless named; toxicity's % toxic is minimised, sentiment's mean VADER score
maximised) against a utility, either ``perplexity`` (minimised) or ``accuracy`` (maximised). Each
axis has a direction, ``"min"`` or ``"max"``.

Dominance and ties: point *q* dominates *p* when *q* is no worse than *p* on both axes and strictly
better on at least one. Exact duplicates therefore never dominate each other: all copies of a
non-dominated point are on the front.

Hypervolume reference: steering never lowers perplexity much below the unsteered model's (nor raises
its accuracy), so the unsteered point itself would give every method a hypervolume of zero. The
reference used here is the unsteered point moved by a *slack* on the utility axis (``DEFAULT_SLACK``:
+1 perplexity, AcT's budget; −0.02 accuracy), so the hypervolume is the area a front gains over the
unsteered model within that utility budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy.stats import t as student_t

from dsas_bench.behaviors import DEFAULT_BEHAVIOR, get_behavior, row_behavior
from dsas_bench.behaviors.base import Objective
from dsas_bench.core.errors import UsageError, warn
from dsas_bench.run.results import EXPLODED_FLAGS

Row = Mapping[str, Any]
Direction = Literal["min", "max"]
Relation = Literal["dominates", "dominated", "crosses", "equal"]
OUTSIDE_BUDGET = "no point within budget"  # compare_fronts: neither front has a point inside the reference box
NO_GAIN = "neither improves on the unsteered model within the budget"  # compare_fronts: no point in the box gains

BASELINE_METHOD = "none"
PLAIN_MODE = "off"
GROUP_KEYS = ("model", "scorer", "prompt_set", "method", "dsas", "strength")
UTILITY_METRICS = ("perplexity", "accuracy")
UTILITY_DIRECTION: dict[str, Direction] = {"perplexity": "min", "accuracy": "max"}
DEFAULT_SLACK = {"perplexity": 1.0, "accuracy": 0.02}
# key -> (plural used in messages, CLI option that selects one value)
COMPARABLE_KEYS = {"model": ("models", "--model"), "scorer": ("scorers", "--scorer"),
                   "prompt_set": ("prompt sets", "--prompt-set")}
_SIGN = {"min": 1.0, "max": -1.0}
_REQUIRED = ("model", "method", "dsas", "strength", "seed", "scorer", "prompt_set", "metrics")


# --------------------------------------------------------------------------- points


def _minimised(points: Any, directions: Sequence[str]) -> np.ndarray:
    """``points`` as an (n, 2) float array with every axis turned into a minimisation."""
    if len(directions) != 2 or any(d not in _SIGN for d in directions):
        raise UsageError(f"directions must be two of 'min'/'max', got {tuple(directions)!r}; "
                         "e.g. ('min', 'min') for toxicity and perplexity, ('min', 'max') for accuracy")
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.empty((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise UsageError(f"points must be an (n, 2) array of (objective, utility), got shape {arr.shape}")
    if np.isnan(arr).any():
        raise UsageError("points contain NaN: drop rows whose metrics are missing before computing a front")
    return arr * np.array([_SIGN[d] for d in directions])


def _front_mask(pts: np.ndarray) -> np.ndarray:
    """Non-dominated mask of minimisation points (see the module docstring for ties)."""
    no_worse = (pts[None, :, :] <= pts[:, None, :]).all(axis=2)  # [p, q]: q no worse than p
    better = (pts[None, :, :] < pts[:, None, :]).any(axis=2)
    return ~(no_worse & better).any(axis=1)


def pareto_front(points: Any, directions: Sequence[str] = ("min", "min")) -> list[int]:
    """Ascending indices of the non-dominated points; exact duplicates are all kept."""
    return np.flatnonzero(_front_mask(_minimised(points, directions))).tolist()


def hypervolume(points: Any, reference: Sequence[float], directions: Sequence[str] = ("min", "min")) -> float:
    """Area dominated by ``points`` and bounded by ``reference``; points worse on any axis add nothing."""
    pts = _minimised(points, directions)
    ref = _minimised([reference], directions)[0]
    pts = pts[(pts <= ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    front = np.unique(pts[_front_mask(pts)], axis=0)  # x ascending, so y descending along the front
    widths = np.diff(np.append(front[:, 0], ref[0]))
    return float(np.sum(widths * (ref[1] - front[:, 1])))


def _covers(a: np.ndarray, b: np.ndarray) -> bool:
    """Every point of ``b`` is weakly dominated by (no better than) some point of ``a``."""
    return all((a <= p).all(axis=1).any() for p in b)


def front_relation(front_a: Any, front_b: Any, directions: Sequence[str] = ("min", "min")) -> Relation:
    """How front A stands to front B.

    A *covers* B when every point of B is weakly dominated by some point of A. Then ``"equal"``: each
    covers the other; ``"dominates"``: A covers B but not conversely; ``"dominated"``: B covers A but
    not conversely; ``"crosses"``: neither covers the other. An empty front is covered by anything.
    """
    a, b = _minimised(front_a, directions), _minimised(front_b, directions)
    a_covers, b_covers = _covers(a, b), _covers(b, a)
    if a_covers and b_covers:
        return "equal"
    if a_covers:
        return "dominates"
    return "dominated" if b_covers else "crosses"


# --------------------------------------------------------------------------- rows


def _describe(row: Row, i: int) -> str:
    return f"row {i}" + (f" (cell {row['cell_id']})" if "cell_id" in row else "")


def check_rows(rows: Sequence[Row]) -> None:
    """Raise ``UsageError`` unless ``rows`` is non-empty and every row has the fields analysis needs."""
    if not rows:
        raise UsageError("no results rows to analyse: run the sweep first, or check the filters you passed")
    objective = row_behavior(rows).default_objective
    for i, row in enumerate(rows):
        missing = [k for k in _REQUIRED if k not in row]
        metrics = row.get("metrics", {})
        missing += [f"metrics.{k}" for k in (objective, "perplexity") if metrics.get(k) is None]
        if missing:
            raise UsageError(f"{_describe(row, i)} lacks {', '.join(missing)}: results rows must follow the "
                             "results.jsonl schema; re-run the sweep for that cell or drop the row")


def _join(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} and {values[-1]}"


def check_comparable(rows: Sequence[Row]) -> None:
    """Refuse rows from different models, scorers or prompt sets, naming the values and the filter."""
    check_rows(rows)
    problems = []
    for key, (plural, option) in COMPARABLE_KEYS.items():
        values = sorted({str(row[key]) for row in rows})
        if len(values) > 1:
            problems.append(f"results mix {plural} {_join(values)}: numbers from different {plural} are not "
                            f"comparable; pass {option} to choose one")
    if problems:
        raise UsageError("; ".join(problems))


def select_rows(rows: Iterable[Row], *, model: str | None = None, scorer: str | None = None,
                prompt_set: str | None = None) -> list[Row]:
    """The rows matching every given value (``None`` matches all)."""
    given = {"model": model, "scorer": scorer, "prompt_set": prompt_set}
    wanted = {k: v for k, v in given.items() if v is not None}
    return [row for row in rows if all(str(row.get(k)) == v for k, v in wanted.items())]


def line_objective(line: Mapping[str, Any]) -> Objective:
    """The objective a leaderboard line's ``best_objective`` is in."""
    return get_behavior(line["behavior"]).objective(line["objective"])


def exploded(row: Row) -> bool:
    """Whether the sweep flagged a row's perplexity as exploded or NaN (flagged rows are kept out of fronts)."""
    return bool(EXPLODED_FLAGS & set(row.get("flags") or ()))


def _group_key(row: Row) -> tuple:
    return tuple(float(row[k]) if k == "strength" else str(row[k]) for k in GROUP_KEYS)


def _grouped(rows: Sequence[Row]) -> dict[tuple, list[Row]]:
    """Rows by ``GROUP_KEYS``, sorted by key and, within a group, by seed.

    A cell written twice (same ``cell_id``) counts once, the latest ``created`` kept. Two cells with
    the same group and seed come from different run configs and are refused.
    """
    check_rows(rows)
    latest: dict[Any, Row] = {}
    for i, row in enumerate(rows):
        cell = row.get("cell_id", i)
        if cell not in latest or str(row.get("created", "")) >= str(latest[cell].get("created", "")):
            latest[cell] = row
    groups: dict[tuple, dict[Any, Row]] = {}
    for row in latest.values():
        seeds = groups.setdefault(_group_key(row), {})
        clash = seeds.setdefault(row["seed"], row)
        if clash is not row:
            configs = sorted({str(clash.get("config_hash")), str(row.get("config_hash"))})
            raise UsageError(f"two rows for method {row['method']} (dsas={row['dsas']}) at strength "
                             f"{row['strength']}, seed {row['seed']}, from run configs {_join(configs)}: "
                             "seeds of different configs cannot be averaged; keep the rows of one config")
    return {key: [seeds[s] for s in sorted(seeds)] for key, seeds in sorted(groups.items())}


# --------------------------------------------------------------------------- seeds


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean and t confidence interval over seeds; one value gives a zero-width interval."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, (mean, mean)
    half = float(student_t.ppf((1 + level) / 2, len(arr) - 1)) * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return mean, (mean - half, mean + half)


def _aggregate(key: tuple, group: Sequence[Row], level: float, metrics: Sequence[str]) -> dict[str, Any]:
    point: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
    point["behavior"] = group[0].get("behavior", DEFAULT_BEHAVIOR)
    point["seeds"] = [row["seed"] for row in group]
    point["n_seeds"] = len(group)
    for metric in metrics:
        values = [row["metrics"][metric] for row in group if row["metrics"].get(metric) is not None]
        point[metric], point[f"{metric}_ci"] = mean_ci(values, level) if values else (None, None)
    errors = [row["metrics"].get("accuracy_stderr") for row in group]
    point["accuracy_stderr"] = float(np.mean(errors)) if errors and None not in errors else None
    return point


def aggregate_seeds(rows: Sequence[Row], level: float = 0.95) -> list[dict[str, Any]]:
    """One point per (model, scorer, prompt_set, method, dsas, strength): seed means and t CIs.

    Each point has the group keys, ``behavior``, ``seeds``, ``n_seeds`` and, for each metric (the objectives
    of the rows' behaviour, ``perplexity`` and ``accuracy``), the mean and ``<metric>_ci`` = (low, high) over
    the seeds that report the metric (``None`` when none does), and ``accuracy_stderr``, the seed mean
    of lm-eval's standard error (``None`` when a seed lacks it). Points are sorted by the group keys.
    """
    metrics = (*(objective.name for objective in row_behavior(rows).objectives), *UTILITY_METRICS)
    return [_aggregate(key, group, level, metrics) for key, group in _grouped(unflagged(rows)).items()]


def unflagged(rows: Sequence[Row]) -> list[Row]:
    """The rows without quality flags (``row["flags"]``: NaN perplexity, empty continuations...), with a warning
    naming those left out."""
    kept = [row for row in rows if not row.get("flags")]
    if len(kept) != len(rows):
        left = "; ".join(f"{row.get('method')} λ = {row.get('strength')} seed {row.get('seed')} "
                         f"({', '.join(row['flags'])})" for row in rows if row.get("flags"))
        warn(f"{len(rows) - len(kept)} flagged rows left out of the fronts: {left}")
    return kept


def objective_of(items: Sequence[Mapping[str, Any]], objective: str | Objective | None = None) -> Objective:
    """The ``objective`` (its name; None: the default) of the behaviour the rows or aggregated points measured."""
    return objective if isinstance(objective, Objective) else row_behavior(items).objective(objective)


def act_summary(points: Sequence[Mapping[str, Any]], baseline_ppl: float, max_delta_ppl: float = 1.0,
                objective: str | Objective | None = None) -> Mapping[str, Any] | None:
    """AcT's summary: the aggregated point of best ``objective`` (lowest toxicity; highest for an objective to
    maximise) with perplexity ≤ baseline + ``max_delta_ppl``.

    Ties go to the lower perplexity, then the lower strength; ``None`` when no point qualifies.
    """
    chosen = objective_of(points, objective)
    budget = baseline_ppl + max_delta_ppl + 1e-9  # tolerance for float noise in the difference
    eligible = [p for p in points if p["perplexity"] <= budget]
    _lacking(eligible, chosen)
    sign = _SIGN[chosen.direction]
    return min(eligible, key=lambda p: (sign * p[chosen.name], p["perplexity"], p["strength"]), default=None)


# --------------------------------------------------------------------------- fronts of rows


def utility_for(metric: str) -> Direction:
    if metric not in UTILITY_DIRECTION:
        raise UsageError(f"unknown utility metric {metric!r}; choose one of {', '.join(UTILITY_DIRECTION)}")
    return UTILITY_DIRECTION[metric]


def _lacking(points: Sequence[Mapping[str, Any]], objective: Objective) -> None:
    """Refuse points without ``objective`` (rows older than the objective)."""
    lacking = sorted({f"{p['method']}/{p['dsas']}" for p in points if p.get(objective.name) is None})
    if lacking:
        raise UsageError(f"no {objective.name} for {', '.join(lacking)}: those rows predate it; rerun their cells, "
                         f"or use another --objective")


def metric_points(points: Sequence[Mapping[str, Any]], metric: str,
                  objective: str | Objective | None = None) -> np.ndarray:
    """(n, 2) array of (objective, metric) from aggregated points; refuses points lacking either."""
    utility_for(metric)
    chosen = objective_of(points, objective)
    _lacking(points, chosen)
    lacking = sorted({f"{p['method']}/{p['dsas']}" for p in points if p[metric] is None})
    if lacking:
        raise UsageError(f"no {metric} for {', '.join(lacking)}: run the sweep with that evaluation enabled, "
                         "or use metric='perplexity'")
    return np.array([[p[chosen.name], p[metric]] for p in points], dtype=float).reshape(-1, 2)


def reference_point(baseline: Mapping[str, Any], metric: str, slack: float | None = None,
                    objective: str | Objective | None = None) -> tuple[float, float]:
    """Hypervolume reference: the unsteered point moved by ``slack`` towards worse utility."""
    value, utility = metric_points([baseline], metric, objective)[0]
    slack = DEFAULT_SLACK[metric] if slack is None else slack
    return float(value), float(utility) + (slack if UTILITY_DIRECTION[metric] == "min" else -slack)


def baseline_point(rows: Sequence[Row]) -> dict[str, Any]:
    """The aggregated unsteered point (method "none") of ``rows``."""
    unsteered = [r for r in rows if r.get("method") == BASELINE_METHOD]
    points = aggregate_seeds(unsteered) if unsteered else []
    if len(points) != 1:
        found = ", ".join(f"strength {p['strength']}" for p in points) or "none"
        raise UsageError(f"expected one unsteered baseline (method '{BASELINE_METHOD}', strength 0) in the "
                         f"results, found {found}: run the sweep with its baseline cell, or filter the rows")
    return points[0]


def _in_box(pts: np.ndarray, reference: Sequence[float], directions: Sequence[str]) -> np.ndarray:
    """The points no worse than ``reference`` on either axis."""
    return pts[(_minimised(pts, directions) <= _minimised([reference], directions)[0]).all(axis=1)]


def _single(rows: Sequence[Row], what: str, method: str | None = None, modes: set[str] | None = None) -> str:
    """The one (method, dsas) pair of ``rows``, checked against the expected method and modes."""
    check_rows(rows)
    pairs = sorted({(str(r["method"]), str(r["dsas"])) for r in rows})
    if len(pairs) != 1 or (method is not None and pairs[0][0] != method) or (
            modes is not None and pairs[0][1] not in modes):
        found = ", ".join(f"{m}/dsas={d}" for m, d in pairs)
        raise UsageError(f"{what} must be the rows of one method and DSAS mode, got {found}: "
                         f"select them with the same method and a single dsas value")
    return pairs[0][0]


def _prompt_count(rows: Sequence[Row]) -> int:
    """The number of prompts, checked to be the length of every row's ``prompt_scores``."""
    n_prompts = max(len(r.get("prompt_scores") or []) for r in rows)
    for row in rows:
        n = len(row.get("prompt_scores") or [])
        if n != n_prompts:
            problem = f"has {n} prompt_scores where others have {n_prompts}" if n else "has no prompt_scores"
            raise UsageError(f"cell {row.get('cell_id')} {problem}: the prompt bootstrap needs one score per "
                             "prompt in every row; re-run that cell, or pass n_boot=0 to skip the bootstrap")
    return n_prompts


def _boot_objective(rows: Sequence[Row], idx: np.ndarray, objective: Objective) -> np.ndarray:
    """(n_boot, n_groups) seed-mean ``objective`` with the prompts resampled by ``idx``."""
    behavior = row_behavior(rows)
    shares = [[behavior.per_prompt(r["prompt_scores"], objective.name)[idx] for r in g]
              for g in _grouped(rows).values()]
    if not shares:  # every row exploded: no point
        return np.zeros((len(idx), 0))
    return np.stack([np.mean([t.mean(axis=1) for t in group], axis=0) for group in shares], axis=1)


def _relation(boxed: Sequence[np.ndarray], unsteered: float, objective: Objective,
              directions: Sequence[str]) -> str:
    """``front_relation`` of the boxed DSAS and plain points, or why there is nothing to compare."""
    if not any(map(len, boxed)):
        return OUTSIDE_BUDGET
    if not any((objective.gain(pts[:, 0], unsteered) > 1e-9).any() for pts in boxed):
        return NO_GAIN
    return front_relation(*boxed, directions)


def compare_fronts(plain_rows: Sequence[Row], dsas_rows: Sequence[Row], baseline: Sequence[Row], *,
                   metric: str = "perplexity", slack: float | None = None, n_boot: int = 1000,
                   seed: int = 0, level: float = 0.95, objective: str | None = None) -> dict[str, Any]:
    """Compare the DSAS front of one method with its plain front.

    ``plain_rows``: the method's rows with dsas "off"; ``dsas_rows``: its rows for one DSAS mode;
    ``baseline``: the unsteered rows (method "none"). Points are seed means; fronts are compared with
    ``front_relation`` (DSAS relative to plain) after keeping only points inside the hypervolume box
    (no worse than ``reference_point`` on either axis), so "dominates" implies a hypervolume gain;
    ``OUTSIDE_BUDGET`` when neither front has a point in the box (widen the budget, ``slack``), and
    ``NO_GAIN`` when no point in the box is better than the unsteered model (nothing to dominate with).

    The interval of ``hv_diff`` (DSAS − plain) is a percentile bootstrap over prompts: each replicate
    draws prompt indices with replacement once and applies them to every row (all share one prompt
    set, so a prompt keeps its identity across rows and seeds), recomputes each row's ``objective`` (the
    behaviour's default when None) from ``prompt_scores`` (one score per prompt or k of them), the seed means, the
    reference and both hypervolumes; the utility is held fixed. ``n_boot=0`` skips it (``hv_diff_ci`` is then ``None``).
    """
    check_comparable([*plain_rows, *dsas_rows, *baseline])
    method = _single(plain_rows, "plain_rows", modes={PLAIN_MODE})
    mode = _single(dsas_rows, "dsas_rows", method=method)
    if mode == PLAIN_MODE:
        raise UsageError("dsas_rows have dsas='off': pass the rows of a DSAS mode (on, e2e or cast)")
    _single(baseline, "baseline", method=BASELINE_METHOD)
    chosen = objective_of([*plain_rows, *dsas_rows, *baseline], objective)
    directions = (chosen.direction, utility_for(metric))
    plain, dsas = aggregate_seeds(plain_rows), aggregate_seeds(dsas_rows)
    ref = reference_point(baseline_point(baseline), metric, slack, chosen)
    plain_pts, dsas_pts = metric_points(plain, metric, chosen), metric_points(dsas, metric, chosen)
    hv_plain, hv_dsas = hypervolume(plain_pts, ref, directions), hypervolume(dsas_pts, ref, directions)
    boxed = [_in_box(pts, ref, directions) for pts in (dsas_pts, plain_pts)]
    relation = _relation(boxed, ref[0], chosen, directions)
    ci = None
    if n_boot > 0:
        n_prompts = _prompt_count([*plain_rows, *dsas_rows, *baseline])
        idx = np.random.default_rng(seed).integers(0, n_prompts, size=(n_boot, n_prompts))
        ref_values = _boot_objective(baseline, idx, chosen)[:, 0]
        plain_values, dsas_values = _boot_objective(plain_rows, idx, chosen), _boot_objective(dsas_rows, idx, chosen)
        diffs = [hypervolume(np.column_stack([dsas_values[b], dsas_pts[:, 1]]), (t, ref[1]), directions)
                 - hypervolume(np.column_stack([plain_values[b], plain_pts[:, 1]]), (t, ref[1]), directions)
                 for b, t in enumerate(ref_values)]
        lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
        ci = (float(lo), float(hi))
    return {"method": method, "dsas": mode, "metric": metric, "objective": chosen.name, "reference": ref,
            "relation": relation,
            "hv_plain": hv_plain, "hv_dsas": hv_dsas, "hv_diff": hv_dsas - hv_plain, "hv_diff_ci": ci,
            "n_boot": n_boot, "seed": seed}
