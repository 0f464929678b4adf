"""Throughput of the `parse` library call vs raw spaCy ``nlp.pipe`` (the ceiling).

For each corpus, side by side in one process:
  raw          spacy.load (same components) + nlp.pipe over the texts, docs consumed
  cold         parse_corpus with an empty cache (model load, parse, sub-word map,
               cache write and the output table included)
  warm         the same call again: nothing new (spaCy and the tokenizer are not even loaded)
  incremental  the corpus with 10% of its utterances edited ("so " + text): only those parse
Corpora: the 2195 real MOSI transcripts (../shared/data/mosi_label_mmcpanda.csv, skipped when
absent) and a MOSEI-scale text set (22856 distinct utterances) from the sample generator's
sentence templates (ssu_model.data.sentences.sentence).

Imports (spaCy, transformers) happen before any timing: they cost the same to every variant
and to any process. Goals: cold >= 0.8x raw words/s; warm < 5% and incremental < 20% of the
cold time.

    .venv/bin/python benchmarks/bench_parse.py [--only mosi|mosei] [--batch-size 256] [--n-process 1]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MOSI_CSV = ROOT.parent / "shared" / "data" / "mosi_label_mmcpanda.csv"


def mosi_texts() -> list[str] | None:
    if not MOSI_CSV.is_file():
        return None
    with open(MOSI_CSV, newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def mosei_texts(seed: int = 0) -> list[str]:
    """MOSEI-size set of DISTINCT sentences from the sample generator's templates.

    `sample --scale mosei` repeats template sentences (~17k distinct of 22856); repeats
    would flatter the cached stage (it parses each distinct text once, raw nlp.pipe parses
    all), so the benchmark parses 22856 distinct ones (deterministic).
    """
    from ssu_model.data.sample import SCALES
    from ssu_model.data.sentences import distinct_sentences

    return distinct_sentences(sum(SCALES["mosei"].sizes), seed)


def run(name: str, texts: list[str], batch_size: int, n_process: int) -> dict:
    import spacy

    from ssu_model.text.loaded import clear_loaded
    from ssu_model.text.parse_table import ParseConfig, parse_corpus
    from ssu_model.text.spacy_parse import KEEP_COMPONENTS, model_info
    from stages.parse import resolve_tokenizer

    config = ParseConfig(tokenizer=resolve_tokenizer("minilm"), batch_size=batch_size, n_process=n_process)
    info = model_info(config.model)
    exclude = [c for c in info.pipeline if c not in KEEP_COMPONENTS]

    t0 = time.perf_counter()
    nlp = spacy.load(config.model, exclude=exclude)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    words = 0
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
        words += sum(1 for t in doc if not t.is_space)
    t_pipe = time.perf_counter() - t0
    del nlp

    edited = [("so " + t) if i % 10 == 0 else t for i, t in enumerate(texts)]
    times, stats = {}, {}
    with tempfile.TemporaryDirectory() as cache:
        clear_loaded()  # cold really loads the model and the tokenizer
        for label, corpus in (("cold", texts), ("warm", texts), ("incremental", edited)):
            t0 = time.perf_counter()
            table, st, _meta = parse_corpus(corpus, config, cache)
            times[label] = time.perf_counter() - t0
            stats[label] = st
    assert stats["cold"].words == words, (stats["cold"].words, words)
    return {
        "name": name,
        "n": len(texts),
        "unique": stats["cold"].unique,
        "words": words,
        "raw_load": t_load,
        "raw_pipe": t_pipe,
        "times": times,
        "parsed": {k: v.parsed for k, v in stats.items()},
    }


def report(rows: list[dict]) -> None:
    print(
        f"{'corpus':<12} {'utts':>6} {'distinct':>8} {'words':>7} | {'raw pipe w/s':>12} {'raw+load w/s':>12} | "
        f"{'cold s':>7} {'cold w/s':>9} {'cold/raw':>8} {'cold/raw+load':>13} | {'warm s':>7} {'warm/cold':>9} | "
        f"{'incr s':>7} {'incr parsed':>11} {'incr/cold':>9}"
    )
    for r in rows:
        t = r["times"]
        raw = r["words"] / r["raw_pipe"]
        raw_load = r["words"] / (r["raw_pipe"] + r["raw_load"])
        cold = r["words"] / t["cold"]
        print(
            f"{r['name']:<12} {r['n']:>6} {r['unique']:>8} {r['words']:>7} | {raw:>12.0f} {raw_load:>12.0f} | "
            f"{t['cold']:>7.2f} {cold:>9.0f} {cold / raw:>8.2f} {cold / raw_load:>13.2f} | "
            f"{t['warm']:>7.3f} {t['warm'] / t['cold']:>9.2%} | "
            f"{t['incremental']:>7.2f} {r['parsed']['incremental']:>11} {t['incremental'] / t['cold']:>9.2%}"
        )
        assert r["parsed"]["warm"] == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("mosi", "mosei"))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--n-process", type=int, default=1)
    args = ap.parse_args()
    import spacy  # noqa: F401  (imports outside the timings)
    import transformers  # noqa: F401

    rows = []
    if args.only in (None, "mosi"):
        texts = mosi_texts()
        if texts is None:
            print(f"skipping MOSI: {MOSI_CSV} not present", file=sys.stderr)
        else:
            rows.append(run("mosi", texts, args.batch_size, args.n_process))
    if args.only in (None, "mosei"):
        rows.append(run("mosei-scale", mosei_texts(), args.batch_size, args.n_process))
    report(rows)


if __name__ == "__main__":
    main()
