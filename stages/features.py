"""Stage `features`: read the configured source (MMSA pickle, label CSV or the sample),
validate it, and write per-split Arrow IPC files plus `report.json`.

Rows are written sorted by id; non-finite audio/vision values become 0 and are counted.
Any problem stops with one line on stderr and exit 1, and leaves the output directory as
it was (the directory is replaced atomically).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer

from stages.common import atomic_dir, log, stage_command
from stages.errors import ParamError
from stages.params import DataParams, load_params, load_section

SECTIONS: tuple[str, ...] = ("data", "features")


@dataclasses.dataclass(frozen=True)
class FeaturesParams:
    """`features`: the columnar feature files."""

    out: str  # output directory: {train,valid,test}.arrow + report.json
    batch_rows: int  # rows per Arrow record batch (the unit a reader maps at a time)

    def __post_init__(self) -> None:
        if not self.out:
            raise ParamError("out must not be empty")
        if self.batch_rows < 1:
            raise ParamError("batch_rows must be at least 1")


def _stats(values) -> dict[str, float]:
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"min": 0.0, "mean": 0.0, "max": 0.0}
    return {
        "min": round(float(values.min()), 6),
        "mean": round(float(values.mean()), 6),
        "max": round(float(values.max()), 6),
    }


def build_features(source: str, out_dir: Path, batch_rows: int) -> dict[str, Any]:
    """Read ``source``, write the split files into ``out_dir`` (atomically), return the report."""
    from ssu_model.data import features as fmt
    from ssu_model.data.sources import read_source
    from ssu_model.data.splits import SPLITS, STREAMS

    log(f"features: reading {source}")
    ds = read_source(source)
    first = ds.splits["train"]
    modalities = [m for m in STREAMS if m in first.streams]
    report: dict[str, Any] = {
        "format": fmt.FORMAT_VERSION,
        "source": {"path": str(source), "kind": ds.kind, "layout": ds.layout},
        "aligned": ds.aligned,
        "modalities": ["text", *modalities],
        "dims": {m: int(first.streams[m][0].shape[2]) for m in modalities},
        "splits": {},
        "nonfinite_replaced": dict.fromkeys(modalities, 0),
    }
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            data = ds.splits[split]
            order = sorted(range(len(data)), key=data.ids.__getitem__)
            kwargs = {}
            for m in modalities:
                kwargs[m], kwargs[f"{m}_lengths"] = data.streams[m]
            replaced = fmt.write_split(
                fmt.split_path(tmp, split), data.ids, data.texts, data.labels,
                source=f"{ds.kind}:{source}", batch_rows=batch_rows, order=order, sanitize=True,
                **kwargs,
            )
            entry: dict[str, Any] = {
                "rows": len(data),
                "labels": _stats(data.labels),
                "nonfinite_replaced": {m: replaced[m] for m in modalities},
            }
            for m in modalities:
                lens = data.streams[m][1]
                entry.setdefault("max_length", {})[m] = int(data.streams[m][0].shape[1])
                entry.setdefault("lengths", {})[m] = _stats(lens)
                entry.setdefault("zero_length", {})[m] = int((lens == 0).sum())
                report["nonfinite_replaced"][m] += replaced[m]
            if data.lengths_clipped:
                entry["lengths_clipped"] = dict(data.lengths_clipped)
            report["splits"][split] = entry
            log(
                f"features: {split}: {len(data)} rows"
                + "".join(f", {m} non-finite replaced {replaced[m]}" for m in modalities)
            )
            ds.splits[split] = None  # type: ignore[assignment]  # free the split's arrays
            del data, kwargs
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


@stage_command
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read"),
    input_path: Path | None = typer.Option(
        None, "--input", help="MMSA .pkl, label .csv or the sample (default: data.path)"
    ),
    out: Path | None = typer.Option(None, "--out", help="output directory (default: features.out)"),
) -> None:
    """Validate the source and write per-split Arrow feature files + report.json."""
    raw = load_params(params)
    data = load_section(raw, "data", DataParams)
    cfg = load_section(raw, "features", FeaturesParams)
    source = str(input_path) if input_path is not None else data.path
    target = Path(out) if out is not None else Path(cfg.out)
    report = build_features(source, target, cfg.batch_rows)
    rows = "/".join(str(report["splits"][s]["rows"]) for s in ("train", "valid", "test"))
    log(f"features: wrote {target} (rows {rows}; modalities {', '.join(report['modalities'])})")
