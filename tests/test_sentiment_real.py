"""`run --behavior sentiment` on the packaged SmolLM2 and the sentiment demo data, then plot and leaderboard (slow)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import is_png

from dsas_bench.analysis.plots import pareto_figure
from dsas_bench.cli import main

pytestmark = pytest.mark.slow


def test_run_behavior_sentiment_writes_vader_rows_a_plot_and_a_leaderboard_that_name_it(tmp_path):
    output = tmp_path / "sentiment"
    env = {**os.environ, "DSAS_BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    ran = subprocess.run([sys.executable, "-m", "dsas_bench", "run", "--behavior", "sentiment", "--method", "linacts",
                          "--dsas", "--strengths", "0.5,1", "--n-prompts", "6", "--max-new-tokens", "8",
                          "--lm-eval-tasks", "", "--n-perplexity-texts", "10", "--quiet", "--output", str(output)],
                         env=env, capture_output=True, text=True, timeout=1200)
    assert ran.returncode == 0, ran.stderr[-3000:]
    rows = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    assert [(row["method"], row["strength"]) for row in rows] == [("none", 0.0), ("linacts", 0.5), ("linacts", 1.0)]
    for row in rows:
        assert row["behavior"] == "sentiment" and row["scorer"] == "vader"
        assert -1 <= row["metrics"]["vader_mean"] <= 1 and len(row["prompt_scores"]) == 6
        assert "tox_pct" not in row["metrics"]
    assert "  vader   neg %" in ran.stdout and is_png(output / "pareto.png")
    assert pareto_figure(rows).axes[0].get_xlabel() == "mean VADER compound score (higher is better)"
    assert main(["plot", str(output), "--objective", "neg_pct"]) == 0
    assert is_png(output / "pareto-neg_pct.png")
    assert main(["leaderboard", str(output), "--n-boot", "50"]) == 0
    table = (output / "leaderboard.md").read_text()
    assert "Behaviour `sentiment`" in table and "| best mean VADER compound score (ΔPPL ≤ budget) |" in table
    assert "| linacts | on |" in table and is_png(output / "leaderboard.png")
    assert main(["leaderboard", str(output), "--objective", "tox_pct"]) == 2  # not an objective of sentiment
