"""Built-in steering methods; importing this package registers them."""

from dsas_bench.steering.methods import (  # noqa: F401
    actadd,
    iti,
    linear_act,  # noqa: F401
    lineas,
    shift,
)
