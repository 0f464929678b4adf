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

SPLITS = ("train", "valid", "test")
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
# Sentences
# --------------------------------------------------------------------------------------------

TOPICS = (  # (noun phrase, plural)
    ("movie", False), ("film", False), ("plot", False), ("story", False), ("acting", False),
    ("cast", False), ("soundtrack", False), ("music", False), ("ending", False),
    ("dialogue", False), ("script", False), ("pacing", False), ("main character", False),
    ("villain", False), ("special effects", True), ("cinematography", False), ("humor", False),
    ("sequel", False), ("trailer", False), ("opening scene", False), ("love story", False),
    ("fight scenes", True), ("costumes", True), ("animation", False), ("twist", False),
    ("jokes", True), ("lead actress", False), ("camera work", False),
)
POS_ADJ = (
    ("good", 1.0), ("nice", 1.0), ("fun", 1.2), ("enjoyable", 1.3), ("funny", 1.3),
    ("great", 2.0), ("beautiful", 2.0), ("touching", 1.8), ("clever", 1.6), ("wonderful", 2.4),
    ("fantastic", 2.5), ("amazing", 2.6), ("brilliant", 2.7), ("decent", 0.6), ("solid", 1.0),
    ("charming", 1.6), ("entertaining", 1.4), ("impressive", 1.9),
)
NEG_ADJ = (
    ("bad", -1.0), ("boring", -1.4), ("dull", -1.2), ("weak", -1.0), ("annoying", -1.5),
    ("predictable", -0.9), ("confusing", -1.1), ("disappointing", -2.0), ("terrible", -2.5),
    ("awful", -2.5), ("horrible", -2.7), ("painful", -2.2), ("mediocre", -0.7),
    ("forgettable", -1.0), ("stupid", -2.0), ("slow", -0.8), ("messy", -1.2), ("cheesy", -0.9),
)
INTENSIFIERS = (
    ("", 1.0), ("", 1.0), ("", 1.0), ("really", 1.3), ("very", 1.3), ("so", 1.35),
    ("extremely", 1.5), ("incredibly", 1.5), ("absolutely", 1.5), ("pretty", 0.85),
    ("kind of", 0.6), ("somewhat", 0.6), ("a little", 0.55), ("quite", 1.1),
)
ATTRIBUTIVE_INTENSIFIERS = (  # those that read well before "adj noun"
    ("", 1.0), ("", 1.0), ("really", 1.3), ("very", 1.3), ("truly", 1.4), ("pretty", 0.85),
    ("rather", 0.8), ("surprisingly", 1.2),
)
HEDGES = (  # sentence prefixes and how much they soften the sentiment
    ("i think", 0.85), ("i guess", 0.75), ("i feel like", 0.85), ("maybe", 0.7),
    ("honestly", 1.1), ("personally", 1.0), ("i would say", 0.9), ("overall", 1.0),
)
VERBS = (  # "i <verb> the <topic>"
    ("liked", 1.5), ("loved", 2.5), ("enjoyed", 1.8), ("appreciated", 1.4), ("adored", 2.7),
    ("hated", -2.5), ("disliked", -1.5), ("regretted watching", -2.0), ("could not stand", -2.4),
)
NEUTRAL = (
    "i watched it {when} and then we talked about the {topic}",
    "so the {topic} is about a {person} who {action}",
    "i saw it {when} with my {friend}",
    "the movie runs about {num} minutes and there is a long scene {place}",
    "we went to the {venue} {when} and i bought some popcorn",
    "it came out {when} and i think it is based on a book",
    "the {topic} has a scene {place} where the {person} {action}",
    "there is a part {place} and then the {topic} changes",
    "my {friend} told me about it so i went to see it {when}",
    "i do not know what else to say about the {topic}",
    "the {person} {action} and then the story moves {place}",
    "it is the second movie from that director and it came out {when}",
    "the {topic} starts {place} and the {person} meets a {friend}",
    "i rented it {when} because my {friend} wanted to see it",
)
WHEN = ("last week", "on friday", "yesterday", "a few days ago", "over the weekend",
        "last month", "on a tuesday", "this morning", "two years ago")
PERSON = ("young woman", "police officer", "teacher", "farmer", "family", "old man",
          "detective", "student", "pilot", "doctor")
ACTION = ("moves to a new city", "loses a job", "travels across the country",
          "looks for a missing brother", "opens a small restaurant", "starts a band",
          "finds an old letter", "goes back to school")
