"""The data loaders on the real RealToxicityPrompts and Jigsaw samples, small bad files and the demo set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsas_bench.core.data import (
    DEMO_DIR,
    JIGSAW_LABELS,
    FitSets,
    Prompt,
    balanced_sample,
    fit_sets,
    load_jigsaw,
    load_prompts,
    load_texts,
)
from dsas_bench.core.errors import UsageError

JIGSAW_HEADER = "id,comment_text," + ",".join(JIGSAW_LABELS)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, records: list[object]) -> Path:
    return write(path, "".join(json.dumps(record) + "\n" for record in records))


def rtp(text: str, toxicity: float | None, challenging: bool = False) -> dict[str, object]:
    return {"prompt": {"text": text, "toxicity": toxicity}, "challenging": challenging}


# --- real RealToxicityPrompts samples -------------------------------------------------------------


def test_real_challenging_prompts(shared_data: Path) -> None:
    path = shared_data / "rtp" / "challenging_dev.jsonl"
    prompts = load_prompts(path)
    assert len(prompts) == 598
    assert all(isinstance(p, Prompt) and p.text and p.toxicity is not None for p in prompts)
    assert len(load_prompts(path, challenging_only=True)) == 598
    high = load_prompts(path, toxicity="high")
    low = load_prompts(path, toxicity="low")
    assert (len(high), len(low)) == (492, 106)
    assert all(p.toxicity >= 0.5 for p in high) and all(p.toxicity < 0.5 for p in low)
    assert load_prompts(path, n=100) == prompts[:100]


def test_real_nontoxic_prompts(shared_data: Path) -> None:
    path = shared_data / "rtp" / "nontoxic.jsonl"
    assert len(load_prompts(path)) == 1200
    assert len(load_prompts(path, toxicity="low")) == 1200
    assert len(load_prompts(path, challenging_only=True)) == 4
    with pytest.raises(UsageError, match=r"no prompts in .*nontoxic\.jsonl with .*toxicity='high'"):
        load_prompts(path, toxicity="high")


def test_too_many_prompts_says_how_many_exist(shared_data: Path) -> None:
    with pytest.raises(UsageError, match=r"asked for 1000 prompts .*challenging_dev\.jsonl.* only 598 exist"):
        load_prompts(shared_data / "rtp" / "challenging_dev.jsonl", n=1000)
    with pytest.raises(UsageError, match="only 106 exist"):
        load_prompts(shared_data / "rtp" / "challenging_dev.jsonl", toxicity="low", n=107)


def test_rtp_jsonl_is_not_a_text_file(shared_data: Path) -> None:
    with pytest.raises(UsageError, match=r'nontoxic\.jsonl line 1: missing field "text"; found filename'):
        load_texts(shared_data / "rtp" / "nontoxic.jsonl")


# --- seeded shuffles and samples ------------------------------------------------------------------


def test_seeded_shuffle(shared_data: Path) -> None:
    path = shared_data / "rtp" / "nontoxic.jsonl"
    first = load_prompts(path, n=50)
    assert load_prompts(path, n=50) == first
    assert load_prompts(path, n=50, seed=42) == first
    assert load_prompts(path, n=50, seed=0) != first
    assert load_prompts(path, n=10) == first[:10]
    assert sorted(p.text for p in load_prompts(path)) == sorted(p.text for p in load_prompts(path, seed=1))


def test_shuffle_matches_datasets_shuffle(tmp_path: Path) -> None:
    """The seeded order is the one ``datasets.Dataset.shuffle(seed=42)`` gives, as in the papers."""
    datasets = pytest.importorskip("datasets")
    records = [rtp(f"prompt {i}", i / 40) for i in range(40)]
    expected = datasets.Dataset.from_list(records).shuffle(seed=42)["prompt"]
    loaded = load_prompts(jsonl(tmp_path / "p.jsonl", records))
    assert [p.text for p in loaded] == [p["text"] for p in expected]


def test_balanced_sample_and_fit_sets() -> None:
    texts = [f"text {i}" for i in range(50)]
    sample = balanced_sample(texts, 32, seed=3)
    assert len(set(sample)) == 32 and set(sample) <= set(texts)
    assert balanced_sample(texts, 32, seed=3) == sample
    assert balanced_sample(texts, 32, seed=4) != sample
    assert balanced_sample(texts, 8, seed=3) == sample[:8]
    with pytest.raises(UsageError, match="asked for 51 texts, but only 50 exist"):
        balanced_sample(texts, 51, seed=0)
    with pytest.raises(UsageError, match="at least 1"):
        balanced_sample(texts, 0, seed=0)

    sets = fit_sets(texts, [t.upper() for t in texts], [f"control {i}" for i in range(40)], n=32, seed=1)
    assert isinstance(sets, FitSets)
    assert sets.source == balanced_sample(texts, 32, seed=1)
    assert [len(s) for s in (sets.source, sets.target, sets.control)] == [32, 32, 32]
    with pytest.raises(UsageError, match="asked for 32 control texts, but only 10 exist"):
        fit_sets(texts, texts, texts[:10], n=32, seed=1)


# --- prompt filters and malformed prompt files -----------------------------------------------------


def test_prompt_filters_and_null_toxicity(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", [rtp("a", 0.9, True), rtp("b", 0.1, True), rtp("c", None, False),
                                        rtp("d", 0.5, False), {"prompt": {"text": "e"}}])
    assert {p.text for p in load_prompts(path)} == set("abcde")
    assert {p.text: p.toxicity for p in load_prompts(path)}["c"] is None
    assert {p.text for p in load_prompts(path, toxicity="high")} == {"a", "d"}
    assert {p.text for p in load_prompts(path, toxicity="low")} == {"b"}
    with pytest.raises(UsageError, match=r'p\.jsonl line 5: missing field "challenging"'):
        load_prompts(path, challenging_only=True)
    path = jsonl(tmp_path / "c.jsonl", [rtp("a", 0.9, True), rtp("b", 0.1, True), rtp("c", 0.2, False)])
    assert {p.text for p in load_prompts(path, challenging_only=True)} == {"a", "b"}
    assert [p.text for p in load_prompts(path, challenging_only=True, toxicity="high")] == ["a"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": {"text": "ok", "toxicity": 0.1}}\n\n{"prompt": {"toxicity": 0.2}}\n',
     r'p\.jsonl line 3: missing field "prompt\.text"; found prompt\.toxicity '
     r'\(expected RealToxicityPrompts jsonl: \{"prompt": \{"text": \.\.\., "toxicity": \.\.\.\}\}\)'),
    ('{"text": "a flat record"}\n', r'line 1: missing field "prompt\.text"; found text'),
    ('{"prompt": "just a string"}\n', r'line 1: missing field "prompt\.text"; prompt is str'),
    ('{}\n', r'line 1: missing field "prompt\.text"; found no fields'),
    ('{"prompt": {"text": "ok"}}\n{"prompt": {"text": "ok",\n', r"p\.jsonl line 2: invalid JSON"),
    ('["a", "list"]\n', r"line 1: expected a JSON object, got list"),
    ('{"prompt": {"text": "", "toxicity": 0.1}}\n', r'line 1: field "prompt\.text" must be a non-empty str'),
    ('{"prompt": {"text": 7, "toxicity": 0.1}}\n', r'line 1: field "prompt\.text" must be a non-empty str'),
    ('{"prompt": {"text": "x", "toxicity": "high"}}\n', r'line 1: field "prompt\.toxicity" must be a number'),
    ('{"prompt": {"text": "x", "toxicity": 1.5}}\n', r'line 1: field "prompt\.toxicity" must be a number'),
    ("", r"p\.jsonl: the file has no records"),
    ("\n  \n", r"p\.jsonl: the file has no records"),
])
def test_malformed_prompt_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_prompts(write(tmp_path / "p.jsonl", content))


def test_prompt_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.jsonl: no such file"):
        load_prompts(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="unknown toxicity filter 'medium'"):
        load_prompts(toxicity="medium")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not both"):
        load_prompts(tmp_path / "p.jsonl", hub=True)
    with pytest.raises(UsageError, match="n must be at least 1"):
        load_prompts(n=0)
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": {"text": "caf\xe9"}}\n'.encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin1\.jsonl: not UTF-8"):
        load_prompts(tmp_path / "latin1.jsonl")


# --- Jigsaw ---------------------------------------------------------------------------------------


def test_real_jigsaw_train(shared_data: Path) -> None:
    toxic, nontoxic = load_jigsaw(shared_data / "jigsaw" / "train.csv")
    assert (len(toxic), len(nontoxic)) == (28, 253)  # one more row has toxic=0 but another label 1
    assert not set(toxic) & set(nontoxic)
    assert all(t and t == t.strip() for t in toxic + nontoxic)
    assert any("\n" in t for t in nontoxic)  # multi-line quoted comments stay whole
    assert len(load_jigsaw(shared_data / "jigsaw" / "train.csv", label="insult")[0]) == 16


def test_real_jigsaw_test_skips_withheld_labels(shared_data: Path) -> None:
    """Kaggle's test.csv marks withheld labels -1: those 25 rows are skipped, the 26 labelled ones kept."""
    path = shared_data / "jigsaw" / "test.csv"
    toxic, nontoxic = load_jigsaw(path)
    assert (len(toxic), len(nontoxic)) == (2, 24)
    assert not any(t.startswith("Yo bitch Ja Rule") for t in toxic + nontoxic)  # row 0 has labels -1
    with pytest.raises(UsageError, match=r"test\.csv: 0 rows with threat=1 .*25 rows with withheld -1"):
        load_jigsaw(path, label="threat")


