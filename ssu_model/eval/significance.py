"""Is a metric difference between two runs more than noise? Statistics behind `python -m stages diff`.

A *side* is one evaluated variant: its metrics JSON (contract D: mean/std/per_seed over the seeds)
and, when available, its test predictions (one row per (seed, id): label, prediction). For each
metric the difference ``b - a`` of the seed means is judged in two ways:

- **per-seed test** (:func:`seed_test`), from the metrics JSON alone: a paired t-test over the
  matching seeds when both sides ran the same seeds (the same seed gives both runs the same
  initialisation and data order, so seed-to-seed noise partly cancels), else Welch's t-test.
  With the usual 3-5 seeds it has little power; it is what the JSON files alone can say.
- **paired bootstrap** (:func:`paired_bootstrap`), from the predictions: each replicate draws the
  test utterances with replacement (one draw shared by both sides and every seed: the pairing) and,
  by default, the seeds with replacement (one draw shared by both sides when they ran the same
  seeds, independent draws otherwise), computes every metric per drawn seed with
  :func:`ssu_model.eval.metrics.regression_metrics` (exactly as `evaluate` does) and averages over the
  drawn seeds. The statistic on the original data is therefore the reported difference of seed
  means, and its spread covers both the test-set sampling and the seed-to-seed training noise.
  The CI is the percentile interval of the replicates.

:func:`verdict` turns either into "better" / "worse" (for side b; MAE is lower-is-better) or
"within noise": a difference needs a CI that excludes 0 (or p < alpha when there is no bootstrap)
*and* an absolute size above the metric's noise floor (e.g. a measured machine-to-machine
difference). Mean/std over seeds use ddof=0, as MMSA and `evaluate` do.

Everything is deterministic: the bootstrap draws from ``numpy.random.default_rng(rng_seed)`` in a
fixed order. numpy/scipy, and polars for the tables; no paths, no CLI.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ssu_model.errors import DataError
from ssu_model.eval.metrics import LOWER_IS_BETTER, METRIC_NAMES, regression_metrics

# Shown as percentages (fractions in the JSON); the others (MAE, Corr) as they are.
PERCENT_METRICS = frozenset({"Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Acc5", "Acc7"})
# Differences this small are floating-point rounding, not a difference: a CI must clear it to
# "exclude 0" (e.g. Corr of predictions shifted by a constant differs from the original in the
# 16th digit, on every replicate).
NUMERIC_TOLERANCE = 1e-9
PREDICTION_COLUMNS = ("seed", "id", "label", "prediction")  # a predictions table (contract D)
BETTER, WORSE, WITHIN_NOISE, NOT_TESTED = "better", "worse", "within noise", "not tested"


@dataclasses.dataclass(frozen=True)
class SeedPredictions:
    """One side's test predictions: every seed scored every utterance.

    ``ids`` sorted; ``labels[i]`` the label of ``ids[i]``; ``predictions[k, i]`` seed ``seeds[k]``'s
    prediction for ``ids[i]``.
    """

    seeds: tuple[int, ...]
    ids: tuple[str, ...]
    labels: np.ndarray  # (n,) float64
    predictions: np.ndarray  # (n_seeds, n) float64


def seed_predictions(seed, ids, label, prediction, where: str = "predictions") -> SeedPredictions:
    """:func:`seed_grid` of the long table given as four columns (one row per (seed, id))."""
    seed = np.asarray(seed).astype(np.int64).reshape(-1)
    ids = [str(i) for i in ids]
    label = np.asarray(label, dtype=np.float64).reshape(-1)
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1)
    if not (seed.size == len(ids) == label.size == prediction.size):
        raise DataError(f"{where}: columns of different lengths")
    return seed_grid(pl.DataFrame({"seed": seed, "id": pl.Series(ids, dtype=pl.String), "label": label,
                                   "prediction": prediction}), where)


def read_seed_grid(parquet, where: str) -> SeedPredictions:
    """:func:`seed_grid` of a predictions Parquet file as `evaluate` writes it (``parquet``: a path or
    a binary file object); an unreadable file or a missing column is a DataError naming ``where``."""
    try:
        table = pl.read_parquet(parquet)
    except Exception as exc:  # noqa: BLE001 - polars/pyarrow raise several types for a bad file
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{where} is not a readable Parquet file ({detail})") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {', '.join(missing)}")
    return seed_grid(table.select(*PREDICTION_COLUMNS), where=where)


def seed_grid(long: pl.DataFrame, where: str = "predictions") -> SeedPredictions:
    """Validate the long table (columns seed, id, label, prediction: one row per (seed, id), as
    `evaluate` writes it) and return it as a seeds x utterances grid.

    Errors (DataError, naming ``where``): empty, non-finite values, a (seed, id) twice, a seed that
    lacks some utterance the others have, an utterance whose label differs between seeds. The grid
    is a polars pivot of the table; the checks are expressions over it.
    """
    if long.height == 0:
        raise DataError(f"{where}: no rows")
    if long["seed"].null_count() or long["id"].null_count():
        raise DataError(f"{where}: a seed or id is empty")
    long = long.select(pl.col("seed").cast(pl.Int64), pl.col("id").cast(pl.String),
                       pl.col("label", "prediction").cast(pl.Float64).fill_null(float("nan")))
    if not long.select(pl.all_horizontal(pl.col("label", "prediction").is_finite().all())).item():
        raise DataError(f"{where}: labels or predictions contain NaN/inf")
    seeds = tuple(int(s) for s in long["seed"].unique().sort())
    try:  # a pivot without an aggregation refuses a (seed, id) cell with two values
        wide = long.pivot(on="seed", index="id", values=["prediction", "label"])
    except pl.exceptions.ComputeError:
        twice = long.filter(pl.struct("seed", "id").is_duplicated()).head(1)
        raise DataError(f"{where}: seed {twice['seed'][0]} has utterance {twice['id'][0]!r} twice") from None
    by_id = wide["id"].arg_sort().to_numpy()  # the pivot keeps first-seen order; the grid is in id order
    grid = wide.select(f"prediction_{s}" for s in seeds).to_numpy()[by_id].T.astype(np.float64)  # NaN = missing
    labels = wide.select(f"label_{s}" for s in seeds).to_numpy()[by_id].T.astype(np.float64)
    uids = tuple(wide["id"].gather(by_id).to_list())
    missing = np.isnan(grid)
    if missing.any():
        k, i = np.argwhere(missing)[0]
        raise DataError(f"{where}: seed {seeds[k]} lacks utterance {uids[i]!r} that other seeds have "
                        f"({int(missing.sum())} (seed, id) pairs missing)")
    differ = np.flatnonzero((labels != labels[0]).any(axis=0))
    if differ.size:
        raise DataError(f"{where}: utterance {uids[differ[0]]!r} has different labels in different seeds")
    return SeedPredictions(seeds, uids, labels[0].copy(), grid)


def per_seed_metrics(side: SeedPredictions) -> dict[int, dict[str, float]]:
    """regression_metrics of every seed on all of the side's utterances."""
    return {s: regression_metrics(side.predictions[k], side.labels) for k, s in enumerate(side.seeds)}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard deviation with ddof=0 (MMSA's and `evaluate`'s convention)."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.mean(v)), float(np.std(v))


