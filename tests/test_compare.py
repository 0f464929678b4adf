"""`compare`: fixture metrics + latency JSONs -> Tables 2-4 (markdown + JSON) and the Fig. 4 PNG."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ssu_model import reporting
from ssu_model.errors import DataError
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
KEYS = ("Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Acc5", "Acc7", "MAE", "Corr")
LOSSES = ["reg_only", "reg_align", "reg_self", "reg_sup", "reg_self_align", "reg_sup_align", "reg_sup_self"]


def metrics_doc(variant, acc, mae, std=0.01):
    mean = {k: acc for k in KEYS}
    mean.update(MAE=mae, Corr=0.5)
    return {"variant": variant, "n_seeds": 2, "seeds": [0, 1], "mean": mean,
            "std": {k: std for k in KEYS}, "per_seed": {"0": mean, "1": mean}}


def latency_doc(name, ssu_s, llm_s, ssu_p=23_000_000, llm_p=160_000_000):
    return {"batch_size": 128, "constructors": {
        "SSU": {"seconds_median": ssu_s, "params_total": ssu_p, "params": {"ssu": ssu_p}},
        name: {"seconds_median": llm_s, "params_total": llm_p, "params": {"llm": llm_p}}}}


@pytest.fixture
def run_dir(tmp_path):
    m = tmp_path / "metrics"
    m.mkdir()
    docs = {"full": metrics_doc("full", 0.80, 0.70), "no_anchor": metrics_doc("no_anchor", 0.75, 0.80),
            "no_anchor_no_cross": metrics_doc("no_anchor_no_cross", 0.74, 0.85),
            "llm_tiny": metrics_doc("llm_tiny", 0.70, 0.90)}
    for i, v in enumerate(LOSSES):
        docs[v] = metrics_doc(v, 0.70 + 0.01 * i, 0.9 - 0.01 * i)
    for v, d in docs.items():
        (m / f"{v}.json").write_text(json.dumps(d))
    (m / "latency_tiny.json").write_text(json.dumps(latency_doc("tiny", 0.01, 5.0)))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["llm_graphs"]["models"] = {"tiny": {"path": "x", "precision": "fp32"}}
    params["compare"].update(metrics=str(m), out=str(tmp_path / "reports"),
                             plot=str(tmp_path / "plots" / "fig4.png"), loss_variants=LOSSES)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_compare_stage_writes_tables_json_and_png(run_dir):
    result = runner.invoke(app, ["compare", "--params", str(run_dir / "params.yaml")])
    assert result.exit_code == 0, result.output
    md = (run_dir / "reports" / "compare.md").read_text()
    for title in ("Table 2", "Table 3", "Table 4", "Acc2 (Has0)", "Acc2 (Non0)", "F1 (Non0)", "500x"):
        assert title in md, title
    assert "| tiny | 70.00 ± 1.00 |" in md
    assert "| SSU | 80.00 ± 1.00 |" in md
    assert "0.7000 ± 0.0100" in md  # SSU MAE
    # paper row order of Table 4, then the full model
    order = [md.index(label) for label in ("L_reg only |", "L_reg + L_align |", "L_reg + L_sup + L_self |",
                                           "Full (all losses)")]
    assert order == sorted(order)
    rep = json.loads((run_dir / "reports" / "compare.json").read_text())
    assert rep["table2"]["tiny"]["ssu_speedup"] == pytest.approx(500.0)
    assert rep["table2"]["SSU"]["mean"]["Non0_F1"] == pytest.approx(0.80)
    assert rep["table3"]["no_anchor"]["mean"]["MAE"] == pytest.approx(0.80)
    assert rep["table3"]["no_anchor_cross"]["mean"]["MAE"] == pytest.approx(0.85)
    assert md.index("w/o Anchor and cross-modal edges |") < md.index("w/o Semantic Anchor |") < md.index("Full model (SSU) |")
    assert set(rep["table4"]) == set(LOSSES) | {"full"}
    img = Image.open(run_dir / "plots" / "fig4.png")
    img.load()
    assert img.size[0] > 100 and img.size[1] > 100


def test_fig4_draws_each_point_where_it_says(tmp_path):
    points = {"SSU": {"seconds": 0.015, "params": 3e8}, "llama": {"seconds": 8.45, "params": 8e9},
              "gemma": {"seconds": 3.77, "params": 2e9}}
    pixels = reporting.fig4(points, tmp_path / "f.png")
    rgb = np.asarray(Image.open(tmp_path / "f.png").convert("RGB")).astype(int)
    colours = {"SSU": (0xD6, 0x27, 0x28), "llama": (0x1F, 0x77, 0xB4), "gemma": (0x1F, 0x77, 0xB4)}
    for name, (x, y) in pixels.items():
        patch = rgb[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3]
        dist = np.abs(patch - np.array(colours[name])).sum(-1)
        assert dist.min() < 30, f"no {name} marker at pixel {(x, y)}"
    # log axes: the 8B point sits above and right of SSU
    assert pixels["llama"][0] > pixels["SSU"][0] and pixels["llama"][1] < pixels["SSU"][1]


def test_compare_missing_metrics_is_one_clear_error(run_dir):
    (run_dir / "metrics" / "no_anchor.json").unlink()
    result = runner.invoke(app, ["compare", "--params", str(run_dir / "params.yaml")])
    assert result.exit_code == 1
    assert "metrics of variant no_anchor not found" in result.output
    assert not (run_dir / "reports" / "compare.json").exists()


def test_bad_metrics_and_latency_are_rejected():
    doc = metrics_doc("x", 0.5, 1.0)
    del doc["std"]["Non0_F1"]
    with pytest.raises(DataError, match="std.Non0_F1"):
        reporting.check_metrics(doc, "x.json")
    with pytest.raises(DataError, match="no SSU entry"):
        reporting.check_latency({"constructors": {"a": {"seconds_median": 1, "params_total": 1}}}, "l.json")
    with pytest.raises(DataError, match="no latency record"):
        reporting.table2(metrics_doc("full", .8, .7), {"other": metrics_doc("o", .7, .9)},
                         {"tiny": latency_doc("tiny", 0.01, 1.0)})