FRIEND = ("brother", "sister", "roommate", "best friend", "cousin", "dad", "mom", "coworker")
PLACE = ("at the airport", "in the middle", "near the end", "at the beginning",
         "in a hospital", "on a train", "in the kitchen", "at a wedding")
VENUE = ("theater", "mall", "cinema downtown", "drive in")


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _be(topic: tuple[str, bool], past: bool = True) -> tuple[str, str]:
    plural = topic[1]
    if past:
        return ("were", "weren't") if plural else ("was", "wasn't")
    return ("are", "aren't") if plural else ("is", "isn't")


def _adjective(rng: np.random.Generator, sign: float) -> tuple[str, float]:
    return _pick(rng, POS_ADJ if sign > 0 else NEG_ADJ)


def _clause(rng: np.random.Generator, sign: float, topic=None) -> tuple[str, float]:
    """One sentiment clause with its value; ``sign`` is the polarity before negation."""
    topic = topic or _pick(rng, TOPICS)
    form = int(rng.integers(6))
    be, be_neg = _be(topic, past=bool(rng.integers(4)))
    if form == 0:  # the plot was really good
        adj, v = _adjective(rng, sign)
        intens, k = _pick(rng, INTENSIFIERS)
        words = f"the {topic[0]} {be} {intens} {adj}"
        return " ".join(words.split()), v * k
    if form == 1:  # negation: the plot was not very good / the acting wasn't bad at all
        adj, v = _adjective(rng, -sign)  # negating the opposite polarity gives ``sign``
        neg = be_neg if rng.integers(2) else f"{be} not"
        intens, k = _pick(rng, INTENSIFIERS[:6])
        tail = " at all" if rng.integers(3) == 0 else ""
        words = f"the {topic[0]} {neg} {intens} {adj}{tail}"
        return " ".join(words.split()), -0.55 * v * k * (1.3 if tail else 1.0)
    if form == 2:  # i really liked the soundtrack / i didn't like the ending
        if rng.integers(4) == 0:
            verb, v = _pick(rng, [x for x in VERBS if x[1] * -sign > 0])
            if verb.startswith(("could", "regretted")):
                verb, v = ("liked", 1.5) if sign < 0 else ("hated", -2.5)
            return f"i didn't {_base_verb(verb)} the {topic[0]}", -0.6 * v
        verb, v = _pick(rng, [x for x in VERBS if x[1] * sign > 0])
        intens = "really " if rng.integers(3) == 0 else ""
        return f"i {intens}{verb} the {topic[0]}", v * (1.25 if intens else 1.0)
    if form == 3:  # it was a really great movie
        adj, v = _adjective(rng, sign)
        intens, k = _pick(rng, ATTRIBUTIVE_INTENSIFIERS)
        noun = _pick(rng, ("movie", "film", "story", "experience", "ride"))
        art = "an" if (intens or adj)[0] in "aeiou" else "a"
        words = f"it was {art} {intens} {adj} {noun}"
        return " ".join(words.split()), v * k
    if form == 4:  # nothing about the villain was interesting / i would not call the ending clever
        adj, v = _adjective(rng, -sign)
        if rng.integers(2):
            return f"nothing about the {topic[0]} was {adj}", -0.6 * v
        return f"i would not call the {topic[0]} {adj}", -0.5 * v
    # form 5: the jokes made me laugh / the ending made me feel sick
    if sign > 0:
        what, v = _pick(rng, (("laugh", 1.5), ("smile", 1.3), ("cry in a good way", 2.0),
                               ("want to see it again", 2.2)))
    else:
        what, v = _pick(rng, (("fall asleep", -1.6), ("want to leave", -2.3),
                               ("feel sick", -2.2), ("check my phone", -1.2)))
    return f"the {topic[0]} made me {what}", v


def _base_verb(verb: str) -> str:
    return {"liked": "like", "loved": "love", "enjoyed": "enjoy", "appreciated": "appreciate",
            "adored": "adore", "hated": "hate", "disliked": "dislike"}.get(verb, "like")


def _neutral(rng: np.random.Generator) -> str:
    tpl = _pick(rng, NEUTRAL)
    return tpl.format(
        when=_pick(rng, WHEN), topic=_pick(rng, TOPICS)[0], person=_pick(rng, PERSON),
        action=_pick(rng, ACTION), friend=_pick(rng, FRIEND), place=_pick(rng, PLACE),
        num=_pick(rng, ("ninety", "two hours", "a hundred", "eighty")).replace(" hours", ""),
        venue=_pick(rng, VENUE),
    )


