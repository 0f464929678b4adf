"""How learnable is the planted non-verbal signal of the synthetic sample?

Ridge regression (alpha chosen on valid, scored once on test) on
  * text only: bag of uni+bigrams of raw_text,
  * streams only: mean/max/min over time of every audio and vision dim (true lengths),
  * streams only, the mean over time alone (what a mean readout of linear node features sees),
  * both,
for the default sample (aligned and unaligned). Prints a markdown table with MMSA-style
metrics, plus Has0-Acc2 on the utterances whose text carries no sentiment word.

    .venv/bin/python benchmarks/sample_signal.py [--sizes 320,80,160] [--seed 0]
        [--baseline-std 0.25] [--segment-share 0.3,0.6]   (the params.yaml defaults)
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import Ridge

from ssu_model.data import sample as synth
from ssu_model.data.sentences import NEG_ADJ, POS_ADJ
from ssu_model.data.splits import SPLITS

LEXICON = {a for a, _ in POS_ADJ + NEG_ADJ} | {
    "liked", "loved", "hated", "like", "laugh", "smile", "asleep", "enjoyed", "disliked", "adored",
    "appreciated", "appreciate", "regretted", "stand", "sick", "leave", "phone", "cry", "again"}


def pooled(split: dict, mean_only: bool = False) -> np.ndarray:
    feats = []
    for m in ("audio", "vision"):
        x = np.nan_to_num(split[m], nan=0.0, posinf=0.0, neginf=0.0)
        lengths = split.get(f"{m}_lengths", np.full(len(x), x.shape[1]))
        valid = (np.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
        feats.append((x * valid).sum(1) / lengths[:, None])
        if not mean_only:
            feats += [np.where(valid, x, -1e9).max(1), np.where(valid, x, 1e9).min(1)]
    return np.concatenate(feats, 1)


def metrics(p: np.ndarray, y: np.ndarray, neutral: np.ndarray) -> dict[str, float]:
    nz = y != 0
    return {
        "MAE": float(np.abs(p - y).mean()),
        "Corr": float(np.corrcoef(p, y)[0, 1]),
        "Has0_acc_2": float(((p >= 0) == (y >= 0)).mean()),
        "Non0_acc_2": float(((p[nz] > 0) == (y[nz] > 0)).mean()),
        "Has0_acc_2 (neutral text)": float(((p[neutral] >= 0) == (y[neutral] >= 0)).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="320,80,160")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-std", type=float, default=synth.BASELINE_STD)
    ap.add_argument("--segment-share", default=",".join(map(str, synth.SEGMENT_SHARE)))
    args = ap.parse_args()
    sizes = tuple(int(x) for x in args.sizes.split(","))
    share = tuple(float(x) for x in args.segment_share.split(","))
    header = None
    for aligned in (True, False):
        d = synth.generate(args.seed, sizes, aligned=aligned, baseline_std=args.baseline_std,
                           segment_share=share)
        vec = CountVectorizer(ngram_range=(1, 2)).fit(d["train"]["raw_text"])
        neutral = np.array([not (set(t.split()) & LEXICON) for t in d["test"]["raw_text"]])
        for name, use_text, use_streams in (("text BoW", True, False), ("pooled A/V", False, True),
                                            ("mean-only A/V", False, "mean"),
                                            ("text BoW + pooled A/V", True, True)):
            def feats(s):
                parts = []
                if use_text:
                    parts.append(vec.transform(s["raw_text"]).toarray())
                if use_streams:
                    parts.append(pooled(s, mean_only=use_streams == "mean"))
                return np.concatenate(parts, 1)

            xs = {k: feats(d[k]) for k in SPLITS}
            fits = [Ridge(alpha=a).fit(xs["train"], d["train"]["regression_labels"])
                    for a in (0.3, 1, 3, 10, 30, 100)]
            best = min(fits, key=lambda m: np.abs(m.predict(xs["valid"]) - d["valid"]["regression_labels"]).mean())
            res = metrics(best.predict(xs["test"]), d["test"]["regression_labels"], neutral)
            if header is None:
                header = list(res)
                print("| sample | features | " + " | ".join(header) + " |")
                print("|---|---|" + "---:|" * len(header))
            layout = "aligned" if aligned else "unaligned"
            print(f"| {layout} {args.sizes} b{args.baseline_std} s{args.segment_share} | {name} | " + " | ".join(f"{res[k]:.3f}" for k in header) + " |")
    print(f"\nneutral-text test utterances: {int(neutral.sum())} of {len(neutral)}")


if __name__ == "__main__":
    main()
