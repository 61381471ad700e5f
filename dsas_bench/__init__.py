"""dsas_bench: benchmark activation steering with and without DSAS."""
from dsas_bench.interop.registration import register_when_lm_eval_loads

__version__ = "0.1.0"

register_when_lm_eval_loads()  # lm-eval's model "dsas-steered", without importing lm-eval now
