"""The maps: the supported affine map's fast path is its definition; shifts at chosen token positions
see the right positions under left padding, KV-cached and uncached generation."""

import pytest
import torch

from dsas_bench.core.hooks import SteeringMap, TokenContext, steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods.maps import ShiftMap, SupportedAffineMap

PROMPTS = ["The weather today is", "Hi", "A much longer prompt that needs no padding at all, right?"]


def reference(h: torch.Tensor, omega, beta, lo, hi) -> torch.Tensor:
    """T(h) − h by the definition: (ω − 1) ⊙ h + β strictly inside (lo, hi), 0 elsewhere."""
    return torch.where((h > lo) & (h < hi), torch.addcmul(beta, omega - 1, h), 0.0)


def test_displacement_equals_the_masked_definition_with_its_gradient():
    generator = torch.Generator().manual_seed(0)
    d = 16
    omega, beta = 1 + 0.3 * torch.randn(d, generator=generator), torch.randn(d, generator=generator)
    lo, hi = -torch.rand(d, generator=generator), torch.rand(d, generator=generator)
    h = 1.5 * torch.randn(4, 7, d, generator=generator)
    h[0, 0], h[0, 1] = lo, hi  # exactly on the bounds: outside
    h = h.requires_grad_()
    steering_map = SupportedAffineMap(omega, beta, lo, hi)
    fast, slow = steering_map.displacement(h), reference(h, omega, beta, lo, hi)
    assert torch.equal(fast, slow)
    (fast_grad,), (slow_grad,) = (torch.autograd.grad(out.sum(), h) for out in (fast, slow))
    assert torch.equal(fast_grad, slow_grad)
    assert "slope" not in steering_map.state_dict()  # derived, not part of the state or its fingerprint


def test_shift_positions_select_the_papers_tokens():
    v = torch.arange(1.0, 4.0)
    context = TokenContext(positions=torch.tensor([[-1, 0, 1, 2, 3]]), prompt_length=torch.tensor([3]))
    h = torch.zeros(1, 5, 3)
    after_prompt = ShiftMap(v, "from-last-prompt-token").step(h, context)  # positions ≥ 3 − 1
    assert torch.equal(after_prompt[0, :, 0], torch.tensor([0.0, 0, 0, 1, 1]))
    rows = torch.stack([v, 10 * v])
    front = ShiftMap(rows, "prompt-start").step(h, context)  # row i at position i, nothing at the pad
    assert torch.equal(front[0], torch.stack([torch.zeros(3), v, 10 * v, torch.zeros(3), torch.zeros(3)]))
    assert torch.equal(ShiftMap(v).step(h, context), v.expand(1, 5, 3))
    assert ShiftMap(v).fingerprint() != ShiftMap(v, "from-last-prompt-token").fingerprint()


class ContextProbe(SteeringMap):
    """Steers nothing; keeps the positions and prompt lengths the hook manager gave each pass."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, h):
        return h

    def step(self, h, context):
        self.seen.append((context.positions.clone(), context.prompt_length.clone()))
        return torch.zeros_like(h)


def generate(lm, prompts, maps, use_cache=True, n=4) -> list[list[int]]:
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad(), steer(lm.model, maps, 1.0):
        out = lm.model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=use_cache)
    return out[:, batch["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("use_cache", [True, False])
def test_token_context_counts_real_positions_and_keeps_the_prompt_length(tiny_lm, use_cache):
    probe = ContextProbe()
    generate(tiny_lm, PROMPTS, {"model.layers.0": probe}, use_cache=use_cache)
    lengths = torch.tensor([len(tiny_lm.tokenizer(p)["input_ids"]) for p in PROMPTS])
    first_positions, first_lengths = probe.seen[0]
    assert torch.equal(first_lengths, lengths)
    assert torch.equal(first_positions[:, -1], lengths - 1)  # left padded: the last column is the last prompt token
    assert (first_positions[1, : lengths.max() - lengths[1]] == -1).all()  # the pads before "Hi"
    assert len(probe.seen) == 4
    for step, (positions, prompt_length) in enumerate(probe.seen):
        assert torch.equal(prompt_length, lengths)  # kept by cached steps and by uncached re-runs
        assert torch.equal(positions[:, -1], lengths - 1 + step)
        assert positions.shape[1] == (1 if use_cache and step else lengths.max() + step)


@pytest.mark.parametrize("positions", ["from-last-prompt-token", "prompt-start"])
def test_shifts_at_chosen_positions_agree_cached_uncached_and_one_at_a_time(tiny_lm, positions):
    generator = torch.Generator().manual_seed(1)
    shape = (3, tiny_lm.hidden_size) if positions == "prompt-start" else (tiny_lm.hidden_size,)
    vectors = {name: 3 * torch.randn(*shape, generator=generator)
               for name in select_modules(tiny_lm.model, "post-attn-norm")}
    maps = {name: ShiftMap(v, positions) for name, v in vectors.items()}
    cached = generate(tiny_lm, PROMPTS, maps)
    assert cached == generate(tiny_lm, PROMPTS, maps, use_cache=False)
    assert cached == [generate(tiny_lm, [prompt], maps)[0] for prompt in PROMPTS]
    assert cached != generate(tiny_lm, PROMPTS, {})  # it steers
    everywhere = {name: ShiftMap(v if v.dim() == 1 else v[0]) for name, v in vectors.items()}
    assert cached != generate(tiny_lm, PROMPTS, everywhere)  # and not at every position
