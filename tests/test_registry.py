"""The method registry: built-ins, aliases, clear errors, and a method from another installed package."""

import json
import subprocess
import sys

import pytest
from helpers import SCALER_PLUGIN, install_plugin, with_plugins

from dsas_bench.core.errors import UsageError
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method, method_names

PLUGIN_MODULE = '''
"""A toy steering method: T(h) = -h on the last decoder layer, which negates the logits."""
from dsas_bench.methods.base import SteeringMethod
from dsas_bench.core.hooks import SteeringMap


class Negate(SteeringMap):
    def forward(self, h):
        return -h


class FlipSign(SteeringMethod):
    default_modules = "layers"

    def fit(self, lm, modules, data, batch_size=16):
        self._bind(lm)
        self.state = {modules[-1]: {}}
        return self

    def make_map(self, params):
        return Negate()
'''

def test_builtin_methods_and_aliases():
    assert {"actadd", "iti", "linacts", "meanacts"} <= set(method_names())
    assert get_method("linear-act") is get_method("linear_act") is get_method("linacts")


def test_unknown_method_lists_registered_ones():
    with pytest.raises(UsageError, match="registered steering methods: .*linacts"):
        get_method("linaact")


def test_regex_matching_nothing_names_closest_modules(tiny_lm):
    with pytest.raises(UsageError, match=r"Closest module names: .*post_attention_layernorm"):
        select_modules(tiny_lm.model, r"model\.layers\.\d+\.post_attention_layernorn")


def test_presets_select_in_forward_order(tiny_lm):
    assert select_modules(tiny_lm.model, "post-attn-norm") == [
        "model.layers.0.post_attention_layernorm", "model.layers.1.post_attention_layernorm"]
    assert select_modules(tiny_lm.model, "o-proj")[0] == "model.layers.0.self_attn.o_proj"
    assert select_modules(tiny_lm.model, r".*post.*layernorm") == select_modules(tiny_lm.model, "post-attn-norm")


