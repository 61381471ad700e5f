"""Sweeps on the tiny model: resumable after SIGKILL, deterministic, same rows on a Dask cluster."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_config

from dsas_bench.config import load_config
from dsas_bench.errors import UsageError
from dsas_bench.results import ResultsStore
from dsas_bench.steering.methods.lineas import LinEAS
from dsas_bench.sweep import _inputs, fitted, plan, run_sweep

VOLATILE = ("created", "wall_time_s")


def sweep_args(model_dir: Path, output: Path) -> list[str]:
    return ["sweep", "--model", str(model_dir), "--methods", "linacts,meanacts", "--dsas-modes", "off",
            "--strengths", "0.5,1", "--seeds", "0,1", "--scorer", "profanity", "--lm-eval-tasks", "",
            "--n-prompts", "6", "--max-new-tokens", "6", "--fit-n", "8", "--device", "cpu",
            "--no-plot", "--quiet", "--output", str(output)]


def comparable(rows: list[dict]) -> dict[str, dict]:
    return {row["cell_id"]: {k: v for k, v in row.items() if k not in VOLATILE} for row in rows}


def launch(args: list[str], cache: Path) -> subprocess.Popen:
    env = {**os.environ, "DSAS_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "dsas_bench", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_after(args: list[str], cache: Path, results: Path, rows: int) -> None:
    process = launch(args, cache)
    deadline = time.monotonic() + 300
    while lines(results) < rows and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


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
    inputs = _inputs(config)
    assert (len(inputs.neutral), len(inputs.calibration), len(inputs.control)) == (50, 8, 120 - 50 - 8)
    perplexity, calibration, control = map(set, (inputs.neutral, inputs.calibration, inputs.control))
    assert not perplexity & control and not calibration & perplexity and not calibration & control
    too_many = load_config("demo", {"n_perplexity_texts": 100})
    with pytest.raises(UsageError, match="asked for 32 control texts, but only 0 of the control data are not "
                                         "among the 100 perplexity texts and the 20 calibration texts"):
        _inputs(too_many).fit_sets(too_many, seed=0)


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
    assert len(steering.losses) == 3 and scaler.options["mode"] == "e2e"
    assert set(steering.state) == set(scaler.module_names) and len(scaler.module_names) > 0


def cells_run_here() -> int:
    """How many models this process's sweep code has loaded (0 when it ran no cell)."""
    sweep = sys.modules.get("dsas_bench.sweep")
    return sweep._model.cache_info().currsize if sweep else 0


def test_parallel_cells_of_one_fit_fit_it_once(tiny_model_dir, tmp_path, monkeypatch):
    """Two cells needing the same intervention at once (as with --jobs 2): the second waits and loads it."""
    from concurrent.futures import ThreadPoolExecutor

    from dsas_bench.steering.methods.linear_act import MeanAcT
    from dsas_bench.sweep import _lm

    monkeypatch.setenv("DSAS_BENCH_CACHE", str(tmp_path / "cache"))  # nothing fitted yet
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"])
    _lm(config)  # loaded once, before the cells race
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
