"""`train` under torchrun: DDP on CPU with gloo and 2 processes (slow), and the launch checks (fast).

The slow tests start `python -m torch.distributed.run --standalone --nproc_per_node 2 -m stages
train ...` as a subprocess on the tiny workspace of tests/test_train.py (24/12/12 utterances), so
they exercise what a user runs: the launcher, the rendezvous, the process group, the stage.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.conftest import ROOT
from tests.test_train import make_workspace, train_args

runner = CliRunner()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return env


def _torchrun_cmd(ws: Path, variant: str = "full", out: str = "models") -> list[str]:
    args = train_args(ws, variant)
    args[args.index("--out") + 1] = str(ws / out / variant)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "stages", *args, "--dist-timeout", "60"]


def _torchrun(ws: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun_cmd(ws, **kw), cwd=ws, env=_env(), capture_output=True, text=True,
                          timeout=300)


def _edit(ws: Path, fn) -> None:
    p = yaml.safe_load((ws / "params.yaml").read_text())
    fn(p)
    (ws / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error: ")]


# --------------------------------------------------------------------------- fast: launch checks


def test_rendezvous_from_env():
    from ssu_model.train.distributed import Rendezvous, rendezvous_from_env

    full = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert rendezvous_from_env({}) is None
    assert rendezvous_from_env({"WORLD_SIZE": "1"}) is None  # torchrun with one process = a plain run
    assert rendezvous_from_env(full) == Rendezvous(rank=1, world_size=2, local_rank=1)
    for drop, message in (("RANK", "RANK is not"), ("MASTER_ADDR", "MASTER_ADDR is not"),
                          ("MASTER_PORT", "MASTER_PORT is not")):
        with pytest.raises(ValueError, match=message):
            rendezvous_from_env({k: v for k, v in full.items() if k != drop})
    with pytest.raises(ValueError, match="RANK must be in 0..1"):
        rendezvous_from_env({**full, "RANK": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        rendezvous_from_env({**full, "WORLD_SIZE": "two"})


def test_resolve_backend():
    from ssu_model.train.distributed import resolve_backend

    assert resolve_backend("auto", "cpu") == "gloo"
    assert resolve_backend("auto", "cuda") == "nccl"
    assert resolve_backend("gloo", "cuda") == "gloo"
    with pytest.raises(ValueError, match="nccl backend needs CUDA"):
        resolve_backend("nccl", "cpu")
    with pytest.raises(ValueError, match="unknown distributed backend 'mpi'"):
        resolve_backend("mpi", "cpu")


RDZV = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}


@pytest.mark.parametrize("env, extra, message", [
    ({"WORLD_SIZE": "2"}, (), "WORLD_SIZE=2 is set but RANK is not: start multi-process training with torchrun"),
    ({k: v for k, v in RDZV.items() if k != "MASTER_ADDR"}, (), "WORLD_SIZE=2 is set but MASTER_ADDR is not"),
    ({}, ("--backend", "mpi"), "unknown distributed backend 'mpi'"),
    (RDZV, ("--backend", "nccl"), "nccl backend needs CUDA"),
    (RDZV, ("--dist-timeout", "0"), "collective timeout must be > 0"),
    ({**RDZV, "WORLD_SIZE": "3"}, (), "train.batch_size 8 is not divisible by the world size 3"),
])
def test_bad_launch_fails_with_one_line(tmp_path, monkeypatch, env, extra, message):
    """Checked before any data is read or any process group is joined (MASTER_PORT 1: nothing
    listens there, so a check that came too late would fail differently)."""
    ws = make_workspace(tmp_path, sizes=(8, 4, 4), seeds=(0,))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    r = runner.invoke(app, train_args(ws, extra=extra))
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], r.output
    assert not (ws / "models").exists() and not (ws / "dvclive").exists()


def test_ddp_code_path_in_a_world_of_one_on_cpu(monkeypatch):
    """The CPU (gloo) twin of tests/test_gpu.py's NCCL check, in this process."""
    from tests.test_gpu import fit_in_a_world_of_one

    fit_in_a_world_of_one("cpu", monkeypatch)


