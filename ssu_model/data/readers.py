"""Readers for the three sources `features` accepts, with validation.

* MMSA feature pickles (``aligned_50.pkl`` / ``unaligned_50.pkl``, and the synthetic sample):
  loaded with :class:`RestrictedUnpickler`, which only admits what such a file holds (dicts,
  lists, tuples, str, bytes, numbers, numpy arrays, dtypes and scalars). Any other global is
  refused before it is imported, so a crafted pickle cannot run code.
* MMSA ``label.csv`` (columns read by name: ``video_id, clip_id, text, label, ..., mode`` in any
  order) and the ``id, text, label, mode`` layout. ``mode`` ``dev`` means ``valid``. A label CSV
  gives a text-only dataset.

Every problem raises :class:`ssu_model.errors.DataError` with one line naming it.
Non-finite audio/vision values are NOT touched here: the writer replaces them batch by batch
(``ssu_model.data.features.write_split(..., sanitize=True)``) and counts them.
"""

from __future__ import annotations

import codecs
import csv
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssu_model.errors import DataError

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
LABEL_RANGE = (-3.0, 3.0)
MMSA_ID_SEP = "$_$"
# Keys `features` needs from each MMSA split; the others (text, text_bert, annotations,
# classification_labels) are optional but, when present, must have N rows too.
REQUIRED_KEYS = ("id", "raw_text", "regression_labels", "audio", "vision")
OPTIONAL_ROW_KEYS = ("text", "text_bert", "annotations", "classification_labels",
                     "audio_lengths", "vision_lengths")


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles made by Python 3 store ``bytes``
    as ``_codecs.encode(text, 'latin1')``. Only that use is admitted."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError("_codecs.encode is only admitted for latin1 text")
    return obj.encode("latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import collections

    from numpy._core import multiarray, numeric

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "bytearray"): bytearray,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    # numpy >= 1.25 may name the concrete dtype classes (numpy.dtypes.Float32DType ...).
    import numpy.dtypes as npd

    for name in dir(npd):
        obj = getattr(npd, name)
        if isinstance(obj, type) and issubclass(obj, np.dtype) and obj is not npd.StringDType:
            allowed[("numpy.dtypes", name)] = obj
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals an MMSA feature pickle needs."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle global '{module}.{name}': an MMSA feature pickle holds only "
                "dicts, lists, str, numbers and numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("refusing to unpickle a persistent id: not an MMSA feature pickle")


