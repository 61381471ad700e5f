"""The DSAS scaler and the CAST gate on the tiny model: exactness, KV cache, padding, recording, state."""

from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import PROMPTS, demo_lines, fitted, logits

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import HookManager, steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import METHODS, get_method, method_names, register_method
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.maps import ShiftMap
from dsas_bench.scalers import fit_scaler, load_scaler, scaler_names
from dsas_bench.scalers.cast import CastGate
from dsas_bench.scalers.dsas import DSAS, LinearScaler, fold, make_probe


@pytest.fixture(scope="module")
def sets() -> FitSets:
    return FitSets(demo_lines("toxic.txt", 24), demo_lines("nontoxic.txt", 24), demo_lines("neutral.txt", 24))


@pytest.fixture(scope="module")
def modules(tiny_lm) -> list[str]:
    return select_modules(tiny_lm.model, "post-attn-norm")


def generate(lm, prompts, maps, scaler, use_cache=True, n=6) -> list[list[int]]:
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    with steer(lm.model, maps, 1.0, scaler):
        out = lm.model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=use_cache)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def constant(modules: list[str], d: int, value: float, via: str) -> LinearScaler:
    """s ≡ value through the formula (u = 0, c = ±inf: σ is exactly 0 or 1) or through the per-module modes."""
    n = len(modules)
    if via == "formula":
        return DSAS(modules, torch.zeros(n, d), torch.full((n,), float("inf") if value else -float("inf")))
    return DSAS(modules, torch.zeros(n, d), torch.zeros(n), ["full" if value else "off"] * n)


class PluginShift(SteeringMethod):
    """A method as another package would register it, knowing nothing of DSAS."""

    def fit(self, lm, modules, data, batch_size=16):
        self._bind(lm)
        source, target = (self.activations(lm, texts, modules, progress=False) for texts in (data.source, data.target))
        self.state = {name: {"v": target[name].mean(0) - source[name].mean(0)} for name in modules}
        return self

    def make_map(self, params):
        return ShiftMap(params["v"])


@pytest.fixture
def plugin() -> Iterator[str]:
    register_method("plugin-shift")(PluginShift)
    yield "plugin-shift"
    METHODS.remove("plugin-shift")


@pytest.mark.parametrize("via", ["formula", "modes"])
def test_scale_one_is_the_method_and_zero_is_the_model_for_every_method(tiny_lm, sets, plugin, via):
    plain = logits(tiny_lm)
    for name in (name for name in method_names() if not get_method(name).imported_only):
        method, chosen = fitted(tiny_lm, name, sets)
        maps = method.maps()
        steered = logits(tiny_lm, maps)
        assert not torch.allclose(steered, plain), name
        assert torch.equal(logits(tiny_lm, maps, constant(chosen, tiny_lm.hidden_size, 1, via)), steered), name
        assert torch.equal(logits(tiny_lm, maps, constant(chosen, tiny_lm.hidden_size, 0, via)), plain), name
    assert plugin in method_names()


@pytest.fixture(scope="module")
def running_mean(tiny_lm, modules, sets) -> LinearScaler:
    return fit_scaler("on", tiny_lm, None, modules, sets, n_components=3, threshold=0.0, context="running-mean")


@pytest.fixture(scope="module")
def shift_maps(tiny_lm, modules) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {name: ShiftMap(3 * torch.randn(tiny_lm.hidden_size, generator=generator)) for name in modules}


def test_running_mean_is_the_same_with_and_without_kv_cache(tiny_lm, running_mean, shift_maps):
    with running_mean.recording():
        cached = generate(tiny_lm, PROMPTS, shift_maps, running_mean, use_cache=True)
    with_cache = running_mean.token_scales()
    with running_mean.recording() as records:
        uncached = generate(tiny_lm, PROMPTS, shift_maps, running_mean, use_cache=False)
    assert cached == uncached
    for name, scales in with_cache.items():
        assert len(records[name]) == 6 and records[name][0].shape[1] < scales.shape[1]
        torch.testing.assert_close(scales, records[name][-1], rtol=1e-5, atol=1e-6)  # last pass holds every position
        assert scales.std() > 0.01  # the scales really vary


def test_running_mean_in_a_left_padded_batch_equals_one_at_a_time(tiny_lm, running_mean, shift_maps):
    with running_mean.recording():
        batched = generate(tiny_lm, PROMPTS, shift_maps, running_mean)
    together = running_mean.token_scales()
    for i, prompt in enumerate(PROMPTS):
        with running_mean.recording():
            assert generate(tiny_lm, [prompt], shift_maps, running_mean)[0] == batched[i]
        for name, alone in running_mean.token_scales().items():
            torch.testing.assert_close(together[name][i, -alone.shape[1]:], alone[0], rtol=1e-5, atol=1e-6)


