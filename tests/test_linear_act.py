"""Linear-AcT and Mean-AcT: the transport maps, their support, incremental estimation, state."""

import numpy as np
import pytest
import torch
from helpers import KIND, TOXIC

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets, SteeringMethod


@pytest.fixture(scope="module")
def synthetic():
    generator = torch.Generator().manual_seed(0)
    source = 1 + torch.randn(1000, 5, generator=generator)
    target = 5 + 0.5 * torch.randn(1000, 5, generator=generator)
    return source, target


def test_transport_matches_target_moments(synthetic):
    source, target = synthetic
    method = get_method("linacts")()
    steering_map = method.make_map(method.fit_module(source, target))
    moved = steering_map(source)
    inside = (source > source.min(0).values) & (source < source.max(0).values)
    moved_inside = torch.where(inside, moved, torch.nan)
    assert torch.all((moved_inside.nanmean(0) - target.mean(0)).abs() < 0.1)
    std = torch.tensor(np.nanstd(moved_inside.numpy(), axis=0, ddof=1))
    assert torch.all((std - target.std(0)).abs() < 0.1)


def test_values_outside_source_range_pass_through(synthetic):
    source, target = synthetic
    method = get_method("linacts")()
    steering_map = method.make_map(method.fit_module(source, target))
    outside = torch.stack([source.min(0).values, source.max(0).values, source.max(0).values + 3])
    assert torch.equal(steering_map(outside), outside)


def test_omega_beta_equal_closed_form(synthetic):
    source, target = synthetic
    params = get_method("linear-act")().fit_module(source, target)
    for j in range(5):
        a, b = np.sort(source[:, j].numpy().astype(np.float64)), np.sort(target[:, j].numpy().astype(np.float64))
        slope, intercept = np.polyfit(a, b, 1)
        assert params["omega"][j].item() == pytest.approx(slope, rel=1e-5)
        assert params["beta"][j].item() == pytest.approx(intercept, rel=1e-5, abs=1e-5)


def test_mean_act_shifts_means_and_keeps_scale(synthetic):
    source, target = synthetic
    params = get_method("mean_act")(support="unbounded").fit_module(source, target)
    assert torch.equal(params["omega"], torch.ones(5))
    torch.testing.assert_close(params["beta"], target.mean(0) - source.mean(0))


def test_mean_act_defaults_to_ml_act_unbounded_support_skipping_constant_channels(synthetic):
    """ml-act's mean_ot: support q_all (every value) and channels with std ≤ 1e-4 in either set untouched."""
    source, target = (x.clone() for x in synthetic)
    source[:, 1], target[:, 3] = 2.0, 7.0  # near-constant channels
    method = get_method("meanacts")()
    assert method.options["support"] == "unbounded" and method.options["std_eps"] == 1e-4
    steering_map = method.make_map(method.fit_module(source, target))
    far = torch.full((1, 5), 100.0)  # far outside the source range: still moved
    shift = target.mean(0) - source.mean(0)
    expected = far + torch.where(torch.tensor([True, False, True, False, True]), shift, 0.0)
    torch.testing.assert_close(steering_map(far), expected)
    masked = get_method("meanacts")(support="source-range")
    assert torch.equal(masked.make_map(masked.fit_module(source, target))(far), far)
    with pytest.raises(UsageError, match="at least 2 source and 2 target"):
        method.fit_module(source[:1], target[:1])


def test_unequal_sets_are_balanced(synthetic):
    source, target = synthetic
    params = get_method("linacts")().fit_module(source[:700], target)
    assert torch.isfinite(params["omega"]).all()


def test_aliases_resolve_to_one_method():
    assert get_method("linear-act") is get_method("linear_act") is get_method("LinActs")


def _fit(lm: LoadedModel, estimation: str) -> tuple[SteeringMethod, list[str]]:
    modules = select_modules(lm.model, "post-attn-norm")
    method = get_method("linacts")(estimation=estimation).fit(lm, modules, FitSets(TOXIC, KIND))
    return method, modules


@pytest.mark.parametrize("estimation", ["incremental", "at-once"])
def test_incremental_fits_later_modules_on_steered_activations(tiny_lm, estimation):
    method, (first, second) = _fit(tiny_lm, estimation)
    earlier = {first: method.maps()[first]} if estimation == "incremental" else None
    acts = pooled_activations(tiny_lm, [*TOXIC, *KIND], [second], steering=earlier, progress=False)[second]
    expected = method.fit_module(acts[: len(TOXIC)], acts[len(TOXIC):])
    for key, value in expected.items():
        torch.testing.assert_close(method.state[second][key], value)
    # and the two estimation modes really differ at the second module
    other, _ = _fit(tiny_lm, "at-once" if estimation == "incremental" else "incremental")
    assert not torch.allclose(method.state[second]["omega"], other.state[second]["omega"])


def test_save_load_reproduces_outputs_and_checks_hidden_size(tiny_lm, tmp_path):
    method, _ = _fit(tiny_lm, "incremental")
    h = torch.randn(4, tiny_lm.hidden_size)
    loaded = SteeringMethod.load(method.save(tmp_path / "state.pt"), tiny_lm)
    for name, steering_map in method.maps().items():
        assert torch.equal(steering_map(h), loaded.maps()[name](h))
    other = LoadedModel(model=tiny_lm.model, tokenizer=tiny_lm.tokenizer, name=tiny_lm.name)
    other.model.config.hidden_size = 64
    try:
        with pytest.raises(UsageError, match="hidden size 32"):
            SteeringMethod.load(tmp_path / "state.pt", other)
    finally:
        other.model.config.hidden_size = 32


def test_unknown_option_is_an_error():
    with pytest.raises(UsageError, match="no option"):
        get_method("linacts")(strenght=2)
