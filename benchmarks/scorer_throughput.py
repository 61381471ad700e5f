"""Throughput of every toxicity scorer available on this machine, side by side on the same texts.

    python benchmarks/scorer_throughput.py [--texts 3000] [--repeats 5] [--scorers a,b] [--data train.csv]

Within each repeat the scorers run one after the other, so a busy machine slows them alike. The
table gives medians over repeats of texts per wall-clock second and per CPU-second (all threads
of this process; robust to other load on shared cores). Hub access stays off unless
HF_HUB_OFFLINE is set otherwise, so only weights already on this machine are measured.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from dsas_bench.behaviors.toxicity.scorers import AUTO, get_scorer, scorer_names  # noqa: E402
from dsas_bench.behaviors.toxicity.scorers.base import ToxicityScorer  # noqa: E402
from dsas_bench.core.errors import UsageError  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jigsaw" / "train.csv"


def load_texts(path: Path, count: int) -> list[str]:
    """``count`` texts: the ``comment_text`` column of a Jigsaw CSV, repeated as needed."""
    if not path.is_file():
        raise UsageError(f"no Jigsaw CSV at {path}: pass --data <a CSV with a comment_text column>")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "comment_text" not in rows[0]:
        raise UsageError(f"{path} has no comment_text column (or no rows): pass a Jigsaw train.csv")
    comments = [row["comment_text"] for row in rows]
    return (comments * (count // len(comments) + 1))[:count]


def load_scorers(names: list[str]) -> tuple[dict[str, ToxicityScorer], dict[str, float], dict[str, str]]:
    """The scorers that load here, their load times, and why the others do not."""
    loaded, load_seconds, missing = {}, {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            loaded[name] = get_scorer(name)
        except UsageError as exc:
            missing[name] = str(exc)
        load_seconds[name] = time.perf_counter() - start
    return loaded, load_seconds, missing


def measure(scorer: ToxicityScorer, texts: list[str]) -> tuple[float, float]:
    """Texts per wall-clock second and per CPU-second of one ``score`` call."""
    wall, cpu = time.perf_counter(), time.process_time()
    scorer.score(texts)
    return len(texts) / (time.perf_counter() - wall), len(texts) / max(time.process_time() - cpu, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=3000, help="number of texts scored per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the table shows medians")
    parser.add_argument("--scorers", default=",".join(name for name in scorer_names() if name != AUTO),
                        help="comma-separated scorer names")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="Jigsaw CSV with a comment_text column")
    args = parser.parse_args(argv)
    try:
        if args.texts < 1 or args.repeats < 1:
            raise UsageError("--texts and --repeats must be positive integers")
        texts = load_texts(args.data, args.texts)
        scorers, load_seconds, missing = load_scorers([name.strip() for name in args.scorers.split(",")])
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for scorer in scorers.values():
        scorer.score(texts[:64])  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in scorers}
    cpu: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(args.repeats):
        for name, scorer in scorers.items():
            per_wall, per_cpu = measure(scorer, texts)
            wall[name].append(per_wall)
            cpu[name].append(per_cpu)

    words = sum(len(text.split()) for text in texts) / len(texts)
    print(f"{len(texts)} texts ({words:.0f} words on average) from {args.data}; "
          f"median of {args.repeats} repeats; torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'scorer':<15}{'texts/s':>10}{'texts/CPU-s':>13}{'load s':>8}  weights")
    for name in scorers:
        print(f"{name:<15}{statistics.median(wall[name]):>10.0f}{statistics.median(cpu[name]):>13.0f}"
              f"{load_seconds[name]:>8.1f}  {scorers[name].describe()['weights']}")
    for name in missing:
        print(f"{name:<15}{'unavailable':>10}")
    for name, reason in missing.items():
        print(f"\n{name} is unavailable: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
