"""Checkpoints of trained SSU models and the model folder `train` writes them into.

A checkpoint is a dict of tensors and plain values (str/int/float/bool/None/lists/dicts),
loadable with ``torch.load(path, weights_only=True)``: :func:`make_checkpoint`,
:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`model_from_checkpoint`. A model folder
(``models/<variant>/``) holds one per seed, ``seed_<s>.pt`` (:func:`seed_checkpoints`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssu_model.errors import DataError
from ssu_model.ssu.config import SSUConfig
from ssu_model.ssu.model import SSU
from ssu_model.train.loop import FitResult

CHECKPOINT_FORMAT = 1


def _plain(value: Any) -> Any:
    """Config values -> what ``torch.load(weights_only=True)`` accepts (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise DataError(f"checkpoint: value of type {type(value).__name__} is not plain data")


def make_checkpoint(model_config, fit_result: FitResult, seed: int, meta: Mapping[str, Any]) -> dict:
    """Checkpoint dict: tensors + plain config. ``meta`` holds plain extras (train config,
    relation labels, encoder path, modalities...)."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "seed": int(seed),
        "best_epoch": int(fit_result.best_epoch),
        "best_score": float(fit_result.best_score),
        "epochs_run": int(fit_result.epochs_run),
        "model_config": _plain(dataclasses.asdict(model_config)),
        "meta": _plain(dict(meta)),
        "state": dict(fit_result.state),
    }
    if fit_result.encoder_state is not None:
        ckpt["encoder_state"] = dict(fit_result.encoder_state)
    return ckpt


def save_checkpoint(ckpt: dict, path: Path | str) -> None:
    """Write a checkpoint dict (see :func:`make_checkpoint`)."""
    torch.save(ckpt, str(path))


def seed_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(seed, path) of every ``seed_<s>.pt`` in ``folder``, by seed."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"model folder not found: {folder} (train writes models/<variant>/)")
    if not folder.is_dir():
        raise DataError(f"not a model folder: {folder}")
    found = []
    for p in folder.iterdir():
        m = re.fullmatch(r"seed_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        raise DataError(f"{folder} holds no seed_<n>.pt checkpoints (not a model folder written by train?)")
    return sorted(found)


def load_checkpoint(path: Path | str) -> dict:
    """Read a checkpoint with ``weights_only=True``; a missing or foreign file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{path} is not a loadable checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: unsupported checkpoint format")
    return ckpt


def config_from_dict(raw: Mapping[str, Any]):
    """SSUConfig from a checkpoint's plain dict (lists back to tuples)."""
    names = {f.name for f in dataclasses.fields(SSUConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise DataError(f"checkpoint model config has unknown field {unknown[0]} (older/newer code?)")
    return SSUConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def model_from_checkpoint(ckpt: Mapping[str, Any]):
    """The checkpoint's SSU model, its state loaded, in eval mode."""
    model = SSU(config_from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state"], strict=True)
    model.eval()
    return model
