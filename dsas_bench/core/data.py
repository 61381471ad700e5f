"""Load prompts, labelled toxic / non-toxic texts and neutral texts from a file, the hub or the demo set.

Sources: a local file (RealToxicityPrompts jsonl, Jigsaw ``train.csv``, ``.txt`` or ``.jsonl`` texts),
the Hugging Face hub through ``datasets.load_dataset`` (``hub=True``), or, with neither, the small
synthetic demo set shipped in ``dsas_bench/data/demo`` (not comparable to the papers' numbers).
Every malformed input raises :class:`UsageError` naming the file, the line (jsonl) or record (csv),
the field and the expected schema. Shuffles use ``numpy.random.default_rng(seed).permutation``,
the same order as ``datasets.Dataset.shuffle(seed=seed)``; the papers use seed 42.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import numpy as np

from dsas_bench.core.errors import UsageError


def _tasks_dir() -> Path:
    """The repository's ``tasks/`` in a source checkout; the copy a wheel installs under ``<prefix>/share``."""
    checkout = Path(__file__).resolve().parents[2] / "tasks"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "dsas_bench" / "tasks"


DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
TASKS_DIR = _tasks_dir()
RTP_HUB = "allenai/real-toxicity-prompts"
# A parquet mirror of the Kaggle data: the official "jigsaw_toxicity_pred" script needs a manual download.
JIGSAW_HUB = "monology/jigsaw"
TEXT_HUB = "Salesforce/wikitext"
TEXT_HUB_CONFIG = "wikitext-103-raw-v1"
JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
TEXT_KINDS = ("neutral", "toxic", "nontoxic")
TOXICITY_FILTERS = ("all", "low", "high")
HIGH_TOXICITY = 0.5  # prompt toxicity >= this is "high", below is "low"

_RTP_SCHEMA = 'RealToxicityPrompts jsonl: {"prompt": {"text": ..., "toxicity": ...}}'
_JIGSAW_SCHEMA = (f"Jigsaw train.csv with columns comment_text, {', '.join(JIGSAW_LABELS)}; "
                  "labels 1, 0 or -1 (withheld)")
_WIKITEXT_HEADING = re.compile(r"=+ .* =+")
_MISSING = object()
T = TypeVar("T")


@dataclass(frozen=True)
class Prompt:
    """A prompt to continue; ``toxicity`` is its Perspective score when known."""

    text: str
    toxicity: float | None


@dataclass(frozen=True)
class FitSets:
    """Seeded samples of source, target and control texts for fitting a steering method."""

    source: list[str]
    target: list[str]
    control: list[str] = field(default_factory=list)


def _error(where: object, problem: str, schema: str) -> UsageError:
    return UsageError(f"{where}: {problem} (expected {schema})")


def _lookup(record: Any, field: str) -> tuple[Any, str]:
    """``(value, "")`` at a dotted ``field`` path in nested mappings, else ``(_MISSING, what is there)``."""
    prefix = ""
    for key in field.split("."):
        if not isinstance(record, Mapping):
            return _MISSING, f"{prefix[:-1]} is {type(record).__name__}"
        if key not in record:
            return _MISSING, "found " + (", ".join(f"{prefix}{name}" for name in record) or "no fields")
        record, prefix = record[key], f"{prefix}{key}."
    return record, ""


def _get(record: Any, field: str) -> Any:
    """The value at a dotted ``field`` path in nested mappings, or ``_MISSING``."""
    return _lookup(record, field)[0]


def _require(record: Any, field: str, where: str, schema: str) -> Any:
    value, found = _lookup(record, field)
    if value is _MISSING:
        raise _error(where, f'missing field "{field}"; {found}', schema)
    return value


def _text(record: Any, field: str, where: str, schema: str, *, allow_blank: bool = False) -> str:
    value = _require(record, field, where, schema)
    if not isinstance(value, str) or not (allow_blank or value.strip()):
        raise _error(where, f'field "{field}" must be a non-empty string, got {value!r}', schema)
    return value


def _joined(record: Any, fields: str, where: str, schema: str, *, allow_blank: bool = False) -> str:
    """The ``+``-joined ``fields`` of ``record``, concatenated (one field: its text)."""
    return "".join(_text(record, name, where, schema, allow_blank=allow_blank) for name in fields.split("+"))


