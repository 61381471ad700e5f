"""Layer selection alone (``--dsas gate``): DSAS's probe-accuracy gate, steering kept layers at full strength.

The "discriminative layer selection" baseline of the steering literature: the modules whose DSAS
probe passes the accuracy threshold steer every token with s ≡ 1, the others follow the weak-layer
policy (s ≡ 0 by default). Set beside ``on``, it shows what DSAS's per-token scale adds over
choosing layers.
"""

from __future__ import annotations

from dsas_bench.scalers.dsas import DSAS


class LayerGate(DSAS):
    """DSAS's fitted gate with s ≡ 1 on every module it keeps."""

    label = "layer gate"

    @staticmethod
    def kept_modes(modes: list[str]) -> list[str]:
        return ["full" if mode == "on" else mode for mode in modes]
