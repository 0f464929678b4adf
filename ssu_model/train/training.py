"""Training loop, dataset assembly and checkpoints for SSU (no paths/params knowledge).

- ``build_examples``: features (contract A) + parse (contract B) + cached word states
  (text-features) [+ LLM states (contract F)] -> ``Example`` (an ``UtteranceRecord`` plus,
  when the text encoder is fine-tuned, the utterance's sub-word ids and word spans).
- ``fit``: seeded shuffling, AdamW with one learning rate for the text encoder and one for the
  rest, selection on the validation split (total loss or an MMSA metric) with early stopping,
  best state kept in memory, a per-epoch callback for logging.
- ``predict``: regression outputs for a list of examples.
- Both take an optional ``dist`` (``ssu_model.train.distributed.DistContext``, duck-typed here):
  data-parallel training across processes (``DistributedDataParallel``, a
  ``DistributedSampler`` per epoch, validation sharded by batch and gathered in order). Without
  it (the default) they are single-process code, unchanged.
- ``make_checkpoint`` / ``load_checkpoint`` / ``model_from_checkpoint``: a checkpoint is a dict
  of tensors and plain values (str/int/float/bool/None/lists/dicts), loadable with
  ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssu_model.errors import DataError
from ssu_model.eval.metrics import LOWER_IS_BETTER, METRIC_NAMES, regression_metrics

CHECKPOINT_FORMAT = 1
SELECT_CHOICES = ("loss",) + METRIC_NAMES


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run."""

    lr: float = 1e-3  # AdamW learning rate of everything except the text encoder
    encoder_lr: float = 1e-5  # AdamW learning rate of the text encoder when fine-tuned (paper: 1e-5)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay (both groups)
    batch_size: int = 32  # utterances per optimisation step
    eval_batch_size: int = 128  # utterances per forward pass when predicting
    epochs: int = 10  # maximum number of epochs
    patience: int = 3  # stop after this many epochs without a better validation score
    select_metric: str = "MAE"  # "loss" (validation total loss) or an MMSA metric name
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    finetune_text: bool = False  # train the text encoder too (cached word states are bypassed)

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (self.encoder_lr >= 0 and math.isfinite(self.encoder_lr)):
            raise ValueError(f"encoder_lr must be >= 0, got {self.encoder_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("batch_size", "eval_batch_size", "epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.select_metric not in SELECT_CHOICES:
            raise ValueError(f"select_metric must be one of {', '.join(SELECT_CHOICES)}, got {self.select_metric!r}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")


# --------------------------------------------------------------------------- data


@dataclass
class Example:
    """One utterance ready for ``collate``; ``encoded`` is set when the encoder is fine-tuned."""

    id: str
    record: Any  # ssu_model.data.batching.UtteranceRecord
    encoded: Any = None  # ssu_model.text.text_encoder.EncodedText | None


def dep_vocabulary(labels: Sequence[str]) -> dict[str, int]:
    """Relation label -> id; 0 is reserved for labels the vocabulary does not know."""
    return {lab: i + 1 for i, lab in enumerate(labels)}


def parse_index(table) -> dict[str, dict[str, Any]]:
    """A parse table (contract B) as id -> {words, heads, deps, sub_start, sub_end}."""
    need = ("id", "words", "heads", "deps", "sub_start", "sub_end")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise DataError(f"parse table lacks column {missing[0]}")
    cols = {c: table.column(c).to_pylist() for c in need}
    out: dict[str, dict[str, Any]] = {}
    for i, uid in enumerate(cols["id"]):
        out[uid] = {c: cols[c][i] for c in need[1:]}
    return out


def build_examples(
    split,
    parse: Mapping[str, Mapping[str, Any]],
    dep_vocab: Mapping[str, int],
    *,
    text_states: Mapping[str, np.ndarray] | None,
    text_dim: int,
    use_audio: bool,
    use_vision: bool,
    llm_states: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    encoder=None,
    name: str = "",
) -> list[Example]:
    """Join one feature split with its parse rows (and word states / LLM states) by id.

    ``split`` is a ``ssu_model.data.features.FeatureSplit``. With ``text_states`` the cached
    (n_words, text_dim) arrays are used; without them (fine-tuning) ``encoder`` must be given
    and each utterance is re-encoded (its parse sub-word map is checked) while the record
    carries zeros that the training loop replaces by the encoder's output.
    """
    from ssu_model.data.batching import UtteranceRecord

    if text_states is None and encoder is None:
        raise DataError("build_examples needs cached text states or a text encoder")
    n = len(split)
    audio = vision = None
    if use_audio:
        if not split.has_audio:
            raise DataError(f"{name}: the model reads audio but the features have none")
        audio = split.gather("audio", np.arange(n))
    if use_vision:
        if not split.has_vision:
            raise DataError(f"{name}: the model reads vision but the features have none")
        vision = split.gather("vision", np.arange(n))
    examples: list[Example] = []
    for i, uid in enumerate(split.ids):
        row = parse.get(uid)
        if row is None:
            raise DataError(f"{name}: utterance {uid} has no parse row (re-run parse)")
        n_words = len(row["words"])
        heads = np.asarray(row["heads"], dtype=np.int64)
        if heads.shape[0] != n_words or len(row["deps"]) != n_words:
            raise DataError(f"{name}: parse row {uid} has inconsistent words/heads/deps lengths")
        if n_words and (heads.min() < 0 or heads.max() >= n_words):
            raise DataError(f"{name}: parse row {uid} has a head index outside the utterance")
        deps = [int(dep_vocab.get(d, 0)) for d in row["deps"]]
        encoded = None
        if text_states is not None:
            states = text_states.get(uid)
            if states is None:
                raise DataError(f"{name}: utterance {uid} has no cached text states (re-run text-features)")
            if states.shape != (n_words, text_dim):
                raise DataError(
                    f"{name}: text states of {uid} are {tuple(states.shape)}, expected ({n_words}, {text_dim})"
                )
        else:
            encoded = encoder.encode(row["words"], row["sub_start"], row["sub_end"], where=f"{name}:{uid}")
            states = np.zeros((n_words, text_dim), dtype=np.float32)
        a = v = None
        if audio is not None:
            a = audio[0][i, : int(audio[1][i])]
        if vision is not None:
            v = vision[0][i, : int(vision[1][i])]
        llm = None
        if llm_states is not None:
            llm = llm_states.get(uid)
            if llm is None:
                raise DataError(f"{name}: utterance {uid} has no LLM states (re-run llm-graphs)")
            llm = {k: np.asarray(val, dtype=np.float32) for k, val in llm.items()
                   if (k == "text") or (k == "audio" and use_audio) or (k == "vision" and use_vision)}
        record = UtteranceRecord(
            word_states=np.asarray(states, dtype=np.float32),
            heads=heads,
            deps=deps,
            audio=a,
            vision=v,
            label=float(split.labels[i]),
            llm_states=llm,
        )
        examples.append(Example(uid, record, encoded))
    return examples


# --------------------------------------------------------------------------- loop


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class _Collate:
    def __init__(self, pad_id: int | None):
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[Example]):
        from ssu_model.data.batching import collate

        batch = collate([e.record for e in examples])
        enc = None
        if self.pad_id is not None:
            from ssu_model.text.text_encoder import collate_encoded

            enc = collate_encoded([e.encoded for e in examples], self.pad_id, n_words=batch.text.shape[1])
        labels = torch.tensor([e.record.label for e in examples], dtype=torch.float32)
        return batch, enc, labels


