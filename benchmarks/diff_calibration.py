"""How often does `diff` call a difference where there is none (or miss one)? Simulated runs.

Each draw builds two sides of ``--seeds`` seeds over ``--n`` test utterances with labels uniform in
[-3, 3]: prediction = label + a per-seed offset N(0, seed_sd) (the training noise one seed adds to
every utterance) + per-utterance noise N(0, utt_sd); side b's predictions are moved ``--shift``
toward the labels (0: no true difference, so any "better"/"worse" is a false positive). Both sides
run seeds 0..k-1 (so the bootstrap pairs them) but draw their offsets independently, as two code
revisions whose same seed does not give the same model. Reports, per metric, the share of draws
with a "better"/"worse" verdict for: the bootstrap with seeds resampled (diff's default), the
bootstrap over utterances only (--no-resample-seeds), and the per-seed paired t-test (p < alpha).

    .venv/bin/python benchmarks/diff_calibration.py --draws 100 --seed-sd 0.3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ssu_model.eval.metrics import METRIC_NAMES, metrics_report
from ssu_model.eval.significance import WITHIN_NOISE, compare_sides, per_seed_metrics, seed_predictions


def make_side(rng, y, seeds, seed_sd, utt_sd, shift):
    ids = [f"u{i:04d}" for i in range(y.size)]
    preds = []
    for _s in range(seeds):
        err = rng.normal(0, seed_sd) + rng.normal(0, utt_sd, y.size)
        err = np.sign(err) * np.maximum(np.abs(err) - shift, 0.0)  # `shift` closer to the label
        preds.append((y + err).astype(np.float32))
    side = seed_predictions(np.repeat(np.arange(seeds), y.size), ids * seeds, np.tile(y, seeds),
                            np.concatenate(preds))
    return side, metrics_report("sim", list(side.seeds), per_seed_metrics(side))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--n", type=int, default=150, help="test utterances")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--seed-sd", type=float, default=0.0)
    ap.add_argument("--utt-sd", type=float, default=0.6)
    ap.add_argument("--shift", type=float, default=0.0, help="side b's errors shrink by this much (0: no difference)")
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()

    counts = {m: dict.fromkeys(METRIC_NAMES, 0) for m in ("boot_seeds", "boot_utts", "t")}
    t0 = time.perf_counter()
    for draw in range(args.draws):
        rng = np.random.default_rng(10_000 + draw)
        y = rng.uniform(-3, 3, args.n).astype(np.float32).astype(np.float64)
        a, doc_a = make_side(rng, y, args.seeds, args.seed_sd, args.utt_sd, 0.0)
        b, doc_b = make_side(rng, y, args.seeds, args.seed_sd, args.utt_sd, args.shift)
        for key, resample in (("boot_seeds", True), ("boot_utts", False)):
            rep = compare_sides(doc_a, doc_b, preds_a=a, preds_b=b, n_boot=args.n_boot, rng_seed=draw,
                                alpha=args.alpha, resample_seeds=resample)
            for name, r in rep["metrics"].items():
                counts[key][name] += r["verdict"] != WITHIN_NOISE
                if resample and r["seed_test"]["p"] is not None:
                    counts["t"][name] += r["seed_test"]["p"] < args.alpha
    secs = time.perf_counter() - t0
    print(f"{args.draws} draws, n={args.n} utterances, {args.seeds} seeds per side, seed_sd={args.seed_sd}, "
          f"utt_sd={args.utt_sd}, shift={args.shift}, n_boot={args.n_boot}, alpha={args.alpha} ({secs:.0f} s)\n")
    print("| share of draws called a difference | " + " | ".join(METRIC_NAMES) + " | mean |")
    print("|---|" + "---:|" * (len(METRIC_NAMES) + 1))
    titles = {"boot_seeds": "bootstrap, seeds resampled (default)", "boot_utts": "bootstrap, utterances only",
              "t": "per-seed paired t-test"}
    for key, title in titles.items():
        rates = [counts[key][m] / args.draws for m in METRIC_NAMES]
        print(f"| {title} | " + " | ".join(f"{r:.2f}" for r in rates) + f" | {np.mean(rates):.3f} |")


if __name__ == "__main__":
    main()
