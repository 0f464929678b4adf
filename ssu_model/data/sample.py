"""Deterministic synthetic dataset in the exact MMSA pickle layout.

``generate(...)`` returns ``{"train": {...}, "valid": {...}, "test": {...}}`` where each split
holds the 11 keys of an MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl`` (the two ``*_lengths``
keys only when unaligned):

=====================  ======================  =====================================================
key                    shape / dtype           content
=====================  ======================  =====================================================
raw_text               (N,) <U                 lower-case English from templates (see below)
audio                  (N, La, Da) float32     noise + planted sentiment pattern, zero-padded
vision                 (N, Lv, Dv) float32     idem
audio_lengths          (N,) int64              true audio steps (unaligned only)
vision_lengths         (N,) int64              true visual steps (unaligned only)
id                     (N,) <U                 "video$_$clip"
text                   (N, 50, 768) float32    cheap hashed word embedding (NOT BERT)
text_bert              (N, 3, 50) int64        token ids / mask / segment (hashed ids, NOT WordPiece)
annotations            (N,) <U                 Negative / Neutral / Positive (sign of the label)
classification_labels  (N,) float32            0 Negative, 1 Neutral, 2 Positive
regression_labels      (N,) float32            sentiment in [-3, 3], rounded to 0.2
=====================  ======================  =====================================================

The label is ``clip(0.75 * text_sentiment + 0.45 * affect)`` for utterances with sentiment-bearing
text and ``affect`` alone for the share whose text is neutral; ``affect`` is a latent non-verbal
sentiment that only the audio and vision streams carry: a smooth bump of amplitude proportional
to ``affect`` in a few feature dims over one contiguous segment of each stream (its own segment
per modality, ``segment_share`` of the true length), on top of a per-utterance baseline offset
(standard deviation ``baseline_std``) and white noise.  A text-only model can therefore not
recover ``affect``; a model that reads the streams can.

The two shape knobs decide *which* statistics see ``affect``.  The mean over time shifts by
about ``0.64 * segment_share * affect`` per signal dim; the baseline offset hides that shift
when ``baseline_std`` is large, and then only max/min-type statistics (finding the segment)
recover ``affect``.  The defaults (``baseline_std`` 0.25, ``segment_share`` 0.3-0.6: an
expression held over a third to a half of the utterance) make the signal visible to a mean
readout, as SSU's graph readouts are; ``baseline_std=0.6, segment_share=(0.15, 0.35)`` is the
harder, segment-finding test (see docs/decisions/data.md).

Generation is vectorised in fixed-size row chunks, each with its own seed derived from
(seed, split, chunk), so the output is a pure function of the arguments (same seed -> same bytes
once pickled) and MOSEI scale fits in memory once.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ssu_model.data.sentences import sentence
from ssu_model.data.splits import SPLITS

TEXT_LEN = 50  # MMSA pads/cuts BERT inputs to 50 tokens
TEXT_DIM = 768  # MMSA's `text` holds BERT-base states
CHUNK_ROWS = 1024  # rows generated per vectorised chunk (fixed: part of the determinism)


@dataclass(frozen=True)
class Scale:
    """Dimensions of one benchmark family."""

    audio_dim: int
    vision_dim: int
    audio_len_unaligned: int
    vision_len_unaligned: int
    sizes: tuple[int, int, int]  # the real dataset's train/valid/test sizes


SCALES = {
    "mosi": Scale(5, 20, 375, 500, (1284, 229, 686)),
    "mosei": Scale(74, 35, 500, 500, (16326, 1871, 4659)),
}
ALIGNED_LEN = 50

# Planted non-verbal signal: (dim, weight) pairs; the bump amplitude is weight * affect.
AUDIO_SIGNAL = ((0, 1.0), (1, -0.7))
VISION_SIGNAL = ((0, 1.0), (2, 0.7), (3, -0.6))
NOISE_STD = 0.5
BASELINE_STD = 0.25  # default std of the per-utterance, per-dim baseline offset
SEGMENT_SHARE = (0.3, 0.6)  # default range of the bump's width, as a share of the true length

# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _bump(rng: np.random.Generator, lengths: np.ndarray, max_len: int,
          segment_share: tuple[float, float]) -> np.ndarray:
    """(n, max_len) float32 half-sine bump over one contiguous segment inside each true length,
    ``segment_share`` (low, high) of it wide (at least 3 steps)."""
    n = len(lengths)
    width = np.maximum(3, np.round(lengths * rng.uniform(*segment_share, n))).astype(np.int64)
    width = np.minimum(width, lengths)
    start = np.floor(rng.uniform(0.0, 1.0, n) * (lengths - width + 1)).astype(np.int64)
    t = np.arange(max_len, dtype=np.float32)[None, :]
    phase = (t - start[:, None] + 0.5) / width[:, None]
    inside = (phase > 0) & (phase < 1)
    return np.where(inside, np.sin(np.pi * np.clip(phase, 0, 1)), 0.0).astype(np.float32)


def _fast_noise(out: np.ndarray, rng: np.random.Generator, std: float) -> None:
    """Fill ``out`` with zero-mean noise of standard deviation ``std``: the sum of two uniform
    int8 draws taken from the raw 64-bit stream (triangular, bell-shaped). About 5x faster than
    ``standard_normal`` for float32, which matters at MOSEI scale (1.2e9 values)."""
    count = out.size
    raw = rng.bit_generator.random_raw((2 * count + 7) // 8)
    pair = raw.view("<i1")[: 2 * count].reshape(2, *out.shape)
    np.add(pair[0], pair[1], out=out, dtype=np.float32)
    out += 1.0  # int8 draws have mean -0.5 each
    out *= std / 104.5  # sqrt(2 * (256**2 - 1) / 12)


def _fill_stream(
    out: np.ndarray, rng: np.random.Generator, affect: np.ndarray, lengths: np.ndarray,
    signal: tuple[tuple[int, float], ...], baseline_std: float, segment_share: tuple[float, float],
) -> None:
    """Write noise + offsets + planted bumps into ``out`` (n, L, D) in place, zero the padding."""
    n, max_len, dim = out.shape
    _fast_noise(out, rng, NOISE_STD)
    out += (rng.standard_normal((n, 1, dim), dtype=np.float32) * np.float32(baseline_std))
    bump = _bump(rng, lengths, max_len, segment_share) * affect[:, None].astype(np.float32)
    for d, w in signal:
        if d < dim:
            out[:, :, d] += w * bump
    pad = np.arange(max_len)[None, :] >= lengths[:, None]
    if pad.any():
        out[pad] = 0.0


# --------------------------------------------------------------------------------------------
# Text features (cheap stand-ins for BERT)
# --------------------------------------------------------------------------------------------

CLS_ID, SEP_ID, VOCAB = 101, 102, 30522


def _word_id(word: str) -> int:
    return 1000 + zlib.crc32(word.encode()) % (VOCAB - 1000)


def _token_ids(texts: list[str]) -> np.ndarray:
    ids = np.zeros((len(texts), TEXT_LEN), dtype=np.int64)
    for i, text in enumerate(texts):
        toks = [CLS_ID] + [_word_id(w) for w in text.split()[: TEXT_LEN - 2]] + [SEP_ID]
        ids[i, : len(toks)] = toks
    return ids


def _embedding_table(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ids -> (V, 768) float32 rows; each row depends only on its id (seeded by it)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    table = np.empty((len(uniq), TEXT_DIM), dtype=np.float32)
    for r, tok in enumerate(uniq):
        if tok == 0:
            table[r] = 0.0
        else:
            table[r] = np.random.default_rng(int(tok)).standard_normal(TEXT_DIM, dtype=np.float32) * 0.1
    return table, inverse.reshape(ids.shape)


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def generate_split(
    n: int, split_index: int, seed: int, scale: str = "mosi", aligned: bool = True,
    neutral_share: float = 0.3, nonfinite_share: float = 0.01, first_video: int = 0,
    baseline_std: float = BASELINE_STD, segment_share: tuple[float, float] = SEGMENT_SHARE,
) -> dict[str, np.ndarray]:
    """One split's MMSA dict (see module doc). ``first_video`` numbers the videos."""
    sc = SCALES[scale]
    la = ALIGNED_LEN if aligned else sc.audio_len_unaligned
    lv = ALIGNED_LEN if aligned else sc.vision_len_unaligned
    rng = _rng(seed, split_index, 0)  # drawn in this order: texts and labels, ids, stream lengths
    texts, affect, label = _texts_and_labels(rng, n, neutral_share)
    ids = _video_clip_ids(rng, n, first_video)
    a_len, v_len = _stream_lengths(rng, n, aligned, la, lv)

    audio = np.empty((n, la, sc.audio_dim), dtype=np.float32)
    vision = np.empty((n, lv, sc.vision_dim), dtype=np.float32)
    for c, start in enumerate(range(0, n, CHUNK_ROWS)):
        stop = min(start + CHUNK_ROWS, n)
        crng = _rng(seed, split_index, 1, c)
        _fill_stream(audio[start:stop], crng, affect[start:stop], a_len[start:stop], AUDIO_SIGNAL,
                     baseline_std, segment_share)
        _fill_stream(vision[start:stop], crng, affect[start:stop], v_len[start:stop], VISION_SIGNAL,
                     baseline_std, segment_share)
    _inject_nonfinite(audio, _rng(seed, split_index, 2), a_len, nonfinite_share)
    text, text_bert = _text_features(texts)

    out = {
        "raw_text": np.array(texts),
        "audio": audio,
        "vision": vision,
        "id": np.array(ids),
        "text": text,
        "text_bert": text_bert,
        "annotations": np.where(label > 0, "Positive", np.where(label < 0, "Negative", "Neutral")),
        "classification_labels": np.where(label > 0, 2.0, np.where(label < 0, 0.0, 1.0)).astype(np.float32),
        "regression_labels": label,
    }
    if not aligned:
        out["audio_lengths"] = a_len
        out["vision_lengths"] = v_len
    return out


