"""The optimisation settings of one training run (``train`` section of params.yaml).

The defaults are the sample pipeline's ``train`` values (params.yaml); the `train` stage passes
every value explicitly, so a change here never changes a pipeline output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ssu_model.eval.metrics import METRIC_NAMES

SELECT_CHOICES = ("loss",) + METRIC_NAMES


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run.

    Args:
        lr: AdamW learning rate of everything except the text encoder.
        encoder_lr: AdamW learning rate of the text encoder when fine-tuned (paper: 1e-5).
        weight_decay: AdamW decoupled weight decay (both groups).
        batch_size: utterances per optimisation step (the global batch across ranks).
        eval_batch_size: utterances per forward pass when predicting.
        epochs: maximum number of epochs.
        patience: stop after this many epochs without a better validation score.
        select_metric: ``"loss"`` (validation total loss) or an MMSA metric name (``SELECT_CHOICES``).
        grad_clip: max global gradient norm; 0 = no clipping.
        finetune_text: train the text encoder too (cached word states are bypassed).
        length_buckets: 0 = training batches drawn at random; k > 0 = batches of similar length,
            sorted within runs of k batches (``ssu_model.train.length_batches``; single process only).
        max_batch_tokens: with length_buckets, the most utterances x longest length in a batch
            (0 = no cap): bounds a fine-tuned encoder's memory on long texts.
    """

    lr: float = 3e-3
    encoder_lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 32
    eval_batch_size: int = 128
    epochs: int = 4
    patience: int = 2
    select_metric: str = "MAE"
    grad_clip: float = 1.0
    finetune_text: bool = False
    length_buckets: int = 0
    max_batch_tokens: int = 0

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
        if self.length_buckets < 0 or self.max_batch_tokens < 0:
            raise ValueError(f"length_buckets and max_batch_tokens must be >= 0, got {self.length_buckets} "
                             f"and {self.max_batch_tokens}")
        if self.max_batch_tokens and not self.length_buckets:
            raise ValueError("max_batch_tokens needs length_buckets > 0 (batches drawn at random have no cap)")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")

