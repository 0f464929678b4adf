"""Pure table and plot functions for the `compare` stage (the paper's Tables 2-4 and Fig. 4).

Inputs are the metrics JSON of contract D (``{"variant", "n_seeds", "mean": {...}, "std":
{...}}``, accuracies/F1 as fractions) and the latency records written by `llm-graphs`
(``latency_<name>.json``, format 2: every clock says what it covers; Table 2 and Fig. 4 use the
from-raw-text clocks, ``latency_breakdown`` lists them all). Outputs are plain dicts (for JSON /
``dvc metrics``) and markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssu_model.errors import DataError
from ssu_model.eval.tables import frame, markdown_table

# (metrics key, column title, is a fraction rendered as %)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("Has0_acc_2", "Acc2 (Has0)", True),
    ("Has0_F1", "F1 (Has0)", True),
    ("Non0_acc_2", "Acc2 (Non0)", True),
    ("Non0_F1", "F1 (Non0)", True),
    ("Acc7", "Acc7", True),
    ("MAE", "MAE", False),
)
LOSS_ROWS: tuple[tuple[str, str], ...] = (
    ("reg_only", "L_reg only"),
    ("reg_align", "L_reg + L_align"),
    ("reg_self", "L_reg + L_self"),
    ("reg_sup", "L_reg + L_sup"),
    ("reg_self_align", "L_reg + L_self + L_align"),
    ("reg_sup_align", "L_reg + L_sup + L_align"),
    ("reg_sup_self", "L_reg + L_sup + L_self"),
)


def check_metrics(doc: Any, where: str) -> Mapping[str, Any]:
    """Validate one contract-D metrics document; returns it."""
    if not isinstance(doc, Mapping):
        raise DataError(f"{where}: metrics must be a JSON object")
    for part in ("mean", "std"):
        if not isinstance(doc.get(part), Mapping):
            raise DataError(f"{where}: metrics lack the '{part}' object")
        for key, _t, _p in COLUMNS:
            v = doc[part].get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise DataError(f"{where}: {part}.{key} missing or not a number")
    return doc


# The latency record written by `llm-graphs` (benchmarks.latency_record.latency_report; format 2).
# Repeated here, not imported: `compare` must not depend on the timing code (a test keeps them equal).
LATENCY_FORMAT = "2"
LATENCY_CLOCKS = ("ssu_from_raw_text", "ssu_from_raw_text_no_encoder", "ssu_graphs_only_cached_inputs",
                  "llm_from_raw_text")
LATENCY_RATIOS = {"ratio_from_raw_text": ("llm_from_raw_text", "ssu_from_raw_text"),
                  "ratio_graphs_only": ("llm_from_raw_text", "ssu_graphs_only_cached_inputs")}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_latency(doc: Any, where: str) -> Mapping[str, Any]:
    """Validate one `llm-graphs` latency record (format 2); returns it.

    A record of the earlier format (``constructors``/``speedup``: SSU timed on cached parses
    only) is refused with one line: its ratio is not comparable with the from-raw-text one."""
    if not isinstance(doc, Mapping):
        raise DataError(f"{where}: latency record must be a JSON object")
    if "constructors" in doc and "ssu_from_raw_text" not in doc:
        raise DataError(f"{where}: latency record of the old format (SSU timed from cached parses only, "
                        "no ssu_from_raw_text): re-run llm-graphs")
    if str(doc.get("format")) != LATENCY_FORMAT:
        raise DataError(f"{where}: latency record format {doc.get('format')!r}, expected {LATENCY_FORMAT!r} "
                        "(re-run llm-graphs)")
    for key in LATENCY_CLOCKS:
        rec = doc.get(key)
        if not isinstance(rec, Mapping) or not isinstance(rec.get("what"), str):
            raise DataError(f"{where}: latency record lacks {key} (with its 'what')")
        for field in ("seconds_median", "batch_size", "n_timed_batches", "threads"):
            if not _number(rec.get(field)) or rec[field] <= 0:
                raise DataError(f"{where}: {key}.{field} missing or not a positive number")
    for key, (num, den) in LATENCY_RATIOS.items():
        value = doc.get(key)
        want = doc[num]["seconds_median"] / doc[den]["seconds_median"]
        if not _number(value) or abs(value - want) > 1e-6 * want:
            raise DataError(f"{where}: {key} is not {num} / {den} of the medians")
    llm = doc.get("llm")
    params = doc.get("params")
    if not isinstance(llm, str) or not isinstance(params, Mapping):
        raise DataError(f"{where}: latency record lacks 'llm' (the constructor's name) or 'params'")
    for name in ("SSU", llm):
        if not isinstance(params.get(name), Mapping) or not _number(params[name].get("total")):
            raise DataError(f"{where}: params.{name}.total missing or not a number")
    return doc


def cell(mean: float, std: float, percent: bool) -> str:
    if percent:
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{mean:.4f} ± {std:.4f}"


def _metric_cells(doc: Mapping[str, Any]) -> list[str]:
    return [cell(float(doc["mean"][k]), float(doc["std"][k]), pct) for k, _t, pct in COLUMNS]


def _summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"mean": {k: float(doc["mean"][k]) for k, _t, _p in COLUMNS},
            "std": {k: float(doc["std"][k]) for k, _t, _p in COLUMNS},
            "n_seeds": int(doc.get("n_seeds", 0))}


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return markdown_table(frame(header, rows))


def times(ratio: float) -> str:
    """A speed-up as text: one decimal below 100x (7.1x, 27.6x), whole above (729x)."""
    return f"{ratio:.0f}x" if ratio >= 99.95 else f"{ratio:.1f}x"


def human_params(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.1f}M"


def constructor_points(latencies: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """name -> {seconds, params, speedup} for SSU and each LLM, graph construction **from raw text**
    (``ssu_from_raw_text`` / ``llm_from_raw_text``); SSU: median over the records, each of which
    timed SSU on the same batches as its LLM; speedup = the LLM's median / its record's SSU median."""
    if not latencies:
        raise DataError("no latency records")
    points: dict[str, dict[str, float]] = {}
    ssu_s, ssu_p = [], []
    for name, doc in latencies.items():
        if doc.get("llm") != name:
            raise DataError(f"latency record of {name} times {doc.get('llm')!r}")
        ssu = float(doc["ssu_from_raw_text"]["seconds_median"])
        llm = float(doc["llm_from_raw_text"]["seconds_median"])
        ssu_s.append(ssu)
        ssu_p.append(float(doc["params"]["SSU"]["total"]))
        points[name] = {"seconds": llm, "params": float(doc["params"][name]["total"]), "speedup": llm / max(ssu, 1e-12)}
    ssu_s.sort()
    points["SSU"] = {"seconds": ssu_s[len(ssu_s) // 2], "params": max(ssu_p), "speedup": 1.0}
    return points


def latency_breakdown(latencies: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], str]:
    """Every clock of each latency record (medians, s / batch) and both ratios, plus what each
    clock covers: the breakdown under Table 2 (its headline is from raw text)."""
    data: dict[str, Any] = {}
    rows = []
    for name, doc in latencies.items():
        entry = {key: float(doc[key]["seconds_median"]) for key in LATENCY_CLOCKS}
        entry.update({key: float(doc[key]) for key in LATENCY_RATIOS})
        # The LLM constructor's graphs also read the text encoder's node features off its clock, so the
        # like-for-like ratio of the two *graph constructors* leaves that encoder off both clocks.
        entry["ratio_constructors_encoder_off_both"] = (
            entry["llm_from_raw_text"] / max(entry["ssu_from_raw_text_no_encoder"], 1e-12))
        first = doc["llm_from_raw_text"]
        entry.update(batch_size=int(first["batch_size"]), n_timed_batches=int(first["n_timed_batches"]),
                     threads=int(first["threads"]))
        data[name] = entry
        rows.append([name, *(f"{entry[k]:.4g}" for k in LATENCY_CLOCKS),
                     f"**{times(entry['ratio_from_raw_text'])}**",
                     times(entry["ratio_constructors_encoder_off_both"]), times(entry["ratio_graphs_only"]),
                     f"{entry['n_timed_batches']} x {entry['batch_size']}", str(entry["threads"])])
    header = ["LLM record", "SSU from raw text", "SSU from raw text w/o encoder forward",
              "SSU graphs only (cached inputs)", "LLM from raw text", "ratio from raw text (headline)",
              "ratio from raw text, encoder off both clocks", "ratio graphs only (breakdown)",
              "timed batches x size", "threads"]
    doc = next(iter(latencies.values()))
    notes = [f"- **{key}**: {doc[key]['what']}" for key in LATENCY_CLOCKS]
    notes += [f"- **{key}**: {num} / {den}" for key, (num, den) in LATENCY_RATIOS.items()]
    notes.append("- **ratio_constructors_encoder_off_both**: llm_from_raw_text / ssu_from_raw_text_no_encoder: "
                 "the two graph constructors from raw text with the text encoder's node features (read by both, "
                 "timed on neither LLM clock) off both clocks; the headline puts that encoder on SSU's clock only")
    encoder = (doc.get("parse_settings") or {}).get("text_encoder")
    if encoder:
        notes.append(f"- text encoder giving the node features (`text_features.model_path`): {encoder}")
    if doc.get("parse_cache"):
        notes.append(f"- parse cache: {doc['parse_cache']}")
    return data, _md_table(header, rows) + "\n\nMedian seconds per batch. What is on each clock:\n\n" + "\n".join(notes)


def table2(ssu: Mapping[str, Any], llms: Mapping[str, Mapping[str, Any]],
           latencies: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], str]:
    """Table 2: SSU vs the LLM graph constructors (metrics, graph construction from raw text per
    batch, params, SSU's speed-up from raw text)."""
    points = constructor_points(latencies)
    missing = sorted(set(llms) - set(points))
    if missing:
        raise DataError(f"no latency record for LLM constructor {missing[0]}")
    data: dict[str, Any] = {}
    rows = []
    for name, doc in [*llms.items(), ("SSU", ssu)]:
        pt = points[name]
        data[name] = {**_summary(doc), "seconds_per_batch_from_raw_text": pt["seconds"], "params": pt["params"],
                      "ssu_faster_from_raw_text": pt["speedup"]}
        rows.append([name, *_metric_cells(doc), f"{pt['seconds']:.4g}", human_params(pt["params"]),
                     "—" if name == "SSU" else times(pt["speedup"])])
    header = ["Constructor", *(t for _k, t, _p in COLUMNS), "Graph construction from raw text (s / batch)",
              "Params", "SSU faster (from raw text)"]
    return data, _md_table(header, rows)


def table3(full: Mapping[str, Any], no_anchor: Mapping[str, Any],
           no_anchor_cross: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """Table 3: effect of the semantic anchor (the paper's rows), optionally with a row that also
    drops the fusion graph's cross-modal edges."""
    rows, data = [], {}
    if no_anchor_cross is not None:
        rows.append(["w/o Anchor and cross-modal edges", *_metric_cells(no_anchor_cross)])
        data["no_anchor_cross"] = _summary(no_anchor_cross)
    rows += [["w/o Semantic Anchor", *_metric_cells(no_anchor)], ["Full model (SSU)", *_metric_cells(full)]]
    data.update({"no_anchor": _summary(no_anchor), "full": _summary(full)})
    return data, _md_table(["Method", *(t for _k, t, _p in COLUMNS)], rows)


def table4(full: Mapping[str, Any], losses: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], str]:
    """Table 4: loss combinations, in the paper's row order (rows present in ``losses``)."""
    data: dict[str, Any] = {}
    rows = []
    labels = dict(LOSS_ROWS)
    order = [k for k, _l in LOSS_ROWS if k in losses] + [k for k in losses if k not in labels]
    for key in order:
        data[key] = _summary(losses[key])
        rows.append([labels.get(key, key), *_metric_cells(losses[key])])
    data["full"] = _summary(full)
    rows.append(["Full (all losses)", *_metric_cells(full)])
    return data, _md_table(["Loss combination", *(t for _k, t, _p in COLUMNS)], rows)


def fig4(points: Mapping[str, Mapping[str, float]], path: Path | str, title: str = "") -> dict[str, tuple[float, float]]:
    """Fig. 4: parameters vs graph-construction time per batch (``constructor_points``: from raw
    text), log axes, one labelled point per constructor. Returns each point's pixel position (x, y from the top-left) in the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise DataError("fig4: no points")
    for name, pt in points.items():
        if not (pt["seconds"] > 0 and pt["params"] > 0 and math.isfinite(pt["seconds"])):
            raise DataError(f"fig4: {name} needs positive time and parameter count")
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    colours = {}
    for name, pt in points.items():
        colour = "#d62728" if name == "SSU" else "#1f77b4"
        colours[name] = colour
        ax.scatter([pt["seconds"]], [pt["params"]], s=90, color=colour, zorder=3, edgecolors="none")
        ax.annotate(name, (pt["seconds"], pt["params"]), textcoords="offset points", xytext=(8, 6), fontsize=10)
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = [p["seconds"] for p in points.values()]
    ys = [p["params"] for p in points.values()]
    ax.set_xlim(min(xs) / 4, max(xs) * 4)
    ax.set_ylim(min(ys) / 4, max(ys) * 4)
    ax.set_xlabel("graph construction from raw text per batch (s, log)")
    ax.set_ylabel("parameters (log)")
    ax.set_title(title or "Model size vs graph construction time")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    pixels = {}
    for name, pt in points.items():
        x, y = ax.transData.transform((pt["seconds"], pt["params"]))
        pixels[name] = (float(x), float(height - y))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return pixels
