"""Sweeps on the tiny model: resumable after SIGKILL, deterministic, same rows on a Dask cluster."""

import json
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import kill_after, launch, tiny_run_config

from dsas_bench.core.errors import UsageError
from dsas_bench.methods.lineas import LinEAS
from dsas_bench.run.config import load_config
from dsas_bench.run.inputs import inputs_for
from dsas_bench.run.interventions import fitted
from dsas_bench.run.plan import plan
from dsas_bench.run.results import ResultsStore
from dsas_bench.run.sweep import run_sweep

VOLATILE = ("created", "wall_time_s", "strength_batch")  # strength_batch: how many cells shared batches


def sweep_args(model_dir: Path, output: Path) -> list[str]:
    return ["sweep", "--model", str(model_dir), "--methods", "linacts,meanacts", "--dsas-modes", "off",
            "--strengths", "0.5,1", "--seeds", "0,1", "--scorer", "profanity", "--lm-eval-tasks", "",
            "--n-prompts", "6", "--max-new-tokens", "6", "--fit-n", "8", "--device", "cpu",
            "--no-plot", "--quiet", "--output", str(output)]


def comparable(rows: list[dict]) -> dict[str, dict]:
    return {row["cell_id"]: {k: v for k, v in row.items() if k not in VOLATILE} for row in rows}


def test_sigkilled_sweep_resumes_to_exactly_the_uninterrupted_rows(tiny_model_dir, tmp_path):
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    reference = launch(sweep_args(tiny_model_dir, reference_dir), tmp_path / "cache-a")
    assert reference.wait() == 0, reference.stderr.read()
    expected = ResultsStore(reference_dir).rows()
    assert len(expected) == 2 + 2 * 2 * 2  # a baseline per seed, then methods × seeds × strengths

    args = sweep_args(tiny_model_dir, resumed_dir)
    for rows in (1, 4, 7):
        kill_after(args, tmp_path / "cache-b", resumed_dir / "results.jsonl", rows)
    final = launch(args, tmp_path / "cache-b")
    assert final.wait() == 0, final.stderr.read()

    raw = (resumed_dir / "results.jsonl").read_text().splitlines()
    resumed = [json.loads(line) for line in raw]  # no torn line: every line parses
    assert len({row["cell_id"] for row in resumed}) == len(resumed)  # no duplicates
    assert comparable(resumed) == comparable(expected)  # same cells, same values


def test_rows_record_config_versions_and_hash(tiny_model_dir, tmp_path):
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"], n_prompts=3, max_new_tokens=4)
    first = list(run_sweep(config))
    assert [row["method"] for row in first] == ["none", "meanacts"]
    row = first[1]
    assert row["config"]["method"] == "meanacts" and row["config"]["model"] == str(tiny_model_dir)
    assert row["scorer"] == "profanity" and {"torch", "transformers", "lm_eval"} <= set(row["versions"])
    assert len(row["prompt_scores"]) == 3 and 0 <= row["metrics"]["tox_pct"] <= 100
    assert list(run_sweep(config)) == []  # rerun: every cell is already stored
    again = list(run_sweep(config, fresh=True))
    assert comparable(again) == comparable(first)  # same config, same numbers
    assert "metrics.tox_pct" in (tmp_path / "results.csv").read_text().splitlines()[0].split(",")


def test_perplexity_calibration_and_control_texts_are_disjoint():
    config = load_config("demo", {"n_perplexity_texts": 50, "n_calibration_texts": 8})
    inputs = inputs_for(config)
    assert (len(inputs.neutral), len(inputs.calibration), len(inputs.control)) == (50, 8, 120 - 50 - 8)
    perplexity, calibration, control = map(set, (inputs.neutral, inputs.calibration, inputs.control))
    assert not perplexity & control and not calibration & perplexity and not calibration & control
    too_many = load_config("demo", {"n_perplexity_texts": 100})
    with pytest.raises(UsageError, match="asked for 32 control texts, but only 0 of the control data are not "
                                         "among the 100 perplexity texts and the 20 calibration texts"):
        inputs_for(too_many).fit_sets(too_many, seed=0)


