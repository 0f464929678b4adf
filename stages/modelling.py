"""Shared helper module (like common.py and params.py: not a stage, it registers no command):
what the stages that run SSU or its LLM baseline share.

- the `model` section, checked against the library's ``SSUConfig`` (``model_overrides``), and the
  ``SSUConfig`` built from it and the data's dimensions (``build_model_config``): `train`, `llm-graphs`;
- the `llm_graphs` section (``LLMGraphsParams``, ``LLMSpec``): `llm-graphs`, `compare`;
- loading features + parse + cached word states (+ LLM states) into examples (``load_inputs``):
  `train`, `evaluate`, `llm-graphs`.

These need the model library (``ssu_model.ssu.model``, ``ssu_model.llm``, ``ssu_model.data.records``).
They live here rather than in params.py, which every stage imports, because dvc.yaml's code deps
follow imports module by module (tests/test_dvc_deps.py): in params.py they would make `sample`,
`features` and `parse` depend on the model code.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from stages.common import log
from stages.errors import ParamError
from stages.params import _coerce, build

# SSUConfig fields the stage derives from the data (never set in params.yaml).
DERIVED_MODEL_FIELDS = ("text_dim", "audio_dim", "vision_dim", "graph_source", "llm_dim")


def model_overrides(raw: Any, where: str) -> dict[str, Any]:
    """Validate a `model` mapping against SSUConfig's fields (derived fields are not settable)."""
    import typing

    from ssu_model.ssu.model import SSUConfig

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamError(f"{where} must be a mapping")
    fields = {f.name for f in dataclasses.fields(SSUConfig)}
    hints = typing.get_type_hints(SSUConfig)
    out = {}
    for key, value in raw.items():
        if key in DERIVED_MODEL_FIELDS:
            raise ParamError(f"{where}.{key} is derived from the data and cannot be set")
        if key not in fields:
            raise ParamError(f"unknown param {where}.{key}")
        out[key] = _coerce(f"{where}.{key}", value, hints[key])
    return out


def build_model_config(overrides: dict[str, Any], dims: dict[str, Any], n_labels: int, llm: bool):
    from ssu_model.ssu.model import SSUConfig

    values = dict(overrides)
    values.update(text_dim=dims["text_dim"], audio_dim=dims["audio_dim"], vision_dim=dims["vision_dim"])
    values["graph_source"] = "llm" if llm else "ssu"
    values["llm_dim"] = dims["llm_dim"] if llm else 0
    try:
        cfg = SSUConfig(**values)
    except (ValueError, TypeError) as exc:
        raise ParamError(f"model: {exc}") from None
    if cfg.num_relations < n_labels + 1:
        raise ParamError(
            f"model.num_relations is {cfg.num_relations} but the parser has {n_labels} relation labels "
            f"(need >= {n_labels + 1})"
        )
    return cfg


def dep_labels_of(table, path: Path) -> list[str]:
    import json

    from ssu_model.errors import DataError

    raw = (table.schema.metadata or {}).get(b"ssu.dep_labels")
    if raw is None:
        raise DataError(f"{path}: parse metadata lacks ssu.dep_labels")
    labels = json.loads(raw.decode())
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{path}: ssu.dep_labels must be a JSON list of strings")
    return labels


