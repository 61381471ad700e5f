"""Model loading: local folders, GGUF files, devices and dtypes, a pad token and left padding."""

import pytest
import torch

from dsas_bench.core.errors import UsageError
from dsas_bench.core.models import load_model, model_source, resolve_device, resolve_dtype, smollm2_gguf_path


def test_a_local_folder_loads_in_eval_mode_with_left_padding(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    assert not lm.model.training and lm.device.type == "cpu" and lm.model.dtype == torch.float32
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token is not None


def test_dtype_option_and_its_cpu_default(tiny_model_dir):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert load_model(str(tiny_model_dir), device="cpu", dtype="bf16").model.dtype == torch.bfloat16
    with pytest.raises(UsageError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", torch.device("cpu"))


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_a_missing_gguf_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="GGUF file not found"):
        model_source(str(tmp_path / "model.gguf"))


@pytest.mark.slow
def test_a_gguf_path_loads_like_the_packaged_name(smollm2):
    gguf = str(smollm2_gguf_path())
    assert model_source(gguf) == model_source("smollm2")  # converted once, into the same cached folder
    from_path = load_model(gguf, device="cpu")
    assert torch.equal(from_path.model.get_input_embeddings().weight, smollm2.model.get_input_embeddings().weight)
