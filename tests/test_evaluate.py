"""The evaluate stage: contract-D metrics JSON, predictions Parquet, plots."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ssu_model.eval.metrics import METRIC_NAMES, regression_metrics
from stages.cli import app
from tests.test_train import _edit, make_workspace, train_args

runner = CliRunner()


def eval_args(ws, variant="full"):
    return ["evaluate", "--variant", variant, "--params", str(ws / "params.yaml"),
            "--models", str(ws / "models" / variant), "--features", str(ws / "features"),
            "--parse", str(ws / "parse"), "--text-features", str(ws / "text_features"),
            "--out", str(ws / "metrics" / f"{variant}.json"),
            "--predictions", str(ws / "reports" / f"{variant}.parquet"), "--plots", str(ws / "plots" / variant)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("ws"))
    r = runner.invoke(app, train_args(ws))
    assert r.exit_code == 0, r.output
    return ws


def test_evaluate_outputs(trained):
    ws = trained
    r = runner.invoke(app, eval_args(ws))
    assert r.exit_code == 0, r.output
    rep = json.loads((ws / "metrics" / "full.json").read_text())
    assert rep["variant"] == "full" and rep["n_seeds"] == 2 and rep["seeds"] == [0, 1]
    assert set(rep["mean"]) == set(rep["std"]) == set(METRIC_NAMES)
    assert set(rep["per_seed"]) == {"0", "1"}
    for name in METRIC_NAMES:
        vals = [rep["per_seed"][s][name] for s in ("0", "1")]
        assert rep["mean"][name] == pytest.approx(np.mean(vals))
        assert rep["std"][name] == pytest.approx(np.std(vals))

    table = pq.read_table(ws / "reports" / "full.parquet").to_pandas()
    assert list(table.columns) == ["seed", "id", "label", "prediction"]
    assert len(table) == 2 * 12
    # the per-seed metrics are recomputable from the predictions file
    for seed in (0, 1):
        part = table[table.seed == seed]
        assert list(part.id) == sorted(part.id)
        m = regression_metrics(part.prediction.to_numpy(), part.label.to_numpy())
        assert m["MAE"] == pytest.approx(rep["per_seed"][str(seed)]["MAE"], abs=1e-5)
        assert m["Acc7"] == pytest.approx(rep["per_seed"][str(seed)]["Acc7"])

    plots = ws / "plots" / "full"
    conf = json.loads((plots / "confusion.json").read_text())
    assert len(conf) == 2 * 12 and set(conf[0]) == {"actual", "predicted"}
    acc7 = np.mean([c["actual"] == c["predicted"] for c in conf])
    assert acc7 == pytest.approx(rep["mean"]["Acc7"])
    scatter = json.loads((plots / "scatter.json").read_text())
    assert len(scatter) == 24 and {"label", "prediction", "seed", "id"} <= set(scatter[0])
    curves = json.loads((plots / "curves.json").read_text())
    assert {c["seed"] for c in curves} == {0, 1} and "valid_MAE" in curves[0]
    for png in ("confusion.png", "scatter.png", "curves.png"):
        assert (plots / png).stat().st_size > 1000


def test_evaluate_is_deterministic(trained):
    ws = trained
    assert runner.invoke(app, eval_args(ws)).exit_code == 0
    first = (ws / "metrics" / "full.json").read_text()
    assert runner.invoke(app, eval_args(ws)).exit_code == 0
    assert (ws / "metrics" / "full.json").read_text() == first


def test_evaluate_matches_model_predictions(trained):
    """Predictions equal a fresh forward pass of the loaded checkpoint."""
    from ssu_model.train.checkpoints import load_checkpoint, model_from_checkpoint
    from ssu_model.train.loop import predict
    from stages.modelling import load_inputs

    ws = trained
    assert runner.invoke(app, eval_args(ws)).exit_code == 0
    ck = load_checkpoint(ws / "models" / "full" / "seed_1.pt")
    model = model_from_checkpoint(ck)
    ex, _l, _d = load_inputs(("test",), ws / "features", ws / "parse", ws / "text_features", None,
                             ("text", "audio", "vision"))
    p, _ = predict(model, ex["test"])
    table = pq.read_table(ws / "reports" / "full.parquet").to_pandas()
    part = table[table.seed == 1].set_index("id")
    for e, v in zip(ex["test"], p):
        assert part.loc[e.id, "prediction"] == pytest.approx(float(v), abs=1e-5)


def test_missing_seed_checkpoint_is_named(trained, tmp_path):
    ws = trained
    _edit(ws, lambda p: p["base"].update(seeds=[0, 1, 7]))
    try:
        r = runner.invoke(app, eval_args(ws))
        assert r.exit_code == 1 and "lacks checkpoints for seeds [7]" in r.output
    finally:
        _edit(ws, lambda p: p["base"].update(seeds=[0, 1]))


def test_missing_models_dir(tmp_path):
    ws = make_workspace(tmp_path, sizes=(6, 4, 4))
    r = runner.invoke(app, eval_args(ws, "full"))
    assert r.exit_code == 1 and "model folder not found" in r.output
    assert not (ws / "metrics" / "full.json").exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    ws = make_workspace(tmp_path, sizes=(6, 4, 4), seeds=(0,))
    (ws / "models" / "full").mkdir(parents=True)
    (ws / "models" / "full" / "seed_0.pt").write_bytes(b"not a checkpoint")
    r = runner.invoke(app, eval_args(ws))
    assert r.exit_code == 1 and "not a loadable checkpoint" in r.output


def test_checkpoint_refuses_pickled_objects(tmp_path):
    """weights_only loading rejects arbitrary objects."""
    from ssu_model.errors import DataError
    from ssu_model.train.checkpoints import load_checkpoint

    torch.save({"format": 1, "evil": object()}, tmp_path / "x.pt")
    with pytest.raises(DataError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_seed_groups_trained_apart_evaluate_as_one_variant(trained, tmp_path):
    """`train --seeds` writes one folder per seed group (one DVC stage each); `evaluate` with one
    --models per folder gives the very report, predictions and curves of the one-stage run."""
    ws = trained
    assert runner.invoke(app, eval_args(ws)).exit_code == 0
    groups = []
    for seeds in ("1", "0"):
        out = tmp_path / f"group_{seeds}"
        args = train_args(ws)
        args[args.index("--out") + 1] = str(out)
        r = runner.invoke(app, [*args, "--seeds", seeds])
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in out.glob("seed_*.pt")) == [f"seed_{seeds}.pt"]
        groups += ["--models", str(out)]
    args = eval_args(ws)
    i = args.index("--models")
    args[i:i + 2] = groups
    args[args.index("--out") + 1] = str(tmp_path / "m.json")
    args[args.index("--predictions") + 1] = str(tmp_path / "p.parquet")
    args[args.index("--plots") + 1] = str(tmp_path / "plots")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.json").read_text() == (ws / "metrics" / "full.json").read_text()
    assert pq.read_table(tmp_path / "p.parquet").equals(pq.read_table(ws / "reports" / "full.parquet"))
    assert (tmp_path / "plots" / "curves.json").read_text() == (ws / "plots" / "full" / "curves.json").read_text()
    args[i:i + 2] = ["--models", groups[1], "--models", groups[1]]  # seed 1 twice
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "two model folders: [1]" in r.output


@pytest.mark.parametrize("seeds", ["0,7", "0,0", "x"])
def test_train_refuses_seeds_outside_base_seeds(trained, seeds):
    r = runner.invoke(app, [*train_args(trained), "--seeds", seeds])
    assert r.exit_code == 2 and "--seeds" in r.output