@pytest.mark.parametrize("family", ["gemma2", "gemma3_text"])
def test_gemma_post_norm_preset_hooks_both_post_norms_like_the_papers_pattern(family):
    """Gemma-2/3 norm the attention and the MLP outputs; ``.*post.*layernorm`` (and ml-act) hooks both."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    config, model_class = {"gemma2": (Gemma2Config, Gemma2ForCausalLM),
                           "gemma3_text": (Gemma3TextConfig, Gemma3ForCausalLM)}[family]
    model = model_class(config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    assert model.config.model_type == family
    chosen = select_modules(model, "post-attn-norm")
    assert chosen == [f"model.layers.{i}.post_{kind}_layernorm" for i in range(2)
                      for kind in ("attention", "feedforward")]
    assert chosen == select_modules(model, r".*post.*layernorm")


def test_method_from_another_installed_package(tmp_path, tiny_model_dir):
    env = install_plugin(tmp_path, "dsas-bench-flip", PLUGIN_MODULE,
                         {"dsas_bench.methods": {"flip": "dsas_bench_flip:FlipSign"}})
    listed = subprocess.run([sys.executable, "-m", "dsas_bench", "methods"], env=env, capture_output=True,
                            text=True, check=True)
    assert "flip" in listed.stdout.split()
    output = tmp_path / "results"
    ran = subprocess.run([sys.executable, "-m", "dsas_bench", "run", "--method", "flip", "--dsas", "--dsas-option",
                          "policy=full", "--dsas-option", "threshold=1.01", "--model",
                          str(tiny_model_dir), "--scorer", "profanity", "--lm-eval-tasks", "", "--n-prompts", "4",
                          "--max-new-tokens", "4", "--fit-n", "8", "--strengths", "1", "--device", "cpu", "--quiet",
                          "--no-plot", "--output", str(output)], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    rows = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    steered = next(row for row in rows if row["method"] == "flip")
    assert steered["dsas"] == "on"  # DSAS wraps the plugged-in method without it knowing
    # (every layer below the impossible threshold, policy=full: s ≡ 1, so the flip must show)
    baseline = next(row for row in rows if row["method"] == "none")
    assert steered["continuations"] != baseline["continuations"]


BROKEN_PLUGIN = "raise RuntimeError('this plug-in is broken')"
QUICK_LINEAS = "method_options: {lineas: {steps: 3}, iti: {top_k: 4}}\n"


def test_scaler_and_utility_metric_from_another_installed_package_with_every_method(tmp_path, tiny_model_dir):
    env = with_plugins(
        install_plugin(tmp_path, "dsas-bench-half", SCALER_PLUGIN,
                       {"dsas_bench.scalers": {"half": "dsas_bench_half:Half"},
                        "dsas_bench.utility": {"steered-loss": "dsas_bench_half:SteeredLoss"}}),
        install_plugin(tmp_path, "dsas-bench-broken", BROKEN_PLUGIN,
                       {"dsas_bench.scalers": {"broken": "dsas_bench_broken:Nothing"},
                        "dsas_bench.utility": {"broken-metric": "dsas_bench_broken:Nothing"}}))
    listed = subprocess.run([sys.executable, "-m", "dsas_bench", "ls", "scalers"], env=env, capture_output=True,
                            text=True, check=True)
    assert "half           (plug-in from dsas-bench-half); options: value=0.5" in listed.stdout
    assert "plug-in 'broken' from dsas-bench-broken failed to load" in listed.stderr  # named, not a traceback
    assert "on             (built in)" in listed.stdout and "broken" not in listed.stdout
    listed = subprocess.run([sys.executable, "-m", "dsas_bench", "ls", "utility"], env=env, capture_output=True,
                            text=True, check=True)
    assert ("steered-loss   (plug-in from dsas-bench-half); options: n_texts=2; writes: steered_loss"
            in listed.stdout)
    assert "perplexity     (built in)" in listed.stdout and "lm-eval        (built in)" in listed.stdout
    assert "plug-in 'broken-metric' from dsas-bench-broken failed to load" in listed.stderr
    nosuch = subprocess.run([sys.executable, "-m", "dsas_bench", "run", "--dsas", "nosuch"], env=env,
                            capture_output=True, text=True)
    assert nosuch.returncode == 2 and "off, on, e2e, cast, gate, half" in nosuch.stderr
    task = tmp_path / "task.yaml"
    task.write_text(QUICK_LINEAS)
    output = tmp_path / "results"
    methods = [name for name in method_names() if not get_method(name).imported_only]  # all fitted ones
    ran = subprocess.run([sys.executable, "-m", "dsas_bench", "sweep", "--task", str(task), "--methods",
                          ",".join(methods), "--dsas-modes", "off,half", "--strengths", "0.5,1",
                          "--utility", "perplexity,lm-eval,steered-loss", "--set",
                          "utility_options={steered-loss: {n_texts: 3}}", "--model", str(tiny_model_dir),
                          "--scorer", "profanity", "--lm-eval-tasks", "", "--n-prompts", "3",
                          "--max-new-tokens", "4", "--fit-n", "8", "--device", "cpu", "--quiet", "--no-plot",
                          "--output", str(output)], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "plug-in 'broken' from dsas-bench-broken failed to load" in ran.stderr  # and the built-ins still run
    rows = {(row["method"], row["dsas"], row["strength"]): row
            for row in map(json.loads, (output / "results.jsonl").read_text().splitlines())}
    for method in methods:  # h + 1 · 0.5 · (T(h) − h) is h + 0.5 · (T(h) − h): the same continuations
        half, plain = rows[(method, "half", 1.0)], rows[(method, "off", 0.5)]
        assert half["continuations"] == plain["continuations"], method
        assert half["metrics"]["perplexity"] == pytest.approx(plain["metrics"]["perplexity"], rel=1e-5), method
        assert half["intervention"]["scaler"]["options"] == {"value": 0.5}
        # the plug-in metric is measured with the hooks active: like perplexity, it moves with λ and agrees
        assert half["metrics"]["steered_loss"] == pytest.approx(plain["metrics"]["steered_loss"], rel=1e-5), method
        assert plain["metrics"]["steered_loss"] != rows[("none", "off", 0.0)]["metrics"]["steered_loss"], method
    assert all(row["config"]["utility_options"] == {"steered-loss": {"n_texts": 3}} for row in rows.values())
    assert all(row["metrics"]["accuracy"] is None for row in rows.values())  # lm-eval: no tasks, no evaluation