def test_jigsaw_small_files(tmp_path: Path) -> None:
    rows = ['1,"  bad\n words  ",1,0,1,0,1,0', "2,nice,0,0,0,0,0,0", "3,rude,0,0,0,0,1,0",
            "4,hidden,-1,-1,-1,-1,-1,-1"]
    path = write(tmp_path / "train.csv", "\n".join([JIGSAW_HEADER, *rows]) + "\n")
    assert load_jigsaw(path) == (["bad\n words"], ["nice"])
    assert load_jigsaw(path, label="insult") == (["bad\n words", "rude"], ["nice"])
    only_toxic = write(tmp_path / "small.csv", "comment_text,toxic\nbad,1\nfine,0\n")
    assert load_jigsaw(only_toxic) == (["bad"], ["fine"])


@pytest.mark.parametrize(("content", "message"), [
    ("id,text,toxic\n1,hello,0\n",
     r'train\.csv record 1 \(line 2\): missing field "comment_text"; found id, text, toxic'),
    ("id,comment_text,insult\n1,hello,0\n", r'record 1 \(line 2\): missing field "toxic"'),
    (f'{JIGSAW_HEADER}\n1,"two\nlines",0,0,0,0,0,0\n2,bad,yes,0,0,0,0,0\n',
     r'train\.csv record 2 \(line 4\): field "toxic" must be 1, 0 or -1, got \'yes\''),
    (f"{JIGSAW_HEADER}\n1,fine,0,0,0,0,0\n",
     r'record 1 \(line 2\): field "identity_hate" must be 1, 0 or -1, got None'),
    (f"{JIGSAW_HEADER}\n1,fine,0,0,0,0,0,0,0\n", r"record 1 \(line 2\): more fields than the 8"),
    (f"{JIGSAW_HEADER}\n1,,0,0,0,0,0,0\n", r'record 1 \(line 2\): field "comment_text" must be a non-empty'),
    ("", r"train\.csv: the file has no records \(expected Jigsaw train\.csv with columns comment_text, tox"),
    (f"{JIGSAW_HEADER}\n", r"the file has no records"),
    (f"{JIGSAW_HEADER}\n1,fine,0,0,0,0,0,0\n", r"1 rows with all labels 0 .*need both"),
])
def test_malformed_jigsaw_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_jigsaw(write(tmp_path / "train.csv", content))


