"""ITI (head and c variants) and ActAdd on the tiny model."""

import copy

import numpy as np
import pytest
import torch
from helpers import KIND, TOXIC
from sklearn.linear_model import LogisticRegression

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.errors import UsageError
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.iti import probe_accuracy

SETS = FitSets([*TOXIC, *(t + "!" for t in TOXIC)], [*KIND, *(t + "!" for t in KIND)])


def test_iti_keeps_the_top_k_heads_by_held_out_accuracy(tiny_lm):
    modules = select_modules(tiny_lm.model, "o-proj")
    method = get_method("iti")(top_k=3).fit(tiny_lm, modules, SETS)
    acts = pooled_activations(tiny_lm, [*SETS.source, *SETS.target], modules, pooling="last", site="input")
    labels = np.r_[np.zeros(len(SETS.source)), np.ones(len(SETS.target))]
    accuracy = {(name, head): probe_accuracy(acts[name].reshape(len(labels), 4, -1)[:, head].numpy(), labels, 0, 0.3)
                for name in modules for head in range(4)}
    kept = {(name, int(head)) for name, params in method.state.items() for head in params["heads"]}
    assert len(kept) == 3
    assert min(accuracy[k] for k in kept) >= max(accuracy[k] for k in accuracy if k not in kept)


def test_iti_head_directions_have_unit_norm_and_map_through_o_proj(tiny_lm):
    modules = select_modules(tiny_lm.model, "o-proj")
    method = get_method("iti")(top_k=5, alpha=2.0).fit(tiny_lm, modules, SETS)
    projections = dict(tiny_lm.model.named_modules())
    for name, params in method.state.items():
        torch.testing.assert_close(params["theta"].norm(dim=-1), torch.ones(len(params["heads"])))
        shift = torch.zeros(4, 8)
        shift[params["heads"]] = 2.0 * params["sigma"][:, None] * params["theta"]
        torch.testing.assert_close(params["v"], projections[name].weight.detach() @ shift.reshape(-1))


def test_iti_c_adds_a_scaled_classifier_normal(tiny_lm, tmp_path):
    modules = select_modules(tiny_lm.model, "post-attn-norm")
    method = get_method("iti")(variant="c").fit(tiny_lm, modules, SETS)
    assert set(method.state) == set(modules)
    h = torch.randn(3, tiny_lm.hidden_size)
    loaded = SteeringMethod.load(method.save(tmp_path / "iti.pt"), tiny_lm)
    for name, steering_map in method.maps().items():
        assert torch.equal(steering_map(h), loaded.maps()[name](h))
        torch.testing.assert_close(steering_map(h) - h, method.state[name]["v"].expand(3, -1))


def test_iti_unknown_variant():
    with pytest.raises(UsageError, match="use heads or c"):
        get_method("iti")(variant="x").fit(None, [], SETS)


def test_actadd_is_the_last_token_difference_at_one_layer(tiny_lm):
    modules = select_modules(tiny_lm.model, "layers")
    method = get_method("actadd")(positive=["Love", "Joy"], negative=["Hate", "Rage"], layer=1, prefix="none").fit(
        tiny_lm, modules, SETS)
    assert list(method.state) == [modules[1]]
    plus = pooled_activations(tiny_lm, ["Love", "Joy"], [modules[1]], pooling="last")[modules[1]]
    minus = pooled_activations(tiny_lm, ["Hate", "Rage"], [modules[1]], pooling="last")[modules[1]]
    torch.testing.assert_close(method.state[modules[1]]["v"], plus.mean(0) - minus.mean(0))


def test_actadd_rejects_unpaired_prompts(tiny_lm):
    with pytest.raises(UsageError, match="as many positive as negative"):
        get_method("actadd")(positive=["Love"], negative=[]).fit(tiny_lm, ["model.layers.0"], SETS)


@pytest.mark.parametrize(("top_k", "kept"), [(0.3, 2), (0.05, 1), (3, 3)])
def test_iti_top_k_takes_a_fraction_of_all_heads_and_records_the_count(tiny_lm, tmp_path, top_k, kept):
    modules = select_modules(tiny_lm.model, "o-proj")  # 2 layers × 4 heads
    method = get_method("iti")(top_k=top_k).fit(tiny_lm, modules, SETS)
    assert sum(len(params["heads"]) for params in method.state.values()) == kept
    assert method.diagnostics == {"heads_kept": kept, "heads_total": 8}
    assert SteeringMethod.load(method.save(tmp_path / "iti.pt"), tiny_lm).diagnostics == method.diagnostics


@pytest.mark.parametrize("top_k", [0, 1.5, -2, "many"])
def test_iti_top_k_must_be_a_count_or_a_fraction(tiny_lm, top_k):
    with pytest.raises(UsageError, match="top_k must be (a whole number of heads or a fraction|int or float)"):
        get_method("iti")(top_k=top_k).fit(tiny_lm, select_modules(tiny_lm.model, "o-proj"), SETS)


