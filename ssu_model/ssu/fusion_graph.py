"""The fusion graph of SSU and the node-feature matrices both graph batches share.

- ``cross_modal_edges``: the fusion graph's pairs of beta-selected nodes of two modalities.
- ``node_features``: the modality-graph node matrix x (blocks, then one anchor per modality graph)
  and the fusion graph's, a prefix of x (blocks, then one anchor per sample).

The fusion graph's edges are the intra-modality edges, its anchor edges (``anchor.anchor_edges``)
and the cross-modal pairs (docs/decisions/model.md, "Fusion graph").
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssu_model.ssu.graph_layout import constant_ids
from ssu_model.ssu.graph_types import Block, EdgeList, EdgeTypes, NodeStates


def cross_modal_edges(blocks: list[Block], betas: list[Tensor], rule: str, k: int, edge_types: EdgeTypes) -> EdgeList:
    """Fusion-graph pairs between the beta-selected nodes of every two modalities, both
    directions, weight sqrt(beta_i * beta_j) (beta_i * beta_j floored at 1e-12). Selection
    ``rule``: "topk" (the ``k`` highest-beta real nodes) or "above_uniform" (beta > 1/n)."""
    edges = EdgeList()
    if rule == "topk":
        selected = []
        for blk, beta in zip(blocks, betas, strict=True):
            idx = beta.masked_fill(~blk.mask, -1.0).topk(min(k, blk.T), dim=-1).indices.sort(dim=-1).values
            selected.append((idx, blk.mask.gather(1, idx)))  # selected steps (ascending), real?
    for a in range(len(blocks)):
        for v in range(a + 1, len(blocks)):
            ba, bv = blocks[a], blocks[v]
            if rule == "topk":
                (ia, ra), (iv, rv) = selected[a], selected[v]
                b, p, q = (ra[:, :, None] & rv[:, None, :]).nonzero(as_tuple=True)
                i, j = ia[b, p], iv[b, q]
            else:
                sa = ba.mask & (betas[a] * ba.mask.sum(1, keepdim=True).to(betas[a].dtype) > 1.0)
                sv = bv.mask & (betas[v] * bv.mask.sum(1, keepdim=True).to(betas[v].dtype) > 1.0)
                b, i, j = (sa[:, :, None] & sv[:, None, :]).nonzero(as_tuple=True)
            na, nv = ba.node_ids(b, i), bv.node_ids(b, j)
            # a selected node's beta can underflow to exactly 0 (one dominant word): the floor
            # keeps sqrt's gradient finite there (0 * inf = NaN), and changes no weight above 1e-6
            w = (betas[a][b, i] * betas[v][b, j]).clamp_min(1e-12).sqrt()
            types = constant_ids(edge_types.cross, na.numel(), na.device)
            edges.add(na, nv, types, w)
            edges.add(nv, na, types, w)
    return edges


def node_features(nodes: NodeStates, blocks: list[Block], anchor_x: Tensor | None, B: int) -> tuple[Tensor, Tensor]:
    """(x, fusion_x): the block nodes' features (X^t, H^m) in id order, then with ``anchor_x`` (z_a
    + anchor type, None without anchor) one anchor row per modality graph. The fusion graph's
    anchor of sample b is row n_block_nodes + b, the text graph's anchor, so fusion_x is a prefix
    view of x. Speed: when encoding preallocated x (no autograd), only the anchors are written."""
    x = nodes.x
    H = next(iter(nodes.feats.values())).shape[-1]
    if anchor_x is None:
        if x is None:
            x = torch.cat([nodes.feats[blk.name].reshape(-1, H) for blk in blocks])
        return x, x
    n_block_nodes = B * sum(blk.T for blk in blocks)
    if x is not None:
        x[n_block_nodes:].view(len(blocks), B, H).copy_(anchor_x)
    else:
        x = torch.cat([nodes.feats[blk.name].reshape(-1, H) for blk in blocks] + [anchor_x] * len(blocks))
    return x, x[: n_block_nodes + B]
