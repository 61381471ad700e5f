"""Which tokens DSAS steers, and how much, at each steered module: a heatmap and a coloured terminal rendering.

A text goes once through the model with the run's fitted steering and scaler active; the scaler
records its scale s ∈ [0, 1] per token and module. ``choose_intervention`` picks the fitted
(method, DSAS mode, seed) of a run that ``explain`` looks at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import steer
from dsas_bench.core.models import LoadedModel
from dsas_bench.methods.base import SteeringMethod
from dsas_bench.run.interventions import METHOD_FILE, intervention_dir
from dsas_bench.run.plan import BASELINE
from dsas_bench.scalers.base import ScalerBase

CMAP = colormaps["viridis"]
ESCAPES = {"\n": "↵", "\r": "", "\t": "⇥"}
RESET = "\x1b[0m"


def choose_intervention(rows: Sequence[Mapping[str, Any]], run: str | Path, method: str | None = None,
                        dsas: str | None = None, seed: int | None = None) -> Mapping[str, Any]:
    """A row of the one fitted (method, DSAS mode, seed) of ``run`` matching the given choices.

    Without ``dsas`` only DSAS modes (not ``off``) qualify; the rest must leave exactly one candidate.
    """
    fitted = {(r["method"], r["dsas"], r["seed"]): r for r in rows
              if r["method"] != BASELINE and (intervention_dir(run, r["method"], r["dsas"], r["seed"])
                                              / METHOD_FILE).exists()}
    listing = ", ".join(f"--method {m} --dsas {d} --seed {s}" for m, d, s in sorted(fitted)) or "none"
    if dsas == "off":
        raise UsageError("explain shows DSAS scales, and DSAS mode off has none: choose a DSAS mode of the run "
                         f"(fitted: {listing}), or run `dsas-bench run --dsas` first")
    wanted = {key: row for key, row in fitted.items()
              if (method is None or key[0] == method) and (key[1] == dsas if dsas else key[1] != "off")
              and (seed is None or key[2] == seed)}
    if len(wanted) == 1:
        return next(iter(wanted.values()))
    asked = " ".join(f"--{flag} {value}" for flag, value in (("method", method), ("dsas", dsas), ("seed", seed))
                     if value is not None)
    where = f"in {run}" + (f" matching {asked}" if asked else "")
    problem = f"several fitted DSAS interventions {where}" if wanted else f"no fitted DSAS intervention {where}"
    raise UsageError(f"{problem} (fitted: {listing}): choose one with --method, --dsas and --seed, or fit one "
                     f"with `dsas-bench run --method M --dsas --output {run}`")


def printable(token: str) -> str:
    """The token with newlines and tabs made visible."""
    for char, shown in ESCAPES.items():
        token = token.replace(char, shown)
    return token


def token_scales(lm: LoadedModel, method: SteeringMethod, scaler: ScalerBase, text: str,
                 strength: float = 1.0) -> tuple[list[str], list[str], np.ndarray]:
    """(decoded tokens, steered modules, (modules, tokens) scales) of one steered forward pass over ``text``."""
    if not text.strip():
        raise UsageError('explain needs some text: e.g. dsas-bench explain "You are such a" --run results/demo')
    maps = method.maps(lm.device)
    batch = lm.tokenizer(text, return_tensors="pt").to(lm.device)
    with torch.inference_mode(), steer(lm.model, maps, strength, scaler), scaler.recording():
        lm.model(**batch)
    recorded = scaler.token_scales()
    tokens = [lm.tokenizer.decode([token]) for token in batch["input_ids"][0].tolist()]
    modules = list(maps)
    return tokens, modules, np.stack([recorded[name][0].float().cpu().numpy() for name in modules])


def heatmap(tokens: Sequence[str], modules: Sequence[str], scales: np.ndarray, out_path: str | Path,
            title: str) -> Path:
    """Write a PNG heatmap: tokens on x, modules on y, colour = scale in [0, 1], with a colour bar."""
    fig = Figure(figsize=(min(40.0, 3.0 + 0.28 * len(tokens)), 1.8 + 0.3 * len(modules)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(scales, cmap=CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(tokens)), [printable(t).replace(" ", "␣") for t in tokens], rotation=90, fontsize=7)
    ax.set_yticks(range(len(modules)), modules, fontsize=7)
    ax.set_xlabel("token")
    ax.set_ylabel("steered module")
    fig.colorbar(image, ax=ax, label="scale s")
    ax.set_title(title, fontsize=9)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


def _background(scale: float) -> str:
    """ANSI 256-colour escape: background from the colour map at ``scale``, black or white text on it."""
    r, g, b, _ = CMAP(scale)
    index = 16 + 36 * round(r * 5) + 6 * round(g * 5) + round(b * 5)
    foreground = 16 if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else 231
    return f"\x1b[48;5;{index}m\x1b[38;5;{foreground}m"


def compact(modules: Sequence[str]) -> tuple[str, list[str]]:
    """The dotted parts the module names share, as a pattern with ``*``, and what each name has in its place."""
    if len(modules) < 2:
        return "", list(modules)
    parts = [name.split(".") for name in modules]
    shortest = min(map(len, parts)) - 1
    head = next((i for i in range(shortest) if len({p[i] for p in parts}) > 1), shortest)
    tail = next((i for i in range(shortest - head) if len({p[-1 - i] for p in parts}) > 1), shortest - head)
    pattern = ".".join([*parts[0][:head], "*", *(parts[0][len(parts[0]) - tail:])])
    return pattern, [".".join(p[head:len(p) - tail]) for p in parts]


def render_terminal(tokens: Sequence[str], modules: Sequence[str], scales: np.ndarray, *, color: bool,
                    gated: Sequence[str] = ()) -> str:
    """The text with each token coloured (or annotated ``token[0.83]``) by its mean scale over modules,
    then the mean scale per module and the modules gated off by the probe-accuracy threshold."""
    means = scales.mean(axis=0)
    if color:
        text = "".join(f"{_background(s)}{printable(t)}{RESET}" for t, s in zip(tokens, means, strict=True))
        legend = "scale: " + " ".join(f"{_background(s)} {s:.2g} {RESET}" for s in np.linspace(0, 1, 5))
    else:
        text = "".join(f"{printable(t)}[{s:.2f}]" for t, s in zip(tokens, means, strict=True))
        legend = "[s]: mean scale over modules, 0 = not steered, 1 = fully steered"
    pattern, short = compact(modules)
    per_module = ", ".join(f"{name}: {row.mean():.2f}" for name, row in zip(short, scales, strict=True))
    index = {name: i for i, name in enumerate(modules)}
    off = ", ".join(f"{short[index[name]]} (s ≡ {scales[index[name]].mean():g})" for name in gated
                    if name in index) or "none"
    where = f" ({pattern})" if pattern else ""
    return "\n".join([text, legend, f"mean scale per module{where}: {per_module}",
                      f"gated off (probe accuracy below the threshold): {off}"])
