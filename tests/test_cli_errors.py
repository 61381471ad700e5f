"""Bad input: a clear message naming the problem and the fix, a non-zero exit, no partial result."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dsas_bench.cli import main
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets
from dsas_bench.run.results import ResultsStore, load_rows


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
    assert code == 2 and "flavour" in err and "batch_size" in err and no_rows(out)


def test_unknown_dsas_mode(run):
    code, err, out = run("--dsas", "sometimes")
    assert code == 2 and "unknown DSAS mode 'sometimes'" in err and no_rows(out)
    assert "registered DSAS modes: off, on, e2e, cast, gate" in err


def test_unknown_or_incomplete_utility(run):
    code, err, out = run("--utility", "perplexity,bleu")
    assert code == 2 and "unknown utility metric 'bleu'; registered utility metrics: perplexity, lm-eval" in err
    assert no_rows(out)
    code, err, out = run("--utility", "lm-eval")
    assert code == 2 and "leaves out 'perplexity'" in err and no_rows(out)


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
                                        FitSets(["bad words here", "awful words there"],
                                                ["kind words here", "nice words there"]))


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



# -- config types and shapes: task YAML values, --set, flags --------------------------------------------------
@pytest.mark.parametrize(("yaml_text", "message"), [
    ("strengths: 0.5\n", "non-empty list of numbers, got 0.5"),
    ("seeds: [0.5]\n", "seeds must be list of int, got list [0.5]"),
    ('fit_n: "many"\n', "fit_n must be int, got str 'many'"),
    ("methods: linacts\n", "methods must be list of str, got str 'linacts'"),
    ("model: [smollm2\n", "is not valid YAML"),
    ("temperature: -1\n", "temperature must be > 0, got -1.0"),
    ("methods: []\n", "methods is empty"),
])
def test_task_value_of_the_wrong_type_or_shape(run, tmp_path, yaml_text, message):
    code, err, out = run("--task", str(write(tmp_path / "task.yaml", yaml_text)))
    assert code == 2 and message in err and "Traceback" not in err and no_rows(out)


@pytest.mark.parametrize(("setting", "message"), [
    ("nosuch=1", "--set nosuch: no such config field; the fields are: model (str), device (str)"),
    ("task=paper", "--set task: no such config field"),
    ("n_prompts=abc", "--set n_prompts must be int or null, got str 'abc'"),
    ("strengths=0.5,x", "strength 'x' is not a finite number"),
    ("fit_n=3", "fit_n given both by a flag and by --set"),
])
def test_bad_set_values(run, setting, message):
    code, err, out = run("--set", setting)
    assert code == 2 and message in err and no_rows(out)


def test_help_lists_every_config_field_and_its_type(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "temperature (float)" in text and "lm_eval_fewshot (int or null)" in text and "prompt_seed (int)" in text


def test_empty_method_list_runs_nothing(run, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "sweep"
    code = main(["sweep", "--methods", ",", "--model", str(tiny_model_dir), "--output", str(output)])
    assert code == 2 and "methods is empty" in capsys.readouterr().err and no_rows(output)


def test_more_new_tokens_than_the_model_has_positions(run):
    code, err, out = run("--max-new-tokens", "300")
    assert code == 2 and "exceeds the 256 positions" in err and "give at most" in err and no_rows(out)


@pytest.mark.parametrize("flags", [["--strengths", "abc"], ["--n-prompts", "0"], ["--set", "n_prompts=abc"]])
def test_a_bad_flag_fails_before_torch_is_imported(tmp_path, flags):
    probe = ("import sys\nfrom dsas_bench.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
             "except SystemExit as exc:\n    code = exc.code\nprint(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, "run", *flags, "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                          timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert not (tmp_path / "out").exists()


# -- options: rejected before the unsteered cell runs ----------------------------------------------------------
@pytest.mark.parametrize(("flags", "message"), [
    (["--method", "linacts", "--method-option", "estimation=nonsense"], "unknown estimation 'nonsense' for linacts"),
    (["--method", "linacts", "--method-option", "seed=abc"], "method 'linacts' option seed must be int, got str 'abc'"),
    (["--dsas", "--dsas-option", "n_components=-4"], "n_components must be at least 1, got -4"),
    (["--dsas", "--dsas-option", "n_components=many"], "DSAS mode 'on' option n_components must be int"),
    (["--dsas", "cast", "--dsas-option", "val_fraction=2"], "val_fraction must be in (0, 1), got 2.0"),
])
def test_bad_option_values_fail_before_any_cell(run, flags, message):
    code, err, out = run(*flags)
    assert code == 2 and message in err and no_rows(out)


# -- files: saved states ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [None, b"not a torch file", b"PK\x03\x04broken zip"])
def test_intervention_missing_or_not_a_state(run, tmp_path, content):
    path = tmp_path / "state.pt"
    if content is not None:
        path.write_bytes(content)
    code, err, out = run("--method", "meanacts", "--intervention", str(path))
    message = "no such file" if content is None else "is not a dsas_bench steering state"
    assert code == 2 and f"{path}" in err and message in err and "Traceback" not in err and no_rows(out)


# -- models and devices -----------------------------------------------------------------------------------------
def test_unknown_hub_model_offline(run):
    code, err, out = run("--model", "nosuch-org/nosuch-model")
    assert code == 2 and "nosuch-org/nosuch-model" in err and "HF_HUB_OFFLINE" in err and no_rows(out)


def test_empty_model_folder(run, tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, err, out = run("--model", str(empty))
    assert code == 2 and "has no config.json" in err and no_rows(out)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_device_this_machine_lacks(run, device):
    import torch

    if torch.cuda.is_available() if device.startswith("cuda") else torch.backends.mps.is_available():
        pytest.skip(f"{device} is available here")
    code, err, out = run("--device", device)
    assert code == 2 and f"--device {device}: this machine has no" in err and no_rows(out)


# -- outputs ----------------------------------------------------------------------------------------------------
def test_output_is_a_file(run, tmp_path):
    code, err, out = run(output_dir=write(tmp_path / "a-file", "keep"))
    assert code == 2 and "is a file, not a folder" in err and out.read_text() == "keep"


def test_read_only_output_folder(run, read_only_dir):
    code, err, out = run(output_dir=read_only_dir / "results")
    assert code == 2 and "not writable" in err and not out.exists()


def test_unreachable_dask_scheduler_leaves_no_folder(run):
    import dask
    import distributed  # noqa: F401  (its config defaults first: config.set on a missing key drops it on exit)

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, err, out = run("--backend", "dask", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach the Dask scheduler tcp://127.0.0.1:9" in err and no_rows(out)


def test_absurd_strength_is_flagged_and_kept_out_of_the_plot(run, capsys):
    code, err, out = run("--strengths", "1e30")
    rows = {row["method"]: row for row in ResultsStore(out).rows()}
    assert code == 0 and rows["none"]["flags"] == [] and "nan-perplexity" in rows["linacts"]["flags"]
    assert "nan-perplexity" in err and "left out of fronts" in err
    assert main(["plot", str(out)]) == 2  # what is left is the baseline alone
    err = capsys.readouterr().err
    assert "1 flagged rows left out of the fronts" in err and "only the unsteered baseline" in err


def test_a_second_writer_fails_at_once_naming_the_first(run, tmp_path):
    output = tmp_path / "busy"
    with ResultsStore(output).writing():
        code, err, _ = run(output_dir=output)
    assert code == 2 and f"being written by another dsas-bench process (pid {os.getpid()}" in err
    assert not (output / "results.jsonl").exists()


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    """A finished Mean-AcT + DSAS run on the tiny model, its sampling set with --set."""
    output = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:  # the autouse private cache is function-scoped
        patch.setenv("DSAS_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        code = main(["run", "--model", str(tiny_model_dir), "--method", "meanacts", "--dsas", "--scorer", "profanity",
                     "--lm-eval-tasks", "", "--n-prompts", "4", "--max-new-tokens", "4", "--fit-n", "8",
                     "--strengths", "1", "--device", "cpu", "--quiet", "--no-plot", "--output", str(output),
                     "--set", "temperature=0.7", "--set", "lm_eval_fewshot=5", "--set", "top_p=1"])
    assert code == 0
    return output


def test_set_values_reach_every_row(finished):
    rows = ResultsStore(finished).rows()
    assert len(rows) == 2
    assert all((row["config"]["temperature"], row["config"]["lm_eval_fewshot"], row["config"]["top_p"])
               == (0.7, 5, 1.0) for row in rows)
    assert all(row["flags"] == [] for row in rows)


def test_results_csv_holds_every_row(finished):
    lines = (finished / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + len(ResultsStore(finished).rows())


@pytest.mark.parametrize("command", ["leaderboard", "plot"])
def test_report_onto_an_existing_file_or_a_read_only_folder(finished, tmp_path, read_only_dir, capsys, command):
    target = write(tmp_path / "taken", "keep")
    assert main([command, str(finished), "-o", str(target)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and target.read_text() == "keep"
    assert main([command, str(finished), "-o", str(read_only_dir / "board")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_explain_into_a_read_only_folder(finished, read_only_dir, capsys):
    out = read_only_dir / "x.png"
    assert main(["explain", "you idiot", "--run", str(finished), "-o", str(out), "--device", "cpu"]) == 2
    assert "not writable" in capsys.readouterr().err and not out.exists()


def test_explain_a_corrupt_state(finished, tmp_path, capsys):
    import shutil

    run_copy = tmp_path / "run"
    shutil.copytree(finished, run_copy)
    state = next(run_copy.glob("interventions/*/method.pt"))
    state.write_bytes(state.read_bytes()[:100])
    assert main(["explain", "you idiot", "--run", str(run_copy), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{state} is not a dsas_bench steering state" in err and "Traceback" not in err


# -- results files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["leaderboard", "plot"])
def test_report_on_a_folder_that_does_not_exist(finished, capsys, command):
    missing = finished / "nope"
    assert main([command, str(missing)]) == 2
    assert f"no results at {missing}" in capsys.readouterr().err
    assert not missing.exists() and not (finished / "leaderboard.md").exists()


@pytest.mark.parametrize(("content", "message"), [
    (b'{"method": "none"}\n', "line 1: not a dsas-bench result row (it has no cell_id)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\n", "line 1: not a result row"),
    ('{"cell_id": "caf\u00e9"}\n'.encode("latin-1"), "line 1: not a result row"),
])
@pytest.mark.parametrize("command", ["leaderboard", "plot"])
def test_results_file_that_is_not_results(tmp_path, capsys, content, message, command):
    path = tmp_path / "results.jsonl"
    path.write_bytes(content)
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and sorted(tmp_path.iterdir()) == [path]


def test_report_keeps_one_row_per_cell_id_with_a_warning(finished, tmp_path, capsys):
    doubled = tmp_path / "results.jsonl"
    doubled.write_bytes((finished / "results.jsonl").read_bytes() * 2)
    assert main(["leaderboard", str(doubled), "--n-boot", "0"]) == 0
    err = capsys.readouterr().err
    assert "2 rows repeat a cell id" in err and "keeping the first of each" in err
    assert [row["cell_id"] for row in load_rows([doubled])] == [row["cell_id"] for row in ResultsStore(finished).rows()]


def test_unexpected_errors_print_a_traceback_and_where_to_report(monkeypatch, capsys):
    import dsas_bench.cli.ls

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(dsas_bench.cli.ls, "list_registered", broken)
    assert main(["methods"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug" in err and "please report it" in err
