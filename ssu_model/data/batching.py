"""Per-utterance records and the padded batch the SSU model consumes.

A :class:`UtteranceRecord` is built by ``ssu_model.data.records.build_records`` (for train,
evaluate and predict alike). ``collate`` turns a list of :class:`UtteranceRecord` (word states pooled from the text
encoder, the dependency parse, audio/vision arrays cut to their true lengths, label,
optional cached LLM states) into one :class:`SSUBatch` of padded tensors. Padding is
described by ``text_mask`` and the ``*_lengths`` tensors; the model never reads padded
values. Bad records raise :class:`ssu_model.errors.DataError` naming the record and field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssu_model.errors import DataError

LLM_KEYS = ("text", "audio", "vision")


@dataclass
class UtteranceRecord:
    """One utterance as the model sees it."""

    word_states: np.ndarray  # (n_words, text_dim) float32; n_words may be 0 (empty text)
    heads: np.ndarray  # (n_words,) int: 0-based head of each word, root -> itself (spaCy)
    deps: Sequence[int]  # (n_words,) relation id per word (0 = unknown), from ssu.dep_labels
    audio: np.ndarray | None  # (true_len_a, audio_dim) float32, already cut to its true length
    vision: np.ndarray | None  # (true_len_v, vision_dim) float32
    label: float  # regression label in [-3, 3]
    llm_states: dict[str, np.ndarray] | None = None  # "text"/"audio"/"vision" -> (n_nodes, llm_dim)
    id: str = ""  # the utterance's id (features' ``id`` column)
    encoded: Any = None  # ssu_model.text.text_encoder.EncodedText when the text encoder is fine-tuned


@dataclass
class SSUBatch:
    """Padded tensors for B utterances. ``None`` means the modality is absent from the batch."""

    text: Tensor  # (B, T_t, text_dim) float32 word states, zero padded (T_t >= 1)
    text_mask: Tensor  # (B, T_t) bool, True for real words
    heads: Tensor  # (B, T_t) long, head index per word, -1 on padding
    deps: Tensor  # (B, T_t) long, relation id per word, 0 on padding
    labels: Tensor  # (B,) float32
    audio: Tensor | None = None  # (B, L_a, audio_dim) float32, zero padded
    audio_lengths: Tensor | None = None  # (B,) long true lengths (0 = missing for this sample)
    vision: Tensor | None = None  # (B, L_v, vision_dim)
    vision_lengths: Tensor | None = None  # (B,) long
    llm_text: Tensor | None = None  # (B, T_t, llm_dim) LLM states aligned with the words
    llm_audio: Tensor | None = None  # (B, N_a, llm_dim) LLM states of the pooled audio steps
    llm_audio_lengths: Tensor | None = None  # (B,) long
    llm_vision: Tensor | None = None  # (B, N_v, llm_dim)
    llm_vision_lengths: Tensor | None = None  # (B,) long

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> SSUBatch:
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device) if isinstance(v, Tensor) else v
        return SSUBatch(**moved)


def _pad_stack(arrays: Sequence[np.ndarray | None], dim: int, min_len: int = 0) -> tuple[Tensor, Tensor]:
    lengths = [0 if a is None else int(a.shape[0]) for a in arrays]
    L = max([min_len, *lengths])
    out = np.zeros((len(arrays), L, dim), dtype=np.float32)
    for i, a in enumerate(arrays):
        if a is not None and a.shape[0]:
            out[i, : a.shape[0]] = a
    return torch.from_numpy(out), torch.tensor(lengths, dtype=torch.long)


def _check_matrix(a: np.ndarray, what: str, i: int, dim: int | None) -> int:
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise DataError(f"record {i}: {what} must be a 2-D array, got {getattr(a, 'shape', type(a))}")
    if dim is not None and a.shape[1] != dim:
        raise DataError(f"record {i}: {what} has width {a.shape[1]}, other records have {dim}")
    return int(a.shape[1])


def collate(records: Sequence[UtteranceRecord]) -> SSUBatch:
    """Pad a list of records into one :class:`SSUBatch` (CPU tensors)."""
    if len(records) == 0:
        raise DataError("collate: empty list of records")
    text_dim: int | None = None
    dims: dict[str, int | None] = {"audio": None, "vision": None}
    for i, r in enumerate(records):
        text_dim = _check_matrix(r.word_states, "word_states", i, text_dim)
        n = r.word_states.shape[0]
        heads = np.asarray(r.heads)
        deps = np.asarray(r.deps)
        if heads.shape != (n,) or deps.shape != (n,):
            raise DataError(
                f"record {i}: heads {heads.shape} / deps {deps.shape} do not match {n} words"
            )
        if n and (heads.min() < 0 or heads.max() >= n):
            raise DataError(f"record {i}: heads must lie in [0, {n}), got {heads.tolist()}")
        if n and deps.min() < 0:
            raise DataError(f"record {i}: relation ids must be >= 0, got {deps.tolist()}")
        for m in ("audio", "vision"):
            a = getattr(r, m)
            if a is not None:
                dims[m] = _check_matrix(a, m, i, dims[m])

    B = len(records)
    text, lengths_t = _pad_stack([r.word_states for r in records], text_dim, min_len=1)
    T = text.shape[1]
    text_mask = torch.arange(T)[None, :] < lengths_t[:, None]
    heads = torch.full((B, T), -1, dtype=torch.long)
    deps = torch.zeros((B, T), dtype=torch.long)
    for i, r in enumerate(records):
        n = r.word_states.shape[0]
        if n:
            heads[i, :n] = torch.as_tensor(np.asarray(r.heads, dtype=np.int64))
            deps[i, :n] = torch.as_tensor(np.asarray(r.deps, dtype=np.int64))
    labels = torch.tensor([float(r.label) for r in records], dtype=torch.float32)

    kw: dict[str, Tensor | None] = {}
    for m in ("audio", "vision"):
        if dims[m] is not None:
            kw[m], kw[f"{m}_lengths"] = _pad_stack([getattr(r, m) for r in records], dims[m], 1)

    with_llm = [r.llm_states is not None for r in records]
    if any(with_llm):
        if not all(with_llm):
            raise DataError("collate: some records have llm_states and some do not")
        llm_dim: int | None = None
        for key in LLM_KEYS:
            arrays = []
            for i, r in enumerate(records):
                a = r.llm_states.get(key)
                if a is None:
                    arrays.append(None)
                    continue
                llm_dim = _check_matrix(a, f"llm_states[{key!r}]", i, llm_dim)
                if key == "text" and a.shape[0] != r.word_states.shape[0]:
                    raise DataError(
                        f"record {i}: llm_states['text'] has {a.shape[0]} rows for "
                        f"{r.word_states.shape[0]} words"
                    )
                arrays.append(a)
            if all(a is None for a in arrays):
                continue
            if key == "text":
                kw["llm_text"], _ = _pad_stack(arrays, llm_dim, min_len=T)
            else:
                kw[f"llm_{key}"], kw[f"llm_{key}_lengths"] = _pad_stack(arrays, llm_dim, 1)
    return SSUBatch(text=text, text_mask=text_mask, heads=heads, deps=deps, labels=labels, **kw)
