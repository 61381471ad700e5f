"""Steering outside the harness: lm-eval's own CLI on steered models, exports other tools load, imported vectors."""

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from conftest import tiny_run_config
from safetensors import safe_open

from dsas_bench.cli import main
from dsas_bench.core.data import FitSets
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import steer
from dsas_bench.core.models import load_model
from dsas_bench.core.modules import select_modules
from dsas_bench.formats import load_method
from dsas_bench.interop.intervention import load_any
from dsas_bench.interop.lmeval_model import run_lm_eval_cli
from dsas_bench.methods.actadd import ActAdd
from dsas_bench.methods.linear_act import MeanAcT
from dsas_bench.methods.maps import ShiftMap
from dsas_bench.run.interventions import load_intervention, save_intervention
from dsas_bench.run.sweep import run_sweep
from dsas_bench.utility.lmeval import DEFAULT_TASKS_DIR

LIMIT = 8
TEXT = "The weather is nice today, you idiot."


@pytest.fixture(scope="module")
def linacts_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny sweep of Linear-AcT + DSAS at λ = 1 with lm-eval's demo_mc: its row and intervention folder."""
    output = tmp_path_factory.mktemp("linacts-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSAS_BENCH_CACHE", str(output / "cache"))
        config = tiny_run_config(tiny_model_dir, output, methods=["linacts"], dsas=["on"],
                                 lm_eval_tasks=["demo_mc"], lm_eval_limit=LIMIT)
        rows = list(run_sweep(config))
    row = next(row for row in rows if row["method"] == "linacts")
    return {"row": row, "folder": output / "interventions" / "linacts-on-seed0", "batch_size": config.batch_size}


def logits(lm, maps=None, strength=1.0, scaler=None) -> torch.Tensor:
    ids = lm.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad(), steer(lm.model, maps or {}, strength, scaler):
        return lm.model(ids).logits


def lm_eval_results(out: Path) -> tuple[float, list]:
    """(demo_mc accuracy, per-document log-likelihoods) from lm-eval's own output files."""
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = [json.loads(line) for line in next(out.rglob("samples_demo_mc_*.jsonl")).read_text().splitlines()]
    return results["results"]["demo_mc"]["acc,none"], [s["filtered_resps"] for s in sorted(samples,
                                                                                       key=lambda s: s["doc_id"])]


def lm_eval_args(out: Path, batch_size: int) -> list[str]:
    # lm-eval reads a task's relative data_files from the working directory: run from the task folder
    return ["--tasks", "demo_mc", "--include_path", ".", "--limit", str(LIMIT), "--output_path", str(out),
            "--device", "cpu", "--batch_size", str(batch_size), "--log_samples"]


