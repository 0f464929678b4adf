"""Ridge regression on sentence embeddings: the reference a structured model has to beat.

``fit_ridge`` solves the penalised least squares in closed form (float64, intercept not
penalised, as scikit-learn's ``Ridge(fit_intercept=True)``): centre X and y on the training rows,
solve ``(Xc'Xc + alpha I) w = Xc'yc``, intercept ``mean(y) - mean(X) w``. ``select_alpha`` forms
``Xc'Xc`` and ``Xc'yc`` once, solves one model per alpha and keeps the alpha with the best validation
score (MAE by default, lower is better; ties go to the larger alpha, the simpler model).
Deterministic: no random draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssu_model.errors import DataError
from ssu_model.eval.metrics import LOWER_IS_BETTER, regression_metrics


@dataclass(frozen=True)
class RidgeModel:
    """``predict(X) = X @ weights + intercept``."""

    weights: np.ndarray  # (dim,) float64
    intercept: float
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weights + self.intercept


def _check_alpha(alpha: float) -> float:
    if not alpha > 0:
        raise DataError(f"ridge: alpha must be > 0, got {alpha}")
    return float(alpha)


def _check(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataError(f"ridge: {where} needs (n, dim) inputs and n labels, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError(f"ridge: {where} inputs hold NaN or inf")
    return x, y


@dataclass(frozen=True)
class _NormalEquations:
    """The centred training statistics every alpha shares: solve ``(xtx + alpha I) w = xty``."""

    x_mean: np.ndarray
    y_mean: float
    xtx: np.ndarray
    xty: np.ndarray

    def solve(self, alpha: float) -> RidgeModel:
        alpha = _check_alpha(alpha)
        weights = np.linalg.solve(self.xtx + alpha * np.eye(self.xtx.shape[0]), self.xty)
        return RidgeModel(weights=weights, intercept=float(self.y_mean - self.x_mean @ weights), alpha=float(alpha))


def _normal_equations(x: np.ndarray, y: np.ndarray) -> _NormalEquations:
    x, y = _check(x, y, "train")
    x_mean, y_mean = x.mean(0), y.mean()
    xc = x - x_mean
    return _NormalEquations(x_mean=x_mean, y_mean=y_mean, xtx=xc.T @ xc, xty=xc.T @ (y - y_mean))


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> RidgeModel:
    """The ridge solution for one ``alpha`` (> 0) on rows ``x`` with targets ``y``."""
    alpha = _check_alpha(alpha)  # first: before the O(n d^2) product of a fit it would refuse
    return _normal_equations(x, y).solve(alpha)


def select_alpha(x_train, y_train, x_valid, y_valid, alphas: Sequence[float],
                 metric: str = "MAE") -> tuple[RidgeModel, list[dict[str, float]]]:
    """(the model whose alpha scores best on validation, one row per alpha: alpha + its metrics)."""
    if not alphas:
        raise DataError("ridge: no alphas to choose from")
    alphas = sorted(_check_alpha(a) for a in alphas)
    x_valid, y_valid = _check(x_valid, y_valid, "valid")
    equations = _normal_equations(x_train, y_train)  # once: only the diagonal changes with alpha
    lower = metric in LOWER_IS_BETTER
    rows, best, best_score = [], None, None
    for alpha in alphas:
        model = equations.solve(alpha)
        scores = regression_metrics(model.predict(x_valid), y_valid)
        if metric not in scores:
            raise DataError(f"ridge: unknown selection metric {metric!r} (one of {', '.join(scores)})")
        rows.append({"alpha": alpha, **scores})
        score = scores[metric]
        if best is None or (score <= best_score if lower else score >= best_score):
            best, best_score = model, score
    return best, rows
