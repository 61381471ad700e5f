"""Pareto plots: files are valid PNG/SVG, one panel per method, the unsteered star, bad input refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import baseline_rows, make_row, make_sweep
from matplotlib.container import ErrorbarContainer

from dsas_bench.analysis.plots import pareto_figure, plot_pareto
from dsas_bench.core.errors import UsageError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rows_for(*methods: str, acc: float | None = None) -> list[dict[str, Any]]:
    """Baseline plus, per method, a plain and a DSAS sweep of two strengths."""
    steered = [make_sweep(m, mode, {0.5: (30.0, 10.4), 1.0: (20.0, 10.8)}, acc=acc)
               for m in methods for mode in ("off", "on")]
    return [*baseline_rows(acc=acc), *(row for sweep in steered for row in sweep)]


def test_plot_pareto_writes_valid_png_and_svg(tmp_path: Path) -> None:
    paths = plot_pareto(rows_for("linacts"), tmp_path / "plots" / "pareto.ppl")
    assert [p.name for p in paths] == ["pareto.ppl.png", "pareto.ppl.svg"]
    assert paths[0].read_bytes().startswith(PNG_MAGIC)
    assert ET.parse(paths[1]).getroot().tag.endswith("svg")


@pytest.mark.parametrize("methods", [("linacts",), ("linacts", "actadd"), ("a", "b", "c", "d")])
def test_one_panel_per_method(methods: tuple[str, ...]) -> None:
    fig = pareto_figure(rows_for(*methods))
    assert sorted(ax.get_title() for ax in fig.axes) == sorted(methods)


def test_panel_shows_both_fronts_star_and_strengths() -> None:
    rows = rows_for("linacts")
    rows.append(make_row("linacts", "on", 2.0, 0, 5.0, 12.0))  # one seed only: zero-width error bars
    (ax,) = pareto_figure(rows).axes
    styles = {line.get_linestyle() for line in ax.get_lines()}
    assert {"-", "--"} <= styles  # plain solid, DSAS dashed
    assert any(line.get_marker() == "*" for line in ax.get_lines())
    assert sorted(text.get_text() for text in ax.texts) == ["0.5", "0.5", "1", "1", "2"]


def test_accuracy_plot(tmp_path: Path) -> None:
    rows = rows_for("linacts", acc=0.5)
    assert "accuracy" in pareto_figure(rows, metric="accuracy").axes[0].get_ylabel()
    assert all(p.stat().st_size > 0 for p in plot_pareto(rows, tmp_path / "acc", "accuracy"))


def test_plot_refuses_bad_input() -> None:
    with pytest.raises(UsageError, match="no accuracy for"):
        pareto_figure(rows_for("linacts"), metric="accuracy")
    with pytest.raises(UsageError, match="unknown utility metric 'bleu'"):
        pareto_figure(rows_for("linacts"), metric="bleu")
    with pytest.raises(UsageError, match="pass --scorer"):
        pareto_figure([*rows_for("linacts"), *make_sweep("iti", "off", {1.0: (9.0, 11.0)}, scorer="other")])
    with pytest.raises(UsageError, match="only the unsteered baseline"):
        pareto_figure(baseline_rows())


def test_error_bars_are_the_seed_confidence_intervals() -> None:
    rows = [*baseline_rows(), make_row("linacts", "off", 1.0, 0, 20.0, 11.0),
            make_row("linacts", "off", 1.0, 1, 30.0, 13.0)]
    (ax,) = pareto_figure(rows).axes
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and list(c.lines[0].get_xdata()) == [25]]
    x_bars, y_bars = bars.lines[2]
    t = 12.706205  # Student t, 97.5 % quantile, 1 degree of freedom: two seeds
    half_x, half_y = t * np.std([20, 30], ddof=1) / np.sqrt(2), t * np.std([11, 13], ddof=1) / np.sqrt(2)
    np.testing.assert_allclose(x_bars.get_segments()[0][:, 0], [25 - half_x, 25 + half_x], rtol=1e-6)
    np.testing.assert_allclose(y_bars.get_segments()[0][:, 1], [12 - half_y, 12 + half_y], rtol=1e-6)
