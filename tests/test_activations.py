"""Pooled activations: pads excluded in batches, and a disk cache keyed by everything that changes them."""

from pathlib import Path

import pytest
import torch

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.models import cache_dir, load_model
from dsas_bench.methods.maps import ShiftMap

TEXTS = ["The weather today is", "Hi", "A much longer sentence that sets the padding of the batch"]
MODULES = ["model.layers.0.post_attention_layernorm", "model.layers.1"]


def cached_files() -> set[Path]:
    return set((cache_dir() / "activations").glob("*.pt"))


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_batched_with_left_padding_equals_one_at_a_time(tiny_lm, pooling):
    batched = pooled_activations(tiny_lm, TEXTS, MODULES, pooling=pooling, batch_size=3, use_cache=False)
    for i, text in enumerate(TEXTS):
        alone = pooled_activations(tiny_lm, [text], MODULES, pooling=pooling, use_cache=False)
        for name in MODULES:
            torch.testing.assert_close(batched[name][i], alone[name][0], rtol=1e-5, atol=1e-5)


def test_the_cache_key_changes_with_every_input_that_changes_the_numbers(tiny_lm, wide_model_dir, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("DSAS_BENCH_CACHE", str(tmp_path))  # an empty cache of its own
    first = pooled_activations(tiny_lm, TEXTS, MODULES, progress=False)
    files = cached_files()
    again = pooled_activations(tiny_lm, TEXTS, MODULES, progress=False)
    assert cached_files() == files and all(torch.equal(first[m], again[m]) for m in MODULES)  # read back
    shift = {MODULES[0]: ShiftMap(torch.ones(tiny_lm.hidden_size))}
    variants = [dict(texts=TEXTS[:2]), dict(modules=MODULES[:1]), dict(pooling="last"), dict(site="input"),
                dict(steering=shift), dict(max_length=4), dict(lm=load_model(str(wide_model_dir), device="cpu"))]
    for variant in variants:
        before = cached_files()
        args = {"lm": tiny_lm, "texts": TEXTS, "modules": MODULES, **variant}
        pooled_activations(args.pop("lm"), args.pop("texts"), args.pop("modules"), progress=False, **args)
        assert len(cached_files() - before) == 1, variant  # a new entry, not a stale one reused
    steered = pooled_activations(tiny_lm, TEXTS, MODULES, steering=shift, progress=False)
    assert not torch.equal(steered[MODULES[1]], first[MODULES[1]])
