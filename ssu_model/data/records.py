"""The per-utterance model inputs of one split, built the same way by train, evaluate and predict.

The chain of types an utterance passes through:

1. ``ssu_model.data.utterances.Utterances``: a columnar set of utterances of one split (ids,
   texts, labels, audio/vision streams), what the readers return and `predict` scores; its
   on-disk form is ``ssu_model.data.features.FeatureSplit`` (same read interface, memory-mapped);
2. :func:`build_records` joins such a split with its parse (contract B), cached word states
   (text-features) [and LLM states (contract F)] by id into one
   ``ssu_model.data.batching.UtteranceRecord`` per utterance (carrying, when the text encoder is
   fine-tuned, the utterance's sub-word ids and word spans in ``encoded``);
3. ``ssu_model.data.batching.collate`` pads a list of records into one ``SSUBatch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssu_model.data.batching import UtteranceRecord
from ssu_model.errors import DataError


def dep_vocabulary(labels: Sequence[str]) -> dict[str, int]:
    """Relation label -> id; 0 is reserved for labels the vocabulary does not know."""
    return {lab: i + 1 for i, lab in enumerate(labels)}


def parse_index(table) -> dict[str, dict[str, Any]]:
    """A parse table (contract B) as id -> {words, heads, deps, sub_start, sub_end}."""
    need = ("id", "words", "heads", "deps", "sub_start", "sub_end")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise DataError(f"parse table lacks column {missing[0]}")
    cols = {c: table.column(c).to_pylist() for c in need}
    out: dict[str, dict[str, Any]] = {}
    for i, uid in enumerate(cols["id"]):
        out[uid] = {c: cols[c][i] for c in need[1:]}
    return out


def build_records(
    split,
    parse: Mapping[str, Mapping[str, Any]],
    dep_vocab: Mapping[str, int],
    *,
    text_states: Mapping[str, np.ndarray] | None,
    text_dim: int,
    use_audio: bool,
    use_vision: bool,
    llm_states: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    encoder=None,
    name: str = "",
) -> list[UtteranceRecord]:
    """Join one feature split with its parse rows (and word states / LLM states) by id.

    ``split`` is a ``FeatureSplit`` or an ``Utterances`` (their shared read interface: ``ids``,
    ``labels``, ``has_audio``, ``has_vision``, ``gather``, ``len``). With ``text_states`` the cached
    (n_words, text_dim) arrays are used; without them (fine-tuning) ``encoder`` must be given
    and each utterance is re-encoded (its parse sub-word map is checked) while the record
    carries zeros (a read-only view) that the training loop replaces by the encoder's output.
    """
    if text_states is None and encoder is None:
        raise DataError("build_records needs cached text states or a text encoder")
    n = len(split)
    audio = vision = None
    if use_audio:
        if not split.has_audio:
            raise DataError(f"{name}: the model reads audio but the features have none")
        audio = split.gather("audio", np.arange(n))
    if use_vision:
        if not split.has_vision:
            raise DataError(f"{name}: the model reads vision but the features have none")
        vision = split.gather("vision", np.arange(n))
    records: list[UtteranceRecord] = []
    for i, uid in enumerate(split.ids):
        row = parse.get(uid)
        if row is None:
            raise DataError(f"{name}: utterance {uid} has no parse row (re-run parse)")
        n_words = len(row["words"])
        heads = np.asarray(row["heads"], dtype=np.int64)
        if heads.shape[0] != n_words or len(row["deps"]) != n_words:
            raise DataError(f"{name}: parse row {uid} has inconsistent words/heads/deps lengths")
        if n_words and (heads.min() < 0 or heads.max() >= n_words):
            raise DataError(f"{name}: parse row {uid} has a head index outside the utterance")
        deps = [int(dep_vocab.get(d, 0)) for d in row["deps"]]
        encoded = None
        if text_states is not None:
            states = text_states.get(uid)
            if states is None:
                raise DataError(f"{name}: utterance {uid} has no cached text states (re-run text-features)")
            if states.shape != (n_words, text_dim):
                raise DataError(
                    f"{name}: text states of {uid} are {tuple(states.shape)}, expected ({n_words}, {text_dim})"
                )
        else:
            encoded = encoder.encode(row["words"], row["sub_start"], row["sub_end"], where=f"{name}:{uid}")
            states = np.broadcast_to(np.zeros((), np.float32), (n_words, text_dim))  # a view: no memory (MOSEI 0.5 GB)
        a = v = None
        if audio is not None:
            a = audio[0][i, : int(audio[1][i])]
        if vision is not None:
            v = vision[0][i, : int(vision[1][i])]
        llm = None
        if llm_states is not None:
            llm = llm_states.get(uid)
            if llm is None:
                raise DataError(f"{name}: utterance {uid} has no LLM states (re-run llm-graphs)")
            llm = {k: np.asarray(val, dtype=np.float32) for k, val in llm.items()
                   if (k == "text") or (k == "audio" and use_audio) or (k == "vision" and use_vision)}
        records.append(UtteranceRecord(
            word_states=np.asarray(states, dtype=np.float32),
            heads=heads,
            deps=deps,
            audio=a,
            vision=v,
            label=float(split.labels[i]),
            llm_states=llm,
            id=uid,
            encoded=encoded,
        ))
    return records

