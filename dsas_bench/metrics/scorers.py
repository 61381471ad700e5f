"""Toxicity scorers: one interface, a registry, and the classifiers the benchmark can score with.

``get_scorer(name, **options)`` builds one; ``score(texts)`` returns P(toxic) per text. Numbers
from different scorers are not comparable, so every result row records ``describe()``.

- ``detoxify``: the main scorer (Detoxify, ``toxicity`` output); offline from a local checkpoint.
- ``roberta-rtc``: ``s-nlp/roberta_toxicity_classifier``, the classifier of the AcT/LinEAS papers.
- ``jigsaw-bilstm``: a PyTorch port of the Keras BiLSTM shipped by the ``toxic-comment-classifier``
  wheel; always available offline, weaker than Detoxify.
- ``profanity``: ``alt-profanity-check``, a profanity detector (a rough proxy only).
- ``auto`` (default): Detoxify when its weights are on this machine, else ``jigsaw-bilstm``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import io
import itertools
import logging
import os
import pickle
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import h5py
import numpy as np
import torch

from dsas_bench.errors import UsageError
from dsas_bench.progress import bar

logger = logging.getLogger(__name__)

AUTO = "auto"
CHECKPOINT_ENV = "DSAS_BENCH_DETOXIFY_CHECKPOINT"
CONFIG_DIR_ENV = "DSAS_BENCH_DETOXIFY_CONFIG_DIR"
DETOXIFY_VARIANTS = ("original", "unbiased", "multilingual")
_TORCH_HUB_CACHE = "Detoxify's own download in torch hub's cache"
ROBERTA_RTC_MODEL = "s-nlp/roberta_toxicity_classifier"
# The label order of the toxic-comment-classifier wheel (its model.py), the six Jigsaw labels.
JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")

_SCORERS: dict[str, type[ToxicityScorer]] = {}
S = TypeVar("S", bound="type[ToxicityScorer]")


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def register_scorer(name: str) -> Callable[[S], S]:
    """Class decorator: register a ``ToxicityScorer`` subclass under ``name``."""

    def decorate(cls: S) -> S:
        if name == AUTO or _SCORERS.get(name, cls) is not cls:
            raise ValueError(f"toxicity scorer name {name!r} is reserved or already registered")
        cls.name = name
        _SCORERS[name] = cls
        return cls

    return decorate


def scorer_names() -> list[str]:
    """The names ``get_scorer`` accepts: ``auto``, then the registered scorers, sorted."""
    return [AUTO, *sorted(_SCORERS)]


def get_scorer(name: str = AUTO, **options: Any) -> ToxicityScorer:
    """Build the scorer registered under ``name`` with its keyword ``options``.

    ``auto`` takes Detoxify's options; its fallback, ``jigsaw-bilstm``, is built with its defaults.
    """
    key = _normal(name)
    if key == AUTO:
        return _choose_automatically(options)
    if key not in _SCORERS:
        raise UsageError(f"unknown toxicity scorer {name!r}; registered scorers: {', '.join(scorer_names())}")
    _check_options(_SCORERS[key], options, key)
    return _SCORERS[key](**options)


def _check_options(cls: type[ToxicityScorer], options: dict[str, Any], name: str) -> None:
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        accepted = ", ".join(inspect.signature(cls).parameters)
        raise UsageError(f"scorer {name!r} does not take the options {sorted(options)}; "
                         f"it accepts: {accepted}") from None


class ToxicityScorer(ABC):
    """Maps texts to P(toxic) in [0, 1]; subclasses score one batch in ``_score_batch``.

    Subclasses set ``variant``, ``weights`` and ``note``, which ``describe()`` records.
    """

    name: str = ""
    variant: str = "default"
    weights: str = ""
    note: str = ""

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size}")
        self.batch_size = batch_size
        self.choice: dict[str, str] = {}  # set by ``auto``: how and why this scorer was chosen

    @property
    def reported_name(self) -> str:
        """The scorer as results name it: scores under different names are not comparable."""
        return self.name

    def describe(self) -> dict[str, str]:
        """What identifies these scores in a result row."""
        return {"scorer": self.name, "variant": self.variant, "weights": self.weights, "note": self.note,
                **self.choice}

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(toxic) per text, float64 in [0, 1]; batched by length to keep padding small."""
        if isinstance(texts, str):
            raise UsageError("score() takes a sequence of strings, not one string: "
                             "wrap a single text in a list")
        texts = list(texts)
        if not all(isinstance(text, str) for text in texts):
            kinds = sorted({type(text).__name__ for text in texts if not isinstance(text, str)})
            raise UsageError(f"score() takes strings only, got {', '.join(kinds)}: "
                             "convert or drop those items")
        order = np.argsort([len(text) for text in texts], kind="stable")
        batches = [order[start:start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        scores = np.empty(len(texts), dtype=np.float64)
        scored = self._map_batches([[texts[i] for i in b] for b in batches])
        for batch, batch_scores in zip(batches, bar(scored, f"score ({self.name})", len(batches)), strict=True):
            scores[batch] = batch_scores
        return np.clip(scores, 0.0, 1.0)

    def _map_batches(self, batches: list[list[str]]) -> Iterable[np.ndarray]:
        """Scores of each batch, in order; a scorer may override this to run batches in parallel."""
        return map(self._score_batch, batches)

    @abstractmethod
    def _score_batch(self, texts: list[str]) -> np.ndarray:
        """P(toxic) for a non-empty batch."""


def _hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no downloads; Detoxify's GitHub download obeys it too."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _existing(path: str | Path | None, what: str, fix: str) -> Path | None:
    if path is None or str(path) == "":
        return None
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UsageError(f"{what} {resolved} does not exist: {fix}")
    return resolved


def detoxify_cache_path(variant: str) -> Path:
    """Where Detoxify's own download of ``variant`` lands (torch hub's checkpoint directory)."""
    from detoxify.detoxify import MODEL_URLS

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(MODEL_URLS[variant]).path).name


def _detoxify_checkpoint(variant: str, checkpoint: str | Path | None) -> tuple[Path | None, str]:
    """The local Detoxify checkpoint and where it was found: the option, the env var or torch hub's cache."""
    if variant not in DETOXIFY_VARIANTS:
        raise UsageError(f"unknown Detoxify variant {variant!r}; use one of {', '.join(DETOXIFY_VARIANTS)}")
    fix = f"pass checkpoint= / set {CHECKPOINT_ENV} to a Detoxify .ckpt file"
    if (found := _existing(checkpoint, "Detoxify checkpoint", fix)) is not None:
        return found, "the checkpoint option"
    if (found := _existing(os.environ.get(CHECKPOINT_ENV), f"{CHECKPOINT_ENV}", fix)) is not None:
        return found, CHECKPOINT_ENV
    cached = detoxify_cache_path(variant)
    return (cached, _TORCH_HUB_CACHE) if cached.is_file() else (None, "")


def _with_local_base(checkpoint: Path, config_dir: Path) -> io.BytesIO:
    """The checkpoint with its base-model name pointing at ``config_dir``, as an in-memory file.

    detoxify 0.5.4 looks the base config up by the checkpoint's ``model_type`` (e.g.
    ``bert-base-uncased``) even when ``huggingface_config_path`` is given, so offline it fails
    (unitaryai/detoxify PR #126). That lookup's result is discarded in favour of ``config_dir``.
    """
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    try:
        loaded["config"]["arch"]["args"]["model_type"] = str(config_dir)
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{checkpoint} is not a Detoxify checkpoint (no config.arch.args): {exc!r}") from exc
    buffer = io.BytesIO()
    torch.save(loaded, buffer)
    buffer.seek(0)
    return buffer


@register_scorer("detoxify")
class DetoxifyScorer(ToxicityScorer):
    """Detoxify's ``toxicity`` output (sigmoid of a fine-tuned BERT / RoBERTa / XLM-R head).

    Online, Detoxify downloads its checkpoint and base model. Offline, give a local checkpoint
    (``checkpoint`` or ``DSAS_BENCH_DETOXIFY_CHECKPOINT``; Detoxify's own download in torch hub's
    cache is found by itself) and a directory with the base model's config and tokenizer
    (``config_dir`` or ``DSAS_BENCH_DETOXIFY_CONFIG_DIR``); its ``config.json`` must have as many
    labels as the checkpoint has classes.
    """

    def __init__(self, variant: str = "original", checkpoint: str | Path | None = None,
                 config_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        super().__init__(batch_size)
        from detoxify import Detoxify
        from detoxify.detoxify import MODEL_URLS

        local, source = _detoxify_checkpoint(variant, checkpoint)
        base = _existing(config_dir or os.environ.get(CONFIG_DIR_ENV), "Detoxify base-model directory",
                         f"pass config_dir= / set {CONFIG_DIR_ENV} to a folder with config and tokenizer")
        if local is None and _hub_offline():
            raise UsageError(f"no local Detoxify {variant!r} checkpoint and HF_HUB_OFFLINE is set, so it is "
                             f"not downloaded: pass checkpoint= and config_dir= (or set {CHECKPOINT_ENV} and "
                             f"{CONFIG_DIR_ENV}), or unset HF_HUB_OFFLINE with internet access")
        try:
            if local is None:
                self.model = Detoxify(variant, device=device)
            elif base is None:
                self.model = Detoxify(variant, checkpoint=str(local), device=device)
            else:
                self.model = Detoxify(variant, checkpoint=_with_local_base(local, base), device=device,
                                      huggingface_config_path=str(base))
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise UsageError(
                f"could not load Detoxify {variant!r} (checkpoint: {local or MODEL_URLS[variant]}, "
                f"base model: {base or 'from the hub'}): {exc}. Offline, pass checkpoint= and config_dir= "
                f"(or set {CHECKPOINT_ENV} and {CONFIG_DIR_ENV}); config_dir needs the base model's "
                "config.json with num_labels equal to the checkpoint's classes, and its tokenizer files"
            ) from exc
        if "toxicity" not in self.model.class_names:
            raise UsageError(f"the Detoxify checkpoint {local} has no toxicity output "
                             f"(classes: {', '.join(self.model.class_names)})")
        self.variant = variant
        self.weights = str(local) if local is not None else MODEL_URLS[variant]
        self.note = f"Detoxify 'toxicity' output; checkpoint from {source or 'a download'}" + (
            f", base model config from {base}" if base is not None else "")

    @property
    def reported_name(self) -> str:
        return self.name if self.variant == "original" else f"{self.name}-{self.variant}"

    def _score_batch(self, texts: list[str]) -> np.ndarray:
        return np.atleast_1d(np.asarray(self.model.predict(texts)["toxicity"], dtype=np.float64))


@register_scorer("roberta-rtc")
class RobertaRTCScorer(ToxicityScorer):
    """P(``toxic``) of a RoBERTa sequence classifier through a transformers text-classification pipeline."""

    def __init__(self, model: str | Path = ROBERTA_RTC_MODEL, device: str = "cpu", batch_size: int = 32,
                 label: str = "toxic") -> None:
        super().__init__(batch_size)
        from transformers import pipeline

        try:
            self.pipe = pipeline("text-classification", model=str(model), device=device)
        except OSError as exc:
            raise UsageError(
                f"roberta-rtc could not load {str(model)!r}: it is neither a local model directory nor in "
                f"the Hugging Face cache and the hub is unreachable (HF_HUB_OFFLINE="
                f"{os.environ.get('HF_HUB_OFFLINE', 'unset')}). Download it once with hub access, pass "
                f"model=<local directory>, or use another scorer ({', '.join(scorer_names())}). Cause: {exc}"
            ) from exc
        labels = [str(value) for value in self.pipe.model.config.id2label.values()]
        if label not in labels:
            raise UsageError(f"the model {str(model)!r} has no label {label!r} "
                             f"(labels: {', '.join(labels)}); pass label=<its toxic label>")
        self.label = label
        self.variant = f"label={label}"
        self.weights = str(model)
        self.note = f"softmax probability of the {label!r} label (the AcT/LinEAS papers' classifier)"

    def _score_batch(self, texts: list[str]) -> np.ndarray:
        outputs = self.pipe(texts, top_k=None, function_to_apply="softmax", batch_size=self.batch_size,
                            truncation=True)
        return np.array([next(entry["score"] for entry in row if entry["label"] == self.label)
                         for row in outputs])


@register_scorer("profanity")
class ProfanityScorer(ToxicityScorer):
    """``alt-profanity-check``: a tf-idf + linear SVM profanity detector (calibrated probability)."""

    def __init__(self, batch_size: int = 10_000) -> None:
        super().__init__(batch_size)
        from profanity_check import predict_prob

        self._predict_prob = predict_prob
        self.variant = f"alt-profanity-check {importlib.metadata.version('alt-profanity-check')}"
        self.weights = "shipped in the alt-profanity-check wheel"
        self.note = "detects profanity, not toxicity in general: a rough proxy, weaker than Detoxify"

    def _score_batch(self, texts: list[str]) -> np.ndarray:
        return self._predict_prob(texts)


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


class _KerasTokenizerState:
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
            return _KerasTokenizerState
        if (module, name) in self._PLAIN:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in a Keras tokenizer pickle")


class KerasWordTokenizer:
    """Keras ``texts_to_sequences`` + ``pad_sequences`` (pre-pad, pre-truncate) without Keras."""

    def __init__(self, state: _KerasTokenizerState, maxlen: int) -> None:
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


@register_scorer("jigsaw-bilstm")
class JigsawBiLSTMScorer(ToxicityScorer):
    """P(``toxic``) of the Jigsaw-trained Keras BiLSTM of ``toxic-comment-classifier``, run in PyTorch."""

    maxlen = 100  # the sequence length the Keras model was trained with

    def __init__(self, weights_dir: str | Path | None = None, batch_size: int = 128,
                 workers: int | None = None) -> None:
        super().__init__(batch_size)
        self.workers = torch.get_num_threads() if workers is None else workers
        if self.workers < 1:
            raise UsageError(f"workers must be a positive integer, got {workers}")
        folder = _existing(weights_dir, "jigsaw-bilstm weights directory",
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


def _choose_automatically(options: dict[str, Any]) -> ToxicityScorer:
    """Detoxify (built with ``options``) when its weights are local, else ``jigsaw-bilstm`` with a warning.

    An explicitly given checkpoint that fails to load raises; Detoxify's own cached download
    that fails to load (e.g. its base model is not reachable offline) falls back.
    """
    _check_options(DetoxifyScorer, options, AUTO)
    variant = options.get("variant", "original")
    local, source = _detoxify_checkpoint(variant, options.get("checkpoint"))
    if local is None:
        reason = (f"no local Detoxify weights were found (no checkpoint option, {CHECKPOINT_ENV} unset, "
                  f"nothing at {detoxify_cache_path(variant)})")
    else:
        try:
            scorer = get_scorer("detoxify", **options)
        except UsageError as exc:
            if source != _TORCH_HUB_CACHE:
                raise
            reason = f"Detoxify's cached weights at {local} did not load: {exc}"
        else:
            scorer.choice = {"chosen_by": AUTO, "reason": f"Detoxify weights found via {source}"}
            logger.info("toxicity scorer: detoxify (weights from %s)", source)
            return scorer
    warnings.warn(f"toxicity scorer 'auto' falls back to 'jigsaw-bilstm' (weaker than Detoxify; its scores "
                  f"are not comparable with Detoxify's) because {reason}", UserWarning, stacklevel=3)
    scorer = get_scorer("jigsaw-bilstm")
    scorer.choice = {"chosen_by": AUTO, "reason": f"fallback to jigsaw-bilstm: {reason}"}
    return scorer
