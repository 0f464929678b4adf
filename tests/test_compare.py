"""`compare`: fixture metrics + latency JSONs -> Tables 2-4 (markdown + JSON) and the Fig. 4 PNG."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ssu_model.errors import DataError
from ssu_model.eval import reporting
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
KEYS = ("Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Acc5", "Acc7", "MAE", "Corr")
LOSSES = ["reg_only", "reg_align", "reg_self", "reg_sup", "reg_self_align", "reg_sup_align", "reg_sup_self"]


def metrics_doc(variant, acc, mae, std=0.01):
    mean = dict.fromkeys(KEYS, acc)
    mean.update(MAE=mae, Corr=0.5)
    return {"variant": variant, "n_seeds": 2, "seeds": [0, 1], "mean": mean,
            "std": dict.fromkeys(KEYS, std), "per_seed": {"0": mean, "1": mean}}


def latency_doc(name, ssu_s, llm_s, graphs_s=None, ssu_p=23_000_000, llm_p=160_000_000):
    """A latency record as `llm-graphs` writes it (one timed batch): SSU from raw text ``ssu_s``
    (60 % of it the encoder forward), SSU graphs only ``graphs_s``, the LLM from raw text ``llm_s``."""
    from benchmarks.latency_record import latency_report

    rest = 0.4 * ssu_s / 5
    call = {"parse": rest, "subword_ids": rest, "encoder_forward": 0.6 * ssu_s, "records": rest, "collate": rest,
            "build_graphs": rest}
    llm = {"input_forward_pooling": llm_s, "collate": 0.0, "build_graphs": 0.0}
    return latency_report(name, [[call]], [[graphs_s if graphs_s is not None else ssu_s / 10]], [llm],
                             batch_size=128, batch_sizes=[128], threads=2,
                             params={"SSU": {"ssu": ssu_p}, name: {"llm": llm_p}})


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
    (m / "latency_tiny.json").write_text(json.dumps(latency_doc("tiny", 0.05, 5.0, graphs_s=0.01)))
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
    for title in ("Table 2", "Table 3", "Table 4", "Acc2 (Has0)", "Acc2 (Non0)", "F1 (Non0)"):
        assert title in md, title
    # the headline is from raw text (5.0 s / 0.05 s); graphs only (5.0 / 0.01) only in the breakdown
    table2 = md[md.index("## Table 2"):md.index("### Graph-construction latency breakdown")]
    assert "Graph construction from raw text (s / batch)" in table2 and "SSU faster (from raw text)" in table2
    assert "| 100x |" in table2 and "500x" not in table2
    breakdown = md[md.index("### Graph-construction latency breakdown"):md.index("## Table 3")]
    assert "ratio from raw text (headline)" in breakdown and "ratio graphs only (breakdown)" in breakdown
    # like for like: the LLM side never times the MiniLM node features, so neither side does (5.0 / 0.02)
    assert "| **100x** | 250x | 500x |" in breakdown and "ratio from raw text, encoder off both clocks" in breakdown
    assert "SSU.build_graphs alone on an already collated batch" in breakdown  # what each clock covers
    assert "| tiny | 70.00 ± 1.00 |" in md
    assert "| SSU | 80.00 ± 1.00 |" in md
    assert "0.7000 ± 0.0100" in md  # SSU MAE
    # paper row order of Table 4, then the full model
    order = [md.index(label) for label in ("L_reg only |", "L_reg + L_align |", "L_reg + L_sup + L_self |",
                                           "Full (all losses)")]
    assert order == sorted(order)
    rep = json.loads((run_dir / "reports" / "compare.json").read_text())
    assert rep["table2"]["tiny"]["ssu_faster_from_raw_text"] == pytest.approx(100.0)
    assert rep["table2"]["SSU"]["seconds_per_batch_from_raw_text"] == pytest.approx(0.05)
    assert rep["latency"]["tiny"]["ratio_graphs_only"] == pytest.approx(500.0)
    assert rep["latency"]["tiny"]["ssu_from_raw_text_no_encoder"] == pytest.approx(0.02)
    assert rep["latency"]["tiny"]["ratio_constructors_encoder_off_both"] == pytest.approx(250.0)
    assert rep["fig4"]["SSU"]["seconds"] == pytest.approx(0.05) and rep["fig4"]["tiny"]["speedup"] == pytest.approx(100.0)
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
    good = latency_doc("tiny", 0.05, 5.0)
    reporting.check_latency(good, "l.json")
    bad = json.loads(json.dumps(good))
    del bad["ssu_from_raw_text_no_encoder"]
    with pytest.raises(DataError, match="lacks ssu_from_raw_text_no_encoder"):
        reporting.check_latency(bad, "l.json")
    bad = json.loads(json.dumps(good))
    bad["ratio_from_raw_text"] = bad["ratio_graphs_only"]  # a graphs-only ratio passed off as the headline
    with pytest.raises(DataError, match="ratio_from_raw_text is not llm_from_raw_text / ssu_from_raw_text"):
        reporting.check_latency(bad, "l.json")
    bad = json.loads(json.dumps(good))
    del bad["params"]["SSU"]
    with pytest.raises(DataError, match="params.SSU.total"):
        reporting.check_latency(bad, "l.json")
    with pytest.raises(DataError, match="no latency record"):
        reporting.table2(metrics_doc("full", .8, .7), {"other": metrics_doc("o", .7, .9)},
                         {"tiny": latency_doc("tiny", 0.01, 1.0)})


OLD_FORMAT = {"batch_size": 128, "speedup": 729.0, "constructors": {  # before the raw-text clock
    "SSU": {"seconds_median": 0.014, "params_total": 22_850_439, "what": "SSU.build_graphs"},
    "smollm2": {"seconds_median": 10.17, "params_total": 157_583_671}}}


def test_old_format_latency_record_is_one_clear_line(run_dir):
    with pytest.raises(DataError, match="old format .*re-run llm-graphs"):
        reporting.check_latency(OLD_FORMAT, "latency_smollm2.json")
    (run_dir / "metrics" / "latency_tiny.json").write_text(json.dumps(OLD_FORMAT))
    result = runner.invoke(app, ["compare", "--params", str(run_dir / "params.yaml")])
    assert result.exit_code == 1
    assert "latency_tiny.json: latency record of the old format" in result.output
    assert "Traceback" not in result.output
    assert not (run_dir / "reports" / "compare.json").exists()


def test_speed_ups_keep_a_decimal_below_100x():
    assert [reporting.times(r) for r in (6.822, 27.55, 99.99999, 729.4)] == ["6.8x", "27.6x", "100x", "729x"]


def test_reader_and_writer_agree_on_the_latency_format():
    from benchmarks.latency_record import LATENCY_FORMAT, LATENCY_WHAT, RATIO_WHAT

    assert reporting.LATENCY_FORMAT == LATENCY_FORMAT
    assert set(reporting.LATENCY_CLOCKS) == set(LATENCY_WHAT)
    assert set(reporting.LATENCY_RATIOS) == set(RATIO_WHAT)
    for key, (num, den) in reporting.LATENCY_RATIOS.items():
        assert RATIO_WHAT[key].startswith(f"{num} / {den}")


def test_report_links_the_plot_and_names_the_encoder_from_a_pipeline_folder(run_dir, monkeypatch):
    """A real-data pipeline keeps its report and plot under pipelines/<name>/ (paths relative to the
    repository root, the stages' wdir): the image link is relative to the report's folder, and the
    latency breakdown names the text encoder the latency record says gave the node features."""
    import re

    monkeypatch.chdir(run_dir)
    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    params["compare"].update(out="pipe/x/reports", plot="pipe/x/plots/fig4.png")
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params))
    record = run_dir / "metrics" / "latency_tiny.json"
    doc = json.loads(record.read_text())
    doc["parse_settings"] = {"text_encoder": "mpnet"}
    record.write_text(json.dumps(doc))
    result = runner.invoke(app, ["compare", "--params", "params.yaml"])
    assert result.exit_code == 0, result.output
    reports = run_dir / "pipe" / "x" / "reports"
    md = (reports / "compare.md").read_text()
    link = re.search(r"!\[Fig\. 4[^\]]*\]\(([^)]+)\)", md).group(1)
    assert link == "../plots/fig4.png"
    assert (reports / link).resolve() == (run_dir / "pipe" / "x" / "plots" / "fig4.png").resolve()
    assert "- text encoder giving the node features (`text_features.model_path`): mpnet" in md
