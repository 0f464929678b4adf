"""MMSA feature pickles (``aligned_50.pkl`` / ``unaligned_50.pkl``, and the synthetic sample).

Loaded with :class:`RestrictedUnpickler`, which only admits what such a file holds (dicts,
lists, tuples, str, bytes, numbers, numpy arrays, dtypes and scalars). Any other global is
refused before it is imported, so a crafted pickle cannot run code. The unpickled dict is then
validated split by split into a :class:`~ssu_model.data.corpus.Corpus` of ``Utterances``.

Every problem raises :class:`ssu_model.errors.DataError` with one line naming it.
Non-finite audio/vision values are NOT touched here: the writer replaces them batch by batch
(``ssu_model.data.features.write_split(..., sanitize=True)``) and counts them.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ssu_model.data.corpus import LABEL_RANGE, Corpus, check_unique_ids
from ssu_model.data.splits import SPLIT_ALIASES, SPLITS
from ssu_model.data.utterances import Utterances
from ssu_model.errors import DataError

# Keys `features` needs from each MMSA split; the others (text, text_bert, annotations,
# classification_labels) are optional but, when present, must have N rows too.
REQUIRED_KEYS = ("id", "raw_text", "regression_labels", "audio", "vision")
OPTIONAL_ROW_KEYS = ("text", "text_bert", "annotations", "classification_labels",
                     "audio_lengths", "vision_lengths")


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
# Validation
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
    bad = ~np.isfinite(arr) | (arr < LABEL_RANGE[0]) | (arr > LABEL_RANGE[1])  # label_out_of_range, vectorised
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


def validate_mmsa(obj: Any, path: Path | str) -> Corpus:
    """Check an unpickled MMSA dict and turn it into a :class:`Corpus`."""
    path = Path(path)
    views = _split_views(obj, path)
    splits: dict[str, Utterances] = {}
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
        data = Utterances(ids=ids, texts=texts, labels=labels, has_labels=True, source=str(path))
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
            data.streams[name] = (arr, lens)
        splits[split] = data
    check_unique_ids(splits, path)
    aligned = aligned_flags == {True}
    return Corpus("mmsa-pickle", str(path), splits, aligned, "aligned" if aligned else "unaligned")


def read_mmsa_pickle(path: Path | str) -> Corpus:
    """Load (restricted) and validate an MMSA feature pickle."""
    return validate_mmsa(load_pickle(path), path)
