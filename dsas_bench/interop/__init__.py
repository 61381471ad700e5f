"""Steering that leaves the harness: lm-eval's own CLI on steered models, exports and imports.

``registration`` registers the lm-eval model ``dsas-steered`` without importing lm-eval (this
package's ``__init__`` imports nothing, so ``import dsas_bench`` stays light); ``lmeval_model`` is
that model and ``dsas-bench lm-eval``; ``formats`` reads every format ``--intervention`` accepts;
``safetensors_format``, ``gguf_format`` and ``lmeval_steered`` write (and read) one format each;
``export`` is ``dsas-bench export``.
"""

EXPORT_FORMATS = ("safetensors", "gguf-control-vector", "lm-eval-steered")  # dsas-bench export --format
