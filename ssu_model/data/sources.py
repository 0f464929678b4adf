"""What a path given to `features` or ``predict --input`` holds, read as utterances.

* :func:`read_source` (the `features` stage): an MMSA pickle (``mmsa_pickle``) or a label CSV
  (``label_csv.read_label_csv``), told apart by :func:`detect_kind`, as a ``Corpus``.
* :func:`from_source` (``predict --input``): the same sources, a `features` output folder or
  one of its ``.arrow`` files, as one ``Utterances`` of the chosen splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssu_model.data.corpus import Corpus
from ssu_model.data.features import FeatureSplit, split_path
from ssu_model.data.label_csv import read_label_csv, read_scoring_csv
from ssu_model.data.mmsa_pickle import read_mmsa_pickle
from ssu_model.data.splits import SPLITS, STREAMS
from ssu_model.data.utterances import Utterances, concat
from ssu_model.errors import DataError


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


def read_source(path: Path | str) -> Corpus:
    """Read and validate any source `features` accepts (an MMSA pickle or a label CSV)."""
    kind = detect_kind(path)
    return read_mmsa_pickle(path) if kind == "pickle" else read_label_csv(path)


def _sanitised(values: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 copy with non-finite values replaced by 0, as ``data.write_split(sanitize=True)``."""
    out = np.array(values, dtype=np.float32, order="C", copy=True)
    bad = ~np.isfinite(out)
    count = int(bad.sum())
    if count:
        out[bad] = 0.0
    return out, count


def from_source(path: Path | str, splits: Sequence[str] = SPLITS) -> Utterances:
    """The utterances to score of ``path``: a dataset `features` reads (an MMSA pickle via
    :func:`read_source`; a CSV via ``label_csv.read_scoring_csv``), a `features` output folder,
    or one of its ``<split>.arrow`` files; rows of each split sorted by id as `features` writes
    them, streams float32 with non-finite values replaced by 0."""
    path = Path(path)
    for s in splits:
        if s not in SPLITS:
            raise DataError(f"unknown split {s!r} (train, valid, test)")
    if path.is_dir() or path.suffix == ".arrow":
        return _from_features(path, splits)
    if path.is_file() and detect_kind(path) == "csv":
        return read_scoring_csv(path, splits)

    ds = read_source(path)
    parts = []
    for s in splits:
        data = ds.splits[s]
        order = sorted(range(len(data)), key=data.ids.__getitem__)
        streams, nonfinite = {}, {}
        for m in STREAMS:
            if m not in data.streams:
                continue
            values, lengths = data.streams[m]
            arr, count = _sanitised(values[order] if len(order) else values)
            streams[m] = (arr, np.asarray(lengths, dtype=np.int32)[order])
            nonfinite[m] = count
        parts.append(Utterances(
            ids=[data.ids[i] for i in order], texts=[data.texts[i] for i in order],
            labels=np.asarray(data.labels, dtype=np.float32)[order], has_labels=True, splits=[s] * len(order),
            streams=streams, nonfinite=nonfinite, source=str(path)))
    return concat(parts, str(path))


def _from_features(path: Path, splits: Sequence[str]) -> Utterances:
    if path.is_dir():
        files = [(s, split_path(path, s)) for s in splits]
        missing = [str(f) for _s, f in files if not f.is_file()]
        if missing:
            raise DataError(f"{path}: no {missing[0]} (a `features` output folder holds train/valid/test.arrow)")
    else:
        if not path.is_file():
            raise DataError(f"input file not found: {path}")
        files = [(path.stem, path)]
    parts = []
    for s, f in files:
        split = FeatureSplit(f)
        n = len(split)
        streams = {}
        for m in STREAMS:
            if split.shapes[m] is not None:
                streams[m] = split.gather(m, np.arange(n))  # already sanitised by `features`
        parts.append(Utterances(list(split.ids), list(split.texts), split.labels.astype(np.float32), True,
                                [s] * n, streams, dict.fromkeys(streams, 0), source=str(f)))
    return concat(parts, str(path))
