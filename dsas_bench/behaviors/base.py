"""What every behaviour shares: its objectives, options, data sources and the row fields of scored text."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

import numpy as np

from dsas_bench.behaviors import BEHAVIORS
from dsas_bench.core.data import Prompt, load_texts
from dsas_bench.core.errors import UsageError
from dsas_bench.core.registry import resolve_options
from dsas_bench.core.stats import bootstrap_ci

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Objective:
    """One number a behaviour summarises continuations by: a mean over prompts, with a prompt-bootstrap CI."""

    name: str  # the key in a row's ``metrics``
    label: str  # how tables and axes name it
    unit: str  # "%" or "" (a score)
    direction: Direction  # "min": lower is better; "max": higher is better
    short: str = ""  # a column heading of at most 7 characters (the name when empty)

    @property
    def heading(self) -> str:
        return self.short or self.name[:7]

    @property
    def better(self) -> str:
        return "lower is better" if self.direction == "min" else "higher is better"

    def gain(self, value: float, reference: float) -> float:
        """How much better ``value`` is than ``reference`` (positive: better) in this objective's direction."""
        return reference - value if self.direction == "min" else value - reference


class Published(NamedTuple):
    """One published result of a behaviour: its objective, Wikipedia perplexity and MMLU accuracy (a fraction)."""

    source: str
    model: str
    method: str
    value: float
    perplexity: float
    accuracy: float
    scorer: str
    prompt_set: str


class Scorer(Protocol):
    """What a behaviour's scorer does: one score per text, and what identifies the scores in a row."""

    reported_name: str

    def score(self, texts: Sequence[str]) -> np.ndarray: ...

    def describe(self) -> dict[str, str]: ...


def data_source(value: str, **hub_options: Any) -> dict[str, Any]:
    """``demo`` / ``hub`` / a path, as loader keyword arguments."""
    if value == "demo":
        return {}
    if value == "hub":
        return {"hub": True, **hub_options}
    return {"path": value}


class Behavior(ABC):
    """A behaviour to steer: its data, scorer, summary and objectives. Options: ``defaults`` (and ``option_types``
    for an option whose type is not its default's), checked when built and recorded in result rows."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # what its scores measure, e.g. "toxicity"
    defaults: ClassVar[dict[str, Any]] = {}
    option_types: ClassVar[dict[str, Any]] = {}
    objectives: ClassVar[tuple[Objective, ...]] = ()
    default_objective: ClassVar[str] = ""
    mean_score: ClassVar[str] = ""  # the metric that is NaN when scoring failed (the row is then flagged)
    published: ClassVar[tuple[Published, ...]] = ()  # reference rows from papers, listed by the leaderboard
    published_note: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.name = BEHAVIORS.name_for(cls)

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(f"behaviour {self.name!r}", self.defaults, options, self.option_types)

    def objective(self, name: str | None = None) -> Objective:
        """The objective ``name`` (the default one when None); a UsageError lists this behaviour's objectives."""
        name = name or self.default_objective
        found = next((objective for objective in self.objectives if objective.name == name), None)
        if found is None:
            raise UsageError(f"behaviour {self.name!r} has no objective {name!r}: use one of "
                             f"{', '.join(objective.name for objective in self.objectives)}")
        return found

    @abstractmethod
    def fit_texts(self, source: str, label: str) -> tuple[list[str], list[str]]:
        """``(source, target)`` texts to fit steering on, from ``source`` (demo, hub or a path); ``label``: the
        run's ``fit_label``, for a behaviour whose data has several labels."""

    @abstractmethod
    def prompts(self, source: str, *, challenging_only: bool, n: int | None, seed: int) -> list[Prompt]:
        """The prompts to continue, from ``source`` (demo, hub or a path), seeded-shuffled, the first ``n``."""

    def control_texts(self, source: str, hub_limit: int, field: str = "text", condition: str | None = None
                      ) -> list[str]:
        """Neutral texts the control set is drawn from (demo, hub: the first ``hub_limit``, or a path; ``field``
        of each jsonl or hub record that ``condition`` holds for, as ``load_texts`` reads them)."""
        return load_texts(**data_source(source, limit=hub_limit), kind="neutral", field=field, condition=condition)

    @abstractmethod
    def scorer(self, name: str, options: dict[str, Any]) -> Scorer:
        """The scorer ``name`` (``auto``: the behaviour's default) with its ``options``."""

    @abstractmethod
    def per_prompt(self, scores: Any, objective: str) -> np.ndarray:
        """Each prompt's share of ``objective`` from ``scores`` of shape (prompts,) or (prompts, k)."""

    @abstractmethod
    def scored_row(self, continuations: Sequence[str], scores: Sequence[float], prompts: Sequence[Prompt],
                   samples_per_prompt: int, seed: int) -> dict[str, Any]:
        """A row's fields from prompt-major ``continuations`` and their ``scores`` (k per prompt): ``metrics``
        (every objective and its ``_ci``), ``prompt_scores`` and ``continuations``."""


def as_grid(scores: Any) -> np.ndarray:
    """Scores of shape (prompts,) or (prompts, k) as a float (prompts, k) array."""
    grid = np.asarray(scores, dtype=np.float64)
    return grid[:, None] if grid.ndim == 1 else grid


def prompt_major(continuations: Sequence[str], scores: Sequence[float],
                 samples_per_prompt: int) -> tuple[np.ndarray, list[Any]]:
    """``scores`` as a (prompts, k) grid and ``continuations`` per prompt (one text when k = 1, a list of k)."""
    k = samples_per_prompt
    grid = np.asarray(scores, dtype=np.float64).reshape(-1, k)
    return grid, list(continuations) if k == 1 else [list(continuations[i:i + k]) for i in range(0, len(grid) * k, k)]


def summarised(behavior: Behavior, grid: np.ndarray, seed: int, n_boot: int = 1000) -> dict[str, Any]:
    """Every objective of ``behavior`` over the (prompts, k) ``grid``: its mean over prompts and ``<name>_ci``,
    the seeded 95% percentile bootstrap over prompts."""
    summary: dict[str, Any] = {}
    for objective in behavior.objectives:
        values = behavior.per_prompt(grid, objective.name)
        summary |= {objective.name: float(values.mean()), f"{objective.name}_ci": bootstrap_ci(values, n_boot, seed)}
    return summary
