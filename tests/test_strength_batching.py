"""Strength-batched evaluation, one worker per device and --dry-run, on the tiny model."""

import json
import math
import os
import time

import pytest
import torch
from conftest import kill_after, launch, tiny_run_config

from dsas_bench.cli import main
from dsas_bench.core.data import fit_sets, load_jigsaw, load_texts
from dsas_bench.core.devices import WORKER_DEVICE, run_per_device
from dsas_bench.core.hooks import steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.run.evaluate import strength_groups
from dsas_bench.run.plan import BASELINE, Cell, plan
from dsas_bench.run.results import ResultsStore
from dsas_bench.run.sweep import run_sweep
from dsas_bench.scalers import fit_scaler

VOLATILE = ("created", "wall_time_s", "strength_batch")
STRENGTHS = [2.0, 8.0, 32.0]  # large enough to change a random tiny model's continuations


def comparable(rows: list[dict]) -> dict[str, dict]:
    """Rows by cell id, without wall times and how they were batched; perplexity kept apart."""
    return {row["cell_id"]: {k: v for k, v in row.items() if k not in VOLATILE} for row in rows}


def assert_same_rows(rows: list[dict], expected: list[dict]) -> None:
    """Equal rows, perplexity to 1e-6 relative."""
    got, want = comparable(rows), comparable(expected)
    assert got.keys() == want.keys()
    for cell_id, row in got.items():
        ppl, ppl_expected = row["metrics"].pop("perplexity"), want[cell_id]["metrics"].pop("perplexity")
        assert math.isclose(ppl, ppl_expected, rel_tol=1e-6)
        assert row == want[cell_id]


def batched_config(model_dir, output, **overrides):
    settings = {"methods": ["meanacts"], "dsas": ["off", "on"], "strengths": STRENGTHS, "n_prompts": 6,
                "max_new_tokens": 6, "batch_size": 4}
    return tiny_run_config(model_dir, output, **{**settings, **overrides})


def test_strength_batched_sweep_writes_the_rows_of_a_cell_by_cell_sweep(tiny_model_dir, tmp_path):
    batched = list(run_sweep(batched_config(tiny_model_dir, tmp_path / "batched")))
    alone = list(run_sweep(batched_config(tiny_model_dir, tmp_path / "alone", cells_per_batch=1)))
    assert sorted(row["strength_batch"] for row in batched) == [3, 3, 3, 4, 4, 4, 4]  # the baseline joins one group
    assert {row["strength_batch"] for row in alone} == {1}
    assert len({json.dumps(row["continuations"]) for row in alone}) > 2  # the strengths change the continuations
    assert len({row["metrics"]["perplexity"] for row in alone}) == 7
    assert_same_rows(batched, alone)


def test_several_samples_per_prompt_batch_like_cell_by_cell(tiny_model_dir, tmp_path):
    """K continuations per prompt: sample j of prompt i keeps its own stream inside shared batches too."""
    config = {"dsas": ["off"], "samples_per_prompt": 3, "n_prompts": 3}
    batched = list(run_sweep(batched_config(tiny_model_dir, tmp_path / "batched", **config)))
    alone = list(run_sweep(batched_config(tiny_model_dir, tmp_path / "alone", cells_per_batch=1, **config)))
    assert max(row["strength_batch"] for row in batched) > 1
    assert all(len(texts) == 3 for row in alone for texts in row["continuations"])
    assert_same_rows(batched, alone)


def test_running_mean_dsas_and_the_cast_gate_batch_per_row(tiny_model_dir, tmp_path):
    """Both scalers carry state across the passes of a generation (a running sum, a decision) per row."""
    for dsas, options in (("on", {"context": "running-mean"}), ("cast", {})):
        config = {"dsas": [dsas], "dsas_options": {dsas: options}}
        batched = list(run_sweep(batched_config(tiny_model_dir, tmp_path / f"{dsas}-b", **config)))
        alone = list(run_sweep(batched_config(tiny_model_dir, tmp_path / f"{dsas}-a", cells_per_batch=1, **config)))
        assert len({row["metrics"]["perplexity"] for row in alone}) == 4  # the scaler lets every strength steer
        assert_same_rows(batched, alone)


