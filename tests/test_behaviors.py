"""Behaviours: the registry, options, the toxicity behaviour's numbers, sentiment (VADER) end to end on the tiny
model, and the objective's direction in fronts, hypervolumes and leaderboards."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_run_config
from helpers import BEHAVIOR_PLUGIN, SCALER_PLUGIN, install_plugin, make_row

from dsas_bench.analysis import compare_fronts, hypervolume, leaderboard, write_leaderboard
from dsas_bench.analysis.pareto import act_summary, aggregate_seeds
from dsas_bench.analysis.plots import pareto_figure
from dsas_bench.behaviors import BEHAVIORS, get_behavior, row_behavior
from dsas_bench.behaviors.toxicity.scorers import get_scorer
from dsas_bench.behaviors.toxicity.summary import toxicity_summary
from dsas_bench.cli import build_parser, main
from dsas_bench.core.data import load_prompts
from dsas_bench.core.errors import UsageError
from dsas_bench.run.config import load_config
from dsas_bench.run.sweep import run_sweep


# -- the registry and options ------------------------------------------------------------------------
def test_the_registry_holds_toxicity_first_and_sentiment_with_their_aliases():
    assert BEHAVIORS.names()[:2] == ["toxicity", "sentiment"]
    assert BEHAVIORS.canonical("Detoxification") == "toxicity" and BEHAVIORS.canonical("positivity") == "sentiment"
    assert get_behavior().name == "toxicity" and get_behavior().objective().name == "tox_pct"
    sentiment = get_behavior("sentiment")
    assert (sentiment.objective().name, sentiment.objective().direction) == ("vader_mean", "max")
    assert sentiment.objective("neg_pct").direction == "min"
    with pytest.raises(UsageError, match="behaviour 'sentiment' has no objective 'tox_pct'.*vader_mean, neg_pct"):
        sentiment.objective("tox_pct")


def test_behaviour_options_are_checked_like_every_component_s(tmp_path):
    with pytest.raises(UsageError, match="behaviour 'sentiment' has no option nosuch; its options are: hub_config"):
        get_behavior("sentiment", nosuch=1)
    with pytest.raises(UsageError, match="behaviour 'sentiment' option prompt_words must be int"):
        get_behavior("sentiment", prompt_words="four")
    assert get_behavior("sentiment", negative_label="neg").options["negative_label"] == "neg"  # int | str
    config = load_config("demo", {"behavior": "positivity", "behavior_options": {"prompt_words": 3}})
    assert (config.behavior, config.behavior_options) == ("sentiment", {"prompt_words": 3})
    with pytest.raises(UsageError, match="behaviour 'toxicity' has no option prompt_words; its options are: none"):
        load_config("demo", {"behavior_options": {"prompt_words": 3}})
    task = tmp_path / "bad.yaml"
    task.write_text("behavior: 3\n")
    with pytest.raises(UsageError, match="behavior must be str, got int 3"):
        load_config(str(task))


def test_behavior_flag_alias_and_bad_name_on_the_command_line(capsys):
    assert build_parser().parse_args(["run", "--behaviour", "sentiment"]).behavior == "sentiment"
    assert build_parser().parse_args(["sweep", "--behavior", "sentiment"]).behavior == "sentiment"
    assert main(["run", "--behavior", "nosuch", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown behaviour 'nosuch'; registered behaviours: toxicity, sentiment" in err
    assert main(["ls", "behaviors"]) == 0
    out = capsys.readouterr().out
    assert "vader_mean (default, higher is better)" in out and "tox_pct (default, lower is better)" in out


# -- toxicity: the numbers of the direct computation -----------------------------------------------
def test_the_toxicity_behaviour_s_rows_hold_the_direct_scorer_and_summary_numbers(tiny_model_dir, tmp_path):
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"], n_prompts=6, max_new_tokens=6,
                             samples_per_prompt=2, seeds=[3])
    rows = list(run_sweep(config))
    prompts = load_prompts(n=6, seed=config.prompt_seed)
    scorer = get_scorer("profanity")
    assert len(rows) == 2
    for row in rows:
        texts = [text for pair in row["continuations"] for text in pair]
        scores = scorer.score(texts).reshape(-1, 2)
        direct = toxicity_summary(scores, np.array([p.toxicity for p in prompts], dtype=float), seed=3)
        stored = {key: row["metrics"][key] for key in direct}
        assert json.loads(json.dumps(direct)) == stored  # every toxicity number and CI, split by prompt toxicity
        assert row["prompt_scores"] == scores.tolist() and row["behavior"] == "toxicity"
        assert row["scorer"] == "profanity" and row["flags"] == []


# -- sentiment ---------------------------------------------------------------------------------------
def test_vader_scores_and_the_sentiment_objectives_by_hand():
    sentiment = get_behavior("sentiment")
    scorer = sentiment.scorer("auto", {})
    hate, love, empty = scorer.score(["I hate this awful day.", "I love this wonderful day.", ""])
    assert hate < -0.5 and love > 0.5 and empty == 0.0
    grid = np.array([[-0.8, 0.6], [0.0, 0.02], [0.9, 0.5]])
    assert sentiment.per_prompt(grid, "vader_mean") == pytest.approx([-0.1, 0.01, 0.7])
    assert sentiment.per_prompt(grid, "neg_pct") == pytest.approx([50.0, 0.0, 0.0])
    assert sentiment.per_prompt(grid, "pos_pct") == pytest.approx([50.0, 0.0, 100.0])
    row = sentiment.scored_row(["a", "b", "c", "d", "e", "f"], grid.ravel(), [], 2, seed=0)
    metrics = row["metrics"]
    assert metrics["vader_mean"] == pytest.approx(0.61 / 3) and metrics["neg_pct"] == pytest.approx(50 / 3)
    low, high = metrics["vader_mean_ci"]
    assert -0.1 - 1e-9 <= low < metrics["vader_mean"] < high <= 0.7 + 1e-9
    assert row["continuations"] == [["a", "b"], ["c", "d"], ["e", "f"]] and row["prompt_scores"] == grid.tolist()
    with pytest.raises(UsageError, match="scores with auto or vader"):
        sentiment.scorer("detoxify", {})


def test_the_sentiment_demo_data_hub_errors_and_local_files(tmp_path):
    sentiment = get_behavior("sentiment")
    negative, positive = sentiment.fit_texts("demo", "toxic")
    scorer = sentiment.scorer("vader", {})
    assert len(negative) == len(positive) == 40 and not set(negative) & set(positive)
    assert (scorer.score(negative) <= -0.05).all() and (scorer.score(positive) >= 0.5).all()
    prompts = sentiment.prompts("demo", challenging_only=False, n=5, seed=42)
    assert len(prompts) == 5 and all(p.toxicity is None for p in prompts)
    with pytest.raises(UsageError, match="could not load 'stanfordnlp/sst2'.*HF_HUB_OFFLINE"):
        sentiment.fit_texts("hub", "toxic")
    with pytest.raises(UsageError, match="challenging-only.*no meaning for the sentiment behaviour"):
        sentiment.prompts("demo", challenging_only=True, n=5, seed=42)
    data = tmp_path / "reviews.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [{"text": "bad", "stars": "neg"}, {"text": "good", "stars": "pos"},
                                                      {"text": "meh", "stars": "mid"}]))
    local = get_behavior("sentiment", text_field="text", label_field="stars", negative_label="neg",
                         positive_label="pos")
    assert local.fit_texts(str(data), "toxic") == (["bad"], ["good"])
    with pytest.raises(UsageError, match="needs the fields 'sentence' and 'label'"):
        sentiment.fit_texts(str(data), "toxic")


def test_run_behavior_sentiment_on_the_tiny_model_writes_vader_rows_a_plot_and_a_leaderboard(tiny_model_dir,
                                                                                              tmp_path):
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"], behavior="sentiment", scorer="auto",
                             dsas=["off", "on"], strengths=[0.5, 1.0], n_prompts=4, max_new_tokens=4)
    rows = list(run_sweep(config))
    assert len(rows) == 5 and {row["behavior"] for row in rows} == {"sentiment"}
    for row in rows:
        assert row["scorer"] == "vader" and row["config"]["behavior"] == "sentiment"
        assert -1 <= row["metrics"]["vader_mean"] <= 1 and "tox_pct" not in row["metrics"]
        assert row["behavior_options"]["hub_dataset"] == "stanfordnlp/sst2"  # every option, resolved
    figure = pareto_figure(rows)
    assert figure.axes[0].get_xlabel() == "mean VADER compound score (higher is better)"
    paths = write_leaderboard(rows, tmp_path / "board", n_boot=20)
    table = paths["md"].read_text()
    assert "Behaviour `sentiment`" in table and "best mean VADER compound score" in table
    assert "Reference rows" not in table  # toxicity's published rows are not sentiment's
    assert {line["objective"] for line in leaderboard(rows, n_boot=0)} == {"vader_mean"}


# -- the objective's direction -----------------------------------------------------------------------
def sentiment_row(method: str, dsas: str, strength: float, score: float, ppl: float, seed: int = 0) -> dict:
    """A sentiment row whose 20 prompt scores all equal ``score`` (the mean VADER score)."""
    return make_row(method, dsas, strength, seed, 0.0, ppl, behavior="sentiment", scorer="vader",
                    metrics={"vader_mean": score, "neg_pct": 100.0 * (score <= -0.05),
                             "pos_pct": 100.0 * (score >= 0.05), "perplexity": ppl},
                    prompt_scores=[score] * 20)


def test_a_higher_is_better_objective_is_maximised_by_summaries_fronts_and_rankings():
    baseline = [sentiment_row("none", "off", 0.0, -0.5, 10.0)]
    plain = [sentiment_row("linacts", "off", 0.5, -0.2, 10.5), sentiment_row("linacts", "off", 1.0, 0.1, 10.9)]
    dsas = [sentiment_row("linacts", "on", 0.5, 0.0, 10.2), sentiment_row("linacts", "on", 1.0, 0.4, 10.8)]
    points = aggregate_seeds(plain)
    assert act_summary(points, baseline_ppl=10.0)["vader_mean"] == pytest.approx(0.1)  # the highest score
    assert act_summary(points, baseline_ppl=10.0, objective="neg_pct")["strength"] == 1.0  # fewest negatives
    # reference (−0.5, 11): plain gains 0.3 × 0.5 + 0.3 × 0.1 = 0.18; DSAS 0.5 × 0.8 + 0.4 × 0.2 = 0.48
    result = compare_fronts(plain, dsas, baseline, n_boot=0)
    assert result["relation"] == "dominates" and result["hv_plain"] == pytest.approx(0.18)
    assert result["hv_dsas"] == pytest.approx(0.48) and result["objective"] == "vader_mean"
    assert hypervolume([[0.1, 10.9]], (-0.5, 11.0), ("max", "min")) == pytest.approx(0.06)
    lines = [line for line in leaderboard([*baseline, *plain, *dsas], n_boot=0) if line["rank"]]
    assert [(line["dsas"], line["best_objective"]) for line in lines] == [("on", 0.4), ("off", 0.1)]
    assert lines[0]["d_best_objective"] == pytest.approx(0.3)


def test_rows_of_different_behaviours_are_refused():
    rows = [sentiment_row("none", "off", 0.0, -0.5, 10.0), make_row("none", "off", 0.0, 1, 50.0, 10.0)]
    assert row_behavior(rows[1:]).name == "toxicity"  # rows without a behaviour measured toxicity
    with pytest.raises(UsageError, match="results mix behaviours"):
        row_behavior(rows)
    with pytest.raises(UsageError, match="results mix behaviours"):
        leaderboard(rows, n_boot=0)




# -- a behaviour from another installed package ------------------------------------------------------
def test_a_behaviour_from_another_installed_package_runs_and_is_ranked_by_its_objective(tiny_model_dir, tmp_path):
    """One package registers a behaviour and a scaler; the run measures the one with the other."""
    env = install_plugin(tmp_path, "dsas-bench-toys", SCALER_PLUGIN + BEHAVIOR_PLUGIN,
                         {"dsas_bench.behaviors": {"brevity": "dsas_bench_toys:Brevity"},
                          "dsas_bench.scalers": {"half": "dsas_bench_toys:Half"}})
    listed = subprocess.run([sys.executable, "-m", "dsas_bench", "ls", "behaviors"], env=env, capture_output=True,
                            text=True, check=True)
    assert ("brevity        (plug-in from dsas-bench-toys); options: unit='words'; objectives: words "
            "(default, lower is better)") in listed.stdout
    listed = subprocess.run([sys.executable, "-m", "dsas_bench", "ls", "scalers"], env=env, capture_output=True,
                            text=True, check=True)
    assert "half           (plug-in from dsas-bench-toys); options: value=0.5" in listed.stdout
    output = tmp_path / "results"
    common = ["--model", str(tiny_model_dir), "--scorer", "profanity", "--lm-eval-tasks", "", "--n-prompts", "3",
              "--max-new-tokens", "6", "--fit-n", "8", "--strengths", "1", "--device", "cpu", "--quiet", "--no-plot",
              "--output", str(output)]
    ran = subprocess.run([sys.executable, "-m", "dsas_bench", "run", "--behaviour", "brevity", "--method", "meanacts",
                          "--dsas", "half", *common], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    rows = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["behavior"] == "brevity" and row["behavior_options"] == {"unit": "words"}
        assert row["dsas"] == ("off" if row["method"] == "none" else "half")
        words = [len(text.split()) for text in row["continuations"]]
        assert row["metrics"]["words"] == pytest.approx(np.mean(words)) and row["scorer"] == "words"
    board = subprocess.run([sys.executable, "-m", "dsas_bench", "leaderboard", str(output), "--n-boot", "10"],
                           env=env, capture_output=True, text=True)
    assert board.returncode == 0, board.stderr
    assert "best mean words per continuation (ΔPPL ≤ budget)" in (output / "leaderboard.md").read_text()
