"""A pipeline's noise floor: how far the same commit's metrics move on another CPU kernel.

`benchmarks/noise_floor.py` measures it and writes ``noise_floor.json``; `diff` reads it so a
difference must exceed it to count (ssu_model/eval/significance.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ssu_model.errors import DataError
from ssu_model.eval.metrics import METRIC_NAMES
from ssu_model.eval.significance import mean_std


def noise_floor(reference: Mapping[str, Mapping[str, Any]],
                reruns: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The noise floor of a pipeline from re-runs of the same code and data on other CPU kernels.

    ``reference``: variant -> metrics document (contract D) of the committed run; ``reruns``:
    setting name (e.g. ``ATEN_CPU_CAPABILITY=default``) -> variant -> metrics document of a re-run.
    Per metric:

    - ``machine``: |mean of the re-run - mean of the reference| per setting and variant (the
      change a user on another CPU sees for the same commit);
    - ``floor``: the largest of those (what `diff` treats as noise: a difference must exceed it);
    - ``seed_std``: the per-seed standard deviation (ddof 0) of the reference, averaged over its
      variants, and ``seed_sem`` = seed_std / sqrt(n_seeds): the seed-to-seed noise of one seed
      and of the seed mean, for comparison (the bootstrap CI already carries it).

    Only variants present in the reference and in every re-run count (DataError when none).
    """
    if not reruns:
        raise DataError("no re-run to measure a machine-to-machine noise floor from")
    shared = sorted(set(reference).intersection(*(set(r) for r in reruns.values())))
    if not shared:
        raise DataError("the re-runs and the reference share no variant")
    machine: dict[str, dict[str, dict[str, float]]] = {}
    for setting, run in sorted(reruns.items()):
        machine[setting] = {
            v: {m: abs(float(run[v]["mean"][m]) - float(reference[v]["mean"][m])) for m in METRIC_NAMES}
            for v in shared}
    floor = {m: max(machine[s][v][m] for s in machine for v in shared) for m in METRIC_NAMES}
    seed_std, seed_sem = {}, {}
    for m in METRIC_NAMES:
        stds, sems = [], []
        for v in shared:
            values = [float(x[m]) for x in reference[v]["per_seed"].values()]
            stds.append(mean_std(values)[1])
            sems.append(stds[-1] / math.sqrt(len(values)))
        seed_std[m], seed_sem[m] = float(np.mean(stds)), float(np.mean(sems))
    return {"floor": floor, "machine": machine, "seed_std": seed_std, "seed_sem": seed_sem,
            "variants": shared, "settings": sorted(reruns)}
