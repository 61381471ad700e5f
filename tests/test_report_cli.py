"""The report commands on a real (tiny) run: leaderboard and plot write valid files; bad input exits 2."""

import json
from pathlib import Path

import pytest
from helpers import finished_run, is_png

from dsas_bench.cli import main


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run per test module."""
    return finished_run(tiny_model_dir, tmp_path_factory)


def test_plot_writes_png_and_svg(run_dir, tmp_path, capsys):
    assert main(["plot", str(run_dir), "--output", str(tmp_path)]) == 0
    png, svg = tmp_path / "pareto.png", tmp_path / "pareto.svg"
    assert is_png(png) and "<svg" in svg.read_text()
    out = capsys.readouterr().out
    assert str(png) in out and str(svg) in out


def test_plot_accuracy_without_lm_eval_names_the_fix(run_dir, tmp_path, capsys):
    assert main(["plot", str(run_dir), "--metric", "both", "--output", str(tmp_path)]) == 2
    assert "--metric perplexity" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_leaderboard_writes_files_and_prints_the_table(run_dir, tmp_path, capsys):
    assert main(["leaderboard", str(run_dir), "--output", str(tmp_path), "--max-delta-ppl", "2"]) == 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "| meanacts | on |" in markdown and "+2 above the unsteered model" in markdown
    assert "meanacts" in (tmp_path / "leaderboard.csv").read_text() and is_png(tmp_path / "leaderboard.png")
    out = capsys.readouterr().out
    assert "| meanacts | on |" in out
    assert all(str(tmp_path / name) in out for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.png"))


def test_leaderboard_and_plot_rank_and_draw_by_expected_maximum_toxicity(run_dir, tmp_path, capsys):
    from dsas_bench.analysis import leaderboard
    from dsas_bench.run.results import load_rows

    assert main(["leaderboard", str(run_dir), "--objective", "emt", "--max-delta-ppl", "1000",
                 "--output", str(tmp_path)]) == 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "best Expected Maximum Toxicity (ΔPPL ≤ budget)" in markdown
    rows = load_rows([run_dir])
    lines = {(line["method"], line["dsas"]): line for line in leaderboard(rows, max_delta_ppl=1000, objective="emt")}
    best = min(row["metrics"]["emt"] for row in rows if (row["method"], row["dsas"]) == ("meanacts", "on"))
    assert lines["meanacts", "on"]["best_objective"] == pytest.approx(best)  # one seed: the row's own EMT
    assert lines["meanacts", "on"]["objective"] == "emt"
    assert main(["plot", str(run_dir), "--objective", "tox_prob", "--output", str(tmp_path)]) == 0
    assert is_png(tmp_path / "pareto-tox_prob.png")
    assert "Toxicity Probability" in (tmp_path / "pareto-tox_prob.svg").read_text()


def test_leaderboard_of_a_jsonl_file_defaults_to_its_folder(run_dir, tiny_model_dir):
    assert main(["leaderboard", str(run_dir / "results.jsonl"), "--model", str(tiny_model_dir)]) == 0
    assert (run_dir / "leaderboard.md").exists()


def test_mixed_scorers_fail_until_one_is_chosen(run_dir, tmp_path, capsys):
    other = tmp_path / "other.jsonl"
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    other.write_text("".join(json.dumps({**row, "scorer": "detoxify"}) + "\n" for row in rows))
    out = tmp_path / "board"
    assert main(["leaderboard", str(run_dir), str(other), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mix scorers" in err and "--scorer" in err and not out.exists()
    assert main(["leaderboard", str(run_dir), str(other), "--scorer", "detoxify", "--output", str(out)]) == 0


@pytest.mark.parametrize("command", ["leaderboard", "plot"])
def test_filter_matching_nothing_lists_the_values(run_dir, tiny_model_dir, capsys, command):
    assert main([command, str(run_dir), "--model", "gpt2"]) == 2
    err = capsys.readouterr().err
    assert "no rows match --model gpt2" in err and str(tiny_model_dir) in err


@pytest.mark.parametrize("command", ["leaderboard", "plot"])
def test_no_results_at_the_path(tmp_path, capsys, command):
    assert main([command, str(tmp_path)]) == 2
    assert f"no results at {tmp_path}" in capsys.readouterr().err


def test_budget_must_be_positive(run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", str(run_dir), "--max-delta-ppl", "-1"])
    assert exit_info.value.code == 2 and "not a positive number" in capsys.readouterr().err
