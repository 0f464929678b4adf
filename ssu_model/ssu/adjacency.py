"""Eq. 3-5: the audio/vision adjacency of SSU, from scores to the thresholded, weighted edges.

- ``TextGuidedScore``: Eq. 3 text-guided score S^m = (X^m W_Q)(X^t W_K)^T / sqrt(d'), softmax over
  the words into text-informed attention vectors, and the Fig. 3 affinity between those vectors
  plus the temporal position bias B_pos(|i - j|): the T_m x T_m score Eq. 4 normalises.
- ``LLMScore``: the same square score from cached LLM states (the LLM graph-constructor baseline).
- ``symmetric_adjacency``: Eq. 4, A = (softmax(S) + softmax(S)^T) / 2 over real node pairs.
- ``threshold_stats`` / ``threshold_keep`` / ``straight_through_weights``: Eq. 5, the adaptive
  threshold tau = mu + lambda * sigma, the hard mask (self-loops kept, a per-node cap on kept
  edges) and the straight-through gradient that lets lambda learn.

Every function works on a stack of adjacencies (..., T, T): the graph builder runs all thresholded
modalities of a batch through them at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssu_model.errors import DataError


class TextGuidedScore(nn.Module):
    """Eq. 3 + Fig. 3 for one modality (W_Q, W_K, B_pos and the affinity scale)."""

    def __init__(self, hidden: int, score_dim: int, max_len: int, scale_init: float):
        super().__init__()
        self.wq = nn.Linear(hidden, score_dim, bias=False)
        self.wk = nn.Linear(hidden, score_dim, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(max_len))  # B_pos as a function of |i - j|
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale_init)))

    def check_length(self, T: int) -> None:
        if self.pos_bias.numel() < T:
            raise DataError(f"{T} nodes exceed max_len={self.pos_bias.numel()} of the position bias")

    @staticmethod
    def text_attention(q: Tensor, k: Tensor, text_bias: Tensor, text_mask: Tensor, all_text: bool) -> Tensor:
        """Eq. 3 then a softmax over the words: q = X^m W_Q (B, T_m, d'), k = X^t W_K (B, T_t, d'),
        ``text_bias`` (B, 1, T_t) 0 on real words and the dtype's minimum on padding. Returns the
        text-informed attention vectors P (B, T_m, T_t); rows of an utterance without words are 0."""
        s = torch.baddbmm(text_bias, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(q.shape[-1]))  # Eq. 3
        p = torch.softmax(s, dim=-1)
        if not all_text:
            p = p * text_mask[:, None, :]  # empty text -> zero vector
        return p

    def affinity(self, p: Tensor, distance: Tensor, out: Tensor | None = None) -> Tensor:
        """Fig. 3: scale * cos(P_i, P_j) + B_pos(|i - j|), (B, T_m, T_m); ``distance`` = |i - j|.
        Written into ``out`` when given (no autograd)."""
        pn = F.normalize(p, dim=-1)
        pb = self.pos_bias[distance]
        if out is None:
            return self.log_scale.exp() * (pn @ pn.transpose(1, 2)) + pb
        torch.bmm(pn, pn.transpose(1, 2), out=out)
        return out.mul_(self.log_scale.exp()).add_(pb)


class LLMScore(nn.Module):
    """graph_source="llm": score = (H W_q)(H W_k)^T / sqrt(d') from cached LLM states (contract C)."""

    def __init__(self, llm_dim: int, score_dim: int):
        super().__init__()
        self.wq = nn.Linear(llm_dim, score_dim, bias=False)
        self.wk = nn.Linear(llm_dim, score_dim, bias=False)

    def forward(self, states: Tensor) -> Tensor:
        return self.wq(states) @ self.wk(states).transpose(1, 2) / math.sqrt(self.wq.out_features)


def symmetric_adjacency(score: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 4 on (..., T, T) scores with (..., T) real-node masks: the row softmax over real
    columns, symmetrised, A = (P + P^T) / 2 on real pairs and 0 elsewhere. Returns A and the
    float mask of real pairs. Without autograd ``score`` is overwritten (its memory is reused)."""
    grad = torch.is_grad_enabled()
    pair = node_mask.to(score.dtype)
    pair = pair[..., :, None] * pair[..., None, :]
    fill = torch.finfo(score.dtype).min
    col_pad = ~node_mask[..., None, :]
    score = score.masked_fill(col_pad, fill) if grad else score.masked_fill_(col_pad, fill)
    p = torch.softmax(score, dim=-1)
    adj = p + p.transpose(-1, -2)
    adj = adj * pair * 0.5 if grad else adj.mul_(pair).mul_(0.5)
    return adj, pair


def threshold_stats(adj: Tensor, pair: Tensor, node_mask: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mu, sigma, tau) of Eq. 5 over the real pairs of each (..., T, T) adjacency: population mean
    and std of the n^2 real entries, tau = mu + lambda * sigma. ``adj`` is 0 outside the real
    pairs, ``pair`` their float mask."""
    cnt = node_mask.sum(-1).to(adj.dtype)
    n = (cnt * cnt).clamp(min=1.0)
    mu = adj.sum((-2, -1)) / n
    dev = (adj - mu[..., None, None]) * pair  # exact: (A - mu) on real pairs, 0 elsewhere
    sq = dev * dev if torch.is_grad_enabled() and dev.requires_grad else dev.mul_(dev)  # no autograd: in place
    var = sq.sum((-2, -1)) / n
    sigma = (var + 1e-12).sqrt()
    return mu, sigma, mu + lam * sigma


def threshold_keep(adj: Tensor, tau: Tensor, node_mask: Tensor, cap: int) -> Tensor:
    """Hard mask M of Eq. 5 for (..., T, T) adjacencies: real pairs with A >= tau, then in every
    row with more than ``cap`` such entries (cap > 0) only those >= the cap-th largest of them
    (ties kept), plus the real diagonal (self-loops). The cap is per row, so the kept graph is
    not symmetric even though A is. It is evaluated only on the rows where it binds (usually few)."""
    T = adj.shape[-1]
    thr = tau[..., None, None].expand(adj.shape[:-1] + (1,))
    thr = thr.masked_fill(~node_mask[..., None], math.inf)  # padded rows keep nothing
    keep = adj >= thr
    keep &= node_mask[..., None, :]  # never a padded column
    if 0 < cap < T:
        flat = keep.view(-1, T)
        rows = (flat.view(torch.uint8).sum(-1, dtype=torch.int32) > cap).nonzero().squeeze(1)  # cap binds
        if rows.numel():
            sub, a_sub = flat[rows], adj.reshape(-1, T)[rows]
            kth = a_sub.masked_fill(~sub, -1.0).topk(cap, dim=-1).values[..., -1:]
            flat[rows] = sub & (a_sub >= kth)
    diag = keep.diagonal(dim1=-2, dim2=-1)
    diag |= node_mask  # self-loops of real nodes
    return keep


def straight_through_weights(weight: Tensor, graph: Tensor, tau: Tensor, sigma: Tensor,
                             mask_temperature: float) -> Tensor:
    """Weights of the kept edges with Eq. 5's straight-through gradient: the forward value stays
    A, d/d lambda flows through sigmoid((A - tau) / (mask_temperature * sigma)). ``graph[e]`` is
    the index of edge e's adjacency in the flattened (..., ) stack of ``tau`` and ``sigma``."""
    denom = (mask_temperature * sigma + 1e-12).reshape(-1)
    soft = torch.sigmoid((weight - tau.reshape(-1)[graph]) / denom[graph])
    return weight * ((1.0 + soft) - soft.detach())
