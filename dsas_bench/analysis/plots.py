"""Pareto plots of a behaviour's objective against a utility, and the leaderboard's bar chart (matplotlib, Agg).

Figures are built as ``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot, so
nothing global is touched and no display is needed. Plain steering (dsas "off") is drawn solid,
every DSAS mode dashed, each mode with its own colour and marker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dsas_bench.analysis.pareto import (
    BASELINE_METHOD,
    PLAIN_MODE,
    UTILITY_DIRECTION,
    Row,
    aggregate_seeds,
    check_comparable,
    line_objective,
    metric_points,
    objective_of,
    pareto_front,
)
from dsas_bench.behaviors.base import Objective
from dsas_bench.core.errors import UsageError

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
AXIS_LABELS = {"perplexity": "perplexity (lower is better)", "accuracy": "accuracy (higher is better)"}
MAX_COLUMNS = 3


def _styles(modes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Colour, marker, label and line style per DSAS mode, the same for a mode in every plot: modes in
    registry order (plain first, solid; the others dashed), then modes no longer registered, by name."""
    from dsas_bench.scalers import scaler_label, scaler_names

    known = scaler_names()
    order = sorted(set(modes), key=lambda m: (known.index(m) if m in known else len(known), m))
    slot = {mode: known.index(mode) if mode in known else len(known) + i for i, mode in enumerate(order)}
    return {m: {"color": f"C{slot[m] % 10}", "marker": MARKERS[slot[m] % len(MARKERS)], "label": scaler_label(m),
                "linestyle": "-" if m == PLAIN_MODE else "--"} for m in order}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _errors(points: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    """(2, n) distances from the means to the CI ends of ``metric``, for ``errorbar``."""
    return np.array([[p[metric] - p[f"{metric}_ci"][0], p[f"{metric}_ci"][1] - p[metric]] for p in points]).T


def _draw_mode(ax: Axes, points: Sequence[Mapping[str, Any]], metric: str, style: Mapping[str, Any],
               objective: Objective) -> None:
    """One mode of one method: points with seed-CI error bars, strengths, and the front as a line."""
    xy = metric_points(points, metric, objective)
    ax.errorbar(xy[:, 0], xy[:, 1], xerr=_errors(points, objective.name), yerr=_errors(points, metric),
                fmt=style["marker"], color=style["color"], markersize=5, capsize=2, elinewidth=0.8)
    for (x, y), point in zip(xy, points, strict=True):
        ax.annotate(f"{point['strength']:g}", (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7,
                    color=style["color"])
    front = xy[pareto_front(xy, (objective.direction, UTILITY_DIRECTION[metric]))]
    front = front[np.argsort(front[:, 0], kind="stable")]
    ax.plot(front[:, 0], front[:, 1], linestyle=style["linestyle"], color=style["color"], linewidth=1.5)


def pareto_figure(rows: Sequence[Row], metric: str = "perplexity", objective: str | None = None) -> Figure:
    """The Pareto figure of ``rows``: one panel per steered method, every DSAS mode in each panel, the behaviour
    measured by ``objective`` (one of the rows' behaviour's objectives; its default when None).

    Refuses rows mixing models, scorers or prompt sets, and a metric some point lacks.
    """
    check_comparable(rows)
    chosen = objective_of(rows, objective)
    points = aggregate_seeds(rows)
    baseline = [p for p in points if p["method"] == BASELINE_METHOD]
    methods = sorted({p["method"] for p in points} - {BASELINE_METHOD})
    if not methods:
        raise UsageError("the results hold only the unsteered baseline: sweep at least one steering method")
    styles = _styles([p["dsas"] for p in points if p["method"] != BASELINE_METHOD])
    ncols = min(len(methods), MAX_COLUMNS)
    nrows = math.ceil(len(methods) / ncols)
    fig = _new_figure(4.8 * ncols, 3.9 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(methods):]:
        ax.remove()
    for ax, method in zip(axes, methods, strict=False):
        for mode, style in styles.items():
            mode_points = [p for p in points if p["method"] == method and p["dsas"] == mode]
            if mode_points:
                _draw_mode(ax, mode_points, metric, style, chosen)
        if baseline:
            (bx, by), = metric_points(baseline, metric, chosen)
            ax.plot(bx, by, marker="*", markersize=14, color="black", linestyle="none")
        ax.set_title(method + _calibration_note(rows, method, styles), fontsize=9)
        ax.set_xlabel(f"{chosen.label} ({chosen.better})", fontsize=8)
        ax.set_ylabel(AXIS_LABELS[metric], fontsize=8)
        ax.grid(alpha=0.3)
    star = {"color": "black", "marker": "*", "markersize": 12, "linestyle": "none", "label": "unsteered"}
    handles = [Line2D([], [], **s) for s in (*styles.values(), star)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8,
               title="lines: Pareto fronts · numbers: strength λ · bars: 95% CI over seeds", title_fontsize=8)
    first = points[0]
    fig.suptitle(f"{first['model']} · scorer {first['scorer']} · prompts {_prompt_file(first['prompt_set'])}",
                 fontsize=10)
    return fig


def _calibration_note(rows: Sequence[Row], method: str, styles: Mapping[str, Mapping[str, Any]]) -> str:
    """`` · λ_max plain 0.42, DSAS 1.3 (ΔPPL +5%)`` from the method's calibrated rows (seed 0 first), or ''."""
    found: dict[str, Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: -r["seed"]):
        if row["method"] == method and row.get("calibration"):
            found[row["dsas"]] = row["calibration"]
    if not found:
        return ""
    modes = ", ".join(f"{styles[m]['label']} {found[m]['lambda_max']:.3g}" for m in styles if m in found)
    budgets = ", ".join(sorted({c["budget"] for c in found.values()}))
    return f" · λ_max {modes} (ΔPPL {budgets})"


def _prompt_file(prompt_set: str) -> str:
    """``name:hash`` of a prompt set, also for rows that recorded the prompt file's full path."""
    path, sep, digest = str(prompt_set).rpartition(":")
    return f"{Path(path).name}:{digest}" if sep and path else str(prompt_set)


def _save(fig: Figure, out_path_stem: str | Path, suffixes: Sequence[str]) -> list[Path]:
    stem = Path(out_path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}{suffix}" for suffix in suffixes]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def plot_pareto(rows: Sequence[Row], out_path_stem: str | Path, metric: str = "perplexity",
                objective: str | None = None) -> list[Path]:
    """Write ``pareto_figure(rows, metric, objective)`` to ``<stem>.png`` and ``<stem>.svg``; returns both paths."""
    return _save(pareto_figure(rows, metric, objective), out_path_stem, (".png", ".svg"))


def leaderboard_figure(lines: Sequence[Mapping[str, Any]], max_delta_ppl: float = 1.0) -> Figure:
    """Bar chart of measured leaderboard lines in their order: best objective within the budget, hypervolume.

    One bar per line, coloured by DSAS mode (DSAS modes hatched); a line without a point within the
    budget has no objective bar.
    """
    styles = _styles([line["dsas"] for line in lines])
    fig = _new_figure(10, 1.4 + 0.35 * len(lines))
    panels = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(lines))
    label, better = (line_objective(lines[0]).label, line_objective(lines[0]).better) if lines else ("objective", "")
    titles = {"best_objective": f"best {label} with ΔPPL ≤ +{max_delta_ppl:g} ({better})",
              "hv_ppl": f"hypervolume, {label} × perplexity (higher is better)"}
    for (column, title), ax in zip(titles.items(), panels, strict=True):
        ax.barh(y, [np.nan if line[column] is None else line[column] for line in lines],
                color=[styles[line["dsas"]]["color"] for line in lines],
                hatch=[None if line["dsas"] == PLAIN_MODE else "//" for line in lines])
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    labels = [f"{line['rank']}. {line['method']} · {styles[line['dsas']]['label']}" for line in lines]
    panels[0].set_yticks(y, labels)
    panels[0].invert_yaxis()
    fig.suptitle("Leaderboard, measured lines (published reference rows: leaderboard.md)", fontsize=10)
    return fig


def plot_leaderboard(lines: Sequence[Mapping[str, Any]], out_path: str | Path,
                     max_delta_ppl: float = 1.0) -> Path:
    """Write ``leaderboard_figure(lines, max_delta_ppl)`` to ``out_path`` (PNG); returns the path."""
    out = Path(out_path)
    return _save(leaderboard_figure(lines, max_delta_ppl), out.parent / out.stem, (out.suffix or ".png",))[0]
