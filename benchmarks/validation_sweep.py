"""Validation-only sweep: train candidate configurations and print their VALIDATION metrics.

The real-data pipelines choose every setting on the validation split (docs/decisions/real-data.md).
This script trains each candidate with the `train` stage (train split; selection and early
stopping on valid, as in the pipelines) and reads each seed's best epoch from the model folder's
history.json; the test split is never touched.

    python benchmarks/validation_sweep.py --params pipelines/mosi-av/params.yaml \\
        --data-dir /tmp/av --seeds 0,1 \\
        'text={"train": {"modalities": ["text"]}}' 'all={"train": {"modalities": ["text", "audio", "vision"]}}'

``--data-dir`` holds the `features`, `parse` and `text_features` folders of the data set (made
with the stages and the same params); each candidate is NAME=JSON overrides of `model` / `train`,
merged like a `variants` entry. Prints a markdown row per candidate: mean ± std over seeds of the
validation MAE, Non0-Acc2, Has0-Acc2 and Corr at each seed's best epoch, and the best epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("valid/MAE", "valid/Non0_acc_2", "valid/Has0_acc_2", "valid/Corr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidates", nargs="+", help="NAME=JSON overrides ({\"model\": {...}, \"train\": {...}})")
    ap.add_argument("--params", type=Path, required=True, help="the pipeline's params.yaml (the base)")
    ap.add_argument("--data-dir", type=Path, required=True, help="folder with features/, parse/, text_features/")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", type=Path, default=None, help="where models go (default <data-dir>/sweep)")
    args = ap.parse_args()
    out = args.out or args.data_dir / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load(args.params.read_text())
    params["base"]["seeds"] = [int(s) for s in args.seeds.split(",")]
    names = []
    for cand in args.candidates:
        name, _, overrides = cand.partition("=")
        params["variants"][name] = json.loads(overrides)
        names.append(name)
    params_file = out / "sweep_params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    print("| candidate | valid MAE | valid Non0-Acc2 | valid Has0-Acc2 | valid Corr | best epochs |")
    print("|---|---|---|---|---|---|")
    for name in names:
        model_dir = out / "models" / name
        if not (model_dir / "history.json").is_file():
            cmd = [sys.executable, "-m", "stages", "train", "--params", str(params_file), "--variant", name,
                   "--features", str(args.data_dir / "features"), "--parse", str(args.data_dir / "parse"),
                   "--text-features", str(args.data_dir / "text_features"), "--out", str(model_dir),
                   "--live", str(out / "dvclive" / name)]
            run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if run.returncode:
                print(f"| {name} | failed: {run.stderr.strip().splitlines()[-1]} |", flush=True)
                continue
        history = json.loads((model_dir / "history.json").read_text())
        best = json.loads((model_dir / "config.json").read_text())["best"]
        rows = [history[seed][best[seed]["best_epoch"] - 1] for seed in history]

        def cell(key: str) -> str:
            values = [r[key] for r in rows]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} ± {std:.4f}"

        epochs = [int(r["epoch"]) for r in rows]
        print(f"| {name} | " + " | ".join(cell(k) for k in COLUMNS) + f" | {epochs} |", flush=True)


if __name__ == "__main__":
    main()
