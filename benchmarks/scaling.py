"""The cost curve on CMU-MOSEI: wall time and peak RSS of each stage against the corpus size.

For N in --sizes (default 1k, 2k, 4k, 8k, 16k and all 22,788), a subset of the MOSEI label CSV
(every split shrunk in proportion, rows drawn with a fixed seed) goes through the real stage
commands, each a subprocess run from the repository root into a scratch folder:

  parse          `python -m stages features` then `parse` with an empty cache (cold); only parse is timed
  text-features  `text-features` (MiniLM, frozen)
  train-epoch    `train` with one seed and one epoch (its epoch time includes the valid pass)
  evaluate       `evaluate` of that model (every split)
  predict        `predict --input <subset CSV> --split test` from raw text (load, parse, encode, model)

Wall time is the subprocess's, start to exit (imports and model loads included); peak RSS is its
``ru_maxrss`` from ``os.wait4``. A slope is the least-squares fit of log(seconds) on log(N), over all sizes and over N >= 4k
(each subprocess pays a fixed start-up: imports, model loads, which flattens the small sizes).
Results: benchmarks/results/scaling.{json,md,png}. Reads ../shared/data/mosei_label_ailiwood_mme0621.csv
in place (research use only; the scratch copies are deleted). Threads: 1 per stage, as the params say.

    .venv/bin/python benchmarks/scaling.py [--sizes 1000,2000,4000,8000,16000,22788] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
MOSEI_CSV = ROOT.parent / "shared" / "data" / "mosei_label_ailiwood_mme0621.csv"
PARAMS = ROOT / "pipelines" / "mosei-text" / "params.yaml"
STAGES = ("parse", "text-features", "train-epoch", "evaluate", "predict")
OUT = ROOT / "benchmarks" / "results"


def subset_csv(rows: list[dict], header: list[str], n: int, path: Path, seed: int = 0) -> dict[str, int]:
    """The first ``n`` of a fixed permutation within each split, in proportion to the splits."""
    by_split: dict[str, list[dict]] = {}
    for r in rows:
        by_split.setdefault(r["mode"], []).append(r)
    total = len(rows)
    rng = np.random.default_rng(seed)
    kept, counts = [], {}
    for split, items in sorted(by_split.items()):
        k = len(items) if n >= total else max(1, round(n * len(items) / total))
        order = rng.permutation(len(items))[:k]
        kept.extend(items[i] for i in sorted(order))
        counts[split] = k
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(kept)
    return counts


def run_measured(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one subprocess; its output goes to ``log``."""
    env = dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(map(str, cmd)) + "\n").encode())
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=out, stderr=out, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(map(str, cmd[2:5]))} failed (exit {os.waitstatus_to_exitcode(status)}); see {log}")
    return wall, usage.ru_maxrss / 1024.0


def params_for(base: dict, work: Path, csv_path: Path) -> Path:
    p = json.loads(json.dumps(base))
    p["data"]["path"] = str(csv_path)
    p["features"]["out"] = str(work / "features")
    p["parse"].update(input=str(work / "features"), out=str(work / "parse"), cache=str(work / "parse_cache"))
    p["base"]["seeds"] = [0]
    p["train"].update(epochs=1, patience=1)
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def measure_size(n: int, rows, header, base: dict, scratch: Path, log: Path) -> dict:
    work = scratch / f"n{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    csv_path = work / "subset.csv"
    counts = subset_csv(rows, header, n, csv_path)
    params = params_for(base, work, csv_path)
    py = [sys.executable, "-m", "stages"]
    run_measured([*py, "features", "--params", params], log)
    res: dict[str, dict] = {}
    steps = {
        "parse": [*py, "parse", "--params", params],
        "text-features": [*py, "text-features", "--params", params, "--parse", work / "parse", "--out", work / "tf"],
        "train-epoch": [*py, "train", "--params", params, "--variant", "frozen", "--features", work / "features",
                        "--parse", work / "parse", "--text-features", work / "tf", "--out", work / "model",
                        "--live", work / "live"],
        "evaluate": [*py, "evaluate", "--params", params, "--variant", "frozen", "--models", work / "model",
                     "--features", work / "features", "--parse", work / "parse", "--text-features", work / "tf",
                     "--out", work / "metrics.json", "--predictions", work / "pred.parquet", "--plots", work / "plots"],
        "predict": [*py, "predict", "--model", work / "model", "--input", csv_path, "--split", "test",
                    "--no-table", "--out", work / "predict.parquet", "--device", "cpu", "--threads", "1"],
    }
    for name, cmd in steps.items():
        wall, rss = run_measured(cmd, log)
        res[name] = {"seconds": round(wall, 2), "peak_rss_mib": round(rss, 1)}
        print(f"  N={n:>6} {name:<14} {wall:8.1f} s  {rss:8.1f} MiB", file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"n": sum(counts.values()), "splits": counts, "stages": res}


