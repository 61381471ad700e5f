"""Toxicity scorers: registry, Detoxify's offline path, roberta-rtc, the BiLSTM port, profanity, auto."""

import collections
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit as sigmoid
from sklearn.metrics import roc_auc_score
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizer,
)

from dsas_bench.behaviors.toxicity.scorers import get_scorer, scorer_names
from dsas_bench.behaviors.toxicity.scorers.base import ToxicityScorer
from dsas_bench.behaviors.toxicity.scorers.detoxify import CHECKPOINT_ENV, CONFIG_DIR_ENV, detoxify_cache_path
from dsas_bench.behaviors.toxicity.scorers.jigsaw_bilstm import KerasTokenizerState, KerasWordTokenizer
from dsas_bench.behaviors.toxicity.scorers.roberta_rtc import ROBERTA_RTC_MODEL
from dsas_bench.cli import main
from dsas_bench.core.errors import UsageError

TEXTS = ["you are a stupid idiot", "have a nice day", "", "thanks for the edit, that is a nice idea",
         "idiot " * 80]
JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
WORDS = ["you", "are", "a", "stupid", "idiot", "have", "nice", "day", "thanks", "for", "the", "edit", "that",
         "is", "idea", ","]


def _tiny_detoxify(folder: Path, model_type: str = "bert-base-uncased",
                   num_labels: int = 6) -> tuple[Path, Path]:
    """A Detoxify 'original'-style checkpoint of a tiny random BERT, and its base config + tokenizer dir."""
    base = folder / "base"
    base.mkdir(parents=True)
    (base / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(base / "vocab.txt"), model_max_length=64).save_pretrained(base)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=6)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    config.num_labels = num_labels
    config.save_pretrained(base)
    checkpoint = folder / "toxic_tiny.ckpt"
    arch = {"model_type": model_type, "model_name": "BertForSequenceClassification",
            "tokenizer_name": "BertTokenizer", "num_classes": 6}
    torch.save({"config": {"arch": {"args": arch}, "dataset": {"args": {"classes": JIGSAW_CLASSES}}},
                "state_dict": model.state_dict()}, checkpoint)
    return checkpoint, base


def _toxic_probability(model: torch.nn.Module, tokenizer, texts: list[str], softmax: bool) -> np.ndarray:
    """P(toxic) computed directly: softmax column 1 (roberta-rtc) or sigmoid column 0 (Detoxify)."""
    with torch.no_grad():
        logits = model(**tokenizer(texts, return_tensors="pt", padding=True, truncation=True)).logits
    return (logits.softmax(-1)[:, 1] if softmax else logits.sigmoid()[:, 0]).double().numpy()


@pytest.fixture(scope="module")
def detoxify_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _tiny_detoxify(tmp_path_factory.mktemp("detoxify"))


@pytest.fixture
def no_detoxify_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No checkpoint in the environment and an empty torch hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)


@pytest.fixture
def jigsaw(shared_data: Path) -> pd.DataFrame:
    """The real Jigsaw sample (multi-line quoted CSV)."""
    return pd.read_csv(shared_data / "jigsaw" / "train.csv")


@pytest.fixture(scope="module")
def bilstm() -> ToxicityScorer:
    return get_scorer("jigsaw-bilstm")


def test_registry_names_and_unknown_scorer():
    assert scorer_names() == ["auto", "detoxify", "jigsaw-bilstm", "profanity", "roberta-rtc"]
    with pytest.raises(UsageError, match="registered toxicity scorers: auto, detoxify, jigsaw-bilstm, profanity, rob"):
        get_scorer("perspective")


