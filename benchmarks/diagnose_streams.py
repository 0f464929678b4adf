"""How much does SSU get out of the audio/vision streams of a sample? (the sample-sanity diagnosis)

Trains SSU with the library calls the `train` stage makes (``fit``), predicts the test split
(``predict``), and prints one markdown row of MMSA metrics, mean over seeds, plus Has0-Acc2 on
the utterances whose text has no sentiment word ("neutral": their sign is in the streams only).

    .venv/bin/python benchmarks/diagnose_streams.py NAME [--streams-only | --text-only]
        [--model '{"max_nodes": 50}'] [--train '{"epochs": 20}'] [--seeds 0,1,2]
        [--features data/features --sample data/sample/mosi_sample.pkl]

``--streams-only`` zeroes every word state, so whatever the model predicts beyond the label
mean comes from audio/vision. Inputs are the outputs of `sample`, `features`, `parse` and
`text-features` (run `dvc repro text-features` first); params come from params.yaml with the
overrides given.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

KEYS = ("Has0_acc_2", "Non0_acc_2", "Acc7", "MAE", "Corr", "neutral")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--model", default="{}", help="JSON overrides of params `model`")
    ap.add_argument("--train", default="{}", help="JSON overrides of params `train`")
    ap.add_argument("--streams-only", action="store_true", help="zero the word states")
    ap.add_argument("--text-only", action="store_true", help="train.modalities = [text]")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--parse", default="data/parse")
    ap.add_argument("--text-features", default="data/text_features")
    ap.add_argument("--sample", default="data/sample/mosi_sample.pkl", help="the pickle behind --features")
    args = ap.parse_args()

    import torch
    from sample_signal import LEXICON

    from ssu_model.eval.metrics import regression_metrics
    from ssu_model.ssu.model import SSU
    from ssu_model.train.loop import fit, predict, seed_everything
    from stages.modelling import build_model_config, load_inputs
    from stages.train import resolve_variant

    raw = yaml.safe_load(Path(args.params).read_text())
    raw["model"].update(json.loads(args.model))
    raw["train"].update(json.loads(args.train))
    if args.text_only:
        raw["train"]["modalities"] = ["text"]
    overrides, tp = resolve_variant(raw, "full")
    if tp.threads:
        torch.set_num_threads(tp.threads)
    examples, labels, dims = load_inputs(("train", "valid", "test"), Path(args.features), Path(args.parse),
                                         Path(args.text_features), None, tp.modalities)
    if args.streams_only:
        for split in examples.values():
            for e in split:
                e.word_states = np.zeros_like(e.word_states)
    cfg = build_model_config(overrides, dims, len(labels), False)
    with open(args.sample, "rb") as fh:
        test = pickle.load(fh)["test"]
    neutral_ids = {i for i, t in zip(test["id"], test["raw_text"]) if not set(str(t).split()) & LEXICON}
    neutral = np.array([e.id in neutral_ids for e in examples["test"]])
    y = np.array([e.label for e in examples["test"]], dtype=np.float64)

    rows, t0 = [], time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        seed_everything(seed)
        model = SSU(cfg)
        fit(model, examples["train"], examples["valid"], tp.library_config(), seed)
        pred, _ = predict(model, examples["test"])
        m = regression_metrics(pred, y)
        m["neutral"] = float(((pred[neutral] >= 0) == (y[neutral] >= 0)).mean())
        rows.append(m)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in KEYS}
    cells = [f"{100 * mean[k]:.1f}" if k not in ("MAE", "Corr") else f"{mean[k]:.3f}" for k in KEYS]
    print(f"| {args.name} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} s |")


if __name__ == "__main__":
    main()
