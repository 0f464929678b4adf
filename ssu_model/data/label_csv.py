"""Label CSVs: MMSA's ``label.csv`` (columns ``video_id, clip_id, text, label, ..., mode``) and the
``id, text, label, mode`` layout, columns read by name in any order, ``mode`` ``dev`` = ``valid``.

One parser (:func:`_lines`: UTF-8 with or without BOM, the header by name, blank lines skipped,
a line with another number of fields refused; and the per-field checks below), read two ways:

* :func:`read_label_csv`, what `features` reads: a training set. Every column is required,
  every split must have rows, ids are unique across splits. Gives a text-only
  :class:`~ssu_model.data.corpus.Corpus`.
* :func:`read_scoring_csv`, what ``predict --input`` reads: a file to score need not be a
  training set. Only ``text`` is required; ids from ``id`` or ``video_id`` + ``clip_id`` (else
  the line number), ``label`` optional (reference labels), ``mode`` optional (rows outside the
  chosen splits are left out; without it every row is scored, has no split and keeps the
  file's order), any split may be absent. Gives one ``Utterances``.

Every problem raises :class:`ssu_model.errors.DataError` with one line naming the file and line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ssu_model.data.corpus import MMSA_ID_SEP, Corpus, check_unique_ids, label_out_of_range
from ssu_model.data.splits import SPLIT_ALIASES, SPLITS
from ssu_model.data.utterances import Utterances
from ssu_model.errors import DataError


def _lines(path: Path) -> tuple[dict[str, int], list[list[str]], int]:
    """(column name -> index, the data lines, number of header fields)."""
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
    return {c.strip(): i for i, c in enumerate(header)}, rows, len(header)


def _numbered(path: Path, rows: list[list[str]], n_fields: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line, each checked to have ``n_fields`` fields."""
    for lineno, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != n_fields:
            raise DataError(f"{path}: line {lineno} has {len(row)} fields, header has {n_fields}")
        yield lineno, row


def _mmsa_id(row: list[str], index: dict[str, int]) -> str:
    return f"{row[index['video_id']].strip()}{MMSA_ID_SEP}{row[index['clip_id']].strip()}"


def _text(path: Path, row: list[str], index: dict[str, int], lineno: int, rid: str) -> str:
    text = row[index["text"]]
    if not text.strip():
        raise DataError(f"{path}: empty text on line {lineno} (id {rid!r})")
    return text


def _label(path: Path, raw: str, lineno: int, where: str) -> float:
    """The label ``raw`` of line ``lineno``; ``where`` ends the messages (e.g. the id)."""
    try:
        label = float(raw)
    except ValueError:
        raise DataError(f"{path}: non-numeric label {raw!r} on line {lineno}{where}") from None
    if label_out_of_range(label):
        raise DataError(f"{path}: label {raw!r} out of [-3, 3] on line {lineno}{where}")
    return label


def read_label_csv(path: Path | str) -> Corpus:
    """Read an MMSA ``label.csv`` or an ``id,text,label,mode`` file as a training set."""
    path = Path(path)
    index, rows, n_fields = _lines(path)
    if "video_id" in index or "clip_id" in index:
        layout, id_cols = "mmsa", ("video_id", "clip_id")
    else:
        layout, id_cols = "id", ("id",)
    missing = [c for c in (*id_cols, "text", "label", "mode") if c not in index]
    if missing:
        raise DataError(f"{path}: label CSV is missing column(s): {', '.join(missing)}")

    per: dict[str, tuple[list[str], list[str], list[float]]] = {s: ([], [], []) for s in SPLITS}
    for lineno, row in _numbered(path, rows, n_fields):
        rid = _mmsa_id(row, index) if layout == "mmsa" else row[index["id"]].strip()
        if not rid or rid == MMSA_ID_SEP:
            raise DataError(f"{path}: line {lineno} has an empty id")
        mode = row[index["mode"]].strip()
        split = SPLIT_ALIASES.get(mode)
        if split is None:
            raise DataError(
                f"{path}: unknown mode value {mode!r} on line {lineno} (expected train, valid, dev or test)"
            )
        text = _text(path, row, index, lineno, rid)
        label = _label(path, row[index["label"]], lineno, f" (id {rid!r})")
        ids, texts, labels = per[split]
        ids.append(rid)
        texts.append(text)
        labels.append(label)
    splits = {}
    for split in SPLITS:
        ids, texts, labels = per[split]
        if not ids:
            raise DataError(f"{path}: missing split '{split}' (no rows with that mode)")
        splits[split] = Utterances(ids=ids, texts=texts, labels=np.asarray(labels, dtype=np.float32),
                                   has_labels=True, source=str(path))
    check_unique_ids(splits, path)
    return Corpus("label-csv", str(path), splits, None, layout)


def _scoring_id(row: list[str], index: dict[str, int], lineno: int) -> str:
    if "id" in index:
        return row[index["id"]].strip()
    if "video_id" in index and "clip_id" in index:
        return _mmsa_id(row, index)
    return str(lineno - 1)


def read_scoring_csv(path: Path | str, splits: Sequence[str] = SPLITS) -> Utterances:
    """The utterances of a CSV with a ``text`` column, to score (rows of ``splits`` when it has a
    ``mode`` column: sorted by split, then id, as `features` writes a label CSV's rows)."""
    path = Path(path)
    index, rows, n_fields = _lines(path)
    if "text" not in index:
        raise DataError(f"{path}: no 'text' column (columns: {', '.join(index) or 'none'})")
    has_labels, has_mode = "label" in index, "mode" in index
    ids, texts, labels, chosen = [], [], [], []
    for lineno, row in _numbered(path, rows, n_fields):
        rid = _scoring_id(row, index, lineno)
        split = None
        if has_mode:
            split = SPLIT_ALIASES.get(row[index["mode"]].strip())
            if split is None:
                raise DataError(f"{path}: unknown mode {row[index['mode']]!r} on line {lineno} "
                                "(expected train, valid, dev or test)")
            if split not in splits:
                continue
        text = _text(path, row, index, lineno, rid)
        label = _label(path, row[index["label"]], lineno, "") if has_labels else 0.0
        ids.append(rid)
        texts.append(text)
        labels.append(label)
        chosen.append(split)
    if not ids:
        raise DataError(f"{path}: no rows to score" + (f" in split(s) {', '.join(splits)}" if has_mode else ""))
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: ids are not distinct")
    order = list(range(len(ids)))
    if has_mode:
        order.sort(key=lambda i: (SPLITS.index(chosen[i]), ids[i]))
    return Utterances([ids[i] for i in order], [texts[i] for i in order],
                      np.asarray([labels[i] for i in order], dtype=np.float32), has_labels,
                      [chosen[i] for i in order] if has_mode else None, source=str(path))
