"""Continuations: seeded per prompt, batch-independent, prompt stripped, steering active when wrapped."""

import pytest
import torch

from dsas_bench.core.errors import UsageError
from dsas_bench.core.generation import RowGumbelSampler, SamplingConfig, generate_continuations
from dsas_bench.core.hooks import hook_count, steer
from dsas_bench.methods.maps import ShiftMap

PROMPTS = ["The weather today is", "Hi", "A much longer prompt that needs no padding at all, right?", "Once upon"]
SHORT = SamplingConfig(max_new_tokens=8)
GREEDY = SamplingConfig(max_new_tokens=8, do_sample=False)


def run(lm, prompts=PROMPTS, sampling=SHORT, **kwargs):
    return generate_continuations(lm, prompts, sampling, progress=False, **kwargs)


def test_same_seed_same_continuations_other_seed_others(tiny_lm):
    first = run(tiny_lm, seed=3)
    assert run(tiny_lm, seed=3) == first
    assert run(tiny_lm, seed=4) != first
    assert len(first) == len(PROMPTS) and all(isinstance(text, str) for text in first)


def test_sampling_does_not_depend_on_batching_or_global_rng(tiny_lm):
    batched = run(tiny_lm, batch_size=4)
    torch.manual_seed(12345)
    single = run(tiny_lm, batch_size=1)
    assert batched == single
    assert run(tiny_lm, PROMPTS[2:], batch_size=2) != batched[2:]  # the stream follows the prompt's position


def test_greedy_batched_left_padded_equals_one_at_a_time(tiny_lm):
    batched = run(tiny_lm, sampling=GREEDY, batch_size=4)
    single = [run(tiny_lm, [prompt], GREEDY)[0] for prompt in PROMPTS]
    assert batched == single


def test_prompt_is_stripped_and_special_tokens_skipped(tiny_lm):
    batch = tiny_lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    full = tiny_lm.model.generate(**batch, max_new_tokens=8, do_sample=False, repetition_penalty=1.2)
    expected = tiny_lm.tokenizer.batch_decode(full[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    continuations = run(tiny_lm, sampling=GREEDY)
    assert continuations == expected
    for prompt, text in zip(PROMPTS, continuations, strict=True):
        assert not text.startswith(prompt)
        assert "<pad>" not in text and "<eos>" not in text


def test_runs_the_active_steering_and_adds_no_hooks(tiny_lm):
    torch.manual_seed(0)
    maps = {"model.layers.0": ShiftMap(20 * torch.randn(tiny_lm.hidden_size))}
    before = hook_count(tiny_lm.model)
    plain = run(tiny_lm, sampling=GREEDY)
    with steer(tiny_lm.model, maps, strength=0.0):
        assert run(tiny_lm, sampling=GREEDY) == plain
    with steer(tiny_lm.model, maps, strength=1.0):
        assert run(tiny_lm, sampling=GREEDY) != plain
    assert hook_count(tiny_lm.model) == before


def test_row_sampler_draws_from_the_softmax():
    scores = torch.tensor([[0.0, 1.0, 2.0, -torch.inf]])
    sampler = RowGumbelSampler([torch.Generator().manual_seed(0)])
    draws = torch.stack([sampler(None, scores).argmax(-1) for _ in range(4000)]).flatten()
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(frequencies, scores.softmax(-1)[0], atol=0.03, rtol=0)


@pytest.mark.parametrize("prompts", [[], "a single string"])
def test_bad_prompts_are_usage_errors(tiny_lm, prompts):
    with pytest.raises(UsageError, match="non-empty list"):
        run(tiny_lm, prompts)


@pytest.mark.parametrize("options", [{"top_p": 0.0}, {"temperature": 0.0}, {"max_new_tokens": 0}])
def test_bad_sampling_config_is_a_usage_error(options):
    with pytest.raises(UsageError):
        SamplingConfig(**options)


def test_more_new_tokens_than_the_context_is_a_usage_error(tiny_lm):
    with pytest.raises(UsageError, match="context"):
        run(tiny_lm, sampling=SamplingConfig(max_new_tokens=tiny_lm.model.config.max_position_embeddings))


def test_one_sample_per_prompt_keeps_its_stream_and_more_samples_keep_the_first():
    """K = 1 streams are those of the (seed, prompt index) recipe, so earlier results stay identical; with
    K > 1, sample 0 of a prompt is its K = 1 continuation and the other samples draw streams of their own."""
    import numpy as np

    from dsas_bench.core.generation import row_generator

    for seed, index in [(0, 0), (3, 7), (12, 1)]:
        state = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])
        recipe = torch.Generator().manual_seed(state)
        assert torch.equal(torch.rand(5, generator=row_generator(seed, index, torch.device("cpu"))),
                           torch.rand(5, generator=recipe))
        assert not torch.equal(torch.rand(5, generator=row_generator(seed, index, torch.device("cpu"), 1)),
                               torch.rand(5, generator=row_generator(seed, index, torch.device("cpu"))))


def test_several_samples_per_prompt_are_prompt_major_with_the_first_sample_unchanged(tiny_lm):
    one = run(tiny_lm, seed=5, batch_size=1)
    four = run(tiny_lm, seed=5, batch_size=4, samples_per_prompt=4)  # a batch: the 4 samples of one prompt
    assert len(four) == 4 * len(PROMPTS)
    assert [four[4 * i] for i in range(len(PROMPTS))] == one
    assert all(len(set(four[4 * i:4 * i + 4])) > 1 for i in range(len(PROMPTS)))
    assert run(tiny_lm, seed=5, batch_size=3, samples_per_prompt=4) == four  # batching still does not matter
