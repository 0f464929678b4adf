"""The columnar feature format every stage after `features` reads.

One Arrow IPC file per split (``train.arrow``, ``valid.arrow``, ``test.arrow``),
uncompressed and written in fixed-size record batches so that it can be memory-mapped
and read one batch at a time without loading a split whole.

Columns (``audio*``/``vision*`` are absent for a text-only source such as a label CSV):

=============== =========================================== ===========================
column          type                                        meaning
=============== =========================================== ===========================
id              string                                      "video$_$clip" (MMSA) or CSV id
text            string                                      raw transcript
label           float32                                     regression label in [-3, 3]
audio           fixed_size_list<float32>[La*Da]             padded audio sequence, row-major
audio_length    int32                                       true number of audio steps
vision          fixed_size_list<float32>[Lv*Dv]             padded visual sequence
vision_length   int32                                       true number of visual steps
=============== =========================================== ===========================

Schema metadata: ``ssu.format`` (version), ``ssu.audio_shape`` / ``ssu.vision_shape``
("L,D"), ``ssu.source`` (what was read). Aligned sources get lengths equal to L.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ssu_model.data.splits import SPLITS, STREAMS
from ssu_model.errors import DataError

FORMAT_VERSION = "1"
DEFAULT_BATCH_ROWS = 256


def split_path(directory: Path | str, split: str) -> Path:
    return Path(directory) / f"{split}.arrow"


def _shape_meta(shape: tuple[int, int]) -> bytes:
    return f"{shape[0]},{shape[1]}".encode()


def schema_for(
    audio_shape: tuple[int, int] | None, vision_shape: tuple[int, int] | None, source: str
) -> pa.Schema:
    fields = [pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("label", pa.float32())]
    meta = {b"ssu.format": FORMAT_VERSION.encode(), b"ssu.source": source.encode()}
    for name, shape in (("audio", audio_shape), ("vision", vision_shape)):
        if shape is None:
            continue
        fields.append(pa.field(name, pa.list_(pa.float32(), shape[0] * shape[1])))
        fields.append(pa.field(f"{name}_length", pa.int32()))
        meta[f"ssu.{name}_shape".encode()] = _shape_meta(shape)
    return pa.schema(fields, metadata=meta)


def write_split(
    path: Path | str,
    ids: Sequence[str],
    texts: Sequence[str],
    labels: np.ndarray,
    audio: np.ndarray | None = None,
    audio_lengths: np.ndarray | None = None,
    vision: np.ndarray | None = None,
    vision_lengths: np.ndarray | None = None,
    source: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    order: Sequence[int] | np.ndarray | None = None,
    sanitize: bool = False,
) -> dict[str, int]:
    """Write one split. ``audio``/``vision`` are (N, L, D) numeric arrays; lengths default to
    L (aligned). Values are written as float32.

    ``order``: optional permutation; row ``k`` of the file is source row ``order[k]`` (the
    `features` stage writes rows sorted by id). ``sanitize``: replace non-finite audio/vision
    values by 0, one record batch at a time (the caller's arrays are never modified); the
    returned dict counts the replaced values per modality (zeros when ``sanitize`` is off)."""
    n = len(ids)
    if order is not None:
        order = np.asarray(order, dtype=np.int64)
        if order.shape != (n,) or (n and not np.array_equal(np.sort(order), np.arange(n))):
            raise DataError("write_split: order must be a permutation of the rows")
    replaced = dict.fromkeys(STREAMS, 0)
    if len(texts) != n or len(labels) != n:
        raise DataError("write_split: ids, texts and labels differ in length")
    arrays: dict[str, np.ndarray | None] = {"audio": audio, "vision": vision}
    lengths: dict[str, np.ndarray | None] = {"audio": audio_lengths, "vision": vision_lengths}
    shapes: dict[str, tuple[int, int] | None] = {}
    for name in STREAMS:
        arr = arrays[name]
        if arr is None:
            shapes[name] = None
            continue
        if arr.ndim != 3 or arr.shape[0] != n:
            raise DataError(f"write_split: {name} must be (N, L, D) with N={n}, got {arr.shape}")
        shapes[name] = (int(arr.shape[1]), int(arr.shape[2]))
        if lengths[name] is None:
            lengths[name] = np.full(n, arr.shape[1], dtype=np.int32)
    schema = schema_for(shapes["audio"], shapes["vision"], source)
    labels = np.asarray(labels, dtype=np.float32)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for start in range(0, max(n, 1), batch_rows):
            stop = min(start + batch_rows, n)
            rows: slice | np.ndarray = slice(start, stop) if order is None else order[start:stop]
            sel = range(start, stop) if order is None else order[start:stop].tolist()
            cols = [
                pa.array([ids[i] for i in sel], pa.string()),
                pa.array([texts[i] for i in sel], pa.string()),
                pa.array(labels[rows], pa.float32()),
            ]
            for name in STREAMS:
                shape = shapes[name]
                if shape is None:
                    continue
                chunk = arrays[name][rows]
                flat = np.array(chunk, dtype=np.float32, order="C", copy=True).reshape(-1)
                if sanitize:
                    bad = ~np.isfinite(flat)
                    count = int(bad.sum())
                    if count:
                        flat[bad] = 0.0
                        replaced[name] += count
                cols.append(pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), shape[0] * shape[1]))
                cols.append(pa.array(np.asarray(lengths[name][rows], dtype=np.int32), pa.int32()))
            writer.write_batch(pa.record_batch(cols, schema=schema))
            if n == 0:
                break
    return replaced


@dataclass(frozen=True)
class Row:
    """One utterance as numpy views (audio/vision are (L, D) padded; use the lengths)."""

    id: str
    text: str
    label: float
    audio: np.ndarray | None
    audio_length: int | None
    vision: np.ndarray | None
    vision_length: int | None


class FeatureSplit:
    """Memory-mapped reader of one split file. Record batches are decoded lazily."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"feature file not found: {self.path}")
        try:
            self._source = pa.memory_map(str(self.path), "r")
            self._reader = pa.ipc.open_file(self._source)
        except pa.ArrowInvalid as exc:
            raise DataError(f"{self.path} is not an Arrow IPC feature file: {exc}") from None
        schema = self._reader.schema
        meta = schema.metadata or {}
        if meta.get(b"ssu.format") != FORMAT_VERSION.encode():
            raise DataError(f"{self.path}: unsupported feature format {meta.get(b'ssu.format')!r}")
        self.schema = schema
        self.source = meta.get(b"ssu.source", b"").decode()
        self.shapes: dict[str, tuple[int, int] | None] = {}
        for name in STREAMS:
            raw = meta.get(f"ssu.{name}_shape".encode())
            self.shapes[name] = tuple(int(x) for x in raw.decode().split(",")) if raw else None  # type: ignore[assignment]
        self.num_batches = self._reader.num_record_batches
        self._batch_sizes = [self._reader.get_batch(i).num_rows for i in range(self.num_batches)]
        self._offsets = np.concatenate([[0], np.cumsum(self._batch_sizes)]).astype(np.int64)
        self.num_rows = int(self._offsets[-1])
        # Small columns are read eagerly; the big sequence columns stay mapped.
        small = self._reader.read_all().select(["id", "text", "label"])
        self.ids: list[str] = small.column("id").to_pylist()
        self.texts: list[str] = small.column("text").to_pylist()
        self.labels: np.ndarray = small.column("label").to_numpy().astype(np.float32)

    def __len__(self) -> int:
        return self.num_rows

    @property
    def has_audio(self) -> bool:
        return self.shapes["audio"] is not None

    @property
    def has_vision(self) -> bool:
        return self.shapes["vision"] is not None

    def batch(self, i: int) -> pa.RecordBatch:
        return self._reader.get_batch(i)

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        for i in range(self.num_batches):
            yield self._reader.get_batch(i)

    def sequence_batch(self, name: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, L, D) zero-copy view and (rows,) lengths of record batch ``i``."""
        shape = self.shapes[name]
        if shape is None:
            raise DataError(f"{self.path} has no {name} column")
        rb = self._reader.get_batch(i)
        values = rb.column(name).values.to_numpy(zero_copy_only=True)
        lengths = rb.column(f"{name}_length").to_numpy()
        return values.reshape(rb.num_rows, shape[0], shape[1]), lengths

    def gather(self, name: str, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stack rows ``indices`` of a sequence column: ((k, L, D) float32, (k,) int32)."""
        shape = self.shapes[name]
        if shape is None:
            raise DataError(f"{self.path} has no {name} column")
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), shape[0], shape[1]), dtype=np.float32)
        lens = np.empty(len(idx), dtype=np.int32)
        batch_of = np.searchsorted(self._offsets, idx, side="right") - 1
        for b in np.unique(batch_of):
            values, lengths = self.sequence_batch(name, int(b))
            sel = np.nonzero(batch_of == b)[0]
            local = idx[sel] - self._offsets[b]
            out[sel] = values[local]
            lens[sel] = lengths[local]
        return out, lens

    def row(self, i: int) -> Row:
        seqs: dict[str, tuple[np.ndarray | None, int | None]] = {}
        for name in STREAMS:
            if self.shapes[name] is None:
                seqs[name] = (None, None)
            else:
                arr, ln = self.gather(name, [i])
                seqs[name] = (arr[0], int(ln[0]))
        return Row(self.ids[i], self.texts[i], float(self.labels[i]), *seqs["audio"], *seqs["vision"])


def open_splits(directory: Path | str) -> dict[str, FeatureSplit]:
    """All three splits of a `features` output directory."""
    return {s: FeatureSplit(split_path(directory, s)) for s in SPLITS}
