"""The `seed-mean` stage: the metrics of the mean of the seeds' predictions (what `predict` returns),
from the predictions table `evaluate` writes; bad tables fail with one line and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from ssu_model.eval.metrics import regression_metrics
from stages.cli import app
from stages.score_files import write_predictions

runner = CliRunner()


def _predictions(n=200, seeds=(0, 1, 2), seed=0):
    """Labels in [-3, 3]; each seed predicts label + its own large noise (averaging shrinks it)."""
    rng = np.random.default_rng(seed)
    ids = [f"v{i:03d}$_$1" for i in range(n)]
    y = np.round(rng.uniform(-3, 3, n), 1)
    preds = {s: y + rng.normal(0, 1.0, n) for s in seeds}
    return ids, y, preds


def test_scores_the_mean_prediction_not_the_mean_of_metrics(tmp_path):
    ids, y, preds = _predictions()
    write_predictions(tmp_path / "full.parquet", ids, y, preds)
    out = tmp_path / "m" / "full_seed_mean.json"
    result = runner.invoke(app, ["seed-mean", "--predictions", str(tmp_path / "full.parquet"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["variant"] == "full_seed_mean" and doc["seeds_averaged"] == [0, 1, 2] and doc["seeds"] == [0]
    y32 = y.astype(np.float32).astype(np.float64)
    mean = np.mean([preds[s].astype(np.float32).astype(np.float64) for s in (0, 1, 2)], axis=0)
    want = regression_metrics(mean, y32)
    for k, v in want.items():
        assert abs(doc["mean"][k] - v) < 1e-9, k
    per_seed_mae = np.mean([regression_metrics(preds[s].astype(np.float32), y32)["MAE"] for s in (0, 1, 2)])
    assert doc["mean"]["MAE"] < per_seed_mae - 0.1  # three independent noises: the mean is much closer


def test_bad_tables_fail_with_one_line_and_write_nothing(tmp_path):
    ids, y, preds = _predictions(n=20)
    cases = {}
    cases["absent"] = tmp_path / "absent.parquet"
    write_predictions(tmp_path / "one.parquet", ids, y, {0: preds[0]})
    cases["one seed"] = tmp_path / "one.parquet"
    write_predictions(tmp_path / "gap.parquet", ids, y, preds)
    table = pq.read_table(tmp_path / "gap.parquet")
    pq.write_table(table.slice(0, table.num_rows - 1), tmp_path / "gap.parquet")  # seed 2 lacks the last id
    cases["missing id"] = tmp_path / "gap.parquet"
    pq.write_table(table.drop_columns(["label"]), tmp_path / "nolabel.parquet")
    cases["no label"] = tmp_path / "nolabel.parquet"
    (tmp_path / "junk.parquet").write_text("not parquet")
    cases["junk"] = tmp_path / "junk.parquet"
    expect = {"absent": "not found", "one seed": "nothing to average", "missing id": "lacks utterance",
              "no label": "lacks column(s) label", "junk": "not a readable Parquet file"}
    for case, path in cases.items():
        out = tmp_path / f"{case}.json"
        result = runner.invoke(app, ["seed-mean", "--predictions", str(path), "--out", str(out)])
        assert result.exit_code == 1, case
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and expect[case] in lines[0], (case, result.output)
        assert not out.exists(), case
