"""Training batches of similar length, in a seeded random order (``train.length_buckets``).

A batch is padded to its longest utterance. Drawn at random, MOSEI's batches of 32 hold 2.7 times as
many sub-word positions as real sub-words, and a fine-tuned encoder pays for every one of them. Here
each epoch shuffles the utterances, cuts the shuffled list into runs of ``buckets * batch_size``,
sorts each run by length, cuts it into batches, and shuffles the batches: every batch is still a
random draw of the corpus, but of neighbouring lengths (1.0x padding at buckets = 50).

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


def length_batches(lengths: Sequence[int], batch_size: int, buckets: int, seed: int) -> list[list[int]]:
    """Index batches covering ``range(len(lengths))`` once, sorted by length within runs of
    ``buckets`` batches, in a random order drawn from ``seed``."""
    if batch_size < 1 or buckets < 1:
        raise ValueError(f"batch_size and buckets must be >= 1, got {batch_size} and {buckets}")
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(lengths))
    run = batch_size * buckets
    batches = []
    for start in range(0, len(shuffled), run):
        chunk = shuffled[start:start + run]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
