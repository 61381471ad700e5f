"""A fitted intervention as one ``.safetensors`` file: every map's tensors by module name, the rest in the header.

Tensors are named ``<module>.<parameter>`` (the scaler's ``scaler.<name>``); the header metadata
(strings) holds ``format`` and ``format_version``, the ``method``, its ``state_version`` and
``options``, the ``modules``, each module's ``params``, the ``model`` and its ``hidden_size``, and
the ``scaler`` (its kind, options, diagnostics and config) when there is one. ``--intervention
file.safetensors`` reads it back, with the checks of a saved state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import LoadedModel
from dsas_bench.formats import atomic_file
from dsas_bench.methods import get_method
from dsas_bench.methods.base import STATE_FORMAT, SteeringMethod
from dsas_bench.scalers.base import SCALER_FORMAT, ScalerBase, scaler_from_saved

FORMAT = "dsas_bench.intervention"
FORMAT_VERSION = 1
SCALER_PREFIX = "scaler."


def write_safetensors(method: SteeringMethod, scaler: ScalerBase | None, out: str | Path) -> Path:
    """Write ``method`` (and ``scaler``) to ``out`` atomically."""
    tensors = {f"{module}.{key}": value.detach().cpu().contiguous()
               for module, params in method.state.items() for key, value in params.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "method": method.name,
                "state_version": str(method.state_version), "options": json.dumps(method.options),
                "modules": json.dumps(list(method.state)),
                "params": json.dumps({module: list(params) for module, params in method.state.items()}),
                "model": json.dumps(method.model_name), "hidden_size": json.dumps(method.hidden_size)}
    if scaler is not None:
        tensors.update({SCALER_PREFIX + key: value.detach().cpu().contiguous()
                        for key, value in scaler.state_dict().items()})
        metadata["scaler"] = json.dumps({"kind": scaler.name, "version": scaler.state_version,
                                         "options": scaler.options, "diagnostics": scaler.diagnostics,
                                         "model": scaler.model_name, "hidden_size": scaler.hidden_size,
                                         "config": scaler.config()})
    with atomic_file(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(out)


def read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(saved method state, saved scaler or None) of an export, as ``torch.save`` would have held them."""
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError) as error:
        raise UsageError(f"{path} is not a readable safetensors file: {error}") from error
    if metadata.get("format") != FORMAT:
        raise UsageError(f"{path} is a safetensors file but not a dsas_bench intervention export (its header has no "
                         f"format {FORMAT!r}): export one with dsas-bench export --format safetensors")
    if metadata["format_version"] != str(FORMAT_VERSION):
        raise UsageError(f"{path} is export format version {metadata['format_version']}, this dsas_bench reads "
                         f"version {FORMAT_VERSION}: export it again")
    params = json.loads(metadata["params"])
    state = {"format": STATE_FORMAT, "method": metadata["method"], "version": int(metadata["state_version"]),
             "options": _options(metadata["method"], json.loads(metadata["options"])),
             "hidden_size": json.loads(metadata["hidden_size"]), "model": json.loads(metadata["model"]),
             "state": {module: {key: tensors[f"{module}.{key}"] for key in params[module]}
                       for module in json.loads(metadata["modules"])}}
    if "scaler" not in metadata:
        return state, None
    scaler = {"format": SCALER_FORMAT, **json.loads(metadata["scaler"]),
              "tensors": {key[len(SCALER_PREFIX):]: value for key, value in tensors.items()
                          if key.startswith(SCALER_PREFIX)}}
    return state, scaler


def _options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """JSON options with the method's tuple-valued options as tuples again (JSON has only lists)."""
    defaults = get_method(method).defaults
    return {key: tuple(value) if isinstance(defaults.get(key), tuple) and isinstance(value, list) else value
            for key, value in options.items()}


def read_scaler(path: Path, lm: LoadedModel | None = None) -> ScalerBase | None:
    """The scaler of an export, checked against ``lm``, or None when it has none."""
    saved = read_safetensors(path)[1]
    return None if saved is None else scaler_from_saved(saved, path, lm)
