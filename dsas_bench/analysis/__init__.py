"""Analysis of results rows: Pareto fronts, hypervolume, seed aggregation and the leaderboard."""

from dsas_bench.analysis.leaderboard import COLUMNS, leaderboard, write_leaderboard
from dsas_bench.analysis.pareto import (
    act_summary,
    aggregate_seeds,
    baseline_point,
    check_comparable,
    compare_fronts,
    front_relation,
    hypervolume,
    mean_ci,
    pareto_front,
    reference_point,
    select_rows,
)

__all__ = [
    "COLUMNS", "act_summary", "aggregate_seeds", "baseline_point", "check_comparable",
    "compare_fronts", "front_relation", "hypervolume", "leaderboard", "mean_ci", "pareto_front",
    "reference_point", "select_rows", "write_leaderboard",
]
