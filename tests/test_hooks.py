"""The hook manager under real generation: λ = 0, batching with left padding, KV cache, cleanup."""

import pytest
import torch
from torch import Tensor

from dsas_bench.core.hooks import HookManager, SteeringMap, hook_count, pool, steer

PROMPTS = ["The weather today is", "Hi", "A much longer prompt that needs no padding at all, right?"]


class AddVector(SteeringMap):
    """T(h) = h + v."""

    def __init__(self, v: Tensor):
        super().__init__()
        self.register_buffer("v", v)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.v


@pytest.fixture
def maps(tiny_lm):
    torch.manual_seed(1)
    d = tiny_lm.hidden_size
    return {"model.layers.0.post_attention_layernorm": AddVector(3 * torch.randn(d)),
            "model.layers.1": AddVector(3 * torch.randn(d))}


def generate(lm, prompts, use_cache=True, n=12):
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    out = lm.model.generate(**batch, max_new_tokens=n, do_sample=False, use_cache=use_cache)
    return [row[batch["input_ids"].shape[1]:].tolist() for row in out]


def test_strength_zero_gives_identical_logits(tiny_lm, maps):
    batch = tiny_lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = tiny_lm.model(**batch).logits
        with steer(tiny_lm.model, maps, strength=0.0):
            zero = tiny_lm.model(**batch).logits
        with steer(tiny_lm.model, maps, strength=1.0):
            steered = tiny_lm.model(**batch).logits
    assert torch.equal(plain, zero)
    assert not torch.allclose(plain, steered)


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_lm, maps):
    with steer(tiny_lm.model, maps, strength=1.0):
        batched = generate(tiny_lm, PROMPTS)
        single = [generate(tiny_lm, [p])[0] for p in PROMPTS]
    unsteered = generate(tiny_lm, PROMPTS)
    assert batched == single
    assert batched != unsteered  # the steering really acted during decoding


def test_cached_generation_equals_uncached(tiny_lm, maps):
    with steer(tiny_lm.model, maps, strength=0.7):
        assert generate(tiny_lm, PROMPTS, use_cache=True) == generate(tiny_lm, PROMPTS, use_cache=False)


def test_hooks_removed_on_exit_and_on_exception(tiny_lm, maps):
    before = hook_count(tiny_lm.model)
    with steer(tiny_lm.model, maps):
        assert hook_count(tiny_lm.model) == before + len(maps) + 1  # one per map, one to track tokens
    assert hook_count(tiny_lm.model) == before
    with pytest.raises(RuntimeError, match="boom"), steer(tiny_lm.model, maps):
        raise RuntimeError("boom")
    assert hook_count(tiny_lm.model) == before


def test_unknown_module_is_rejected_before_any_hook(tiny_lm, maps):
    before = hook_count(tiny_lm.model)
    with pytest.raises(KeyError, match="no module named"):
        HookManager(tiny_lm.model).steer({"model.layers.9": maps["model.layers.1"]})
    assert hook_count(tiny_lm.model) == before


def test_capture_excludes_pads(tiny_lm):
    """A sentence's pooled activation is the same alone and left-padded in a batch."""
    name = "model.layers.1"
    results = {}
    for prompts in (PROMPTS, PROMPTS[1:2]):
        manager = HookManager(tiny_lm.model)
        capture = manager.capture([name])
        with manager, torch.no_grad():
            tiny_lm.model(**tiny_lm.tokenizer(prompts, return_tensors="pt", padding=True))
        results[len(prompts)] = capture.stacked()[name]
    torch.testing.assert_close(results[3][1], results[1][0], rtol=1e-5, atol=1e-5)


def test_pool_mean_and_last_skip_pads():
    h = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3).repeat(2, 1, 1)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(pool(h, mask, "mean")[0], h[0, 2:].mean(0))
    assert torch.equal(pool(h, mask, "mean")[1], h[1].mean(0))
    right_padded = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(pool(h[:1], right_padded, "last")[0], h[0, 1])
