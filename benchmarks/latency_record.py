"""The latency record of `llm-graphs` (``latency_<name>.json``, format ``LATENCY_FORMAT``).

Every timing names what is on its clock (``LATENCY_WHAT``); the headline ratio compares the two
graph constructors from raw text (``RATIO_WHAT``). ``latency_report`` builds the record from
the timed batches; ``ssu_model.eval.reporting`` reads it (its own copy of the format, kept equal
by a test, so that `compare` does not depend on the timing code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.timing import median, timing_record

LATENCY_FORMAT = "2"
SSU_RAW_STEPS = ("parse", "subword_ids", "encoder_forward", "records", "collate", "build_graphs")
LLM_RAW_STEPS = ("input_forward_pooling", "collate", "build_graphs")
LATENCY_WHAT = {
    "ssu_from_raw_text": (
        "spaCy parse + sub-word map (syntax.parse_corpus, no parse cache) + sub-word ids (TextEncoder.encode) "
        "+ text encoder forward giving word states (encode_corpus) + records (training.build_examples) "
        "+ collate + SSU.build_graphs"),
    "ssu_from_raw_text_no_encoder": (
        "ssu_from_raw_text without its encoder_forward step (same timed calls; the word states are still "
        "computed, off this clock): spaCy parse + sub-word map + sub-word ids + records + collate "
        "+ SSU.build_graphs"),
    "ssu_graphs_only_cached_inputs": (
        "SSU.build_graphs alone on an already collated batch of the cached parse and cached word states "
        "(parse, encoder, records and collate off the clock)"),
    "llm_from_raw_text": (
        "LM input building (LLM tokenizer on the utterance's words, projections of the audio/vision steps) "
        "+ LM forward to the penultimate layer + word pooling + collate + SSU(graph_source=llm).build_graphs; "
        "the words (spaCy tokens) and the text encoder's node features (text_features.model_path) that "
        "build_graphs also reads come from the cached parse and text features, off this clock (in the LLM's "
        "favour)"),
}
RATIO_WHAT = {
    "ratio_from_raw_text": "llm_from_raw_text / ssu_from_raw_text (headline: both from raw text)",
    "ratio_graphs_only": ("llm_from_raw_text / ssu_graphs_only_cached_inputs (breakdown: SSU's parse and text "
                          "encoder are off its clock, the LLM's tokenising and forward are on it)"),
}
PARSE_CACHE_NOTE = ("bypassed: every timed SSU call parses its batch's texts with spaCy anew "
                    "(syntax.parse_corpus without a cache directory), as for a user's new text")


def _step_medians(runs: Sequence[Sequence[Mapping[str, float]]], keys: Sequence[str]) -> dict[str, float]:
    """Per step: the median over batches of each batch's median over its calls."""
    return {k: median([median([call[k] for call in calls]) for calls in runs]) for k in keys}


def latency_report(name: str, ssu_raw: Sequence[Sequence[Mapping[str, float]]],
                   ssu_graphs: Sequence[Sequence[float]], llm: Sequence[Mapping[str, float]], *,
                   batch_size: int, batch_sizes: Sequence[int], threads: int,
                   params: Mapping[str, Mapping[str, int]], **extra: Any) -> dict[str, Any]:
    """The `llm-graphs` latency record (format ``LATENCY_FORMAT``) from the timed batches.

    ``ssu_raw``: per timed batch, the step seconds (``SSU_RAW_STEPS``) of each SSU-from-raw-text
    call; ``ssu_graphs``: per timed batch, the seconds of each ``build_graphs`` call on the cached
    inputs; ``llm``: per timed batch, the step seconds (``LLM_RAW_STEPS``) of its one LLM call.
    A batch's figure is the median over its calls (one LLM call); a record's ``seconds_median``
    is the median over batches. ``params``: constructor -> {part: count} (``SSU`` and ``name``).
    The ratios divide medians: LLM from raw text by each SSU clock."""
    n = len(llm)
    if n < 1 or len(ssu_raw) != n or len(ssu_graphs) != n or len(batch_sizes) != n:
        raise ValueError("latency_report: one entry per timed batch in ssu_raw, ssu_graphs, llm and batch_sizes")
    for calls in ssu_raw:
        for call in calls:
            missing = [k for k in SSU_RAW_STEPS if k not in call]
            if missing:
                raise ValueError(f"latency_report: an SSU call lacks step {missing[0]}")
    if any(not calls for calls in ssu_raw) or any(not calls for calls in ssu_graphs):
        raise ValueError("latency_report: a timed batch has no SSU call")
    raw = [median([sum(call[k] for k in SSU_RAW_STEPS) for call in calls]) for calls in ssu_raw]
    no_enc = [median([sum(call[k] for k in SSU_RAW_STEPS if k != "encoder_forward") for call in calls])
              for calls in ssu_raw]
    graphs = [median(calls) for calls in ssu_graphs]
    llm_total = [sum(call[k] for k in LLM_RAW_STEPS) for call in llm]
    calls = len(ssu_raw[0])
    rec: dict[str, Any] = {
        "format": LATENCY_FORMAT, "llm": name, "batch_size": int(batch_size),
        "batch_sizes_timed": [int(b) for b in batch_sizes], "n_timed_batches": n, "threads": int(threads),
        "parse_cache": PARSE_CACHE_NOTE,
        "ssu_from_raw_text": timing_record(LATENCY_WHAT["ssu_from_raw_text"], raw, batch_size, threads, calls,
                                           _step_medians(ssu_raw, SSU_RAW_STEPS)),
        "ssu_from_raw_text_no_encoder": timing_record(LATENCY_WHAT["ssu_from_raw_text_no_encoder"], no_enc,
                                                      batch_size, threads, calls),
        "ssu_graphs_only_cached_inputs": timing_record(LATENCY_WHAT["ssu_graphs_only_cached_inputs"], graphs,
                                                       batch_size, threads, len(ssu_graphs[0])),
        "llm_from_raw_text": timing_record(LATENCY_WHAT["llm_from_raw_text"], llm_total, batch_size, threads, 1,
                                           _step_medians([[c] for c in llm], LLM_RAW_STEPS)),
        "ratios": dict(RATIO_WHAT),
        "params": {k: {**{p: int(v) for p, v in parts.items()}, "total": int(sum(parts.values()))}
                   for k, parts in params.items()},
    }
    llm_s = rec["llm_from_raw_text"]["seconds_median"]
    rec["ratio_from_raw_text"] = llm_s / max(rec["ssu_from_raw_text"]["seconds_median"], 1e-12)
    rec["ratio_graphs_only"] = llm_s / max(rec["ssu_graphs_only_cached_inputs"]["seconds_median"], 1e-12)
    overlap = set(extra) & set(rec)
    if overlap:
        raise ValueError(f"latency_report: extra key {sorted(overlap)[0]} clashes with a record key")
    rec.update(extra)
    return rec
