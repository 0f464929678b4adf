"""Whole-pipeline properties under DVC, in a temporary git + DVC copy of the project.

- `dvc repro` builds sample -> features -> parse -> text-features -> train -> evaluate;
- a second `dvc repro` runs nothing;
- changing only `train.lr` re-runs train and evaluate but not features/parse/text-features;
- `dvc metrics diff` then shows the change.

Targets are `evaluate@full` and `evaluate@text_only` (and what they depend on) on a tiny
sample, so the test stays within a few minutes on 2 cores; the README's `dvc repro` runs
every variant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TARGETS = ["evaluate@full", "evaluate@text_only"]


def _run(cmd, cwd, env):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def _project_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [f for f in listed if not f.startswith(("tests/", "docs/", "benchmarks/", ".github/"))
            and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    dst = tmp_path_factory.mktemp("pipeline")
    for rel in _project_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["base"]["seeds"] = [0]
    if "sample" in params:
        params["sample"]["sizes"] = [64, 24, 32]
    params["train"]["epochs"] = 2
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.invalid"
    _run(["git", "init", "-q"], dst, env)
    if not (dst / ".dvc").is_dir():
        _run(["dvc", "init", "-q"], dst, env)
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-q", "-m", "init"], dst, env)  # dvclive needs a commit
    return dst, env


def _ran(log: str) -> set[str]:
    """Stage names DVC reports as running in a repro log."""
    names = set()
    for line in log.splitlines():
        if line.startswith("Running stage '"):
            names.add(line.split("'")[1])
    return names


def test_repro_then_noop_then_lr_change(repo):
    dst, env = repo
    log = _run(["dvc", "repro", *TARGETS], dst, env)
    ran = _ran(log)
    for stage in ("features", "parse", "text-features", "train@full", "evaluate@full", "train@text_only"):
        assert stage in ran, (stage, ran)
    rep = json.loads((dst / "metrics" / "full.json").read_text())
    assert rep["n_seeds"] == 1 and 0.0 <= rep["mean"]["Non0_acc_2"] <= 1.0
    assert (dst / "reports" / "predictions" / "full.parquet").is_file()
    assert (dst / "models" / "full" / "seed_0.pt").is_file()
    assert (dst / "dvclive" / "full" / "seed_0" / "plots" / "metrics").is_dir()
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-q", "-m", "run"], dst, env)

    # nothing changed -> nothing runs
    log = _run(["dvc", "repro", *TARGETS], dst, env)
    assert not _ran(log), log

    # only train.lr changes -> train + evaluate re-run, data stages do not
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] * 3
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = _run(["dvc", "repro", *TARGETS], dst, env)
    ran = _ran(log)
    assert {"train@full", "evaluate@full", "train@text_only", "evaluate@text_only"} <= ran, ran
    assert not ran & {"sample", "features", "parse", "text-features"}, ran

    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], dst, env).split("\n", 1)[0] or "{}")
    changed = diff.get("metrics/full.json", {})
    assert changed, f"dvc metrics diff shows no change for metrics/full.json: {diff}"
    assert any(v.get("diff") not in (0, None) for v in changed.values())