def slope(ns: list[int], values: list[float]) -> float:
    x, y = np.log(ns), np.log(values)
    return float(np.polyfit(x, y, 1)[0])


def markdown(doc: dict) -> str:
    rows = doc["sizes"]
    head = "| N | " + " | ".join(f"{s} s | {s} MiB" for s in STAGES) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(STAGES))]
    for r in rows:
        cells = [f"{r['stages'][s]['seconds']:.1f} | {r['stages'][s]['peak_rss_mib']:.0f}" for s in STAGES]
        lines.append(f"| {r['n']:,} | " + " | ".join(cells) + " |")
    fit = doc["fit"]
    lines.append("| slope, all N (log-log) | " + " | ".join(f"{fit[s]['time_slope']:.2f} | rss x{fit[s]['rss_ratio']:.2f}"
                                                          for s in STAGES) + " |")
    lines.append("| slope, N >= 4k | " + " | ".join(f"{fit[s]['time_slope_from_4k']:.2f} | " for s in STAGES) + " |")
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in doc["sizes"]]
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    for s in STAGES:
        ax.loglog(ns, [r["stages"][s]["seconds"] for r in doc["sizes"]], marker="o",
                  label=f"{s} (slope {doc['fit'][s]['time_slope']:.2f})")
    ax.set_xlabel("MOSEI utterances (N)")
    ax.set_ylabel("wall seconds (subprocess)")
    ax.set_title("Cost against corpus size, 2-core CPU, 1 thread per stage")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2000,4000,8000,16000,22788")
    ap.add_argument("--scratch", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not MOSEI_CSV.is_file():
        sys.exit(f"error: {MOSEI_CSV} not found (the MOSEI transcripts, see ../shared/data/README.md)")
    with open(MOSEI_CSV, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), list(reader.fieldnames or [])
    base = yaml.safe_load(PARAMS.read_text())
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ssu_scaling_"))
    log = scratch / "scaling.log"
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        results.append(measure_size(min(n, len(rows)), rows, header, base, scratch, log))
    ns = [r["n"] for r in results]
    fit = {}
    for s in STAGES:
        secs = [r["stages"][s]["seconds"] for r in results]
        rss = [r["stages"][s]["peak_rss_mib"] for r in results]
        big = [i for i, n in enumerate(ns) if n >= 4000]  # where the fixed start-up cost matters less
        fit[s] = {"time_slope": round(slope(ns, secs), 3) if len(ns) > 1 else math.nan,
                  "time_slope_from_4k": round(slope([ns[i] for i in big], [secs[i] for i in big]), 3)
                  if len(big) > 1 else math.nan,
                  "rss_ratio": round(rss[-1] / rss[0], 3)}
    doc = {"machine": f"{os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
           "command": "python benchmarks/scaling.py --sizes " + args.sizes, "sizes": results, "fit": fit}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "scaling.md").write_text(f"Command `{doc['command']}`, {doc['machine']}, {doc['date']}.\n\n"
                                         + markdown(doc))
    plot(doc, args.out / "scaling.png")
    sys.stdout.write(markdown(doc))


if __name__ == "__main__":
    main()