def seed_test(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """Two-sided t-test of mean(b) - mean(a) from per-seed values ({seed: value}).

    Paired t-test over the seeds when both sides have the same seed set (at least 2 seeds); else
    Welch's unequal-variance t-test (at least 2 seeds each side); else no test (p None).
    Degenerate cases scipy answers with NaN: differences (paired) or both samples (Welch) without
    spread -> p 1.0 when the means are equal, else 0.0 (a constant, exactly repeatable shift).
    Per-seed differences within NUMERIC_TOLERANCE are rounding and count as 0: without this, a
    Corr recomputed from the same predictions (off in the 16th digit) got a paired p of 0.009.
    Returns {"test": "paired t" | "Welch t" | "none", "p", "statistic", "df", "n_a", "n_b"};
    statistic/df None where undefined or infinite.
    """
    import warnings

    from scipy import stats

    sa, sb = sorted(a), sorted(b)
    va = np.array([float(a[s]) for s in sa])
    vb = np.array([float(b[s]) for s in sb])
    out: dict[str, Any] = {"test": "none", "p": None, "statistic": None, "df": None, "n_a": len(va), "n_b": len(vb)}
    if sa == sb and len(sa) >= 2:
        d = vb - va
        d[np.abs(d) <= NUMERIC_TOLERANCE] = 0.0
        out.update(test="paired t", df=float(len(d) - 1))
        if np.ptp(d) == 0.0:
            out.update(p=1.0 if d[0] == 0.0 else 0.0, statistic=0.0 if d[0] == 0.0 else None)
        else:
            with warnings.catch_warnings():  # nearly equal differences: "precision loss", p still right
                warnings.simplefilter("ignore", RuntimeWarning)
                res = stats.ttest_rel(vb, va)
            out.update(p=float(res.pvalue), statistic=float(res.statistic))
    elif len(va) >= 2 and len(vb) >= 2:
        out["test"] = "Welch t"
        if np.ptp(va) <= NUMERIC_TOLERANCE and np.ptp(vb) <= NUMERIC_TOLERANCE:
            equal = abs(np.mean(vb) - np.mean(va)) <= NUMERIC_TOLERANCE
            out.update(p=1.0 if equal else 0.0, statistic=0.0 if equal else None)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = stats.ttest_ind(vb, va, equal_var=False)
            out.update(p=float(res.pvalue), statistic=float(res.statistic), df=float(res.df))
    return out


def _metric_vector(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    m = regression_metrics(pred, label)
    return np.array([m[k] for k in METRIC_NAMES], dtype=np.float64)


def _seed_mean(side_pred: np.ndarray, label: np.ndarray, idx: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Mean over the drawn seed rows (with multiplicity) of the metrics on the drawn utterances."""
    counts = np.bincount(draw, minlength=side_pred.shape[0])
    y = label[idx]
    total = np.zeros(len(METRIC_NAMES))
    for k in np.flatnonzero(counts):
        total += counts[k] * _metric_vector(side_pred[k, idx], y)
    return total / len(draw)


def canonical_ids(ids: Sequence[str]) -> dict[str, int] | None:
    """{canonical id: position} with MMSA pickle ids ``<video>$_$<clip>`` written as the label CSV's
    ``<video>_<clip>``, so the two real MOSI files name a clip alike; None when two ids of one side
    would become the same (the mapping would not be one to one)."""
    canon = [str(u).replace("$_$", "_") for u in ids]
    if len(set(canon)) != len(canon):
        return None
    return {u: i for i, u in enumerate(canon)}


def _join_ids(ids_a: list[str], ids_b: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positions in a, positions in b) of the ids both sides have, in id order (an inner join)."""
    side_a = pl.DataFrame({"id": pl.Series(ids_a, dtype=pl.String), "ia": np.arange(len(ids_a))})
    side_b = pl.DataFrame({"id": pl.Series(ids_b, dtype=pl.String), "ib": np.arange(len(ids_b))})
    both = side_a.join(side_b, on="id", how="inner").sort("id")
    return both["ia"].to_numpy(), both["ib"].to_numpy()


def paired_bootstrap(a: SeedPredictions, b: SeedPredictions, *, n_boot: int, rng_seed: int = 0,
                     alpha: float = 0.05, resample_seeds: bool = True) -> dict[str, Any]:
    """Percentile CI of mean-over-seeds metric(b) - metric(a) by a paired bootstrap (see module doc).

    Only the utterance ids both sides scored take part (DataError when there are none). Each side
    is scored against its own labels. Returns {"n_utterances", "ids_only_in_a", "ids_only_in_b",
    "labels_differ" (common ids whose labels differ), "id_matching" ("exact", or "canonical" when the
    sides share no id as written but do once MMSA's ``$_$`` is read as ``_``), "seed_resampling": "paired" | "independent" |
    "none", "n_boot", "rng_seed", "confidence", "metrics": {name: {"point", "ci_low", "ci_high",
    "excludes_zero"}}}; "point" is the difference on the original data (all common utterances,
    every seed once).
    """
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    ia, ib = _join_ids(list(a.ids), list(b.ids))
    id_matching = "exact"
    if not len(ia):  # the same clips may be named by the two MOSI layouts: match <video>_<clip>
        canon_a, canon_b = canonical_ids(a.ids), canonical_ids(b.ids)
        if canon_a is not None and canon_b is not None and set(canon_a) & set(canon_b):
            ia, ib = _join_ids(list(canon_a), list(canon_b))
            id_matching = "canonical (MMSA '<video>$_$<clip>' read as '<video>_<clip>')"
    if not len(ia):
        raise DataError(f"the two sides share no test utterance id (a: {len(a.ids)} like {a.ids[0]!r}, "
                        f"b: {len(b.ids)} like {b.ids[0]!r}): not the same test set")
    ya, yb = a.labels[ia], b.labels[ib]
    pa, pb = a.predictions[:, ia], b.predictions[:, ib]
    n, na, nb = len(ia), len(a.seeds), len(b.seeds)
    paired_seeds = a.seeds == b.seeds
    mode = ("paired" if paired_seeds else "independent") if resample_seeds else "none"

    everyone = np.arange(n)
    point = _seed_mean(pb, yb, everyone, np.arange(nb)) - _seed_mean(pa, ya, everyone, np.arange(na))
    rng = np.random.default_rng(rng_seed)
    diffs = np.empty((n_boot, len(METRIC_NAMES)))
    for r in range(n_boot):
        idx = rng.integers(0, n, size=n)
        if mode == "none":
            ka, kb = np.arange(na), np.arange(nb)
        else:
            ka = rng.integers(0, na, size=na)
            kb = ka if mode == "paired" else rng.integers(0, nb, size=nb)
        diffs[r] = _seed_mean(pb, yb, idx, kb) - _seed_mean(pa, ya, idx, ka)
    low = np.quantile(diffs, alpha / 2, axis=0)
    high = np.quantile(diffs, 1 - alpha / 2, axis=0)
    metrics = {}
    for j, name in enumerate(METRIC_NAMES):
        lo, hi = float(low[j]), float(high[j])
        metrics[name] = {"point": float(point[j]), "ci_low": lo, "ci_high": hi,
                         "excludes_zero": bool(lo > NUMERIC_TOLERANCE or hi < -NUMERIC_TOLERANCE)}
    return {
        "n_utterances": n,
        "ids_only_in_a": len(a.ids) - n,
        "ids_only_in_b": len(b.ids) - n,
        "labels_differ": int(np.sum(ya != yb)),
        "id_matching": id_matching,
        "seed_resampling": mode,
        "n_boot": int(n_boot),
        "rng_seed": int(rng_seed),
        "confidence": 1 - alpha,
        "metrics": metrics,
    }


def verdict(metric: str, diff: float, *, ci: tuple[float, float] | None = None, p: float | None = None,
            alpha: float = 0.05, floor: float = 0.0) -> str:
    """"better"/"worse" (side b against a) or "within noise"; "not tested" without CI and p.

    Evidence: the bootstrap CI when given (it must exclude 0 on the side of ``diff``, by more than
    NUMERIC_TOLERANCE), else the per-seed p (< alpha). Then |diff| must exceed ``floor``. Direction:
    MAE (LOWER_IS_BETTER) improves when it goes down, every other metric when it goes up.
    """
    if ci is not None:
        lo, hi = ci
        evident = (diff > 0 and lo > NUMERIC_TOLERANCE) or (diff < 0 and hi < -NUMERIC_TOLERANCE)
    elif p is not None:
        evident = p < alpha and abs(diff) > NUMERIC_TOLERANCE
    else:
        return NOT_TESTED
    if not evident or abs(diff) <= floor:
        return WITHIN_NOISE
    improved = diff < 0 if metric in LOWER_IS_BETTER else diff > 0
    return BETTER if improved else WORSE


def compare_sides(metrics_a: Mapping[str, Any], metrics_b: Mapping[str, Any], *,
                  preds_a: SeedPredictions | None = None, preds_b: SeedPredictions | None = None,
                  metrics: Sequence[str] = METRIC_NAMES, n_boot: int = 2000, rng_seed: int = 0,
                  alpha: float = 0.05, resample_seeds: bool = True,
                  noise_floor: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Everything `diff` reports, as a JSON-able dict (see the README's "Comparing runs").

    ``metrics_a``/``metrics_b``: contract-D documents (``per_seed`` required). The bootstrap runs
    when both prediction sets are given and ``n_boot`` > 0; otherwise the verdict rests on the
    per-seed test. Per metric: each side's mean/std (ddof 0) and per-seed values, ``diff`` (b - a of
    the means), ``seed_test``, ``bootstrap`` (or None), the floor, ``lower_is_better``, ``verdict``.
    """
    floors = dict(noise_floor or {})
    seeds_a, seeds_b = _per_seed(metrics_a, "a"), _per_seed(metrics_b, "b")
    boot = None
    if preds_a is not None and preds_b is not None and n_boot > 0:
        boot = paired_bootstrap(preds_a, preds_b, n_boot=n_boot, rng_seed=rng_seed, alpha=alpha,
                                resample_seeds=resample_seeds)
    rows = {}
    for name in metrics:
        va = {s: float(m[name]) for s, m in seeds_a.items()}
        vb = {s: float(m[name]) for s, m in seeds_b.items()}
        mean_a, std_a = mean_std(list(va.values()))
        mean_b, std_b = mean_std(list(vb.values()))
        diff = mean_b - mean_a
        st = seed_test(va, vb)
        b_row = boot["metrics"][name] if boot is not None else None
        floor = float(floors.get(name, 0.0))
        if b_row is not None:
            # The bootstrap's own point: equal to diff when both sides scored the same utterances.
            v = verdict(name, b_row["point"], ci=(b_row["ci_low"], b_row["ci_high"]), floor=floor)
        else:
            v = verdict(name, diff, p=st["p"], alpha=alpha, floor=floor)
        rows[name] = {
            "a": {"mean": mean_a, "std": std_a, "per_seed": {str(s): va[s] for s in sorted(va)}},
            "b": {"mean": mean_b, "std": std_b, "per_seed": {str(s): vb[s] for s in sorted(vb)}},
            "diff": diff,
            "seed_test": st,
            "bootstrap": b_row,
            "noise_floor": floor,
            "lower_is_better": name in LOWER_IS_BETTER,
            "verdict": v,
        }
    settings = {"alpha": alpha, "n_boot": int(n_boot), "rng_seed": int(rng_seed), "resample_seeds": resample_seeds,
                "std_ddof": 0, "noise_floor": {k: float(v) for k, v in sorted(floors.items())} or None,
                "numeric_tolerance": NUMERIC_TOLERANCE}
    summary = None
    if boot is not None:
        summary = {k: v for k, v in boot.items() if k != "metrics"}
    return {"settings": settings, "bootstrap": summary,
            "seeds": {"a": sorted(seeds_a), "b": sorted(seeds_b)}, "metrics": rows}


def _per_seed(doc: Mapping[str, Any], side: str) -> dict[int, Mapping[str, float]]:
    per = doc.get("per_seed") if isinstance(doc, Mapping) else None
    if not isinstance(per, Mapping) or not per:
        raise DataError(f"side {side}: the metrics JSON has no per_seed results")
    out = {}
    for s, m in per.items():
        try:
            seed = int(s)
        except (TypeError, ValueError):
            raise DataError(f"side {side}: per_seed key {s!r} is not a seed number") from None
        if not isinstance(m, Mapping):
            raise DataError(f"side {side}: per_seed.{s} is not an object")
        for name in METRIC_NAMES:
            v = m.get(name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise DataError(f"side {side}: per_seed.{s}.{name} missing or not a finite number")
        out[seed] = m
    return out
