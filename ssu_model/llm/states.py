"""The LLM states cache (contract F): one Arrow IPC file per split + ``meta.json``.

``write_states`` writes one split of ``data/llm_states/<name>/``: an ``id`` column and one
column per modality present (``MODALITIES``: the text, audio and vision node states of each
utterance, ``(n, dim)`` each, stored as one of ``STORAGE_DTYPES``); ``LLMStates`` reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssu_model.data.splits import MODALITIES
from ssu_model.errors import DataError

STORAGE_DTYPES = ("float16", "float32")
STATES_FORMAT = "1"
FLOAT16_MAX = 65504.0


def _states_schema(dim: int, storage: str, modalities: Sequence[str]):
    import pyarrow as pa

    vt = pa.float16() if storage == "float16" else pa.float32()
    fields = [pa.field("id", pa.string())]
    for m in modalities:
        fields.append(pa.field(m, pa.list_(pa.list_(vt, dim))))
    meta = {b"ssu.format": STATES_FORMAT.encode(), b"ssu.llm_dim": str(dim).encode(),
            b"ssu.storage": storage.encode()}
    return pa.schema(fields, metadata=meta)


def write_states(path: Path | str, ids: Sequence[str], states: Sequence[Mapping[str, np.ndarray]],
                 dim: int, modalities: Sequence[str], storage: str = "float16", batch_rows: int = 256) -> None:
    """Write one split: a column per modality holding each utterance's (n, dim) node states.

    A missing stream of one utterance (modality absent) is stored as a null entry. float16
    storage halves the cache; a value beyond float16's range is an error (use float32).
    """
    import pyarrow as pa

    if storage not in STORAGE_DTYPES:
        raise DataError(f"storage must be one of {STORAGE_DTYPES}, got {storage!r}")
    if len(ids) != len(states):
        raise DataError("write_states: ids and states differ in length")
    np_dt = np.float16 if storage == "float16" else np.float32
    schema = _states_schema(dim, storage, modalities)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for start in range(0, max(len(ids), 1), batch_rows):
            chunk = range(start, min(start + batch_rows, len(ids)))
            cols = [pa.array([ids[i] for i in chunk], pa.string())]
            for m in modalities:
                offsets = [0]
                values: list[np.ndarray] = []
                valid: list[bool] = []
                for i in chunk:
                    a = states[i].get(m)
                    if a is None:
                        valid.append(False)
                        offsets.append(offsets[-1])
                        continue
                    a = np.asarray(a, dtype=np.float32)
                    if a.ndim != 2 or a.shape[1] != dim:
                        raise DataError(f"{ids[i]}: {m} states must be (n, {dim}), got {a.shape}")
                    if not np.isfinite(a).all():
                        raise DataError(f"{ids[i]}: {m} states contain non-finite values")
                    if storage == "float16" and a.size and float(np.abs(a).max()) > FLOAT16_MAX:
                        raise DataError(f"{ids[i]}: {m} states exceed the float16 range; use storage float32")
                    valid.append(True)
                    values.append(a.astype(np_dt).reshape(-1))
                    offsets.append(offsets[-1] + a.shape[0])
                flat = np.concatenate(values) if values else np.zeros(0, np_dt)
                inner = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
                mask = pa.array([not v for v in valid], pa.bool_())
                cols.append(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=mask))
            writer.write_batch(pa.record_batch(cols, schema=schema))
            if not ids:
                break


class LLMStates:
    """Reader of ``data/llm_states/<name>/`` (contract F)."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"LLM states meta not found: {meta_path} (run llm-graphs)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_path} is not valid JSON: {exc}") from None
        if str(self.meta.get("format")) != STATES_FORMAT:
            raise DataError(f"{meta_path}: unsupported LLM states format {self.meta.get('format')!r}")
        self.dim = int(self.meta["dim"])

    def path(self, split: str) -> Path:
        return self.directory / f"{split}.arrow"

    def get(self, split: str) -> dict[str, dict[str, np.ndarray]]:
        """id -> {"text": (n_words, d), "audio": (n_a, d), "vision": (n_v, d)} float32 arrays
        (a modality key only where the utterance has that stream)."""
        import pyarrow as pa

        path = self.path(split)
        if not path.is_file():
            raise DataError(f"LLM states file not found: {path} (run llm-graphs)")
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        except pa.ArrowInvalid as exc:
            raise DataError(f"{path} is not an Arrow LLM-states file: {exc}") from None
        meta = reader.schema.metadata or {}
        if meta.get(b"ssu.format") != STATES_FORMAT.encode() or int(meta.get(b"ssu.llm_dim", b"0")) != self.dim:
            raise DataError(f"{path}: format or width does not match {self.directory / 'meta.json'}")
        mods = [m for m in MODALITIES if m in reader.schema.names]
        out: dict[str, dict[str, np.ndarray]] = {}
        for b in range(reader.num_record_batches):
            rb = reader.get_batch(b)
            ids = rb.column("id").to_pylist()
            for m in mods:
                col = rb.column(m)
                offs = col.offsets.to_numpy()
                values = col.values.values.to_numpy(zero_copy_only=False)
                valid = col.is_valid().to_numpy(zero_copy_only=False)
                base = int(offs[0])
                for i, uid in enumerate(ids):
                    rec = out.setdefault(uid, {})
                    if not valid[i]:
                        continue
                    a, z = int(offs[i]) - base, int(offs[i + 1]) - base
                    rec[m] = values[a * self.dim: z * self.dim].reshape(z - a, self.dim).astype(np.float32)
        return out