def _texts_and_labels(rng: np.random.Generator, n: int, neutral_share: float):
    """(texts, latent affect, label): the label mixes the text's sentiment with the affect the
    streams carry; neutral texts take the affect only. Labels are rounded to 0.2 in [-3, 3]."""
    neutral = rng.random(n) < neutral_share
    texts: list[str] = []
    text_sent = np.zeros(n, dtype=np.float64)
    for i in range(n):
        text, text_sent[i] = sentence(rng, bool(neutral[i]))
        texts.append(text)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    affect = np.where(neutral, sign * rng.uniform(0.6, 2.8, n), rng.normal(0.0, 1.2, n))
    label = np.where(neutral, affect, 0.75 * text_sent + 0.45 * affect) + rng.normal(0.0, 0.1, n)
    label = np.clip(np.round(label * 5.0) / 5.0, -3.0, 3.0)
    label[label == 0] = 0.0  # no negative zero
    return texts, affect, label.astype(np.float32)


def _video_clip_ids(rng: np.random.Generator, n: int, first_video: int) -> list[str]:
    """Videos of 3-12 clips; ids "video$_$clip"."""
    ids: list[str] = []
    video = first_video
    while len(ids) < n:
        clips = int(rng.integers(3, 13))
        ids.extend(f"syn{video:05d}$_${c}" for c in range(1, clips + 1))
        video += 1
    return ids[:n]


