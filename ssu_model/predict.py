"""Scoring new utterances with a trained model folder (what the `predict` command runs).

A model folder (``models/<variant>/``, written by `train`) holds one checkpoint per seed
(``seed_<s>.pt``). :func:`load_model_folder` reads them all; :class:`Predictor` rebuilds each
utterance's model input from raw text with the calls the pipeline itself makes, so a
prediction equals what `evaluate` computes for the same utterance:

1. ``syntax.parse_corpus`` (the `parse` stage's call, without its cache): spaCy dependency
   parse + word to sub-word map, with the spaCy model, tokenizer and ``max_length`` of the
   model's parse (:class:`ParseSettings`: read from the checkpoint when recorded, else derived);
2. ``TextEncoder.encode`` + ``encode_corpus`` (the `text-features` stage's calls): frozen word
   states, sub-word states mean-pooled per word; or, for a model trained with
   ``finetune_text``, the seed's own fine-tuned encoder inside ``training.predict`` (as `evaluate`);
3. ``training.build_examples`` (what `train` and `evaluate` build their inputs with): relation
   ids from the checkpoint's ``dep_labels``, audio/vision cut to their true lengths;
4. ``training.predict`` per seed. The feature standardisation (``standardize_streams``) is
   part of the model: its train-split statistics are buffers of the state dict.

Audio/vision come with the input (an MMSA pickle or a `features` folder, read with the same
readers as `features`, non-finite values replaced by 0 as `features` does). A model that reads
a stream the input lacks is an error; a stream the model does not read is ignored (noted).

Steps 1-3 for a frozen encoder are module functions (:func:`parse_texts`, :func:`frozen_examples`,
:func:`raw_text_examples`, :func:`graphs_from_raw_text`): the `llm-graphs` stage times SSU's graph
construction from raw text with these very calls.

Per utterance: ``score`` = mean of the seeds' predictions; ``class7`` =
``round(clip(score, -3, 3))`` (MMSA's Acc7 classes, ``metrics.seven_class``) named by
:data:`CLASS_NAMES`; the seed spread = std (ddof 0, as the metrics' std over seeds), min, max.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssu_model.errors import DataError

# The 7 classes of MMSA's Acc7 (round(clip(score, -3, 3))), named as CMU-MOSI's annotation scale.
CLASS_NAMES = {
    -3: "strongly negative",
    -2: "negative",
    -1: "weakly negative",
    0: "neutral",
    1: "weakly positive",
    2: "positive",
    3: "strongly positive",
}
SPLITS = ("train", "valid", "test")
STREAMS = ("audio", "vision")

Log = Callable[[str], None]


# --------------------------------------------------------------------------- the model folder


@dataclass(frozen=True)
class ParseSettings:
    """How the model's training text was parsed and encoded; ``derived`` names the settings the
    model folder does not record (they are filled in, and said so)."""

    spacy_model: str  # spaCy package name or folder (`parse.spacy_model`)
    tokenizer: str  # `parse.tokenizer`: minilm / mpnet / a folder; the text encoder's own
    max_length: int  # sub-word budget incl. special tokens (`parse.max_length`)
    text_encoder: str  # `text_features.model_path`: minilm / mpnet / a folder
    derived: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from

    def describe(self) -> str:
        parts = []
        for name, value in (("spaCy", self.spacy_model), ("tokenizer", self.tokenizer),
                            ("max_length", self.max_length), ("text encoder", self.text_encoder)):
            key = {"spaCy": "spacy_model", "text encoder": "text_encoder"}.get(name, name)
            how = self.derived.get(key)
            parts.append(f"{name} {value}" + (f" ({how})" if how else ""))
        return ", ".join(parts)


def parse_settings(meta: dict[str, Any], spacy_model: str | None = None,
                   max_length: int | None = None) -> ParseSettings:
    """The parse/encoder settings of a checkpoint's ``meta``.

    `train` records ``text_encoder``, and (from the parse split's metadata) ``spacy_model`` and
    ``parse_max_length``; folders trained before it did record only ``max_length``, and only when
    fine-tuning. What is missing is derived: tokenizer = the text encoder's (the pipeline requires
    them to be the same), spaCy model and max_length = the project defaults (``syntax.ParseConfig``). Keys ``spacy_model``, ``tokenizer`` and
    ``parse_max_length`` in ``meta`` are used when present. ``spacy_model``/``max_length``
    arguments override (the caller's explicit choice)."""
    from ssu_model.text.syntax import ParseConfig

    defaults = ParseConfig()
    derived: dict[str, str] = {}
    encoder = meta.get("text_encoder")
    if not encoder:
        raise DataError("the checkpoint does not record its text encoder (meta.text_encoder)")
    if spacy_model:
        spacy = spacy_model
        derived["spacy_model"] = "given"
    elif meta.get("spacy_model"):
        spacy = str(meta["spacy_model"])
    else:
        spacy = defaults.model
        derived["spacy_model"] = "not recorded: project default"
    tokenizer = meta.get("tokenizer")
    if not tokenizer:
        tokenizer = encoder
        derived["tokenizer"] = "not recorded: the text encoder's"
    if max_length is not None:
        length = int(max_length)
        derived["max_length"] = "given"
    elif meta.get("parse_max_length") is not None:
        length = int(meta["parse_max_length"])
    elif meta.get("max_length") is not None:  # recorded by train when it fine-tunes the encoder
        length = int(meta["max_length"])
    else:
        length = defaults.max_length
        derived["max_length"] = "not recorded: project default"
    if length < 2:
        raise DataError(f"max_length must be at least 2, got {length}")
    return ParseSettings(spacy, str(tokenizer), length, str(encoder), derived)


@dataclass
class TrainedModel:
    """Every seed's checkpoint of one model folder, checked to describe one model."""

    folder: Path
    seeds: list[int]
    checkpoints: list[dict]  # in seed order
    model_config: dict[str, Any]  # the (shared) plain SSUConfig dict
    meta: dict[str, Any]  # the first seed's meta (dep_labels, text_encoder, ...)
    settings: ParseSettings

    @property
    def finetuned(self) -> bool:
        return bool(self.meta.get("finetune_text"))

    def stream_dim(self, name: str) -> int | None:
        return self.model_config.get(f"{name}_dim")

    @property
    def modalities(self) -> list[str]:
        return ["text"] + [m for m in STREAMS if self.stream_dim(m)]


# meta entries that must agree between the seeds of one folder
_SHARED_META = ("dep_labels", "text_encoder", "max_length", "finetune_text", "llm_states",
                "spacy_model", "tokenizer", "parse_max_length")


def load_model_folder(folder: Path | str, spacy_model: str | None = None,
                      max_length: int | None = None) -> TrainedModel:
    """Load and check every seed checkpoint of ``folder`` (a `train` output)."""
    from ssu_model.train.training import load_checkpoint, seed_checkpoints

    folder = Path(folder)
    found = seed_checkpoints(folder)
    ckpts = [load_checkpoint(path) for _seed, path in found]
    first = ckpts[0]
    for key in ("model_config", "meta"):
        if not isinstance(first.get(key), dict):
            raise DataError(f"{found[0][1]}: checkpoint lacks {key}")
    for (seed, path), ck in zip(found[1:], ckpts[1:]):
        if ck.get("model_config") != first["model_config"]:
            raise DataError(f"{path}: its model configuration differs from seed {found[0][0]}'s "
                            "(checkpoints of different trainings in one folder?)")
        meta = ck.get("meta") or {}
        for key in _SHARED_META:
            if meta.get(key) != first["meta"].get(key):
                raise DataError(f"{path}: its {key} differs from seed {found[0][0]}'s")
    meta = first["meta"]
    cfg = first["model_config"]
    if cfg.get("graph_source", "ssu") != "ssu" or meta.get("llm_states"):
        raise DataError(f"{folder} is an LLM graph-constructor model: it needs each utterance's LLM "
                        "states (llm-graphs), which predict does not compute")
    if not isinstance(meta.get("dep_labels"), list):
        raise DataError(f"{found[0][1]}: checkpoint meta lacks dep_labels")
    for (_seed, path), ck in zip(found, ckpts):
        if meta.get("finetune_text") and "encoder_state" not in ck:
            raise DataError(f"{path}: fine-tuned checkpoint lacks encoder_state")
    return TrainedModel(folder, [s for s, _ in found], ckpts, dict(cfg), dict(meta),
                        parse_settings(meta, spacy_model, max_length))


# --------------------------------------------------------------------------- the input


@dataclass
class Utterances:
    """What to score: texts, optional reference labels and splits, optional audio/vision.

    It also offers the part of ``ssu_model.data.features.FeatureSplit``'s interface that
    ``training.build_examples`` reads (``ids``, ``labels``, ``has_audio``, ``has_vision``,
    ``gather``, ``len``), so the pipeline's own example builder joins it with the parse."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # float32 reference labels; 0 where there are none (they only enter losses)
    has_labels: bool = False
    splits: list[str] | None = None
    streams: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> ((N,L,D) float32, (N,) int32)
    nonfinite: dict[str, int] = field(default_factory=dict)  # non-finite stream values replaced by 0
    source: str = ""

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


def _sanitised(values: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 copy with non-finite values replaced by 0, as ``data.write_split(sanitize=True)``."""
    out = np.array(values, dtype=np.float32, order="C", copy=True)
    bad = ~np.isfinite(out)
    count = int(bad.sum())
    if count:
        out[bad] = 0.0
    return out, count


def _concat(parts: list[Utterances], source: str) -> Utterances:
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


def from_source(path: Path | str, splits: Sequence[str] = SPLITS) -> Utterances:
    """A dataset `features` reads (MMSA pickle or label CSV, via ``readers.read_source``), a
    `features` output folder, or one of its ``<split>.arrow`` files; rows of each split sorted by
    id as `features` writes them."""
    path = Path(path)
    for s in splits:
        if s not in SPLITS:
            raise DataError(f"unknown split {s!r} (train, valid, test)")
    if path.is_dir() or path.suffix == ".arrow":
        return _from_features(path, splits)
    from ssu_model.data.readers import detect_kind, read_source

    if path.is_file() and detect_kind(path) == "csv":
        return from_text_csv(path, splits)

    ds = read_source(path)
    parts = []
    for s in splits:
        data = ds.splits[s]
        order = sorted(range(len(data)), key=data.ids.__getitem__)
        streams, nonfinite = {}, {}
        for m in STREAMS:
            values = getattr(data, m)
            if values is None:
                continue
            arr, count = _sanitised(values[order] if len(order) else values)
            streams[m] = (arr, np.asarray(getattr(data, f"{m}_lengths"), dtype=np.int32)[order])
            nonfinite[m] = count
        parts.append(Utterances(
            ids=[data.ids[i] for i in order], texts=[data.texts[i] for i in order],
            labels=np.asarray(data.labels, dtype=np.float32)[order], has_labels=True, splits=[s] * len(order),
            streams=streams, nonfinite=nonfinite, source=str(path)))
    return _concat(parts, str(path))


def from_text_csv(path: Path | str, splits: Sequence[str] = SPLITS) -> Utterances:
    """Utterances of a CSV with a ``text`` column, read more leniently than `features` reads a label
    CSV (a file to score need not be a training set): ids from ``id`` or MMSA's ``video_id`` +
    ``clip_id`` (else the line number); ``label`` optional (reference labels in [-3, 3] when
    present); ``mode`` optional (train/valid/dev/test: rows outside ``splits`` are left out; without
    it every row is scored, has no split and keeps the file's order); any split may be absent."""
    import csv
    import io

    from ssu_model.data.readers import LABEL_RANGE, MMSA_ID_SEP, SPLIT_ALIASES

    path = Path(path)
    try:
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable UTF-8 CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path} is empty: no CSV header")
    cols = {c.strip(): i for i, c in enumerate(rows[0])}
    if "text" not in cols:
        raise DataError(f"{path}: no 'text' column (columns: {', '.join(cols) or 'none'})")
    has_labels, has_mode = "label" in cols, "mode" in cols
    ids, texts, labels, chosen = [], [], [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(cols):
            raise DataError(f"{path}: line {lineno} has {len(row)} fields, header has {len(cols)}")
        if "id" in cols:
            rid = row[cols["id"]].strip()
        elif "video_id" in cols and "clip_id" in cols:
            rid = f"{row[cols['video_id']].strip()}{MMSA_ID_SEP}{row[cols['clip_id']].strip()}"
        else:
            rid = str(lineno - 1)
        split = None
        if has_mode:
            split = SPLIT_ALIASES.get(row[cols["mode"]].strip())
            if split is None:
                raise DataError(f"{path}: unknown mode {row[cols['mode']]!r} on line {lineno} "
                                "(expected train, valid, dev or test)")
            if split not in splits:
                continue
        text = row[cols["text"]]
        if not text.strip():
            raise DataError(f"{path}: empty text on line {lineno} (id {rid!r})")
        label = 0.0
        if has_labels:
            try:
                label = float(row[cols["label"]])
            except ValueError:
                raise DataError(f"{path}: non-numeric label {row[cols['label']]!r} on line {lineno}") from None
            if not np.isfinite(label) or not LABEL_RANGE[0] <= label <= LABEL_RANGE[1]:
                raise DataError(f"{path}: label {row[cols['label']]!r} out of [-3, 3] on line {lineno}")
        ids.append(rid)
        texts.append(text)
        labels.append(label)
        chosen.append(split)
    if not ids:
        raise DataError(f"{path}: no rows to score" + (f" in split(s) {', '.join(splits)}" if has_mode else ""))
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: ids are not distinct")
    order = list(range(len(ids)))
    if has_mode:  # by split, then id, as `features` writes a label CSV's rows
        order.sort(key=lambda i: (SPLITS.index(chosen[i]), ids[i]))
    return Utterances([ids[i] for i in order], [texts[i] for i in order],
                      np.asarray([labels[i] for i in order], dtype=np.float32), has_labels,
                      [chosen[i] for i in order] if has_mode else None, source=str(path))


def _from_features(path: Path, splits: Sequence[str]) -> Utterances:
    from ssu_model.data.features import FeatureSplit, split_path

    if path.is_dir():
        files = [(s, split_path(path, s)) for s in splits]
        missing = [str(f) for _s, f in files if not f.is_file()]
        if missing:
            raise DataError(f"{path}: no {missing[0]} (a `features` output folder holds train/valid/test.arrow)")
    else:
        if not path.is_file():
            raise DataError(f"input file not found: {path}")
        files = [(path.stem, path)]
    parts = []
    for s, f in files:
        split = FeatureSplit(f)
        n = len(split)
        streams = {}
        for m in STREAMS:
            if split.shapes[m] is not None:
                streams[m] = split.gather(m, np.arange(n))  # already sanitised by `features`
        parts.append(Utterances(list(split.ids), list(split.texts), split.labels.astype(np.float32), True,
                                [s] * n, streams, {m: 0 for m in streams}, str(f)))
    return _concat(parts, str(path))


def select_streams(trained: TrainedModel, utts: Utterances) -> tuple[Utterances, list[str]]:
    """The input cut to the streams the model reads, and notes on what was ignored.

    Raises DataError when the model reads a stream the input lacks, or one of another width."""
    notes = []
    folder = trained.folder
    reads = " + ".join(trained.modalities)
    for m in STREAMS:
        dim = trained.stream_dim(m)
        if dim:
            if m not in utts.streams:
                raise DataError(
                    f"the model in {folder} reads {reads} (audio_dim {trained.stream_dim('audio')}, "
                    f"vision_dim {trained.stream_dim('vision')}) but the input has no {m}: plain text "
                    "and label CSVs are text only; give an MMSA pickle or features folder with "
                    f"{m}, or use a text-only model")
            width = int(utts.streams[m][0].shape[2])
            if width != dim:
                raise DataError(f"the input's {m} features are {width}-d but the model in {folder} reads "
                                f"{dim}-d {m} ({m}_dim {dim}): trained on features of another shape?")
        elif m in utts.streams:
            notes.append(f"the input's {m} is ignored: the model in {folder} reads {reads}")
            utts = utts.without(m)
    return utts, notes


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """Per-utterance scores of every seed and their summary."""

    ids: list[str]
    texts: list[str]
    seeds: list[int]
    per_seed: np.ndarray  # (n_seeds, N) float32, as training.predict returns them
    labels: np.ndarray | None = None  # reference labels (dataset inputs)
    splits: list[str] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: parse, encode, model

    @property
    def score(self) -> np.ndarray:
        return self.per_seed.astype(np.float64).mean(axis=0)

    @property
    def seed_std(self) -> np.ndarray:
        return self.per_seed.astype(np.float64).std(axis=0)  # ddof 0, as the metrics' std over seeds

    @property
    def seed_min(self) -> np.ndarray:
        return self.per_seed.astype(np.float64).min(axis=0)

    @property
    def seed_max(self) -> np.ndarray:
        return self.per_seed.astype(np.float64).max(axis=0)

    @property
    def class7(self) -> np.ndarray:
        from ssu_model.eval.metrics import seven_class

        return seven_class(self.score)

    @property
    def sentiment(self) -> list[str]:
        return [CLASS_NAMES[int(c)] for c in self.class7]

    def columns(self, per_seed: bool = False) -> dict[str, list]:
        """Column name -> values (plain Python), in output order."""
        cols: dict[str, list] = {"id": list(self.ids)}
        if self.splits is not None:
            cols["split"] = list(self.splits)
        if self.labels is not None:
            cols["label"] = [float(v) for v in self.labels]
        cols["score"] = [float(v) for v in self.score]
        cols["class7"] = [int(v) for v in self.class7]
        cols["sentiment"] = self.sentiment
        cols["seed_std"] = [float(v) for v in self.seed_std]
        cols["seed_min"] = [float(v) for v in self.seed_min]
        cols["seed_max"] = [float(v) for v in self.seed_max]
        if per_seed:
            for k, seed in enumerate(self.seeds):
                cols[f"seed_{seed}"] = [float(v) for v in self.per_seed[k]]
        cols["text"] = list(self.texts)
        return cols

    def to_arrow(self, per_seed: bool = False, metadata: dict[str, str] | None = None):
        import pyarrow as pa

        types = {"id": pa.string(), "split": pa.string(), "label": pa.float32(), "score": pa.float64(),
                 "class7": pa.int8(), "sentiment": pa.string(), "seed_std": pa.float64(),
                 "seed_min": pa.float64(), "seed_max": pa.float64(), "text": pa.string()}
        cols = self.columns(per_seed)
        fields = [pa.field(name, types.get(name, pa.float32())) for name in cols]
        schema = pa.schema(fields, metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()})
        return pa.table([pa.array(v, f.type) for v, f in zip(cols.values(), fields)], schema=schema)


