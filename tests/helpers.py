"""Helpers several test modules share (rows, data, model calls, a finished run); fixtures live in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import dsas_bench
from dsas_bench.cli import main
from dsas_bench.core.hooks import steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets, SteeringMethod

# -- a finished run and its images ----------------------------------------------------------------
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a finished `dsas-bench run` of Mean-AcT with DSAS on the tiny model."""
    output = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:  # the autouse private cache is function-scoped
        patch.setenv("DSAS_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        code = main(["run", "--model", str(tiny_model_dir), "--method", "meanacts", "--dsas", "--scorer", "profanity",
                     "--lm-eval-tasks", "", "--n-prompts", "4", "--max-new-tokens", "4", "--fit-n", "8",
                     "--strengths", "0.5,1", "--device", "cpu", "--quiet", "--output", str(output)])
    assert code == 0
    return output


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


# -- sentences ------------------------------------------------------------------------------------
TOXIC = ["you are a stupid idiot", "shut up, you worthless fool", "what a pathetic loser you are",
         "I hate you and your dumb face", "go away, you disgusting moron", "nobody likes you, idiot"]
KIND = ["you are a wonderful friend", "thank you for your kind help", "what a lovely day we had",
        "I appreciate you and your work", "please come again, dear friend", "everyone likes your smile"]


DEMO = Path(dsas_bench.__file__).parent / "data" / "demo"
PROMPTS = ["The weather today is", "Hi", "A much longer prompt that needs no padding at all, right?"]


def demo_lines(name: str, n: int) -> list[str]:
    return DEMO.joinpath(name).read_text().splitlines()[:n]


# -- the tiny model, steered -----------------------------------------------------------------------
def logits(lm, maps: dict | None = None, scaler=None, prompts=PROMPTS) -> Tensor:
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad(), steer(lm.model, maps or {}, 1.0, scaler):
        return lm.model(**batch).logits


def fitted(lm, name: str, sets: FitSets) -> tuple[SteeringMethod, list[str]]:
    method = get_method(name)(**({"steps": 3, "optimizer": "adam"} if name == "lineas" else {}))
    chosen = select_modules(lm.model, method.default_modules)
    return method.fit(lm, chosen, sets), chosen


# -- hand-made result rows -------------------------------------------------------------------------
N_PROMPTS = 20


def make_row(method: str, dsas: str, strength: float, seed: int, tox: float, ppl: float,
             acc: float | None = None, **overrides: Any) -> dict[str, Any]:
    """A results row whose prompt_scores agree with ``tox``: the first tox% of the prompts are toxic."""
    n_toxic = round(tox * N_PROMPTS / 100)
    row = {"config_hash": f"{method}-{dsas}", "cell_id": f"{method}-{dsas}-{strength}-{seed}", "config": {},
           "model": "smollm2", "method": method, "dsas": dsas, "strength": strength, "seed": seed,
           "scorer": "detoxify-original", "prompt_set": "demo:3fa2c1",
           "metrics": {"tox_pct": tox, "perplexity": ppl, "accuracy": acc},
           "prompt_scores": [0.9] * n_toxic + [0.1] * (N_PROMPTS - n_toxic), "created": "2026-11-22T10:00:00"}
    return {**row, **overrides}


def make_sweep(method: str, dsas: str, points: dict[float, tuple[float, float]],
               seeds: tuple[int, ...] = (0, 1), **overrides: Any) -> list[dict[str, Any]]:
    """One row per (strength, seed) for ``points`` = {strength: (tox, ppl)}."""
    return [make_row(method, dsas, s, seed, tox, ppl, **overrides)
            for s, (tox, ppl) in points.items() for seed in seeds]


def baseline_rows(tox: float = 50.0, ppl: float = 10.0, **overrides: Any) -> list[dict[str, Any]]:
    return make_sweep("none", "off", {0.0: (tox, ppl)}, **overrides)