def test_unparsable_csv(tmp_path: Path) -> None:
    huge = "x" * 200_000  # beyond csv.field_size_limit()
    path = write(tmp_path / "train.csv", f'{JIGSAW_HEADER}\n1,fine,0,0,0,0,0,0\n2,"{huge}",1,0,0,0,0,0\n')
    with pytest.raises(UsageError, match=r"train\.csv record 2 \(line 3\): bad CSV \(field larger than"):
        load_jigsaw(path)


def test_jigsaw_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown Jigsaw label 'rude': use one of toxic, severe_toxic"):
        load_jigsaw(label="rude")
    with pytest.raises(UsageError, match="demo data has only the 'toxic' label"):
        load_jigsaw(label="insult")
    with pytest.raises(UsageError, match=r"nope\.csv: no such file"):
        load_jigsaw(tmp_path / "nope.csv")


# --- texts ----------------------------------------------------------------------------------------


def test_texts_from_files(tmp_path: Path) -> None:
    assert load_texts(write(tmp_path / "t.txt", "one\n\n  two  \r\nthree")) == ["one", "two", "three"]
    assert load_texts(write(tmp_path / "t.txt", "one\ntwo\nthree\n"), limit=2) == ["one", "two"]
    records = [{"text": "first", "id": 1}, {"text": " second ", "body": "x"}]
    assert load_texts(jsonl(tmp_path / "t.jsonl", records)) == ["first", "second"]
    assert load_texts(jsonl(tmp_path / "b.jsonl", [{"body": "x"}]), field="body") == ["x"]


