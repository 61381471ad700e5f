"""The leaderboard: refusal to mix scorers/models/prompt sets, deterministic ranking, deltas, files."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import pytest
from helpers import baseline_rows, make_sweep

from dsas_bench.analysis import COLUMNS, leaderboard, write_leaderboard
from dsas_bench.analysis.pareto import NO_GAIN
from dsas_bench.behaviors import get_behavior
from dsas_bench.core.errors import UsageError


def sweep() -> list[dict[str, Any]]:
    """Baseline (50 %, PPL 10); budget +1 puts the hypervolume reference at (50, 11).

    Best toxicity within ΔPPL ≤ 1: linacts/on 10, iti/off 20 (tie with linacts/off, HV 15 > 14),
    linacts/off 20, actadd/off none (its only point is at PPL 12).
    """
    return [*baseline_rows(acc=0.5),
            *make_sweep("linacts", "off", {0.5: (30.0, 10.4), 1.0: (20.0, 10.8)}, acc=0.49),
            *make_sweep("linacts", "on", {0.5: (25.0, 10.3), 1.0: (10.0, 10.6)}, acc=0.49),
            *make_sweep("iti", "off", {1.0: (20.0, 10.5)}, acc=0.49),
            *make_sweep("actadd", "off", {2.0: (5.0, 12.0)}, acc=0.45)]


def test_ranking_order_deltas_and_unranked_context() -> None:
    lines = leaderboard(sweep(), n_boot=50)
    measured = [(line["rank"], line["method"], line["dsas"]) for line in lines if line["rank"] is not None]
    assert measured == [(1, "linacts", "on"), (2, "iti", "off"), (3, "linacts", "off"), (4, "actadd", "off")]
    by_name = {(line["method"], line["dsas"]): line for line in lines if line["source"] == "measured"}
    on, off = by_name["linacts", "on"], by_name["linacts", "off"]
    assert (on["best_objective"], on["best_strength"]) == (10.0, 1.0)
    assert on["delta_ppl_at_best"] == pytest.approx(0.6)
    assert on["hv_ppl"] == pytest.approx(23.5) and off["hv_ppl"] == pytest.approx(14.0)
    assert on["d_best_objective"] == -10.0 and on["d_hv_ppl"] == pytest.approx(9.5)
    assert on["d_hv_ppl_ci_low"] <= 9.5 <= on["d_hv_ppl_ci_high"]
    assert on["front_vs_plain"] == "dominates"
    assert off["d_hv_ppl"] is None and off["front_vs_plain"] is None
    assert by_name["actadd", "off"]["best_objective"] is None and by_name["actadd", "off"]["hv_ppl"] == 0.0
    baseline = next(line for line in lines if line["method"] == "none")
    assert baseline["rank"] is None and baseline["best_objective"] == 50.0


def test_equal_lines_are_ranked_by_name() -> None:
    rows = [*baseline_rows(), *make_sweep("zeta", "off", {1.0: (20.0, 10.5)}),
            *make_sweep("alpha", "off", {1.0: (20.0, 10.5)})]
    assert [line["method"] for line in leaderboard(rows, n_boot=0, include_published=False)] == [
        "alpha", "zeta", "none"]


def test_shuffled_rows_give_the_same_leaderboard_and_files(tmp_path: Path) -> None:
    rows = sweep()
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert leaderboard(shuffled, n_boot=50) == leaderboard(rows, n_boot=50)
    first = write_leaderboard(rows, tmp_path / "a", n_boot=50)
    second = write_leaderboard(shuffled, tmp_path / "b", n_boot=50)
    for kind in ("md", "csv"):
        assert first[kind].read_bytes() == second[kind].read_bytes()


def test_published_rows_are_marked_and_not_ranked() -> None:
    lines = leaderboard(sweep(), n_boot=0)
    published = [line for line in lines if line["source"].startswith("published: ")]
    assert len(published) == len(get_behavior("toxicity").published)
    assert all(line["rank"] is None for line in published)
    linear_act = next(line for line in published if line["source"] == "published: AcT Table 2, Gemma-2-2B"
                      and line["method"] == "Linear-AcT")
    assert (linear_act["best_objective"], linear_act["ppl_at_best"]) == (0.56, 14.79)
    assert linear_act["delta_ppl_at_best"] == pytest.approx(14.79 - 13.98)
    assert linear_act["accuracy_at_best"] == pytest.approx(0.513)
    assert not any(line["source"].startswith("published") for line in leaderboard(
        sweep(), n_boot=0, include_published=False))


METHODS_SECTION_5 = """
AcT Table 2|Gemma-2-2B|original 4.17 13.98 53.1|ITI-c 0.74 14.90 52.6|Mean-AcT 0.54 14.21 51.6
AcT Table 2|Gemma-2-2B|Linear-AcT 0.56 14.79 51.3|ActAdd 3.96 14.69 53.0
AcT Table 2|Llama-3-8B|original 5.80 9.06 65.3|Linear-AcT 1.35 9.56 64.5
LinEAS Table 1|Gemma-2-2B|none 4.00 14.79 53.03|LinEAS 0.73 15.46 52.22|Lin-AcT 1.60 14.78 52.43|ITI-c 1.17 14.00 52.78
LinEAS Table 1|Qwen2.5-1.5B|none 3.00 13.67 60.95|LinEAS 1.07 14.10 59.97
"""  # toxicity %, perplexity, MMLU %: METHODS.md §5, transcribed apart from the package's table


def test_every_published_row_is_the_papers_number() -> None:
    expected = {}
    for table in METHODS_SECTION_5.strip().splitlines():
        source, model, *entries = table.split("|")
        for entry in entries:
            method, tox, ppl, mmlu = entry.split()
            expected[(f"published: {source}, {model}", method)] = (float(tox), float(ppl), float(mmlu))
    lines = [line for line in leaderboard(sweep(), n_boot=0) if line["source"].startswith("published: ")]
    got = {(line["source"], line["method"]): (line["best_objective"], line["ppl_at_best"],
                                              round(100 * line["accuracy_at_best"], 2)) for line in lines}
    assert got == expected


def test_write_leaderboard_files(tmp_path: Path) -> None:
    paths = write_leaderboard(sweep(), tmp_path / "out", n_boot=20)
    assert set(paths) == {"md", "csv", "png"}
    assert paths["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with paths["csv"].open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == COLUMNS
    assert [row["method"] for row in table[:2]] == ["linacts", "iti"]
    assert table[0]["front_vs_plain"] == "dominates" and table[2]["front_vs_plain"] == ""
    text = paths["md"].read_text()
    assert "| 1 | linacts | on | 10.00 |" in text
    assert "## Reference rows (published; not ranked)" in text and "not comparable" in text


@pytest.mark.parametrize(("field", "other", "message"), [
    ("scorer", "jigsaw-bilstm", "results mix scorers detoxify-original and jigsaw-bilstm: numbers from "
                                "different scorers are not comparable; pass --scorer to choose one"),
    ("model", "gemma3", "results mix models gemma3 and smollm2: numbers from different models are not "
                        "comparable; pass --model to choose one"),
    ("prompt_set", "rtp:11aa22", "results mix prompt sets demo:3fa2c1 and rtp:11aa22: numbers from different "
                                 "prompt sets are not comparable; pass --prompt-set to choose one"),
])
def test_refuses_to_rank_incomparable_rows(field: str, other: str, message: str) -> None:
    rows = [*sweep(), *make_sweep("linacts", "on", {2.0: (5.0, 10.9)}, **{field: other})]
    with pytest.raises(UsageError) as caught:
        leaderboard(rows)
    assert str(caught.value) == message


def test_refusal_names_every_mixed_field() -> None:
    rows = [*sweep(), *make_sweep("iti", "on", {1.0: (5.0, 10.9)}, scorer="jigsaw-bilstm", model="gemma3")]
    with pytest.raises(UsageError, match="mix models gemma3 and smollm2.*; results mix scorers"):
        leaderboard(rows)


def test_refuses_results_without_a_baseline() -> None:
    with pytest.raises(UsageError, match=r"unsteered baseline \(method 'none'.*found none"):
        leaderboard(make_sweep("linacts", "off", {1.0: (20.0, 10.5)}))


def with_lmeval(rows: list[dict[str, Any]], task: str, stderr: float) -> list[dict[str, Any]]:
    """``rows`` whose accuracy is lm-eval's ``task`` (metric acc) with standard error ``stderr``."""
    return [{**row, "metrics": {**row["metrics"], "accuracy_stderr": stderr,
                                "lmeval": {task: {"metric": "acc", "value": row["metrics"]["accuracy"],
                                                  "stderr": stderr}}}} for row in rows]


