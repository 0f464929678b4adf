"""One split's frozen text states written to its cache file in bounded memory.

``TextEncoder.encode_flat`` + ``write_flat_text_states`` hold a whole split's states in one buffer
(MOSEI train: 0.5 GB). Here the encoder sees exactly the same batches (the same length-sorted
order cut into the same ``batch_size`` groups, so the same floats), but a slice of them at a time;
each utterance's rows go to their place in id order in a scratch file, and the Arrow file is
assembled from that scratch file in the 4,096-row record batches the whole-split writer cuts. The result is byte-identical to the
whole-split writer (tests/test_streamed_states.py pins it); memory holds one slice and one chunk.

After each slice the freed heap pages go back to the OS (``malloc_trim``): the encoder's
activations grow batch by batch (length order), and glibc otherwise keeps the fragmented heap
(MOSEI: peak 1.6 GB instead of 1.0 GB, for ~9% more time; benchmarks/results/scaling.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssu_model.errors import DataError
from ssu_model.text.text_encoder import EncodedText, TextEncoder, write_flat_text_states

CHUNK_ROWS = 4096  # rows per Arrow record batch: write_flat_text_states' max_chunksize
SLICE_BATCHES = 1  # encoder batches per encode_flat call (one slice's states in memory, then a trim)


def length_order(encoded: Sequence[EncodedText]) -> list[int]:
    """The order ``encode_flat`` encodes in (stable sort by sub-word count)."""
    return sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))


def write_streamed_states(encoder: TextEncoder, encoded: Sequence[EncodedText], ids: Sequence[str],
                          path: Path | str, encoder_name: str, batch_size: int = 64,
                          device: str = "cpu") -> int:
    """Encode ``encoded`` (in ``ids`` order) and write the split's cache file at ``path``;
    returns the number of words written."""
    if len(ids) != len(encoded):
        raise DataError("write_streamed_states: ids and encoded texts differ in length")
    path = Path(path)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([e.n_words for e in encoded], out=offsets[1:])
    if int(offsets[-1]) * encoder.dim >= 2**31:
        raise DataError(f"{path.name}: {offsets[-1]} words x {encoder.dim} values exceed one int32-offset list")
    scratch = path.with_name(f".{path.name}.states")
    try:
        _encode_into(scratch, encoder, encoded, offsets, batch_size, device)
        _assemble(path, scratch, ids, offsets, encoder.dim, encoder_name, encoder.max_length, encoder.layers)
    finally:
        scratch.unlink(missing_ok=True)
    return int(offsets[-1])


def _encode_into(scratch: Path, encoder: TextEncoder, encoded: Sequence[EncodedText],
                 offsets: np.ndarray, batch_size: int, device: str) -> None:
    """Every utterance's (n_words, dim) float32 rows at byte ``offsets[i] * dim * 4`` of ``scratch``.

    A slice of whole batches of the length order is already sorted, so ``encode_flat`` (a stable
    sort) cuts it into the same batches as the whole split."""
    order = length_order(encoded)
    row_bytes = encoder.dim * 4
    step = batch_size * SLICE_BATCHES
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            flat, offs = encoder.encode_flat([encoded[i] for i in idx], batch_size=batch_size, device=device)
            for j, i in enumerate(idx):
                if offs[j + 1] > offs[j]:
                    os.pwrite(fd, flat[offs[j]:offs[j + 1]].tobytes(), int(offsets[i]) * row_bytes)
            del flat
            _release_free_memory()
    finally:
        os.close(fd)


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _assemble(path: Path, scratch: Path, ids: Sequence[str], offsets: np.ndarray, dim: int,
              encoder_name: str, max_length: int, layers: int) -> None:
    """The Arrow file, one ``CHUNK_ROWS`` record batch at a time: the batches ``write_table``
    cuts from the whole split (the id and count columns sliced, the states read from ``scratch``),
    under the schema ``write_flat_text_states`` defines."""
    import pyarrow as pa

    schema = _states_schema(path, dim, encoder_name, max_length, layers)
    id_col = pa.array(list(ids), pa.string())
    count_col = pa.array(np.diff(offsets).astype(np.int32))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for r0 in range(0, len(ids), CHUNK_ROWS):
            n = min(CHUNK_ROWS, len(ids) - r0)
            words = int(offsets[r0 + n] - offsets[r0])
            values = np.fromfile(scratch, dtype=np.float32, count=words * dim, offset=int(offsets[r0]) * dim * 4)
            if values.size != words * dim:
                raise DataError(f"{path.name}: scratch states end early at row {r0}")
            value_offsets = ((offsets[r0:r0 + n + 1] - offsets[r0]) * dim).astype(np.int32)
            states = pa.ListArray.from_arrays(pa.array(value_offsets), pa.array(values))
            writer.write_batch(pa.record_batch([id_col.slice(r0, n), count_col.slice(r0, n), states], schema=schema))


def _states_schema(path: Path, dim: int, encoder_name: str, max_length: int, layers: int):
    """The cache file's schema, read back from an empty file ``write_flat_text_states`` writes."""
    import pyarrow as pa

    empty = path.with_name(f".{path.name}.schema")
    try:
        write_flat_text_states(empty, [], np.zeros((0, dim), np.float32), np.zeros(1, np.int64),
                               encoder_name, max_length, layers)
        with pa.memory_map(str(empty), "r") as source:
            return pa.ipc.open_file(source).schema
    finally:
        empty.unlink(missing_ok=True)
