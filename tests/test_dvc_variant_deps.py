"""Changing one variant's params re-runs that variant only, as `dvc status` sees it.

The sample's dvc.yaml, params.yaml and the committed dvc.lock are copied into a bare DVC project
(no data: every stage also reports its missing deps and outs, which is ignored here); `dvc status`
is asked which stages see a changed params entry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DVC = Path(sys.executable).with_name("dvc")


def _params_changes(project: Path) -> dict[str, dict]:
    """dvc stage name -> its changed params entries."""
    done = subprocess.run([str(DVC), "status", "--json"], cwd=project, capture_output=True, text=True, check=True)
    changes = {}
    for stage, entries in json.loads(done.stdout or "{}").items():
        for entry in entries:
            if isinstance(entry, dict):
                params = entry.get("changed deps", {}).get("params.yaml")
                if params:
                    changes[stage] = params
    return changes


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if not DVC.is_file():
        pytest.skip(f"dvc not installed beside {sys.executable}")
    for name in ("dvc.yaml", "params.yaml", "dvc.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    subprocess.run([str(DVC), "init", "-q", "--no-scm"], cwd=tmp_path, check=True)
    return tmp_path


def _set_variant(project: Path, variant: str, overrides: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["variants"][variant] = overrides
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_committed_lock_matches_params(project: Path):
    assert _params_changes(project) == {}, "dvc.lock is stale against params.yaml: re-run dvc repro"


def test_one_variant_change_reruns_only_that_variant(project: Path):
    _set_variant(project, "reg_only", {"model": {"lambda_sup": 0.0, "lambda_self": 0.0, "lambda_align": 0.5}})
    assert set(_params_changes(project)) == {"train@reg_only"}


def test_explained_variant_change_reruns_it_and_explain(project: Path):
    _set_variant(project, "no_anchor", {"model": {"use_anchor": False, "hidden": 32}})
    assert set(_params_changes(project)) == {"train@no_anchor", "explain"}
