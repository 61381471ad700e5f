"""``--strengths auto``: find the strength λ_max at which a fitted intervention uses up the utility budget.

The utility cost is the perplexity of a few neutral calibration texts (disjoint from the perplexity
and control texts) under the steered model. From the method's paper range (its top strength) the
search grows or shrinks λ geometrically (×4) until the budget is bracketed, then bisects until the
perplexity increase is within ``TOLERANCE`` of the budget's. Each probe is one pass over the texts.
The sweep then spreads its strengths over (0, λ_max] (``strengths.spaced``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from dsas_bench.core.hooks import Scaler, steer
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import SteeringMethod
from dsas_bench.run.strengths import Budget
from dsas_bench.utility.perplexity import perplexity

GROWTH = 4.0  # bracketing step: λ multiplied or divided by this
MAX_GROWTH = GROWTH ** 5  # never probe beyond this multiple of the starting λ
MAX_PROBES = 16
TOLERANCE = 0.05  # accept λ once its perplexity increase is within 5 % of the budget's


def find_lambda_max(measure: Callable[[float], float], unsteered: float, budget: Budget, start: float, *,
                    max_probes: int = MAX_PROBES, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """λ_max with ``measure(λ_max)`` ≈ ``unsteered`` + the budget; the probes and whether it was reached.

    ``measure(λ)`` is the steered perplexity. If the budget is never used up below ``MAX_GROWTH`` ×
    ``start`` (e.g. a scaler that gates every token off), λ_max is the largest probe, ``reached`` False;
    if the probe budget runs out first, λ_max is the largest probe within the budget.
    """
    limit = unsteered + budget.delta(unsteered)
    probes: list[list[float]] = []
    low, high, strength = 0.0, math.inf, start
    while len(probes) < max_probes:
        value = measure(strength)
        probes.append([strength, value])
        if math.isfinite(value) and abs(value - limit) <= tolerance * (limit - unsteered):
            return _record(strength, probes, unsteered, limit, budget, reached=True)
        if math.isfinite(value) and value < limit:
            low = strength
        else:
            high = strength
        if high == math.inf:
            if strength * GROWTH > start * MAX_GROWTH:
                break
            strength *= GROWTH
        elif low == 0.0:
            strength /= GROWTH
        elif high - low <= 1e-4 * high:
            break
        else:
            strength = (low + high) / 2
    best = low if low > 0 else min(p[0] for p in probes)
    return _record(best, probes, unsteered, limit, budget, reached=False)


def _record(strength: float, probes: list[list[float]], unsteered: float, limit: float, budget: Budget,
            reached: bool) -> dict[str, Any]:
    return {"lambda_max": strength, "budget": str(budget), "unsteered_perplexity": unsteered,
            "perplexity_limit": limit, "reached": reached, "probes": probes}


def calibrate(lm: LoadedModel, steering: SteeringMethod, scaler: Scaler | None, texts: Sequence[str],
              budget: Budget, *, max_tokens: int, batch_size: int) -> dict[str, Any]:
    """``find_lambda_max`` for a fitted method and scaler on ``texts``, started at the top of its paper range."""

    def measure(strength: float) -> float:
        with steer(lm.model, maps, strength, scaler):
            return perplexity(lm, texts, max_tokens=max_tokens, batch_size=batch_size, progress=False)

    maps = steering.maps(lm.device)
    unsteered = perplexity(lm, texts, max_tokens=max_tokens, batch_size=batch_size, progress=False)
    record = find_lambda_max(measure, unsteered, budget, max(steering.strength_range))
    return {**record, "n_texts": len(texts)}
