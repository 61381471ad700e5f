"""The results store: append-only JSONL, one row per (run config, strength, seed), plus a CSV export.

Only the sweep's parent process writes. Each row is appended as one whole line followed by an
fsync, so a crash or a Ctrl-C loses at most the row being written. Readers skip a torn last line
(a kill mid-write, or a row being written right now); the writer cuts it off before it appends.
Rerunning skips cells whose ``cell_id`` is already stored.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dsas_bench.errors import UsageError

ROWS_FILE = "results.jsonl"
CSV_FILE = "results.csv"
CSV_LISTS = ("prompt_scores", "continuations", "prompts")  # per-prompt lists stay in the JSONL only


class ResultsStore:
    """``results.jsonl`` in one output directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / ROWS_FILE

    def check_writable(self) -> None:
        """Create the directory and prove it takes files, or fail with the fix."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"output directory {self.directory} is not writable ({exc.strerror}): "
                             f"choose another with --output") from exc

    def _complete(self) -> bytes:
        """The file up to its last newline: every complete line, without a torn tail."""
        if not self.path.exists():
            return b""
        data = self.path.read_bytes()
        return data[: data.rfind(b"\n") + 1]

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row (reading never changes the file)."""
        rows = []
        for number, line in enumerate(self._complete().decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UsageError(f"{self.path}, line {number}: not a result row ({exc}); delete that line "
                                 f"and rerun to recompute its cell") from exc
        return rows

    def done(self) -> set[str]:
        """The ``cell_id`` of every stored row."""
        return {row["cell_id"] for row in self.rows()}

    def repair(self) -> None:
        """Cut off a torn last line left by a kill mid-write (writer only: call before appending)."""
        complete = self._complete()
        if self.path.exists() and self.path.stat().st_size != len(complete):
            with self.path.open("r+b") as file:
                file.truncate(len(complete))

    def append(self, row: dict[str, Any]) -> None:
        """Append one row as a whole line, then fsync."""
        line = memoryview(_line(row))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while line:  # os.write may write less than asked (a full disk, a signal)
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def forget(self, cell_ids: set[str]) -> None:
        """Drop the rows of these cells (``--fresh``), keeping every other row; the file is replaced atomically."""
        if not self.path.exists():
            return
        kept = [row for row in self.rows() if row["cell_id"] not in cell_ids]
        tmp = self.directory / f".{ROWS_FILE}.tmp{os.getpid()}"
        tmp.write_bytes(b"".join(map(_line, kept)))
        tmp.replace(self.path)

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
    """Rows from results directories or JSONL files."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        store = ResultsStore(path if path.is_dir() else path.parent)
        if path.is_file():
            store.path = path
        if not store.path.exists():
            raise UsageError(f"no results at {path}: run `dsas-bench run` first, or point at its --output")
        rows.extend(store.rows())
    return rows
