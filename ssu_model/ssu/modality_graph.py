"""The edges of the modality graphs (paper Eq. 3-5 and the text graph G^t), for a whole batch.

- ``text_graph``: G^t from the dependency parse (relation x direction types, self-loops).
- ``modality_scores``: Eq. 3 (+ Fig. 3 affinity and B_pos), or the LLM score, of every thresholded
  modality, stacked zero-padded to (M, B, Tmax, Tmax).
- ``threshold_edges``: Eq. 4 symmetric adjacency and Eq. 5 adaptive threshold (per-node cap,
  straight-through weights) on that stack, turned into edges.

The per-equation arithmetic lives in ``adjacency.py``; this file lays the batch out for it. Speed
helpers: ``fused_linear`` (keys of all modalities in one product), ``_score_buffer`` (no autograd:
the scores written in place), ``_scored_edge_ids``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssu_model.data.batching import SSUBatch
from ssu_model.ssu.adjacency import (
    straight_through_weights,
    symmetric_adjacency,
    threshold_keep,
    threshold_stats,
)
from ssu_model.ssu.graph_layout import Layout, LayoutCache, constant_ids
from ssu_model.ssu.graph_types import Block, EdgeList, EdgeTypes, Introspection, NodeStates
from ssu_model.ssu.layers import fused_linear


def text_graph(edges: EdgeList, batch: SSUBatch, text: Block, self_nodes: Tensor, edge_types: EdgeTypes,
               info: Introspection | None) -> None:
    """G^t: every dependency arc in both directions (type 2r head->dep, 2r+1 dep->head, weight
    1) and a self-loop per real word (``self_nodes``). The text block is first (offset 0)."""
    T, dev = text.T, batch.text.device
    heads = batch.heads
    dep = batch.text_mask & (heads != torch.arange(T, device=dev)[None, :]) & (heads >= 0)
    b, i = dep.nonzero(as_tuple=True)
    h = heads[b, i]
    r = batch.deps[b, i]
    base = b * T
    ones = torch.ones(b.numel(), device=dev)
    edges.add(base + h, base + i, 2 * r, ones)
    edges.add(base + i, base + h, 2 * r + 1, ones)
    edges.add(self_nodes, self_nodes, constant_ids(edge_types.text_self, self_nodes.numel(), dev),
              torch.ones(self_nodes.numel(), device=dev))
    if info is not None:
        a = torch.zeros(batch.size, T, T, device=dev)
        a[b, i, h] = 1.0
        a[b, h, i] = 1.0
        info.adjacency["text"] = a


def modality_scores(scorers: nn.ModuleDict, llm: bool, scored: list[Block], nodes: NodeStates, text_mask: Tensor,
                    Tmax: int, cache: LayoutCache, info: Introspection | None) -> Tensor:
    """Eq. 3: the square score of every scored modality, stacked and zero-padded to (M, B, Tmax,
    Tmax). SSU: P = softmax_words((X^m W_Q)(X^t W_K)^T / sqrt(d')) (Eq. 3 read through Fig. 3),
    then score = scale * cos(P_i, P_j) + B_pos(|i - j|) (``TextGuidedScore``); ``llm``: the
    ``LLMScore`` of the cached LLM states."""
    if llm:
        return _pad_stack([scorers[blk.name](nodes.inputs[blk.name].llm_states) for blk in scored], Tmax)
    xt = nodes.feats["text"]
    B, Tt = text_mask.shape
    d = scorers[scored[0].name].wk.out_features
    # keys of all modalities in one product, real words only (padded keys are masked)
    keys = nodes.real_word_x.new_zeros(B * Tt, d * len(scored)).index_copy(
        0, nodes.real_words, fused_linear(nodes.real_word_x, [scorers[blk.name].wk for blk in scored])).view(B, Tt, -1)
    text_bias = torch.zeros(B, 1, Tt, dtype=xt.dtype, device=xt.device)
    text_bias.masked_fill_(~text_mask[:, None, :], torch.finfo(xt.dtype).min)
    all_text = bool(text_mask.any(1).all())
    S = _score_buffer(xt, scored, B, Tmax)
    outs: list[Tensor] = []
    for idx, blk in enumerate(scored):
        scorer = scorers[blk.name]
        scorer.check_length(blk.T)
        q = nodes.score_q.get(blk.name)  # X^m W_Q, when computed together with Eq. 1's queries
        if q is None:
            q = scorer.wq(nodes.inputs[blk.name].features)
        p = scorer.text_attention(q, keys[..., idx * d:(idx + 1) * d], text_bias, text_mask, all_text)
        if info is not None:
            info.text_attention[blk.name] = p.detach()
        distance = cache.distance(blk.T, xt.device)
        if S is not None:
            scorer.affinity(p, distance, out=S[idx])
        else:
            outs.append(scorer.affinity(p, distance))
    return S if S is not None else _pad_stack(outs, Tmax)


def _score_buffer(xt: Tensor, scored: list[Block], B: int, Tmax: int) -> Tensor | None:
    """Speed, no autograd and all scored blocks of length Tmax: the (M, B, Tmax, Tmax) stack the
    affinities are written into (no ``torch.stack`` copy). None otherwise."""
    if not torch.is_grad_enabled() and all(Tmax == blk.T for blk in scored):
        return xt.new_empty(len(scored), B, Tmax, Tmax)
    return None


def _pad_stack(outs: list[Tensor], Tmax: int) -> Tensor:
    """(B, T_m, T_m) scores -> one (M, B, Tmax, Tmax) stack, zero-padded."""
    if all(o.shape[-1] == Tmax for o in outs):
        return torch.stack(outs)
    S = outs[0].new_zeros(len(outs), outs[0].shape[0], Tmax, Tmax)
    for idx, o in enumerate(outs):
        S[idx, :, : o.shape[1], : o.shape[2]] = o
    return S


def threshold_edges(edges: EdgeList, S: Tensor, scored: list[Block], layout: Layout, lam: Tensor,
                    mask_temperature: float, cap: int, edge_types: EdgeTypes, info: Introspection | None) -> None:
    """Eq. 4 A = (softmax(S) + softmax(S)^T) / 2 and Eq. 5 M = (A >= tau), tau = mu + lambda *
    sigma (per sample, at most ``cap`` edges per node, self-loops kept), on the stacked scores S
    of all thresholded modalities: edge j -> i for every kept entry A[m, b, i, j], weighted by A
    (straight-through gradient to lambda). Without autograd S is overwritten."""
    M, B, Tmax = S.shape[0], S.shape[1], S.shape[-1]
    node_mask = torch.stack([F.pad(blk.mask, (0, Tmax - blk.T)) for blk in scored])  # (M, B, Tmax)
    if info is not None:
        for idx, blk in enumerate(scored):
            info.score[blk.name] = S[idx, :, : blk.T, : blk.T].detach().clone()
    A, pair = symmetric_adjacency(S, node_mask)  # Eq. 4
    _, sigma, tau = threshold_stats(A, pair, node_mask, lam)  # Eq. 5
    keep = threshold_keep(A, tau, node_mask, cap)
    rows, j = keep.view(-1, Tmax).nonzero(as_tuple=True)
    w = A.view(-1, Tmax)[rows, j]
    if torch.is_grad_enabled():
        w = straight_through_weights(w, layout.row_graph[rows], tau, sigma, mask_temperature)
    src, dst, types = _scored_edge_ids(rows, j, layout, scored, edge_types, M, B, Tmax)
    edges.add(src, dst, types, w)
    if info is not None:
        for idx, blk in enumerate(scored):
            T = blk.T
            info.symmetric[blk.name] = A[idx, :, :T, :T].detach()
            info.adjacency[blk.name] = (A[idx, :, :T, :T] * keep[idx, :, :T, :T]).detach()
            info.threshold[blk.name] = tau[idx].detach()


def _scored_edge_ids(rows: Tensor, j: Tensor, layout: Layout, scored: list[Block], edge_types: EdgeTypes,
                     M: int, B: int, Tmax: int) -> tuple[Tensor, Tensor, Tensor]:
    """(source, target, type) of the kept entries (row (m, b, i), column j) of the flattened
    stack: source node (m, b, j), target node (m, b, i), the type of modality m. ``rows`` are
    sorted, so modality m's entries are one run found by ``searchsorted``."""
    bounds = torch.searchsorted(rows, torch.arange(1, M + 1, device=rows.device) * (B * Tmax))
    per_modality = torch.diff(bounds, prepend=bounds.new_zeros(1))
    types = torch.tensor([edge_types.scored(blk.name) for blk in scored], device=rows.device)
    return (layout.row_base[rows] + j, layout.row_node[rows],
            types.repeat_interleave(per_modality, output_size=rows.numel()))
