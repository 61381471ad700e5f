"""ITI (head and c variants) and ActAdd on the tiny model."""

import numpy as np
import pytest
import torch
from test_linear_act import KIND, TOXIC

from dsas_bench.activations import pooled_activations
from dsas_bench.errors import UsageError
from dsas_bench.modules import select_modules
from dsas_bench.steering.base import FitSets, SteeringMethod
from dsas_bench.steering.methods.iti import probe_accuracy
from dsas_bench.steering.registry import get_method

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
    method = get_method("actadd")(positive=["Love", "Joy"], negative=["Hate", "Rage"], layer=1).fit(
        tiny_lm, modules, SETS)
    assert list(method.state) == [modules[1]]
    plus = pooled_activations(tiny_lm, ["Love", "Joy"], [modules[1]], pooling="last")[modules[1]]
    minus = pooled_activations(tiny_lm, ["Hate", "Rage"], [modules[1]], pooling="last")[modules[1]]
    torch.testing.assert_close(method.state[modules[1]]["v"], plus.mean(0) - minus.mean(0))


def test_actadd_rejects_unpaired_prompts(tiny_lm):
    with pytest.raises(UsageError, match="as many positive as negative"):
        get_method("actadd")(positive=["Love"], negative=[]).fit(tiny_lm, ["model.layers.0"], SETS)
