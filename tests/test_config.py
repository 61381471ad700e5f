"""Task configs: every shipped task loads, the paper task is the papers' protocol, flags override files."""

from pathlib import Path

import pytest

from dsas_bench.config import TASKS_DIR, RunConfig, load_config
from dsas_bench.generation import SamplingConfig
from dsas_bench.sweep import _inputs

REPOSITORY = Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers_sampling():
    assert SamplingConfig() == SamplingConfig(max_new_tokens=32, temperature=1.0, top_p=0.3, repetition_penalty=1.2,
                                              do_sample=True)
    config = RunConfig()
    assert (config.max_new_tokens, config.temperature, config.top_p, config.repetition_penalty,
            config.perplexity_tokens, config.fit_n, config.prompt_seed) == (32, 1.0, 0.3, 1.2, 50, 32, 42)


@pytest.mark.parametrize("task", sorted(path.stem for path in TASKS_DIR.glob("*.yaml")))
def test_every_shipped_task_loads(task):
    assert load_config(task).task == task


def test_paper_task_is_the_papers_protocol():
    paper = load_config("paper")
    assert (paper.prompts, paper.n_prompts, paper.prompt_seed, paper.fit_data, paper.control_data, paper.fit_n) == (
        "hub", 1000, 42, "hub", "hub", 32)
    assert (paper.max_new_tokens, paper.temperature, paper.top_p, paper.repetition_penalty) == (32, 1.0, 0.3, 1.2)
    assert (paper.perplexity_data, paper.perplexity_tokens, paper.lm_eval_tasks, paper.lm_eval_fewshot) == (
        "hub", 50, ["mmlu"], 5)
    assert paper.scorer == "detoxify"


def test_flags_override_the_task_file():
    config = load_config("paper", {"n_prompts": 10, "strengths": [0.5]})
    assert (config.n_prompts, config.strengths, config.prompt_seed) == (10, [0.5], 42)


def test_shared_rtp_reads_the_real_samples_by_path(shared_data, monkeypatch):
    monkeypatch.chdir(REPOSITORY)  # its paths are relative to the repository root
    config = load_config("shared-rtp")
    inputs = _inputs(config)
    assert len(inputs.prompts) == config.n_prompts == 100 and len(inputs.toxic) == 28
    sets = inputs.fit_sets(config, seed=0)
    assert len(sets.source) == len(sets.target) == len(sets.control) == 28
