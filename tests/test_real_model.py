"""The real packaged SmolLM2-135M: loading, and Linear-AcT moving likelihood away from toxic text."""

import numpy as np
import pytest

from dsas_bench.core.data import balanced_sample, load_texts
from dsas_bench.core.hooks import steer
from dsas_bench.core.models import load_model
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets
from dsas_bench.utility.perplexity import per_text_perplexity

pytestmark = pytest.mark.slow


def test_default_model_loads_from_the_converted_cache(smollm2):
    assert smollm2.model.config.model_type == "llama" and smollm2.hidden_size == 576
    assert len(select_modules(smollm2.model, "post-attn-norm")) == 30
    assert smollm2.tokenizer.padding_side == "left" and smollm2.tokenizer.pad_token is not None
    again = load_model("smollm2", device="cpu")  # from the cached HF folder, no conversion
    assert again.model.config.hidden_size == 576


def mean_log_likelihood(lm, texts):
    return float(-np.log(per_text_perplexity(lm, texts, progress=False)).mean())


def test_linear_act_lowers_likelihood_of_toxic_relative_to_nontoxic(smollm2):
    toxic, kind = balanced_sample(load_texts(kind="toxic"), 64, 0), balanced_sample(load_texts(kind="nontoxic"), 64, 0)
    some_norms = r"model\.layers\.\d*[0369]\.post_attention_layernorm"  # 12 of the 30 layers, to keep CI fast
    method = get_method("linacts")().fit(smollm2, select_modules(smollm2.model, some_norms),
                                         FitSets(toxic[:32], kind[:32]))
    held_toxic, held_kind = toxic[32:], kind[32:]
    gap = {}
    for strength in (0.0, 1.0):
        with steer(smollm2.model, method.maps(), strength=strength):
            gap[strength] = mean_log_likelihood(smollm2, held_toxic) - mean_log_likelihood(smollm2, held_kind)
    assert gap[1.0] < gap[0.0] - 0.05, gap
