"""The tabular layer on polars against the code it replaced, side by side in one process.

  reader            read_label_csv on the MOSEI label CSV (22,788 rows): polars (today) against
                    the csv-module parser of commit 41da8fb
  seed_predictions  the seeds x utterances grid of 5 seeds x 4,653 test utterances (a random long
                    table, rows shuffled): the polars pivot (today) against 41da8fb's Python loop

The old code is read from git (``git show 41da8fb:<file>``) into a scratch module, so the baseline
is exactly what ran before. Calls alternate old/new, ``--repeats`` each after one warm-up; the
table gives medians and the ratio. Both must give the same result (checked).

    .venv/bin/python benchmarks/bench_tables.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "41da8fb"
MOSEI_CSV = ROOT.parent / "shared" / "data" / "mosei_label_ailiwood_mme0621.csv"


def baseline_module(rel: str, name: str):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:{rel}"], capture_output=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def paired(old, new, repeats: int) -> tuple[float, float]:
    old(), new()
    t_old, t_new = [], []
    for _ in range(repeats):
        for fn, out in ((old, t_old), (new, t_new)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(t_old), statistics.median(t_new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from ssu_model.data import label_csv
    from ssu_model.eval import significance
    from ssu_model.eval.tables import frame, markdown_table

    rows = []
    if MOSEI_CSV.is_file():
        old = baseline_module("ssu_model/data/label_csv.py", "label_csv_41da8fb")
        a, b = old.read_label_csv(MOSEI_CSV), label_csv.read_label_csv(MOSEI_CSV)
        assert all(a.splits[s].ids == b.splits[s].ids and a.splits[s].texts == b.splits[s].texts
                   and np.array_equal(a.splits[s].labels, b.splits[s].labels) for s in a.splits), "readers differ"
        t_old, t_new = paired(lambda: old.read_label_csv(MOSEI_CSV), lambda: label_csv.read_label_csv(MOSEI_CSV),
                              args.repeats)
        rows.append(["read_label_csv, MOSEI 22,788 rows", f"{t_old * 1e3:.1f}", f"{t_new * 1e3:.1f}", f"{t_old / t_new:.1f}x"])
    else:
        print(f"note: {MOSEI_CSV} not found: reader row skipped", file=sys.stderr)

    old_sig = baseline_module("ssu_model/eval/significance.py", "significance_41da8fb")
    rng = np.random.default_rng(0)
    n, seeds = 4653, 5
    ids = [f"vid{rng.integers(3000):04d}$_${i}" for i in range(n)]
    y = rng.uniform(-3, 3, n)
    order = rng.permutation(n * seeds)
    long = (np.repeat(np.arange(seeds), n)[order], [ids[i % n] for i in order], np.tile(y, seeds)[order],
            rng.normal(size=n * seeds))
    a, b = old_sig.seed_predictions(*long), significance.seed_predictions(*long)
    assert a.ids == b.ids and np.array_equal(a.predictions, b.predictions) and np.array_equal(a.labels, b.labels)
    t_old, t_new = paired(lambda: old_sig.seed_predictions(*long), lambda: significance.seed_predictions(*long),
                          args.repeats)
    rows.append([f"seed_predictions, {seeds} x {n:,} rows", f"{t_old * 1e3:.1f}", f"{t_new * 1e3:.1f}",
                 f"{t_old / t_new:.1f}x"])
    print(markdown_table(frame(["what", f"{BASELINE} ms", "polars ms", "speed-up"], rows),
                         ["left", "right", "right", "right"]))


if __name__ == "__main__":
    main()