def test_neutral_texts_from_a_field_of_jsonl_records_with_a_filter(tmp_path):
    """shared-rtp's way: perplexity, calibration and control texts are fields of one jsonl, joined and filtered."""
    records = [{"head": {"text": f"Sentence {i} starts"}, "tail": {"text": f" and ends {i}.", "score": i % 3}}
               for i in range(90)]
    neutral = tmp_path / "neutral.jsonl"
    neutral.write_text("".join(json.dumps(record) + "\n" for record in records))
    config = load_config("demo", {"perplexity_data": str(neutral), "control_data": str(neutral),
                                  "neutral_field": "head.text+tail.text", "neutral_filter": "tail.score < 2",
                                  "n_perplexity_texts": 20, "n_calibration_texts": 10})
    inputs = inputs_for(config)
    kept = [f"Sentence {i} starts and ends {i}." for i in range(90) if i % 3 < 2]
    assert inputs.neutral == kept[:20]
    assert sorted(inputs.calibration + inputs.control) == sorted(kept[20:])
    assert len(inputs.calibration) == 10 and not set(inputs.calibration) & set(inputs.control)


def test_plan_puts_a_baseline_per_seed_first(tiny_model_dir):
    config = load_config("demo", {"methods": ["linacts", "iti"], "dsas": ["off", "on"], "seeds": [0, 1],
                                  "strengths": [0.5, 1.0]})
    cells = plan(config)
    assert [(c.method, c.seed) for c in cells[:2]] == [("none", 0), ("none", 1)]
    assert len(cells) == 2 + 2 * 2 * 2 * 2


def test_e2e_cell_trains_lineas_once_jointly_with_its_scaler(tiny_model_dir, tmp_path, monkeypatch):
    def separate_fit(*args, **kwargs):
        raise AssertionError("E2E-DSAS must not fit LinEAS on its own first")

    monkeypatch.setattr(LinEAS, "fit", separate_fit)
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["lineas"], dsas=["e2e"],
                             method_options={"lineas": {"steps": 3, "sample_size": 4}})
    steering, scaler, _ = fitted(config, "lineas", "e2e", seed=0)
    assert len(steering.losses) == 3 and scaler.name == "e2e"
    assert set(steering.state) == set(scaler.module_names) and len(scaler.module_names) > 0


def cells_run_here() -> int:
    """How many models this process's sweep code has loaded (0 when it ran no cell)."""
    sweep = sys.modules.get("dsas_bench.run.inputs")
    return sweep._model.cache_info().currsize if sweep else 0


def test_parallel_cells_of_one_fit_fit_it_once(tiny_model_dir, tmp_path, monkeypatch):
    """Two cells needing the same intervention at once (as with --jobs 2): the second waits and loads it."""
    from concurrent.futures import ThreadPoolExecutor

    from dsas_bench.methods.linear_act import MeanAcT
    from dsas_bench.run.inputs import model_for

    monkeypatch.setenv("DSAS_BENCH_CACHE", str(tmp_path / "cache"))  # nothing fitted yet
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"])
    model_for(config)  # loaded once, before the cells race
    fits = []
    real_fit = MeanAcT.fit

    def slow_counted_fit(self, *args, **kwargs):
        fits.append(self)
        time.sleep(0.5)  # long enough for the other cell to arrive while this one fits
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(MeanAcT, "fit", slow_counted_fit)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: fitted(config, "meanacts", "off", 0), range(2)))
    assert len(fits) == 1
    assert all(torch.equal(results[0][0].state[m]["beta"], results[1][0].state[m]["beta"]) for m in results[0][0].state)


