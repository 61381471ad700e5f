"""The registry of steering methods: ``@register_method("name")`` here, or the ``dsas_bench.methods`` entry points.

Another installed package adds a method without touching this one by declaring, in its
``pyproject.toml``::

    [project.entry-points."dsas_bench.methods"]
    mymethod = "my_package.steering:MyMethod"

The entry point may name a ``SteeringMethod`` subclass (registered under the entry-point name)
or a module whose import registers methods with ``@register_method``. The built-ins are lazy
entries: listing or checking names imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsas_bench.core.registry import Registry

if TYPE_CHECKING:
    from dsas_bench.methods.base import SteeringMethod

METHODS: Registry[SteeringMethod] = Registry("steering method", "dsas_bench.methods.base:SteeringMethod",
                                             "dsas_bench.methods")
_BUILT_IN = "dsas_bench.methods"
METHODS.add("actadd", f"{_BUILT_IN}.actadd:ActAdd", "act-add")
METHODS.add("iti", f"{_BUILT_IN}.iti:ITI")
METHODS.add("linacts", f"{_BUILT_IN}.linear_act:LinearAcT", "linear-act", "linact", "lin-act")
METHODS.add("meanacts", f"{_BUILT_IN}.linear_act:MeanAcT", "mean-act")
METHODS.add("lineas", f"{_BUILT_IN}.lineas:LinEAS")
METHODS.add("shift", f"{_BUILT_IN}.shift:Shift", "steering-vector", "control-vector")  # imported vectors only
register_method = METHODS.register


def method_names() -> list[str]:
    """Registered method names: the built-ins, then the plug-ins."""
    return METHODS.names()


def get_method(name: str) -> type[SteeringMethod]:
    """The method class registered under ``name`` or one of its aliases."""
    return METHODS.get(name)
