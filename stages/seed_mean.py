"""Stage `seed-mean`: the metrics of the seeds' mean prediction, which is what `predict` returns.

`evaluate` scores every seed's model and reports the mean ± std of their metrics (MMSA's protocol).
`predict` scores new text with the mean of the seeds' predictions (its ``score``): an ensemble of
the seeds, which is a different model from any one of them. This stage scores that mean on the
test predictions `evaluate` wrote (contract D, one row per (seed, id)), so that a user reads what the
shipped predictor does. It reads no model and no parameter. Whether the mean is worth reporting was
judged on validation first (docs/decisions/real-data.md).

Output: a contract-D metrics JSON under the name ``<variant>_seed_mean``, one "seed" 0 standing for
the combined model (as `ridge`), plus ``seeds_averaged``: the seeds whose predictions were averaged.
"""

from __future__ import annotations

from pathlib import Path

import typer

from stages.common import log, stage_command
from stages.score_files import write_metrics

SECTIONS: tuple[str, ...] = ()  # reads no params.yaml section: only the predictions table


@stage_command
def main(
    predictions: Path = typer.Option(..., "--predictions", help="a variant's test predictions (evaluate's parquet)"),
    out: Path = typer.Option(..., "--out", help="metrics JSON to write"),
    name: str | None = typer.Option(None, "--name", help="variant name in the JSON (default: <stem>_seed_mean)"),
) -> None:
    """Score the mean of the seeds' test predictions (what `predict` returns)."""
    from ssu_model.errors import DataError
    from ssu_model.eval.metrics import metrics_report, regression_metrics
    from ssu_model.eval.significance import read_seed_grid

    if not predictions.is_file():
        raise DataError(f"predictions file not found: {predictions} (run evaluate)")
    grid = read_seed_grid(predictions, str(predictions))
    if len(grid.seeds) < 2:
        raise DataError(f"{predictions}: one seed ({grid.seeds[0]}): there is nothing to average")
    name = name or f"{predictions.stem}_seed_mean"
    report = metrics_report(name, [0], {0: regression_metrics(grid.predictions.mean(axis=0), grid.labels)})
    report["seeds_averaged"] = list(grid.seeds)
    mean = report["mean"]
    log(f"seed-mean[{name}] of seeds {list(grid.seeds)} on {len(grid.ids)} utterances: Non0_acc_2 "
        f"{mean['Non0_acc_2']:.4f} Acc7 {mean['Acc7']:.4f} MAE {mean['MAE']:.4f} Corr {mean['Corr']:.4f}")
    write_metrics(out, report)
    log(f"seed-mean[{name}]: wrote {out}")
