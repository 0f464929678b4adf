"""A source dataset read into memory: one :class:`Utterances` per split, and the checks every
reader shares (the label range, the MMSA id form, ids unique across splits)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssu_model.data.utterances import Utterances
from ssu_model.errors import DataError

LABEL_RANGE = (-3.0, 3.0)
MMSA_ID_SEP = "$_$"  # MMSA's utterance id: video_id + MMSA_ID_SEP + clip_id


@dataclass
class Corpus:
    """What a reader returns (`features` writes it as one feature file per split)."""

    kind: str  # "mmsa-pickle" | "label-csv"
    path: str
    splits: dict[str, Utterances]  # split -> its utterances, in the source's order
    aligned: bool | None  # None for text-only sources
    layout: str = ""  # the CSV layout or "aligned"/"unaligned"


def label_out_of_range(label: float) -> bool:
    """Whether a label is non-finite or outside :data:`LABEL_RANGE`."""
    return not np.isfinite(label) or not LABEL_RANGE[0] <= label <= LABEL_RANGE[1]


def check_unique_ids(splits: dict[str, Utterances], path: Path | str) -> None:
    """Every id once in the whole dataset; a repeat is a DataError naming the split(s)."""
    seen: dict[str, str] = {}
    for split, data in splits.items():
        for i in data.ids:
            if i in seen:
                where = f"in split '{split}'" if seen[i] == split else f"in splits '{seen[i]}' and '{split}'"
                raise DataError(f"{path}: duplicate id {i!r} {where}")
            seen[i] = split
