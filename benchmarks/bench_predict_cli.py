"""`predict` as a user runs it: whole processes, from the raw CSV, several code versions side by side.

Each side is a checkout (a folder with stages/ and ssu_model/, e.g. a `git worktree` of an older
commit) plus extra `predict` options. Rounds are interleaved (A B C, A B C, ...) so that a drift of
the shared machine's speed hits every side alike; each run's wall time and peak RSS come from the
operating system (``os.wait4``), and the step times from the command's own log line
("load / parse / encode / model"). Prints a markdown table: medians, and the ratio of the first
side's wall to each side's, per round, then its median.

    .venv/bin/python benchmarks/bench_predict_cli.py --model pipelines/mosei-text/models/frozen \\
        --input ../shared/data/mosei_label_ailiwood_mme0621.csv --split test --rounds 3 \\
        --side "41da8fb=/tmp/base41" --side "now=." --side "now, bf16=.:--encoder-precision bf16"
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("load", "parse", "encode", "model")
STEP_LINE = re.compile(r"load ([\d.]+)s, parse ([\d.]+)s, encode ([\d.]+)s, model ([\d.]+)s")


def parse_side(text: str) -> tuple[str, Path, list[str]]:
    """'NAME=FOLDER[:EXTRA OPTIONS]' -> (name, folder, options)."""
    name, _, rest = text.partition("=")
    folder, _, extra = rest.partition(":")
    if not name or not folder:
        raise SystemExit(f"--side {text!r}: expected NAME=FOLDER[:OPTIONS]")
    return name, Path(folder).resolve(), shlex.split(extra)


def run_once(folder: Path, args: list[str]) -> dict[str, float]:
    """One `python -m stages predict` in ``folder``: wall s, peak RSS GiB, and the logged step seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "stages", "predict", *args, "--no-table", "--out", str(Path(tmp) / "p.parquet")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = proc.stderr.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed in {folder}:\n{stderr[-2000:]}")
    found = STEP_LINE.search(stderr)
    steps = dict(zip(STEPS, map(float, found.groups()), strict=True)) if found else {}
    return {"wall": wall, "rss_gib": usage.ru_maxrss / 2**20, **steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder (resolved against each side's folder)")
    ap.add_argument("--input", required=True, help="label CSV or MMSA pickle, as predict --input reads")
    ap.add_argument("--split", default="test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--side", action="append", required=True, help="NAME=FOLDER[:EXTRA PREDICT OPTIONS]")
    args = ap.parse_args()
    sides = [parse_side(s) for s in args.side]
    common = ["--model", str(Path(args.model).resolve()), "--input", str(Path(args.input).resolve()),
              "--split", args.split]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _f, _e in sides}
    for r in range(args.rounds):
        for name, folder, extra in sides:
            runs[name].append(run_once(folder, common + extra))
            print(f"round {r + 1}: {name}: {runs[name][-1]['wall']:.1f} s", file=sys.stderr, flush=True)

    first = sides[0][0]
    print(f"| side | wall s (median) | peak RSS GiB | {' / '.join(STEPS)} s (median) | ratio to {first} per round | median |")
    print("|---|---:|---:|---|---|---:|")
    for name, _folder, _extra in sides:
        rs = runs[name]
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        steps = " / ".join(f"{med[s]:.1f}" if s in med else "-" for s in STEPS)
        ratios = [a["wall"] / b["wall"] for a, b in zip(runs[first], rs, strict=True)]
        print(f"| {name} | {med['wall']:.1f} | {med['rss_gib']:.2f} | {steps} | "
              f"{' / '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(ratios):.2f}x |")


if __name__ == "__main__":
    main()
