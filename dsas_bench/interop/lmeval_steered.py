"""The ``.pt`` that lm-eval's own ``--model steered --model_args steer_path=…`` reads (lm_eval/models/hf_steered.py).

``{hookpoint: {"steering_vector", "steering_coefficient", "action": "add", "bias": None,
"head_index": None}}``: lm-eval adds ``coefficient · vector`` to the output of each hookpoint, a
module name relative to the model's ``base_model`` (``layers.3``, not ``model.layers.3``), at
every position. Only constant shifts have this form; the coefficient is 1 (λ = 1).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dsas_bench.core.errors import UsageError
from dsas_bench.formats import atomic_file, model_skeleton
from dsas_bench.methods.base import SteeringMethod

FORMAT_NAME = "lm-eval-steered"


def write_lm_eval_steered(method: SteeringMethod, shifts: dict[str, Tensor], out: str | Path) -> Path:
    """Write the constant ``shifts`` (module → v) of ``method`` as lm-eval's steer file, atomically."""
    if Path(out).suffix not in {".pt", ".pth"}:
        raise UsageError(f"lm-eval reads a steer_path ending in .pt or .pth, not {Path(out).name!r}: name --out *.pt")
    model = model_skeleton(method.model_name)
    modules = dict(model.named_modules())
    inner = {id(module): name for name, module in model.base_model.named_modules()}
    outside = [name for name in shifts if id(modules.get(name)) not in inner]
    if outside:
        raise UsageError(f"lm-eval's steered model hooks modules of the base model only, and {outside[0]} is not one "
                         f"of {method.model_name!r}: use --format safetensors")
    config = {inner[id(modules[name])]: {"steering_vector": vector.detach().cpu().float(), "steering_coefficient": 1.0,
                                          "action": "add", "bias": None, "head_index": None}
              for name, vector in shifts.items()}
    with atomic_file(out) as tmp:
        torch.save(config, tmp)
    return Path(out)