def test_bad_options_and_inputs_raise_usage_error(detoxify_files):
    with pytest.raises(UsageError, match="its options are: batch_size, weights_dir, workers"):
        get_scorer("jigsaw-bilstm", variant="original")
    with pytest.raises(UsageError, match="scorer 'auto' .*has no option workers"):
        get_scorer("auto", workers=2)
    with pytest.raises(UsageError, match="workers must be a positive integer"):
        get_scorer("jigsaw-bilstm", workers=0)
    with pytest.raises(UsageError, match="unknown Detoxify variant 'huge'"):
        get_scorer("detoxify", variant="huge")
    with pytest.raises(UsageError, match="does not exist"):
        get_scorer("detoxify", checkpoint="/nonexistent/toxic.ckpt")
    scorer = get_scorer("detoxify", checkpoint=detoxify_files[0], config_dir=detoxify_files[1])
    with pytest.raises(UsageError, match="wrap a single text in a list"):
        scorer.score("a single string")
    with pytest.raises(UsageError, match="strings only, got NoneType"):
        scorer.score(["fine", None])
    assert scorer.score([]).shape == (0,)


def test_detoxify_offline_path_scores_like_the_model(detoxify_files):
    """The real ``Detoxify(model_type, checkpoint=..., huggingface_config_path=...)`` on a tiny BERT whose
    checkpoint names ``bert-base-uncased`` as its base, like the released ones."""
    checkpoint, base = detoxify_files
    scorer = get_scorer("detoxify", checkpoint=checkpoint, config_dir=base, batch_size=2)
    scores = scorer.score(TEXTS)
    assert scores.dtype == np.float64 and scores.shape == (len(TEXTS),)
    expected = _toxic_probability(scorer.model.model, scorer.model.tokenizer, TEXTS, softmax=False)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert scorer.reported_name == "detoxify"  # the original variant keeps the plain name; others add theirs
    assert scorer.describe() == {"scorer": "detoxify", "variant": "original", "weights": str(checkpoint),
                                 "note": "Detoxify 'toxicity' output; checkpoint from the checkpoint option, "
                                         f"base model config from {base}"}


def test_detoxify_from_environment_and_mismatched_config(tmp_path, detoxify_files, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(detoxify_files[0]))
    monkeypatch.setenv(CONFIG_DIR_ENV, str(detoxify_files[1]))
    note = get_scorer("detoxify").describe()["note"]
    assert note.startswith(f"Detoxify 'toxicity' output; checkpoint from {CHECKPOINT_ENV}")
    checkpoint, two_label_base = _tiny_detoxify(tmp_path, num_labels=2)
    with pytest.raises(UsageError, match="num_labels equal to the checkpoint's classes"):
        get_scorer("detoxify", checkpoint=checkpoint, config_dir=two_label_base)


def test_detoxify_never_downloads_when_offline(no_detoxify_weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="no local Detoxify 'unbiased' checkpoint and HF_HUB_OFFLINE is set"):
        get_scorer("detoxify", variant="unbiased")
    assert not detoxify_cache_path("unbiased").parent.exists()


def test_auto_chooses_detoxify_when_its_checkpoint_is_given(detoxify_files, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(detoxify_files[0]))
    monkeypatch.setenv(CONFIG_DIR_ENV, str(detoxify_files[1]))
    description = get_scorer().describe()
    assert description["scorer"] == "detoxify" and description["chosen_by"] == "auto"
    assert CHECKPOINT_ENV in description["reason"]


def test_auto_finds_detoxifys_own_download(detoxify_files, no_detoxify_weights, monkeypatch):
    cached = detoxify_cache_path("original")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(detoxify_files[0].read_bytes())
    monkeypatch.setenv(CONFIG_DIR_ENV, str(detoxify_files[1]))
    description = get_scorer("auto").describe()
    assert description["scorer"] == "detoxify" and "torch hub's cache" in description["reason"]


def test_auto_falls_back_to_bilstm_without_detoxify_weights(no_detoxify_weights):
    with pytest.warns(UserWarning, match="falls back to 'jigsaw-bilstm'.*no local Detoxify weights"):
        description = get_scorer("auto").describe()
    assert description["scorer"] == "jigsaw-bilstm" and description["chosen_by"] == "auto"
    assert description["reason"].startswith("fallback to jigsaw-bilstm: no local Detoxify weights")