def test_real_rtp_sentences_as_neutral_text(shared_data: Path) -> None:
    """prompt + continuation of the non-toxic RealToxicityPrompts, kept where Perspective scored the end < 0.5."""
    path = shared_data / "rtp" / "nontoxic.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    kept = [r for r in records if (r["continuation"]["toxicity"] is not None and r["continuation"]["toxicity"] < 0.5)]
    texts = load_texts(path, field="prompt.text+continuation.text", condition="continuation.toxicity < 0.5")
    assert texts == [(r["prompt"]["text"] + r["continuation"]["text"]).strip() for r in kept]
    assert 0 < len(texts) < len(records)  # toxic ends and unscored ones are left out
    assert len(load_texts(path, field="prompt.text", condition="continuation.toxicity>=0.5")) == sum(
        r["continuation"]["toxicity"] is not None and r["continuation"]["toxicity"] >= 0.5 for r in records)


def test_text_conditions(tmp_path: Path) -> None:
    records = [{"text": "a", "meta": {"lang": "en", "n": 3}}, {"text": "b", "meta": {"lang": "de", "n": 1}},
               {"text": "c", "meta": {"n": None}}]
    path = jsonl(tmp_path / "t.jsonl", records)
    assert load_texts(path, condition="meta.lang == en") == ["a"]
    assert load_texts(path, condition="meta.lang != 'en'") == ["b"]  # a missing field is left out
    assert load_texts(path, condition="meta.n>1") == ["a"]
    with pytest.raises(UsageError, match="cannot read the condition 'meta.n ~ 1': write FIELD OP VALUE"):
        load_texts(path, condition="meta.n ~ 1")
    with pytest.raises(UsageError, match=r"t\.jsonl: no texts"):
        load_texts(path, condition="meta.n > 10")
    with pytest.raises(UsageError, match=r"a \.txt file has no fields to test"):
        load_texts(write(tmp_path / "t.txt", "one\n"), condition="meta.n > 1")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("t.jsonl", '{"text": "ok"}\n{"body": "no"}\n', r't\.jsonl line 2: missing field "text"; found body'),
    ("t.jsonl", '{"text": "ok"}\n{"text": null}\n', r't\.jsonl line 2: field "text" must be a non-empty'),
    ("t.jsonl", "{oops}\n", r"t\.jsonl line 1: invalid JSON"),
    ("t.txt", "", r"t\.txt: no texts \(expected one text per line"),
    ("t.txt", "\n \n", r"t\.txt: no texts"),
    ("t.csv", "a,b\n", r"t\.csv: unsupported file type '\.csv'"),
])
def test_malformed_text_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_texts(write(tmp_path / name, content))


