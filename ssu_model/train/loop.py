"""The training loop of SSU and its scoring pass (no paths/params knowledge).

- ``fit``: seeded shuffling, AdamW with one learning rate for the text encoder and one for the
  rest, selection on the validation split (total loss or an MMSA metric) with early stopping,
  best state kept in memory, a per-epoch callback for logging.
- ``predict``: regression outputs for a list of records (``ssu_model.data.records.build_records``).
- Both take an optional ``dist`` (``ssu_model.train.distributed.DistContext``, duck-typed here):
  data-parallel training across processes (``DistributedDataParallel``, a
  ``DistributedSampler`` per epoch, validation sharded by batch and gathered in order). Without
  it (the default) they are single-process code, unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssu_model.data.batching import UtteranceRecord, collate
from ssu_model.errors import DataError
from ssu_model.eval.metrics import LOWER_IS_BETTER, regression_metrics
from ssu_model.text.text_encoder import collate_encoded
from ssu_model.train.config import TrainConfig
from ssu_model.train.length_batches import length_batches, record_length


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (what every run and every scoring starts with)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class _Collate:
    """Records -> (``SSUBatch``, padded sub-word ids when fine-tuning, labels)."""

    def __init__(self, pad_id: int | None):
        self.pad_id = pad_id

    def __call__(self, records: Sequence[UtteranceRecord]):
        batch = collate(records)
        enc = None
        if self.pad_id is not None:
            enc = collate_encoded([r.encoded for r in records], self.pad_id, n_words=batch.text.shape[1])
        labels = torch.tensor([r.label for r in records], dtype=torch.float32)
        return batch, enc, labels


def _loader(examples, batch_size, shuffle, seed, pad_id):
    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.utils.data.DataLoader(
        examples, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None,
        collate_fn=_Collate(pad_id), num_workers=0, drop_last=False,
    )


def _train_loader(train, cfg: TrainConfig, seed: int, pad_id):
    """One epoch's training batches: drawn at random, or by length (``cfg.length_buckets``)."""
    if not cfg.length_buckets:
        return _loader(train, cfg.batch_size, True, seed, pad_id)
    batches = length_batches([record_length(r) for r in train], cfg.batch_size, cfg.length_buckets, seed,
                             cfg.max_batch_tokens)
    return torch.utils.data.DataLoader(train, batch_sampler=batches, collate_fn=_Collate(pad_id), num_workers=0)


def _forward(model, batch, enc, device, encoder):
    batch = batch.to(device)
    if encoder is not None and enc is not None:
        ids, mask, pool = (t.to(device) for t in enc)
        batch = dataclasses.replace(batch, text=encoder(ids, mask, pool).to(batch.text.dtype))
    return model(batch)


class _Step(torch.nn.Module):
    """The model and (when fine-tuned) the text encoder as one module, so that
    ``DistributedDataParallel`` sees every trained parameter and runs the same ``_forward``.

    ``never_used`` is what it says: DDP runs with ``find_unused_parameters`` (some runs leave
    parameters without a gradient, see ``DistContext.wrap``) and torch prints a warning from
    every rank when a step has none. It is not in the optimiser nor in any checkpoint."""

    def __init__(self, model, encoder, device):
        super().__init__()
        self.model = model
        self.encoder = encoder
        self.device = device
        self.never_used = torch.nn.Parameter(torch.zeros(1, device=device))

    def forward(self, batch, enc):
        return _forward(self.model, batch, enc, self.device, self.encoder)


def _predict_sharded(model, examples, batch_size, device, encoder, dist):
    """``predict`` across ranks: the same batches as the single-process loop, batch k on rank
    k mod world_size, gathered back in order on every rank. Each utterance is scored in the
    very batch it would be in alone, so the predictions (and the metrics on them) equal the
    single-process ones; the loss terms are summed in the same order."""
    collate = _Collate(encoder.pad_id if encoder is not None else None)
    n_batches = (len(examples) + batch_size - 1) // batch_size
    mine = []
    for k in range(dist.rank, n_batches, dist.world_size):
        batch, enc, _labels = collate(examples[k * batch_size:(k + 1) * batch_size])
        out = _forward(model, batch, enc, device, encoder)
        mine.append((k, out.prediction.detach().float().cpu().numpy().reshape(-1),
                     {name: float(v.detach()) for name, v in (out.losses or {}).items()}))
    parts = sorted((item for part in dist.all_gather_object(mine) for item in part), key=lambda item: item[0])
    preds: list[np.ndarray] = []
    sums: dict[str, float] = {}
    count = 0
    for _k, p, losses in parts:
        b = int(p.shape[0])
        preds.append(p)
        for name, v in losses.items():
            sums[name] = sums.get(name, 0.0) + v * b
        count += b
    return preds, sums, count


