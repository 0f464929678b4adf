"""MMSA regression metrics (``metricsTop.__eval_mosei_regression``), reproduced exactly.

``p`` = predictions, ``y`` = labels, both unclipped unless said:

- ``Has0_acc_2`` = mean((p >= 0) == (y >= 0)); ``Has0_F1`` = weighted F1 of the same binary split
  (zero counts as positive for both).
- ``Non0_acc_2`` / ``Non0_F1``: the same on the rows with y != 0, with ``> 0`` as positive.
  Rows whose *prediction* is 0 are kept (and count as negative).
- ``Acc7`` = mean(round(clip(p,-3,3)) == round(clip(y,-3,3))) with numpy's round half to even
  (2.5 -> 2, -0.5 -> -0 == 0); ``Acc5`` the same with clip to [-2, 2].
- ``MAE`` = mean|p - y| on the unclipped values; ``Corr`` = Pearson correlation.

Departures, all recorded in docs/decisions/training.md ("Metrics"):
- values are kept at full precision (MMSA rounds each to 4 decimals before printing);
- ``Corr`` is 0.0 where Pearson is undefined (constant predictions or constant labels, where
  numpy returns NaN), so JSON metrics stay valid numbers; ``corr_defined`` says which happened;
- ``Non0_*`` are 0.0 when every label is 0 (MMSA would crash on the empty selection).
- mean/std over seeds use ``np.std`` with ddof=0, as MMSA's ``run.py`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ssu_model.errors import DataError

METRIC_NAMES: tuple[str, ...] = (
    "Has0_acc_2",
    "Has0_F1",
    "Non0_acc_2",
    "Non0_F1",
    "Acc5",
    "Acc7",
    "MAE",
    "Corr",
)
# Metrics where smaller is better (used for model selection direction).
LOWER_IS_BETTER = frozenset({"MAE"})


def _as_vectors(pred, label) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise DataError(f"metrics: {p.size} predictions for {y.size} labels")
    if p.size == 0:
        raise DataError("metrics: no predictions to score")
    if not (np.isfinite(p).all() and np.isfinite(y).all()):
        raise DataError("metrics: predictions or labels contain NaN/inf")
    return p, y


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's ``f1_score(truth, pred, average='weighted')`` for boolean vectors.

    Classes are those present in ``truth`` or ``pred`` (sklearn's label set); each class's F1 is
    weighted by its support in ``truth``; a class with no true and no predicted members
    cannot occur; an F1 whose precision and recall are both 0 is 0 (sklearn's zero_division).
    """
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    total = truth.size
    score = 0.0
    for cls in (False, True):
        support = int(np.sum(truth == cls))
        if support == 0:
            continue  # weight 0: contributes nothing
        tp = int(np.sum((truth == cls) & (pred == cls)))
        fp = int(np.sum((truth != cls) & (pred == cls)))
        fn = support - tp
        denom = 2 * tp + fp + fn
        f1 = 0.0 if denom == 0 else 2.0 * tp / denom
        score += f1 * support / total
    return float(score)


def multiclass_acc(pred: np.ndarray, label: np.ndarray, bound: float) -> float:
    """MMSA's ``__multiclass_acc`` after clipping both to [-bound, bound]; numpy round half to even."""
    p = np.round(np.clip(pred, -bound, bound))
    y = np.round(np.clip(label, -bound, bound))
    return float(np.sum(p == y) / float(len(y)))


def pearson(pred: np.ndarray, label: np.ndarray) -> tuple[float, bool]:
    """(Pearson r, defined?). Undefined (a constant vector) -> (0.0, False)."""
    if pred.size < 2 or np.ptp(pred) == 0.0 or np.ptp(label) == 0.0:
        return 0.0, False
    with np.errstate(invalid="ignore", divide="ignore"):
        r = float(np.corrcoef(pred, label)[0][1])
    if not np.isfinite(r):
        return 0.0, False
    return r, True


def regression_metrics(pred, label) -> dict[str, float]:
    """All eight MMSA metrics for one run, as plain floats (fractions in [0, 1] for accuracies)."""
    p, y = _as_vectors(pred, label)
    has0_truth = y >= 0
    has0_pred = p >= 0
    nz = y != 0
    if nz.any():
        non0_truth = y[nz] > 0
        non0_pred = p[nz] > 0
        non0_acc = float(np.mean(non0_pred == non0_truth))
        non0_f1 = weighted_f1(non0_truth, non0_pred)
    else:
        non0_acc = non0_f1 = 0.0
    corr, _defined = pearson(p, y)
    return {
        "Has0_acc_2": float(np.mean(has0_pred == has0_truth)),
        "Has0_F1": weighted_f1(has0_truth, has0_pred),
        "Non0_acc_2": non0_acc,
        "Non0_F1": non0_f1,
        "Acc5": multiclass_acc(p, y, 2.0),
        "Acc7": multiclass_acc(p, y, 3.0),
        "MAE": float(np.mean(np.abs(p - y))),
        "Corr": corr,
    }


def seven_class(values) -> np.ndarray:
    """The Acc7 class of each value: round(clip(v, -3, 3)) as int in -3..3 (half to even)."""
    v = np.asarray(values, dtype=np.float64)
    return np.round(np.clip(v, -3.0, 3.0)).astype(np.int64)


def confusion7(pred, label) -> np.ndarray:
    """7x7 counts: rows = true class -3..3, columns = predicted class -3..3 (Acc7's classes)."""
    p, y = _as_vectors(pred, label)
    out = np.zeros((7, 7), dtype=np.int64)
    np.add.at(out, (seven_class(y) + 3, seven_class(p) + 3), 1)
    return out


def aggregate(per_seed: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """{"mean": {...}, "std": {...}} over seeds (np.mean / np.std with ddof=0, as MMSA)."""
    if not per_seed:
        raise DataError("metrics: no seeds to aggregate")
    names = list(next(iter(per_seed.values())).keys())
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for name in names:
        vals = np.array([float(m[name]) for m in per_seed.values()], dtype=np.float64)
        mean[name] = float(np.mean(vals))
        std[name] = float(np.std(vals))
    return {"mean": mean, "std": std}


def metrics_report(variant: str, seeds: Sequence[int], per_seed: Mapping[int, Mapping[str, float]]) -> dict:
    """The contract-D JSON body for one variant."""
    keyed = {str(s): {k: float(v) for k, v in per_seed[s].items()} for s in seeds}
    agg = aggregate(keyed)
    return {
        "variant": variant,
        "n_seeds": len(seeds),
        "seeds": [int(s) for s in seeds],
        "mean": agg["mean"],
        "std": agg["std"],
        "per_seed": keyed,
    }
