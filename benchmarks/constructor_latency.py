"""Graph-construction latency of SSU and of an LLM graph constructor, both from raw text.

The clocks of the `llm-graphs` latency record (``benchmarks.latency_record``), one function each:

- ``ssu_from_raw_text``: SSU's graph construction as a user pays it: the calls `predict` makes on
  new text (``raw_text.raw_text_examples``: spaCy parse + sub-word map without a cache, sub-word
  ids, text-encoder forward, records), ``collate`` and ``SSU.build_graphs``;
- ``llm_from_raw_text``: LM input building + forward to the penultimate layer + word pooling
  (``LLMGraphConstructor.encode``), ``collate`` and ``SSU(graph_source="llm").build_graphs``;
- ``ssu_graphs_only``: ``SSU.build_graphs`` alone on the collated cached records.

``timed_batch`` runs one batch on every clock, the two sides side by side (which runs first
alternates per batch, so that machine noise hits both) and adds it to ``LatencyRuns``, the
timed batches in ``latency_report``'s layout. ``compare_records`` checks that the raw-text path
rebuilds the cached records. A CUDA device is synchronised around every timed step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks.timing import synchronize, time_call
from ssu_model import raw_text
from ssu_model.data.batching import collate
from ssu_model.data.utterances import Utterances


def ssu_from_raw_text(utts: Utterances, config, encoder, dep_labels: Sequence[str], model,
                      batch_size: int = 64, device: str = "cpu") -> tuple[dict[str, float], list]:
    """One call of SSU's graph construction from raw text on ``utts`` as one batch: records from
    ``raw_text.raw_text_examples`` (``config`` a ``syntax.ParseConfig``, ``encoder`` a frozen
    ``TextEncoder``, ``batch_size`` utterances per encoder forward), ``collate`` and
    ``model.build_graphs`` (an ``SSU``). Returns (seconds of every step of ``SSU_RAW_STEPS``;
    the ``UtteranceRecord``s)."""
    steps: dict[str, float] = {}
    synchronize(device)
    records = raw_text.raw_text_examples(utts, config, encoder, dep_labels, int(model.config.text_dim),
                                        batch_size, device, steps)
    t0 = time.perf_counter()
    batch = collate(records).to(device)
    synchronize(device)
    t1 = time.perf_counter()
    with torch.inference_mode():
        model.build_graphs(batch)
    synchronize(device)
    steps["collate"], steps["build_graphs"] = t1 - t0, time.perf_counter() - t1
    return steps, records


def llm_from_raw_text(constructor, model, utts: Sequence, records: Sequence,
                      device: str = "cpu") -> tuple[dict[str, float], list[dict]]:
    """One call of the LLM constructor (an ``LLMGraphConstructor``) on the utterances' words and
    streams, then ``collate`` of ``records`` with those states and ``model.build_graphs`` (an
    ``SSU(graph_source="llm")``). Returns (seconds of every step of ``LLM_RAW_STEPS``; the states)."""
    synchronize(device)
    t = time.perf_counter()
    states = constructor.encode(utts)
    synchronize(device)
    t1 = time.perf_counter()
    batch = collate([dataclasses.replace(r, llm_states=s) for r, s in zip(records, states, strict=True)])
    batch = batch.to(device)
    synchronize(device)
    t2 = time.perf_counter()
    with torch.inference_mode():
        model.build_graphs(batch)
    synchronize(device)
    return {"input_forward_pooling": t1 - t, "collate": t2 - t1, "build_graphs": time.perf_counter() - t2}, states


def ssu_graphs_only(model, records: Sequence, repeats: int, device: str = "cpu") -> list[float]:
    """Seconds of ``repeats`` ``model.build_graphs`` calls on the collated ``records`` (after one
    untimed call)."""
    batch = collate(list(records)).to(device)
    with torch.inference_mode():
        return time_call(lambda: model.build_graphs(batch), repeats, warmup=1, device=device)


def _new_checks() -> dict[str, Any]:
    return {"records_compared": 0, "records_equal_cached_parse": 0, "word_states_max_abs_diff": 0.0}


def compare_records(checks: dict[str, Any], raw: Sequence, cached: Sequence) -> None:
    """Count in ``checks`` the records rebuilt from raw text that equal the cached ones (word-state
    shapes, heads, relations) and the largest word-state difference."""
    for a, b in zip(raw, cached, strict=False):
        checks["records_compared"] += 1
        same = (a.word_states.shape == b.word_states.shape and np.array_equal(a.heads, b.heads)
                and list(a.deps) == list(b.deps))
        checks["records_equal_cached_parse"] += int(same)
        if a.word_states.shape == b.word_states.shape and a.word_states.size:
            diff = float(np.abs(a.word_states - b.word_states).max())
            checks["word_states_max_abs_diff"] = max(checks["word_states_max_abs_diff"], diff)


@dataclass
class LatencySides:
    """What is on the clocks: SSU from raw text (parse config, frozen text encoder, the relation
    labels of the parse, an ``SSU``, ``encoder_batch_size`` utterances per encoder forward) and the
    LLM constructor with its ``SSU(graph_source="llm")``.

    ``ssu_repeats`` SSU-from-raw-text calls and ``graphs_repeats`` graphs-only calls per timed
    batch; ``ssu_repeats`` 0: SSU from raw text is not timed (no spaCy / text encoder here)."""

    ssu: Any
    constructor: Any
    ssu_llm: Any
    parse_config: Any = None
    text_encoder: Any = None
    dep_labels: Sequence[str] = ()
    encoder_batch_size: int = 64
    ssu_repeats: int = 1
    graphs_repeats: int = 1
    device: str = "cpu"

    def ssu_call(self, raw_utts: Utterances) -> tuple[dict[str, float], list]:
        return ssu_from_raw_text(raw_utts, self.parse_config, self.text_encoder, self.dep_labels, self.ssu,
                                 self.encoder_batch_size, self.device)

    def llm_call(self, utts: Sequence, records: Sequence) -> tuple[dict[str, float], list[dict]]:
        return llm_from_raw_text(self.constructor, self.ssu_llm, utts, records, self.device)


@dataclass
class LatencyRuns:
    """The timed batches so far, in ``latency_report``'s layout, and the raw-text records' checks."""

    ssu_raw: list[list[dict[str, float]]] = field(default_factory=list)  # per batch: step seconds of each call
    ssu_graphs: list[list[float]] = field(default_factory=list)  # per batch: build_graphs seconds, cached inputs
    llm: list[dict[str, float]] = field(default_factory=list)  # per batch: step seconds of its one LLM call
    batch_sizes: list[int] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=_new_checks)


def warm_up(sides: LatencySides, utts: Sequence, records: Sequence, raw_utts: Utterances) -> list[dict]:
    """Both whole paths once before any timed call (loads spaCy, the tokenizers, kernels); returns
    the LLM states."""
    sides.ssu_call(raw_utts)
    return sides.llm_call(utts, records)[1]


def timed_batch(sides: LatencySides, runs: LatencyRuns, utts: Sequence, records: Sequence,
                raw_utts: Utterances | None) -> list[dict]:
    """One timed batch on every clock, added to ``runs``: the LLM call and the ``ssu_repeats``
    SSU-from-raw-text calls of ``raw_utts`` (the same utterances as ``utts`` / the cached
    ``records``) alternate which side runs first, then the graphs-only calls. Returns the LLM states."""
    ssu_first = len(runs.llm) % 2 == 1  # alternate which side runs first: machine noise hits both
    calls = [sides.ssu_call(raw_utts) for _ in range(sides.ssu_repeats)] if ssu_first else []
    llm_steps, states = sides.llm_call(utts, records)
    if not ssu_first:
        calls = [sides.ssu_call(raw_utts) for _ in range(sides.ssu_repeats)]
    runs.ssu_raw.append([c[0] for c in calls])
    runs.llm.append(llm_steps)
    runs.ssu_graphs.append(ssu_graphs_only(sides.ssu, records, sides.graphs_repeats, sides.device))
    runs.batch_sizes.append(len(utts))
    if calls:
        compare_records(runs.checks, calls[-1][1], records)
    return states
