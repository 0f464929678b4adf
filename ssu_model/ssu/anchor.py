"""The semantic anchor of SSU (paper Eq. 6-7): z_a, its attention beta over each modality graph's
nodes, and the anchor's edges in every modality graph and in the fusion graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssu_model.ssu.graph_layout import Layout, constant_ids
from ssu_model.ssu.graph_types import Block, EdgeList, EdgeTypes, Introspection
from ssu_model.ssu.layers import masked_softmax


def semantic_anchor(xt: Tensor, text_mask: Tensor) -> Tensor:
    """Eq. 6: z_a = AvgPool over the real words of X^t; an utterance without words gets 0."""
    tmf = text_mask.to(xt.dtype)[..., None]
    return (xt * tmf).sum(1) / tmf.sum(1).clamp(min=1.0)


def anchor_attention(anchor_proj: nn.Linear, z_a: Tensor, blocks: list[Block], feats: dict[str, Tensor],
                     info: Introspection | None) -> list[Tensor]:
    """Eq. 7: beta_i = softmax_i(z_a^T W_a H_i) over each modality's real nodes, (B, T) per block;
    ``anchor_proj`` is W_a."""
    qa = anchor_proj(z_a)  # W_a^T z_a, so z_a^T W_a H_i = <qa, H_i>
    betas = []
    for blk in blocks:
        beta = masked_softmax(torch.linalg.vecdot(feats[blk.name], qa[:, None, :]), blk.mask)
        betas.append(beta)
        if info is not None:
            info.beta[blk.name] = beta.detach()
    return betas


def anchor_edges(blocks: list[Block], betas: list[Tensor], node: Tensor, node_k: list[Tensor], counts: list[int],
                 layout: Layout, B: int, edge_types: EdgeTypes) -> tuple[EdgeList, EdgeList]:
    """Eq. 7's edges: anchor -> node and node -> anchor with weight beta in every modality graph
    (one anchor per graph) and in the fusion graph (one anchor per sample), plus anchor
    self-loops. ``node``: ids of all real block nodes, ``node_k`` / ``counts`` the same per block.
    Returns (modality-graph edges, fusion-graph edges)."""
    et, dev = edge_types, node.device
    w_k = torch.cat([beta.reshape(-1) for beta in betas])[node].split(counts)
    a_k = layout.mod_anchor[node].split(counts)
    f_k = layout.fus_anchor[node].split(counts)
    modality, fusion = EdgeList(), EdgeList()
    for k in range(len(blocks)):
        n_k, cnt = node_k[k], counts[k]
        out_t, in_t = constant_ids(et.anchor_out, cnt, dev), constant_ids(et.anchor_in, cnt, dev)
        modality.add(a_k[k], n_k, out_t, w_k[k])
        modality.add(n_k, a_k[k], in_t, w_k[k])
        fusion.add(f_k[k], n_k, out_t, w_k[k])
        fusion.add(n_k, f_k[k], in_t, w_k[k])
    a_self = layout.anchor_self
    modality.add(a_self, a_self, constant_ids(et.anchor_self, a_self.numel(), dev),
                 torch.ones(a_self.numel(), device=dev))
    f_self = a_self[:B]
    fusion.add(f_self, f_self, constant_ids(et.anchor_self, B, dev), torch.ones(B, device=dev))
    return modality, fusion
