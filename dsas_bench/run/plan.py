"""The cells of a sweep: the unsteered baseline, then methods × DSAS modes × seeds × strengths, each
with a content-hashed id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dsas_bench.run.config import RunConfig, config_hash
from dsas_bench.run.inputs import inputs_for
from dsas_bench.run.interventions import calibrated, calibration_path, intervention_digest
from dsas_bench.run.strengths import AUTO, grid_for, spaced

BASELINE = "none"  # the method name of the unsteered rows


@dataclass(frozen=True)
class Cell:
    """One result row: a method (or the unsteered baseline) in a DSAS mode at a strength and seed."""

    method: str
    dsas: str
    strength: float
    seed: int


def plan(config: RunConfig, calibrate: bool = True) -> list[Cell]:
    """The unsteered baseline per seed, then every method × DSAS mode × seed × strength.

    With calibrated strengths (``--strengths auto``) this fits and calibrates each (method, DSAS
    mode, seed) first, or reads both from the cache; with ``calibrate`` False an uncalibrated line
    gets ``n_strengths`` cells of unknown (NaN) strength instead, for a dry run to count.
    """
    cells = [Cell(BASELINE, "off", 0.0, seed) for seed in config.seeds]
    cells += [Cell(method, dsas, float(strength), seed)
              for method in config.methods for dsas in config.dsas for seed in config.seeds
              for strength in cell_strengths(config, method, dsas, seed, calibrate)[0]]
    return cells


def cell_strengths(config: RunConfig, method: str, dsas: str, seed: int,
                   calibrate: bool = True) -> tuple[list[float], dict | None]:
    """The strengths of one (method, DSAS mode, seed), and the calibration that chose them (None for a grid;
    NaN strengths for an uncalibrated line unless ``calibrate``)."""
    grid = grid_for(config.strengths, method, dsas)
    if grid != AUTO:
        return grid, None
    if not calibrate and not calibration_path(config, method, dsas, seed).exists():
        return [math.nan] * config.n_strengths, None
    record = calibrated(config, method, dsas, seed)
    return (spaced(record["lambda_max"], config.n_strengths, config.strength_spacing),
            {**record, "n_strengths": config.n_strengths, "spacing": config.strength_spacing})


def cell_identity(config: RunConfig, cell: Cell) -> tuple[dict[str, Any], str, str]:
    """(resolved run config, its hash, the cell id) of one cell.

    The id also covers the content of the files the cell reads, so editing a prompt or data file in
    place makes its cells run again instead of being skipped as done.
    """
    run_config = config.cell_config(cell.method, cell.dsas)
    digest = config_hash(run_config)
    texts = inputs_for(config).digests
    read = {"scored": texts["scored"]} if cell.method == BASELINE else {**texts, **intervention_digest(config)}
    return run_config, digest, config_hash({"config": digest, "texts": read, "strength": cell.strength,
                                            "seed": cell.seed})