@pytest.mark.parametrize(("task", "note"), [("mmlu", "The measured accuracy is lm-eval's `mmlu` too."),
                                            ("demo_mc", "of lm-eval `demo_mc`, not MMLU: do not compare")])
def test_accuracy_names_its_task_shows_its_stderr_and_only_mmlu_meets_the_mmlu_column(task, note,
                                                                                      tmp_path) -> None:
    rows = with_lmeval(sweep(), task, stderr=0.0125)
    lines = leaderboard(rows, n_boot=0)
    measured = [line for line in lines if line["source"] == "measured"]
    assert {line["accuracy_task"] for line in measured} == {task}
    assert {line["accuracy_stderr_at_best"] for line in measured if line["best_objective"] is not None} == {0.0125}
    text = write_leaderboard(rows, tmp_path, n_boot=0)["md"].read_text()
    assert note in text and "0.490 ± 0.013" in text and f"Accuracy: lm-eval `{task}`" in text


def unsteered_only_sweep() -> list[dict[str, Any]]:
    """The held-out case of issue 12: DSAS's only in-budget point has the unsteered toxicity, plain has none."""
    return [*baseline_rows(tox=15.0, ppl=133.0),
            *make_sweep("linacts", "off", {0.5: (14.0, 136.2), 1.0: (5.0, 150.0)}),
            *make_sweep("linacts", "on", {0.5: (15.0, 133.5), 1.0: (5.0, 134.8)})]


