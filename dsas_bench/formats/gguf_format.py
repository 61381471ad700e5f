"""llama.cpp / repeng control vectors: a GGUF file with one ``direction.N`` tensor per steered layer.

Layout (repeng's ``ControlVector.export_gguf``, read by llama.cpp's ``--control-vector``):
``general.architecture = "controlvector"``, ``controlvector.model_hint`` (the model type, e.g.
``llama``), ``controlvector.layer_count`` (the number of directions) and float32 tensors
``direction.N`` of the hidden size. N is the 0-based index of the decoder layer whose *output*
the direction is added to (HF ``model.layers.N``; llama.cpp adds ``direction.N`` after its layer
N and has no slot for layer 0, so an export refuses layer 0). Only constant shifts at decoder-layer
outputs have this form.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from torch import Tensor

from dsas_bench.core.errors import UsageError
from dsas_bench.formats import atomic_file, decoder_layers, model_skeleton
from dsas_bench.methods.base import SteeringMethod

ARCH = "controlvector"
FORMAT_NAME = "gguf-control-vector"


def write_control_vector(method: SteeringMethod, shifts: dict[str, Tensor], out: str | Path) -> Path:
    """Write the constant ``shifts`` (module → v) of ``method`` as a control vector, atomically."""
    model = model_skeleton(method.model_name)
    index = {name: layer for layer, name in enumerate(decoder_layers(model))}
    outside = [module for module in shifts if module not in index]
    if outside:
        raise UsageError(f"{FORMAT_NAME} steers decoder-layer outputs only, but {method.name} steers {outside[0]}: "
                         "refit it with --modules layers, or use --format lm-eval-steered or safetensors")
    if any(index[module] == 0 for module in shifts):
        raise UsageError(f"{FORMAT_NAME}: llama.cpp has no control vector slot for decoder layer 0 (direction.0 is "
                         f"refused), which {method.name} steers: refit it on a later layer (e.g. --method-option "
                         "layer=1), or use --format lm-eval-steered or safetensors")
    with atomic_file(out) as tmp:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_string(f"{ARCH}.model_hint", model.config.model_type)
        writer.add_uint32(f"{ARCH}.layer_count", len(shifts))
        for module, vector in sorted(shifts.items(), key=lambda item: index[item[0]]):
            writer.add_tensor(f"direction.{index[module]}", vector.detach().cpu().float().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out)


def read_control_vector(path: Path) -> dict[int, np.ndarray]:
    """Layer → direction of a control-vector GGUF (as repeng's ``import_gguf`` reads it)."""
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as error:
        raise UsageError(f"{path} is not a readable GGUF file: {error}") from error
    field = reader.get_field("general.architecture")
    if field is None or field.contents() != ARCH:
        raise UsageError(f"{path} is a GGUF file but not a control vector (architecture "
                         f"{field and field.contents()!r}, not {ARCH!r}): give a control vector, not a model")
    directions = {}
    for tensor in reader.tensors:
        prefix, _, layer = tensor.name.partition(".")
        if prefix == "direction":
            if not layer.isdigit():
                raise UsageError(f"{path} has a tensor {tensor.name!r}: control-vector tensors are direction.N")
            directions[int(layer)] = np.array(tensor.data, dtype=np.float32).reshape(-1)  # a copy
    if not directions:
        raise UsageError(f"{path} is a control vector without direction.N tensors: it steers nothing")
    return directions
