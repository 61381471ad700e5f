"""What the benchmark scripts share: the machine, interleaved repeats, medians, peak memory, a fresh cache, tables.

The machine is shared with other work, so absolute times drift: scripts time their cases side by side,
interleaved round by round in a rotating order, and report medians and per-round ratios.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch

from dsas_bench.core.data import FitSets, load_texts

T = TypeVar("T")
Times = tuple[float, float]  # wall-clock and CPU seconds


def script_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script whose docstring is ``doc``, with ``--threads``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, busy machine more threads wait on each other)")
    return parser


def start(args: argparse.Namespace) -> None:
    """Set the torch threads asked for and print the machine."""
    torch.set_num_threads(args.threads)
    print(machine())


def machine() -> str:
    """One line: cores, CPU model, torch version and threads, load average now."""
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} cores, {cpu.group(1) if cpu else platform.processor()}, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, load average {load}")


def interleaved(cases: Mapping[str, Callable[[], T]], repeats: int, warmup: int = 1) -> dict[str, list[T]]:
    """What each case returns, per round: ``repeats`` rounds, each running every case once, in an order rotated
    by one per round; ``warmup`` rounds first, not kept."""
    names = list(cases)
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            result = cases[name]()
            if round_ >= warmup:
                results[name].append(result)
    return results


def timed(call: Callable[[], object]) -> Callable[[], Times]:
    """``call`` made to return its wall-clock and CPU seconds (CPU: all threads of this process; with one thread,
    time spent waiting for a core that other work holds does not count)."""
    def run() -> Times:
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        return time.perf_counter() - wall, time.process_time() - cpu
    return run


def ratio(times: Mapping[str, Sequence[Times]], numerator: str, denominator: str, clock: int) -> float:
    """Median over rounds of time(numerator) / time(denominator), both measured in the same round, on ``clock``
    (0: wall, 1: CPU)."""
    return statistics.median(a[clock] / b[clock] for a, b in zip(times[numerator], times[denominator], strict=True))


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """``with peak_rss() as peak:`` sets ``peak["mib"]`` to the peak resident memory inside the block minus the
    resident memory before it. Linux with glibc: freed heap memory is first returned to the system (malloc_trim),
    so the block's allocations show as growth, and the high-water mark is reset through /proc/self/clear_refs."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_kib("VmRSS")
    peak: dict[str, float] = {}
    try:
        yield peak
    finally:
        peak["mib"] = (_rss_kib("VmHWM") - before) / 1024


@contextmanager
def fresh_cache() -> Iterator[Path]:
    """An empty ``DSAS_BENCH_CACHE`` inside the block, so activations and fitted states are computed, not loaded."""
    previous = os.environ.get("DSAS_BENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="dsas-bench-cache-") as folder:
        os.environ["DSAS_BENCH_CACHE"] = folder
        try:
            yield Path(folder)
        finally:
            if previous is None:
                del os.environ["DSAS_BENCH_CACHE"]
            else:
                os.environ["DSAS_BENCH_CACHE"] = previous


def demo_fit_sets(n: int = 32) -> FitSets:
    """The first ``n`` demo sentences of each kind: toxic source, non-toxic target, neutral control."""
    return FitSets(*(load_texts(kind=kind)[:n] for kind in ("toxic", "nontoxic", "neutral")))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, ready to paste into BENCHMARKS.md."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
