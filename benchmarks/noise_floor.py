"""Machine-to-machine noise floor of a pipeline: the same commit re-run on other CPU kernels.

A CPU with other vector units (AVX-512 instead of AVX2, or none) runs other float kernels, so the
text encoder's states and every training step differ in the last bits, and the trained models
differ. `diff` must call that level of change noise. Simulate other CPUs on one machine with
torch's ``ATEN_CPU_CAPABILITY`` (``default`` = no vector kernels; ``avx2``; ``avx512`` only on a
CPU that has it), re-running the pipeline from its `text-features` stage in a clean clone, then
compare each re-run's metrics with the committed ones:

    git clone . /tmp/nf && cd /tmp/nf && dvc config cache.dir <this repo>/.dvc/cache --local
    ATEN_CPU_CAPABILITY=default dvc repro -f -s text-features && \\
        ATEN_CPU_CAPABILITY=default dvc repro -f -s train@full evaluate@full ...   # per variant
    cd - && python benchmarks/noise_floor.py --reference metrics \\
        --rerun ATEN_CPU_CAPABILITY=default=/tmp/nf/metrics --variants full,no_anchor --out noise_floor.json

Prints a markdown table per metric: the largest change of a seed mean over the re-runs (the floor),
each (setting, variant)'s change, and the reference's seed-to-seed std (one seed) and standard
error (the mean over seeds). ``--out`` writes the JSON `diff` reads by default from
``<pipeline>/noise_floor.json`` (``floor`` = the largest change; provenance alongside).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssu_model.eval.metrics import METRIC_NAMES  # noqa: E402
from ssu_model.eval.noise_floor import noise_floor  # noqa: E402
from ssu_model.eval.significance import PERCENT_METRICS  # noqa: E402


def read_run(folder: Path, variants: list[str]) -> dict:
    run = {}
    for v in variants:
        path = folder / f"{v}.json"
        if not path.is_file():
            sys.exit(f"error: {path} not found (evaluate@{v} not run there?)")
        run[v] = json.loads(path.read_text())
    return run


def fmt(metric: str, value: float) -> str:
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.4f}"


def rounded(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="the committed run's metrics folder")
    ap.add_argument("--rerun", action="append", required=True,
                    help="SETTING=METRICS_FOLDER of a re-run (repeatable)")
    ap.add_argument("--variants", required=True, help="comma-separated variants re-run")
    ap.add_argument("--out", type=Path, default=None, help="write the floor JSON here")
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine, command, date)")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    reference = read_run(args.reference, variants)
    reruns = {}
    for item in args.rerun:
        setting, sep, folder = item.rpartition("=")
        if not sep or not setting:
            sys.exit(f"error: --rerun wants SETTING=FOLDER, got {item!r}")
        reruns[setting] = read_run(Path(folder), variants)
    result = noise_floor(reference, reruns)
    cols = [(s, v) for s in result["settings"] for v in result["variants"]]
    print("| metric | floor (max change) | " + " | ".join(f"{s}: {v}" for s, v in cols)
          + " | seed std (1 seed) | seed SEM (mean) |")
    print("|---|---|" + "---|" * len(cols) + "---|---|")
    for m in METRIC_NAMES:
        cells = [fmt(m, result["machine"][s][v][m]) for s, v in cols]
        print(f"| {m} | {fmt(m, result['floor'][m])} | " + " | ".join(cells)
              + f" | {fmt(m, result['seed_std'][m])} | {fmt(m, result['seed_sem'][m])} |")
    if args.out is not None:
        doc = rounded(result)
        doc["note"] = args.note
        doc["how"] = ("floor = the largest |change of a seed mean| between the committed run and a re-run of "
                      "the same commit under another ATEN_CPU_CAPABILITY (benchmarks/noise_floor.py); "
                      "fractions for the accuracies/F1s as in the metrics JSON")
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        tmp.replace(args.out)
        print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
