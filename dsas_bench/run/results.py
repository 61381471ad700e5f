"""The results store: append-only JSONL, one row per (run config, strength, seed), plus a CSV export.

Only the sweep's parent process writes, holding the folder's writer lock (``.lock``) for the whole
sweep: a second writer fails at once, naming the process that holds it. Each row is appended as one
whole line followed by an fsync (and as one line of ``results.csv``), so a crash or a Ctrl-C loses at
most the row being written. Readers skip a torn last line (a kill mid-write, or a row being written
right now); the writer cuts it off before it appends. Rerunning skips cells whose ``cell_id`` is
already stored.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import filelock

from dsas_bench.core.errors import UsageError, warn

ROWS_FILE = "results.jsonl"
CSV_FILE = "results.csv"
LOCK_FILE, OWNER_FILE = ".lock", ".lock.owner"
CSV_LISTS = ("prompt_scores", "continuations", "prompts")  # per-prompt lists stay in the JSONL only


class ResultsStore:
    """``results.jsonl`` in one output directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / ROWS_FILE
        self._lock = filelock.FileLock(self.directory / LOCK_FILE, timeout=0, thread_local=False)

    def check_writable(self) -> None:
        """Fail with the fix unless the directory is, or can be made, a writable folder nobody else is writing."""
        check_output_dir(self.directory)
        if self.directory.is_dir():
            with self.writing():
                pass

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the folder's writer lock for the block (re-entrant; creates the folder), or fail naming its holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        owner = self.directory / OWNER_FILE
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = owner.read_text(encoding="utf-8", errors="replace").strip() if owner.exists() else "unknown"
            raise UsageError(f"{self.directory} is being written by another dsas-bench process ({holder}): wait "
                             f"for it to finish (rerunning then skips the cells it stored), or give another "
                             f"--output") from None
        try:
            if self._lock.lock_counter == 1:
                owner.write_text(f"pid {os.getpid()} on {socket.gethostname()} since "
                                 f"{datetime.datetime.now().isoformat(timespec='seconds')}: {' '.join(sys.argv)}",
                                 encoding="utf-8")
            yield
        finally:
            if self._lock.lock_counter == 1:
                owner.unlink(missing_ok=True)
            self._lock.release()

    def _complete(self) -> bytes:
        """The file up to its last newline: every complete line, without a torn tail."""
        if not self.path.exists():
            return b""
        data = self.path.read_bytes()
        return data[: data.rfind(b"\n") + 1]

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row (reading never changes the file)."""
        rows = []
        for number, line in enumerate(self._complete().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UsageError(f"{self.path}, line {number}: not a result row ({exc}); delete that line "
                                 f"and rerun to recompute its cell") from exc
            if not isinstance(row, dict) or "cell_id" not in row:
                raise UsageError(f"{self.path}, line {number}: not a dsas-bench result row (it has no cell_id); "
                                 f"delete that line, or point at a results.jsonl written by dsas-bench")
            rows.append(row)
        return rows

    def done(self) -> set[str]:
        """The ``cell_id`` of every stored row."""
        return {row["cell_id"] for row in self.rows()}

    def repair(self) -> None:
        """Cut off a torn last line left by a kill mid-write, and drop repeated cell ids (keeping the first)."""
        with self.writing():
            complete = self._complete()
            if self.path.exists() and self.path.stat().st_size != len(complete):
                with self.path.open("r+b") as file:
                    file.truncate(len(complete))
            rows = self.rows()
            unique = unique_rows(rows, str(self.path))
            if len(unique) != len(rows):
                self._replace(unique)
            elif rows:
                self.export_csv()  # a kill between the JSONL and the CSV line leaves the CSV a row behind

    def append(self, row: dict[str, Any]) -> None:
        """Append one row as a whole line, then fsync; and as a line of results.csv."""
        line = memoryview(_line(row))
        with self.writing():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                while line:  # os.write may write less than asked (a full disk, a signal)
                    line = line[os.write(fd, line):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._append_csv(row)

    def forget(self, cell_ids: set[str]) -> None:
        """Drop the rows of these cells (``--fresh``), keeping every other row; the file is replaced atomically."""
        with self.writing():
            if self.path.exists():
                self._replace([row for row in self.rows() if row["cell_id"] not in cell_ids])

    def _replace(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file by ``rows`` atomically (under the writer lock), and results.csv with it."""
        tmp = self.directory / f".{ROWS_FILE}.tmp{os.getpid()}"
        tmp.write_bytes(b"".join(map(_line, rows)))
        tmp.replace(self.path)
        self.export_csv()

    def _append_csv(self, row: dict[str, Any]) -> None:
        """One line more in results.csv; the whole file rewritten only when the row brings new columns."""
        flat, target = flatten(row), self.directory / CSV_FILE
        with contextlib.suppress(FileNotFoundError), target.open(newline="") as file:
            header = next(csv.reader(file), None)
            if header and set(flat) <= set(header):
                with target.open("a", newline="") as out:
                    csv.DictWriter(out, fieldnames=header, restval="").writerow(flat)
                return
        self.export_csv()

    def export_csv(self) -> Path:
        """Flatten the rows (metrics as columns, per-prompt lists left out) into results.csv, atomically."""
        flat = [flatten(row) for row in self.rows()]
        columns = sorted({key for row in flat for key in row})
        tmp = self.directory / f".{CSV_FILE}.tmp{os.getpid()}"
        with tmp.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(flat)
        target = self.directory / CSV_FILE
        tmp.replace(target)
        return target


