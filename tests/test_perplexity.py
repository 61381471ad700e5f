"""Perplexity: the definition, pads excluded, truncation, steering at λ = 0, and a real-model sanity check."""

import numpy as np
import pytest
import torch

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets
from dsas_bench.utility.perplexity import per_text_perplexity, perplexity

TEXTS = ["The cat sat on the mat.", "Hi there", "A much longer sentence about the weather, which was mild and dry.",
         "Paris is the capital of France.", "ok"]


def test_value_is_exp_mean_nll_of_the_text(tiny_lm):
    ids = tiny_lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = tiny_lm.model(ids).logits[0, :-1]
    expected = torch.nn.functional.cross_entropy(logits, ids[0, 1:]).exp().item()
    assert per_text_perplexity(tiny_lm, TEXTS[:1], progress=False)[0] == pytest.approx(expected, rel=1e-5)


def test_batched_equals_one_at_a_time(tiny_lm):
    batched = per_text_perplexity(tiny_lm, TEXTS, batch_size=5, progress=False)
    single = np.concatenate([per_text_perplexity(tiny_lm, [text], progress=False) for text in TEXTS])
    np.testing.assert_allclose(batched, single, rtol=1e-5)
    assert perplexity(tiny_lm, TEXTS, batch_size=2, progress=False) == pytest.approx(single.mean(), rel=1e-5)


def test_only_the_first_max_tokens_count(tiny_lm):
    head = "x" * 20 + " the first twenty bytes, then thirty more here."[:30]
    scores = per_text_perplexity(tiny_lm, [head, head + " and a tail that is cut off"], max_tokens=50,
                                 progress=False)
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)
    assert per_text_perplexity(tiny_lm, [head], max_tokens=10, progress=False)[0] != pytest.approx(scores[0])


def test_strength_zero_equals_unsteered_exactly(tiny_lm):
    modules = select_modules(tiny_lm.model, "post-attn-norm")
    method = get_method("linacts")(support="unbounded").fit(
        tiny_lm, modules, FitSets(["you are awful", "I hate this", "go away now"], ["you are lovely", "I like this",
                                                                                        "come over now"]))
    plain = per_text_perplexity(tiny_lm, TEXTS, progress=False)
    with steer(tiny_lm.model, method.maps(), strength=0.0):
        zero = per_text_perplexity(tiny_lm, TEXTS, progress=False)
    with steer(tiny_lm.model, method.maps(), strength=5.0):
        strong = per_text_perplexity(tiny_lm, TEXTS, progress=False)
    np.testing.assert_array_equal(zero, plain)
    assert not np.allclose(strong, plain)


@pytest.mark.parametrize(("texts", "problem"), [([], "non-empty list"), ("one string", "non-empty list"),
                                                 (["fine text", ""], "text 1")])
def test_bad_texts_are_usage_errors(tiny_lm, texts, problem):
    with pytest.raises(UsageError, match=problem):
        perplexity(tiny_lm, texts, progress=False)


@pytest.mark.slow
def test_fluent_text_scores_lower_than_shuffled_words(smollm2):
    fluent = ["The children walked to school in the morning and came home for lunch.",
              "She opened the window because the room was too warm.",
              "We bought fresh bread and cheese at the market on Saturday."]
    rng = np.random.default_rng(0)
    shuffled = [" ".join(rng.permutation(text.split())) for text in fluent]
    scores = per_text_perplexity(smollm2, fluent + shuffled, progress=False)
    assert np.all(scores[:3] < scores[3:])
    assert scores[:3].mean() * 2 < scores[3:].mean()