_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
                "!=": operator.ne}
_CONDITION = re.compile(r"\s*([\w.]+)\s*(<=|>=|==|!=|<|>)\s*(\S.*?)\s*")


def _condition(condition: str | None) -> Callable[[Any], bool]:
    """A test of records from ``FIELD OP VALUE`` (VALUE a number, else a string); None keeps every record."""
    if not condition:
        return lambda record: True
    match = _CONDITION.fullmatch(condition)
    if match is None:
        raise UsageError(f"cannot read the condition {condition!r}: write FIELD OP VALUE with OP one of "
                         f"{' '.join(_COMPARISONS)}, e.g. continuation.toxicity<0.5")
    name, compare, text = match.group(1), _COMPARISONS[match.group(2)], match.group(3).strip("'\"")
    try:
        value: Any = float(text)
    except ValueError:
        value = text

    def holds(record: Any) -> bool:
        found = _get(record, name)
        if found is _MISSING or found is None:
            return False
        try:
            return bool(compare(found, value))
        except TypeError:  # a string field compared with a number
            return False

    return holds


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


def _one_source(path: str | Path | None, hub: bool) -> None:
    if path is not None and hub:
        raise UsageError("give either a file path or hub=True, not both")


@contextmanager
def _reading(path: Path) -> Iterator[TextIO]:
    """Open UTF-8 text (a BOM is dropped); undecodable bytes become a UsageError."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            yield file
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e})") from e


def _nonempty(rows: Iterator[T], path: Path, schema: str) -> Iterator[T]:
    """Pass ``rows`` through; raise when there are none."""
    empty = True
    for row in rows:
        empty = False
        yield row
    if empty:
        raise _error(path, "the file has no records", schema)


def _txt_lines(path: Path) -> Iterator[str]:
    """The stripped non-blank lines of a text file."""
    with _reading(path) as file:
        yield from (line.strip() for line in file if line.strip())


def _jsonl_rows(path: Path, schema: str) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for each non-blank line of a jsonl file."""
    with _reading(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise _error(where, f"invalid JSON ({e.msg} at column {e.colno})", schema) from e
            if not isinstance(record, dict):
                raise _error(where, f"expected a JSON object, got {type(record).__name__}", schema)
            yield where, record


def _csv_rows(path: Path, schema: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``(where, row)`` for each record of a CSV file with a header (quoted fields may span lines)."""
    with _reading(path) as file:
        reader = csv.DictReader(file)
        number = end = 0
        try:
            columns = reader.fieldnames or []
            end = reader.line_num
            for row in reader:
                number += 1
                start, end = end + 1, reader.line_num
                where = f"{path} record {number} (line {start})"
                if None in row:
                    raise _error(where, f"more fields than the {len(columns)} header columns", schema)
                yield where, row
        except csv.Error as e:
            where = f"{path} record {number + 1} (line {end + 1})"
            raise _error(where, f"bad CSV ({e})", schema) from e


def _hub_rows(name: str, config: str | None = None, *, split: str,
              streaming: bool = False) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(where, row)`` for each row of a hub data set; any failure to fetch it is a UsageError."""
    import datasets

    try:
        rows = datasets.load_dataset(name, config, split=split, streaming=streaming)
        for number, row in enumerate(rows, 1):
            yield f"{name} row {number}", row
    except Exception as e:  # load_dataset raises many types: offline, not found, gated, network
        raise UsageError(f"could not load {name!r} (split {split!r}) from the Hugging Face hub: "
                         f"{type(e).__name__}: {e}. Check the connection and HF_HUB_OFFLINE, "
                         "or give a local file path") from e


def _shuffled(items: Sequence[T], seed: int) -> list[T]:
    """``items`` in a seeded order, the same as ``datasets.Dataset.shuffle(seed=seed)``."""
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


def _first(items: list[T], n: int | None, what: str) -> list[T]:
    """The first ``n`` items (all when ``n`` is None); too few is a UsageError."""
    if n is None:
        return items
    if n < 1:
        raise UsageError(f"n must be at least 1, got {n}")
    if n > len(items):
        raise UsageError(f"asked for {n} {what}, but only {len(items)} exist")
    return items[:n]


def _prompt(record: Any, where: str) -> Prompt:
    text = _text(record, "prompt.text", where, _RTP_SCHEMA)
    toxicity = _get(record, "prompt.toxicity")
    if toxicity is _MISSING or toxicity is None:
        return Prompt(text, None)
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)) or not 0 <= toxicity <= 1:
        raise _error(where, f'field "prompt.toxicity" must be a number in [0, 1] or null, got {toxicity!r}',
                     _RTP_SCHEMA)
    return Prompt(text, float(toxicity))


