"""Task configs: every shipped task loads, the paper task is the papers' protocol, flags override files."""

import re
from pathlib import Path
from typing import Any, Literal

import pytest

from dsas_bench.core.data import TASKS_DIR
from dsas_bench.core.errors import UsageError
from dsas_bench.core.fieldtypes import check_value
from dsas_bench.core.generation import SamplingConfig
from dsas_bench.run.config import RunConfig, field_types, load_config, parse_settings
from dsas_bench.run.inputs import inputs_for

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
    inputs = inputs_for(config)
    assert len(inputs.prompts) == config.n_prompts == 100 and len(inputs.source) == 28
    sets = inputs.fit_sets(config, seed=0)
    assert len(sets.source) == len(sets.target) == len(sets.control) == 28


@pytest.mark.parametrize(("value", "annotation", "expected"), [
    (1, float, 1.0),
    ([1, 0.5], list[float], [1.0, 0.5]),
    ([0.5, 1], tuple[float, ...], (0.5, 1.0)),
    (None, int | None, None),
    ("auto", list[float] | dict[str, list[float]] | Literal["auto"], "auto"),
    ({"linacts": [1]}, list[float] | dict[str, list[float]] | Literal["auto"], {"linacts": [1.0]}),
    ({"a": {"b": 1}}, dict[str, dict[str, Any]], {"a": {"b": 1}}),
])
def test_values_are_coerced_to_their_declared_type(value, annotation, expected):
    checked = check_value(value, annotation, "x")
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize(("value", "annotation", "message"), [
    (True, int, "x must be int, got bool True"),
    ("linacts", list[str], "x must be list of str, got str 'linacts'"),
    (float("nan"), float, "x must be float"),
    ({"linacts": ["a"]}, list[float] | dict[str, list[float]] | Literal["auto"],
     "x must be list of float or mapping of str to list of float or 'auto'"),
    ([1, None], list[int], "x must be list of int, got list [1, None]"),
])
def test_values_of_another_type_name_the_expected_one(value, annotation, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        check_value(value, annotation, "x")


def test_every_config_field_has_a_checkable_type():
    for name, kind in field_types().items():
        check_value(getattr(RunConfig(), name), kind, name)  # the defaults pass their own declared types


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("temperature", "0.7", 0.7), ("lm_eval_fewshot", "5", 5), ("lm_eval_fewshot", "null", None),
    ("strengths", "0.25,1", [0.25, 1.0]), ("strengths", "[0.25, 1]", [0.25, 1.0]), ("methods", "iti,actadd",
                                                                                   ["iti", "actadd"])])
def test_set_values_are_parsed_by_the_field_type(key, text, expected):
    assert getattr(load_config("demo", parse_settings([(key, text)])), key) == expected
