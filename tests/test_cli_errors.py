"""Bad input: a clear message naming the problem and the fix, a non-zero exit, no partial result."""

import json
import re
from pathlib import Path

import pytest

from dsas_bench.cli import main
from dsas_bench.modules import select_modules
from dsas_bench.steering.base import FitSets
from dsas_bench.steering.registry import get_method


@pytest.fixture
def run(tiny_model_dir, tmp_path, capsys):
    """Run the CLI on the tiny model with fast settings; return (exit code, stderr, output dir)."""
    output = tmp_path / "out"

    def invoke(*extra: str, output_dir: Path = output) -> tuple[int, str, Path]:
        argv = ["run", "--model", str(tiny_model_dir), "--scorer", "profanity", "--lm-eval-tasks", "",
                "--n-prompts", "4", "--max-new-tokens", "4", "--fit-n", "8", "--strengths", "1", "--device", "cpu",
                "--no-plot", "--quiet", "--output", str(output_dir), *extra]
        code = main(argv)
        return code, capsys.readouterr().err, output_dir

    return invoke


def no_rows(output: Path) -> bool:
    """Nothing written: not even the output directory exists."""
    return not output.exists()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unknown_method_lists_registered(run):
    code, err, out = run("--method", "linacs")
    assert code == 2 and "unknown steering method 'linacs'" in err and "linacts" in err and no_rows(out)


def test_unknown_scorer_lists_scorers(run):
    code, err, out = run("--scorer", "perspective")
    assert code == 2 and "perspective" in err and "jigsaw-bilstm" in err and no_rows(out)
    code, err, out = run("--scorer-option", "flavour=mild")
    assert code == 2 and "'flavour'" in err and "batch_size" in err and no_rows(out)


def test_unknown_dsas_mode(run):
    code, err, out = run("--dsas", "sometimes")
    assert code == 2 and "unknown DSAS mode 'sometimes'" in err and "e2e" in err and no_rows(out)


def test_module_regex_matching_nothing_names_close_modules(run):
    code, err, out = run("--modules", r"model\.layer\.\d+\.post_attention_layernorm")
    assert code == 2 and "matches no module" in err and "model.layers.0.post_attention_layernorm" in err
    assert no_rows(out)


@pytest.mark.parametrize("value", ["nan", "inf", "strong"])
def test_strength_not_finite(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--strengths", f"0.5,{value}", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"strength '{value}' is not a finite number" in capsys.readouterr().err
    assert no_rows(tmp_path / "out")


def test_missing_and_empty_prompt_files(run, tmp_path):
    code, err, out = run("--prompts", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "nope.jsonl: no such file" in err and no_rows(out)
    code, err, out = run("--prompts", str(write(tmp_path / "empty.jsonl", "")))
    assert code == 2 and "empty.jsonl: the file has no records" in err and no_rows(out)


def test_prompt_file_in_wrong_schema_names_line_and_field(run, tmp_path):
    good = json.dumps({"prompt": {"text": "Hello", "toxicity": 0.1}})
    bad = json.dumps({"prompt": {"txt": "Hello"}})
    code, err, out = run("--prompts", str(write(tmp_path / "p.jsonl", f"{good}\n{good}\n{bad}\n")))
    assert code == 2 and "line 3" in err and "prompt.text" in err and no_rows(out)


def test_more_prompts_than_exist(run, tmp_path):
    line = json.dumps({"prompt": {"text": "Hello", "toxicity": 0.1}})
    code, err, out = run("--prompts", str(write(tmp_path / "p.jsonl", f"{line}\n{line}\n")), "--n-prompts", "5")
    assert code == 2 and re.search(r"asked for 5 prompts in .*p.jsonl .*but only 2 exist", err) and no_rows(out)


@pytest.fixture
def meanacts(tiny_lm):
    """Mean-AcT fitted on the tiny model, to save as an --intervention."""
    return get_method("meanacts")().fit(tiny_lm, select_modules(tiny_lm.model, "post-attn-norm"),
                                        FitSets(["bad words here"], ["kind words here"]))


def test_intervention_from_another_model(run, meanacts, tmp_path):
    meanacts.model_name = "another-model"
    path = meanacts.save(tmp_path / "state.pt")
    code, err, out = run("--method", "meanacts", "--intervention", str(path))
    assert code == 2 and "another-model" in err and "refit" in err and no_rows(out)


def test_intervention_of_another_hidden_size(run, meanacts, tmp_path, wide_model_dir):
    path = meanacts.save(tmp_path / "state.pt")
    code, err, out = run("--method", "meanacts", "--intervention", str(path), "--model", str(wide_model_dir))
    assert code == 2 and "hidden size 32" in err and "has hidden size 48: refit" in err and no_rows(out)


def test_intervention_of_another_method(run, meanacts, tmp_path):
    path = meanacts.save(tmp_path / "state.pt")
    code, err, out = run("--method", "linacts", "--intervention", str(path))
    assert code == 2 and "holds a fitted 'meanacts' state, not 'linacts'" in err and "--method meanacts" in err
    assert no_rows(out)


def test_control_set_would_overlap_the_perplexity_texts(run):
    code, err, out = run("--n-perplexity-texts", "110", "--fit-n", "16")
    assert code == 2 and "only 0 of the control data are not among the 110 perplexity texts and the 10 " in err
    assert "--n-perplexity-texts" in err and no_rows(out)


def test_unwritable_output_directory(run, tmp_path):
    blocker = write(tmp_path / "a-file", "")
    code, err, out = run(output_dir=blocker / "results")
    assert code == 2 and "not writable" in err and "--output" in err


def test_unknown_config_key(run, tmp_path):
    task = write(tmp_path / "task.yaml", "model: smollm2\nstrenghts: [1]\n")
    code, err, out = run("--task", str(task))
    assert code == 2 and "unknown config key 'strenghts'" in err and no_rows(out)


def test_conflicting_flags(run, tmp_path):
    code, err, out = run("--method", "linacts", "--dsas", "e2e")
    assert code == 2 and "--method lineas" in err and no_rows(out)


def test_unknown_task_name(run):
    code, err, out = run("--task", "demoo")
    assert code == 2 and "unknown task 'demoo'" in err and "demo" in err and no_rows(out)
