"""Stage `ridge`: the ridge reference, computed in the pipeline instead of quoted.

The data README's reference for every dataset is ridge regression on the frozen text encoder's
mean-pooled sentence embedding of the raw text (``ssu_model.text.sentence_embedding``). This stage
computes it from the same `features` output SSU reads: alpha is chosen on the validation split
(``ridge.select_metric``), test is scored once. It writes what `evaluate` writes for a variant, under
the name ``ridge``, so that `python -m stages diff --variant ridge --variant-b <variant>` judges
SSU's margin over it (one deterministic fit: seed 0 stands for "no seed").

Outputs: ``metrics/ridge.json`` (contract D, plus ``selection``: the alpha kept and every alpha's
validation metrics) and ``reports/predictions/ridge.parquet`` (seed, id, label, prediction).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from stages.common import log, stage_command
from stages.errors import ParamError
from stages.inputs import FEATURES_OPTION, encoder_path
from stages.params import TextFeaturesParams, load_params, load_section
from stages.score_files import write_metrics, write_predictions

SECTIONS: tuple[str, ...] = ("ridge", "text_features")
NAME = "ridge"  # the name the outputs go under, beside the variants'


@dataclasses.dataclass(frozen=True)
class RidgeParams:
    """`ridge`: the reference model."""

    max_length: int  # sub-words per text fed to the encoder (sentence-transformers' cut: 256)
    alphas: tuple[float, ...]  # penalties tried on train; the best on validation is kept
    select_metric: str  # validation metric that picks alpha (MAE: lower is better)

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ParamError(f"max_length must be >= 2, got {self.max_length}")
        if not self.alphas or any(not a > 0 for a in self.alphas):
            raise ParamError(f"alphas must be a non-empty list of positive numbers, got {list(self.alphas)}")


def _embeddings(splits, model_path: str, max_length: int, batch_size: int) -> dict:
    from ssu_model.errors import DataError
    from ssu_model.text.sentence_embedding import mean_pooled_embeddings
    from ssu_model.text.text_encoder import TextEncoder

    try:
        encoder = TextEncoder(encoder_path(model_path), max_length=max_length)
    except OSError as exc:
        raise DataError(f"cannot load text encoder {model_path!r}: {str(exc).splitlines()[0]}") from None
    out = {}
    for name, split in splits.items():
        log(f"ridge: embedding {name} ({len(split)} texts)")
        out[name] = mean_pooled_embeddings(encoder.model, encoder.tokenizer, split.texts, max_length, batch_size)
    return out


@stage_command
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    features: Path | None = FEATURES_OPTION,
    out: Path | None = typer.Option(None, "--out", help="metrics JSON (default metrics/ridge.json)"),
    predictions: Path | None = typer.Option(None, "--predictions",
                                            help="Parquet (default reports/predictions/ridge.parquet)"),
) -> None:
    """Fit the ridge reference on train, pick alpha on valid, score test once."""
    raw = load_params(params)
    cfg = load_section(raw, "ridge", RidgeParams)
    tf = load_section(raw, "text_features", TextFeaturesParams)
    features = features or Path("data/features")
    out = out or Path("metrics") / f"{NAME}.json"
    predictions = predictions or Path("reports/predictions") / f"{NAME}.parquet"

    import numpy as np
    import torch

    from ssu_model.data.features import open_splits
    from ssu_model.eval.metrics import metrics_report, regression_metrics
    from ssu_model.eval.ridge import select_alpha

    if tf.threads:
        torch.set_num_threads(tf.threads)
    splits = open_splits(features)
    x = _embeddings(splits, tf.model_path, cfg.max_length, tf.batch_size)
    y = {name: split.labels.astype(np.float64) for name, split in splits.items()}
    model, rows = select_alpha(x["train"], y["train"], x["valid"], y["valid"], cfg.alphas, cfg.select_metric)
    log(f"ridge: alpha {model.alpha:g} (best valid {cfg.select_metric} of {len(rows)})")
    test_pred = model.predict(x["test"])
    report = metrics_report(NAME, [0], {0: regression_metrics(test_pred, y["test"])})
    report["selection"] = {"alpha": model.alpha, "metric": cfg.select_metric, "valid": rows}
    mean = report["mean"]
    log(f"ridge: test Non0_acc_2 {mean['Non0_acc_2']:.4f} Acc7 {mean['Acc7']:.4f} MAE {mean['MAE']:.4f} "
        f"Corr {mean['Corr']:.4f}")

    write_predictions(predictions, splits["test"].ids, y["test"], {0: test_pred})
    write_metrics(out, report)
    log(f"ridge: wrote {out}, {predictions}")