def test_auto_falls_back_when_the_cached_download_cannot_load(tmp_path, no_detoxify_weights):
    checkpoint, _ = _tiny_detoxify(tmp_path, model_type="not-a-local-model-and-hub-offline")
    cached = detoxify_cache_path("original")
    cached.parent.mkdir(parents=True)
    checkpoint.rename(cached)
    with pytest.warns(UserWarning, match="cached weights at .* did not load"):
        assert get_scorer("auto").describe()["scorer"] == "jigsaw-bilstm"


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RoBERTa classifier with the real model's labels and a small byte-level BPE."""
    from tokenizers import ByteLevelBPETokenizer

    folder = tmp_path_factory.mktemp("roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS[:4] * 3, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=60)
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                           pad_token_id=1, id2label={0: "neutral", 1: "toxic"},
                           label2id={"neutral": 0, "toxic": 1})
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_roberta_rtc_scores_the_toxic_label_of_a_local_model(tiny_roberta):
    scorer = get_scorer("roberta-rtc", model=tiny_roberta, batch_size=2)
    scores = scorer.score(TEXTS)
    expected = _toxic_probability(scorer.pipe.model, scorer.pipe.tokenizer, TEXTS, softmax=True)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert scorer.describe()["weights"] == str(tiny_roberta)
    with pytest.raises(UsageError, match="no label 'insult' .*labels: neutral, toxic"):
        get_scorer("roberta-rtc", model=tiny_roberta, label="insult")


