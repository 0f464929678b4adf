"""Label CSVs: MMSA's ``label.csv`` (columns ``video_id, clip_id, text, label, ..., mode``) and the
``id, text, label, mode`` layout, columns read by name in any order, ``mode`` ``dev`` = ``valid``.

One reader (:func:`read_table`): polars reads every column as a string (no type guessing: the
text "nan" stays text), UTF-8 with or without BOM; blank lines are skipped; a line with another
number of fields than the header is refused. Then the columns are validated with expressions,
and the first bad line is named. Two views of the table:

* :func:`read_label_csv`, what `features` reads: a training set. Every column is required,
  every split must have rows, ids are unique across splits. Gives a text-only
  :class:`~ssu_model.data.corpus.Corpus`.
* :func:`read_scoring_csv`, what ``predict --input`` reads: a file to score need not be a
  training set. Only ``text`` is required; ids from ``id`` or ``video_id`` + ``clip_id`` (else
  the line number), ``label`` optional (reference labels), ``mode`` optional (rows outside the
  chosen splits are left out; without it every row is scored, has no split and keeps the
  file's order), any split may be absent. Gives one ``Utterances``.

Every problem raises :class:`ssu_model.errors.DataError` with one line naming the file and line
(a line number counts CSV records: the header is line 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ssu_model.data.corpus import LABEL_RANGE, MMSA_ID_SEP, Corpus, check_unique_ids
from ssu_model.data.splits import SPLIT_ALIASES, SPLITS
from ssu_model.data.utterances import Utterances
from ssu_model.errors import DataError

LINE = "_line"  # the column of CSV line numbers read_table adds


def read_table(path: Path) -> pl.DataFrame:
    """The CSV as strings: one column per header name (stripped), plus ``_line``; blank lines out."""
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 label CSV") from None
    if not raw.strip():
        raise DataError(f"{path} is empty: no CSV header")
    try:
        df = pl.read_csv(io.StringIO(raw), infer_schema=False, empty_string_is_null=False,
                         row_index_name=LINE, row_index_offset=2)
    except pl.exceptions.PolarsError as exc:
        raise DataError(_ragged_line(path, raw) or f"{path} is not a valid CSV ({str(exc).splitlines()[0]})") from None
    df = df.rename({c: c.strip() for c in df.columns})
    data = [c for c in df.columns if c != LINE]
    blank = pl.all_horizontal(pl.col(c).str.strip_chars() == "" for c in data)
    df = df.filter(~blank)
    # polars pads a record with too few fields with empty strings: only a line whose last field is
    # empty can be one, and only such lines (usually none) are counted.
    maybe_short = df.filter(pl.col(data[-1]) == "")[LINE].to_list()
    short = _ragged_line(path, raw, maybe_short) if maybe_short else None
    if short:
        raise DataError(short)
    return df


def _ragged_line(path: Path, raw: str, lines: Sequence[int] | None = None) -> str | None:
    """The error for the first record (of ``lines``, or any) whose field count differs from the
    header's, or None. polars refuses a record with too many fields but pads one with too few, so
    the count is checked here; the csv module tokenises the same RFC 4180 quoting."""
    wanted = None if lines is None else set(lines)
    reader = csv.reader(io.StringIO(raw, newline=""))
    n_fields = len(next(reader, []))
    for lineno, row in enumerate(reader, start=2):
        if (wanted is None or lineno in wanted) and row and len(row) != n_fields and any(c.strip() for c in row):
            return f"{path}: line {lineno} has {len(row)} fields, header has {n_fields}"
    return None


def _first_bad(df: pl.DataFrame, checks: Sequence[tuple[pl.Expr, str]]) -> None:
    """Raise the message of the first line that fails a check (checks in the order given)."""
    flagged = df.with_columns([expr.alias(f"_bad{i}") for i, (expr, _msg) in enumerate(checks)])
    bad = [f"_bad{i}" for i in range(len(checks))]
    first = flagged.filter(pl.any_horizontal(bad)).head(1)
    if first.height == 0:
        return
    row = first.row(0, named=True)
    for i, (_expr, msg) in enumerate(checks):
        if row[f"_bad{i}"]:
            raise DataError(msg.format(**row))


def _mmsa_ids() -> pl.Expr:
    return pl.concat_str(pl.col("video_id").str.strip_chars(), pl.lit(MMSA_ID_SEP), pl.col("clip_id").str.strip_chars())


def _split_of_mode() -> pl.Expr:
    """The split a ``mode`` value names (``dev`` = ``valid``); null for an unknown one."""
    return pl.col("mode").str.strip_chars().replace_strict(SPLIT_ALIASES, default=None)


def _label_checks(path: Path, where: str) -> list[tuple[pl.Expr, str]]:
    """A label that does not parse as a number, or is not finite in [-3, 3]."""
    value = pl.col("_label")
    lo, hi = LABEL_RANGE
    return [(value.is_null(), f"{path}: non-numeric label {{label!r}} on line {{_line}}{where}"),
            (~value.is_finite() | (value < lo) | (value > hi), f"{path}: label {{label!r}} out of [-3, 3] on line {{_line}}{where}")]


def _with_labels(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("label").str.strip_chars().cast(pl.Float64, strict=False).alias("_label"))


def read_label_csv(path: Path | str) -> Corpus:
    """Read an MMSA ``label.csv`` or an ``id,text,label,mode`` file as a training set."""
    path = Path(path)
    df = read_table(path)
    layout, id_cols = ("mmsa", ("video_id", "clip_id")) if {"video_id", "clip_id"} & set(df.columns) else ("id", ("id",))
    missing = [c for c in (*id_cols, "text", "label", "mode") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: label CSV is missing column(s): {', '.join(missing)}")
    df = _with_labels(df).with_columns(
        (_mmsa_ids() if layout == "mmsa" else pl.col("id").str.strip_chars()).alias("_id"),
        _split_of_mode().alias("_split"),
    )
    _first_bad(df, [
        ((pl.col("_id") == "") | (pl.col("_id") == MMSA_ID_SEP), f"{path}: line {{_line}} has an empty id"),
        (pl.col("_split").is_null(),
         f"{path}: unknown mode value {{mode!r}} on line {{_line}} (expected train, valid, dev or test)"),
        (pl.col("text").str.strip_chars() == "", f"{path}: empty text on line {{_line}} (id {{_id!r}})"),
        *_label_checks(path, " (id {_id!r})"),
    ])
    splits = {}
    for split in SPLITS:
        part = df.filter(pl.col("_split") == split)
        if part.height == 0:
            raise DataError(f"{path}: missing split '{split}' (no rows with that mode)")
        splits[split] = Utterances(ids=part["_id"].to_list(), texts=part["text"].to_list(),
                                   labels=part["_label"].to_numpy().astype(np.float32),
                                   has_labels=True, source=str(path))
    check_unique_ids(splits, path)
    return Corpus("label-csv", str(path), splits, None, layout)


def read_scoring_csv(path: Path | str, splits: Sequence[str] = SPLITS) -> Utterances:
    """The utterances of a CSV with a ``text`` column, to score (rows of ``splits`` when it has a
    ``mode`` column: sorted by split, then id, as `features` writes a label CSV's rows)."""
    path = Path(path)
    df = read_table(path)
    if "text" not in df.columns:
        names = [c for c in df.columns if c != LINE]
        raise DataError(f"{path}: no 'text' column (columns: {', '.join(names) or 'none'})")
    has_labels, has_mode = "label" in df.columns, "mode" in df.columns
    if "id" in df.columns:
        ids = pl.col("id").str.strip_chars()
    elif {"video_id", "clip_id"} <= set(df.columns):
        ids = _mmsa_ids()
    else:
        ids = (pl.col(LINE) - 1).cast(pl.String)
    df = df.with_columns(ids.alias("_id"))
    if has_mode:
        df = df.with_columns(_split_of_mode().alias("_split"))
        _first_bad(df, [(pl.col("_split").is_null(), f"{path}: unknown mode {{mode!r}} on line {{_line}} "
                                                     "(expected train, valid, dev or test)")])
        df = df.filter(pl.col("_split").is_in(list(splits)))
    df = _with_labels(df) if has_labels else df.with_columns(pl.lit(0.0).alias("_label"))
    _first_bad(df, [(pl.col("text").str.strip_chars() == "", f"{path}: empty text on line {{_line}} (id {{_id!r}})"),
                    *(_label_checks(path, "") if has_labels else [])])
    if df.height == 0:
        raise DataError(f"{path}: no rows to score" + (f" in split(s) {', '.join(splits)}" if has_mode else ""))
    if df["_id"].is_duplicated().any():
        raise DataError(f"{path}: ids are not distinct")
    if has_mode:
        rank = pl.col("_split").replace_strict({s: i for i, s in enumerate(SPLITS)}, return_dtype=pl.Int32)
        df = df.sort(rank, pl.col("_id"))
    return Utterances(df["_id"].to_list(), df["text"].to_list(), df["_label"].to_numpy().astype(np.float32),
                      has_labels, df["_split"].to_list() if has_mode else None, source=str(path))