def _challenging(record: Any, where: str) -> bool:
    value = _require(record, "challenging", where, _RTP_SCHEMA + ' with "challenging": true/false')
    if not isinstance(value, bool):
        raise _error(where, f'field "challenging" must be true or false, got {value!r}', _RTP_SCHEMA)
    return value


def _keep(prompt: Prompt, toxicity: str) -> bool:
    if toxicity == "all":
        return True
    return prompt.toxicity is not None and (prompt.toxicity >= HIGH_TOXICITY) == (toxicity == "high")


def load_prompts(path: str | Path | None = None, *, hub: bool = False, hub_name: str = RTP_HUB,
                 challenging_only: bool = False, toxicity: Literal["all", "low", "high"] = "all",
                 n: int | None = None, seed: int = 42) -> list[Prompt]:
    """Prompts from a RealToxicityPrompts jsonl, the hub (``hub=True``) or, with neither, the demo set.

    Filters: ``challenging_only``; ``toxicity`` "low" (< 0.5) or "high" (>= 0.5) prompt toxicity,
    which drops prompts without a score. Then a seeded shuffle and the first ``n`` (all when None).
    A missing ``prompt.toxicity`` is read as null.
    """
    if toxicity not in TOXICITY_FILTERS:
        raise UsageError(f"unknown toxicity filter {toxicity!r}: use one of {', '.join(TOXICITY_FILTERS)}")
    _one_source(path, hub)
    if hub:
        source, rows = hub_name, _hub_rows(hub_name, split="train")
    else:
        file = _existing(DEMO_DIR / "prompts.jsonl" if path is None else path)
        source, rows = file, _nonempty(_jsonl_rows(file, _RTP_SCHEMA), file, _RTP_SCHEMA)
    prompts = []
    for where, record in rows:
        prompt = _prompt(record, where)
        if (not challenging_only or _challenging(record, where)) and _keep(prompt, toxicity):
            prompts.append(prompt)
    what = f"prompts in {source} with challenging_only={challenging_only}, toxicity={toxicity!r}"
    if not prompts:
        raise UsageError(f"no {what}")
    return _first(_shuffled(prompts, seed), n, what)


def _label(value: Any, where: str, column: str) -> int:
    """A Jigsaw label: 1, 0, or -1 where Kaggle withheld it (an int from the hub, a string from a csv)."""
    if isinstance(value, str) and value.strip() in {"-1", "0", "1"}:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (-1, 0, 1):
        return value
    raise _error(where, f'field "{column}" must be 1, 0 or -1, got {value!r}', _JIGSAW_SCHEMA)


def load_jigsaw(path: str | Path | None = None, *, hub: bool = False, hub_name: str = JIGSAW_HUB,
                split: str = "train", label: str = "toxic") -> tuple[list[str], list[str]]:
    """``(toxic, nontoxic)`` comments from a Jigsaw csv, the hub (``hub=True``) or else the demo set.

    Toxic: rows with ``label`` = 1. Non-toxic: rows whose labels (the Jigsaw label columns present)
    are all 0. Rows with a -1 label (withheld by Kaggle, as in its test set) are skipped. Texts are
    stripped of surrounding whitespace. Both lists must be non-empty.
    """
    if label not in JIGSAW_LABELS:
        raise UsageError(f"unknown Jigsaw label {label!r}: use one of {', '.join(JIGSAW_LABELS)}")
    _one_source(path, hub)
    if path is None and not hub:
        if label != "toxic":
            raise UsageError(f"the demo data has only the 'toxic' label, not {label!r}: give a Jigsaw csv")
        return load_texts(kind="toxic"), load_texts(kind="nontoxic")
    if hub:
        source, rows = hub_name, _hub_rows(hub_name, split=split)
    else:
        file = _existing(path)
        source, rows = file, _nonempty(_csv_rows(file, _JIGSAW_SCHEMA), file, _JIGSAW_SCHEMA)
    toxic: list[str] = []
    nontoxic: list[str] = []
    withheld = 0
    for where, row in rows:
        text = _text(row, "comment_text", where, _JIGSAW_SCHEMA).strip()
        _require(row, label, where, _JIGSAW_SCHEMA)
        labels = {column: _label(row[column], where, column) for column in JIGSAW_LABELS if column in row}
        if -1 in labels.values():
            withheld += 1
        elif labels[label] == 1:
            toxic.append(text)
        elif not any(labels.values()):
            nontoxic.append(text)
    if not toxic or not nontoxic:
        raise UsageError(f"{source}: {len(toxic)} rows with {label}=1 and {len(nontoxic)} rows with all "
                         f"labels 0 ({withheld} rows with withheld -1 labels skipped); need both")
    return toxic, nontoxic


