"""Throughput of `predict` from raw text: spaCy parse + sub-word map, text encoder, SSU (every seed).

Two ways of calling it, side by side in one process, after one warm-up call (spaCy, the tokenizer,
the encoder and the seed models are loaded once, as a long-lived `Predictor` holds them):
  batch        N sentences in one ``Predictor.predict`` call (what `predict --file` does)
  one-by-one   M sentences, one ``Predictor.predict`` call each (an interactive / service caller)
Each row gives utterances/s, ms per utterance and where the time goes (parse = ``parse_corpus``,
encode = ``TextEncoder`` + ``build_records``, model = ``loop.predict`` over all seeds).
Sentences come from the sample generator's templates (``ssu_model.data.sentences.sentence``), distinct.
A model that reads audio/vision gets random streams of ``--stream-len`` steps of its widths.
The one-time load (checkpoints, encoder, spaCy) is reported apart.

    .venv/bin/python benchmarks/bench_predict.py [--model models/text_only] [--n 256] [--m 64] \
        [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssu_model.data.sentences import distinct_sentences  # noqa: E402


def utterances(texts, trained, stream_len: int, seed: int):
    import numpy as np

    from ssu_model.data.splits import STREAMS
    from ssu_model.data.utterances import from_texts

    utts = from_texts(texts)
    rng = np.random.default_rng(seed)
    for m in STREAMS:
        dim = trained.stream_dim(m)
        if dim:
            values = rng.normal(0, 1, (len(texts), stream_len, dim)).astype(np.float32)
            utts.streams[m] = (values, np.full(len(texts), stream_len, dtype=np.int32))
    return utts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/text_only", help="model folder written by train")
    ap.add_argument("--n", type=int, default=256, help="sentences in the batch call")
    ap.add_argument("--m", type=int, default=64, help="sentences scored one at a time")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each mode (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (predict's default: 1)")
    ap.add_argument("--batch-size", type=int, default=64, help="utterances per model forward pass")
    ap.add_argument("--stream-len", type=int, default=50, help="audio/vision steps for a model that reads them")
    args = ap.parse_args()

    import torch

    from ssu_model import predict as inference
    from ssu_model.train.model_folder import load_model_folder
    from stages.common import deterministic_torch
    from stages.inputs import ENCODER_CACHE

    if not Path(args.model).is_dir():
        sys.exit(f"error: model folder not found: {args.model} (run `make repro`, or pass --model)")
    deterministic_torch()  # as the predict command
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    t0 = time.perf_counter()
    trained = load_model_folder(args.model)
    predictor = inference.Predictor(trained, ENCODER_CACHE, device="cpu", batch_size=args.batch_size)
    t_construct = time.perf_counter() - t0
    texts = distinct_sentences(args.n + args.m + 1)
    warm, batch_texts, single_texts = texts[0], texts[1:args.n + 1], texts[args.n + 1:]
    t0 = time.perf_counter()
    predictor.predict(utterances([warm], trained, args.stream_len, 0))  # loads spaCy + tokenizer
    t_first = time.perf_counter() - t0

    rows = []
    walls, parts = [], []
    batch = utterances(batch_texts, trained, args.stream_len, 1)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pred = predictor.predict(batch)
        walls.append(time.perf_counter() - t0)
        parts.append(pred.timings)
    k = walls.index(statistics.median(walls))
    rows.append(("batch", args.n, walls[k], parts[k]))

    singles = [utterances([t], trained, args.stream_len, 2 + i) for i, t in enumerate(single_texts)]
    walls, parts = [], []
    for _ in range(args.repeats):
        sums = {"parse": 0.0, "encode": 0.0, "model": 0.0}
        t0 = time.perf_counter()
        for utts in singles:
            for key, value in predictor.predict(utts).timings.items():
                sums[key] += value
        walls.append(time.perf_counter() - t0)
        parts.append(sums)
    k = walls.index(statistics.median(walls))
    rows.append(("one-by-one", args.m, walls[k], parts[k]))

    words = sum(len(t.split()) for t in batch_texts) / len(batch_texts)
    print(f"model {args.model}: {len(trained.seeds)} seeds, reads {' + '.join(trained.modalities)}, "
          f"hidden {trained.model_config['hidden']}, text encoder {trained.settings.text_encoder}; "
          f"torch threads {torch.get_num_threads()}; sentences {words:.1f} words on average"
          + (f"; streams {args.stream_len} steps" if len(trained.modalities) > 1 else ""))
    print(f"one-time load: checkpoints + encoder {t_construct:.1f} s, first call (spaCy, tokenizer) {t_first:.1f} s\n")
    print(f"| mode | utterances | wall s (median of {args.repeats}) | utterances/s | ms/utterance | parse | encode "
          "| model |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, n, wall, t in rows:
        share = {key: 100 * value / wall for key, value in t.items()}
        print(f"| {mode} | {n} | {wall:.2f} | {n / wall:.1f} | {1000 * wall / n:.1f} | "
              f"{share['parse']:.0f}% | {share['encode']:.0f}% | {share['model']:.0f}% |")


if __name__ == "__main__":
    main()
