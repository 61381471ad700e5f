"""DSAS, the CAST gate and LinEAS on the real SmolLM2 and real RealToxicityPrompts prompts (slow).

Toxic: "challenging" prompts with Perspective toxicity ≥ 0.5; neutral: the non-toxic prompts. The
loaders' seeded shuffles make the splits fixed; fitted and held-out sentences never overlap.
"""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.data import load_prompts
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets
from dsas_bench.methods.lineas import sorted_w2
from dsas_bench.methods.maps import ShiftMap
from dsas_bench.scalers import fit_scaler

pytestmark = pytest.mark.slow


@pytest.fixture
def prompts(shared_data) -> tuple[list[str], list[str]]:
    """(toxic, neutral) prompt texts in the loaders' seeded order."""
    toxic = load_prompts(shared_data / "rtp" / "challenging_dev.jsonl", toxicity="high")
    neutral = load_prompts(shared_data / "rtp" / "nontoxic.jsonl")
    return [p.text for p in toxic], [p.text for p in neutral]


@pytest.fixture
def modules(smollm2) -> list[str]:
    return select_modules(smollm2.model, "post-attn-norm")


def mean_scales(lm, scaler, modules: list[str], texts: list[str]) -> np.ndarray:
    """Per text: the scale averaged over its real tokens and the scaler's active modules (λ = 0 maps)."""
    zero = {name: ShiftMap(torch.zeros(lm.hidden_size)) for name in modules}
    active = [name for name, mode in zip(scaler.module_names, scaler.modes, strict=True) if mode == "on"]
    means = []
    for start in range(0, len(texts), 20):
        chunk = texts[start:start + 20]
        with scaler.recording():
            pooled_activations(lm, chunk, modules, steering=zero, scaler=scaler, batch_size=len(chunk), progress=False)
        recorded = scaler.token_scales()
        scales = torch.stack([recorded[name] for name in active]).mean(0)
        mask = lm.tokenizer(chunk, return_tensors="pt", padding=True)["attention_mask"].float()
        means += ((scales * mask).sum(1) / mask.sum(1)).tolist()
    return np.array(means)


def test_dsas_scale_separates_held_out_toxic_from_neutral(smollm2, prompts, modules):
    toxic, neutral = prompts
    sets = FitSets(toxic[60:92], neutral[92:124], neutral[60:92])
    scaler = fit_scaler("on", smollm2, None, modules, sets)
    scores = mean_scales(smollm2, scaler, modules, toxic[:60] + neutral[:60])
    auc = roc_auc_score(np.r_[np.ones(60), np.zeros(60)], scores)
    gated = len(scaler.diagnostics["gated"])
    strict = fit_scaler("on", smollm2, None, modules, sets, threshold=0.99)  # activations come from the cache
    print(f"\nDSAS ROC-AUC {auc:.3f}; gated at 0.75: {gated}/{len(modules)}, "
          f"at 0.99: {len(strict.diagnostics['gated'])}/{len(modules)}")
    assert auc >= 0.8
    assert len(strict.diagnostics["gated"]) >= max(1, gated + 1)
    assert all(strict.modes[modules.index(name)] == "off" for name in strict.diagnostics["gated"])


def test_cast_gate_steers_toxic_prompts_and_spares_neutral_ones(smollm2, prompts, modules):
    """Threshold on a validation split of the fit sentences; rates on held-out prompts.

    Deciding at the first post-attention norm (layer 0, the default) sees little more than the
    prompt's words and falls short of ≤ 10% / ≥ 90%; a fifth of the way down (``decide_at``) it meets them.
    """
    toxic, neutral = prompts
    sets = FitSets(toxic[:300], neutral[300:600], neutral[:300])
    held_toxic, held_neutral = toxic[-100:], neutral[-100:]
    rates = {}
    for decide_at in (0, len(modules) // 5):
        gate = fit_scaler("cast", smollm2, None, modules, sets, decide_at=decide_at)
        zero = {gate.module: ShiftMap(torch.zeros(smollm2.hidden_size))}
        with gate.recording() as records:
            pooled_activations(smollm2, held_toxic + held_neutral, [gate.module], steering=zero, scaler=gate,
                               batch_size=25, progress=False)
        steered = torch.cat([part[:, 0] for part in records[gate.module]])
        rates[decide_at] = (float(steered[:100].mean()), float(steered[100:].mean()))
        print(f"\nCAST gate at {gate.module}: steers {rates[decide_at][0]:.0%} of held-out toxic prompts, "
              f"{rates[decide_at][1]:.0%} of neutral ones (validation: {gate.diagnostics})")
    assert rates[0][0] >= 0.8 and rates[0][1] <= 0.25
    later = rates[len(modules) // 5]
    assert later[0] >= 0.9 and later[1] <= 0.1


def test_lineas_halves_the_held_out_distance(smollm2, prompts, modules):
    toxic, neutral = prompts
    hooked = modules[3:6]
    method = get_method("lineas")(steps=40, optimizer="adam", lr=0.01, sample_size=16)
    method.fit(smollm2, hooked, FitSets(toxic[160:320], neutral[160:320]))
    assert np.mean(method.losses[-5:]) < np.mean(method.losses[:5])
    target = pooled_activations(smollm2, neutral[:160], hooked, batch_size=40, progress=False)
    before = pooled_activations(smollm2, toxic[:160], hooked, batch_size=40, progress=False)
    after = pooled_activations(smollm2, toxic[:160], hooked, steering=method.maps(), batch_size=40, progress=False)
    distance = {name: (float(sorted_w2(before[name], target[name])), float(sorted_w2(after[name], target[name])))
                for name in hooked}
    print(f"\nLinEAS held-out sorted W2 (identity -> trained): {distance}")
    assert sum(d[1] for d in distance.values()) <= 0.5 * sum(d[0] for d in distance.values())
