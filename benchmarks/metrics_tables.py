"""Markdown tables of the committed test metrics, for docs/results.md.

Reads the metrics JSON that `evaluate` writes (``metrics/<variant>.json`` of the sample and
``pipelines/<name>/metrics/<variant>.json`` of the real-data pipelines: ``mean``, ``std`` (ddof 0)
and ``seeds``) and the latency records of `llm-graphs` (``latency_<name>.json``), and prints one
table per real-data pipeline (the sample's too with ``--sample``: its per-variant figures are in
reports/compare.md) plus one latency table. Run from anywhere:

    python benchmarks/metrics_tables.py [--sample]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssu_model.eval.tables import frame, markdown_table

ROOT = Path(__file__).resolve().parents[1]

# (column, metric key, scale, decimals): accuracies/F1 are fractions in the JSON, shown in %
COLUMNS = (
    ("Non0-Acc2", "Non0_acc_2", 100.0, 2),
    ("Non0-F1", "Non0_F1", 100.0, 2),
    ("Has0-Acc2", "Has0_acc_2", 100.0, 2),
    ("Acc7", "Acc7", 100.0, 2),
    ("MAE", "MAE", 1.0, 4),
    ("Corr", "Corr", 1.0, 4),
)

# variants in the order the docs discuss them; any other name follows alphabetically, LLM ones last
ORDER = (
    "full",
    "text_only",
    "all_streams",
    "all_streams_md",
    "text_vision",
    "no_anchor",
    "no_anchor_no_cross",
    "reg_only",
    "reg_align",
    "reg_self",
    "reg_sup",
    "reg_self_align",
    "reg_sup_align",
    "reg_sup_self",
    "finetuned",
    "frozen",
)


def metric_folders(root: Path) -> list[tuple[str, Path]]:
    """(pipeline name, metrics folder): the sample's first, then pipelines/* in name order."""
    found = [("sample (`dvc.yaml`)", root / "metrics")]
    for folder in sorted((root / "pipelines").glob("*/metrics")):
        found.append((f"`pipelines/{folder.parent.name}`", folder))
    return [(name, folder) for name, folder in found if folder.is_dir()]


def variant_key(name: str) -> tuple[int, int, str]:
    if name.startswith("llm_"):
        return (2, 0, name)
    if name in ORDER:
        return (0, ORDER.index(name), name)
    return (1, 0, name)


def compared_variants(params: Path) -> set[str]:
    """The anchor and loss ablations a pipeline's `compare` stage tabulates in reports/compare.md."""
    import yaml

    if not params.is_file():
        return set()
    compare = (yaml.safe_load(params.read_text()) or {}).get("compare") or {}
    named = [compare.get("anchor_variant"), compare.get("anchor_cross_variant"), *(compare.get("loss_variants") or [])]
    return {v for v in named if v}


def read_metrics(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "mean" in doc and "std" in doc:
            doc.setdefault("variant", path.stem)
            docs.append(doc)
    return sorted(docs, key=lambda d: variant_key(d["variant"]))


def cell(doc: dict, key: str, scale: float, decimals: int) -> str:
    mean, std = doc["mean"].get(key), doc["std"].get(key)
    if mean is None or std is None:
        return "-"
    return f"{mean * scale:.{decimals}f} ± {std * scale:.{decimals}f}"


def seed_list(seeds: list[int]) -> str:
    """``[0, 1, 2, 4]`` -> ``0-2, 4``."""
    parts: list[list[int]] = []
    for s in sorted(seeds):
        if parts and parts[-1][1] == s - 1:
            parts[-1][1] = s
        else:
            parts.append([s, s])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in parts)


def seeds_cell(doc: dict) -> str:
    """The seeds behind a row; a `seed-mean` row scores the mean of its seeds' predictions."""
    if "seeds_averaged" in doc:
        return f"mean of {seed_list(doc['seeds_averaged'])}"
    return seed_list(doc.get("seeds", []))


def metrics_table(docs: list[dict]) -> str:
    head = ["variant", *(c[0] for c in COLUMNS), "seeds"]
    rows = [[doc["variant"], *(cell(doc, k, s, d) for _, k, s, d in COLUMNS), seeds_cell(doc)] for doc in docs]
    return markdown_table(frame(head, rows))


def latency_rows(name: str, folder: Path) -> list[list]:
    rows = []
    for path in sorted(folder.glob("latency_*.json")):
        doc = json.loads(path.read_text())
        try:
            ssu = doc["ssu_from_raw_text"]["seconds_median"]
            no_enc = doc["ssu_from_raw_text_no_encoder"]["seconds_median"]
            graphs = doc["ssu_graphs_only_cached_inputs"]["seconds_median"]
            llm = doc["llm_from_raw_text"]["seconds_median"]
        except (KeyError, TypeError):
            continue  # a record of another format
        encoder = doc.get("parse_settings", {}).get("text_encoder", "?")
        rows.append([name, f"{doc.get('llm', path.stem[8:])} ({doc.get('precision', '?')})", encoder,
                     doc.get("threads", "?"), doc.get("n_timed_batches", "?"), f"{ssu:.3f}", f"{no_enc:.3f}",
                     f"{graphs:.4f}", f"{llm:.2f}", f"{llm / ssu:.1f}x", f"{llm / no_enc:.1f}x",
                     f"{llm / graphs:,.0f}x"])
    return rows


def latency_table(rows: list[list]) -> str:
    head = [
        "pipeline",
        "LLM",
        "encoder",
        "threads",
        "batches",
        "SSU raw text s",
        "SSU no encoder s",
        "SSU graphs s",
        "LLM raw text s",
        "raw text",
        "no encoder",
        "graphs only",
    ]
    return markdown_table(frame(head, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--sample", action="store_true", help="also the sample's per-variant table")
    parser.add_argument("--ablations", action="store_true",
                        help="also the variants a pipeline's `compare` stage tabulates (Tables 3-4)")
    args = parser.parse_args()
    out = ["Test split, mean ± std over seeds (ddof 0), per metrics folder:", ""]
    latency = []
    for name, folder in metric_folders(args.root):
        skip = set() if args.ablations else compared_variants(folder.parent / "params.yaml")
        docs = [d for d in read_metrics(folder) if d["variant"] not in skip]
        label = f"`{folder.relative_to(args.root)}/`"
        if skip & {path.stem for path in folder.glob("*.json")}:
            label += f" (Table 3-4 ablations: `{folder.parent.name}/reports/compare.md`)"
        if docs and (args.sample or folder != args.root / "metrics"):
            out.append(f"{label}:")
            out.append("")
            out.append(metrics_table(docs))
            out.append("")
        latency.extend(latency_rows(name, folder))
    if latency:
        out.append(
            "Graph construction per batch of 128 (`latency_<llm>.json`, medians; last three columns: LLM / SSU):"
        )
        out.append("")
        out.append(latency_table(latency))
        out.append("")
    print("\n".join(out).rstrip())


if __name__ == "__main__":
    main()
