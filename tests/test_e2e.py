"""E2E-DSAS on the tiny model: joint training, state round-trip, generation, the control penalty."""

from pathlib import Path

import pytest
import torch

import dsas_bench
from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.hooks import steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.scalers import fit_scaler, load_scaler
from dsas_bench.scalers.dsas import LinearScaler

DEMO = Path(dsas_bench.__file__).parent / "data" / "demo"
NEUTRAL = DEMO.joinpath("neutral.txt").read_text().splitlines()
SETS = FitSets(DEMO.joinpath("toxic.txt").read_text().splitlines()[:16],
               DEMO.joinpath("nontoxic.txt").read_text().splitlines()[:16], NEUTRAL[:16])
HELD_OUT = NEUTRAL[16:40]


@pytest.fixture(scope="module")
def modules(tiny_lm) -> list[str]:
    return select_modules(tiny_lm.model, "post-attn-norm")


def train(lm, modules, **options) -> tuple[SteeringMethod, LinearScaler]:
    method = get_method("lineas")(steps=25, optimizer="adam", lr=0.05)
    return method, fit_scaler("e2e", lm, method, modules, SETS, **options)


def control_change(lm, method: SteeringMethod, scaler: LinearScaler, modules: list[str]) -> float:
    """Mean over modules and held-out neutral sentences of ‖pooled steered − pooled unsteered‖²."""
    steered = pooled_activations(lm, HELD_OUT, modules, steering=method.maps(), scaler=scaler, progress=False)
    plain = pooled_activations(lm, HELD_OUT, modules, progress=False)
    return float(torch.stack([(steered[m] - plain[m]).pow(2).sum(1).mean() for m in modules]).mean())


@pytest.mark.parametrize("gate", ["sigmoid", "relu"])
def test_e2e_trains_saves_loads_and_generates(tiny_lm, modules, tmp_path, gate):
    method, scaler = train(tiny_lm, modules, gate=gate)
    assert len(method.losses) == 25 and any((p["omega"] != 1).any() for p in method.state.values())
    assert scaler.u.abs().sum() > 0 and not scaler.u.requires_grad
    assert scaler.options["gate"] == gate and scaler.name == "e2e"
    loaded_method = SteeringMethod.load(method.save(tmp_path / "lineas.pt"), tiny_lm)
    loaded_scaler = load_scaler(scaler.save(tmp_path / "scaler.pt"), tiny_lm)
    batch = tiny_lm.tokenizer(SETS.source[:3], return_tensors="pt", padding=True)
    outputs = []
    for steering, scales in ((method, scaler), (loaded_method, loaded_scaler)):
        with steer(tiny_lm.model, steering.maps(), 1.0, scales):
            outputs.append(tiny_lm.model.generate(**batch, max_new_tokens=8, do_sample=False))
    assert torch.equal(outputs[0], outputs[1])


def test_control_penalty_keeps_neutral_activations(tiny_lm, modules):
    trained = {beta: train(tiny_lm, modules, beta=beta) for beta in (0.0, 1.0)}
    assert trained[0.0][0].losses[-1] < 0.5 * trained[0.0][0].losses[0]  # without the penalty: plain LinEAS loss
    changes = {beta: control_change(tiny_lm, *pair, modules) for beta, pair in trained.items()}
    assert changes[1.0] < 0.5 * changes[0.0], changes
