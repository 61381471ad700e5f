"""lm-eval's model ``dsas-steered``: ``HFLM`` on a model steered as the sweep steers it, and ``dsas-bench lm-eval``.

``simple_evaluate(model="dsas-steered", model_args="pretrained=…,intervention=…,dsas=on,strength=0.5")``
(after ``import dsas_bench``) or ``dsas-bench lm-eval --intervention PATH --strength λ -- <lm-eval
arguments>``. The model is loaded with ``models.load_model`` (``pretrained`` defaults to the model
the intervention was fitted on) and every forward pass and generation of lm-eval runs inside
``steer(model, maps, λ, scaler)``, as the sweep's lm-eval cells do. lm-eval right-pads its
batches and passes no attention mask, so a scaler that pools whole sequences (the CAST gate)
runs with batch size 1 only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_eval.models.huggingface import HFLM

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import steer
from dsas_bench.interop.intervention import (
    checked_strength,
    existing_intervention,
    intervention_model,
    load_steered,
)
from dsas_bench.interop.registration import MODEL_NAME, register


class DSASSteeredLM(HFLM):
    """``HFLM`` whose model calls run with a dsas_bench intervention (and its scaler) active at strength λ."""

    def __init__(self, pretrained: str | None = None, intervention: str | None = None, scaler: str | None = None,
                 dsas: str | None = None, strength: float = 1.0, device: str | None = None, dtype: str = "auto",
                 batch_size: int | str | None = 1, **kwargs: Any):
        lm, method, chosen = load_steered(intervention, pretrained, scaler, dsas, device or "auto", dtype)
        if getattr(chosen, "per_sequence", False) and str(batch_size) != "1":
            raise UsageError(f"the {chosen.name!r} scaler pools whole sequences, and lm-eval right-pads its batches "
                             f"without an attention mask: use batch size 1, not {batch_size}")
        super().__init__(pretrained=lm.model, tokenizer=lm.tokenizer, device=str(lm.device), batch_size=batch_size,
                         **kwargs)
        self.steering = steer(self.model, method.maps(lm.device), checked_strength(strength), chosen)

    def _model_call(self, *args: Any, **kwargs: Any) -> Any:
        with self.steering:
            return super()._model_call(*args, **kwargs)

    def _model_generate(self, *args: Any, **kwargs: Any) -> Any:
        with self.steering:
            return super()._model_generate(*args, **kwargs)


def steered_lm_eval_args(lm_eval_args: Sequence[str], intervention: str, model: str | None = None,
                         scaler: str | None = None, dsas: str | None = None, strength: float = 1.0) -> list[str]:
    """lm-eval ``run`` arguments evaluating ``dsas-steered`` on the intervention, then ``lm_eval_args``.

    The model arguments go first as JSON (paths may hold commas); a ``--model_args`` among
    ``lm_eval_args`` adds to them (lm-eval merges repeated ``--model_args``).
    """
    if any(arg in {"--model", "-M"} or arg.startswith("--model=") for arg in lm_eval_args):
        raise UsageError("lm-eval's --model is dsas-steered here: give the model with dsas-bench lm-eval --model M "
                         "(before the --)")
    model_args = {"pretrained": model or intervention_model(intervention),
                  "intervention": str(existing_intervention(intervention).resolve()),
                  "strength": checked_strength(strength),
                  **({"scaler": str(Path(scaler).resolve())} if scaler else {}), **({"dsas": dsas} if dsas else {})}
    return ["--model", MODEL_NAME, "--model_args", json.dumps(model_args), *lm_eval_args]


def run_lm_eval_cli(args: Sequence[str]) -> int:
    """lm-eval's own command line, ``lm-eval run ARGS``, in this process (``dsas-steered`` registered); its status."""
    from lm_eval.__main__ import cli_evaluate

    register()
    argv = sys.argv
    sys.argv = ["lm-eval", "run", *args]  # lm-eval's CLI parses sys.argv
    try:
        cli_evaluate()
    except SystemExit as exit_:  # argparse errors and --help
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = argv
    return 0