def test_scorer_options_reach_the_scorer_from_the_command_line(tiny_roberta, tiny_model_dir, tmp_path):
    code = main(["run", "--model", str(tiny_model_dir), "--scorer", "roberta-rtc", "--scorer-option",
                 f"model={tiny_roberta}", "--lm-eval-tasks", "", "--n-prompts", "3", "--max-new-tokens", "4",
                 "--fit-n", "8", "--strengths", "1", "--device", "cpu", "--no-plot", "--quiet", "--output",
                 str(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert code == 0 and [row["scorer"] for row in rows] == ["roberta-rtc", "roberta-rtc"]
    assert all(row["scorer_info"]["weights"] == str(tiny_roberta) for row in rows)
    assert all(row["config"]["scorer_options"] == {"model": str(tiny_roberta)} for row in rows)


def test_roberta_rtc_unavailable_offline_is_a_usage_error():
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(ROBERTA_RTC_MODEL, "config.json"), str):
        pytest.skip("s-nlp/roberta_toxicity_classifier is in the local Hugging Face cache")
    with pytest.raises(UsageError, match="roberta-rtc could not load .*pass model=<local directory>"):
        get_scorer("roberta-rtc")


def test_keras_tokenizer_port():
    state = KerasTokenizerState()
    state.__dict__.update(word_index={"hello": 1, "world": 2, "it's": 3, "rare": 4}, num_words=4, lower=True,
                          filters='!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n', split=" ", char_level=False,
                          oov_token=None)
    tokenizer = KerasWordTokenizer(state, maxlen=4)
    ids = tokenizer.encode(["Hello, WORLD!\tunknown", "", "rare it's hello world world hello",
                            "world\rhello"])
    # lower-cased, filters split words, ids >= num_words dropped, pre-padded, pre-truncated; "\r" is no filter
    assert ids.tolist() == [[0, 0, 1, 2], [0, 0, 0, 0], [1, 2, 2, 1], [0, 0, 0, 0]]
    assert tokenizer.ids("it's") == [3]


def test_tokenizer_unpickler_refuses_other_classes(tmp_path):
    path = tmp_path / "tokenizer.pickle"
    path.write_bytes(pickle.dumps(collections.Counter(["x"])))
    with pytest.raises(pickle.UnpicklingError, match="collections.Counter"):
        KerasWordTokenizer.from_pickle(path, maxlen=10)


@pytest.mark.slow
def test_jigsaw_bilstm_on_real_jigsaw_comments(bilstm, jigsaw):
    scores = bilstm.score(jigsaw["comment_text"].tolist())
    auc = roc_auc_score(jigsaw["toxic"], scores)
    print(f"jigsaw-bilstm ROC-AUC (toxic) on {len(jigsaw)} Jigsaw comments: {auc:.4f}")
    assert auc >= 0.90
    insult, rude, neutral, polite = bilstm.score(["You are a stupid idiot and I hate you.",
                                                  "shut up, you moron",
                                                  "The article was updated with new references.",
                                                  "Thanks for your help, have a nice day!"])
    assert min(insult, rude) > 0.5 > max(neutral, polite)
    description = bilstm.describe()
    assert description["scorer"] == "jigsaw-bilstm" and "weaker than Detoxify" in description["note"]


def _keras_reference(h5_path: Path, ids: np.ndarray) -> np.ndarray:
    """The Keras model step by step in NumPy from Keras's equations (kernels (in, 4u), gates i, f, c, o)."""
    weights: dict[str, np.ndarray] = {}

    def keep(name: str, node: object) -> None:
        if isinstance(node, h5py.Dataset):
            weights[name] = node[()].astype(np.float64)

    with h5py.File(h5_path, "r") as h5:
        h5.visititems(keep)
    x = weights["layers/embedding/vars/0"][ids]
    pooled = []
    for side, steps in (("forward", range(ids.shape[1])), ("backward", reversed(range(ids.shape[1])))):
        cell = f"layers/bidirectional/{side}_layer/cell/vars/"
        kernel, recurrent, bias = (weights[cell + str(k)] for k in range(3))
        h = c = np.zeros((len(ids), recurrent.shape[0]))
        best = np.full_like(h, -np.inf)
        for t in steps:
            i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            best = np.maximum(best, h)
        pooled.append(best)
    hidden = np.maximum(np.concatenate(pooled, axis=1) @ weights["layers/dense/vars/0"]
                        + weights["layers/dense/vars/1"], 0.0)
    return sigmoid(hidden @ weights["layers/dense_1/vars/0"] + weights["layers/dense_1/vars/1"])


@pytest.mark.slow
def test_jigsaw_bilstm_port_matches_keras_equations(bilstm):
    texts = ["You are a stupid idiot and I hate you.", "Thanks for the edit!", "", "word " * 150]
    ids = bilstm.tokenizer.encode(texts).numpy()
    expected = _keras_reference(Path(bilstm.weights), ids)
    with torch.inference_mode():
        np.testing.assert_allclose(bilstm.model(torch.from_numpy(ids)).double().numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(bilstm.score(texts), expected[:, 0], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("texts", [["You are a stupid idiot and I hate you.", "Thanks for the edit!", "shut up", ""],
                                   [""]])
def test_jigsaw_bilstm_runs_the_pads_all_rows_share_once_with_the_same_scores(bilstm, texts):
    ids = bilstm.tokenizer.encode(texts).numpy()
    assert (ids[:, :80] == 0).all()  # a shared run of pads that the forward direction steps over once
    with torch.inference_mode():
        scores = bilstm.model(torch.from_numpy(ids)).double().numpy()
    np.testing.assert_allclose(scores, _keras_reference(Path(bilstm.weights), ids), atol=1e-5)


@pytest.mark.slow
def test_jigsaw_bilstm_batching_and_threads_do_not_change_scores(bilstm, jigsaw):
    texts = jigsaw["comment_text"].tolist()[:60]
    one_by_one = get_scorer("jigsaw-bilstm", batch_size=1, workers=1).score(texts)
    np.testing.assert_allclose(bilstm.score(texts), one_by_one, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_profanity_on_real_jigsaw_comments(jigsaw):
    scorer = get_scorer("profanity")
    auc = roc_auc_score(jigsaw["toxic"], scorer.score(jigsaw["comment_text"].tolist()))
    print(f"profanity ROC-AUC (toxic) on {len(jigsaw)} Jigsaw comments: {auc:.4f}")
    assert auc > 0.5
    assert scorer.describe()["scorer"] == "profanity"
