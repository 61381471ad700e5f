"""Shared test set-up: offline hub, a private cache directory, small deterministic models."""

import os
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