def _loader(examples, batch_size, shuffle, seed, pad_id):
    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.utils.data.DataLoader(
        examples, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None,
        collate_fn=_Collate(pad_id), num_workers=0, drop_last=False,
    )


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
def predict(model, examples: Sequence[Example], batch_size: int = 128, device: str = "cpu",
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


def fit(
    model,
    train: Sequence[Example],
    valid: Sequence[Example],
    cfg: TrainConfig,
    seed: int,
    device: str = "cpu",
    encoder=None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    dist=None,
) -> FitResult:
    """Train ``model`` (and ``encoder`` when given: fine-tuning) and keep the best validation state.

    The history rows hold ``train/<loss term>`` (example-weighted epoch means),
    ``valid/<loss term>`` and ``valid/<metric>`` for the 8 MMSA metrics, plus ``epoch``.

    ``dist`` (a ``DistContext``): data-parallel training. ``cfg.batch_size`` stays the global
    batch: each rank takes ``batch_size / world_size`` examples per step from a
    ``DistributedSampler`` reshuffled every epoch (seeded like the single-process loader, by
    seed and epoch), gradients are averaged by ``DistributedDataParallel``, the epoch's train
    losses are summed over ranks, validation is sharded and gathered (``predict``), and rank 0's
    history row is what every rank selects and stops on, so all ranks hold the same state.
    Every rank returns the same result; only the caller decides who writes it.
    """
    if not train:
        raise DataError("training split is empty")
    if not valid:
        raise DataError("validation split is empty")
    if dist is not None and cfg.batch_size % dist.world_size:
        raise DataError(f"batch_size {cfg.batch_size} is not divisible by the world size {dist.world_size}")
    model.to(device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    if encoder is not None:
        encoder.to(device)
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    pad_id = encoder.pad_id if encoder is not None else None
    valid_labels = np.array([e.record.label for e in valid], dtype=np.float64)
    lower_better = cfg.select_metric == "loss" or cfg.select_metric in LOWER_IS_BETTER
    best = math.inf if lower_better else -math.inf
    result = FitResult(best_epoch=0, best_score=best, epochs_run=0)
    since_best = 0
    all_params = [p for g in groups for p in g["params"]]
    if dist is not None:
        step = dist.wrap(_Step(model, encoder, device))
        sampler = torch.utils.data.DistributedSampler(
            train, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed * 100003, drop_last=False)
        dist_loader = torch.utils.data.DataLoader(
            train, batch_size=cfg.batch_size // dist.world_size, sampler=sampler, collate_fn=_Collate(pad_id),
            num_workers=0, drop_last=False)
        torch.manual_seed(dist.rank_seed(seed))  # own dropout/augmentation stream per rank
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        if encoder is not None:
            encoder.train()
        sums: dict[str, float] = {}
        count = 0
        if dist is not None:
            sampler.set_epoch(epoch)  # permutation seeded by seed * 100003 + epoch
            batches = dist_loader
        else:
            batches = _loader(train, cfg.batch_size, True, seed * 100003 + epoch, pad_id)
        for batch, enc, _labels in batches:
            out = step(batch, enc) if dist is not None else _forward(model, batch, enc, device, encoder)
            loss = out.losses["total"]
            if not torch.isfinite(loss):
                raise DataError(f"training diverged: non-finite loss at epoch {epoch} (lower train.lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(all_params, cfg.grad_clip)
            opt.step()
            b = int(out.prediction.shape[0])
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
            count += b
        if dist is not None:  # example-weighted means over every rank's examples
            names = sorted(sums)
            reduced = dist.all_reduce_sum([float(count)] + [sums[k] for k in names])
            count, sums = reduced[0], dict(zip(names, reduced[1:]))
        preds, vlosses = predict(model, valid, cfg.eval_batch_size, device, encoder, dist)
        vmetrics = regression_metrics(preds, valid_labels)
        row: dict[str, float] = {"epoch": float(epoch)}
        row.update({f"train/{k}": v / count for k, v in sums.items()})
        row.update({f"valid/{k}": v for k, v in vlosses.items()})
        row.update({f"valid/{k}": v for k, v in vmetrics.items()})
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
    if not result.state:  # every validation score was NaN: keep the last state
        result.best_epoch = result.epochs_run
        result.state = _cpu_state(model)
        result.encoder_state = _cpu_state(encoder) if encoder is not None else None
    model.load_state_dict(result.state)
    if encoder is not None and result.encoder_state is not None:
        encoder.load_state_dict(result.encoder_state)
    return result


# --------------------------------------------------------------------------- checkpoints


def _plain(value: Any) -> Any:
    """Config values -> what ``torch.load(weights_only=True)`` accepts (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise DataError(f"checkpoint: value of type {type(value).__name__} is not plain data")


def make_checkpoint(model_config, fit_result: FitResult, seed: int, meta: Mapping[str, Any]) -> dict:
    """Checkpoint dict: tensors + plain config. ``meta`` holds plain extras (train config,
    relation labels, encoder path, modalities...)."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "seed": int(seed),
        "best_epoch": int(fit_result.best_epoch),
        "best_score": float(fit_result.best_score),
        "epochs_run": int(fit_result.epochs_run),
        "model_config": _plain(dataclasses.asdict(model_config)),
        "meta": _plain(dict(meta)),
        "state": dict(fit_result.state),
    }
    if fit_result.encoder_state is not None:
        ckpt["encoder_state"] = dict(fit_result.encoder_state)
    return ckpt


def save_checkpoint(ckpt: dict, path: Path | str) -> None:
    torch.save(ckpt, str(path))


def seed_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(seed, path) of every ``seed_<s>.pt`` in ``folder``, by seed."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"model folder not found: {folder} (train writes models/<variant>/)")
    if not folder.is_dir():
        raise DataError(f"not a model folder: {folder}")
    found = []
    for p in folder.iterdir():
        m = re.fullmatch(r"seed_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        raise DataError(f"{folder} holds no seed_<n>.pt checkpoints (not a model folder written by train?)")
    return sorted(found)


def load_checkpoint(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{path} is not a loadable checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: unsupported checkpoint format")
    return ckpt


def config_from_dict(raw: Mapping[str, Any]):
    """SSUConfig from a checkpoint's plain dict (lists back to tuples)."""
    from ssu_model.ssu.model import SSUConfig

    names = {f.name for f in dataclasses.fields(SSUConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise DataError(f"checkpoint model config has unknown field {unknown[0]} (older/newer code?)")
    return SSUConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def model_from_checkpoint(ckpt: Mapping[str, Any]):
    from ssu_model.ssu.model import SSU

    model = SSU(config_from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state"], strict=True)
    model.eval()
    return model
