"""Markdown tables from polars DataFrames: the one formatter of `evaluate`, `compare`, `diff`,
`predict` reports and the benchmarks.

The cells are the DataFrame's values as text (format numbers before, with the digits the table
wants); the header is the column names. ``align`` gives one of ``"left"`` (``---``) or ``"right"``
(``---:``) per column, left by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

RULES = {"left": "---", "right": "---:"}


def frame(header: Sequence[str], rows: Sequence[Sequence[object]]) -> pl.DataFrame:
    """A DataFrame of string cells, one column per (distinct) header name."""
    if len(set(header)) != len(header):
        raise ValueError(f"column names repeat: {list(header)}")
    return pl.DataFrame([[str(v) for v in r] for r in rows], schema=dict.fromkeys(header, pl.String), orient="row")


def markdown_table(df: pl.DataFrame, align: Sequence[str] | None = None) -> str:
    """``| a | b |`` lines: header, rule, one line per row (no trailing newline)."""
    header = df.columns
    align = list(align or ["left"] * len(header))
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} entries for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(RULES[a] for a in align) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)
