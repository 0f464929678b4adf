"""The node-id layout of a batch of SSU graphs and the index tensors that follow from it alone.

Node ids (see ``graph_types``): node (sample b, step i) of modality m is ``offset_m + b * T_m + i``
(one ``Block`` per modality, text first); the anchors follow all blocks, modality graph k of
sample b has anchor ``n_block_nodes + k * B + b``, and the fusion graph of sample b reuses the text
graph's anchor id ``n_block_nodes + b``.

- ``modality_blocks``: the blocks of a batch.
- ``edge_ids_for_layout``: the hand-computed node ids the edge builders index into (speed: one
  gather per edge family instead of ``Block.node_ids`` per edge); pinned against
  ``Block.node_ids`` by tests/test_graphs.py.
- ``LayoutCache``: those tensors and the B_pos distance matrix, cached per layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ssu_model.ssu.graph_types import Block, ModalityInput


@dataclass
class Layout:
    """Index tensors that depend only on the batch layout (cached per layout)."""

    mod_anchor: Tensor  # per block node id: the anchor of its modality graph
    fus_anchor: Tensor  # per block node id: the anchor of its sample's fusion graph
    anchor_self: Tensor  # ids of all modality-graph anchors
    row_base: Tensor | None = None  # per row (m, b, i) of the stacked adjacency: id of node (m, b, 0)
    row_node: Tensor | None = None  # per row: id of node (m, b, i)
    row_graph: Tensor | None = None  # per row: m * B + b


def modality_blocks(inputs: dict[str, ModalityInput], B: int, use_anchor: bool) -> list[Block]:
    """The node-id layout: one block per modality of the batch, in order."""
    blocks, offset = [], 0
    for m, inp in inputs.items():
        T = inp.mask.shape[1]
        present = inp.mask.any(1)
        if m == "text" and use_anchor:
            present = torch.ones_like(present)  # the text graph always has its anchor node
        blocks.append(Block(m, offset, T, inp.mask, present))
        offset += B * T
    return blocks


def edge_ids_for_layout(B: int, blocks: list[Block], scored: list[Block], Tmax: int, device) -> Layout:
    """Node ids per block node (its modality graph's anchor, its fusion graph's anchor), the anchor
    ids, and per row (m, b, i) of the stacked (M, B, Tmax, Tmax) adjacency of the ``scored`` blocks
    the ids of nodes (m, b, 0) and (m, b, i) and the graph index m * B + b: the same numbers as
    ``Block.node_ids``, laid out so that edge builders gather them with one index."""
    n_block_nodes = B * sum(blk.T for blk in blocks)
    barange = torch.arange(B, device=device)
    layout = Layout(
        mod_anchor=torch.cat([(n_block_nodes + k * B + barange).repeat_interleave(blk.T)
                              for k, blk in enumerate(blocks)]),
        fus_anchor=torch.cat([(n_block_nodes + barange).repeat_interleave(blk.T) for blk in blocks]),
        anchor_self=n_block_nodes + torch.arange(len(blocks) * B, device=device),
    )
    if scored:
        M = len(scored)
        sample_base = torch.stack([blk.offset + barange * blk.T for blk in scored])  # (M, B)
        steps = torch.arange(Tmax, device=device)
        layout.row_base = sample_base[:, :, None].expand(M, B, Tmax).reshape(-1)
        layout.row_node = layout.row_base + steps.repeat(M * B)
        layout.row_graph = torch.arange(M * B, device=device).repeat_interleave(Tmax)
    return layout


class LayoutCache:
    """``edge_ids_for_layout`` and the B_pos distances per layout, computed once (a training run
    sees few distinct layouts; at most 64 layouts are kept)."""

    def __init__(self):
        self._layouts: dict[tuple, Layout] = {}
        self._distances: dict[tuple, Tensor] = {}

    def layout(self, B: int, blocks: list[Block], scored: list[Block], Tmax: int, device) -> Layout:
        key = (B, tuple((blk.name, blk.T) for blk in blocks), len(scored), Tmax, str(device))
        hit = self._layouts.get(key)
        if hit is not None:
            return hit
        hit = edge_ids_for_layout(B, blocks, scored, Tmax, device)
        if len(self._layouts) >= 64:
            self._layouts.clear()
        self._layouts[key] = hit
        return hit

    def distance(self, T: int, device) -> Tensor:
        """|i - j| for i, j < T: the index of B_pos."""
        key = (T, str(device))
        if key not in self._distances:
            steps = torch.arange(T, device=device)
            self._distances[key] = (steps[:, None] - steps[None, :]).abs()
        return self._distances[key]


def constant_ids(value: int, n: int, device) -> Tensor:
    """n copies of an edge-type id."""
    return torch.full((n,), value, dtype=torch.long, device=device)