def sentence(rng: np.random.Generator, neutral: bool) -> tuple[str, float]:
    """One utterance and its text sentiment in [-3, 3] (0 for neutral text)."""
    if neutral:
        return _neutral(rng), 0.0
    sign = 1.0 if rng.integers(2) else -1.0
    shape = int(rng.integers(10))
    if shape <= 3:  # single clause, maybe hedged
        text, v = _clause(rng, sign)
        if rng.integers(3) == 0:
            hedge, k = _pick(rng, HEDGES)
            text, v = f"{hedge} {text}", v * k
    elif shape <= 5:  # contrast: the second clause decides
        first, v1 = _clause(rng, -sign)
        second, v2 = _clause(rng, sign)
        if rng.integers(3) == 0:
            text = f"although {first} {second}"
        else:
            text = f"{first} but {second}"
        v = v2 + 0.1 * v1
    elif shape <= 7:  # two agreeing clauses
        first, v1 = _clause(rng, sign)
        second, v2 = _clause(rng, sign)
        link = _pick(rng, ("and", "and also", "and honestly"))
        text, v = f"{first} {link} {second}", 0.6 * (v1 + v2)
    elif shape == 8:  # because-clause: reason explains the verdict
        first, v1 = _clause(rng, sign, topic=("movie", False))
        second, v2 = _clause(rng, sign)
        text, v = f"{first} because {second}", 0.7 * v1 + 0.4 * v2
    else:  # neutral narration followed by a verdict
        text, v = _clause(rng, sign)
        text = f"{_neutral(rng)} and {text}"
        v = 0.9 * v
    return text, float(np.clip(v, -3.0, 3.0))


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


def distinct_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences of the generator's templates (MOSI-like, ~12 words; 30% neutral),
    the same list for the same ``seed``: text inputs for the benchmarks."""
    rng = _rng(seed, 77, 0)
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(sentence(rng, bool(rng.random() < 0.3))[0])
    return list(seen)


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
    rng = _rng(seed, split_index, 0)

    # Text, affect, labels (per utterance, cheap Python).
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
    label = label.astype(np.float32)

    # Videos of 3-12 clips; ids "video$_$clip".
    ids: list[str] = []
    video = first_video
    while len(ids) < n:
        clips = int(rng.integers(3, 13))
        ids.extend(f"syn{video:05d}$_${c}" for c in range(1, clips + 1))
        video += 1
    ids = ids[:n]

    # Stream lengths (unaligned: one duration fraction drives both streams).
    if aligned:
        a_len = np.full(n, la, dtype=np.int64)
        v_len = np.full(n, lv, dtype=np.int64)
    else:
        frac = rng.uniform(0.3, 1.0, n)
        a_len = np.clip(np.round(frac * la), 8, la).astype(np.int64)
        v_len = np.clip(np.round(frac * lv * rng.uniform(0.9, 1.0, n)), 8, lv).astype(np.int64)

    audio = np.empty((n, la, sc.audio_dim), dtype=np.float32)
    vision = np.empty((n, lv, sc.vision_dim), dtype=np.float32)
    for c, start in enumerate(range(0, n, CHUNK_ROWS)):
        stop = min(start + CHUNK_ROWS, n)
        crng = _rng(seed, split_index, 1, c)
        _fill_stream(audio[start:stop], crng, affect[start:stop], a_len[start:stop], AUDIO_SIGNAL,
                     baseline_std, segment_share)
        _fill_stream(vision[start:stop], crng, affect[start:stop], v_len[start:stop], VISION_SIGNAL,
                     baseline_std, segment_share)

    # A few non-finite values in audio, as in real MOSI files.
    frng = _rng(seed, split_index, 2)
    bad = np.nonzero(frng.random(n) < nonfinite_share)[0]
    for j, i in enumerate(bad):
        step = int(frng.integers(a_len[i]))
        audio[i, step, int(frng.integers(sc.audio_dim))] = -np.inf if j % 2 == 0 else np.nan

    # Text features.
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

    annotations = np.where(label > 0, "Positive", np.where(label < 0, "Negative", "Neutral"))
    classes = np.where(label > 0, 2.0, np.where(label < 0, 0.0, 1.0)).astype(np.float32)

    out = {
        "raw_text": np.array(texts),
        "audio": audio,
        "vision": vision,
        "id": np.array(ids),
        "text": text,
        "text_bert": text_bert,
        "annotations": annotations,
        "classification_labels": classes,
        "regression_labels": label,
    }
    if not aligned:
        out["audio_lengths"] = a_len
        out["vision_lengths"] = v_len
    return out


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
