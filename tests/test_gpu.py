"""CUDA checks (marker `gpu`; skipped where no CUDA device is visible).

They need only torch + torch_geometric + the library, so they also run on a lent GPU image that has
no spaCy/DVC: `python -m pytest -q -m gpu tests/test_gpu.py`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ssu_model.data.batching import UtteranceRecord, collate
from ssu_model.ssu.model import SSU, SSUConfig

pytestmark = pytest.mark.gpu


def _batch(seed: int, n: int = 16, la: int = 50, lv: int = 50):
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(n):
        words = int(rng.integers(1, 20))
        records.append(
            UtteranceRecord(
                word_states=rng.standard_normal((words, 32)).astype(np.float32),
                heads=np.array([0] + [int(rng.integers(0, i)) for i in range(1, words)], dtype=np.int64),
                deps=[int(d) for d in rng.integers(0, 16, words)],
                audio=rng.standard_normal((int(rng.integers(5, la + 1)), 5)).astype(np.float32),
                vision=rng.standard_normal((int(rng.integers(5, lv + 1)), 20)).astype(np.float32),
                label=float(rng.uniform(-3, 3)),
            )
        )
    return collate(records)


def _config() -> SSUConfig:
    return SSUConfig(text_dim=32, audio_dim=5, vision_dim=20, hidden=32, heads=2, num_relations=16, dropout=0.0)


def test_eval_forward_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = SSU(_config()).eval()
    batch = _batch(0)
    with torch.no_grad():
        cpu = model(batch)
        gpu = model.to("cuda")(batch.to("cuda"))
    assert gpu.prediction.device.type == "cuda"
    torch.testing.assert_close(gpu.prediction.cpu(), cpu.prediction, rtol=1e-3, atol=1e-3)
    for name in ("reg", "sup", "align"):
        torch.testing.assert_close(gpu.losses[name].cpu(), cpu.losses[name], rtol=1e-3, atol=1e-3)


def test_training_step_on_cuda_reduces_loss_and_reaches_lambda():
    torch.manual_seed(0)
    model = SSU(_config()).to("cuda").train()
    batch = _batch(1, n=32, la=375, lv=500).to("cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        out = model(batch)
        opt.zero_grad()
        out.losses["total"].backward()
        lambdas = [p for n, p in model.named_parameters() if "lambda" in n or "threshold" in n]
        assert lambdas and all(p.grad is not None and torch.isfinite(p.grad).all() for p in lambdas)
        opt.step()
        first = out.losses["reg"].item() if first is None else first
    assert out.losses["reg"].item() < first


def fit_in_a_world_of_one(device: str, monkeypatch) -> None:
    """The data-parallel code path of `fit` (DDP, DistributedSampler, sharded validation, the
    collectives) in a process group of one process: gloo on "cpu", NCCL on "cuda". The sharded
    validation of a group of one is the single-process one, so the predictions must agree."""
    import socket

    from ssu_model.train.config import TrainConfig
    from ssu_model.train.distributed import Rendezvous, init_distributed, teardown
    from ssu_model.train.loop import fit, predict

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    batch_records = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for _ in range(8):
            words = int(rng.integers(1, 12))
            batch_records.append(UtteranceRecord(
                word_states=rng.standard_normal((words, 32)).astype(np.float32),
                heads=np.array([0] + [int(rng.integers(0, i)) for i in range(1, words)], dtype=np.int64),
                deps=[int(d) for d in rng.integers(0, 16, words)],
                audio=rng.standard_normal((20, 5)).astype(np.float32),
                vision=rng.standard_normal((20, 20)).astype(np.float32),
                label=float(rng.uniform(-3, 3))))
    examples = [dataclasses.replace(r, id=str(i)) for i, r in enumerate(batch_records)]
    ctx = init_distributed(Rendezvous(rank=0, world_size=1, local_rank=0), device)
    try:
        torch.manual_seed(0)
        model = SSU(_config())
        result = fit(model, examples[:16], examples[16:], TrainConfig(epochs=2, batch_size=8, eval_batch_size=3),
                     0, ctx.device, dist=ctx)
        assert result.epochs_run == 2 and len(result.history) == 2
        assert next(model.parameters()).device.type == device
        sharded, _ = predict(model, examples[16:], 3, ctx.device, dist=ctx)
        plain, _ = predict(model, examples[16:], 3, ctx.device)
        np.testing.assert_array_equal(sharded, plain)
    finally:
        teardown()


def test_ddp_code_path_runs_on_cuda_with_world_size_1(monkeypatch):
    fit_in_a_world_of_one("cuda", monkeypatch)