def test_a_row_at_its_strength_in_a_mixed_batch_has_the_logits_of_a_single_strength_batch(tiny_lm):
    modules = select_modules(tiny_lm.model, "post-attn-norm")
    toxic, nontoxic = load_jigsaw()
    sets = fit_sets(toxic, nontoxic, load_texts(), n=8, seed=0)
    maps = get_method("meanacts")().fit(tiny_lm, modules, sets).maps(tiny_lm.device)
    scaler = fit_scaler("on", tiny_lm, None, modules, sets, context="running-mean", threshold=0.0)
    batch = tiny_lm.tokenizer(["You are a", "The weather today is rather"], return_tensors="pt", padding=True)
    strengths = [0.0, 0.5, 4.0]

    def greedy_logits(inputs: dict, strength: float | torch.Tensor) -> torch.Tensor:
        with steer(tiny_lm.model, maps, strength, scaler), torch.inference_mode():
            out = tiny_lm.model.generate(**inputs, max_new_tokens=5, do_sample=False, output_logits=True,
                                         return_dict_in_generate=True, pad_token_id=0)
        return torch.stack(out.logits, dim=1)

    rows = torch.tensor(strengths).repeat_interleave(2).reshape(-1, 1, 1)
    mixed = greedy_logits({k: v.repeat(3, 1) for k, v in batch.items()}, rows)
    for k, strength in enumerate(strengths):
        alone = greedy_logits(batch, strength)
        torch.testing.assert_close(mixed[2 * k:2 * k + 2], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mixed[:2], mixed[4:], atol=1e-3)  # the strengths did steer differently


def test_groups_share_a_fit_and_respect_cells_per_batch(tiny_model_dir, tmp_path):
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["linacts", "meanacts"], dsas=["off", "on"],
                             strengths=[0.5, 1.0, 2.0], seeds=[0, 1])
    groups = strength_groups(plan(config), None, BASELINE)
    assert len(groups) == 2 * 2 * 2 and all(len({(c.method, c.dsas, c.seed) for c in g if c.method != BASELINE}) == 1
                                            for g in groups)
    assert [c for g in groups for c in g if c.method == BASELINE] == [Cell(BASELINE, "off", 0.0, 0),
                                                                       Cell(BASELINE, "off", 0.0, 1)]
    assert max(len(g) for g in strength_groups(plan(config), 2, BASELINE)) == 2
    one_fit = [c for c in plan(config) if (c.method, c.dsas, c.seed) in {("none", "off", 0), ("linacts", "off", 0)}]
    assert [len(g) for g in strength_groups(one_fit, None, BASELINE, workers=2)] == [2, 2]  # a group per worker
    assert [len(g) for g in strength_groups(one_fit, 1, BASELINE, workers=2)] == [1, 1, 1, 1]
    lone = strength_groups([Cell(BASELINE, "off", 0.0, 3)], None, BASELINE)
    assert lone == [[Cell(BASELINE, "off", 0.0, 3)]]


def sweep_args(model_dir, output, *extra: str) -> list[str]:
    return ["sweep", "--model", str(model_dir), "--methods", "meanacts", "--dsas-modes", "off,on",
            "--strengths", ",".join(map(str, STRENGTHS)), "--seeds", "0,1", "--scorer", "profanity",
            "--lm-eval-tasks", "", "--n-prompts", "6", "--max-new-tokens", "6", "--fit-n", "8", "--device", "cpu",
            "--batch-size", "4", "--no-plot", "--quiet", "--output", str(output), *extra]


def test_sigkilled_strength_batched_sweep_resumes_to_the_same_rows(tiny_model_dir, tmp_path):
    reference = launch(sweep_args(tiny_model_dir, tmp_path / "reference"), tmp_path / "cache-a")
    assert reference.wait() == 0, reference.stderr.read()
    expected = ResultsStore(tmp_path / "reference").rows()
    assert len(expected) == 2 * (1 + 2 * 3)

    args, results = sweep_args(tiny_model_dir, tmp_path / "resumed"), tmp_path / "resumed" / "results.jsonl"
    for rows in (1, 5, 9):
        kill_after(args, tmp_path / "cache-b", results, rows)
    final = launch(args, tmp_path / "cache-b")
    assert final.wait() == 0, final.stderr.read()
    resumed = [json.loads(line) for line in results.read_text().splitlines()]  # no torn line
    assert len({row["cell_id"] for row in resumed}) == len(resumed)  # none twice
    assert_same_rows(resumed, expected)  # none lost


