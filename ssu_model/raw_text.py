"""Raw text -> SSU model records for a frozen text encoder: the steps `predict` runs, and the
steps the `llm-graphs` stage puts on SSU's latency clock ("as a user pays it": no parse cache).

1. :func:`parse_texts`: ``parse_table.parse_corpus`` (the `parse` stage's call) without a cache
   and without POS (no model reads it; the words, heads and relations are the same):
   spaCy dependency parse + word to sub-word map;
2. :func:`frozen_examples`: ``TextEncoder.encode_many`` + ``encode_corpus`` (the `text-features`
   stage's calls: sub-word states mean-pooled per word), then ``records.build_records`` (what
   `train` and `evaluate` build their inputs with);
3. :func:`raw_text_examples`: 1 then 2, timed per step.

A module of its own, apart from ``ssu_model.predict``'s ``Predictor``: `llm-graphs` declares
this file as a dependency, so a change to how `predict` schedules its work (processes, threads,
batches) does not make DVC re-run the LLM constructor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import torch

from ssu_model.data.records import build_records, dep_vocabulary, parse_index
from ssu_model.data.utterances import Utterances
from ssu_model.errors import DataError
from ssu_model.text.parse_table import parse_corpus


def parse_texts(texts: Sequence[str], ids: Sequence[str], config) -> tuple[Any, list[str]]:
    """``syntax.parse_corpus`` without a cache (new text is never cached) and without POS: spaCy
    dependency parse + word to sub-word map of ``texts`` with ``config`` (a ``syntax.ParseConfig``).
    Returns (the `parse` stage's table: contract B columns, pos null, + id; the relation labels of
    the spaCy model)."""
    table, _stats, metadata = parse_corpus(list(texts), dataclasses.replace(config, pos=False), None, None)
    labels = json.loads(metadata["ssu.dep_labels"])
    return table.add_column(0, "id", pa.array(list(ids), pa.string())), labels


def frozen_examples(utts: Utterances, table, encoder, dep_labels: Sequence[str], text_dim: int,
                    batch_size: int = 64, device: str = "cpu", timings: dict[str, float] | None = None) -> list:
    """Records of ``utts`` from their parse ``table`` and a frozen ``encoder`` (a ``TextEncoder``):
    sub-word ids (``TextEncoder.encode_many``, one tokenizer call, checked against the parse's map), word
    states (``encode_corpus``: padding + encoder forward + per-word mean, ``batch_size`` utterances
    per forward) and ``records.build_records``. ``timings`` (when given) receives the seconds of
    each step: ``subword_ids`` (incl. indexing the table), ``encoder_forward``, ``records``."""
    t0 = time.perf_counter()
    index = parse_index(table)
    rows = [index[uid] for uid in utts.ids]
    encoded = encoder.encode_many([r["words"] for r in rows], [r["sub_start"] for r in rows],
                                  [r["sub_end"] for r in rows], [f"predict:{uid}" for uid in utts.ids])
    t1 = time.perf_counter()
    states = encoder.encode_corpus(encoded, batch_size=batch_size, device=device)
    t2 = time.perf_counter()
    examples = build_records(utts, index, dep_vocabulary(dep_labels), text_states=dict(zip(utts.ids, states, strict=True)),
                             text_dim=text_dim, use_audio=utts.has_audio, use_vision=utts.has_vision,
                             name="predict")
    if timings is not None:
        timings.update(subword_ids=t1 - t0, encoder_forward=t2 - t1, records=time.perf_counter() - t2)
    return examples


def raw_text_examples(utts: Utterances, config, encoder, dep_labels: Sequence[str], text_dim: int,
                      batch_size: int = 64, device: str = "cpu", timings: dict[str, float] | None = None) -> list:
    """Raw text -> model records, as `predict` makes them for a frozen-encoder model:
    :func:`parse_texts` (no cache) then :func:`frozen_examples`. The spaCy model must have the
    relation labels ``dep_labels`` (those the model's parse had). ``timings`` receives the seconds
    of every step: ``parse``, ``subword_ids``, ``encoder_forward``, ``records``."""
    t0 = time.perf_counter()
    table, labels = parse_texts(utts.texts, utts.ids, config)
    t_parse = time.perf_counter() - t0
    if list(labels) != list(dep_labels):
        raise DataError(f"spaCy model {config.model!r} has other relation labels than the parse the records "
                        "are meant to match")
    examples = frozen_examples(utts, table, encoder, dep_labels, text_dim, batch_size, device, timings)
    if timings is not None:
        timings["parse"] = t_parse
    return examples


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to ``n`` inside the block (0: unchanged). The encoder's large matrix
    products use a second core well; SSU's many small ops are faster on one (predict's default)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