def test_no_detoxification_within_the_budget_is_not_dominance(tmp_path: Path) -> None:
    by_mode = {line["dsas"]: line for line in leaderboard(unsteered_only_sweep(), n_boot=20)
               if line["method"] == "linacts"}
    assert by_mode["on"]["best_objective"] == 15.0 and by_mode["off"]["best_objective"] is None
    assert by_mode["on"]["front_vs_plain"] == NO_GAIN
    text = write_leaderboard(unsteered_only_sweep(), tmp_path, n_boot=0)["md"].read_text()
    assert "dominates |" not in text and "No point within the budget: linacts (off)" in text
    assert "--strengths auto" in text


def test_relative_budget_gives_the_real_answer() -> None:
    lines = leaderboard(unsteered_only_sweep(), max_delta_ppl="5%", n_boot=20)  # +6.65 PPL
    on = next(line for line in lines if line["method"] == "linacts" and line["dsas"] == "on")
    assert on["front_vs_plain"] == "dominates" and on["best_objective"] == 5.0
    assert on["delta_ppl_at_best"] == pytest.approx(1.8)


def test_budget_defaults_to_the_rows_calibration_and_lambda_max_is_shown() -> None:
    calibration = {"budget": "+5%", "lambda_max": 1.0, "probes": [[1.0, 150.0]]}
    rows = [*baseline_rows(tox=15.0, ppl=133.0),
            *make_sweep("linacts", "off", {0.5: (14.0, 136.2), 1.0: (5.0, 150.0)}, calibration=calibration),
            *make_sweep("linacts", "on", {0.5: (15.0, 133.5), 1.0: (5.0, 134.8)}, calibration=calibration)]
    on = next(line for line in leaderboard(rows, max_delta_ppl=None, n_boot=0) if line["dsas"] == "on")
    assert on["front_vs_plain"] == "dominates" and on["lambda_max"] == 1.0 and on["calibrated_budget"] == "+5%"


def test_exploded_cells_are_flagged_and_kept_out_of_fronts(tmp_path: Path) -> None:
    exploded = make_sweep("actadd", "off", {5.0: (0.0, 96466.0)}, metrics={
        "tox_pct": 0.0, "perplexity": 96466.0, "accuracy": None, "perplexity_exploded": True},
        flags=["exploded-perplexity"])
    nan = make_sweep("actadd", "off", {4.0: (0.0, float("nan"))}, flags=["nan-perplexity"])
    rows = [*baseline_rows(), *make_sweep("actadd", "off", {1.0: (40.0, 10.5)}), *exploded, *nan]
    line = next(line for line in leaderboard(rows, max_delta_ppl=1e6, n_boot=0) if line["method"] == "actadd")
    assert line["best_objective"] == 40.0 and line["n_exploded"] == 4  # two seeds of each exploded strength
    assert "perplexity exploded" in write_leaderboard(rows, tmp_path, n_boot=0)["md"].read_text()
