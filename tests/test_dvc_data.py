"""`dvc repro` of `sample` -> `features` in a temporary git + DVC repository (no remote, no network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssu_model.data.features import open_splits
from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _repo(tmp_path: Path) -> tuple[Path, dict]:
    repo = tmp_path / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("stages", "ssu_model"):
        shutil.copytree(ROOT / package, repo / package, ignore=ignore)
    (repo / "data").mkdir()
    for name in ("README.md", ".gitignore"):
        shutil.copy(ROOT / "data" / name, repo / "data" / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample"]["sizes"] = [24, 8, 10]  # tiny: this test is about the DVC wiring
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Only the data stages: the later stages of the real dvc.yaml need outputs of other parts.
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {k: stages[k] for k in ("sample", "features")}}, sort_keys=False)
    )
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` in the stage cmd = this venv
        PYTHONPATH=str(repo),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
    )
    _run(["git", "init", "-q"], repo, env)
    _run([str(BIN / "dvc"), "init", "-q"], repo, env)
    _run([str(BIN / "dvc"), "config", "core.analytics", "false"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-q", "-m", "init"], repo, env)
    return repo, env


@pytest.mark.slow  # ~5 DVC invocations: 40-70 s on the shared 2-core machine
def test_dvc_repro_sample_and_features(tmp_path):
    repo, env = _repo(tmp_path)
    dvc = str(BIN / "dvc")
    first = _run([dvc, "repro", "features"], repo, env)
    assert "Running stage 'sample'" in first.stdout and "Running stage 'features'" in first.stdout
    splits = open_splits(repo / "data" / "features")
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [24, 8, 10]
    assert (repo / "data" / "features" / "report.json").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"sample", "features"} <= set(lock)

    # Nothing changed: a second repro runs nothing; status is clean.
    second = _run([dvc, "repro", "features"], repo, env)
    assert "Running stage" not in second.stdout and "didn't change" in second.stdout

    # Outputs are git-ignored (data/.gitignore) and only tracked by DVC.
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], repo, env).stdout
    assert "mosi_sample.pkl" not in status and ".arrow" not in status

    # Deterministic: regenerating from scratch gives the same hashes in dvc.lock.
    shutil.rmtree(repo / "data" / "sample")
    shutil.rmtree(repo / "data" / "features")
    _run([dvc, "repro", "--force", "features"], repo, env)
    again = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in ("sample", "features"):
        assert again[stage]["outs"] == lock[stage]["outs"], stage

    # A params change of the sample section re-runs both stages.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sample"]["sizes"] = [20, 8, 10]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _run([dvc, "repro", "features"], repo, env)
    assert "Running stage 'sample'" in third.stdout and "Running stage 'features'" in third.stdout
    assert len(open_splits(repo / "data" / "features")["train"]) == 20