# --------------------------------------------------------------------------- slow: 2 processes


@pytest.mark.slow
def test_two_processes_write_one_model_per_seed(tmp_path):
    """A 2-process run completes; rank 0 alone writes the model directory, dvclive and logs."""
    ws = make_workspace(tmp_path, seeds=(0, 1))
    _edit(ws, lambda p: p["train"].update(epochs=2))  # batch 8 = 2 x 4: 3 steps per epoch
    r = _torchrun(ws)
    assert r.returncode == 0, r.stderr[-3000:]
    out = ws / "models" / "full"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "env.json", "history.json", "seed_0.pt", "seed_1.pt"]
    for seed in (0, 1):
        ckpt = torch.load(out / f"seed_{seed}.pt", weights_only=True)
        assert ckpt["seed"] == seed and ckpt["epochs_run"] == 2 and ckpt["state"]
    import json

    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"0", "1"} and all(len(rows) == 2 for rows in history.values())
    assert sorted(p.name for p in (ws / "dvclive" / "full").iterdir()) == ["seed_0", "seed_1"]
    # nothing else appeared in the workspace (rank 1 created no folder of its own)
    assert sorted(p.name for p in ws.iterdir()) == ["dvclive", "features", "models", "params.yaml", "parse",
                                                    "text_features"]
    assert sorted(p.name for p in (ws / "models").iterdir()) == ["full"]
    # one process logged: every line once
    assert r.stderr.count("train[full]: loading data") == 1 and r.stderr.count("train[full]: wrote") == 1
    assert r.stderr.count("seed 1 epoch 2:") == 1
    assert not _error_lines(r.stderr)


