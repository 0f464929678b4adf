"""A tiny trained workspace made by the real stages, for tests of what reads model folders.

`features` -> `parse` -> `text-features` -> `train` -> `evaluate` through the CLI, with the project's
params shrunk to a model that trains in seconds (2 seeds, 1 epoch, hidden 16).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()


def invoke(args, **kw):
    """`python -m stages ARGS` in-process (paths and numbers given as they are)."""
    return runner.invoke(app, [str(a) for a in args], **kw)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def tiny_params(**model) -> dict:
    """The project's params.yaml with a tiny model and a one-epoch, two-seed training."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"] = {"seeds": [0, 1], "device": "cpu"}
    params["parse"]["cache"] = None
    params["model"].update(hidden=16, heads=2, gat_layers=1, score_dim=8, edge_dim=8, max_nodes=8,
                           max_edges_per_node=4, fusion_k=2, **model)
    params["train"].update(epochs=1, patience=1, batch_size=8, eval_batch_size=16, threads=1)
    params["evaluate"] = {"batch_size": 16, "png": False}
    return params


def train_tiny(root: Path, params: dict, train: Sequence[str],
               evaluate: Mapping[str, tuple[Path, Path, Path]]) -> None:
    """Write ``root/params.yaml``, run the stages on ``root/sample.pkl``, train ``train`` into
    ``root/models/<variant>`` and evaluate each variant of ``evaluate`` into its (metrics JSON,
    predictions parquet, plots folder)."""
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = ["--params", root / "params.yaml"]
    ok(invoke(["features", *p, "--input", root / "sample.pkl", "--out", root / "features"]))
    ok(invoke(["parse", *p, "--input", root / "features", "--out", root / "parse"]))
    ok(invoke(["text-features", *p, "--parse", root / "parse", "--out", root / "text_features"]))
    dirs = ["--features", root / "features", "--parse", root / "parse", "--text-features", root / "text_features"]
    for variant in train:
        ok(invoke(["train", "--variant", variant, *p, *dirs, "--out", root / "models" / variant,
                   "--live", root / "dvclive" / variant]))
    for variant, (metrics, predictions, plots) in evaluate.items():
        ok(invoke(["evaluate", "--variant", variant, *p, *dirs, "--models", root / "models" / variant,
                   "--out", metrics, "--predictions", predictions, "--plots", plots]))