def load_texts(path: str | Path | None = None, *, kind: Literal["neutral", "toxic", "nontoxic"] = "neutral",
               hub: bool = False, hub_name: str = TEXT_HUB, hub_config: str | None = TEXT_HUB_CONFIG,
               split: str = "train", field: str = "text", condition: str | None = None,
               limit: int | None = None) -> list[str]:
    """Texts from a ``.txt`` (one per line) or ``.jsonl`` file (``field`` of each record), the hub or demo.

    ``field`` is a dotted path into nested records (``prompt.text``); fields joined by ``+`` are
    concatenated as written (``prompt.text+continuation.text``: RealToxicityPrompts' whole sentences).
    ``condition`` keeps only the records it holds for, ``FIELD OP VALUE`` with OP one of
    ``< <= > >= == !=`` (``continuation.toxicity<0.5``); a record whose FIELD is missing or null is left out.

    With neither ``path`` nor ``hub``: the demo file of that ``kind``. Blank lines are skipped and
    texts stripped. ``hub=True`` streams ``field`` from a hub data set (default: WikiText-103, whose
    blank lines and ``= Heading =`` lines are skipped). ``limit``: stop after that many texts.
    """
    if kind not in TEXT_KINDS:
        raise UsageError(f"unknown text kind {kind!r}: use one of {', '.join(TEXT_KINDS)}")
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    _one_source(path, hub)
    schema = f'one text per line (.txt) or jsonl records with {" and ".join(repr(f) for f in field.split("+"))}'
    kept = _condition(condition)
    if hub:
        source = hub_name
        rows = _hub_rows(hub_name, hub_config, split=split, streaming=True)
        texts = (text for where, row in rows if kept(row)
                 if (text := _joined(row, field, where, schema, allow_blank=True).strip())
                 and not _WIKITEXT_HEADING.fullmatch(text))
    else:
        source = file = _existing(DEMO_DIR / f"{kind}.txt" if path is None else path)
        if file.suffix == ".txt":
            if condition:
                raise _error(file, f"a .txt file has no fields to test {condition!r} on", "a .jsonl file")
            texts = _txt_lines(file)
        elif file.suffix == ".jsonl":
            records = _jsonl_rows(file, schema)
            texts = (_joined(record, field, where, schema).strip() for where, record in records if kept(record))
        else:
            raise _error(file, f"unsupported file type {file.suffix!r}", schema)
    result = list(itertools.islice(texts, limit))
    if not result:
        raise _error(source, "no texts", schema)
    return result


def balanced_sample(texts: Sequence[str], n: int, seed: int, *, name: str = "texts") -> list[str]:
    """``n`` of ``texts`` drawn without replacement in a seeded order (a prefix of the seeded shuffle)."""
    return _first(_shuffled(texts, seed), n, name)


def fit_sets(source: Sequence[str], target: Sequence[str], control: Sequence[str], n: int,
             seed: int) -> FitSets:
    """``n`` seeded samples of each set: each is ``balanced_sample(texts, n, seed)``."""
    return FitSets(balanced_sample(source, n, seed, name="source texts"),
                   balanced_sample(target, n, seed, name="target texts"),
                   balanced_sample(control, n, seed, name="control texts"))
