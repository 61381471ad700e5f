"""Strength grids and the utility budget: what ``--strengths`` and ``--max-delta-ppl`` mean (no torch).

λ means something different for each method (a transport's λ ∈ [0, 1] against a raw vector's
coefficient, METHODS.md §4), so one grid cannot serve them all. A strength spec is one of

- ``"auto"``: per (method, DSAS mode, seed), calibrate λ_max to the budget and sweep K points in (0, λ_max];
- ``"paper"``: each method's own range from its paper (``SteeringMethod.strength_range``);
- a list of numbers: the same grid for every method;
- a mapping ``{"linacts": [0.25, 0.5], "actadd": [1, 2, 4], "iti:on": "auto"}``: per method, or per
  method and DSAS mode (``method:mode``, which wins over ``method``); a method it does not name uses
  its paper range. On the command line: ``linacts=0.25,0.5;actadd=1,2,4;iti:on=auto``.

A budget is absolute (``1``: perplexity at most +1 above the unsteered model, AcT's) or relative
(``"5%"``: at most 5 % above it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dsas_bench.core.errors import UsageError

AUTO, PAPER = "auto", "paper"
SPACINGS = ("linear", "geometric")
Grid = list[float] | str  # a list of strengths, AUTO or PAPER
StrengthSpec = Grid | dict[str, Grid]
EXAMPLE = "e.g. --strengths auto, --strengths 0.25,0.5,1 or --strengths 'linacts=0.25,0.5;actadd=1,2,4'"


@dataclass(frozen=True)
class Budget:
    """How far above the unsteered perplexity a point may go: ``value`` in PPL units, or in % when relative."""

    value: float
    relative: bool = False

    def delta(self, unsteered: float) -> float:
        """The allowed perplexity increase over ``unsteered``."""
        return unsteered * self.value / 100 if self.relative else self.value

    def __str__(self) -> str:
        return f"+{self.value:g}{'%' if self.relative else ''}"


def parse_budget(value: Any) -> Budget:
    """``1``, ``"1.5"`` or ``"5%"`` as a Budget; a UsageError unless positive and finite."""
    text = str(value).strip()
    relative = text.endswith("%")
    try:
        number = float(text.rstrip("%")) if not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise UsageError(f"perplexity budget {value!r} is not a positive number: use e.g. 1 (absolute, +1 PPL) "
                         f"or 5% (relative to the unsteered perplexity)")
    return Budget(number, relative)


def _numbers(values: Any, where: str) -> Grid:
    """A checked grid: AUTO, PAPER, or a non-empty list of finite numbers as floats."""
    if values in (AUTO, PAPER):
        return values
    if not isinstance(values, list) or not values:
        raise UsageError(f"{where}: a strength grid is 'auto', 'paper' or a non-empty list of numbers, got {values!r}; "
                         f"{EXAMPLE}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UsageError(f"{where}: strength {value!r} is not a finite number; {EXAMPLE}")
    return [float(value) for value in values]


def parse_strengths_text(text: str) -> StrengthSpec:
    """The command-line form: ``auto``, ``paper``, ``0.25,0.5`` or ``method[:mode]=grid;...``."""
    text = text.strip()
    if text in (AUTO, PAPER):
        return text
    if "=" not in text:
        return _numbers(_floats(text), "--strengths")
    grids: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, values = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--strengths: {part!r} is not METHOD[:MODE]=GRID; {EXAMPLE}")
        values = values.strip()
        grids[key.strip()] = values if values in (AUTO, PAPER) else _floats(values)
    return grids


def _floats(text: str) -> list[Any]:
    """Comma-separated numbers; a part that is not one is kept as text for the error to name."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    parsed: list[Any] = []
    for part in parts:
        try:
            number = float(part)
        except ValueError:
            number = math.nan
        parsed.append(number if math.isfinite(number) else part)
    return parsed


def check_strengths(spec: Any) -> StrengthSpec:
    """A strength spec with method names resolved and every grid checked; UsageError naming the fix."""
    from dsas_bench.methods import METHODS
    from dsas_bench.scalers import SCALERS

    if spec in (AUTO, PAPER):
        return spec
    if isinstance(spec, str):  # the command-line form, e.g. from --set strengths=0.25,1
        spec = parse_strengths_text(spec)
    if not isinstance(spec, dict):
        return _numbers(spec, "strengths")
    checked: dict[str, Grid] = {}
    for key, grid in spec.items():
        method, _, mode = str(key).partition(":")
        try:
            name = METHODS.canonical(method)
            mode = mode and SCALERS.canonical(mode)
        except UsageError as exc:
            raise UsageError(f"strength grid {key!r}: {exc}") from None
        checked[f"{name}:{mode}" if mode else name] = _numbers(grid, f"strength grid {key!r}")
    return checked


def grid_for(spec: StrengthSpec, method: str, mode: str) -> Grid:
    """The grid of one (method, DSAS mode): its strengths, or AUTO to calibrate them."""
    from dsas_bench.methods import get_method

    if isinstance(spec, dict):
        chosen = spec.get(f"{method}:{mode}", spec.get(method, PAPER))
    else:
        chosen = spec
    return list(get_method(method).strength_range) if chosen == PAPER else chosen


def spaced(lambda_max: float, n: int, spacing: str) -> list[float]:
    """``n`` strengths in (0, λ_max], λ_max last: evenly spaced, or halving from λ_max (geometric); 4 digits."""
    if spacing == "linear":
        points = [lambda_max * (i + 1) / n for i in range(n)]
    else:
        points = [lambda_max / 2 ** (n - 1 - i) for i in range(n)]
    return [float(f"{point:.4g}") for point in points]
