"""Behaviours: what a run steers away from and towards, and how it measures that.

A behaviour supplies the fit sets (source texts to steer away from, target texts to steer towards,
neutral control texts), the prompts, its scorer, the summary of scored continuations that result
rows hold, and its objectives (name, label, unit, direction), one of them the default that fronts,
plots and leaderboards rank by. Built in: ``toxicity`` (the default; the AcT / LinEAS / DSAS papers'
benchmark) and ``sentiment`` (negative → positive, scored offline by VADER). Another package adds
one through the ``dsas_bench.behaviors`` entry-point group (a ``Behavior`` subclass)::

    behavior = get_behavior("sentiment")
    source, target = behavior.fit_texts("demo", "toxic")
    row_fields = behavior.scored_row(continuations, scorer.score(continuations), prompts, 1, seed=0)

This module imports nothing heavy: names and options can be checked before anything loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dsas_bench.core.errors import UsageError
from dsas_bench.core.registry import Registry, check_options

if TYPE_CHECKING:
    from dsas_bench.behaviors.base import Behavior

__all__ = ["BEHAVIORS", "DEFAULT_BEHAVIOR", "check_behavior", "get_behavior", "register_behavior", "row_behavior"]

DEFAULT_BEHAVIOR = "toxicity"
BEHAVIORS: Registry[Behavior] = Registry("behaviour", "dsas_bench.behaviors.base:Behavior", "dsas_bench.behaviors")
BEHAVIORS.add("toxicity", "dsas_bench.behaviors.toxicity:Toxicity", "detoxification")
BEHAVIORS.add("sentiment", "dsas_bench.behaviors.sentiment:Sentiment", "positivity")
register_behavior = BEHAVIORS.register


def check_behavior(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered name behind ``name`` and its ``options`` checked and coerced (a UsageError naming the
    registered behaviours or the behaviour's options otherwise)."""
    cls = BEHAVIORS.get(name)
    return cls.name, check_options(f"behaviour {cls.name!r}", cls.defaults, options, cls.option_types)


def get_behavior(name: str = DEFAULT_BEHAVIOR, **options: Any) -> Behavior:
    """The behaviour registered under ``name``, built with its ``options``."""
    return BEHAVIORS.get(name)(**options)


def row_behavior(rows: Sequence[Mapping[str, Any]]) -> Behavior:
    """The behaviour the ``rows`` measured (rows older than behaviours measured toxicity), built with the options
    they recorded; rows of different behaviours or options are not comparable and refused."""
    recorded = {(str(row.get("behavior", DEFAULT_BEHAVIOR)), repr(sorted(row.get("behavior_options", {}).items()))): row
                for row in rows}
    if len(recorded) > 1:
        found = ", ".join(sorted(f"{name} {options}" for name, options in recorded))
        raise UsageError(f"results mix behaviours (or their options): {found}; their numbers are not comparable: "
                         "analyse the rows of one behaviour at a time")
    if not recorded:
        return get_behavior()
    (name, _), row = next(iter(recorded.items()))
    return get_behavior(name, **row.get("behavior_options", {}))
