"""Every registered method's saved state: small, reloads to identical outputs, refuses another model."""

import pytest
import torch
from helpers import PROMPTS, demo_lines, fitted, logits

from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import load_model
from dsas_bench.methods import get_method, method_names
from dsas_bench.methods.base import STATE_FORMAT, FitSets, SteeringMethod


@pytest.fixture(scope="module")
def sets() -> FitSets:
    return FitSets(demo_lines("toxic.txt", 24), demo_lines("nontoxic.txt", 24))


@pytest.fixture(scope="module")
def wide_lm(wide_model_dir):
    return load_model(str(wide_model_dir), device="cpu")


@pytest.mark.parametrize("name", [name for name in method_names() if not get_method(name).imported_only])
def test_save_load_reproduces_outputs_and_refuses_another_hidden_size(tiny_lm, wide_lm, sets, tmp_path, name):
    method, _ = fitted(tiny_lm, name, sets)
    path = method.save(tmp_path / f"{name}.pt")
    saved = torch.load(path)
    assert (saved["format"], saved["method"], saved["version"]) == (STATE_FORMAT, name, method.state_version)
    assert path.stat().st_size < 200_000  # parameters of the maps only, never activations or weights
    loaded = SteeringMethod.load(path, tiny_lm)
    assert type(loaded) is type(method) and loaded.options == method.options
    steered = logits(tiny_lm, method.maps())
    assert not torch.equal(steered, logits(tiny_lm))
    assert torch.equal(logits(tiny_lm, loaded.maps(), prompts=PROMPTS), steered)
    with pytest.raises(UsageError, match=r"hidden size 32 .* has hidden size 48: refit"):
        SteeringMethod.load(path, wide_lm)
