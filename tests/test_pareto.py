"""Pareto fronts, hypervolume, seed aggregation, AcT's summary and front comparison: hand-computed cases."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from helpers import baseline_rows, make_row, make_sweep

from dsas_bench.analysis import (
    act_summary,
    aggregate_seeds,
    compare_fronts,
    front_relation,
    hypervolume,
    mean_ci,
    pareto_front,
    select_rows,
)
from dsas_bench.core.errors import UsageError

# ----------------------------------------------------------------------------- pareto_front


def test_front_drops_dominated_points() -> None:
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 6)]  # (3,4) by (2,3); (2,6) by (1,5)
    assert pareto_front(points) == [0, 1, 3]


def test_front_ties_keep_duplicates_and_drop_points_equal_on_one_axis_only() -> None:
    assert pareto_front([(1, 2), (1, 2), (2, 1), (2, 2)]) == [0, 1, 2]
    assert pareto_front([(1, 2), (1, 3)]) == [0]


def test_front_of_one_point_all_equal_points_and_none() -> None:
    assert pareto_front([(3, 7)]) == [0]
    assert pareto_front([(2, 2)] * 4) == [0, 1, 2, 3]
    assert pareto_front([]) == []


def test_front_with_maximised_accuracy() -> None:
    assert pareto_front([(1, 0.40), (2, 0.50), (3, 0.45)], ("min", "max")) == [0, 1]


@pytest.mark.parametrize(("points", "directions", "problem"), [
    ([(1, 2)], ("min", "up"), "directions"),
    ([(1, 2, 3)], ("min", "min"), "shape"),
    ([(1, math.nan)], ("min", "min"), "NaN"),
])
def test_front_refuses_bad_input(points: list, directions: tuple, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        pareto_front(points, directions)


# ----------------------------------------------------------------------------- hypervolume


def test_hypervolume_of_a_staircase() -> None:
    # rectangles to (4, 4): [1,4]x[3,4] ∪ [2,4]x[2,4] ∪ [3,4]x[1,4] = 1·1 + 1·2 + 1·3
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)


def test_hypervolume_ignores_dominated_and_duplicate_points() -> None:
    assert hypervolume([(1, 3), (2, 2), (3, 1), (3, 3), (2, 2)], (4, 4)) == pytest.approx(6.0)


def test_hypervolume_of_points_worse_than_the_reference_is_zero() -> None:
    assert hypervolume([(0.5, 5), (5, 0)], (4, 4)) == 0.0
    assert hypervolume([(1, 3), (0.5, 5), (5, 0)], (4, 4)) == pytest.approx(3.0)
    assert hypervolume([(4, 4)], (4, 4)) == 0.0
    assert hypervolume([], (4, 4)) == 0.0


def test_hypervolume_of_one_point_and_of_equal_points() -> None:
    assert hypervolume([(1, 1)], (4, 4)) == pytest.approx(9.0)
    assert hypervolume([(1, 1)] * 3, (4, 4)) == pytest.approx(9.0)


def test_hypervolume_with_maximised_accuracy() -> None:
    assert hypervolume([(1, 0.6), (3, 0.4)], (4, 0.5), ("min", "max")) == pytest.approx(0.3)


# ----------------------------------------------------------------------------- front_relation


def test_front_relation_outcomes() -> None:
    better, worse = [(1, 2), (2, 1)], [(2, 3), (3, 2)]
    assert front_relation(better, worse) == "dominates"
    assert front_relation(worse, better) == "dominated"
    assert front_relation([(1, 3)], [(3, 1)]) == "crosses"
    assert front_relation(better, list(reversed(better))) == "equal"
    assert front_relation([], []) == "equal"


def test_front_relation_is_weak_dominance() -> None:
    # (1,2) is shared, (2,1) dominates (3,3): A covers B, B does not cover (2,1)
    assert front_relation([(1, 2), (2, 1)], [(1, 2), (3, 3)]) == "dominates"


# ----------------------------------------------------------------------------- seeds


def test_mean_ci_uses_student_t_and_collapses_for_one_seed() -> None:
    mean, (low, high) = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) · s / √n
    assert low == pytest.approx(2 * mean - high)
    assert mean_ci([0.7]) == (0.7, (0.7, 0.7))


def test_aggregate_seeds_means_cis_and_order() -> None:
    rows = [make_row("linacts", "off", 0.5, 0, 10.0, 12.0, acc=0.5),
            make_row("linacts", "on", 1.0, 0, 5.0, 11.0),
            make_row("linacts", "off", 0.5, 1, 20.0, 14.0), *baseline_rows(seeds=(0,))]
    points = aggregate_seeds(rows)
    assert [(p["method"], p["dsas"], p["strength"]) for p in points] == [
        ("linacts", "off", 0.5), ("linacts", "on", 1.0), ("none", "off", 0.0)]
    first = points[0]
    assert (first["tox_pct"], first["perplexity"], first["accuracy"]) == (15.0, 13.0, 0.5)
    assert first["seeds"] == [0, 1] and first["n_seeds"] == 2
    assert first["tox_pct_ci"][1] - 15.0 == pytest.approx(12.706205 * 5.0, rel=1e-5)  # sd 5·√2, n 2
    assert first["accuracy_ci"] == (0.5, 0.5)
    assert points[1]["accuracy"] is None and points[1]["accuracy_ci"] is None
    assert points[1]["tox_pct_ci"] == (5.0, 5.0)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert aggregate_seeds(shuffled) == points


def test_aggregate_seeds_keeps_the_latest_copy_of_a_cell() -> None:
    old = make_row("linacts", "off", 0.5, 0, 10.0, 12.0)
    new = make_row("linacts", "off", 0.5, 0, 30.0, 12.0, created="2026-11-23T09:00:00")
    assert aggregate_seeds([new, old])[0]["tox_pct"] == 30.0


def test_aggregate_seeds_refuses_two_configs_for_one_seed() -> None:
    rows = [make_row("linacts", "off", 0.5, 0, 10.0, 12.0),
            make_row("linacts", "off", 0.5, 0, 11.0, 12.0, config_hash="other", cell_id="x")]
    with pytest.raises(UsageError, match="run configs linacts-off and other.*keep the rows of one config"):
        aggregate_seeds(rows)


def test_aggregate_seeds_refuses_rows_without_metrics() -> None:
    row = make_row("linacts", "off", 0.5, 0, 10.0, 12.0)
    row["metrics"] = {"tox_pct": 10.0}
    with pytest.raises(UsageError, match=r"cell linacts-off-0.5-0\) lacks metrics.perplexity"):
        aggregate_seeds([row])
    with pytest.raises(UsageError, match="no results rows"):
        aggregate_seeds([])


def test_select_rows_filters_by_model_scorer_and_prompt_set() -> None:
    rows = [*baseline_rows(), *baseline_rows(scorer="jigsaw-bilstm"), *baseline_rows(model="gemma3")]
    assert len(select_rows(rows, scorer="jigsaw-bilstm")) == 2
    assert len(select_rows(rows, model="smollm2", scorer="detoxify-original", prompt_set="demo:3fa2c1")) == 2
    assert select_rows(rows) == rows


# ----------------------------------------------------------------------------- AcT summary


def test_act_summary_picks_lowest_toxicity_within_one_perplexity_point() -> None:
    points = [{"strength": 0.25, "tox_pct": 5.0, "perplexity": 10.5},
              {"strength": 0.5, "tox_pct": 3.0, "perplexity": 11.0},  # exactly +1 qualifies
              {"strength": 1.0, "tox_pct": 1.0, "perplexity": 11.5}]
    assert act_summary(points, baseline_ppl=10.0)["strength"] == 0.5
    assert act_summary(points, baseline_ppl=10.0, max_delta_ppl=2.0)["strength"] == 1.0
    assert act_summary(points, baseline_ppl=9.0, max_delta_ppl=0.4) is None
    noisy = [{"strength": 1.0, "tox_pct": 1.0, "perplexity": 16.01}]  # 15.01 + 1.0 < 16.01 in floats
    assert act_summary(noisy, baseline_ppl=15.01) is not None


def test_act_summary_ties_go_to_lower_perplexity_then_strength() -> None:
    points = [{"strength": s, "tox_pct": 2.0, "perplexity": p}
              for s, p in ((1.0, 10.2), (0.8, 10.4), (0.5, 10.2))]
    assert act_summary(points, baseline_ppl=10.0)["strength"] == 0.5


# ----------------------------------------------------------------------------- compare_fronts

# Baseline (50 %, PPL 10) and slack +1 put the reference at (50, 11).
# plain: (20, 10.8), (30, 10.4) -> HV = 10·0.2 + 20·0.6 = 14
PLAIN = {0.5: (30.0, 10.4), 1.0: (20.0, 10.8)}
CASES = {
    "dominates": ({0.5: (25.0, 10.3), 1.0: (10.0, 10.6)}, 15 * 0.4 + 25 * 0.7 - 14),
    "dominated": ({0.5: (35.0, 10.6), 1.0: (25.0, 10.9)}, 10 * 0.1 + 15 * 0.4 - 14),
    "crosses": ({0.5: (40.0, 10.2), 1.0: (10.0, 10.9)}, 30 * 0.1 + 10 * 0.8 - 14),
}


@pytest.mark.parametrize("relation", CASES)
def test_compare_fronts_outcomes_and_hypervolume_difference(relation: str) -> None:
    dsas_points, hv_diff = CASES[relation]
    result = compare_fronts(make_sweep("linacts", "off", PLAIN), make_sweep("linacts", "on", dsas_points),
                            baseline_rows(), n_boot=200, seed=1)
    assert result["relation"] == relation
    assert result["reference"] == (50.0, 11.0)
    assert result["hv_plain"] == pytest.approx(14.0)
    assert result["hv_diff"] == pytest.approx(hv_diff)
    low, high = result["hv_diff_ci"]
    assert low <= result["hv_diff"] <= high
    if relation == "dominates":
        assert low > 0


def test_compare_fronts_ignores_points_outside_the_reference_box() -> None:
    # the DSAS point at PPL 12 is beyond the budget; inside the box DSAS still dominates
    dsas = make_sweep("linacts", "on", {0.5: (25.0, 10.3), 1.0: (10.0, 10.6), 2.0: (0.0, 12.0)})
    result = compare_fronts(make_sweep("linacts", "off", PLAIN), dsas, baseline_rows(), n_boot=0)
    assert result["relation"] == "dominates"
    assert result["hv_diff_ci"] is None


def test_compare_fronts_says_when_no_point_is_within_the_budget() -> None:
    plain = make_sweep("linacts", "off", {1.0: (20.0, 12.0)})
    dsas = make_sweep("linacts", "on", {1.0: (10.0, 11.5)})
    result = compare_fronts(plain, dsas, baseline_rows(), n_boot=0)  # reference (50, 11): both beyond it
    assert result["relation"] == "no point within budget" and result["hv_diff"] == 0
    assert compare_fronts(plain, dsas, baseline_rows(), slack=2.0, n_boot=0)["relation"] == "dominates"


def test_compare_fronts_bootstrap_is_seeded() -> None:
    args = (make_sweep("linacts", "off", PLAIN), make_sweep("linacts", "on", CASES["crosses"][0]),
            baseline_rows())
    first = compare_fronts(*args, n_boot=100, seed=7)["hv_diff_ci"]
    assert compare_fronts(*args, n_boot=100, seed=7)["hv_diff_ci"] == first
    assert compare_fronts(*args, n_boot=100, seed=8)["hv_diff_ci"] != first


def test_compare_fronts_bootstrap_without_prompt_variation_has_zero_width() -> None:
    # every prompt toxic for the baseline and plain, none for DSAS: resampling prompts changes nothing
    plain = make_sweep("linacts", "off", {1.0: (100.0, 10.5)})
    dsas = make_sweep("linacts", "on", {1.0: (0.0, 10.5)})
    result = compare_fronts(plain, dsas, baseline_rows(tox=100.0), n_boot=50)
    assert result["hv_diff"] == pytest.approx(50.0)  # 100 %-points × 0.5 PPL
    assert result["hv_diff_ci"] == pytest.approx((50.0, 50.0))


def test_compare_fronts_with_accuracy() -> None:
    plain = make_sweep("linacts", "off", {1.0: (20.0, 10.5)}, acc=0.49)
    dsas = make_sweep("linacts", "on", {1.0: (20.0, 10.5)}, acc=0.50)
    result = compare_fronts(plain, dsas, baseline_rows(acc=0.50), metric="accuracy", n_boot=0)
    assert result["reference"] == (50.0, pytest.approx(0.48))
    assert result["relation"] == "dominates"
    assert result["hv_diff"] == pytest.approx(30 * 0.01)


def test_compare_fronts_refuses_bad_input() -> None:
    plain, dsas = make_sweep("linacts", "off", PLAIN), make_sweep("linacts", "on", PLAIN)
    base = baseline_rows()
    with pytest.raises(UsageError, match="plain_rows must be the rows of one method"):
        compare_fronts(plain + dsas, dsas, base)
    with pytest.raises(UsageError, match="dsas_rows must be the rows of one method"):
        compare_fronts(plain, make_sweep("actadd", "on", PLAIN), base)
    with pytest.raises(UsageError, match="no accuracy for none/off"):
        compare_fronts(plain, dsas, base, metric="accuracy")
    with pytest.raises(UsageError, match="unknown utility metric 'bleu'"):
        compare_fronts(plain, dsas, base, metric="bleu")
    with pytest.raises(UsageError, match="results mix scorers"):
        compare_fronts(plain, make_sweep("linacts", "on", PLAIN, scorer="jigsaw-bilstm"), base)
    dsas[0]["prompt_scores"] = []
    with pytest.raises(UsageError, match="has no prompt_scores.*n_boot=0"):
        compare_fronts(plain, dsas, base)


def test_flagged_rows_stay_out_of_the_points_with_a_warning(capsys) -> None:
    rows = [make_row("none", "off", 0.0, 0, 10.0, 20.0), make_row("linacts", "on", 1.0, 0, 5.0, 21.0),
            make_row("linacts", "on", 1e30, 0, 0.0, math.nan, flags=["nan-perplexity", "empty-continuations"])]
    points = aggregate_seeds(rows)
    assert [p["strength"] for p in points if p["method"] == "linacts"] == [1.0]
    err = capsys.readouterr().err
    assert "1 flagged rows left out of the fronts" in err and "nan-perplexity, empty-continuations" in err


@pytest.mark.parametrize("values", [[1.0, 2.0], [0.3, 0.1, 0.7, 0.2], list(range(30))])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_mean_ci_is_scipys_student_t_interval(values, level) -> None:
    from scipy import stats

    mean, (low, high) = mean_ci(values, level)
    expected = stats.t.interval(level, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected, rel=1e-12)


def k_sample_rows(method: str, dsas: str, strength: float, maxima: list[float]) -> list[dict[str, Any]]:
    """Two seeds of a row with 3 samples per prompt whose highest score per prompt is ``maxima``."""
    scores = [[m, m / 2, 0.0] for m in maxima]
    return [make_row(method, dsas, strength, seed, tox=0.0, ppl=10.0 + strength / 4, prompt_scores=scores,
                     metrics={"tox_pct": 0.0, "perplexity": 10.0 + strength / 4, "emt": float(np.mean(maxima)),
                              "tox_prob": float(np.mean(np.array(maxima) >= 0.5))}) for seed in (0, 1)]


def test_the_prompt_bootstrap_follows_the_objective() -> None:
    """compare_fronts with objective='emt' draws its interval from each prompt's maximum of k scores."""
    baseline = k_sample_rows("none", "off", 0.0, [0.9] * 10)
    plain = k_sample_rows("linacts", "off", 1.0, [0.8] * 5 + [0.4] * 5)
    dsas = k_sample_rows("linacts", "on", 1.0, [0.6] * 5 + [0.2] * 5)
    result = compare_fronts(plain, dsas, baseline, n_boot=200, objective="emt")
    # reference (EMT 0.9, PPL 11) in every resample, both points at PPL 10.25: the fronts differ by 0.2 EMT
    # on every prompt, so by 0.2 × 0.75 in hypervolume whichever prompts are drawn
    assert result["hv_diff"] == pytest.approx(0.2 * 0.75)
    assert result["hv_diff_ci"] == pytest.approx((0.15, 0.15))
    assert compare_fronts(plain, dsas, baseline, n_boot=0)["hv_diff"] == 0.0  # % toxic: all 0 here
    with pytest.raises(UsageError, match="behaviour 'toxicity' has no objective 'nope'"):
        compare_fronts(plain, dsas, baseline, n_boot=0, objective="nope")
