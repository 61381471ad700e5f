"""``dsas-bench ls``: what is registered at each extension point, plug-ins marked by their package."""

from __future__ import annotations

import argparse
from typing import Any

# What ``ls`` lists: each extension point's registry, as "module:attr" (imported only when listed).
REGISTRIES = {
    "methods": "dsas_bench.methods:METHODS",
    "scalers": "dsas_bench.scalers:SCALERS",
    "scorers": "dsas_bench.behaviors.toxicity.scorers:SCORERS",
    "utility": "dsas_bench.utility:UTILITY",
    "behaviors": "dsas_bench.behaviors:BEHAVIORS",
}


LS_KINDS = (*REGISTRIES, "tasks")


def _registry(kind: str) -> Any:
    """The registry ``ls KIND`` lists."""
    import importlib

    module, _, name = REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def list_registered(args: argparse.Namespace) -> int:
    """ls: one line per registered name, with aliases, options and defaults; plug-ins marked by their package."""
    kind = getattr(args, "kind", "methods")
    if kind == "tasks":
        from dsas_bench.core.data import TASKS_DIR

        for path in sorted(TASKS_DIR.glob("*.yaml")):
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            print(f"{path.stem:<14} {first}")
        return 0
    registry = _registry(kind)
    for fixed, meaning in registry.fixed.items():
        print(f"{fixed:<14} (built in) {meaning}")
    for entry in registry.entries():
        origin = f"plug-in from {entry.package}" if entry.package else "built in"
        aliases = f" also: {', '.join(entry.aliases)}" if entry.aliases else ""
        if entry.error:
            print(f"{entry.name:<14} ({origin}) BROKEN: {entry.error}")
            continue
        options = ", ".join(f"{key}={value!r}" for key, value in entry.target.defaults.items()) or "none"
        fields = getattr(entry.target, "fields", ())  # what a utility metric writes into the rows
        writes = f"; writes: {', '.join(fields)}" if fields else ""
        print(f"{entry.name:<14} ({origin}){aliases}; options: {options}{writes}{_objectives(entry.target)}")
    return 0


def _objectives(cls: type) -> str:
    """``; objectives: a (default, lower is better), ...`` for a behaviour, '' for any other component."""
    objectives = getattr(cls, "objectives", ())
    listed = ", ".join(f"{o.name} ({'default, ' if o.name == cls.default_objective else ''}{o.better})"
                       for o in objectives)
    return f"; objectives: {listed}" if listed else ""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``ls`` to the subcommands."""
    ls_parser = commands.add_parser(
        "ls", help=f"what is registered (plug-ins included): {', '.join(LS_KINDS)}",
        description="List the registered components of one extension point with their aliases, options and "
                    "defaults; plug-ins are marked with the package that provides them.")
    ls_parser.add_argument("kind", choices=LS_KINDS, help="the extension point to list")
    ls_parser.set_defaults(handler=list_registered)
    methods = commands.add_parser("methods", help="the same as `ls methods`")
    methods.set_defaults(handler=list_registered, kind="methods")
