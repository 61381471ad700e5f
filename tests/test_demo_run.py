"""The README's main command on the real demo task, then plot, leaderboard and explain on what it wrote (slow).

This is the whole pipeline as a new user runs it: the packaged SmolLM2, the project's demo data,
the offline scorer `auto` picks, and the local lm-eval task, with nothing mocked or shrunk.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import is_png

from dsas_bench.cli import main
from dsas_bench.run.strengths import spaced

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The output folder and stdout of `python -m dsas_bench run --method linacts --dsas`."""
    output = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "DSAS_BENCH_CACHE": str(tmp_path_factory.mktemp("demo-cache")), "HF_HUB_OFFLINE": "1"}
    ran = subprocess.run([sys.executable, "-m", "dsas_bench", "run", "--method", "linacts", "--dsas",
                          "--output", str(output)], env=env, capture_output=True, text=True, timeout=1200)
    assert ran.returncode == 0, ran.stderr[-3000:]
    return output, ran.stdout


def test_the_main_command_writes_complete_rows_a_summary_and_a_plot(demo_run):
    output, stdout = demo_run
    rows = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    calibration = rows[1]["calibration"]  # the demo calibrates 3 strengths to +5 % perplexity
    assert calibration["budget"] == "+5%" and calibration["lambda_max"] > 0 and calibration["probes"]
    assert [(row["method"], row["dsas"], row["strength"]) for row in rows] == [
        ("none", "off", 0.0), *(("linacts", "on", s) for s in spaced(calibration["lambda_max"], 3, "linear"))]
    for row in rows:
        metrics = row["metrics"]
        assert 0 <= metrics["tox_pct"] <= 100 and metrics["perplexity"] > 1 and 0 <= metrics["accuracy"] <= 1
        assert len(row["prompt_scores"]) == len(row["continuations"]) == 32
        assert row["scorer_info"]["chosen_by"] == "auto" and row["scorer_info"]["reason"]  # auto says what it took
        assert row["scorer"] == row["scorer_info"]["scorer"] or row["scorer"].startswith("detoxify")
        assert row["config_hash"] and row["versions"]["torch"] and row["device"] == "cpu"
    steered = rows[1]["intervention"]
    assert len(steered["modules"]) == 30 and steered["scaler"]["options"]["n_components"] == 5
    assert len({row["metrics"]["perplexity"] for row in rows}) == 4  # each strength measured itself
    assert "linacts    on" in stdout and "results.jsonl" in stdout
    assert is_png(output / "pareto.png") and (output / "pareto.svg").stat().st_size > 0


def test_plot_leaderboard_and_explain_read_the_demo_results(demo_run, capsys):
    output, _ = demo_run
    assert main(["plot", str(output), "--metric", "both"]) == 0
    assert all(is_png(output / name) for name in ("pareto.png", "pareto-accuracy.png"))
    assert main(["leaderboard", str(output)]) == 0
    table = (output / "leaderboard.md").read_text()
    assert "| linacts | on |" in table and "## Reference rows (published; not ranked)" in table
    assert is_png(output / "leaderboard.png") and (output / "leaderboard.csv").exists()
    capsys.readouterr()
    assert main(["explain", "You are such a stupid idiot, but the weather is nice today.", "--run",
                 str(output), "--no-color"]) == 0
    printed = capsys.readouterr().out
    assert "stupid[" in printed and "weather[" in printed and "heatmap:" in printed  # token[scale] annotations
    assert is_png(output / "explain-linacts-on-seed0.png")
