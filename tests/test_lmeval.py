"""lm-eval with steering active: local tasks from any directory, λ = 0, offline, bad input."""

import json
import socket
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_config

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import hook_count, steer
from dsas_bench.methods.maps import ShiftMap
from dsas_bench.utility.lmeval import DEFAULT_TASKS_DIR, evaluate_tasks, load_tasks, task_config

TASK_YAML = """
task: {name}
dataset_path: {dataset_path}
dataset_kwargs:
  data_files:
    test: {data_file}
output_type: multiple_choice
test_split: test
fewshot_split: test
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""


def write_task(folder: Path, name: str, data_file: str = "data/qa.jsonl", dataset_path: str = "json") -> Path:
    """A local multiple-choice task whose data file is relative to its YAML's folder."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    docs = [{"question": f"{a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "answer": 0}
            for a, b in [(1, 2), (2, 3), (3, 4), (4, 5)]]
    (folder / "data" / "qa.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    path = folder / f"{name}.yaml"
    path.write_text(TASK_YAML.format(name=name, dataset_path=dataset_path, data_file=data_file))
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a working directory that holds no task or data file."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_demo_task_ships_in_the_default_folder():
    docs = [json.loads(line) for line in (DEFAULT_TASKS_DIR / "demo_mc.jsonl").read_text().splitlines()]
    assert len(docs) == 40
    assert all(len(doc["choices"]) == 4 and 0 <= doc["answer"] < 4 for doc in docs)


def test_strength_zero_gives_unsteered_scores_and_strong_steering_changes_them(tiny_lm, elsewhere):
    torch.manual_seed(0)
    maps = {"model.layers.0": ShiftMap(20 * torch.randn(tiny_lm.hidden_size))}
    before = hook_count(tiny_lm.model)
    plain = evaluate_tasks(tiny_lm, ["demo_mc"], limit=12)
    with steer(tiny_lm.model, maps, strength=0.0):
        zero = evaluate_tasks(tiny_lm, ["demo_mc"], limit=12)
    with steer(tiny_lm.model, maps, strength=1.0):
        strong = evaluate_tasks(tiny_lm, ["demo_mc"], limit=12)
    assert set(plain) == {"demo_mc"} and 0 <= plain["demo_mc"]["value"] <= 1
    assert zero == plain
    assert strong != plain
    assert hook_count(tiny_lm.model) == before


def test_include_path_task_with_relative_data_and_few_shot(tiny_lm, tmp_path, elsewhere):
    write_task(tmp_path / "tasks", "sums_mc")
    scores = evaluate_tasks(tiny_lm, ["sums_mc"], include_paths=[tmp_path / "tasks"], num_fewshot=2, limit=3)
    assert set(scores) == {"sums_mc"}
    assert {k: scores["sums_mc"][k] for k in ("metric", "n_docs", "n_shot", "kind")} == {
        "metric": "acc", "n_docs": 3, "n_shot": 2, "kind": "task"}


def test_relative_data_files_resolve_against_the_yaml_folder(tmp_path, elsewhere):
    path = write_task(tmp_path, "paths_mc")
    config = task_config(path)
    assert config["dataset_kwargs"]["data_files"] == {"test": str(tmp_path / "data" / "qa.jsonl")}
    for given in ["/abs/qa.jsonl", "hf://datasets/org/name/qa.jsonl"]:
        assert task_config(write_task(tmp_path, "kept_mc", given))["dataset_kwargs"]["data_files"]["test"] == given


def test_local_task_makes_no_network_call(tiny_lm, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is off in this test")

    for config in (datasets.config, huggingface_hub.constants):  # as in a run without the offline variables
        monkeypatch.setattr(config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    evaluate_tasks(tiny_lm, ["demo_mc"], limit=2)
    assert attempts == []


@pytest.mark.parametrize(("data_file", "dataset_path"), [("data/missing.jsonl", "json"),
                                                         ("qa.jsonl", "no-such-org/no-such-dataset")])
def test_unreachable_data_is_a_usage_error(tiny_lm, tmp_path, data_file, dataset_path):
    write_task(tmp_path, "broken_mc", data_file, dataset_path)
    with pytest.raises(UsageError, match="could not load the data of lm-eval task.* broken_mc"):
        evaluate_tasks(tiny_lm, ["broken_mc"], include_paths=[tmp_path], limit=2)


@pytest.mark.parametrize(("kwargs", "problem"), [({"tasks": []}, "non-empty list"),
                                                  ({"tasks": "demo_mc"}, "non-empty list"),
                                                  ({"tasks": ["demo_mc"], "include_paths": [Path("/no/such/dir")]},
                                                   "not found"),
                                                  ({"tasks": ["demo_mc", "demo_mc:acc"]}, "each task once"),
                                                  ({"tasks": ["demo_mc:"]}, "TASK:METRIC"),
                                                  ({"tasks": ["demo_mc"], "limit": 0}, "limit")])
def test_bad_arguments_are_usage_errors(tiny_lm, kwargs, problem):
    with pytest.raises(UsageError, match=problem):
        evaluate_tasks(tiny_lm, **kwargs)


@pytest.mark.slow
def test_registry_tasks_resolve_and_unknown_ones_list_the_local_tasks(tiny_lm):
    """Slow: a name that is not local makes lm-eval index its whole registry first."""
    with pytest.raises(UsageError, match="no_such_task.*local tasks in .* are demo_mc"):
        evaluate_tasks(tiny_lm, ["no_such_task"])
    specs, manager = load_tasks(["mmlu", "demo_mc"])  # the paper's task, by name (its data is on the hub)
    assert specs[0] == "mmlu" and "mmlu_abstract_algebra" in manager.all_subtasks
    assert specs[1]["task"] == "demo_mc"


@pytest.mark.slow
def test_real_model_answers_the_demo_questions_above_chance(smollm2):
    """The demo task is well formed: SmolLM2-135M scores far above the 25 % of guessing."""
    assert evaluate_tasks(smollm2, ["demo_mc"], limit=20)["demo_mc"]["value"] >= 0.6


def test_a_per_sequence_gate_is_evaluated_one_sequence_at_a_time(tiny_lm, tiny_model_dir, tmp_path, monkeypatch):
    """lm-eval right-pads its batches and passes no attention mask, so the CAST gate's pooled decisions
    change with the batch size; a sweep therefore gives lm-eval one sequence per batch under the gate."""
    import dsas_bench.run.sweep
    import dsas_bench.utility.lmeval
    from dsas_bench.core.data import load_texts
    from dsas_bench.core.modules import select_modules
    from dsas_bench.methods.base import FitSets
    from dsas_bench.scalers import fit_scaler

    modules = select_modules(tiny_lm.model, "post-attn-norm")
    sets = FitSets(*(load_texts(kind=kind)[:40] for kind in ("toxic", "nontoxic", "neutral")))
    gate = fit_scaler("cast", tiny_lm, None, modules, sets)
    maps = {name: ShiftMap(torch.ones(tiny_lm.hidden_size)) for name in modules}
    steered = {}
    for batch_size in (1, 32):
        with steer(tiny_lm.model, maps, 1.0, gate), gate.recording() as records:
            evaluate_tasks(tiny_lm, ["demo_mc"], batch_size=batch_size)
        steered[batch_size] = torch.cat([part[:, 0] for part in records[gate.module]]).mean().item()
    assert steered[1] != steered[32]  # the pads moved some decisions

    batch_sizes = []

    def spy(*args, **kwargs):
        batch_sizes.append(kwargs["batch_size"])
        return evaluate_tasks(*args, **kwargs)

    monkeypatch.setattr(dsas_bench.utility.lmeval, "evaluate_tasks", spy)  # what the lm-eval utility calls
    config = tiny_run_config(tiny_model_dir, tmp_path, dsas=["off", "cast"], lm_eval_tasks=["demo_mc"],
                             lm_eval_limit=4, fit_n=16)
    rows = list(dsas_bench.run.sweep.run_sweep(config))
    assert [(row["dsas"], size) for row, size in zip(rows, batch_sizes, strict=True)] == [
        ("off", 16), ("off", 16), ("cast", 1)]


GROUP_YAML = """
group: {name}
task: [{tasks}]
aggregate_metric_list:
  - metric: acc
    weight_by_size: true
metadata:
  version: 3.0
"""


def write_group(folder: Path, sizes: dict[str, int], name: str = "pair_group") -> Path:
    """A local lm-eval group of multiple-choice subtasks with ``sizes`` documents each (absolute data paths,
    as a group's subtasks need), each subtask reporting acc and acc_norm."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [{"question": f"{a} times {b}?", "choices": [str(a * b), str(a + b), str(a * b + 3)], "answer": a % 3}
            for a in range(1, 20) for b in range(2, 5)]
    start = 0
    for task, size in sizes.items():
        data = folder / f"{task}.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in docs[start:start + size]))
        start += size
        text = TASK_YAML.format(name=task, dataset_path="json", data_file=data)
        (folder / f"{task}.yaml").write_text(text + "  - metric: acc_norm\nmetadata:\n  version: 2.0\n")
    (folder / f"{name}.yaml").write_text(GROUP_YAML.format(name=name, tasks=", ".join(sizes)))
    return folder


def lm_eval_own(model_dir: Path, folder: Path, tasks: list[str], batch_size: int) -> dict:
    """lm-eval's own results for ``tasks`` on the model folder, through its public ``simple_evaluate``."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from dsas_bench.core.models import load_model

    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    model = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size, device="cpu")
    return simple_evaluate(model=model, tasks=tasks, task_manager=TaskManager(include_path=str(folder)))["results"]


def test_a_group_row_holds_lm_evals_own_group_number_and_its_stderr(tiny_model_dir, tmp_path, capsys):
    """Done when (issue 13): `dsas-bench run` with a local group given by --lm-eval-include stores lm-eval's
    size-weighted group number as the unsteered accuracy, not a mean of the group's and subtasks' rows."""
    from dsas_bench.cli import main

    folder = write_group(tmp_path / "elsewhere-tasks", {"small_mc": 4, "large_mc": 11})
    output = tmp_path / "out"
    code = main(["run", "--model", str(tiny_model_dir), "--scorer", "profanity", "--n-prompts", "2",
                 "--max-new-tokens", "2", "--fit-n", "8", "--strengths", "1", "--device", "cpu", "--batch-size", "4",
                 "--lm-eval-tasks", "pair_group", "--lm-eval-include", str(folder), "--no-plot", "--quiet",
                 "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    unsteered = next(row for row in rows if row["method"] == "none")
    own = lm_eval_own(tiny_model_dir, folder, ["pair_group"], batch_size=4)
    group, small, large = own["pair_group"], own["small_mc"], own["large_mc"]
    assert group["acc,none"] == pytest.approx((4 * small["acc,none"] + 11 * large["acc,none"]) / 15, abs=1e-12)
    metrics = unsteered["metrics"]
    assert abs(metrics["accuracy"] - group["acc,none"]) < 1e-9
    assert abs(metrics["accuracy"] - (small["acc,none"] + large["acc,none"] + group["acc,none"]) / 3) > 1e-9
    record = metrics["lmeval"]["pair_group"]
    assert abs(record["stderr"] - group["acc_stderr,none"]) < 1e-9 and record["stderr"] > 0
    assert metrics["accuracy_stderr"] == record["stderr"]
    assert {k: record[k] for k in ("metric", "n_docs", "n_shot", "version", "kind")} == {
        "metric": "acc", "n_docs": 15, "n_shot": 0, "version": "3.0", "kind": "group"}
    assert unsteered["config"]["lm_eval_include"] == [str(folder)]


def test_a_task_can_choose_its_metric_and_stderr_is_the_closed_form(tiny_lm, tmp_path):
    folder = write_group(tmp_path, {"one_mc": 7, "two_mc": 5})
    scores = evaluate_tasks(tiny_lm, ["one_mc:acc_norm", "two_mc"], include_paths=[folder], batch_size=4)
    own = lm_eval_own(tiny_lm.model.name_or_path, folder, ["one_mc", "two_mc"], batch_size=4)
    assert scores["one_mc"]["metric"] == "acc_norm" and scores["two_mc"]["metric"] == "acc"
    assert abs(scores["one_mc"]["value"] - own["one_mc"]["acc_norm,none"]) < 1e-9
    assert abs(scores["two_mc"]["value"] - own["two_mc"]["acc,none"]) < 1e-9
    value, n = scores["two_mc"]["value"], scores["two_mc"]["n_docs"]
    assert scores["two_mc"]["stderr"] == pytest.approx((value * (1 - value) / (n - 1)) ** 0.5)  # sample std / √n


@pytest.mark.parametrize(("task", "reported"), [("one_mc:f1", "acc, acc_norm"), ("pair_group:acc_norm", "acc")])
def test_a_metric_the_task_does_not_report_lists_those_it_does(tiny_lm, tmp_path, task, reported):
    folder = write_group(tmp_path, {"one_mc": 3, "two_mc": 2})
    with pytest.raises(UsageError, match=f"does not report .*; it reports {reported}:"):
        load_tasks([task], include_paths=[folder])


def test_a_metric_of_a_task_without_metric_list_is_checked_against_what_lm_eval_reports(tiny_lm, tmp_path):
    """Without a metric_list lm-eval falls back on its output type's defaults (acc, acc_norm for multiple
    choice), known only once evaluated: the error then lists those."""
    path = write_task(tmp_path, "bare_mc")
    path.write_text(path.read_text().replace("metric_list:\n  - metric: acc\n", ""))
    assert evaluate_tasks(tiny_lm, ["bare_mc:acc_norm"], include_paths=[tmp_path], limit=2)["bare_mc"]["n_docs"] == 2
    with pytest.raises(UsageError, match="bare_mc does not report 'f1'; it reports acc, acc_norm:"):
        evaluate_tasks(tiny_lm, ["bare_mc:f1"], include_paths=[tmp_path], limit=2)
