"""One split's utterances in memory, the columnar type the readers return and `predict` scores.

The chain of types an utterance passes through (data -> training -> prediction):

1. :class:`Utterances` (here): ids, texts, labels and the audio/vision streams of one split, as
   ``readers.read_mmsa_pickle`` / ``label_csv.read_label_csv`` read a source (one per split, in
   a ``readers.Corpus``) and as ``sources.from_source`` / :func:`from_texts` give `predict` its
   input; ``ssu_model.data.features.FeatureSplit`` is its on-disk, memory-mapped form (the
   `features` stage writes it) with the same read interface;
2. ``ssu_model.data.records.build_records`` -> one ``ssu_model.data.batching.UtteranceRecord``
   per utterance (joined with its parse and word states), for train, evaluate and predict alike;
3. ``ssu_model.data.batching.collate`` -> one padded ``SSUBatch``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ssu_model.data.splits import STREAMS
from ssu_model.errors import DataError


@dataclass
class Utterances:
    """Utterances in memory: ids, texts, labels, optional splits and audio/vision streams.

    It offers the read interface of ``ssu_model.data.features.FeatureSplit`` that
    ``ssu_model.data.records.build_records`` reads (``ids``, ``labels``, ``has_audio``,
    ``has_vision``, ``gather``, ``len``), so predict's input joins its parse with the very code
    train and evaluate use."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # float32 labels in [-3, 3]; 0 where there are none (they only enter losses)
    has_labels: bool = False
    splits: list[str] | None = None  # the split of each utterance, when the source has splits
    # name -> ((N, L, D) values, (N,) int32 true lengths). A reader keeps the source's dtype and
    # its non-finite values (`features` replaces them as it writes); predict's input is float32
    # with non-finite values replaced by 0.
    streams: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    nonfinite: dict[str, int] = field(default_factory=dict)  # non-finite stream values replaced by 0
    lengths_clipped: dict[str, int] = field(default_factory=dict)  # lengths the reader cut to L
    source: str = ""  # what was read

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_audio(self) -> bool:
        return "audio" in self.streams

    @property
    def has_vision(self) -> bool:
        return "vision" in self.streams

    @property
    def shapes(self) -> dict[str, tuple[int, int] | None]:
        return {m: (tuple(self.streams[m][0].shape[1:]) if m in self.streams else None) for m in STREAMS}

    def gather(self, name: str, indices) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.streams:
            raise DataError(f"the input has no {name}")
        values, lengths = self.streams[name]
        idx = np.asarray(indices, dtype=np.int64)
        return values[idx], lengths[idx]

    def without(self, name: str) -> Utterances:
        return dataclasses.replace(self, streams={k: v for k, v in self.streams.items() if k != name})


def from_texts(texts: Sequence[str], ids: Sequence[str] | None = None, where: str = "text") -> Utterances:
    """Plain utterances (one string each). An empty or blank one is an error naming it."""
    texts = list(texts)
    if not texts:
        raise DataError(f"{where}: no utterances to score")
    for i, t in enumerate(texts, 1):
        if not isinstance(t, str):
            raise DataError(f"{where} {i} is not a string")
        if not t.strip():
            raise DataError(f"{where} {i} is empty (every utterance needs at least one word)")
    ids = [str(i) for i in range(1, len(texts) + 1)] if ids is None else [str(i) for i in ids]
    if len(ids) != len(texts) or len(set(ids)) != len(ids):
        raise DataError("ids must be distinct, one per text")
    return Utterances(ids, texts, np.zeros(len(texts), dtype=np.float32), source=where)


def concat(parts: list[Utterances], source: str) -> Utterances:
    """Join per-split inputs; streams are zero-padded to the longest length."""
    names = [m for m in STREAMS if all(m in p.streams for p in parts)]
    streams = {}
    for m in names:
        length = max(p.streams[m][0].shape[1] for p in parts)
        width = {p.streams[m][0].shape[2] for p in parts}
        if len(width) != 1:
            raise DataError(f"{source}: {m} widths differ between splits: {sorted(width)}")
        arrays = []
        for p in parts:
            a = p.streams[m][0]
            if a.shape[1] < length:
                a = np.concatenate([a, np.zeros((a.shape[0], length - a.shape[1], a.shape[2]), np.float32)], 1)
            arrays.append(a)
        streams[m] = (np.concatenate(arrays), np.concatenate([p.streams[m][1] for p in parts]))
    return Utterances(
        ids=[i for p in parts for i in p.ids], texts=[t for p in parts for t in p.texts],
        labels=np.concatenate([p.labels for p in parts]).astype(np.float32), has_labels=True,
        splits=[s for p in parts for s in (p.splits or [])], streams=streams,
        nonfinite={m: sum(p.nonfinite.get(m, 0) for p in parts) for m in names}, source=source,
    )
