"""The files a scoring stage writes (`evaluate`, `ridge`, `seed-mean`), each atomically.

- the metrics JSON (contract D; small, committed, a DVC ``metrics:`` output): indented, keys
  sorted, so that a re-run that scores the same writes the same bytes, and no NaN/inf (a metric
  that is not a number is an error, not a JSON extension other readers refuse);
- the predictions table (contract D: one row per (seed, id), ids sorted; what `diff` and
  `seed-mean` read back with ``significance.read_seed_grid``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from stages.common import atomic_file


def write_metrics(out: Path, report: dict) -> None:
    """``report`` (``metrics.metrics_report``'s dict, plus whatever the stage adds) as JSON at ``out``."""
    text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_file(out) as tmp:
        tmp.write_text(text)


def write_predictions(path: Path, ids: Sequence[str], labels: Sequence[float],
                      preds_by_seed: Mapping[int, Sequence[float]]) -> None:
    """The predictions table at ``path`` (Parquet): for each seed of ``preds_by_seed`` (in its order),
    one row per id, ids sorted; ``labels[i]`` and ``preds_by_seed[seed][i]`` belong to ``ids[i]``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    seeds = list(preds_by_seed)
    table = pa.table({
        "seed": pa.array([s for s in seeds for _ in order], pa.int32()),
        "id": pa.array([ids[i] for _ in seeds for i in order], pa.string()),
        "label": pa.array([float(labels[i]) for _ in seeds for i in order], pa.float32()),
        "prediction": pa.array([float(preds_by_seed[s][i]) for s in seeds for i in order], pa.float32()),
    })
    with atomic_file(path) as tmp:
        pq.write_table(table, str(tmp))
