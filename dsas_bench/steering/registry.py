"""The method registry: ``@register_method("name")`` here, or the ``dsas_bench.methods`` entry-point group.

Another installed package adds a method without touching this one by declaring, in its
``pyproject.toml``::

    [project.entry-points."dsas_bench.methods"]
    mymethod = "my_package.steering:MyMethod"

The entry point may name a ``SteeringMethod`` subclass (registered under the entry-point name)
or a module whose import registers methods with ``@register_method``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from dsas_bench.errors import UsageError

if TYPE_CHECKING:
    from dsas_bench.steering.base import SteeringMethod

ENTRY_POINT_GROUP = "dsas_bench.methods"
_METHODS: dict[str, type[SteeringMethod]] = {}
_ALIASES: dict[str, str] = {}
_plugins_loaded = False
M = TypeVar("M", bound="type[SteeringMethod]")


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def register_method(name: str, *aliases: str) -> Callable[[M], M]:
    """Class decorator: register a steering method under ``name`` and friendly ``aliases``."""

    def decorate(cls: M) -> M:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"steering method {name!r} is already registered by {_METHODS[name].__module__}")
        cls.name = name
        _METHODS[name] = cls
        for alias in (name, *aliases):
            _ALIASES[_normal(alias)] = name
        return cls

    return decorate


def _load_plugins() -> None:
    """Import the built-in methods and every ``dsas_bench.methods`` entry point, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import dsas_bench.steering.methods  # noqa: F401  (registers the built-in methods)

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if inspect.isclass(loaded) and entry.name not in _METHODS:
            register_method(entry.name)(loaded)


def method_names() -> list[str]:
    """Registered method names, sorted."""
    _load_plugins()
    return sorted(_METHODS)


def get_method(name: str) -> type[SteeringMethod]:
    """The method class registered under ``name`` or one of its aliases."""
    _load_plugins()
    key = _ALIASES.get(_normal(name))
    if key is None:
        raise UsageError(f"unknown steering method {name!r}; registered methods: {', '.join(method_names())} "
                         f"(plug in more through the {ENTRY_POINT_GROUP!r} entry-point group)")
    return _METHODS[key]
