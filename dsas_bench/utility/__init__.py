"""Utility metrics: what steering costs, measured on the steered model (hooks active) for every result row.

Built in: ``perplexity`` (of the run's neutral texts; the utility budget of ``--strengths auto`` and the
fronts' axis, so every run measures it) and ``lm-eval`` (accuracy on the run's ``lm_eval_tasks``, measured
only when tasks are given). The run config's ``utility`` list names the metrics a run measures, in order,
and ``utility_options`` their options by name. Another package adds one (a ``UtilityMetric`` subclass)
through the ``dsas_bench.utility`` entry-point group::

    [project.entry-points."dsas_bench.utility"]
    mymetric = "my_package.utility:MyMetric"

This module imports no torch: names and options can be checked before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dsas_bench.core.errors import UsageError
from dsas_bench.core.registry import Registry, check_options

if TYPE_CHECKING:
    from dsas_bench.utility.base import UtilityMetric

__all__ = ["DEFAULT_UTILITY", "REQUIRED", "UTILITY", "build_utility", "check_utility", "register_utility"]

UTILITY: Registry[UtilityMetric] = Registry("utility metric", "dsas_bench.utility.base:UtilityMetric",
                                            "dsas_bench.utility")
UTILITY.add("perplexity", "dsas_bench.utility.perplexity:Perplexity", "ppl")
UTILITY.add("lm-eval", "dsas_bench.utility.lmeval:LmEvalAccuracy", "lmeval")
register_utility = UTILITY.register
DEFAULT_UTILITY = ["perplexity", "lm-eval"]
REQUIRED = "perplexity"  # the calibration budget, the explosion flag and every front read it


def check_utility(names: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> tuple[list[str],
                                                                                             dict[str, dict]]:
    """``names`` as registered names (each once, ``perplexity`` among them) and ``options`` checked against
    each metric's ``defaults`` and ``option_types``; a UsageError names an unknown metric or option."""
    canonical = list(dict.fromkeys(UTILITY.canonical(name) for name in names))
    if REQUIRED not in canonical:
        raise UsageError(f"utility {', '.join(canonical) or '(none)'} leaves out {REQUIRED!r}, which the perplexity "
                         f"budget and the fronts read: add it, e.g. utility: [{REQUIRED}, {', '.join(canonical)}]")
    checked: dict[str, dict] = {}
    for name, given in options.items():
        key = UTILITY.canonical(name)
        if key not in canonical:
            raise UsageError(f"utility options given for {key!r}, which this run does not measure (its utility "
                             f"metrics: {', '.join(canonical)}): add it to utility or drop its options")
        cls = UTILITY.get(key)
        checked[key] = check_options(f"utility metric {key!r}", cls.defaults, given, cls.option_types)
    return canonical, {key: value for key, value in checked.items() if value}


def build_utility(names: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> list[UtilityMetric]:
    """The metrics ``names`` (checked by ``check_utility``), each built with its defaults and given options."""
    canonical, checked = check_utility(names, options)
    return [UTILITY.get(name)(checked.get(name)) for name in canonical]
