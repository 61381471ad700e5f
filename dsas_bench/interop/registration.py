"""Register the lm-eval model ``dsas-steered`` without importing lm-eval (or torch) at ``import dsas_bench``.

lm-eval discovers no model plug-ins, and its ``get_model`` fills the built-in model table
(``lm_eval.models``) only while the registry is empty, so an entry added earlier would hide the
built-in models. The lightest correct way is therefore to add ``dsas-steered`` — as a lazy
``"module:attr"`` placeholder, which lm-eval 0.4.13's ``Registry`` imports on first use — right
after ``lm_eval.models`` runs: at once if it already has, else from a one-shot import hook that
costs nothing until lm-eval is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

MODEL_NAME = "dsas-steered"
MODEL_TARGET = "dsas_bench.interop.lmeval_model:DSASSteeredLM"
LM_EVAL_MODELS = "lm_eval.models"


def register() -> None:
    """Add ``dsas-steered`` to lm-eval's model registry (imports lm-eval's light model table)."""
    import lm_eval.models  # noqa: F401  (the built-in table first: get_model fills only an empty registry)
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def register_when_lm_eval_loads() -> None:
    """``register()`` now if lm-eval's model table is loaded, else just after it loads."""
    if LM_EVAL_MODELS in sys.modules:
        register()
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds ``lm_eval.models`` with the other finders and has its loader call ``register()`` after it runs."""

    def find_spec(self, fullname: str, path: object,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != LM_EVAL_MODELS:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ThenRegister(spec.loader)
                return spec
        return None


class _ThenRegister(importlib.abc.Loader):
    """A module's own loader, then ``register()``; the module keeps its own loader afterwards."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self.loader
        register()