def _stream_lengths(rng: np.random.Generator, n: int, aligned: bool, la: int, lv: int):
    """Audio and vision lengths; unaligned, one duration fraction drives both streams."""
    if aligned:
        return np.full(n, la, dtype=np.int64), np.full(n, lv, dtype=np.int64)
    frac = rng.uniform(0.3, 1.0, n)
    a_len = np.clip(np.round(frac * la), 8, la).astype(np.int64)
    v_len = np.clip(np.round(frac * lv * rng.uniform(0.9, 1.0, n)), 8, lv).astype(np.int64)
    return a_len, v_len


def _inject_nonfinite(audio: np.ndarray, rng: np.random.Generator, a_len: np.ndarray, share: float) -> None:
    """A few non-finite values in audio, as in real MOSI files (alternately -inf and NaN)."""
    bad = np.nonzero(rng.random(len(audio)) < share)[0]
    for j, i in enumerate(bad):
        step = int(rng.integers(a_len[i]))
        audio[i, step, int(rng.integers(audio.shape[2]))] = -np.inf if j % 2 == 0 else np.nan


def _text_features(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(text, text_bert): per-token embeddings of a hashed vocabulary and MMSA's BERT triplet."""
    n = len(texts)
    tok = _token_ids(texts)
    mask = (tok != 0).astype(np.int64)
    text_bert = np.stack([tok, mask, np.zeros_like(tok)], axis=1)
    table, inverse = _embedding_table(tok)
    # np.zeros maps untouched pages lazily: only the token positions (about a third) are written.
    text = np.zeros((n, TEXT_LEN, TEXT_DIM), dtype=np.float32)
    flat_text = text.reshape(n * TEXT_LEN, TEXT_DIM)
    positions = np.flatnonzero(tok.reshape(-1) != 0)
    rows = inverse.reshape(-1)[positions]
    step = CHUNK_ROWS * TEXT_LEN
    for start in range(0, len(positions), step):
        flat_text[positions[start : start + step]] = table[rows[start : start + step]]
    return text, text_bert


def check_signal_shape(baseline_std: float, segment_share) -> None:
    """Raise ValueError naming the problem when the planted-signal shape is unusable."""
    if not (np.isfinite(baseline_std) and baseline_std >= 0):
        raise ValueError(f"baseline_std must be a finite number >= 0, got {baseline_std!r}")
    share = tuple(segment_share)
    if len(share) != 2 or not all(np.isfinite(x) for x in share) or not 0 < share[0] <= share[1] <= 1:
        raise ValueError(f"segment_share must be [low, high] with 0 < low <= high <= 1, got {list(share)!r}")


def generate(
    seed: int, sizes: tuple[int, int, int] | None = None, scale: str = "mosi",
    aligned: bool = True, neutral_share: float = 0.3, nonfinite_share: float = 0.01,
    baseline_std: float = BASELINE_STD, segment_share: tuple[float, float] = SEGMENT_SHARE,
) -> dict[str, dict[str, np.ndarray]]:
    """The whole dataset. ``sizes`` defaults to the real dataset's split sizes for ``scale``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    sizes = tuple(sizes) if sizes is not None else SCALES[scale].sizes
    if len(sizes) != 3 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must be three positive split sizes, got {sizes!r}")
    check_signal_shape(baseline_std, segment_share)
    data = {}
    first_video = 0
    for k, (split, n) in enumerate(zip(SPLITS, sizes)):
        data[split] = generate_split(
            int(n), k, seed, scale, aligned, neutral_share, nonfinite_share, first_video,
            baseline_std, tuple(segment_share),
        )
        first_video += len({i.split("$_$")[0] for i in data[split]["id"]})
    return data


def dump(data: dict, path) -> None:
    """Pickle like MMSA (a plain dict of numpy arrays). Protocol 5 streams array buffers
    without an extra in-memory copy; ``pickle.load`` of Python >= 3.8 reads it."""
    import pickle

    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=5)
