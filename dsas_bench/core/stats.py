"""Uncertainty of a mean over prompts: the seeded percentile bootstrap every row reports."""

from __future__ import annotations

import numpy as np

_BOOT_CELLS = 4_000_000  # resample indices drawn at once, to bound memory on large prompt sets


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """Percentile 95% interval of the mean of ``values`` over prompts resampled with replacement.

    ``scipy.stats.bootstrap`` (percentile method, ``np.random.default_rng(seed)``, resamples drawn in
    batches of ``_BOOT_CELLS // n``); one prompt gives a zero-width interval.
    """
    from scipy.stats import bootstrap  # scipy.stats takes a second to import: not on the CLI's start-up path

    if len(values) < 2:
        return [float(values.mean())] * 2
    result = bootstrap((values,), np.mean, n_resamples=n_boot, batch=max(1, _BOOT_CELLS // len(values)),
                       method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]
