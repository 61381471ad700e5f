"""Check a value against a declared type annotation, the one check behind task YAMLs, ``--set`` and options.

``check_value(value, annotation, name)`` accepts ``Any``, ``None``, ``bool``, ``int``, ``float``, ``str``,
``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, ``Literal[...]`` and unions of them (``X | Y``, ``Optional``);
it returns the value coerced to the type (an int where a float is declared, a list where a tuple is) or
raises a ``UsageError`` naming the field, the expected type and the value given. A string is never read as a
list, and ``True`` is never an int.
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Callable
from typing import Any

import yaml

from dsas_bench.core.errors import UsageError


class _Mismatch(Exception):
    """Internal: the value does not fit the annotation."""


def _origin(annotation: Any) -> Any:
    return typing.get_origin(annotation)


def _is_union(annotation: Any) -> bool:
    return _origin(annotation) in (typing.Union, types.UnionType)


def _scalar(value: Any, annotation: type) -> Any:
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if annotation is str and isinstance(value, str | os.PathLike):
        return os.fspath(value)  # a path given as a Path object is its string
    raise _Mismatch


def _coerce(value: Any, annotation: Any) -> Any:
    if annotation is Any:
        return value
    if annotation is None or annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    if _is_union(annotation):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    origin, args = _origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        item = args[0] if args else Any
        coerced = [_coerce(part, item) for part in value]
        return coerced if origin is list else tuple(coerced)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        key, item = args if args else (Any, Any)
        return {_coerce(k, key): _coerce(v, item) for k, v in value.items()}
    if isinstance(annotation, type):
        return _scalar(value, annotation)
    raise TypeError(f"fieldtypes cannot check the annotation {annotation!r}")


def describe(annotation: Any) -> str:
    """A short reader's name for a type: ``int or null``, ``list of float``, ``mapping of str to any``."""
    if annotation is Any:
        return "any"
    if annotation is None or annotation is type(None):
        return "null"
    if _is_union(annotation):
        return " or ".join(describe(option) for option in typing.get_args(annotation))
    origin, args = _origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(map(repr, args))
    if origin in (list, tuple):
        return f"list of {describe(args[0]) if args else 'any'}"
    if origin is dict:
        key, item = args if args else (Any, Any)
        return f"mapping of {describe(key)} to {describe(item)}"
    return getattr(annotation, "__name__", str(annotation))


def check_value(value: Any, annotation: Any, name: str) -> Any:
    """``value`` coerced to ``annotation``, or a UsageError naming ``name``, the expected type and the value."""
    try:
        return _coerce(value, annotation)
    except _Mismatch:
        raise UsageError(f"{name} must be {describe(annotation)}, got {type(value).__name__} {value!r}") from None


def declared_types(target: type | Callable[..., Any]) -> dict[str, Any]:
    """The evaluated annotations of a dataclass or function (``from __future__ import annotations`` safe)."""
    hints = typing.get_type_hints(target)
    hints.pop("return", None)
    return hints


def _yaml(text: str) -> Any:
    """``text`` read as a YAML value, or the text itself when it is not valid YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_setting(text: str, annotation: Any, name: str) -> Any:
    """A ``KEY=VALUE`` value read as YAML and checked against ``annotation``; for a list, ``a,b`` also works."""
    value = _yaml(text)
    try:
        return check_value(value, annotation, name)
    except UsageError:
        if not (isinstance(value, str) and "," in text):
            raise
        parts = [_yaml(part.strip()) for part in text.split(",") if part.strip()]
        try:
            return check_value(parts, annotation, name)
        except UsageError:
            raise UsageError(f"{name} must be {describe(annotation)}, got {text!r}") from None
