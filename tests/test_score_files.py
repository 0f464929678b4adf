"""stages/score_files.py: what `evaluate`, `ridge` and `seed-mean` write. The predictions table reads
back through ``significance.read_seed_grid`` (what `diff` and `seed-mean` read) unchanged; a
metrics JSON is sorted and byte-stable, and a NaN writes nothing."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from ssu_model.eval.significance import read_seed_grid
from stages.score_files import write_metrics, write_predictions


def test_predictions_table_reads_back_sorted_by_id_per_seed(tmp_path):
    ids = ["b$_$2", "a$_$1", "c$_$0", "a$_$0"]  # not in order
    labels = np.array([0.5, -1.0, 2.0, 0.0])
    preds = {3: np.array([0.25, -0.75, 1.5, 0.125]), 1: np.array([1.0, -2.0, 0.5, -0.5])}
    path = tmp_path / "p" / "v.parquet"
    write_predictions(path, ids, labels, preds)
    raw = pq.read_table(path).to_pydict()  # the file itself: seeds in the given order, ids sorted in each
    assert raw["seed"] == [3] * 4 + [1] * 4 and raw["id"] == sorted(ids) * 2
    grid = read_seed_grid(path, str(path))
    assert grid.ids == ("a$_$0", "a$_$1", "b$_$2", "c$_$0")
    order = [3, 1, 0, 2]  # where each sorted id stands in the input
    assert np.array_equal(grid.labels, labels[order])
    for k, seed in enumerate(grid.seeds):
        assert np.array_equal(grid.predictions[k], preds[seed][order].astype(np.float32))
    assert set(grid.seeds) == {1, 3}
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it


def test_metrics_json_is_sorted_and_a_nan_writes_nothing(tmp_path):
    out = tmp_path / "m.json"
    write_metrics(out, {"variant": "v", "mean": {"MAE": 0.5, "Corr": 0.25}})
    first = out.read_bytes()
    assert json.loads(first) == {"variant": "v", "mean": {"MAE": 0.5, "Corr": 0.25}}
    assert first.index(b'"Corr"') < first.index(b'"MAE"') and first.endswith(b"}\n")
    write_metrics(out, {"mean": {"Corr": 0.25, "MAE": 0.5}, "variant": "v"})
    assert out.read_bytes() == first  # same report, same bytes, whatever the key order

    bad = tmp_path / "bad.json"
    with pytest.raises(ValueError):
        write_metrics(bad, {"mean": {"MAE": math.nan}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
