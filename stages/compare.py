"""Stage `compare`: the paper's comparison tables from this run.

Reads ``<metrics>/<variant>.json`` (contract D) of SSU (``compare.ssu_variant``), of every LLM
constructor in ``llm_graphs.models`` (variant ``llm_<name>``), of the anchor ablation and the
loss ablations, plus ``<metrics>/latency_<name>.json`` written by `llm-graphs`. Writes
``<out>/compare.md`` (Table 2: SSU vs LLM constructors with graph-construction time per batch
from raw text and parameters, then the latency breakdown: every clock of the latency record and
both ratios, from raw text and graphs only; Table 3: anchor; Table 4: loss combinations; mean ± std over seeds, both Has0
and Non0 Acc2/F1), ``<out>/compare.json`` (the same numbers; a `cache: false` DVC metric so
``dvc metrics diff`` shows how the comparison moved) and the Fig. 4 style PNG ``plot``
(parameters vs construction time from raw text, log axes, one labelled point per constructor).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from stages.common import atomic_file, fail, log, stage_command
from stages.errors import ParamError
from stages.params import load_params, load_section

SECTIONS: tuple[str, ...] = ("compare", "llm_graphs")


@dataclasses.dataclass(frozen=True)
class CompareParams:
    """`compare`: which metrics files make up the tables, and where the report goes."""

    metrics: str  # folder of <variant>.json (contract D) and latency_<name>.json (llm-graphs)
    ssu_variant: str  # the SSU row of Tables 2-4 (the full model)
    anchor_variant: str  # Table 3: SSU without the semantic anchor ("" = no Table 3)
    anchor_cross_variant: str  # Table 3 extra row: without the anchor and the cross-modal edges ("" = none)
    loss_variants: tuple[str, ...]  # Table 4 rows (paper order: reg_only ... reg_sup_self; [] = no Table 4)
    out: str  # folder for compare.md and compare.json
    plot: str  # Fig. 4 style PNG (parameters vs construction time)

    def __post_init__(self) -> None:
        for name in ("metrics", "ssu_variant", "out", "plot"):
            if not getattr(self, name):
                raise ParamError(f"{name} must not be empty")
        if not self.plot.endswith(".png"):
            raise ParamError(f"plot must be a .png path, got {self.plot!r}")
        if len(set(self.loss_variants)) != len(self.loss_variants):
            raise ParamError("loss_variants must be distinct")


def _read_json(path: Path, what: str):
    import json

    if not path.is_file():
        fail(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}")


def _variant(metrics: Path, name: str):
    """The checked metrics (contract D) of one variant."""
    from ssu_model.eval import reporting

    path = metrics / f"{name}.json"
    return reporting.check_metrics(_read_json(path, f"metrics of variant {name}"), str(path))


def _tables(p: CompareParams, llm, metrics: Path):
    """(compare.json's tables, compare.md's sections, the checked latency records, the latency breakdown)."""
    from ssu_model.eval import reporting

    ssu = _variant(metrics, p.ssu_variant)
    llms = {s.name: _variant(metrics, f"llm_{s.name}") for s in llm.models}
    latencies = {}
    for s in llm.models:
        path = metrics / f"latency_{s.name}.json"
        latencies[s.name] = reporting.check_latency(_read_json(path, f"latency record of {s.name}"), str(path))

    t2, md2 = reporting.table2(ssu, llms, latencies)
    lat, md_lat = reporting.latency_breakdown(latencies)
    report = {"table2": t2, "latency": lat}
    sections = [
        "# SSU vs LLM graph constructors, anchor and loss ablations",
        "",
        "Test split, mean ± std over seeds. Acc/F1 in %, MAE absolute. Has0: label >= 0 counts as "
        "positive; Non0: zero labels dropped (MMSA definitions). Graph construction: median seconds "
        "per batch **from raw text** (SSU: spaCy parse + text encoder + graphs; the LLM: tokenising + "
        "forward + graphs), same machine and batches for every constructor, the two sides interleaved "
        "(see latency_<name>.json and the breakdown below Table 2).",
        "",
        "## Table 2: SSU vs LLM-based graph constructors",
        "",
        md2,
        "",
        "### Graph-construction latency breakdown",
        "",
        md_lat,
    ]
    if p.anchor_variant:
        t3, md3 = reporting.table3(ssu, _variant(metrics, p.anchor_variant),
                                   _variant(metrics, p.anchor_cross_variant) if p.anchor_cross_variant else None)
        report["table3"] = t3
        sections += ["", "## Table 3: effect of the semantic anchor", "", md3]
    if p.loss_variants:
        t4, md4 = reporting.table4(ssu, {v: _variant(metrics, v) for v in p.loss_variants})
        report["table4"] = t4
        sections += ["", "## Table 4: loss combinations", "", md4]
    return report, sections, latencies, lat


@stage_command
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    metrics: Path | None = typer.Option(None, "--metrics", help="metrics folder (default compare.metrics)"),
    out: Path | None = typer.Option(None, "--out", help="report folder (default compare.out)"),
    plot: Path | None = typer.Option(None, "--plot", help="Fig. 4 PNG (default compare.plot)"),
) -> None:
    """Tables 2-4 and Fig. 4 of the paper from this run's metrics and latency records."""
    import json
    import os

    from ssu_model.eval import reporting
    from stages.modelling import LLMGraphsParams

    raw = load_params(params)
    p = load_section(raw, "compare", CompareParams)
    llm = load_section(raw, "llm_graphs", LLMGraphsParams)
    metrics = metrics or Path(p.metrics)
    out = out or Path(p.out)
    plot = plot or Path(p.plot)
    report, sections, latencies, lat = _tables(p, llm, metrics)
    points = reporting.constructor_points(latencies)
    report["fig4"] = points
    link = Path(os.path.relpath(plot.resolve(), out.resolve())).as_posix()  # from the report's folder
    sections += ["", f"![Fig. 4: parameters vs graph construction time]({link})", ""]

    with atomic_file(plot) as tmp:
        reporting.fig4(points, tmp)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "compare.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    with atomic_file(out / "compare.md") as tmp:
        tmp.write_text("\n".join(sections))
    for name, entry in lat.items():
        log(f"compare: from raw text SSU builds graphs {reporting.times(entry['ratio_from_raw_text'])} faster than "
            f"{name} ({entry['ssu_from_raw_text']:.3f} s vs {entry['llm_from_raw_text']:.2f} s per batch); graphs "
            f"only (SSU's parse and encoder off its clock) {reporting.times(entry['ratio_graphs_only'])}")
    log(f"compare: wrote {out / 'compare.md'}, {out / 'compare.json'}, {plot}")
