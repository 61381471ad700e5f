"""The results store: torn tails, corrupt lines, full writes, and --fresh forgetting only its own cells."""

import json

import pytest
from conftest import tiny_run_config

from dsas_bench.core.errors import UsageError
from dsas_bench.run.interventions import fit_cache
from dsas_bench.run.results import ResultsStore
from dsas_bench.run.sweep import run_sweep


def store_with(tmp_path, *rows: dict, tail: bytes = b"") -> ResultsStore:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)
    with store.path.open("ab") as file:
        file.write(tail)
    return store


def test_readers_skip_a_torn_tail_and_leave_the_file_alone(tmp_path):
    torn = b'{"cell_id": "c", "metrics": {"tox'
    store = store_with(tmp_path, {"cell_id": "a"}, {"cell_id": "b"}, tail=torn)
    size = store.path.stat().st_size
    assert [row["cell_id"] for row in store.rows()] == ["a", "b"] and store.done() == {"a", "b"}
    assert store.path.stat().st_size == size  # a reader never truncates a row being written
    store.repair()
    assert store.path.read_bytes().endswith(b'"b"}\n')
    store.append({"cell_id": "c"})
    assert [row["cell_id"] for row in store.rows()] == ["a", "b", "c"]


def test_a_corrupt_line_names_the_file_and_line(tmp_path):
    store = store_with(tmp_path, {"cell_id": "a"}, tail=b"\n")
    assert store.done() == {"a"}  # a blank line is no row, and no error
    store = store_with(tmp_path / "corrupt", {"cell_id": "a"}, tail=b"not json\n")
    with pytest.raises(UsageError, match=r"results.jsonl, line 2: not a result row .*delete that line"):
        store.rows()


def test_a_large_row_is_written_whole(tmp_path):
    big = {"cell_id": "big", "continuations": ["x" * 1000] * 5000}  # 5 MB in one line
    store = store_with(tmp_path, big)
    assert store.rows() == [big]


def test_forget_keeps_other_rows(tmp_path):
    store = store_with(tmp_path, *({"cell_id": name} for name in "abcd"))
    store.forget({"b", "d"})
    assert [row["cell_id"] for row in store.rows()] == ["a", "c"]


def test_fresh_recomputes_and_refits_this_runs_cells_only(tiny_model_dir, tmp_path):
    other = {"cell_id": "another-run", "method": "iti"}
    ResultsStore(tmp_path).append(other)
    config = tiny_run_config(tiny_model_dir, tmp_path, methods=["meanacts"], dsas=["on"])
    first = list(run_sweep(config))
    state = fit_cache(config, "meanacts", "on", 0) / "method.pt"
    fitted_at = state.stat().st_mtime_ns
    assert list(run_sweep(config)) == [] and state.stat().st_mtime_ns == fitted_at  # resumed: nothing redone
    again = list(run_sweep(config, fresh=True))
    assert state.stat().st_mtime_ns > fitted_at  # refitted, not loaded
    volatile = ("created", "wall_time_s")
    assert [{k: v for k, v in row.items() if k not in volatile} for row in again] == [
        {k: v for k, v in row.items() if k not in volatile} for row in first]  # same config, same numbers
    stored = ResultsStore(tmp_path).rows()
    assert stored[0] == other and len(stored) == 1 + len(first)
    assert json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0]) == other


def test_results_csv_grows_with_every_row_and_takes_new_columns(tmp_path):
    import csv

    store = ResultsStore(tmp_path)
    store.append({"cell_id": "a", "metrics": {"tox_pct": 1.0}})
    store.append({"cell_id": "b", "metrics": {"tox_pct": 2.0}})
    store.append({"cell_id": "c", "metrics": {"tox_pct": 3.0, "perplexity": 9.0}})  # a new column: rewritten
    store.append({"cell_id": "d", "metrics": {"perplexity": 4.0}})  # a missing column: left blank
    with (tmp_path / "results.csv").open(newline="") as file:
        table = list(csv.DictReader(file))
    assert [(row["cell_id"], row["metrics.tox_pct"], row["metrics.perplexity"]) for row in table] == [
        ("a", "1.0", ""), ("b", "2.0", ""), ("c", "3.0", "9.0"), ("d", "", "4.0")]


def test_repair_keeps_the_first_row_of_a_repeated_cell_id(tmp_path, capsys):
    store = store_with(tmp_path, {"cell_id": "a", "n": 1}, {"cell_id": "b"}, {"cell_id": "a", "n": 2})
    store.repair()
    assert [(row["cell_id"], row.get("n")) for row in store.rows()] == [("a", 1), ("b", None)]
    assert "1 rows repeat a cell id" in capsys.readouterr().err
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 3


def test_repair_and_forget_refuse_a_folder_another_writer_holds(tmp_path):
    store = store_with(tmp_path, {"cell_id": "a"})
    with ResultsStore(tmp_path).writing():  # another writer: its own lock on the folder
        for write in (store.repair, lambda: store.forget({"a"}), lambda: store.append({"cell_id": "b"})):
            with pytest.raises(UsageError, match="being written by another dsas-bench process"):
                write()
    assert store.done() == {"a"}


def test_quality_flags_name_absurd_results():
    from dsas_bench.run.results import quality_flags

    assert quality_flags({"perplexity": 12.0, "tox_mean": 0.1}, ["a", ""], "tox_mean", "toxicity") == []
    assert quality_flags({"perplexity": float("nan"), "tox_mean": float("nan")}, ["", " "], "tox_mean", "toxicity") == [
        "nan-perplexity", "nan-toxicity", "empty-continuations"]
