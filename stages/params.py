"""params.yaml -> frozen, validated dataclasses.

Each stage module declares the sections it reads (``SECTIONS``) and owns the
dataclass of its own section; a section several stages read has its dataclass here
(or in ``stages/modelling.py`` when checking it needs the model library).
``load_section`` rejects unknown and missing keys with the key named, and each
dataclass validates its values in ``__post_init__`` (raising ``ParamError``), so a
bad param fails with one line before any work.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from stages.errors import ParamError

T = TypeVar("T")
DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml as a plain dict (no validation beyond 'it is a mapping')."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path} must be a mapping of sections")
    return data


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check a YAML scalar/list against a dataclass field type; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ParamError as exc:
                errors.append(str(exc))
        raise ParamError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ParamError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{name} must be a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(f"{name}[{i}]", v, inner) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{name} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ParamError(f"{name} must be a string, got {value!r}")
        return value
    return value


def build(cls: type[T], raw: Any, where: str) -> T:
    """Instantiate dataclass ``cls`` from mapping ``raw``; ``where`` prefixes key names in errors."""
    if not isinstance(raw, dict):
        raise ParamError(f"{where} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamError(f"unknown param {where}.{unknown[0]}")
    missing = [n for n in fields if n not in raw]
    if missing:
        raise ParamError(f"missing param {where}.{missing[0]}")
    values = {n: _coerce(f"{where}.{n}", raw[n], hints[n]) for n in fields}
    try:
        return cls(**values)
    except ParamError as exc:
        raise ParamError(f"{where}.{exc}" if not str(exc).startswith(where) else str(exc)) from None


def load_section(params: dict[str, Any], name: str, cls: type[T]) -> T:
    """Validate one section of params.yaml into ``cls``."""
    if name not in params:
        raise ParamError(f"missing params section: {name}")
    return build(cls, params[name], name)


# --- sections shared by several stages -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BaseParams:
    """`base`: settings every stage may read."""

    seeds: tuple[int, ...]  # one model per seed; the first seed also seeds data generation
    device: str  # auto | cpu | cuda ; auto = CUDA when available

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ParamError("seeds must list at least one seed")
        if any(s < 0 for s in self.seeds):
            raise ParamError("seeds must be non-negative")
        if len(set(self.seeds)) != len(self.seeds):
            raise ParamError("seeds must be distinct")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ParamError(f"device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def seed(self) -> int:
        return self.seeds[0]


@dataclasses.dataclass(frozen=True)
class DataParams:
    """`data`: which dataset the pipeline reads."""

    path: str  # an MMSA aligned_50.pkl/unaligned_50.pkl, a label.csv, or the sample pickle

    def __post_init__(self) -> None:
        if not self.path:
            raise ParamError("path must not be empty")


MINILM = "minilm"  # text_features.model_path sentinel: the packaged all-MiniLM-L6-v2


@dataclasses.dataclass(frozen=True)
class TextFeaturesParams:
    """`text_features`: the frozen text encoder that produces word states."""

    model_path: str  # "minilm" = all-MiniLM-L6-v2, "mpnet" = all-mpnet-base-v2 (.[mpnet] extra), or a local HF folder
    batch_size: int  # utterances per encoder forward pass
    threads: int  # torch CPU threads; 0 = torch's default
    layers: int  # word states from the mean of the encoder's last `layers` hidden layers; 1 = the last alone

    def __post_init__(self) -> None:
        if not self.model_path:
            raise ParamError("model_path must not be empty (use minilm for the packaged encoder)")
        if self.batch_size < 1:
            raise ParamError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.threads < 0:
            raise ParamError(f"threads must be >= 0, got {self.threads}")
        if self.layers < 1:
            raise ParamError(f"layers must be >= 1, got {self.layers}")


def variant_text_features(params: dict[str, Any], variant: str | None) -> TextFeaturesParams:
    """The `text_features` section with ``variants.<variant>.text_features`` on top (``variant``
    None: the section alone). A variant that changes the word states needs states of its own: the
    pipeline runs `text-features --variant` for it (pipelines/mosei-mpnet's `last4`)."""
    base = load_section(params, "text_features", TextFeaturesParams)
    if variant is None:
        return base
    variants = params.get("variants") or {}
    if variant not in variants:
        raise ParamError(f"unknown variant {variant!r} (params variants: {', '.join(variants)})")
    overrides = (variants[variant] or {}).get("text_features") or {}
    if not isinstance(overrides, dict):
        raise ParamError(f"variants.{variant}.text_features must be a mapping")
    return build(TextFeaturesParams, {**dataclasses.asdict(base), **overrides},
                 f"variants.{variant}.text_features" if overrides else "text_features")


def overlay_params(sample: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A real-data pipeline's params: the sample's sections with a pipeline's overrides on top.

    ``overrides`` (pipelines/<name>/params.overrides.yaml) names what differs: ``drop`` lists the
    sample sections the pipeline has no stage for, ``variants`` replaces the sample's whole, and
    every other section's keys replace the sample's (a value is replaced whole, never merged).
    """
    drop = set(overrides.get("drop") or ())
    unknown = sorted(drop - set(sample))
    if unknown:
        raise ParamError(f"params overrides drop unknown section {unknown[0]}")
    merged = {name: dict(body) if isinstance(body, dict) else body
              for name, body in sample.items() if name not in drop}
    for name, body in overrides.items():
        if name == "drop":
            continue
        if name == "variants" or not isinstance(body, dict):
            merged[name] = body
        elif name not in merged:
            raise ParamError(f"params overrides set section {name}, which the sample has not (or drops)")
        else:
            merged[name].update(body)
    return merged
