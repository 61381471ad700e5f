"""The method registry: built-ins, aliases, clear errors, and a method from another installed package."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from dsas_bench.errors import UsageError
from dsas_bench.modules import select_modules
from dsas_bench.steering.registry import get_method, method_names

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "dsas-bench-flip"
version = "0.1"

[project.entry-points."dsas_bench.methods"]
flip = "dsas_bench_flip:FlipSign"
"""

PLUGIN_MODULE = '''
"""A toy steering method: T(h) = -h on the last decoder layer, which negates the logits."""
from dsas_bench.steering.base import SteeringMethod
from dsas_bench.steering.hooks import SteeringMap


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
    with pytest.raises(UsageError, match="registered methods: .*linacts"):
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
    source = tmp_path / "plugin"
    (source / "dsas_bench_flip").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "dsas_bench_flip" / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
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
