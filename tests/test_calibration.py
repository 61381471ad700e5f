"""Strengths that mean the same for every method: per-method grids, calibration to a budget, fit once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run_config

import dsas_bench.run.calibration
from dsas_bench.cli import build_parser, main
from dsas_bench.cli.run import summary_table
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import steer
from dsas_bench.run.calibration import MAX_GROWTH, find_lambda_max
from dsas_bench.run.config import load_config
from dsas_bench.run.inputs import inputs_for, model_for
from dsas_bench.run.interventions import calibrated, fitted
from dsas_bench.run.plan import plan
from dsas_bench.run.strengths import Budget, grid_for, parse_budget, spaced
from dsas_bench.run.sweep import run_sweep
from dsas_bench.utility.perplexity import perplexity

GRID = "linacts=0.25,0.5,1;actadd=1,2,4;iti:on=0.5,1"


# -- the search, on known curves ---------------------------------------------------------------------
def test_search_finds_the_strength_where_the_budget_is_used_up() -> None:
    record = find_lambda_max(lambda s: 100 + 30 * s ** 2, 100.0, Budget(5.0, relative=True), start=1.0)
    assert record["reached"] and record["lambda_max"] == pytest.approx(math.sqrt(5 / 30), rel=0.03)
    assert record["perplexity_limit"] == 105.0 and 3 <= len(record["probes"]) <= 16


def test_search_grows_past_the_start_and_reports_a_budget_never_reached() -> None:
    grown = find_lambda_max(lambda s: 10 + 0.01 * s, 10.0, Budget(1.0), start=1.0)
    assert grown["reached"] and grown["lambda_max"] == pytest.approx(100, rel=0.06)
    flat = find_lambda_max(lambda s: 10.0, 10.0, Budget(1.0), start=0.5)
    assert not flat["reached"] and flat["lambda_max"] == 0.5 * MAX_GROWTH
    blown = find_lambda_max(lambda s: math.nan, 10.0, Budget(1.0), start=1.0)
    assert not blown["reached"] and blown["lambda_max"] < 1e-6


def test_budgets_and_spacings() -> None:
    assert parse_budget("5%").delta(133.0) == pytest.approx(6.65) and parse_budget(1).delta(133.0) == 1.0
    assert str(parse_budget("+5%")) == "+5%" and str(parse_budget("1")) == "+1"
    for bad in ("0", "-1", "lots", "nan%"):
        with pytest.raises(UsageError, match="not a positive number"):
            parse_budget(bad)
    assert spaced(0.9, 3, "linear") == [0.3, 0.6, 0.9] and spaced(0.8, 3, "geometric") == [0.2, 0.4, 0.8]


# -- grids ---------------------------------------------------------------------------------------------
def test_per_method_grids_from_the_command_line_and_a_task_file(tmp_path: Path) -> None:
    args = build_parser().parse_args(["sweep", "--strengths", GRID])
    task = tmp_path / "grids.yaml"
    task.write_text(yaml.safe_dump({"strengths": {"linacts": [0.25, 0.5, 1], "act-add": [1, 2, 4],
                                                  "iti:on": [0.5, 1]}}))
    for config in (load_config("demo", {"strengths": args.strengths}), load_config(str(task))):
        assert grid_for(config.strengths, "linacts", "on") == [0.25, 0.5, 1.0]
        assert grid_for(config.strengths, "actadd", "off") == [1.0, 2.0, 4.0]
        assert grid_for(config.strengths, "iti", "on") == [0.5, 1.0]
        assert grid_for(config.strengths, "iti", "off") == [i / 10 for i in range(1, 11)] + [1.5, 2.0]  # paper
    assert build_parser().parse_args(["run", "--strengths", "0.5,1"]).strengths == [0.5, 1.0]
    assert load_config("demo").strengths == "auto"
    cells = plan(load_config("demo", {"methods": ["linacts", "actadd"], "dsas": ["off"], "strengths": args.strengths}))
    assert [(c.method, c.strength) for c in cells[1:]] == [
        ("linacts", 0.25), ("linacts", 0.5), ("linacts", 1.0), ("actadd", 1.0), ("actadd", 2.0), ("actadd", 4.0)]


@pytest.mark.parametrize(("grid", "message"), [
    ({"linactz": [1]}, "unknown steering method 'linactz'; registered steering methods: actadd, iti, linacts"),
    ({"iti:sometimes": [1]}, "unknown DSAS mode 'sometimes'; registered DSAS modes: off, on, e2e, cast, gate"),
    ({"iti": [1, "x"]}, "strength 'x' is not a finite number"),
    ({"iti": []}, "a strength grid is 'auto', 'paper' or a non-empty list"),
])
def test_bad_grids_name_the_valid_choices(grid, message) -> None:
    with pytest.raises(UsageError, match=message):
        load_config("demo", {"strengths": grid})


def test_bad_grid_on_the_command_line_exits_2_writing_nothing(capsys, tmp_path) -> None:
    assert main(["sweep", "--strengths", "linactz=1", "--output", str(tmp_path / "out")]) == 2
    assert "registered steering methods: actadd, iti" in capsys.readouterr().err and not (tmp_path / "out").exists()


# -- calibration on the tiny model -------------------------------------------------------------------
@pytest.mark.parametrize("dsas", ["off", "on"])
@pytest.mark.parametrize("method", ["actadd", "linacts"])
def test_lambda_max_uses_up_the_budget(trained_tiny_model_dir, tmp_path, method, dsas) -> None:
    trust = {"on": {"threshold": 0.0}} if dsas == "on" else {}  # the tiny model's probes are weak: gate no layer off
    config = tiny_run_config(trained_tiny_model_dir, tmp_path, methods=[method], dsas=[dsas], strengths="auto",
                             max_delta_ppl="5%", dsas_options=trust)
    record = calibrated(config, method, dsas, 0)
    steering, scaler, _ = fitted(config, method, dsas, 0)
    lm, texts = model_for(config), inputs_for(config).calibration
    unsteered = perplexity(lm, texts, max_tokens=config.perplexity_tokens, progress=False)
    with steer(lm.model, steering.maps(lm.device), record["lambda_max"], scaler):
        steered = perplexity(lm, texts, max_tokens=config.perplexity_tokens, progress=False)
    assert record["reached"] and record["unsteered_perplexity"] == pytest.approx(unsteered)
    assert steered - unsteered == pytest.approx(0.05 * unsteered, rel=0.1)


def test_rows_record_the_calibration_and_a_rerun_makes_no_probe(trained_tiny_model_dir, tmp_path,
                                                                monkeypatch) -> None:
    prompts = Path(dsas_bench.__file__).parent / "data" / "demo" / "prompts.jsonl"
    config = tiny_run_config(trained_tiny_model_dir, tmp_path, methods=["meanacts"], strengths="auto",
                             n_strengths=2, max_delta_ppl="5%", prompts=str(prompts))
    probes = []
    real = dsas_bench.run.calibration.perplexity
    monkeypatch.setattr(dsas_bench.run.calibration, "perplexity", lambda *a, **k: probes.append(1) or real(*a, **k))
    rows = list(run_sweep(config))
    assert len(probes) > 2
    steered = [row for row in rows if row["method"] == "meanacts"]
    lambda_max = steered[0]["calibration"]["lambda_max"]
    assert sorted(row["strength"] for row in steered) == spaced(lambda_max, 2, "linear")
    assert all(row["calibration"]["budget"] == "+5%" and len(row["calibration"]["probes"]) == len(probes) - 1
               for row in steered)
    assert rows[0]["calibration"] is None and rows[0]["prompt_set"].startswith("prompts.jsonl:")
    probes.clear()
    assert list(run_sweep(config)) == [] and probes == []  # same strengths from the cache: every cell is done


def test_off_and_on_fit_the_method_once(tiny_model_dir, tmp_path, monkeypatch) -> None:
    from dsas_bench.methods.linear_act import MeanAcT

    fits = []
    real_fit = MeanAcT.fit
    monkeypatch.setattr(MeanAcT, "fit", lambda self, *a, **k: fits.append(self) or real_fit(self, *a, **k))
    monkeypatch.setenv("DSAS_BENCH_CACHE", str(tmp_path / "cache"))  # counts fits: no other test's in the cache
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"], dsas=["off", "on"])
    rows = list(run_sweep(config))
    assert len(fits) == 1 and {row["dsas"] for row in rows} == {"off", "on"}


def test_dsas_scaler_of_a_one_layer_method_fits_one_probe(tiny_model_dir, tmp_path) -> None:
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["actadd"], dsas=["on"])
    steering, scaler, _ = fitted(config, "actadd", "on", 0)
    assert len(steering.state) == 1 and list(scaler.module_names) == list(steering.state)


def test_summary_table_flags_an_exploded_cell_and_lists_calibrations() -> None:
    calibration = {"lambda_max": 0.42, "budget": "+5%", "n_texts": 8, "probes": [[1, 2]] * 6, "reached": True}
    metrics = {"tox_pct": 0.0, "tox_mean": 0.1, "perplexity": 96466.0, "accuracy": None}
    rows = [{"method": "actadd", "dsas": "off", "strength": s, "seed": 0, "calibration": calibration,
             "metrics": {**metrics, "perplexity_exploded": s > 1}, "flags": ["exploded-perplexity"] * (s > 1)}
            for s in (0.5, 2.0)]
    lines = summary_table(rows).splitlines()
    assert "exploded" not in lines[1] and "exploded" in lines[2]
    assert lines[3] == "calibrated actadd (off, seed 0): λ_max 0.42 for ΔPPL +5% on 8 texts, 6 probes"


def test_too_few_calibration_texts_is_a_usage_error_before_any_output(capsys, tmp_path) -> None:
    assert main(["run", "--n-perplexity-texts", "115", "--output", str(tmp_path / "out")]) == 2
    assert "--strengths auto needs 32 calibration texts, but only 5" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def hand_row(method: str, dsas: str, strength: float, tox: float, ppl: float, **extra) -> dict:
    return {"cell_id": f"{method}-{dsas}-{strength}", "model": "m", "method": method, "dsas": dsas,
            "strength": strength, "seed": 0, "scorer": "s", "prompt_set": "/abs/path/prompts.jsonl:1a2b3c4d",
            "metrics": {"tox_pct": tox, "perplexity": ppl, "accuracy": None}, **extra}


def test_pareto_plot_titles_show_lambda_max_and_the_prompt_file_by_name() -> None:
    from dsas_bench.analysis.plots import pareto_figure

    calibration = {"lambda_max": 0.42, "budget": "+5%"}
    rows = [hand_row("none", "off", 0.0, 20.0, 10.0), hand_row("linacts", "off", 0.42, 10.0, 10.5,
                                                               calibration=calibration)]
    figure = pareto_figure(rows)
    assert figure.axes[0].get_title() == "linacts · λ_max plain 0.42 (ΔPPL +5%)"
    assert "prompts prompts.jsonl:1a2b3c4d" in figure.get_suptitle() and "/abs/" not in figure.get_suptitle()