@torch.no_grad()
def predict(model, examples: Sequence[UtteranceRecord], batch_size: int = 128, device: str = "cpu",
            encoder=None, dist=None) -> tuple[np.ndarray, dict[str, float]]:
    """(predictions in example order, mean of each loss term over the examples).

    With ``dist`` every rank scores its share of the batches and gets the whole result."""
    was = model.training
    model.eval()
    if encoder is not None:
        encoder.eval()
    if dist is not None:
        preds, sums, count = _predict_sharded(model, examples, batch_size, device, encoder, dist)
        model.train(was)
        p = np.concatenate(preds) if preds else np.zeros(0, dtype=np.float32)
        return p, {k: v / max(count, 1) for k, v in sums.items()}
    pad_id = encoder.pad_id if encoder is not None else None
    preds: list[np.ndarray] = []
    sums: dict[str, float] = {}
    count = 0
    for batch, enc, _labels in _loader(examples, batch_size, False, 0, pad_id):
        out = _forward(model, batch, enc, device, encoder)
        b = int(out.prediction.shape[0])
        preds.append(out.prediction.detach().float().cpu().numpy().reshape(-1))
        for k, v in (out.losses or {}).items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
        count += b
    model.train(was)
    p = np.concatenate(preds) if preds else np.zeros(0, dtype=np.float32)
    return p, {k: v / max(count, 1) for k, v in sums.items()}


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # best model state (CPU)
    encoder_state: dict[str, torch.Tensor] | None = None  # best encoder state when fine-tuned


def _cpu_state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}



def _check_fit_inputs(train, valid, cfg: TrainConfig, dist) -> None:
    if not train:
        raise DataError("training split is empty")
    if not valid:
        raise DataError("validation split is empty")
    if dist is not None and cfg.batch_size % dist.world_size:
        raise DataError(f"batch_size {cfg.batch_size} is not divisible by the world size {dist.world_size}")
    if dist is not None and cfg.length_buckets:
        raise DataError("length_buckets works in one process only (data-parallel runs draw at random)")