@pytest.mark.slow
def test_first_step_equals_single_process_with_the_same_global_batch(tmp_path):
    """2 ranks x 12 utterances vs 1 process x 24 (train.batch_size 24 is the global batch either
    way): the one optimisation step of a 24-utterance epoch gives the same parameters.

    Random draws are switched off so that the two runs compute the same function: dropout 0,
    no edge drop/add in the augmented view (aug_drop 0, aug_add 0) and lambda_self 0 (InfoNCE's
    in-batch negatives would differ between one batch of 24 and two of 12). reg_loss mse: with
    L1 the regression head's bias has gradient mean(sign(p - y)), exactly 0 on this batch, and
    AdamW's first step (lr * g / (|g| + eps)) turns the float noise of a zero gradient into a
    visible move. One parameter keeps that effect (the cross-attention key bias, whose gradient
    is 0 because softmax ignores a shift): hence the bound of lr/10 on the largest difference,
    while nearly every value must agree to 1e-6.
    """
    ws = make_workspace(tmp_path, seeds=(0,))

    def edit(p):
        p["model"].update(dropout=0.0, aug_drop=0.0, aug_add=0.0, lambda_self=0.0, reg_loss="mse")
        p["train"].update(epochs=1, patience=1, batch_size=24, eval_batch_size=5)  # 3 valid batches: 2 ranks

    _edit(ws, edit)
    single = runner.invoke(app, train_args(ws))
    assert single.exit_code == 0, single.output
    r = _torchrun(ws, out="ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(ws / "models" / "full" / "seed_0.pt", weights_only=True)
    b = torch.load(ws / "ddp" / "full" / "seed_0.pt", weights_only=True)

    from ssu_model.ssu.model import SSU
    from ssu_model.train.checkpoints import config_from_dict
    from ssu_model.train.loop import seed_everything

    seed_everything(0)
    init = SSU(config_from_dict(a["model_config"])).state_dict()
    lr = a["meta"]["train"]["lr"]
    step = torch.cat([(a["state"][k] - init[k]).abs().flatten() for k in init])
    diff = torch.cat([(a["state"][k] - b["state"][k]).abs().flatten() for k in init])
    assert step.max() > 0.9 * lr  # the step happened
    assert diff.max() < lr / 10, f"largest difference {diff.max():.3g}"
    assert (diff > 1e-6).float().mean() < 0.01, f"{int((diff > 1e-6).sum())} of {diff.numel()} values differ"
    import json

    ha = json.loads((ws / "models" / "full" / "history.json").read_text())["0"][0]
    hb = json.loads((ws / "ddp" / "full" / "history.json").read_text())["0"][0]
    assert hb["train/total"] == pytest.approx(ha["train/total"], rel=1e-6)  # same examples, same loss
    assert hb["valid/MAE"] == pytest.approx(ha["valid/MAE"], rel=1e-4)

    # the sharded validation (batches 0 and 2 on rank 0, batch 1 on rank 1, gathered) gave exactly
    # the metrics one process computes for the DDP run's weights
    from ssu_model.eval.metrics import regression_metrics
    from ssu_model.train.checkpoints import model_from_checkpoint
    from ssu_model.train.loop import predict
    from stages.modelling import load_inputs

    ex, _labels, _dims = load_inputs(("valid",), ws / "features", ws / "parse", ws / "text_features", None,
                                     ("text", "audio", "vision"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks (train.threads 1)
    try:
        preds, _losses = predict(model_from_checkpoint(b), ex["valid"], 5)
    finally:
        torch.set_num_threads(threads)
    labels = [r.label for r in ex["valid"]]
    for name, value in regression_metrics(preds, np.asarray(labels, dtype=np.float64)).items():
        assert hb[f"valid/{name}"] == value, name


def _read_lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


@pytest.mark.slow
def test_a_rank_killed_mid_run_fails_the_run_and_writes_nothing(tmp_path):
    """Rank 1 is killed (SIGKILL, as the OOM killer would) while seed 1 trains, after seed 0's
    checkpoint is already in rank 0's temporary directory: the run exits non-zero within the
    timeout (no hang), rank 0 says why in one line, and models/ holds nothing."""
    import psutil

    ws = make_workspace(tmp_path, seeds=(0, 1))
    _edit(ws, lambda p: p["train"].update(epochs=60, patience=60))  # seed 1 outlives the kill
    proc = subprocess.Popen(_torchrun_cmd(ws), cwd=ws, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    killed = False
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if not killed and "seed 1 epoch 1:" in line:
                workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                           if c.environ().get("RANK") == "1"]
                assert workers, "rank 1 not found"
                workers[0].kill()
                killed = True
        rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen)
    assert killed, output[-3000:]
    assert rc != 0
    errors = _error_lines(output)
    assert len(errors) == 1 and errors[0].startswith("error: rank 0 of 2: "), output[-3000:]
    assert not (ws / "models" / "full").exists()
    assert list((ws / "models").iterdir()) == []  # no temporary directory left either


@pytest.mark.slow
def test_an_error_on_one_rank_fails_every_rank(tmp_path):
    """A data error that only one rank meets (a non-finite word state in one training utterance:
    the rank whose shard holds it stops with "training diverged") fails the other rank too,
    each with one line naming its rank, and no model directory is written."""

    from ssu_model.text.text_encoder import read_text_states, write_text_states

    ws = make_workspace(tmp_path, seeds=(0,))
    states, _meta = read_text_states(ws / "text_features" / "train.arrow")
    ids = list(states)
    arrays = [states[i] for i in ids]
    arrays[5] = np.full_like(arrays[5], np.nan)
    write_text_states(ws / "text_features" / "train.arrow", ids, arrays, arrays[5].shape[1], "fake", 128)
    r = _torchrun(ws)
    assert r.returncode != 0
    errors = _error_lines(r.stderr)
    assert sorted(e[:len("error: rank 0 of 2:")] for e in errors) == ["error: rank 0 of 2:", "error: rank 1 of 2:"], \
        r.stderr[-3000:]
    assert any("training diverged: non-finite loss at epoch 1" in e for e in errors)
    assert not (ws / "models" / "full").exists() and list((ws / "models").iterdir()) == []
