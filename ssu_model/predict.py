"""Scoring new utterances with a trained model folder (what the `predict` command runs).

A model folder (``models/<variant>/``, written by `train`) holds one checkpoint per seed
(``seed_<s>.pt``). ``ssu_model.train.model_folder.load_model_folder`` reads them all;
:class:`Predictor` rebuilds each utterance's model input from raw text with the calls the
pipeline itself makes, so a prediction equals what `evaluate` computes for the same utterance:

1. ``syntax.parse_corpus`` (the `parse` stage's call, without its cache): spaCy dependency
   parse + word to sub-word map, with the spaCy model, tokenizer and ``max_length`` of the
   model's parse (``model_folder.ParseSettings``: read from the checkpoint when recorded, else derived);
2. ``TextEncoder.encode`` + ``encode_corpus`` (the `text-features` stage's calls): frozen word
   states, sub-word states mean-pooled per word; or, for a model trained with
   ``finetune_text``, the seed's own fine-tuned encoder inside ``loop.predict`` (as `evaluate`);
3. ``ssu_model.data.records.build_records`` (what `train` and `evaluate` build their inputs
   with): relation ids from the checkpoint's ``dep_labels``, audio/vision cut to their true lengths;
4. per seed, ``ssu.scoring.regression_scores`` on batches of similar length: ``SSU.forward``'s
   prediction without the augmented view and the losses (bit-identical, nearly twice as fast); a
   fine-tuned model goes through ``ssu_model.train.loop.predict`` with its own encoder, as
   `evaluate`. The feature standardisation (``standardize_streams``) is part of the model: its
   train-split statistics are buffers of the state dict.

The input is an ``ssu_model.data.utterances.Utterances`` (``from_texts``, or
``ssu_model.data.sources.from_source``: audio/vision come with an MMSA pickle or a `features`
folder, read with the same readers as `features`, non-finite values replaced by 0 as `features` does). A model that reads
a stream the input lacks is an error; a stream the model does not read is ignored (noted).

Steps 1-3 for a frozen encoder are the functions of ``ssu_model.raw_text``: the `llm-graphs`
stage times SSU's graph construction from raw text with these very calls.

Per utterance: ``score`` = mean of the seeds' predictions; ``class7`` =
``round(clip(score, -3, 3))`` (MMSA's Acc7 classes, ``metrics.seven_class``) named by
:data:`CLASS_NAMES`; the seed spread = std (ddof 0, as the metrics' std over seeds), min, max.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ssu_model.data.batching import collate
from ssu_model.data.records import build_records, dep_vocabulary, parse_index
from ssu_model.data.splits import STREAMS
from ssu_model.data.utterances import Utterances
from ssu_model.errors import DataError
from ssu_model.eval.metrics import seven_class
from ssu_model.raw_text import frozen_examples, parse_texts, torch_threads
from ssu_model.ssu.scoring import regression_scores
from ssu_model.text.parse_table import ParseConfig
from ssu_model.text.pretrained import encoder_folder
from ssu_model.text.text_encoder import TextEncoder
from ssu_model.train.checkpoints import model_from_checkpoint
from ssu_model.train.loop import predict, seed_everything
from ssu_model.train.model_folder import TrainedModel

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

# The text encoder's precision: fp32 (exact: a score equals evaluate's) or bf16 (CPU autocast: about
# 2.5x faster encoder forward on an AVX-512 CPU, word states within ~1%: benchmarks/results/predict.md).
ENCODER_PRECISIONS = ("fp32", "bf16")
# A spaCy worker process costs its start-up: fewer texts than this per process parse faster in one.
PARSE_TEXTS_PER_PROCESS = 1000


# --------------------------------------------------------------------------- the input


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
    per_seed: np.ndarray  # (n_seeds, N) float32, as loop.predict returns them
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
        types = {"id": pa.string(), "split": pa.string(), "label": pa.float32(), "score": pa.float64(),
                 "class7": pa.int8(), "sentiment": pa.string(), "seed_std": pa.float64(),
                 "seed_min": pa.float64(), "seed_max": pa.float64(), "text": pa.string()}
        cols = self.columns(per_seed)
        fields = [pa.field(name, types.get(name, pa.float32())) for name in cols]
        schema = pa.schema(fields, metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()})
        return pa.table([pa.array(v, f.type) for v, f in zip(cols.values(), fields, strict=True)], schema=schema)


def _by_length(examples) -> np.ndarray:
    """Indices of ``examples`` by number of words, then audio/vision steps (stable)."""
    def steps(x):
        return 0 if x is None else len(x)

    keys = [(len(e.heads), steps(e.audio), steps(e.vision)) for e in examples]
    return np.array(sorted(range(len(examples)), key=keys.__getitem__), dtype=np.int64)


class Predictor:
    """A model folder made ready to score: every seed's model, the text encoder, the parse settings.

    Construct once, call :meth:`predict` any number of times (spaCy and the tokenizer are loaded
    on the first call and kept by ``ssu_model.text.loaded`` for the process)."""

    def __init__(self, trained: TrainedModel, encoder_cache: Path | str, device: str = "cpu",
                 batch_size: int = 64, encode_batch_size: int = 128, encoder_threads: int = 0,
                 model_threads: int = 0, parse_processes: int = 1, encoder_precision: str = "fp32"):
        if batch_size < 1 or encode_batch_size < 1:
            raise DataError("batch sizes must be >= 1")
        if parse_processes < 1:
            raise DataError(f"parse_processes must be >= 1, got {parse_processes}")
        if encoder_precision not in ENCODER_PRECISIONS:
            raise DataError(f"encoder_precision must be one of {', '.join(ENCODER_PRECISIONS)}, got {encoder_precision!r}")
        if encoder_precision == "bf16" and trained.finetuned:
            raise DataError(f"the model in {trained.folder} fine-tunes its text encoder: bf16 applies to a frozen one "
                            "(use fp32)")
        if encoder_precision == "bf16" and device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise DataError("a bf16 encoder needs a CPU with AVX-512 (oneDNN bf16); this one has none: use fp32")
        self.trained = trained
        self.device = device
        self.batch_size = batch_size
        self.encode_batch_size = encode_batch_size
        self.encoder_threads = encoder_threads  # torch CPU threads of the frozen encoder's forward (0: as set)
        self.model_threads = model_threads  # torch CPU threads of the SSU forward passes (0: as set)
        self.parse_processes = parse_processes  # spaCy worker processes (nlp.pipe's n_process)
        self.encoder_precision = encoder_precision
        s = trained.settings
        self.tokenizer_folder = encoder_folder(s.tokenizer, encoder_cache)
        try:
            self.encoder = TextEncoder(encoder_folder(s.text_encoder, encoder_cache), max_length=s.max_length,
                                       layers=s.text_layers)
        except OSError as exc:
            raise DataError(f"cannot load text encoder {s.text_encoder!r}: {str(exc).splitlines()[0]}") from None
        if self.encoder.dim != trained.model_config.get("text_dim"):
            raise DataError(f"text encoder {s.text_encoder!r} gives {self.encoder.dim}-d word states but the "
                            f"model reads {trained.model_config.get('text_dim')}-d ones")
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.encoder.to(device)
        self.models = [model_from_checkpoint(ck).to(device).eval() for ck in trained.checkpoints]

    # ------------------------------------------------------------------ steps

    def parse(self, texts: Sequence[str], ids: Sequence[str]):
        """The `parse` stage's table for ``texts`` (contract B columns + id), no cache."""
        s = self.trained.settings
        config = ParseConfig(model=s.spacy_model, tokenizer=self.tokenizer_folder, max_length=s.max_length,
                             n_process=min(self.parse_processes, max(1, len(texts) // PARSE_TEXTS_PER_PROCESS)))
        table, labels = parse_texts(texts, ids, config)
        if labels != self.trained.meta["dep_labels"]:
            raise DataError(f"spaCy model {s.spacy_model!r} has other relation labels than the parse the model "
                            "was trained on: give the spaCy model that parse used (--spacy-model)")
        return table

    def examples(self, utts: Utterances, table) -> tuple[list, float]:
        """``records.build_records`` on the input + parse (+ frozen word states); encode seconds."""
        text_dim = int(self.trained.model_config["text_dim"])
        t0 = time.perf_counter()
        if self.trained.finetuned:
            examples = build_records(utts, parse_index(table), dep_vocabulary(self.trained.meta["dep_labels"]),
                                     text_states=None, encoder=self.encoder, text_dim=text_dim,
                                     use_audio=utts.has_audio, use_vision=utts.has_vision, name="predict")
        else:
            with torch_threads(self.encoder_threads), self._encoder_autocast():
                examples = frozen_examples(utts, table, self.encoder, self.trained.meta["dep_labels"], text_dim,
                                           self.encode_batch_size, self.device)
        return examples, time.perf_counter() - t0

    def score(self, examples) -> np.ndarray:
        """(n_seeds, N) predictions per seed on batches of similar length (less padding in the
        graphs; a record's score does not depend on its batch): ``regression_scores`` for a frozen
        encoder; for a fine-tuned one ``loop.predict`` with the seed's encoder, as `evaluate`."""
        order = _by_length(examples)
        examples = [examples[i] for i in order]
        batches = None if self.trained.finetuned else [  # collated once, shared by every seed
            collate(examples[start:start + self.batch_size]).to(self.device)
            for start in range(0, len(examples), self.batch_size)]
        out = []
        with torch_threads(self.model_threads):
            for seed, ck, model in zip(self.trained.seeds, self.trained.checkpoints, self.models, strict=True):
                if self.trained.finetuned:  # the seed's own fine-tuned encoder (tokenising needs no weights)
                    self.encoder.load_state_dict(ck["encoder_state"])
                    seed_everything(seed)  # as evaluate: the augmented view (unused here) draws random numbers
                    p, _losses = predict(model, examples, self.batch_size, self.device, self.encoder)
                else:
                    p = np.concatenate([regression_scores(model, b).float().cpu().numpy() for b in batches])
                out.append(np.asarray(p, dtype=np.float32))
        per_seed = np.empty((len(out), len(order)), dtype=np.float32)
        per_seed[:, order] = np.stack(out)  # back to input order
        if not np.isfinite(per_seed).all():
            raise DataError("the model produced a non-finite score")
        return per_seed

    def _encoder_autocast(self):
        """The frozen encoder's forward in bf16 (``encoder_precision``), else nothing changes."""
        if self.encoder_precision == "bf16":
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