@pytest.mark.slow
def test_dask_cluster_rows_equal_local_process_rows(tiny_model_dir, tmp_path):
    """A local Dask cluster on the loopback interface stands in for a real one."""
    from dask.distributed import Client, LocalCluster

    local = launch([*sweep_args(tiny_model_dir, tmp_path / "loky"), "--jobs", "2"], tmp_path / "cache-a")
    assert local.wait() == 0, local.stderr.read()
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster:
        remote = launch([*sweep_args(tiny_model_dir, tmp_path / "dask"), "--jobs", "2", "--backend", "dask",
                         "--scheduler", cluster.scheduler_address], tmp_path / "cache-b")
        assert remote.wait() == 0, remote.stderr.read()
        with Client(cluster) as client:
            assert sum(client.run(cells_run_here).values()) >= 1  # the cluster's workers ran the cells
    rows = ResultsStore(tmp_path / "dask").rows()
    assert len(rows) == 2 + 2 * 2 * 2
    assert comparable(rows) == comparable(ResultsStore(tmp_path / "loky").rows())


def test_two_concurrent_sweeps_into_one_folder_store_each_cell_once(tiny_model_dir, tmp_path):
    output = tmp_path / "shared"
    args = sweep_args(tiny_model_dir, output)
    first, second = (launch(args, tmp_path / f"cache-{i}") for i in range(2))
    codes = [first.wait(timeout=600), second.wait(timeout=600)]
    errors = first.stderr.read() + second.stderr.read()
    ids = [row["cell_id"] for row in ResultsStore(output).rows()]
    assert len(ids) == len(set(ids)) == 2 + 2 * 2 * 2, errors
    assert 0 in codes and set(codes) <= {0, 2}, errors
    if 2 in codes:  # the later one found the folder taken: it names the sweep writing it
        assert "is being written by another dsas-bench process (pid" in errors
    csv_rows = (output / "results.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(ids)


def test_samples_per_prompt_gives_k_continuations_and_realtoxicityprompts_metrics(tiny_model_dir, tmp_path):
    """Done when (issue 13): --samples-per-prompt 4 stores 4 continuations and scores per prompt, and EMT /
    Toxicity Probability are the hand computation from those per-sample scores; sample 0 is the K = 1 row's."""
    import numpy as np

    from dsas_bench.behaviors.toxicity.scorers import get_scorer
    from dsas_bench.cli import main

    common = ["run", "--model", str(tiny_model_dir), "--scorer", "profanity", "--lm-eval-tasks", "",
              "--n-prompts", "3", "--max-new-tokens", "4", "--fit-n", "8", "--strengths", "1", "--device", "cpu",
              "--no-plot", "--quiet"]
    assert main([*common, "--samples-per-prompt", "4", "--output", str(tmp_path / "k4")]) == 0
    assert main([*common, "--output", str(tmp_path / "k1")]) == 0
    rows = {k: ResultsStore(tmp_path / k).rows() for k in ("k1", "k4")}
    for one, four in zip(rows["k1"], rows["k4"], strict=True):
        assert four["config"]["samples_per_prompt"] == 4 and one["config"]["samples_per_prompt"] == 1
        assert [len(c) for c in four["continuations"]] == [4, 4, 4] and np.shape(four["prompt_scores"]) == (3, 4)
        assert [c[0] for c in four["continuations"]] == one["continuations"]
        scores = np.array(four["prompt_scores"])
        rescored = get_scorer("profanity").score([t for texts in four["continuations"] for t in texts])
        assert scores.ravel() == pytest.approx(rescored)
        metrics = four["metrics"]
        assert metrics["emt"] == pytest.approx(np.mean([max(s) for s in scores]))
        assert metrics["tox_prob"] == pytest.approx(np.mean([any(x >= 0.5 for x in s) for s in scores]))
        assert metrics["tox_pct"] == pytest.approx(100 * np.mean(scores > 0.5))
        assert metrics["emt_ci"][0] <= metrics["emt"] <= metrics["emt_ci"][1]
        assert isinstance(one["prompt_scores"][0], float) and one["metrics"]["emt"] == pytest.approx(
            np.mean(one["prompt_scores"]))