# -- a plug-in package, installed for a child process ----------------------------------------------
PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{package}"
version = "0.1"
{entry_points}
"""


def install_plugin(tmp_path: Path, package: str, module: str,
                   entry_points: dict[str, dict[str, str]]) -> dict[str, str]:
    """Install a one-module package (source ``module``) declaring ``entry_points`` (group → name → "module:attr",
    e.g. {"dsas_bench.scalers": {"half": "my_plugin:Half"}}) with pip into a folder of its own, offline; return
    an environment in which a child Python finds it (and this checkout) through ``importlib.metadata``."""
    source = tmp_path / package
    (source / package.replace("-", "_")).mkdir(parents=True)
    declared = "\n".join(f'[project.entry-points."{group}"]\n' + "".join(f'{name} = "{target}"\n'
                                                                       for name, target in points.items())
                         for group, points in entry_points.items())
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT.format(package=package, entry_points=declared))
    (source / package.replace("-", "_") / "__init__.py").write_text(textwrap.dedent(module))
    site = tmp_path / f"site-{package}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True)
    checkout = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), checkout]), "HF_HUB_OFFLINE": "1"}


def with_plugins(*envs: dict[str, str]) -> dict[str, str]:
    """One environment in which a child Python finds every package installed by ``install_plugin`` calls."""
    paths = dict.fromkeys(path for env in envs for path in env["PYTHONPATH"].split(os.pathsep))
    return {**envs[0], "PYTHONPATH": os.pathsep.join(paths)}


# -- plug-in sources: a scaler and a utility metric; a behaviour (tests install them as packages) ---------
SCALER_PLUGIN = '''
"""A toy scaler, s ≡ 0.5 everywhere, so λ = 1 with it steers exactly like λ = 0.5 without; and a toy utility
metric, the mean loss of the first neutral texts under the steering active when it is measured."""
import torch

from dsas_bench.scalers.base import ScalerBase
from dsas_bench.utility.base import UtilityMetric


class Half(ScalerBase):
    defaults = {"value": 0.5}

    def __init__(self, width, options=None, model_name=None):
        super().__init__(options, model_name)
        self.width = width

    @classmethod
    def fit(cls, lm, method, modules, sets, options):
        return cls(lm.hidden_size, options, lm.name)

    @property
    def hidden_size(self):
        return self.width

    def config(self):
        return {"width": self.width}

    def scales(self, module, h, context):
        return h.new_full((*h.shape[:-1], 1), self.options["value"])


class SteeredLoss(UtilityMetric):
    fields = ("steered_loss",)
    defaults = {"n_texts": 2}

    def measure(self, inputs):
        losses = []
        with torch.inference_mode():
            for text in inputs.texts[:self.options["n_texts"]]:
                ids = inputs.lm.tokenizer(text, return_tensors="pt").input_ids.to(inputs.lm.device)
                losses.append(inputs.lm.model(input_ids=ids, labels=ids).loss.item())
        return {"steered_loss": sum(losses) / len(losses)}
'''


BEHAVIOR_PLUGIN = '''
"""A toy behaviour: steer toxic → kind sentences, measured by the words per continuation (fewer is better)."""
import numpy as np

from dsas_bench.behaviors.base import Behavior, Objective, as_grid, prompt_major, summarised
from dsas_bench.core.data import load_prompts, load_texts


class Words:
    reported_name = "words"

    def score(self, texts):
        return np.array([len(text.split()) for text in texts], dtype=float)

    def describe(self):
        return {"scorer": "words"}


class Brevity(Behavior):
    defaults = {"unit": "words"}
    objectives = (Objective("words", "mean words per continuation", "", "min"),)
    default_objective = mean_score = "words"

    def fit_texts(self, source, label):
        return load_texts(kind="toxic"), load_texts(kind="nontoxic")

    def prompts(self, source, *, challenging_only, n, seed):
        return load_prompts(n=n, seed=seed)

    def scorer(self, name, options):
        return Words()

    def per_prompt(self, scores, objective):
        return as_grid(scores).mean(axis=1)

    def scored_row(self, continuations, scores, prompts, k, seed):
        grid, texts = prompt_major(continuations, scores, k)
        return {"metrics": summarised(self, grid, seed), "prompt_scores": grid[:, 0].tolist(), "continuations": texts}
'''