def test_import_registers_dsas_steered_without_importing_lm_eval_or_torch():
    code = ("import sys, dsas_bench\n"
            "assert 'torch' not in sys.modules and 'lm_eval' not in sys.modules, 'heavy import'\n"
            "from lm_eval.api.registry import get_model\n"
            "from lm_eval.models.huggingface import HFLM\n"
            "assert get_model('hf') is HFLM\n"
            "steered = get_model('dsas-steered')\n"
            "assert issubclass(steered, HFLM) and steered.__name__ == 'DSASSteeredLM', steered\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_lm_eval_cli_on_the_steered_model_matches_the_sweep_and_at_zero_plain_hf(
        linacts_run, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(DEFAULT_TASKS_DIR)
    batch = linacts_run["batch_size"]
    for strength in ("1", "0"):
        assert main(["lm-eval", "--intervention", str(linacts_run["folder"]), "--dsas", "on", "--strength", strength,
                     "--", *lm_eval_args(tmp_path / f"steered-{strength}", batch)]) == 0
    assert run_lm_eval_cli(["--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
                            *lm_eval_args(tmp_path / "hf", batch)]) == 0
    steered, zero, plain = (lm_eval_results(tmp_path / name) for name in ("steered-1", "steered-0", "hf"))
    assert steered[0] == linacts_run["row"]["metrics"]["lmeval"]["demo_mc"]["value"]
    assert zero == plain
    assert steered[1] != plain[1]  # the steering was active: every choice's log-likelihood moved


def test_lm_eval_subcommand_refuses_lm_evals_model_flag(linacts_run, capsys):
    assert main(["lm-eval", "--intervention", str(linacts_run["folder"]), "--strength", "1", "--",
                 "--tasks", "demo_mc", "--model", "hf"]) == 2
    assert "before the --" in capsys.readouterr().err


def test_dsas_steered_runs_the_per_sequence_cast_gate_one_sequence_per_batch(tiny_model_dir, tmp_path):
    from dsas_bench.interop.lmeval_model import DSASSteeredLM

    list(run_sweep(tiny_run_config(tiny_model_dir, tmp_path, methods=["linacts"], dsas=["cast"])))
    folder = tmp_path / "interventions" / "linacts-cast-seed0"
    with pytest.raises(UsageError, match="batch size 1"):
        DSASSteeredLM(intervention=str(folder), batch_size=4, device="cpu")
    model = DSASSteeredLM(intervention=str(folder), strength=0.5, device="cpu")
    assert model.batch_size == 1 and model.steering.model is model.model


def test_safetensors_export_reloads_to_identical_logits_and_names_what_it_holds(linacts_run, tiny_lm, tmp_path,
                                                                             wide_model_dir):
    out = tmp_path / "linacts.safetensors"
    assert main(["export", str(linacts_run["folder"]), "--format", "safetensors", "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as file:
        header = file.metadata()
    method, scaler = load_intervention(linacts_run["folder"], tiny_lm)
    assert header["method"] == "linacts" and header["format_version"] == "1"
    assert json.loads(header["modules"]) == list(method.state)
    assert json.loads(header["model"]) == method.model_name and json.loads(header["scaler"])["kind"] == "on"
    again, again_scaler = load_any(out, tiny_lm)
    assert again.options == method.options and again_scaler is not None
    assert torch.equal(logits(tiny_lm, again.maps(), 0.5, again_scaler), logits(tiny_lm, method.maps(), 0.5, scaler))
    with pytest.raises(UsageError, match="hidden size"):
        load_method(out, load_model(str(wide_model_dir), device="cpu", dtype="float32"))


def fit_actadd(lm, folder: Path, modules: str, layer: int) -> Path:
    method = ActAdd(layer=layer).fit(lm, select_modules(lm.model, modules), data=None)
    save_intervention(folder, method, None)
    return folder


def test_gguf_export_of_actadd_reads_back_and_added_by_hand_steers_like_the_harness(tiny_lm, tmp_path):
    folder = fit_actadd(tiny_lm, tmp_path / "actadd", "layers", layer=1)
    out = tmp_path / "actadd.gguf"
    assert main(["export", str(folder), "--format", "gguf-control-vector", "--out", str(out)]) == 0
    reader = gguf.GGUFReader(out)
    assert reader.get_field("general.architecture").contents() == "controlvector"
    assert reader.get_field("controlvector.model_hint").contents() == "llama"
    assert reader.get_field("controlvector.layer_count").contents() == 1
    assert [tensor.name for tensor in reader.tensors] == ["direction.1"]
    method = load_method(folder / "method.pt", tiny_lm)
    direction = torch.from_numpy(np.array(reader.tensors[0].data))
    assert torch.equal(direction, method.state["model.layers.1"]["v"])

    def add_direction(module, args, output):
        return (output[0] + direction, *output[1:]) if isinstance(output, tuple) else output + direction

    handle = tiny_lm.model.model.layers[1].register_forward_hook(add_direction)
    try:
        by_hand = logits(tiny_lm)
    finally:
        handle.remove()
    torch.testing.assert_close(by_hand, logits(tiny_lm, method.maps()), rtol=0, atol=1e-6)
    assert not torch.allclose(by_hand, logits(tiny_lm))


def test_gguf_export_refuses_linear_act_and_a_scaler_saying_why(linacts_run, tmp_path, capsys):
    out = tmp_path / "linacts.gguf"
    assert main(["export", str(linacts_run["folder"] / "method.pt"), "--format", "gguf-control-vector",
                 "--out", str(out)]) == 2
    assert "step depends on the activation" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(linacts_run["folder"]), "--format", "lm-eval-steered", "--out", str(out)]) == 2
    assert "DSAS scaler" in capsys.readouterr().err and not out.exists()


def test_lm_eval_steered_export_loaded_by_lm_evals_own_steered_model_gives_the_same_logits(tiny_lm, tiny_model_dir,
                                                                                         tmp_path):
    from lm_eval.models.hf_steered import SteeredModel

    folder = fit_actadd(tiny_lm, tmp_path / "actadd-o-proj", "o-proj", layer=1)  # a shift at a module inside a layer
    out = tmp_path / "steer.pt"
    assert main(["export", str(folder), "--format", "lm-eval-steered", "--out", str(out)]) == 0
    assert list(torch.load(out)) == ["layers.1.self_attn.o_proj"]
    theirs = SteeredModel(pretrained=str(tiny_model_dir), steer_path=str(out), device="cpu", dtype="float32")
    ids = tiny_lm.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        their_logits = theirs._model_call(ids)
    ours = logits(tiny_lm, load_method(folder / "method.pt", tiny_lm).maps())
    torch.testing.assert_close(their_logits, ours, rtol=0, atol=1e-5)
    assert not torch.allclose(ours, logits(tiny_lm))


def write_repeng_gguf(path: Path, directions: dict[int, np.ndarray]) -> Path:
    """A control vector as repeng's ControlVector.export_gguf writes it."""
    writer = gguf.GGUFWriter(path, "controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", len(directions))
    for layer, direction in directions.items():
        writer.add_tensor(f"direction.{layer}", direction)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_repeng_gguf_and_steering_vectors_import_as_the_equivalent_shift(tiny_lm, tmp_path):
    vector = torch.randn(tiny_lm.hidden_size, generator=torch.Generator().manual_seed(0))
    repeng = write_repeng_gguf(tmp_path / "repeng.gguf", {1: vector.numpy()})
    torch.save({1: vector}, tmp_path / "steering-vector.pt")
    expected = logits(tiny_lm, {"model.layers.1": ShiftMap(vector)}, 0.5)
    for path in (repeng, tmp_path / "steering-vector.pt"):
        method = load_method(path, tiny_lm)
        assert method.name == "shift" and list(method.state) == ["model.layers.1"]
        assert torch.equal(logits(tiny_lm, method.maps(), 0.5), expected)
    with pytest.raises(UsageError, match="decoder layers"):
        load_method(write_repeng_gguf(tmp_path / "deep.gguf", {7: vector.numpy()}), tiny_lm)


def test_an_imported_control_vector_sweeps_with_and_without_dsas(tiny_model_dir, tmp_path):
    vector = torch.randn(32, generator=torch.Generator().manual_seed(1))
    repeng = write_repeng_gguf(tmp_path / "repeng.gguf", {1: vector.numpy()})
    rows = [row for dsas in ("off", "on") for row in run_sweep(tiny_run_config(
        tiny_model_dir, tmp_path / "run", methods=["shift"], dsas=[dsas], intervention=str(repeng)))
        if row["method"] == "shift"]
    assert sorted(row["dsas"] for row in rows) == ["off", "on"]
    assert all(row["intervention"]["method_options"] == {"source": "gguf-control-vector"} for row in rows)
    with pytest.raises(UsageError, match="made elsewhere"):
        list(run_sweep(tiny_run_config(tiny_model_dir, tmp_path / "none", methods=["shift"])))


def test_mean_act_without_a_support_is_a_constant_shift_and_exports_its_beta(tiny_lm, tmp_path):
    sets = FitSets(["you are an idiot", "shut up, fool"], ["have a nice day", "thank you, friend"])
    method = MeanAcT(support="unbounded").fit(tiny_lm, select_modules(tiny_lm.model, "post-attn-norm"), sets)
    save_intervention(tmp_path / "meanacts", method, None)
    out = tmp_path / "mean.pt"
    assert main(["export", str(tmp_path / "meanacts"), "--format", "lm-eval-steered", "--out", str(out)]) == 0
    exported = torch.load(out)
    assert list(exported) == [name.removeprefix("model.") for name in method.state]
    for name, params in method.state.items():
        assert torch.equal(exported[name.removeprefix("model.")]["steering_vector"], params["beta"].float())
