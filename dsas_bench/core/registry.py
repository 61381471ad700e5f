"""One registry per extension point: names and aliases, a base-class check, lazy entries, plug-ins.

Every extension point of dsas_bench (steering methods, scalers, scorers, utility metrics,
behaviours) is a ``Registry`` of classes. Built-ins are registered as lazy ``"module:attr"``
entries, so listing names imports nothing heavy; another installed package adds entries through
the registry's entry-point group, e.g. in its ``pyproject.toml``::

    [project.entry-points."dsas_bench.scalers"]
    myscaler = "my_package.scalers:MyScaler"

Plug-ins are imported the first time the registry is used. One that fails to import is named in
a warning and left out; the others keep working. Components declare their options one way: a
``defaults`` dict on the class (and ``option_types`` for an option whose type is not its default's),
checked by ``check_options`` before any work and recorded in result rows.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from dsas_bench.core.errors import UsageError
from dsas_bench.core.fieldtypes import check_value

T = TypeVar("T")
C = TypeVar("C", bound=type)


def normal_name(name: str) -> str:
    """Names and aliases match case-insensitively, ``_`` and ``-`` alike."""
    return name.strip().lower().replace("_", "-")


def option_type(default: Any) -> Any:
    """The type an option takes when its component declares none: its default's (any type for a None default)."""
    if default is None:
        return Any
    if isinstance(default, tuple | list):
        return tuple[Any, ...] if isinstance(default, tuple) else list[Any]
    return dict[Any, Any] if isinstance(default, dict) else type(default)


def check_options(what: str, defaults: Mapping[str, Any], given: Mapping[str, Any],
                  types: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``given`` checked against the option names of ``defaults`` and their types (``types``, else the
    defaults' own) and coerced to them; a UsageError names an unknown option or a value of the wrong type."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UsageError(f"{what} has no option {', '.join(unknown)}; its options are: "
                         f"{', '.join(sorted(defaults)) or 'none'}")
    types = types or {}
    return {key: check_value(value, types.get(key, option_type(defaults[key])), f"{what} option {key}")
            for key, value in given.items()}


def resolve_options(what: str, defaults: Mapping[str, Any], given: Mapping[str, Any],
                    types: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``defaults`` updated with ``given``, checked by ``check_options``."""
    return {**defaults, **check_options(what, defaults, given, types)}


@dataclass
class Entry:
    """One registered name: its class (or a lazy ``"module:attr"`` path), aliases and origin."""

    name: str
    target: type | str
    aliases: tuple[str, ...] = ()
    package: str | None = None  # the distribution that plugged it in; None for a built-in
    error: str | None = None  # why a plug-in could not be loaded


@dataclass
class Registry(Generic[T]):
    """Classes of one kind by name. ``base`` is the ``"module:attr"`` of the class they must subclass."""

    kind: str  # e.g. "steering method", used in messages
    base: str
    group: str  # the entry-point group of plug-ins
    fixed: Mapping[str, str] = field(default_factory=dict)  # names that stand for no class → what they mean
    _entries: dict[str, Entry] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)
    _plugins_loaded: bool = False

    # -- registering ------------------------------------------------------------------------
    def add(self, name: str, target: type | str, *aliases: str) -> None:
        """Register ``target``: a class, or the ``"module:attr"`` of one, imported on first use."""
        held = self._entries.get(name)
        if held is not None and held.target is not target:
            raise ValueError(f"{self.kind} {name!r} is already registered by "
                             f"{held.package or _module_of(held.target)}")
        self._entries[name] = Entry(name, target, aliases)
        for alias in (name, *aliases):
            self._aliases[normal_name(alias)] = name

    def name_for(self, cls: type) -> str:
        """The name a class is registered under lazily (``"module:attr"``), or its own ``name`` attribute.

        Base classes call this when a subclass is defined, so a built-in has its name even when imported
        directly rather than through the registry."""
        path = f"{cls.__module__}:{cls.__qualname__}"
        return next((entry.name for entry in self._entries.values() if entry.target == path),
                    getattr(cls, "name", ""))

    def remove(self, name: str) -> None:
        """Forget ``name`` and its aliases (e.g. a method registered for one notebook cell or test)."""
        entry = self._entries.pop(self.canonical(name))
        for alias in (entry.name, *entry.aliases):
            self._aliases.pop(normal_name(alias), None)

    def register(self, name: str, *aliases: str) -> Callable[[C], C]:
        """Class decorator: register the class under ``name`` and ``aliases``."""

        def decorate(cls: C) -> C:
            self.add(name, cls, *aliases)
            cls.name = name
            return cls

        return decorate

    # -- looking up -------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The fixed names, then every registered name in registration order (plug-ins last)."""
        self._load_plugins()
        return [*self.fixed, *self._entries]

    def entries(self) -> Iterator[Entry]:
        """Every registered entry, each loaded (a plug-in that fails to load keeps its ``error``)."""
        self._load_plugins()
        for entry in list(self._entries.values()):
            if entry.error is None:
                try:
                    self._load(entry)
                except UsageError as exc:
                    entry.error = str(exc)
            yield entry

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` or one of its aliases."""
        self._load_plugins()
        if normal_name(name) in map(normal_name, self.fixed):
            return next(fixed for fixed in self.fixed if normal_name(fixed) == normal_name(name))
        key = self._aliases.get(normal_name(name))
        if key is None:
            raise UsageError(f"unknown {self.kind} {name!r}; registered {self.kind}s: {', '.join(self.names())} "
                             f"(plug in more through the {self.group!r} entry-point group)")
        return key

    def get(self, name: str) -> type[T]:
        """The class registered under ``name`` or an alias, imported and checked on first use."""
        key = self.canonical(name)
        if key in self.fixed:
            raise UsageError(f"{self.kind} {key!r} stands for no {self.kind}: nothing to load")
        return self._load(self._entries[key])

    def _load(self, entry: Entry) -> type[T]:
        if entry.error is not None:
            raise UsageError(entry.error)
        if isinstance(entry.target, str):
            try:
                entry.target = _import(entry.target)
            except Exception as exc:  # a plug-in's import may raise anything
                entry.error = f"{self.kind} {entry.name!r} ({entry.package or 'built in'}) failed to load: {exc!r}"
                raise UsageError(entry.error) from exc
        base = _import(self.base)
        if not (inspect.isclass(entry.target) and issubclass(entry.target, base)):
            entry.error = (f"{self.kind} {entry.name!r} ({entry.package or 'built in'}) is "
                           f"{entry.target!r}, not a subclass of {base.__name__}")
            raise UsageError(entry.error)
        entry.target.name = entry.name
        return entry.target

    # -- plug-ins ---------------------------------------------------------------------------
    def _load_plugins(self) -> None:
        """Register every entry point of ``group`` once; one that fails to import is warned about and left out.

        An entry point names a class (registered under the entry point's name) or a module whose
        import registers classes with ``register``; either way its entries are marked with its package.
        """
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            package = point.dist.name if point.dist is not None else point.value
            before = set(self._entries)
            try:
                loaded = point.load()
                if inspect.isclass(loaded) and point.name not in self._entries:
                    self.add(point.name, loaded)
            except Exception as exc:  # a broken plug-in must not break the built-ins
                warnings.warn(f"dsas_bench: the {self.kind} plug-in {point.name!r} from {package} failed to "
                              f"load and is left out: {exc!r}", stacklevel=3)
                continue
            for name in set(self._entries) - before:
                self._entries[name].package = package


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _module_of(target: type | str) -> str:
    return target.partition(":")[0] if isinstance(target, str) else target.__module__
