"""Hugging Face tokenizers and the word to sub-word map (contract B).

spaCy's words are encoded with the text encoder's fast tokenizer as pre-split words
(``is_split_into_words=True``), so each word gets the sub-word span ``[sub_start,
sub_end)`` of the encoder's ``input_ids`` (which include the leading special token).
Truncation at ``max_length`` happens on word boundaries: the words that do not fit are
marked ``-1/-1`` and their sub-words are dropped whole.

``load_tokenizer`` is the project's one tokenizer loader: a local fast tokenizer folder
(memoised by ``tokenizer_info``'s fingerprint) or, with ``gguf_file``, the tokenizer
embedded in an LLM's GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssu_model.errors import DataError
from ssu_model.text.loaded import LOADED

# Top-level files of a tokenizer folder that are never part of its identity (weights).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ot", ".gguf")


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class TokenizerInfo:
    """Identity of a local Hugging Face tokenizer folder."""

    path: str
    name: str  # folder name (schema metadata ssu.tokenizer)
    fingerprint: str  # sha256 of its non-weight files + transformers/tokenizers versions


def tokenizer_info(path: str | Path) -> TokenizerInfo:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"tokenizer folder not found: {folder}")
    h = hashlib.sha256()
    for dist in ("transformers", "tokenizers"):
        try:
            h.update(f"{dist}=={importlib.metadata.version(dist)};".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}==none;".encode())
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.endswith(_WEIGHT_SUFFIXES) and not p.name.startswith(".")
    )
    if not any(p.name in ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json") for p in files):
        raise DataError(f"{folder} holds no tokenizer files (tokenizer.json, vocab.txt, ...)")
    for p in files:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return TokenizerInfo(str(folder), folder.resolve().name, h.hexdigest())


def load_tokenizer(path: str | Path, gguf_file: str | None = None) -> Any:
    """The Hugging Face tokenizer in folder ``path``.

    Without ``gguf_file``: a fast (Rust) tokenizer from the local folder (slow ones have no
    word_ids), memoised per fingerprint. With ``gguf_file``: the tokenizer embedded in
    ``path/gguf_file``; not memoised, since a GGUF folder has no tokenizer files to
    fingerprint.
    """
    if gguf_file is not None:
        return _load_gguf_tokenizer(path, gguf_file)
    key = ("tokenizer", tokenizer_info(path))
    if key not in LOADED:
        LOADED[key] = _load_fast_tokenizer(path)
    return LOADED[key]


def _load_fast_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if not getattr(tok, "is_fast", False):
        raise DataError(f"tokenizer at {path} is not a fast tokenizer (word_ids() is needed)")
    return tok


def _load_gguf_tokenizer(path: str | Path, gguf_file: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), gguf_file=gguf_file)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None


# --------------------------------------------------------------------------- sub-word map


def _encode_raw(tokenizer: Any, batch: list[list[str]]) -> list[tuple[list[int], list[int | None]]]:
    """(input_ids, word_ids) per pre-split utterance, special tokens added, no truncation."""
    if not batch:
        return []
    enc = tokenizer(batch, is_split_into_words=True, add_special_tokens=True, truncation=False, verbose=False)
    return [(list(enc["input_ids"][b]), list(enc.word_ids(b))) for b in range(len(batch))]


def _counts(wids: list[int | None], n_words: int) -> list[int]:
    count = [0] * n_words
    for w in wids:
        if w is not None:
            count[w] += 1
    return count


def encode_batch(
    tokenizer: Any, words_list: Sequence[Sequence[str]], max_length: int
) -> list[tuple[list[int], list[int], list[int], bool]]:
    """(input_ids, sub_start, sub_end, truncated) per utterance; see ``encode_words``."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("the sub-word map needs a fast tokenizer (word_ids())")
    inputs = [list(w) for w in words_list]
    encoded = _encode_raw(tokenizer, inputs)
    # A word the tokenizer erases (zero-width or control characters only) is encoded as
    # the unknown token, so that every word that is not cut off owns at least one sub-word.
    unk = tokenizer.unk_token
    redo = []
    for b, (_ids, wids) in enumerate(encoded):
        count = _counts(wids, len(inputs[b]))
        if unk is not None and 0 in count:
            inputs[b] = [unk if c == 0 else w for w, c in zip(inputs[b], count, strict=True)]
            redo.append(b)
    for b, item in zip(redo, _encode_raw(tokenizer, [inputs[b] for b in redo]), strict=True):
        encoded[b] = item
    # Truncation on word boundaries: keep the longest prefix of words whose sub-words fit
    # with the special tokens, and re-encode that prefix.
    keep = [len(w) for w in inputs]
    over = [b for b, (ids, _w) in enumerate(encoded) if len(ids) > max_length]
    while over:
        for b in over:
            ids, wids = encoded[b]
            positions = [p for p, w in enumerate(wids) if w is not None]
            lead = positions[0] if positions else len(ids)
            trail = len(ids) - 1 - positions[-1] if positions else 0
            if lead + trail > max_length:
                raise DataError(f"max_length={max_length} cannot even hold the special tokens")
            count = _counts(wids, keep[b])
            total, fit = lead + trail, 0
            for c in count:
                if total + c > max_length:
                    break
                total += c
                fit += 1
            keep[b] = min(fit, keep[b] - 1)
        for b, item in zip(over, _encode_raw(tokenizer, [inputs[b][: keep[b]] for b in over]), strict=True):
            encoded[b] = item
        over = [b for b in over if len(encoded[b][0]) > max_length]
    result = []
    for b, (ids, wids) in enumerate(encoded):
        n_words = len(inputs[b])
        start, end = _spans(wids, n_words)
        result.append((ids, start, end, keep[b] < n_words))
    return result


def _spans(wids: list[int | None], n_words: int) -> tuple[list[int], list[int]]:
    """Sub-word span per word; -1/-1 for words absent from ``wids`` (cut off)."""
    start = [-1] * n_words
    end = [-1] * n_words
    for p, w in enumerate(wids):
        if w is None:
            continue
        if start[w] == -1:
            start[w] = p
        elif end[w] != p:
            raise DataError("the tokenizer split one word into non-contiguous sub-words")
        end[w] = p + 1
    return start, end


def encode_words(
    tokenizer: Any, words: Sequence[str], max_length: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Encode one utterance's words exactly as the parse map says.

    Returns ``(input_ids, attention_mask, sub_start, sub_end)``: ``input_ids`` include the
    tokenizer's special tokens and have at most ``max_length`` entries; word ``w`` owns
    ``input_ids[sub_start[w]:sub_end[w]]`` (never empty), or ``-1, -1`` when it was cut
    off by truncation. Truncation is on word boundaries: a word that does not fit whole is
    cut with all its sub-words.
    """
    ((ids, start, end, _truncated),) = encode_batch(tokenizer, [list(words)], max_length)
    return ids, [1] * len(ids), start, end