def _optimizer(model, encoder, cfg: TrainConfig, device) -> tuple[torch.optim.AdamW, list]:
    """AdamW with one group for the model and one for the text encoder (when fine-tuned), and the
    list of every trained parameter (what the gradient norm is clipped over)."""
    model.to(device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    if encoder is not None:
        encoder.to(device)
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, [p for g in groups for p in g["params"]]


class _DistributedBatches:
    """The training batches of one rank: a ``DistributedSampler`` reshuffled every epoch."""

    def __init__(self, model, encoder, train, cfg: TrainConfig, seed: int, device, pad_id, dist):
        self.step = dist.wrap(_Step(model, encoder, device))
        self.sampler = torch.utils.data.DistributedSampler(
            train, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed * 100003, drop_last=False)
        self.loader = torch.utils.data.DataLoader(
            train, batch_size=cfg.batch_size // dist.world_size, sampler=self.sampler, collate_fn=_Collate(pad_id),
            num_workers=0, drop_last=False)
        torch.manual_seed(dist.rank_seed(seed))  # own dropout/augmentation stream per rank

    def epoch(self, epoch: int):
        self.sampler.set_epoch(epoch)  # permutation seeded by seed * 100003 + epoch
        return self.loader


def _train_epoch(model, encoder, batches, opt, all_params, cfg: TrainConfig, epoch: int, device,
                 step, after_batch) -> tuple[dict[str, float], int]:
    """One pass over ``batches``: (sum of each loss term weighted by batch size, examples seen)."""
    model.train()
    if encoder is not None:
        encoder.train()
    sums: dict[str, float] = {}
    count = 0
    for batch, enc, _labels in batches:
        out = step(batch, enc) if step is not None else _forward(model, batch, enc, device, encoder)
        loss = out.losses["total"]
        if not torch.isfinite(loss):
            raise DataError(f"training diverged: non-finite loss at epoch {epoch} (lower train.lr?)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(all_params, cfg.grad_clip)
        opt.step()
        if after_batch is not None:
            after_batch()
        b = int(out.prediction.shape[0])
        for k, v in out.losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
        count += b
    return sums, count


def _epoch_row(epoch: int, sums: dict[str, float], count, vlosses: dict[str, float],
               vmetrics: dict[str, float]) -> dict[str, float]:
    """The history row of one epoch."""
    row: dict[str, float] = {"epoch": float(epoch)}
    row.update({f"train/{k}": v / count for k, v in sums.items()})
    row.update({f"valid/{k}": v for k, v in vlosses.items()})
    row.update({f"valid/{k}": v for k, v in vmetrics.items()})
    return row


def _keep_best_or_last(result: FitResult, model, encoder) -> None:
    """Load the best state into ``model``/``encoder``; when every validation score was NaN there is
    none, and the last state is kept as the result."""
    if not result.state:
        result.best_epoch = result.epochs_run
        result.state = _cpu_state(model)
        result.encoder_state = _cpu_state(encoder) if encoder is not None else None
    model.load_state_dict(result.state)
    if encoder is not None and result.encoder_state is not None:
        encoder.load_state_dict(result.encoder_state)


def fit(
    model,
    train: Sequence[UtteranceRecord],
    valid: Sequence[UtteranceRecord],
    cfg: TrainConfig,
    seed: int,
    device: str = "cpu",
    encoder=None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    dist=None,
    after_batch: Callable[[], None] | None = None,
) -> FitResult:
    """Train ``model`` (and ``encoder`` when given: fine-tuning) and keep the best validation state.

    The history rows hold ``train/<loss term>`` (example-weighted epoch means),
    ``valid/<loss term>`` and ``valid/<metric>`` for the 8 MMSA metrics, plus ``epoch``.
    ``callback(epoch, row)`` gets each history row; ``after_batch()`` runs after each optimiser step
    (the train stage releases the mapped text states' pages there).

    ``dist`` (a ``DistContext``): data-parallel training. ``cfg.batch_size`` stays the global
    batch: each rank takes ``batch_size / world_size`` examples per step from a
    ``DistributedSampler`` reshuffled every epoch (seeded like the single-process loader, by
    seed and epoch), gradients are averaged by ``DistributedDataParallel``, the epoch's train
    losses are summed over ranks, validation is sharded and gathered (``predict``), and rank 0's
    history row is what every rank selects and stops on, so all ranks hold the same state.
    Every rank returns the same result; only the caller decides who writes it.
    """
    _check_fit_inputs(train, valid, cfg, dist)
    opt, all_params = _optimizer(model, encoder, cfg, device)
    pad_id = encoder.pad_id if encoder is not None else None
    valid_labels = np.array([r.label for r in valid], dtype=np.float64)
    lower_better = cfg.select_metric == "loss" or cfg.select_metric in LOWER_IS_BETTER
    best = math.inf if lower_better else -math.inf
    result = FitResult(best_epoch=0, best_score=best, epochs_run=0)
    since_best = 0
    shards = _DistributedBatches(model, encoder, train, cfg, seed, device, pad_id, dist) if dist is not None else None
    for epoch in range(1, cfg.epochs + 1):
        if shards is not None:
            batches = shards.epoch(epoch)
        else:
            batches = _train_loader(train, cfg, seed * 100003 + epoch, pad_id)
        sums, count = _train_epoch(model, encoder, batches, opt, all_params, cfg, epoch, device,
                                   shards.step if shards is not None else None, after_batch)
        if dist is not None:  # example-weighted means over every rank's examples
            names = sorted(sums)
            reduced = dist.all_reduce_sum([float(count)] + [sums[k] for k in names])
            count, sums = reduced[0], dict(zip(names, reduced[1:], strict=True))
        preds, vlosses = predict(model, valid, cfg.eval_batch_size, device, encoder, dist)
        vmetrics = regression_metrics(preds, valid_labels)
        row = _epoch_row(epoch, sums, count, vlosses, vmetrics)
        score = vlosses.get("total", math.nan) if cfg.select_metric == "loss" else vmetrics[cfg.select_metric]
        if dist is not None:  # one decision for all ranks: rank 0's numbers
            row = dist.broadcast_object(row)
            score = row.get("valid/total", math.nan) if cfg.select_metric == "loss" else row[f"valid/{cfg.select_metric}"]
        improved = score < best if lower_better else score > best
        if improved:
            best = score
            since_best = 0
            result.best_epoch = epoch
            result.best_score = float(score)
            result.state = _cpu_state(model)
            result.encoder_state = _cpu_state(encoder) if encoder is not None else None
        else:
            since_best += 1
        result.history.append(row)
        result.epochs_run = epoch
        if callback is not None:
            callback(epoch, row)
        if since_best >= cfg.patience:
            break
    _keep_best_or_last(result, model, encoder)
    return result