def test_two_cpu_workers_write_the_rows_of_one(tiny_model_dir, tmp_path):
    one = list(run_sweep(batched_config(tiny_model_dir, tmp_path / "one")))
    two = list(run_sweep(batched_config(tiny_model_dir, tmp_path / "two", devices=["cpu", "cpu"])))
    assert {row["device"] for row in two} == {"cpu"}
    assert_same_rows(two, one)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_without_cuda_is_a_usage_error_before_any_output(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(sweep_args(tiny_model_dir, output, "--devices", "cuda:0")) == 2
    assert "cuda:0: this machine has no CUDA GPU" in capsys.readouterr().err
    assert not output.exists()


def test_dry_run_prints_the_counts_of_the_plan_and_writes_nothing(tiny_model_dir, tiny_lm, tmp_path, capsys):
    done = tmp_path / "done"
    list(run_sweep(batched_config(tiny_model_dir, done, strengths=STRENGTHS[:1])))  # 3 of the 7 cells stored
    assert main([*sweep_args(tiny_model_dir, done, "--dry-run"), "--seeds", "0"]) == 0
    before = sorted(done.rglob("*"))
    printed = capsys.readouterr().out
    # 7 cells, 4 to run; 6 prompts × 6 tokens each; one method fit and one scaler, both cached by the first run
    assert "plan: 7 cells" in printed and "holds 3 of them; 4 to run" in printed
    assert "fits: method states 1 (1 cached), scaler states 1 (1 cached); 0 to fit" in printed
    neutral = load_texts(kind="neutral", limit=50)
    tokens = sum(len(ids) for ids in tiny_lm.tokenizer(neutral, truncation=True, max_length=50)["input_ids"])
    assert (f"{4 * 6 * 6} tokens to generate (at most), {4 * 6} texts to score, {4 * tokens:,} perplexity tokens"
            in printed)
    assert "estimated time: about" in printed and "an estimate" in printed
    assert sorted(done.rglob("*")) == before

    fresh = tmp_path / "fresh"
    assert main([*sweep_args(tiny_model_dir, fresh, "--dry-run"), "--lm-eval-tasks", "demo_mc"]) == 0
    printed = capsys.readouterr().out
    assert "plan: 14 cells" in printed and f"{14 * 40 * 4:,} lm-eval requests" in printed  # 40 questions × 4 choices
    assert not fresh.exists()


def test_each_device_gets_a_worker_process_of_its_own():
    def where(seconds: float) -> tuple[int, str]:
        time.sleep(seconds)  # long enough for the other worker to take the next task
        return os.getpid(), os.environ[WORKER_DEVICE]

    found = list(run_per_device(where, [(0.5,)] * 4, ["cpu", "cpu"]))
    assert len({pid for pid, _ in found}) == 2 and {device for _, device in found} == {"cpu"}


def test_dry_run_with_calibrated_strengths_counts_the_calibrations_and_writes_nothing(tiny_model_dir, tmp_path,
                                                                                       capsys):
    from dsas_bench.core.models import cache_dir

    output = tmp_path / "out"
    fits_before = set((cache_dir() / "interventions").glob("*")) if (cache_dir() / "interventions").exists() else set()
    args = ["run", "--model", str(tiny_model_dir), "--scorer", "profanity", "--lm-eval-tasks", "", "--n-prompts", "2",
            "--max-new-tokens", "2", "--fit-n", "8", "--device", "cpu", "--quiet", "--no-plot", "--strengths", "auto",
            "--n-strengths", "3", "--dsas", "--output", str(output), "--dry-run"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "plan: 4 cells" in printed and "calibrations: 1 (method, DSAS mode, seed) lines to calibrate" in printed
    assert not output.exists()
    after = set((cache_dir() / "interventions").glob("*")) if (cache_dir() / "interventions").exists() else set()
    assert after == fits_before  # nothing fitted nor calibrated
