"""explain: per-token DSAS scales of a run's fitted steering, as a heatmap and a coloured terminal rendering."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import finished_run, is_png

from dsas_bench.analysis.explain import RESET, compact, heatmap, printable, render_terminal, token_scales
from dsas_bench.cli import main
from dsas_bench.run.interventions import SCALER_FILE, intervention_dir, load_intervention
from dsas_bench.run.results import ResultsStore

TEXT = "You are such a nice person"


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run per test module."""
    return finished_run(tiny_model_dir, tmp_path_factory)


def variant(source: Path, dest: Path, mode: str, seeds: tuple[int, ...]) -> Path:
    """A copy of the run ``source`` whose steered rows and fitted state claim DSAS ``mode`` and each of ``seeds``."""
    store = ResultsStore(dest)
    store.check_writable()
    for row in ResultsStore(source).rows():
        for seed in seeds:
            store.append({**row, "seed": seed, "dsas": row["dsas"] if row["method"] == "none" else mode,
                          "cell_id": f"{row['cell_id']}-{mode}-{seed}"})  # each claimed cell its own id
    for seed in seeds:
        target = intervention_dir(dest, "meanacts", mode, seed)
        shutil.copytree(intervention_dir(source, "meanacts", "on", 0), target)
        if mode == "off":
            (target / SCALER_FILE).unlink()
    return dest


def test_token_scales_and_heatmap(tiny_lm, run_dir, tmp_path):
    method, scaler = load_intervention(intervention_dir(run_dir, "meanacts", "on", 0), tiny_lm)
    tokens, modules, scales = token_scales(tiny_lm, method, scaler, TEXT, strength=1.0)
    assert "".join(tokens) == TEXT and modules == list(method.state) and len(modules) == 2
    assert scales.shape == (len(modules), len(tokens)) and ((scales >= 0) & (scales <= 1)).all()
    assert is_png(heatmap(tokens, modules, scales, tmp_path / "sub" / "h.png", "title"))


@pytest.mark.parametrize(("modules", "pattern", "short"), [
    (["m.layers.0.norm", "m.layers.1.norm"], "m.layers.*.norm", ["0", "1"]),
    (["m.layers.0.mlp", "m.layers.1.attn.o"], "m.layers.*", ["0.mlp", "1.attn.o"]),
    (["a.b", "a.b.c"], "a.*", ["b", "b.c"]),
    (["m.layers.0.norm"], "", ["m.layers.0.norm"]),
])
def test_compact_module_names(modules, pattern, short):
    assert compact(modules) == (pattern, short)


def test_render_terminal_colours_or_annotates_each_token():
    tokens, modules = ["You", " are", "\n"], ["layer.0", "layer.1"]
    scales = np.array([[0.2, 0.6, 1.0], [0.0, 0.0, 0.0]])
    plain = render_terminal(tokens, modules, scales, color=False, gated=["layer.1"])
    assert plain.startswith("You[0.10] are[0.30]↵[0.50]\n") and "\x1b" not in plain
    assert "per module (layer.*): 0: 0.60, 1: 0.00\n" in plain and "threshold): 1 (s ≡ 0)" in plain
    colored = render_terminal(tokens, modules, scales, color=True)
    assert colored.count("\x1b[48;5;") >= len(tokens) and all(printable(t) in colored for t in tokens)
    assert "threshold): none" in colored


@pytest.mark.parametrize("tty", [False, True])
def test_cli_explain(run_dir, tmp_path, capsys, monkeypatch, tty):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out_png = tmp_path / "explain.png"
    assert main(["explain", TEXT, "--run", str(run_dir), "--output", str(out_png)]) == 0
    out = capsys.readouterr().out
    assert is_png(out_png) and f"heatmap: {out_png}" in out and "meanacts · DSAS on" in out
    shown = (f"m{char}{RESET}" if tty else f"{char}[" for char in TEXT)  # the tiny tokenizer: one byte a token
    assert ("\x1b[48;5;" in out) == tty and all(token in out for token in shown)
    assert "mean scale per module (model.layers.*.post_attention_layernorm): 0: " in out and "gated off" in out
    if tty:
        assert main(["explain", TEXT, "--run", str(run_dir), "--output", str(out_png), "--no-color"]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "Y[" in out


def test_default_heatmap_path_is_in_the_run(run_dir, capsys):
    assert main(["explain", TEXT, "--run", str(run_dir), "--strength", "2"]) == 0
    assert is_png(run_dir / "explain-meanacts-on-seed0.png") and "λ = 2" in capsys.readouterr().out


def test_several_seeds_need_a_choice(run_dir, tmp_path, capsys):
    run = variant(run_dir, tmp_path / "seeds", "on", (0, 1))
    assert main(["explain", TEXT, "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "several fitted DSAS interventions" in err and "--seed 1" in err
    assert main(["explain", TEXT, "--run", str(run), "--seed", "1", "--output", str(tmp_path / "x.png")]) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "iti"], "no fitted DSAS intervention in {run} matching --method iti"),
    (["--dsas", "cast"], "matching --dsas cast (fitted: --method meanacts --dsas on --seed 0)"),
    (["--dsas", "off"], "DSAS mode off has none"),
])
def test_bad_choices_list_what_the_run_has(run_dir, capsys, args, message):
    assert main(["explain", TEXT, "--run", str(run_dir), *args]) == 2
    assert message.format(run=run_dir) in capsys.readouterr().err


def test_run_without_dsas_scaler(run_dir, tmp_path, capsys):
    run = variant(run_dir, tmp_path / "plain", "off", (0,))
    assert main(["explain", TEXT, "--run", str(run), "--dsas", "on"]) == 2
    err = capsys.readouterr().err
    assert "no fitted DSAS intervention" in err and "--dsas off" in err and "dsas-bench run --method M --dsas" in err


def test_no_results_and_no_text(run_dir, tmp_path, capsys):
    assert main(["explain", TEXT, "--run", str(tmp_path)]) == 2
    assert f"no results at {tmp_path}" in capsys.readouterr().err
    assert main(["explain", "  ", "--run", str(run_dir)]) == 2
    assert "explain needs some text" in capsys.readouterr().err
