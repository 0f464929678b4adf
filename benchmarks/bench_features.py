"""Benchmark `features` on a MOSEI-scale unaligned sample.

Generates the synthetic MOSEI-scale unaligned dataset (16326/1871/4659 utterances, audio
500x74, vision 500x35, text 50x768) in a temporary directory with `python -m stages sample`,
then times `python -m stages features` on it, each as a child process whose wall time and
peak RSS (``os.wait4`` rusage) are measured. Finally a third child memory-maps the written
train split and reads it one record batch at a time, to show the memory a consumer needs.

    .venv/bin/python benchmarks/bench_features.py            # full MOSEI scale (~9 GB RAM, ~14 GB disk)
    .venv/bin/python benchmarks/bench_features.py --sizes 2000,200,500   # quicker

Prints a markdown table. Needs ~2x the pickle size free on disk in --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

READER = r"""
import json, sys, time, resource
import numpy as np
from ssu_model.data.features import FeatureSplit

def rss_anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0

t0 = time.perf_counter()
fs = FeatureSplit(sys.argv[1])
open_s = time.perf_counter() - t0
after_open = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
values, lengths = fs.sequence_batch("audio", 0)
batch = np.array(values)            # decode + copy one record batch
one_batch = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
batch_mib = batch.nbytes / 2**20
del batch
peak_anon = rss_anon_kib()
t0 = time.perf_counter()
total = 0.0
for i in range(fs.num_batches):      # stream the whole split, one batch at a time
    a, la = fs.sequence_batch("audio", i)
    v, lv = fs.sequence_batch("vision", i)
    total += float(a.sum(dtype=np.float64)) + float(v.sum(dtype=np.float64))
    peak_anon = max(peak_anon, rss_anon_kib())
stream_s = time.perf_counter() - t0
print(json.dumps({
    "rows": len(fs), "batches": fs.num_batches, "open_s": open_s, "stream_s": stream_s,
    "maxrss_after_open_mib": after_open / 1024, "maxrss_after_one_batch_mib": one_batch / 1024,
    "batch_mib": batch_mib, "peak_anon_while_streaming_mib": peak_anon / 1024,
    "checksum": total,
}))
"""


def run_measured(args: list[str], env: dict) -> tuple[float, float, str]:
    """Run a child with os.wait4 to get its own peak RSS."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(args[:4])} failed:\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 2**20, text  # ru_maxrss is KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16326,1871,4659", help="train,valid,test utterances")
    ap.add_argument("--workdir", default=None, help="where to write (default: a temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ssu-bench-features-"))
    work.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample"]["out"] = str(work / "mosei_unaligned.pkl")
    params["data"]["path"] = str(work / "mosei_unaligned.pkl")
    params["features"]["out"] = str(work / "features")
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py = sys.executable
    rows = []
    try:
        wall, rss, log = run_measured(
            [py, "-m", "stages", "sample", "--params", str(params_path), "--scale", "mosei",
             "--unaligned", "--sizes", args.sizes], env)
        sample_log = [line for line in log.splitlines() if line.startswith("sample: wrote")]
        pkl_gib = (work / "mosei_unaligned.pkl").stat().st_size / 2**30
        rows.append(("sample (generate + pickle)", wall, rss, f"pickle {pkl_gib:.2f} GiB"))

        wall, rss, log = run_measured([py, "-m", "stages", "features", "--params", str(params_path)], env)
        arrow_gib = sum(p.stat().st_size for p in (work / "features").glob("*.arrow")) / 2**30
        report = json.loads((work / "features" / "report.json").read_text())
        rows.append(("features (read + validate + write)", wall, rss, f"arrow {arrow_gib:.2f} GiB"))

        wall, rss, text = run_measured([py, "-c", READER, str(work / "features" / "train.arrow")], env)
        reader = json.loads(text.strip().splitlines()[-1])
        split_gib = (work / "features" / "train.arrow").stat().st_size / 2**30
        rows.append(("read train split batch by batch", wall, rss, f"train.arrow {split_gib:.2f} GiB"))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nsizes {args.sizes}; audio 500x74, vision 500x35, unaligned; python {sys.version.split()[0]}\n")
    print("| step | wall (s) | peak RSS (GiB) | size |")
    print("|---|---:|---:|---|")
    for name, wall, rss, size in rows:
        print(f"| {name} | {wall:.1f} | {rss:.2f} | {size} |")
    print()
    print("| reader (train split, one record batch at a time) | value |")
    print("|---|---:|")
    for key in ("rows", "batches", "open_s", "stream_s", "maxrss_after_open_mib", "maxrss_after_one_batch_mib",
                "batch_mib", "peak_anon_while_streaming_mib"):
        val = reader[key]
        print(f"| {key} | {val:.2f} |" if isinstance(val, float) else f"| {key} | {val} |")
    print("\npeak RSS of the reader counts the file pages it mapped (shared, reclaimable page cache);")
    print("its private memory is peak_anon_while_streaming_mib.")
    print("\n" + "\n".join(sample_log))
    nonfinite = report["nonfinite_replaced"]
    print(f"\nnon-finite values replaced: {nonfinite}")


if __name__ == "__main__":
    main()
