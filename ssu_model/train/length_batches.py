"""Training batches of similar length, in a seeded random order (``train.length_buckets``).

A batch is padded to its longest utterance. Drawn at random, MOSEI's batches of 32 hold 2.7 times as
many sub-word positions as real sub-words, and a fine-tuned encoder pays for every one of them. Here
each epoch shuffles the utterances, cuts the shuffled list into runs of ``buckets * batch_size``,
sorts each run by length, cuts it into batches, and shuffles the batches: every batch is still a
random draw of the corpus, but of neighbouring lengths (1.0x padding at buckets = 50).

``max_tokens`` (0 = off) also caps a batch's padded size (utterances x longest length): the batches
of the longest texts hold fewer utterances. A fine-tuned encoder's activations grow with that size
(MiniLM, 32 x 129 sub-words: 2.4 GB for the encoder alone), so the cap bounds a run's peak memory.

Every draw comes from one ``numpy`` generator seeded per epoch: the same seed gives the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def record_length(record) -> int:
    """What a batch is padded on: sub-words when the encoder runs in the loop, else words."""
    if getattr(record, "encoded", None) is not None:
        return len(record.encoded.input_ids)
    return int(record.word_states.shape[0])


def _cut(indices: np.ndarray, lengths: np.ndarray, batch_size: int, max_tokens: int) -> list[list[int]]:
    """Cut length-sorted ``indices`` into batches of at most ``batch_size`` utterances and (when
    ``max_tokens``) at most ``max_tokens`` padded positions; an utterance longer than that goes alone."""
    batches, current = [], []
    for i in indices.tolist():
        full = len(current) == batch_size or (max_tokens and (len(current) + 1) * lengths[i] > max_tokens)
        if current and full:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def length_batches(lengths: Sequence[int], batch_size: int, buckets: int, seed: int,
                   max_tokens: int = 0) -> list[list[int]]:
    """Index batches covering ``range(len(lengths))`` once, sorted by length within runs of
    ``buckets`` batches, in a random order drawn from ``seed``; ``max_tokens`` caps a batch's
    utterances x longest length (0 = no cap)."""
    if batch_size < 1 or buckets < 1 or max_tokens < 0:
        raise ValueError(f"batch_size and buckets must be >= 1 and max_tokens >= 0, got {batch_size}, "
                         f"{buckets} and {max_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(lengths))
    run = batch_size * buckets
    batches = []
    for start in range(0, len(shuffled), run):
        chunk = shuffled[start:start + run]
        batches += _cut(chunk[np.argsort(lengths[chunk], kind="stable")], lengths, batch_size, max_tokens)
    return [batches[i] for i in rng.permutation(len(batches))]
