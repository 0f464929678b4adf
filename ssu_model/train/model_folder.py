"""A trained model folder (``models/<variant>/``, written by `train`) read as one model.

:func:`load_model_folder` loads every seed's checkpoint and checks that they describe one
model (:class:`TrainedModel`); :func:`parse_settings` says how the model's training text was
parsed and encoded (:class:`ParseSettings`), so `predict` can treat new text the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssu_model.data.splits import STREAMS
from ssu_model.errors import DataError
from ssu_model.text.parse_table import ParseConfig
from ssu_model.train.checkpoints import load_checkpoint, seed_checkpoints


@dataclass(frozen=True)
class ParseSettings:
    """How the model's training text was parsed and encoded; ``derived`` names the settings the
    model folder does not record (they are filled in, and said so)."""

    spacy_model: str  # spaCy package name or folder (`parse.spacy_model`)
    tokenizer: str  # `parse.tokenizer`: minilm / mpnet / a folder; the text encoder's own
    max_length: int  # sub-word budget incl. special tokens (`parse.max_length`)
    text_encoder: str  # `text_features.model_path`: minilm / mpnet / a folder
    derived: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from
    text_layers: int = 1  # `text_features.layers`: word states from the mean of the encoder's last layers

    def describe(self) -> str:
        parts = []
        for name, value in (("spaCy", self.spacy_model), ("tokenizer", self.tokenizer),
                            ("max_length", self.max_length), ("text encoder", self.text_encoder)):
            key = {"spaCy": "spacy_model", "text encoder": "text_encoder"}.get(name, name)
            how = self.derived.get(key)
            parts.append(f"{name} {value}" + (f" ({how})" if how else ""))
        if self.text_layers != 1:
            parts.append(f"mean of the last {self.text_layers} encoder layers")
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
    return ParseSettings(spacy, str(tokenizer), length, str(encoder), derived,
                         text_layers=int(meta.get("text_layers", 1)))  # recorded only when > 1


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
_SHARED_META = ("dep_labels", "text_encoder", "text_layers", "max_length", "finetune_text", "llm_states",
                "spacy_model", "tokenizer", "parse_max_length")


def load_model_folder(folder: Path | str | Sequence[Path | str], spacy_model: str | None = None,
                      max_length: int | None = None) -> TrainedModel:
    """Load and check every seed checkpoint of ``folder`` (a `train` output), or of several folders:
    the seed folders of one variant trained a stage per seed (``models/last4_seeds/<s>``); their
    checkpoints must describe one model, as one folder's must. ``TrainedModel.folder``: the first."""
    folders = [Path(folder)] if isinstance(folder, str | Path) else [Path(f) for f in folder]
    if not folders:
        raise DataError("no model folder given")
    folder = folders[0]
    found = sorted(pair for f in folders for pair in seed_checkpoints(f))
    seeds = [s for s, _ in found]
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise DataError(f"seed {twice[0]} has a checkpoint in more than one of the model folders "
                        f"{', '.join(map(str, folders))}")
    ckpts = [load_checkpoint(path) for _seed, path in found]
    first = ckpts[0]
    for key in ("model_config", "meta"):
        if not isinstance(first.get(key), dict):
            raise DataError(f"{found[0][1]}: checkpoint lacks {key}")
    for (_seed, path), ck in zip(found[1:], ckpts[1:], strict=True):
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
    for (_seed, path), ck in zip(found, ckpts, strict=True):
        if meta.get("finetune_text") and "encoder_state" not in ck:
            raise DataError(f"{path}: fine-tuned checkpoint lacks encoder_state")
    return TrainedModel(folder, [s for s, _ in found], ckpts, dict(cfg), dict(meta),
                        parse_settings(meta, spacy_model, max_length))
