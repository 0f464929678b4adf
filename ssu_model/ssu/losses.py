"""The losses of SSU (Eq. 8-11): L_reg, L_sup (Eq. 8), L_self (Eq. 9), L_align (Eq. 10) and their
weighted total (Eq. 11)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ssu_model.ssu.config import SSUConfig


def discretise_labels(y: Tensor, rule: str) -> Tensor:
    """Class ids for L_sup. sign3: 0 neg (<0), 1 neutral (==0), 2 pos (>0); binary: 1 if y >= 0;
    round7: round(clip(y, -3, 3)) + 3 with half-to-even rounding (as numpy / MMSA Acc7)."""
    if rule == "sign3":
        return (y > 0).long() - (y < 0).long() + 1
    if rule == "binary":
        return (y >= 0).long()
    if rule == "round7":
        return torch.round(y.clamp(-3.0, 3.0)).long() + 3
    raise ValueError(f"unknown class_rule {rule!r}")


def regression_loss(pred: Tensor, y: Tensor, kind: str) -> Tensor:
    """L_reg: mean absolute error ("l1") or mean squared error ("mse")."""
    return F.l1_loss(pred, y) if kind == "l1" else F.mse_loss(pred, y)


def info_nce(z_ori: Tensor, z_aug: Tensor, temperature: float) -> Tensor:
    """Eq. 9 with in-batch negatives: for sample i the positive is z_aug[i], the negatives are
    z_aug[j != i]; sim = cosine; the positive is in the denominator (standard InfoNCE = CE)."""
    sim = F.normalize(z_ori, dim=-1) @ F.normalize(z_aug, dim=-1).T / temperature
    return F.cross_entropy(sim, torch.arange(z_ori.shape[0], device=z_ori.device))


def align_loss(z_fuse: Tensor, z_ori: Tensor) -> Tensor:
    """Eq. 10: squared L2 distance, summed over features, averaged over the batch."""
    return ((z_fuse - z_ori) ** 2).sum(-1).mean()


def multi_view_losses(prediction: Tensor, logits: Tensor, labels: Tensor, z_ori: Tensor, z_aug: Tensor,
                      z_fuse: Tensor, config: SSUConfig) -> dict[str, Tensor]:
    """Every term and the Eq. 11 total L = L_reg + lambda_sup L_sup + lambda_self L_self +
    lambda_align L_align. A zero weight switches a term off; it is still computed and reported."""
    c = config
    losses = {
        "reg": regression_loss(prediction, labels, c.reg_loss),
        "sup": F.cross_entropy(logits, discretise_labels(labels, c.class_rule)),  # Eq. 8 on z_ori's logits
        "self": info_nce(z_ori, z_aug, c.temperature),
        "align": align_loss(z_fuse, z_ori),
    }
    losses["total"] = (losses["reg"] + c.lambda_sup * losses["sup"]
                       + c.lambda_self * losses["self"] + c.lambda_align * losses["align"])  # Eq. 11
    return losses
