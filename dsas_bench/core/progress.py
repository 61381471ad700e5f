"""Progress bars for long loops: tqdm on stderr, none for short loops, none at all inside ``quiet()``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
MIN_STEPS = 4  # shorter loops get no bar
_quiet = False  # per process, set by ``quiet``


def bar(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """``items`` with a transient progress bar when there are at least ``MIN_STEPS`` of them."""
    total = len(items) if total is None else total  # type: ignore[arg-type]
    if total < MIN_STEPS or _quiet:
        return items
    return tqdm(items, desc=desc, total=total, leave=False)


@contextmanager
def quiet(active: bool = True) -> Iterator[None]:
    """No progress bars from ``bar`` inside the block (when ``active``); the previous setting is restored on exit."""
    global _quiet
    before = _quiet
    _quiet = before or active
    try:
        yield
    finally:
        _quiet = before
