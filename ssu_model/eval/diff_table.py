"""The markdown table of `python -m stages diff`: one row per metric, a and b, the difference, CI, verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ssu_model.eval import tables
from ssu_model.eval.metrics import LOWER_IS_BETTER
from ssu_model.eval.significance import NUMERIC_TOLERANCE, PERCENT_METRICS


def _scale(name: str) -> float:
    return 100.0 if name in PERCENT_METRICS else 1.0


def _num(name: str, v: float, signed: bool = False) -> str:
    digits = 2 if name in PERCENT_METRICS else 4
    x = v * _scale(name)
    if x == 0.0 or (signed and abs(v) <= NUMERIC_TOLERANCE):
        x = 0.0  # not "-0.00", and a rounding-size difference (see NUMERIC_TOLERANCE) is none
    if signed and x != 0.0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:+.1e}"  # a difference too small for the fixed digits is still shown as one
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def format_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """The metric table: metric | a | b | b - a | CI | p (seeds) | verdict."""
    conf = int(round(100 * (1 - report["settings"]["alpha"])))
    header = ["metric", "a (mean ± std)", "b (mean ± std)", "b − a", f"{conf}% CI (bootstrap)", "p (seeds)", "verdict"]
    rows = []
    for name, r in report["metrics"].items():
        unit = " (%)" if name in PERCENT_METRICS else (" ↓" if name in LOWER_IS_BETTER else "")
        boot = r["bootstrap"]
        ci = "n/a" if boot is None else f"[{_num(name, boot['ci_low'], True)}, {_num(name, boot['ci_high'], True)}]"
        cells = [f"{name}{unit}",
                 f"{_num(name, r['a']['mean'])} ± {_num(name, r['a']['std'])}",
                 f"{_num(name, r['b']['mean'])} ± {_num(name, r['b']['std'])}",
                 _num(name, r["diff"], True), ci, format_p(r["seed_test"]["p"]), r["verdict"]]
        rows.append(cells)
    return tables.markdown_table(tables.frame(header, rows), ["left"] + ["right"] * 5 + ["left"]) + "\n"