def load_pickle(path: Path | str) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler`; problems become one-line DataErrors."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh).load()
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to load the pickle") from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, TypeError, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a valid pickle ({detail})") from None


# --------------------------------------------------------------------------------------------
# The in-memory dataset
# --------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    """One validated split. ``audio``/``vision`` keep the source's dtype (float32 usually) and
    may still hold non-finite values; lengths are int32 (L for aligned data)."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    audio: np.ndarray | None = None
    audio_lengths: np.ndarray | None = None
    vision: np.ndarray | None = None
    vision_lengths: np.ndarray | None = None
    lengths_clipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Dataset:
    kind: str  # "mmsa-pickle" | "label-csv"
    path: str
    splits: dict[str, SplitData]
    aligned: bool | None  # None for text-only sources
    layout: str = ""  # the CSV layout or "aligned"/"unaligned"


# --------------------------------------------------------------------------------------------
# Source detection
# --------------------------------------------------------------------------------------------


def detect_kind(path: Path | str) -> str:
    """'pickle' or 'csv', by extension, else by content. Raises DataError otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"input file not found: {path}")
    if not path.is_file():
        raise DataError(f"input is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return "pickle"
    if suffix == ".csv":
        return "csv"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    try:
        first = head.decode("utf-8").splitlines()[0] if head else ""
    except UnicodeDecodeError:
        first = ""
    if "," in first and "text" in [c.strip().lower() for c in first.split(",")]:
        return "csv"
    raise DataError(f"{path} is neither an MMSA pickle nor a label CSV")


def read_source(path: Path | str) -> Dataset:
    """Read and validate any supported source."""
    kind = detect_kind(path)
    return read_mmsa_pickle(path) if kind == "pickle" else read_label_csv(path)


# --------------------------------------------------------------------------------------------
# MMSA pickles
# --------------------------------------------------------------------------------------------


def _as_strings(values: Any, key: str, split: str, ids: list[str] | None = None) -> list[str]:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise DataError(f"split '{split}': '{key}' must be 1-D, got shape {values.shape}")
        values = values.tolist()
    elif not isinstance(values, (list, tuple)):
        raise DataError(f"split '{split}': '{key}' must be an array or list, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        where = f"id {ids[i]!r}" if ids is not None and i < len(ids) else f"row {i}"
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"split '{split}': '{key}' of {where} is not UTF-8 text") from None
        if not isinstance(v, str):
            raise DataError(f"split '{split}': '{key}' of {where} is not a string ({type(v).__name__})")
        if not v.strip():
            raise DataError(f"split '{split}': empty {key} for {where}")
        out.append(v)
    return out


def _rows(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim >= 1 else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def _labels(values: Any, split: str, ids: list[str], what: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
        if arr.dtype.kind not in "biufO":
            raise TypeError
        arr = arr.astype(np.float64)  # object arrays of numbers convert; anything else raises
    except (TypeError, ValueError):
        raise DataError(f"split '{split}': {what} are not numeric") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"split '{split}': {what} must be 1-D, got shape {arr.shape}")
    _check_label_values(arr, split, ids, what)
    return arr.astype(np.float32)


def _check_label_values(arr: np.ndarray, split: str, ids: list[str], what: str) -> None:
    bad = ~np.isfinite(arr) | (arr < LABEL_RANGE[0]) | (arr > LABEL_RANGE[1])
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise DataError(
            f"split '{split}': {what} out of [-3, 3]: {float(arr[i])!r} for id {ids[i]!r}"
            + (f" (and {int(bad.sum()) - 1} more)" if bad.sum() > 1 else "")
        )


def _sequence(value: Any, key: str, split: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except Exception:
            raise DataError(f"split '{split}': '{key}' is not an array") from None
    if value.ndim != 3:
        raise DataError(f"split '{split}': '{key}' must have rank 3 (N, L, D), got shape {value.shape}")
    if value.dtype.kind not in "biuf":
        raise DataError(f"split '{split}': '{key}' is not numeric (dtype {value.dtype})")
    return value


def _lengths(value: Any, key: str, split: str, n: int, max_len: int) -> tuple[np.ndarray, int]:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"split '{split}': '{key}' must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and not np.all(arr == np.round(arr))):
        raise DataError(f"split '{split}': '{key}' must hold whole numbers")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise DataError(f"split '{split}': '{key}' has a negative length")
    clipped = int((arr > max_len).sum())
    return np.minimum(arr, max_len).astype(np.int32), clipped


def _split_views(obj: Any, path: Path) -> dict[str, dict]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: top level must be a dict of splits, got {type(obj).__name__}")
    found: dict[str, dict] = {}
    for key, value in obj.items():
        name = SPLIT_ALIASES.get(key) if isinstance(key, str) else None
        if name is None:
            continue
        if name in found:
            raise DataError(f"{path}: both 'valid' and 'dev' splits present")
        if not isinstance(value, dict):
            raise DataError(f"{path}: split '{key}' must be a dict of arrays, got {type(value).__name__}")
        found[name] = value
    for split in SPLITS:
        if split not in found:
            have = ", ".join(sorted(k for k in obj if isinstance(k, str))) or "none"
            raise DataError(f"{path}: missing split '{split}' (found: {have})")
    return found


def validate_mmsa(obj: Any, path: Path | str) -> Dataset:
    """Check an unpickled MMSA dict and turn it into a :class:`Dataset`."""
    path = Path(path)
    views = _split_views(obj, path)
    splits: dict[str, SplitData] = {}
    dims: dict[str, tuple[str, int]] = {}
    aligned_flags = set()
    for split in SPLITS:
        raw = views[split]
        for key in REQUIRED_KEYS:
            if key not in raw:
                raise DataError(f"{path}: split '{split}' is missing key '{key}'")
        n = _rows(raw["id"])
        if n is None:
            raise DataError(f"split '{split}': 'id' must be an array or list")
        for key in REQUIRED_KEYS + OPTIONAL_ROW_KEYS:
            if key in raw:
                rows = _rows(raw[key])
                if rows != n:
                    raise DataError(
                        f"split '{split}': '{key}' has {rows} rows but 'id' has {n} (mismatched N across keys)"
                    )
        ids = _as_strings(raw["id"], "id", split)
        texts = _as_strings(raw["raw_text"], "raw_text", split, ids)
        labels = _labels(raw["regression_labels"], split, ids, "regression_labels")
        data = SplitData(ids=ids, texts=texts, labels=labels)
        for name in ("audio", "vision"):
            arr = _sequence(raw[name], name, split)
            d = int(arr.shape[2])
            if name in dims and dims[name][1] != d:
                raise DataError(
                    f"{name} feature dims differ between splits: {dims[name][0]} has {dims[name][1]}, "
                    f"{split} has {d}"
                )
            dims.setdefault(name, (split, d))
            lkey = f"{name}_lengths"
            if lkey in raw:
                lens, clipped = _lengths(raw[lkey], lkey, split, n, int(arr.shape[1]))
                aligned_flags.add(False)
                if clipped:
                    data.lengths_clipped[name] = clipped
            else:
                lens = np.full(n, arr.shape[1], dtype=np.int32)
                aligned_flags.add(True)
            setattr(data, name, arr)
            setattr(data, lkey, lens)
        splits[split] = data
    _check_unique_ids(splits, path)
    aligned = aligned_flags == {True}
    return Dataset("mmsa-pickle", str(path), splits, aligned, "aligned" if aligned else "unaligned")


def _check_unique_ids(splits: dict[str, SplitData], path: Path) -> None:
    seen: dict[str, str] = {}
    for split, data in splits.items():
        for i in data.ids:
            if i in seen:
                where = f"in split '{split}'" if seen[i] == split else f"in splits '{seen[i]}' and '{split}'"
                raise DataError(f"{path}: duplicate id {i!r} {where}")
            seen[i] = split


def read_mmsa_pickle(path: Path | str) -> Dataset:
    return validate_mmsa(load_pickle(path), path)


# --------------------------------------------------------------------------------------------
# Label CSVs
# --------------------------------------------------------------------------------------------

CSV_LAYOUTS = {
    # name: columns that identify it (besides text, label, mode)
    "mmsa": ("video_id", "clip_id"),
    "id": ("id",),
}


def read_label_csv(path: Path | str) -> Dataset:
    """Read an MMSA ``label.csv`` or an ``id,text,label,mode`` file (columns by name)."""
    path = Path(path)
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 label CSV") from None
    try:
        reader = csv.reader(io.StringIO(raw, newline=""))
        header = next(reader, None)
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV ({exc})") from None
    if not header:
        raise DataError(f"{path} is empty: no CSV header")
    cols = [c.strip() for c in header]
    index = {c: i for i, c in enumerate(cols)}
    if "video_id" in index or "clip_id" in index:
        layout, id_cols = "mmsa", ("video_id", "clip_id")
    else:
        layout, id_cols = "id", ("id",)
    missing = [c for c in (*id_cols, "text", "label", "mode") if c not in index]
    if missing:
        raise DataError(f"{path}: label CSV is missing column(s): {', '.join(missing)}")

    per: dict[str, tuple[list[str], list[str], list[float]]] = {s: ([], [], []) for s in SPLITS}
    for lineno, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(cols):
            raise DataError(f"{path}: line {lineno} has {len(row)} fields, header has {len(cols)}")
        get = lambda c: row[index[c]]  # noqa: E731
        if layout == "mmsa":
            rid = f"{get('video_id').strip()}{MMSA_ID_SEP}{get('clip_id').strip()}"
        else:
            rid = get("id").strip()
        if not rid or rid == MMSA_ID_SEP:
            raise DataError(f"{path}: line {lineno} has an empty id")
        mode = get("mode").strip()
        split = SPLIT_ALIASES.get(mode)
        if split is None:
            raise DataError(
                f"{path}: unknown mode value {mode!r} on line {lineno} (expected train, valid, dev or test)"
            )
        text = get("text")
        if not text.strip():
            raise DataError(f"{path}: empty text on line {lineno} (id {rid!r})")
        try:
            label = float(get("label"))
        except ValueError:
            raise DataError(f"{path}: non-numeric label {get('label')!r} on line {lineno} (id {rid!r})") from None
        if not np.isfinite(label) or not LABEL_RANGE[0] <= label <= LABEL_RANGE[1]:
            raise DataError(f"{path}: label {get('label')!r} out of [-3, 3] on line {lineno} (id {rid!r})")
        ids, texts, labels = per[split]
        ids.append(rid)
        texts.append(text)
        labels.append(label)
    splits = {}
    for split in SPLITS:
        ids, texts, labels = per[split]
        if not ids:
            raise DataError(f"{path}: missing split '{split}' (no rows with that mode)")
        splits[split] = SplitData(ids=ids, texts=texts, labels=np.asarray(labels, dtype=np.float32))
    _check_unique_ids(splits, path)
    return Dataset("label-csv", str(path), splits, None, layout)