def load_inputs(split_names, features_dir: Path, parse_dir: Path, text_dir: Path | None,
                llm_dir: Path | None, modalities, text_dim_hint: int | None = None, encoder=None,
                log=log, text_layers: int = 1):
    """Examples per split + (dep_labels, text_dim, audio_dim, vision_dim, llm_dim).

    ``log``: where the notes on dropped modalities go (train's ranks other than 0 pass a no-op).
    ``text_layers``: the encoder layers the cached word states must average (``text_features.layers``)."""
    import json

    from ssu_model.data.features import FeatureSplit, split_path
    from ssu_model.data.records import build_records, dep_vocabulary, parse_index
    from ssu_model.errors import DataError
    from ssu_model.text.text_encoder import read_text_states, text_layers_of
    from stages.inputs import read_parse_table

    feats = {s: FeatureSplit(split_path(features_dir, s)) for s in split_names}
    tables = {s: read_parse_table(parse_dir / f"{s}.parquet") for s in split_names}
    first = split_names[0]
    labels = dep_labels_of(tables[first], parse_dir / f"{first}.parquet")
    vocab = dep_vocabulary(labels)
    use_audio = "audio" in modalities and feats[first].has_audio
    use_vision = "vision" in modalities and feats[first].has_vision
    if "audio" in modalities and not feats[first].has_audio:
        log("train: the features have no audio: the model reads text" + (" + vision" if use_vision else ""))
    if "vision" in modalities and not feats[first].has_vision:
        log("train: the features have no vision")
    texts: dict[str, Any] = {}
    text_dim = text_dim_hint
    if text_dir is not None:
        for s in split_names:
            states, meta = read_text_states(text_dir / f"{s}.arrow")
            if text_layers_of(meta) != text_layers:
                raise DataError(f"{text_dir / f'{s}.arrow'} holds word states of the last {text_layers_of(meta)} "
                                f"encoder layer(s) but text_features.layers is {text_layers}: run text-features "
                                "with the same params (a variant's own states: text-features --variant)")
            texts[s] = states
            text_dim = int(meta["ssu.text_dim"])
    elif encoder is None:
        raise DataError("no text states and no text encoder")
    llm = {}
    llm_dim = 0
    if llm_dir is not None:
        from ssu_model.llm.states import LLMStates

        meta_path = llm_dir / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"LLM states meta not found: {meta_path}")
        llm_dim = int(json.loads(meta_path.read_text())["dim"])
        reader = LLMStates(llm_dir)
        llm = {s: reader.get(s) for s in split_names}
    examples = {
        s: build_records(
            feats[s], parse_index(tables[s]), vocab,
            text_states=texts.get(s), text_dim=int(text_dim), use_audio=use_audio, use_vision=use_vision,
            llm_states=llm.get(s), encoder=encoder if text_dir is None else None, name=s,
        )
        for s in split_names
    }
    dims = {
        "text_dim": int(text_dim),
        "audio_dim": feats[first].shapes["audio"][1] if use_audio else None,
        "vision_dim": feats[first].shapes["vision"][1] if use_vision else None,
        "llm_dim": llm_dim,
    }
    return examples, labels, dims


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class LLMSpec:
    """One LLM graph constructor (one entry of `llm_graphs.models`)."""

    name: str  # the key in llm_graphs.models: data/llm_states/<name>, variant llm_<name>, a comparison row
    path: str  # local HF folder (safetensors), a .gguf file, or "smollm2" (the shipped GGUF; slow to load)
    precision: str  # fp32 | bf16 | int8 (dynamic int8 on CPU, bitsandbytes 8-bit on CUDA) | fp16 (CUDA)

    def __post_init__(self) -> None:
        from ssu_model.llm.loading import PRECISIONS

        if not NAME_RE.match(self.name):
            raise ParamError(f"name must be letters, digits, '_', '.', '-', got {self.name!r}")
        if not self.path:
            raise ParamError("path must not be empty")
        if self.precision not in PRECISIONS:
            raise ParamError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclasses.dataclass(frozen=True)
class LLMGraphsParams:
    """`llm_graphs`: the LLM graph-constructor baseline."""

    convert_source: str  # what --convert converts: "smollm2" (shipped GGUF), a .gguf file or a HF folder
    convert_out: str  # the fast-loading fp32 safetensors copy it writes (a cached DVC output)
    models: dict[str, Any]  # name -> {path, precision}: one llm-graphs/train/evaluate per entry (dvc foreach)
    features: str  # `features` output read (contract A)
    parse: str  # `parse` output read (contract B: words, heads, deps)
    text_features: str  # cached word states (SSU side of the latency measurement)
    out: str  # states go to <out>/<name>/{train,valid,test}.arrow + meta.json
    latency_out: str  # latency record goes to <latency_out>/latency_<name>.json
    batch_size: int  # utterances per LM forward = the latency batch (paper: 128)
    llm_max_nodes: int | None  # audio/vision steps per stream the LM reads (null = model.max_nodes)
    max_text_tokens: int  # LM tokens for the words at most (later words get zero states)
    prompt: str  # text before the words ("offline prompting"; "" = none)
    audio_marker: str  # text before the projected audio steps ("" = none)
    vision_marker: str  # text before the projected visual steps ("" = none)
    storage: str  # float16 | float32: dtype of the cached states
    fit_steps: int  # at most this many train-split steps (evenly strided) fit each projection's mean/std
    latency_min_timed: int  # at least this many timed LM batches (the first batch is re-run if the data is small)
    ssu_repeats: int  # timed SSU build_graphs calls per batch (after one warm-up)
    threads: int  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        from ssu_model.llm.states import STORAGE_DTYPES

        specs = []
        for key, body in self.models.items():
            if not isinstance(body, dict):
                raise ParamError(f"models.{key} must be a mapping with path and precision")
            specs.append(build(LLMSpec, {"name": str(key), **body}, f"models.{key}"))
        if not specs:
            raise ParamError("models must list at least one LLM")
        object.__setattr__(self, "models", tuple(specs))
        for name in ("batch_size", "max_text_tokens", "fit_steps", "latency_min_timed", "ssu_repeats"):
            if getattr(self, name) < 1:
                raise ParamError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.llm_max_nodes is not None and self.llm_max_nodes < 1:
            raise ParamError(f"llm_max_nodes must be >= 1 or null, got {self.llm_max_nodes}")
        if self.storage not in STORAGE_DTYPES:
            raise ParamError(f"storage must be one of {', '.join(STORAGE_DTYPES)}, got {self.storage!r}")
        if self.threads < 0:
            raise ParamError(f"threads must be >= 0, got {self.threads}")
        for name in ("convert_source", "convert_out", "features", "parse", "text_features", "out", "latency_out"):
            if not getattr(self, name):
                raise ParamError(f"{name} must not be empty")

    def spec(self, name: str) -> LLMSpec:
        for s in self.models:
            if s.name == name:
                return s
        raise ParamError(f"llm_graphs.models has no entry named {name!r} (have: {', '.join(s.name for s in self.models)})")