def test_iti_c_adds_the_unit_classifier_normal_by_default_and_alpha_sigma_as_an_option(tiny_lm):
    """METHODS.md §2: v = the classifier's normal, so λ scales the normal itself; ITI's α·σ an option."""
    modules = select_modules(tiny_lm.model, "post-attn-norm")
    plain = get_method("iti")(variant="c").fit(tiny_lm, modules, SETS)
    scaled = get_method("iti")(variant="c", normal_scale="sigma", alpha=15.0).fit(tiny_lm, modules, SETS)
    assert plain.options["normal_scale"] == "unit" and scaled.options["normal_scale"] == "sigma"
    acts = pooled_activations(tiny_lm, [*SETS.source, *SETS.target], modules)
    labels = np.r_[np.zeros(len(SETS.source)), np.ones(len(SETS.target))]
    for name in modules:
        normal = torch.from_numpy(LogisticRegression(max_iter=1000).fit(acts[name].numpy(), labels).coef_[0]).float()
        normal = normal / normal.norm()
        torch.testing.assert_close(plain.state[name]["v"], normal)
        torch.testing.assert_close(scaled.state[name]["v"], 15.0 * (acts[name] @ normal).std() * normal)
    with pytest.raises(UsageError, match="unit or sigma"):
        get_method("iti")(variant="c", normal_scale="norm").fit(tiny_lm, modules, SETS)


@pytest.mark.parametrize(("prefix", "used"), [("auto", "\n"), ("bos", "<eos>"), ("Note: ", "Note: ")])
def test_actadd_puts_a_prefix_before_the_contrast_prompts_when_the_tokenizer_adds_no_bos(tiny_lm, prefix, used):
    """The tiny tokenizer adds no BOS and has none: a newline (auto) or its EOS (bos) starts each prompt, recorded."""
    modules = select_modules(tiny_lm.model, "layers")
    method = get_method("actadd")(layer=1, **({} if prefix == "auto" else {"prefix": prefix})).fit(
        tiny_lm, modules, SETS)
    assert method.options["prefix"] == prefix and method.diagnostics == {"contrast_prefix": used}
    plus, minus = (pooled_activations(tiny_lm, [used + text], [modules[1]], pooling="last")[modules[1]][0]
                   for text in ("Love", "Hate"))
    torch.testing.assert_close(method.state[modules[1]]["v"], plus - minus)
    bare = get_method("actadd")(layer=1, prefix="none").fit(tiny_lm, modules, SETS)
    assert bare.diagnostics == {"contrast_prefix": ""}
    assert not torch.allclose(bare.state[modules[1]]["v"], plus - minus)


def test_actadd_adds_no_prefix_when_the_tokenizer_starts_with_its_own_bos(tiny_lm):
    from tokenizers.processors import TemplateProcessing

    from dsas_bench.methods.actadd import contrast_prefix

    assert tiny_lm.tokenizer("<eos>Love")["input_ids"][0] == tiny_lm.tokenizer.eos_token_id  # a special token
    tokenizer = copy.deepcopy(tiny_lm.tokenizer)
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    tokenizer._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[
        ("<s>", tokenizer.bos_token_id)])
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id
    assert contrast_prefix(tokenizer, "auto") == contrast_prefix(tokenizer, "bos") == ""
    assert contrast_prefix(tokenizer, "Note: ") == "Note: "
    with pytest.raises(UsageError, match="prefix must be"):
        contrast_prefix(tiny_lm.tokenizer, None)


def test_actadd_prompt_start_adds_the_position_wise_difference_at_the_first_positions(tiny_lm):
    """Turner et al.: h_A = h(p⁺) − h(p⁻) position by position, aligned with the front of the prompt."""
    modules = select_modules(tiny_lm.model, "layers")
    method = get_method("actadd")(layer=0, positions="prompt-start").fit(tiny_lm, modules, SETS)
    v = method.state[modules[0]]["v"]
    batch = tiny_lm.tokenizer(["\nLove", "\nHate"], return_tensors="pt")
    with torch.no_grad():
        hidden = tiny_lm.model(**batch, output_hidden_states=True).hidden_states[1]  # output of model.layers.0
    torch.testing.assert_close(v, hidden[0] - hidden[1], rtol=1e-5, atol=1e-5)
    assert v.shape == (5, tiny_lm.hidden_size) and torch.equal(v[0], torch.zeros_like(v[0]))  # the shared prefix
    with pytest.raises(UsageError, match="same number of tokens"):
        get_method("actadd")(positive=["Love"], negative=["Hatred"], positions="prompt-start").fit(
            tiny_lm, modules, SETS)


def test_rows_record_the_iti_options_and_the_number_of_heads_kept(tiny_model_dir, tmp_path):
    from conftest import tiny_run_config

    from dsas_bench.run.sweep import run_sweep

    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["iti"],
                             method_options={"iti": {"top_k": 0.25, "positions": "from-last-prompt-token"}})
    row = list(run_sweep(config))[1]
    assert row["intervention"]["method_options"]["top_k"] == 0.25
    assert row["intervention"]["method_options"]["positions"] == "from-last-prompt-token"
    assert row["intervention"]["method_diagnostics"] == {"heads_kept": 2, "heads_total": 8}