# --------------------------------------------------------------------------- raw text -> records
# The steps `predict` runs from raw text to model records (frozen encoder). `llm-graphs` times the
# same calls for SSU's graph construction "as a user pays it" (from raw text, no parse cache).

RAW_TEXT_STEPS = ("parse", "subword_ids", "encoder_forward", "records")


def parse_texts(texts: Sequence[str], ids: Sequence[str], config) -> tuple[Any, list[str]]:
    """``syntax.parse_corpus`` without a cache (new text is never cached): spaCy dependency parse +
    word to sub-word map of ``texts`` with ``config`` (a ``syntax.ParseConfig``). Returns (the
    `parse` stage's table: contract B columns + id, the relation labels of the spaCy model)."""
    import json

    import pyarrow as pa

    from ssu_model.text.syntax import parse_corpus

    table, _stats, metadata = parse_corpus(list(texts), config, None, None)
    labels = json.loads(metadata["ssu.dep_labels"])
    return table.add_column(0, "id", pa.array(list(ids), pa.string())), labels


def frozen_examples(utts: Utterances, table, encoder, dep_labels: Sequence[str], text_dim: int,
                    batch_size: int = 64, device: str = "cpu", timings: dict[str, float] | None = None) -> list:
    """Records of ``utts`` from their parse ``table`` and a frozen ``encoder`` (a ``TextEncoder``):
    sub-word ids per utterance (``TextEncoder.encode``, checked against the parse's map), word
    states (``encode_corpus``: padding + encoder forward + per-word mean, ``batch_size`` utterances
    per forward) and ``training.build_examples``. ``timings`` (when given) receives the seconds of
    each step: ``subword_ids`` (incl. indexing the table), ``encoder_forward``, ``records``."""
    from ssu_model.train.training import build_examples, dep_vocabulary, parse_index

    t0 = time.perf_counter()
    index = parse_index(table)
    encoded = [encoder.encode(index[uid]["words"], index[uid]["sub_start"], index[uid]["sub_end"],
                              where=f"predict:{uid}") for uid in utts.ids]
    t1 = time.perf_counter()
    states = encoder.encode_corpus(encoded, batch_size=batch_size, device=device)
    t2 = time.perf_counter()
    examples = build_examples(utts, index, dep_vocabulary(dep_labels), text_states=dict(zip(utts.ids, states)),
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
    of every step of :data:`RAW_TEXT_STEPS`."""
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


def graphs_from_raw_text(utts: Utterances, config, encoder, dep_labels: Sequence[str], model,
                         batch_size: int = 64, device: str = "cpu") -> tuple[dict[str, float], list]:
    """SSU's graph construction as a user pays it: :func:`raw_text_examples` (spaCy parse + sub-word
    map without a cache, sub-word ids, encoder forward, records), ``collate`` and
    ``model.build_graphs`` (an ``SSU``) on ``utts`` as one batch. Returns (seconds of every step:
    ``RAW_TEXT_STEPS`` + ``collate``, ``build_graphs``; the records). A CUDA device is synchronised
    around the timed steps."""
    import torch

    from ssu_model.data.batching import collate

    def sync() -> None:
        if str(device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    steps: dict[str, float] = {}
    sync()
    examples = raw_text_examples(utts, config, encoder, dep_labels, int(model.config.text_dim), batch_size,
                                 device, steps)
    t0 = time.perf_counter()
    batch = collate([e.record for e in examples]).to(device)
    sync()
    t1 = time.perf_counter()
    with torch.inference_mode():
        model.build_graphs(batch)
    sync()
    steps["collate"], steps["build_graphs"] = t1 - t0, time.perf_counter() - t1
    return steps, examples


class Predictor:
    """A model folder made ready to score: every seed's model, the text encoder, the parse settings.

    Construct once, call :meth:`predict` any number of times (spaCy and the tokenizer are loaded
    on the first call and kept by ``ssu_model.text.syntax`` for the process)."""

    def __init__(self, trained: TrainedModel, encoder_cache: Path | str, device: str = "cpu",
                 batch_size: int = 64, encode_batch_size: int = 64):
        from ssu_model.text.pretrained import encoder_folder
        from ssu_model.text.text_encoder import TextEncoder
        from ssu_model.train.training import model_from_checkpoint

        if batch_size < 1 or encode_batch_size < 1:
            raise DataError("batch sizes must be >= 1")
        self.trained = trained
        self.device = device
        self.batch_size = batch_size
        self.encode_batch_size = encode_batch_size
        s = trained.settings
        self.tokenizer_folder = encoder_folder(s.tokenizer, encoder_cache)
        try:
            self.encoder = TextEncoder(encoder_folder(s.text_encoder, encoder_cache), max_length=s.max_length)
        except OSError as exc:
            raise DataError(f"cannot load text encoder {s.text_encoder!r}: {str(exc).splitlines()[0]}") from None
        if self.encoder.dim != trained.model_config.get("text_dim"):
            raise DataError(f"text encoder {s.text_encoder!r} gives {self.encoder.dim}-d word states but the "
                            f"model reads {trained.model_config.get('text_dim')}-d ones")
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.encoder.to(device)
        self.models = [model_from_checkpoint(ck).to(device) for ck in trained.checkpoints]

    # ------------------------------------------------------------------ steps

    def parse(self, texts: Sequence[str], ids: Sequence[str]):
        """The `parse` stage's table for ``texts`` (contract B columns + id), no cache."""
        from ssu_model.text.syntax import ParseConfig

        s = self.trained.settings
        config = ParseConfig(model=s.spacy_model, tokenizer=self.tokenizer_folder, max_length=s.max_length)
        table, labels = parse_texts(texts, ids, config)
        if labels != self.trained.meta["dep_labels"]:
            raise DataError(f"spaCy model {s.spacy_model!r} has other relation labels than the parse the model "
                            "was trained on: give the spaCy model that parse used (--spacy-model)")
        return table

    def examples(self, utts: Utterances, table) -> tuple[list, float]:
        """``training.build_examples`` on the input + parse (+ frozen word states); encode seconds."""
        from ssu_model.train.training import build_examples, dep_vocabulary, parse_index

        text_dim = int(self.trained.model_config["text_dim"])
        t0 = time.perf_counter()
        if self.trained.finetuned:
            examples = build_examples(utts, parse_index(table), dep_vocabulary(self.trained.meta["dep_labels"]),
                                      text_states=None, encoder=self.encoder, text_dim=text_dim,
                                      use_audio=utts.has_audio, use_vision=utts.has_vision, name="predict")
        else:
            examples = frozen_examples(utts, table, self.encoder, self.trained.meta["dep_labels"], text_dim,
                                       self.encode_batch_size, self.device)
        return examples, time.perf_counter() - t0

    def score(self, examples) -> np.ndarray:
        """(n_seeds, N) predictions: ``training.predict`` per seed, as `evaluate` calls it."""
        from ssu_model.train.training import predict, seed_everything

        out = []
        for seed, ck, model in zip(self.trained.seeds, self.trained.checkpoints, self.models):
            enc = None
            if self.trained.finetuned:  # the seed's own fine-tuned encoder (tokenising needs no weights)
                self.encoder.load_state_dict(ck["encoder_state"])
                enc = self.encoder
            seed_everything(seed)  # as evaluate: the augmented view (unused here) draws random numbers
            p, _losses = predict(model, examples, self.batch_size, self.device, enc)
            out.append(np.asarray(p, dtype=np.float32))
        per_seed = np.stack(out)
        if not np.isfinite(per_seed).all():
            raise DataError("the model produced a non-finite score")
        return per_seed

    def predict(self, utts: Utterances) -> Predictions:
        """Score ``utts``; streams the model does not read are dropped (``select_streams``)."""
        if len(utts) == 0:
            raise DataError("no utterances to score")
        utts, _notes = select_streams(self.trained, utts)
        t0 = time.perf_counter()
        table = self.parse(utts.texts, utts.ids)
        t_parse = time.perf_counter() - t0
        examples, t_encode = self.examples(utts, table)
        t0 = time.perf_counter()
        per_seed = self.score(examples)
        t_model = time.perf_counter() - t0
        return Predictions(
            ids=list(utts.ids), texts=list(utts.texts), seeds=list(self.trained.seeds), per_seed=per_seed,
            labels=utts.labels if utts.has_labels else None, splits=utts.splits,
            timings={"parse": t_parse, "encode": t_encode, "model": t_model},
        )