EXPLOSION_FACTOR = 10  # a steered perplexity above this multiple of the unsteered one is flagged exploded
EXPLODED_FLAGS = frozenset({"nan-perplexity", "exploded-perplexity"})


def quality_flags(metrics: dict[str, Any], continuations: list[str], mean_score: str, behavior: str) -> list[str]:
    """Why a row's numbers are absurd (they are kept out of fronts): ``nan-perplexity``, ``exploded-perplexity``
    (over ``EXPLOSION_FACTOR``× the unsteered one), ``nan-<behavior>`` (its ``mean_score`` metric is NaN, e.g.
    ``nan-toxicity``),
    ``empty-continuations`` (every continuation empty, e.g. at an absurd strength)."""
    flags = []
    if not math.isfinite(metrics["perplexity"]):
        flags.append("nan-perplexity")
    elif metrics.get("perplexity_exploded"):
        flags.append("exploded-perplexity")
    if not math.isfinite(metrics[mean_score]):
        flags.append(f"nan-{behavior}")
    if continuations and not any(text.strip() for text in continuations):
        flags.append("empty-continuations")
    return flags


def _line(row: dict[str, Any]) -> bytes:
    """A row as one JSONL line."""
    return (json.dumps(row, sort_keys=True) + "\n").encode()


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted columns; lists become JSON strings; per-prompt lists are dropped."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key in CSV_LISTS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def load_rows(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Rows from results directories or JSONL files; a cell id stored twice in one file is kept once, with a
    warning."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        store = ResultsStore(path if path.is_dir() else path.parent)
        if path.is_file():
            store.path = path
        if not path.exists() or not store.path.exists():
            raise UsageError(f"no results at {path}: run `dsas-bench run` first, or point at its --output")
        rows.extend(unique_rows(store.rows(), str(store.path)))
    return rows


def unique_rows(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """The first row of each cell id; a warning on stderr when some cell id is there more than once."""
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["cell_id"], row)
    unique = list(first.values())
    if len(unique) != len(rows):
        warn(f"{source}: {len(rows) - len(unique)} rows repeat a cell id (two writers?); keeping the first of each")
    return unique


def check_output_dir(directory: str | Path, flag: str = "--output") -> None:
    """Fail with the fix unless ``directory`` is a writable folder or can be created as one; creates nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{flag} {directory} is not writable: it is a file, not a folder; choose another {flag}")
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    if not existing.is_dir():
        raise UsageError(f"{flag} {directory} is not writable: {existing} is a file; choose another {flag}")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise UsageError(f"{flag} {directory} is not writable ({exc.strerror} in {existing}): choose another "
                         f"{flag}") from exc