def test_recording_is_off_by_default_and_records_per_pass(tiny_lm, running_mean, shift_maps, modules):
    running_mean.records = {}
    logits(tiny_lm, shift_maps, running_mean)
    assert running_mean.records == {}
    with running_mean.recording() as records:
        scores = logits(tiny_lm, shift_maps, running_mean)
    assert set(records) == set(modules)
    assert all(len(parts) == 1 and parts[0].shape == scores.shape[:2] for parts in records.values())
    assert all(((parts[0] >= 0) & (parts[0] <= 1)).all() for parts in records.values())


def test_fold_equals_the_probe():
    generator = np.random.default_rng(0)
    x = np.r_[generator.normal(0, 1, (60, 20)), generator.normal(0.5, 1.5, (60, 20))]
    y = np.r_[np.zeros(60), np.ones(60)]
    for n_components in (5, None):
        probe = make_probe(n_components, seed=0).fit(x, y)
        u, c = fold(probe, 20)
        probability = torch.sigmoid(torch.from_numpy(x).float() @ u + c)
        np.testing.assert_allclose(probability.numpy(), probe.predict_proba(x)[:, 1], rtol=1e-4, atol=1e-5)


def test_dsas_probe_is_unwhitened_by_default_and_whitening_is_a_recorded_option(tiny_lm, modules, sets):
    """METHODS.md §3: centre, PCA, logistic regression; with its L2 penalty, whitening changes the probe."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from dsas_bench.core.activations import pooled_activations

    plain = fit_scaler("on", tiny_lm, None, modules, sets, n_components=3, threshold=0.0)
    whitened = fit_scaler("on", tiny_lm, None, modules, sets, n_components=3, threshold=0.0, whiten=True)
    assert plain.options["whiten"] is False and whitened.options["whiten"] is True
    texts, labels = [*sets.source, *sets.control], np.r_[np.ones(len(sets.source)), np.zeros(len(sets.control))]
    acts = pooled_activations(tiny_lm, texts, modules, progress=False)
    for i, name in enumerate(modules):
        x = acts[name].double().numpy()
        by_hand = make_pipeline(PCA(3, random_state=0), LogisticRegression(max_iter=1000)).fit(x, labels)
        u, c = fold(by_hand, tiny_lm.hidden_size)
        torch.testing.assert_close(plain.u[i], u, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain.c[i], c, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(whitened.u[i], u, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("policy", ["off", "full"])
def test_weak_layers_follow_the_policy(tiny_lm, modules, sets, policy):
    scaler = fit_scaler("on", tiny_lm, None, modules, sets, n_components=3, threshold=1.01, policy=policy)
    assert scaler.modes == [policy] * len(modules) and scaler.diagnostics["gated"] == modules
    assert set(scaler.diagnostics["accuracy"]) == set(modules)
    assert scaler.options["policy"] == policy and scaler.options["n_components"] == 3
    h = torch.randn(2, 5, tiny_lm.hidden_size)
    assert torch.equal(scaler(modules[0], h, HookManager(tiny_lm.model).context),
                       torch.full((2, 5, 1), float(policy == "full")))


def test_save_load_round_trip_and_hidden_size_check(tiny_lm, running_mean, modules, sets, tmp_path):
    gate = fit_scaler("cast", tiny_lm, None, modules, sets)
    for scaler in (running_mean, gate):
        path = scaler.save(tmp_path / f"{scaler.name}.pt")
        loaded = load_scaler(path, tiny_lm)
        assert type(loaded) is type(scaler) and loaded.options == scaler.options
        assert loaded.diagnostics == scaler.diagnostics
        with scaler.recording(), loaded.recording():
            logits(tiny_lm, {name: ShiftMap(torch.ones(tiny_lm.hidden_size)) for name in modules}, scaler)
            logits(tiny_lm, {name: ShiftMap(torch.ones(tiny_lm.hidden_size)) for name in modules}, loaded)
        for name in modules:
            assert torch.equal(scaler.records[name][0], loaded.records[name][0])
        other = SimpleNamespace(hidden_size=64, name=tiny_lm.name, device=tiny_lm.device)
        with pytest.raises(UsageError, match="hidden size 32"):
            load_scaler(path, other)
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="not a dsas_bench scaler"):
        load_scaler(tmp_path / "other.pt")


def test_fit_scaler_rejects_bad_input(tiny_lm, modules, sets):
    linacts = get_method("linacts")()
    assert fit_scaler("off", tiny_lm, linacts, modules, sets) is None
    with pytest.raises(UsageError, match=", ".join(scaler_names())):
        fit_scaler("sometimes", tiny_lm, linacts, modules, sets)
    with pytest.raises(UsageError, match="lineas"):
        fit_scaler("e2e", tiny_lm, linacts, modules, sets)
    with pytest.raises(UsageError, match="no option treshold"):
        fit_scaler("on", tiny_lm, linacts, modules, sets, treshold=0.5)
    with pytest.raises(UsageError, match="control"):
        fit_scaler("on", tiny_lm, linacts, modules, FitSets(sets.source, sets.target))
    with pytest.raises(UsageError, match="running-mean"):
        fit_scaler("on", tiny_lm, linacts, modules, sets, context="prefix")
    with pytest.raises(UsageError, match="n_components"):
        fit_scaler("on", tiny_lm, linacts, modules, sets, n_components=500)


def test_cast_gate_decides_once_per_sequence_from_the_prompt(tiny_lm, modules, sets, shift_maps):
    gate = fit_scaler("cast", tiny_lm, None, modules, sets, threshold=0.5)
    assert isinstance(gate, CastGate) and gate.module == modules[0]
    prompts = [*sets.source[:4], *sets.control[:4]]
    manager = HookManager(tiny_lm.model)
    capture = manager.capture([gate.module])
    with manager, torch.no_grad():
        tiny_lm.model(**tiny_lm.tokenizer(prompts, return_tensors="pt", padding=True))
    expected = (capture.stacked()[gate.module] @ gate.u + gate.c > gate.cut).float()
    assert 0 < expected.sum() < len(prompts)  # some prompts steered, some not
    with gate.recording():
        generate(tiny_lm, prompts, shift_maps, gate)
    for scales in gate.token_scales().values():
        assert scales.shape[1] > 10  # prompt and cached decoding steps
        assert torch.equal(scales, expected[:, None].expand_as(scales))
    with gate.recording():  # the next new sequence takes a new decision
        generate(tiny_lm, prompts[::-1], shift_maps, gate)
    assert torch.equal(gate.token_scales()[modules[1]][:, 0], expected.flip(0))
    with pytest.raises(UsageError, match="decides at"):  # its module not steered: no decision to apply
        logits(tiny_lm, {modules[1]: shift_maps[modules[1]]}, CastGate(modules[0], gate.u, gate.c, gate.cut))


def test_cast_gate_deciding_later_leaves_earlier_modules_off_for_the_prompt(tiny_lm, modules, sets, shift_maps):
    gate = fit_scaler("cast", tiny_lm, None, modules, sets, threshold=0.5, decide_at=1)
    assert gate.module == modules[1] and gate.before == modules[:1]
    prompts = [*sets.source[:4], *sets.control[:4]]
    with gate.recording() as records:
        generate(tiny_lm, prompts, shift_maps, gate)
    decision = records[modules[1]][0][:, :1]
    assert 0 < decision.sum() < len(prompts)
    assert not records[modules[0]][0].any()  # the prompt pass: the earlier module waits for the decision
    for name in modules:
        assert all(torch.equal(step, decision) for step in records[name][1:])  # every generated token


def test_layer_gate_keeps_the_layers_dsas_keeps_at_full_strength(tiny_lm, modules, sets):
    accuracy = fit_scaler("on", tiny_lm, None, modules, sets, n_components=3, threshold=0.0).diagnostics["accuracy"]
    low, high = sorted(accuracy.values())
    threshold = (low + high) / 2 if low < high else low  # one layer kept and one gated, when they differ
    dsas = fit_scaler("on", tiny_lm, None, modules, sets, n_components=3, threshold=threshold)
    gate = fit_scaler("gate", tiny_lm, None, modules, sets, n_components=3, threshold=threshold)
    assert gate.diagnostics == dsas.diagnostics and dsas.diagnostics["gated"] != modules
    h = torch.randn(2, 5, tiny_lm.hidden_size)
    context = HookManager(tiny_lm.model).context
    for name, mode in zip(modules, dsas.modes, strict=True):
        expected = torch.full((2, 5, 1), 1.0 if mode == "on" else 0.0)
        assert torch.equal(gate(name, h, context), expected), name
        if mode == "on":  # DSAS itself scales each token by its probe
            assert not torch.equal(dsas(name, h, context), expected)
