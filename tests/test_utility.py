"""Utility metrics: one registry, checked names and options, measured with the hooks active, shared passes reused."""

import math

import pytest
import torch
from helpers import demo_lines

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import steer
from dsas_bench.methods.maps import ShiftMap
from dsas_bench.run.config import RunConfig, load_config
from dsas_bench.utility import DEFAULT_UTILITY, UTILITY, build_utility, check_utility, register_utility
from dsas_bench.utility.base import UtilityInputs, UtilityMetric, measure_utility
from dsas_bench.utility.perplexity import perplexity


def test_the_default_is_perplexity_then_lm_eval_and_aliases_resolve():
    assert RunConfig().utility == DEFAULT_UTILITY == ["perplexity", "lm-eval"]
    assert UTILITY.names() == ["perplexity", "lm-eval"]  # no plug-ins installed here
    assert check_utility(["PPL", "lmeval", "perplexity"], {}) == (["perplexity", "lm-eval"], {})
    assert load_config("demo", {"utility": ["ppl"]}).utility == ["perplexity"]


@pytest.mark.parametrize(("names", "options", "message"), [
    (["nosuch"], {}, "unknown utility metric 'nosuch'; registered utility metrics: perplexity, lm-eval"),
    (["lm-eval"], {}, "utility lm-eval leaves out 'perplexity'"),
    (["perplexity"], {"lm-eval": {}}, "utility options given for 'lm-eval', which this run does not measure"),
    (["perplexity"], {"perplexity": {"tokens": 3}}, "utility metric 'perplexity' has no option tokens; its "
                                                    "options are: none"),
])
def test_bad_names_and_options_are_usage_errors(names, options, message):
    with pytest.raises(UsageError, match=message):
        check_utility(names, options)


def inputs(lm, **config) -> UtilityInputs:
    texts = demo_lines("neutral.txt", 6)
    settings = {"perplexity_tokens": 20, "batch_size": 4, "lm_eval_tasks": [], "lm_eval_include": [],
                "lm_eval_fewshot": None, "lm_eval_limit": None, **config}
    return UtilityInputs(lm, texts, settings)


def test_perplexity_metric_measures_the_model_as_steered(tiny_lm):
    metric = build_utility(["perplexity"], {})[0]
    given = inputs(tiny_lm)
    maps = {"model.layers.0.post_attention_layernorm": ShiftMap(torch.ones(tiny_lm.hidden_size))}
    with steer(tiny_lm.model, maps, 2.0):
        steered = metric.measure(given)["perplexity"]
        assert steered == perplexity(tiny_lm, given.texts, max_tokens=20, batch_size=4)
    assert steered != metric.measure(given)["perplexity"]  # the hooks are gone: another number


def test_shared_fields_are_reused_and_every_measured_metric_is_timed(tiny_lm):
    times: dict[str, float] = {}
    values = measure_utility(build_utility(DEFAULT_UTILITY, {}), inputs(tiny_lm), times, {"perplexity": 12.5})
    assert values == {"perplexity": 12.5, "lmeval": {}, "accuracy": None, "accuracy_stderr": None}
    assert set(times) == {"lm_eval"}  # perplexity came from the shared (strength-batched) passes


def test_a_metric_returning_undeclared_fields_is_refused(tiny_lm):
    @register_utility("wrong-fields")
    class WrongFields(UtilityMetric):
        fields = ("declared",)
        defaults = {"scale": 1.0}

        def measure(self, inputs):
            return {"other": self.options["scale"]}

    try:
        metrics = build_utility(["perplexity", "wrong-fields"], {"wrong-fields": {"scale": 2}})
        assert metrics[1].options == {"scale": 2.0}  # coerced to the default's type
        with pytest.raises(ValueError, match="'wrong-fields' returned \\['other'\\], not the fields it declares"):
            measure_utility(metrics, inputs(tiny_lm), {}, {"perplexity": math.nan})
    finally:
        UTILITY.remove("wrong-fields")
