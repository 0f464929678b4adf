"""One fine-tuning epoch (MiniLM + SSU) on real MOSEI utterances, by how the batches are drawn.

Reads mosei-text's `features` and `parse` outputs and its params (`variants.finetuned`), takes a seeded
random subset of the train split, and runs ``fit`` for one epoch (train pass + a valid pass over
``--valid`` utterances) with each batching: drawn at random (``length_buckets`` 0), length buckets,
length buckets with the ``max_batch_tokens`` cap, and that again under ``MALLOC_MMAP_THRESHOLD_=131072``
(mosei-text's stage command). Each case runs in its own process (clean peak RSS), the cases interleaved
over ``--rounds``; the table gives medians and padded/real sub-words:

    python benchmarks/bench_finetune.py --train 1500 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PIPE = ROOT / "pipelines" / "mosei-text"
MMAP = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc: freed activations go back to the OS
CASES = {"random": (0, 0, {}), "buckets": (50, 0, {}), "buckets + cap": (50, 1536, {}),
         "buckets + cap + mmap": (50, 1536, MMAP)}


def run_case(name: str, n_train: int, n_valid: int, threads: int) -> dict:
    import dataclasses

    import numpy as np
    import torch

    from ssu_model.ssu.model import SSU
    from ssu_model.text.text_encoder import TextEncoder
    from ssu_model.train.length_batches import record_length
    from ssu_model.train.loop import _train_loader, fit, seed_everything
    from stages.modelling import build_model_config, load_inputs
    from stages.params import load_params
    from stages.train import resolve_variant

    torch.set_num_threads(threads)
    params = load_params(PIPE / "params.yaml")
    overrides, tp = resolve_variant(params, "finetuned")
    buckets, cap, _env = CASES[name]
    cfg = dataclasses.replace(tp.library_config(), epochs=1, length_buckets=buckets, max_batch_tokens=cap)
    enc = TextEncoder(None, max_length=128)
    examples, labels, dims = load_inputs(("train", "valid"), PIPE / "data" / "features", PIPE / "data" / "parse",
                                         None, None, ("text",), text_dim_hint=enc.dim, encoder=enc, log=lambda m: None)
    rng = np.random.default_rng(0)
    train = [examples["train"][i] for i in sorted(rng.choice(len(examples["train"]), n_train, replace=False))]
    valid = examples["valid"][:n_valid]
    lengths = [record_length(r) for r in train]
    batches = list(_train_loader(train, cfg, 100004, None).batch_sampler)  # fit's epoch 1 (seed 0 * 100003 + 1)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths)
    seed_everything(0)
    model = SSU(build_model_config(overrides, dims, len(labels), False))
    t0 = time.perf_counter()
    fit(model, train, valid, cfg, seed=0, encoder=enc)
    wall = time.perf_counter() - t0
    return {"case": name, "wall_s": wall, "utt_per_s": n_train / wall, "padded": padded,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=1500, help="train utterances (seeded random subset)")
    ap.add_argument("--valid", type=int, default=200, help="valid utterances scored after the epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.train, args.valid, args.threads)))
        return
    rows: dict[str, list[dict]] = {name: [] for name in CASES}
    for r in range(args.rounds):
        for name in CASES:
            out = subprocess.run([sys.executable, __file__, "--case", name, "--train", str(args.train),
                                  "--valid", str(args.valid), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True, env={**os.environ, **CASES[name][2]}).stdout
            rows[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {r}: {rows[name][-1]}", file=sys.stderr)
    base = statistics.median(x["wall_s"] for x in rows["random"])
    print(f"| batches ({args.train} train utt, {args.threads} thread) | epoch s (median) | utt/s | x random | "
          "padded / real sub-words | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in rows.items():
        wall = statistics.median(x["wall_s"] for x in rs)
        print(f"| {name} | {wall:.1f} | {args.train / wall:.1f} | {base / wall:.2f} | {rs[0]['padded']:.2f} | "
              f"{max(x['peak_rss_mib'] for x in rs):.0f} |")


if __name__ == "__main__":
    main()
