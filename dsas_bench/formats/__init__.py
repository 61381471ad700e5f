"""Every format ``--intervention`` accepts, read into the saved-state dict ``SteeringMethod.from_saved`` checks.

dsas_bench's own ``.pt``; a ``.safetensors`` export; a llama.cpp / repeng GGUF control vector
(``.gguf``); the layer activations of a ``steering-vectors`` ``SteeringVector`` saved with
``torch.save`` (``{layer: tensor}``, or ``{"layer_activations": …, "layer_type": …}``). Vectors made
by other tools name layers by number, so reading them needs the model; they become a state of the
``shift`` method bound to that model.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsas_bench.core.activations import checked_state, read_torch
from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel, model_source
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import STATE_FORMAT, SteeringMethod
from dsas_bench.methods.maps import ShiftMap, SupportedAffineMap

# steering-vectors' layer types: the decoder block's output, or one of its sub-modules (Llama-style names)
STEERING_VECTORS_LAYER_TYPES = ("decoder_block", "self_attn", "mlp", "input_layernorm", "post_attention_layernorm")


def load_method(path: str | Path, lm: LoadedModel | None = None) -> SteeringMethod:
    """The steering method saved at ``path`` in any accepted format; with ``lm``, checked against it."""
    return SteeringMethod.from_saved(read_state(path, lm), path, lm)


def read_state(path: str | Path, lm: LoadedModel | None = None) -> dict[str, Any]:
    """The saved-state dict of ``path``, by format; a UsageError for a file of none of them."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from dsas_bench.formats.safetensors_format import read_safetensors

        return read_safetensors(path)[0]
    if path.suffix == ".gguf":
        from dsas_bench.formats.gguf_format import read_control_vector

        return imported_state(read_control_vector(path), "gguf-control-vector", path, lm)
    saved = read_torch(path, "steering state")
    layers = steering_vector_layers(saved)
    if layers is None:
        return checked_state(saved, path, STATE_FORMAT, "steering state")
    vectors, layer_type = layers
    return imported_state(vectors, "steering-vectors", path, lm, "" if layer_type == "decoder_block" else layer_type)


def steering_vector_layers(saved: object) -> tuple[dict[int, Tensor], str] | None:
    """(layer → vector, layer type) of a saved ``SteeringVector``, or None for anything else."""
    layer_type = "decoder_block"
    if isinstance(saved, Mapping) and "layer_activations" in saved:
        saved, layer_type = saved["layer_activations"], saved.get("layer_type", layer_type)
    if not (isinstance(saved, Mapping) and saved and all(isinstance(k, int) and isinstance(v, Tensor)
                                                         for k, v in saved.items())):
        return None
    if layer_type not in STEERING_VECTORS_LAYER_TYPES:
        raise UsageError(f"steering-vectors layer type {layer_type!r} is not one dsas_bench can place: use one of "
                         f"{', '.join(STEERING_VECTORS_LAYER_TYPES)}")
    return dict(saved), layer_type


def decoder_layers(model: nn.Module) -> list[str]:
    """The decoder layers' module names in order (the ``layers`` preset): layer N of other tools is the Nth."""
    return select_modules(model, "layers")


def imported_state(vectors: Mapping[int, Any], source: str, path: Path, lm: LoadedModel | None,
                   submodule: str = "") -> dict[str, Any]:
    """A ``shift`` state adding ``vectors[N]`` to the output of decoder layer N (or its ``submodule``) of ``lm``."""
    if lm is None:
        raise UsageError(f"{path} ({source}) names layers by number, not modules: it can only be read for a model "
                         "(give --model, or use it with --intervention on a run)")
    layers = decoder_layers(lm.model)
    outside = sorted(set(vectors) - set(range(len(layers))))
    if outside:
        raise UsageError(f"{path} steers layer(s) {', '.join(map(str, outside))}, but model {lm.name!r} has "
                         f"{len(layers)} decoder layers (0–{len(layers) - 1}): use the model it was made for")
    tensors = {layer: torch.as_tensor(vector).float().reshape(-1) for layer, vector in sorted(vectors.items())}
    widths = sorted({len(vector) for vector in tensors.values()})
    if widths != [lm.hidden_size]:
        raise UsageError(f"{path} holds vectors of size {', '.join(map(str, widths))}, but model {lm.name!r} has "
                         f"hidden size {lm.hidden_size}: use the model they were made for")
    modules = {layer: f"{layers[layer]}.{submodule}" if submodule else layers[layer] for layer in tensors}
    missing = [name for name in modules.values() if name not in dict(lm.model.named_modules())]
    if missing:
        raise UsageError(f"model {lm.name!r} has no module {missing[0]!r} for {path}: use a Llama-style model")
    shift = get_method("shift")
    return {"format": STATE_FORMAT, "method": shift.name, "version": shift.state_version,
            "options": {"source": source}, "hidden_size": lm.hidden_size, "model": lm.name,
            "state": {modules[layer]: {"v": vector} for layer, vector in tensors.items()}}


def constant_shifts(method: SteeringMethod, has_scaler: bool, target: str) -> dict[str, Tensor]:
    """Module → v for an intervention that adds one constant vector per module, or a UsageError saying why not."""
    if has_scaler:
        raise UsageError(f"{target} holds constant vectors only, and this intervention has a DSAS scaler, which scales "
                         "each token's step: export the method alone (its method.pt) to drop the scaler, or use "
                         "--format safetensors")
    shifts = {}
    for module, steering_map in method.maps("cpu").items():
        shift = _constant_shift(steering_map)
        if shift is None:
            raise UsageError(f"{target} holds constant vectors only, but {method.name} at {module} is "
                             f"{type(steering_map).__name__}, whose step depends on the activation (an affine map or "
                             "a support): use --format safetensors, which holds any dsas_bench intervention")
        shifts[module] = shift
    return shifts


def _constant_shift(steering_map: nn.Module) -> Tensor | None:
    """v when T(h) = h + v for every h (a shift, or an affine map with ω = 1 and an unbounded support)."""
    if isinstance(steering_map, ShiftMap):
        return steering_map.v
    if isinstance(steering_map, SupportedAffineMap) and bool((steering_map.omega == 1).all()) and bool(
            (steering_map.lo == -torch.inf).all() and (steering_map.hi == torch.inf).all()):
        return steering_map.beta
    return None


def model_skeleton(name: str) -> nn.Module:
    """The model ``name`` without weights (on the meta device): its config and module names, at once."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_source(name))
    except OSError as error:
        raise UsageError(f"cannot read the config of model {name!r}, which the intervention was fitted on: "
                         f"{error}") from error
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path to write in the block, renamed to ``path`` after it: readers never see a partial file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory: give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