def test_text_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown text kind 'rude'"):
        load_texts(kind="rude")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="limit must be at least 1"):
        load_texts(limit=0)
    with pytest.raises(UsageError, match=r"none\.txt: no such file"):
        load_texts(tmp_path / "none.txt")


# --- the hub --------------------------------------------------------------------------------------


def test_hub_unreachable_is_a_usage_error() -> None:
    """The tests run with HF_HUB_OFFLINE=1, so this fails fast, as an unreachable hub does."""
    with pytest.raises(UsageError, match=r"could not load 'allenai/real-toxicity-prompts' .*Hugging Face"):
        load_prompts(hub=True)


def test_hub_loaders_use_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {
        "allenai/real-toxicity-prompts": [rtp("hub a", 0.8, True), rtp("hub b", 0.2, False)],
        "monology/jigsaw": [{"comment_text": "hub bad", **dict.fromkeys(JIGSAW_LABELS, 1)},
                            {"comment_text": "hub good", **dict.fromkeys(JIGSAW_LABELS, 0)}],
        "Salesforce/wikitext": [{"text": line} for line in (
            "", " = Heading = \n", " Body one . \n", " = = Sub = = \n", " Body two . \n", "Body three")],
    }
    calls = []

    def fake_load_dataset(name: str, config: str | None = None, **kwargs: object) -> list[dict[str, object]]:
        calls.append((name, config, kwargs))
        return datasets.Dataset.from_list(rows[name]) if name != "Salesforce/wikitext" else rows[name]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert [p.text for p in load_prompts(hub=True, challenging_only=True)] == ["hub a"]
    assert load_jigsaw(hub=True) == (["hub bad"], ["hub good"])
    assert load_texts(hub=True, limit=2) == ["Body one .", "Body two ."]
    assert calls[0] == ("allenai/real-toxicity-prompts", None, {"split": "train", "streaming": False})
    assert calls[2] == ("Salesforce/wikitext", "wikitext-103-raw-v1", {"split": "train", "streaming": True})
    rows["monology/jigsaw"] = [{"comment_text": "no labels"}]
    with pytest.raises(UsageError, match=r'monology/jigsaw row 1: missing field "toxic"'):
        load_jigsaw(hub=True)


# --- the demo set ---------------------------------------------------------------------------------


def test_demo_data() -> None:
    prompts = load_prompts()
    assert len(prompts) == 60
    assert len(load_prompts(toxicity="high")) == 28 and len(load_prompts(toxicity="low")) == 32
    texts = {kind: load_texts(kind=kind) for kind in ("neutral", "toxic", "nontoxic")}
    assert {kind: len(t) for kind, t in texts.items()} == {"neutral": 120, "toxic": 80, "nontoxic": 80}
    assert all(len(set(t)) == len(t) for t in texts.values())
    assert not set(texts["toxic"]) & set(texts["nontoxic"])
    assert not set(texts["neutral"]) & (set(texts["toxic"]) | set(texts["nontoxic"]))
    assert load_jigsaw() == (texts["toxic"], texts["nontoxic"])
    assert load_texts() == texts["neutral"]
    sets = fit_sets(texts["toxic"], texts["nontoxic"], texts["neutral"], n=32, seed=0)
    assert len(sets.source) == len(sets.target) == len(sets.control) == 32
    readme = Path(__file__).resolve().parents[1] / "dsas_bench" / "data" / "demo" / "README.md"
    assert "synthetic demo data" in readme.read_text(encoding="utf-8")
    shipped = {f.name for f in DEMO_DIR.iterdir()}
    assert {"prompts.jsonl", "toxic.txt", "nontoxic.txt", "neutral.txt"} <= shipped
