"""Sweeps through DVC's experiment queue (README, "Scaling out"), in a temporary git + DVC repository.

A one-stage project whose stage turns two params (`train.lr`, `base.seeds`, the names the real
pipeline uses) into a metrics file; two experiments are queued with `dvc exp run --queue -S ...`,
run by `dvc queue start -j 1`, and both must show up with their metrics in `dvc exp show --json`.
No remote, no network, nothing of the project's own repository is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")

STEP = """\
import json

import yaml

p = yaml.safe_load(open("params.yaml"))
score = p["train"]["lr"] * 10 + sum(p["base"]["seeds"])
json.dump({"score": score}, open("metrics.json", "w"))
"""


def _run(args: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _project(tmp_path: Path) -> tuple[Path, dict]:
    repo = tmp_path / "sweep"
    repo.mkdir()
    (repo / "params.yaml").write_text("train:\n  lr: 0.1\nbase:\n  seeds: [0]\n")
    (repo / "step.py").write_text(STEP)
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  step:\n"
        f"    cmd: {sys.executable} step.py\n"
        "    deps: [step.py]\n"
        "    params: [train, base]\n"
        "    metrics:\n"
        "      - metrics.json:\n"
        "          cache: false\n"
    )
    env = dict(os.environ)
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the queue worker runs `dvc` found on PATH
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    _run(["git", "init", "-q"], repo, env)
    _run([DVC, "init", "-q"], repo, env)
    _run([DVC, "config", "core.analytics", "false"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-q", "-m", "init"], repo, env)
    return repo, env


def _experiments(show: list[dict]) -> dict[str, dict]:
    """name -> {"params", "metrics", "state"} for the experiments of `dvc exp show --json`."""
    found = {}
    for row in show:
        for exp in row.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                found[rev["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": data["metrics"].get("metrics.json", {}).get("data"),
                    "state": (exp.get("executor") or {}).get("state"),
                }
    return found


@pytest.mark.slow  # ~8 DVC invocations: 20-40 s on the shared 2-core machine
def test_queued_experiments_run_and_show_with_metrics(tmp_path):
    repo, env = _project(tmp_path)
    _run([DVC, "exp", "run", "--queue", "--name", "lr2-seed3", "-S", "train.lr=0.2", "-S", "base.seeds=[3]"],
         repo, env)
    _run([DVC, "exp", "run", "--queue", "--name", "lr3", "-S", "train.lr=0.3"], repo, env)
    assert "Queued" in _run([DVC, "queue", "status"], repo, env).stdout
    _run([DVC, "queue", "start", "-j", "1"], repo, env)
    start = time.monotonic()
    while True:
        status = _run([DVC, "queue", "status"], repo, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        waited = time.monotonic() - start
        # a worker that could not start (e.g. `dvc` not on PATH) leaves the tasks queued forever
        assert not ("0 active, 0 idle" in status and waited > 30), f"no queue worker is running:\n{status}"
        assert waited < 240, f"queue still busy after 240 s:\n{status}"
        time.sleep(2)
    try:
        show = json.loads(_run([DVC, "exp", "show", "--json"], repo, env).stdout)
    finally:
        _run([DVC, "queue", "stop"], repo, env, check=False)  # the worker also exits on its own
    exps = _experiments(show)
    assert set(exps) == {"lr2-seed3", "lr3"}, status
    assert exps["lr2-seed3"]["params"] == {"train": {"lr": 0.2}, "base": {"seeds": [3]}}
    assert exps["lr2-seed3"]["metrics"] == {"score": pytest.approx(5.0)}
    assert exps["lr3"]["metrics"] == {"score": pytest.approx(3.0)}
    assert {e["state"] for e in exps.values()} == {"success"}
    # the workspace itself is untouched: experiments ran in DVC's temporary copies
    assert not (repo / "metrics.json").exists()
