"""``dsas-bench export INTERVENTION --format F --out PATH``: a fitted intervention in a format other tools load."""

from __future__ import annotations

from pathlib import Path

from dsas_bench.core.errors import UsageError
from dsas_bench.formats import constant_shifts
from dsas_bench.formats.gguf_format import write_control_vector
from dsas_bench.formats.safetensors_format import write_safetensors
from dsas_bench.interop import EXPORT_FORMATS
from dsas_bench.interop.intervention import load_any
from dsas_bench.interop.lmeval_steered import write_lm_eval_steered

SHIFT_WRITERS = {"gguf-control-vector": write_control_vector, "lm-eval-steered": write_lm_eval_steered}


def export_intervention(intervention: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the intervention at ``intervention`` (a run's folder or a saved file) to ``out`` as ``fmt``."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    method, scaler = load_any(intervention)
    if fmt == "safetensors":
        return write_safetensors(method, scaler, out)
    shifts = constant_shifts(method, scaler is not None, fmt)
    return SHIFT_WRITERS[fmt](method, shifts, out)
