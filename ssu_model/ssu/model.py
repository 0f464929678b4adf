"""SSU, the Structural-Semantic Unifier (paper section "Methodology"; equation numbers are the paper's).

The model wires the parts together; each concept lives in its own file:

- ``config.py``: ``SSUConfig``, every hyper-parameter.
- ``graphs.py``: ``GraphBuilder``, inputs -> modality graphs, anchors, fusion graph (Eq. 1-7),
  built from ``layers.py`` (Eq. 1-2 attention, pooling), ``modality_graph.py`` (text graph, Eq.
  3-5 edges) with ``adjacency.py`` (Eq. 3-5 arithmetic), ``anchor.py`` (Eq. 6-7),
  ``fusion_graph.py`` (cross-modal edges, node features) and ``graph_layout.py`` (node ids).
- ``augment.py``: the perturbed view (edge deletion and addition).
- ``layers.py``: the GATv2 encoders with edge features.
- ``losses.py``: Eq. 8-11.

Forward: build the graphs; encode the modality graphs with the shared GAT (original view) and
the perturbed graphs with the same GAT (augmented view); encode the fusion graph with the fusion
GAT (fusion view); regress from [z_ori, z_fuse], classify from z_ori; the losses of Eq. 8-11.
Choices where the paper is silent: docs/decisions/model.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ssu_model.data.batching import SSUBatch
from ssu_model.ssu.augment import augment_edges
from ssu_model.ssu.config import SSUConfig
from ssu_model.ssu.graph_types import EdgeTypes, Graphs, Introspection
from ssu_model.ssu.graphs import GraphBuilder
from ssu_model.ssu.layers import EdgeEncoder, GATEncoder
from ssu_model.ssu.losses import multi_view_losses

__all__ = ["SSU", "SSUConfig", "SSUOutput"]


@dataclass
class SSUOutput:
    prediction: Tensor  # (B,) regression output
    logits: Tensor  # (B, num_classes)
    losses: dict[str, Tensor]  # "reg", "sup", "self", "align", "total" (Eq. 11)
    z_ori: Tensor  # (B, hidden) readout of the original view
    z_aug: Tensor  # (B, hidden) readout of the augmented view
    z_fuse: Tensor  # (B, hidden) readout of the fusion view
    introspection: Introspection | None = None  # what graph construction computed (return_graphs=True)


def readout_views(h: Tensor, g: Graphs) -> Tensor:
    """z: mean over the sample's present modality graphs of (mean of the graph's real nodes and
    its anchor node)."""
    B, H = g.batch_size, h.shape[1]
    total = h.new_zeros(B, H)
    n_present = h.new_zeros(B)
    for k, blk in enumerate(g.blocks):
        hb = h[blk.offset: blk.offset + B * blk.T].view(B, blk.T, H)
        mf = blk.mask.to(h.dtype)
        s, cnt = (hb * mf[..., None]).sum(1), mf.sum(1)
        if g.anchor_offset >= 0:
            s = s + h[g.anchor_offset + k * B: g.anchor_offset + (k + 1) * B]
            cnt = cnt + 1.0
        pf = blk.present.to(h.dtype)
        total = total + s / cnt.clamp(min=1.0)[:, None] * pf[:, None]
        n_present = n_present + pf
    return total / n_present.clamp(min=1.0)[:, None]


def readout_fusion(h: Tensor, g: Graphs) -> Tensor:
    """z_fuse: mean over all real nodes of the sample's fusion graph and its anchor."""
    B, H = g.batch_size, h.shape[1]
    s, cnt = h.new_zeros(B, H), h.new_zeros(B)
    for blk in g.blocks:
        hb = h[blk.offset: blk.offset + B * blk.T].view(B, blk.T, H)
        mf = blk.mask.to(h.dtype)
        s, cnt = s + (hb * mf[..., None]).sum(1), cnt + mf.sum(1)
    if g.fusion_anchor_offset >= 0:
        s, cnt = s + h[g.fusion_anchor_offset: g.fusion_anchor_offset + B], cnt + 1.0
    return s / cnt.clamp(min=1.0)[:, None]


# parameters that lived on SSU itself before graph construction became its own module
_GRAPH_BUILDER_KEYS = ("proj.", "text_kv.", "enhance.", "scorer.", "llm_scorer.", "threshold_lambda",
                       "anchor_proj.", "anchor_type")


def _upgrade_state_dict(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: checkpoints written before ``GraphBuilder`` existed keep loading."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if rest.startswith(_GRAPH_BUILDER_KEYS):
            state_dict[f"{prefix}graph_builder.{rest}"] = state_dict.pop(key)


class SSU(nn.Module):
    def __init__(self, config: SSUConfig):
        super().__init__()
        c = self.config = config
        H = c.hidden
        self.graph_builder = GraphBuilder(c)
        n_types = self.edge_types.count
        self.node_drop = nn.Dropout(c.dropout)
        self.edge_enc = EdgeEncoder(n_types, c.edge_dim)
        self.gat = GATEncoder(H, c.heads, c.gat_layers, c.edge_dim, c.dropout)  # shared GAT
        self.fusion_edge_enc = EdgeEncoder(n_types, c.edge_dim)
        self.fusion_gat = GATEncoder(H, c.heads, c.gat_layers, c.edge_dim, c.dropout)
        self.reg_head = nn.Sequential(nn.Linear(2 * H, H), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(H, 1))
        self.cls_head = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Dropout(c.dropout),
                                      nn.Linear(H, c.num_classes))
        self._register_load_state_dict_pre_hook(_upgrade_state_dict, with_module=True)

    @property
    def edge_types(self) -> EdgeTypes:
        return self.graph_builder.edge_types

    def fit_stream_statistics(self, records) -> None:
        """Fit the audio/vision standardisation (``standardize_streams``) on training records
        (``UtteranceRecord``s): every real step of the split, per dimension."""
        if not self.config.standardize_streams:
            raise ValueError("standardize_streams is off: there are no stream statistics to fit")
        standardizer = self.graph_builder.standardizer
        if standardizer is None:  # the model reads text only: no stream to standardise
            return
        values = {}
        for m in self.config.modalities[1:]:
            arrays = [getattr(r, m) for r in records if getattr(r, m) is not None and len(getattr(r, m))]
            values[m] = torch.from_numpy(np.concatenate(arrays)) if arrays else torch.zeros(0, 0)
        standardizer.fit(values)

    def build_graphs(self, batch: SSUBatch, introspect: bool = False) -> Graphs:
        """Inputs -> modality graphs (text, audio, vision) with anchor nodes/edges, and the fusion
        graph (no GAT)."""
        return self.graph_builder(batch, introspect)

    def forward(self, batch: SSUBatch, return_graphs: bool = False) -> SSUOutput:
        c = self.config
        g = self.build_graphs(batch, introspect=return_graphs)
        x, fx = self.node_drop(g.x), self.node_drop(g.fusion_x)
        ea = self.edge_enc(g.edge_type, g.edge_weight)
        z_ori = readout_views(self.gat(x, g.edge_index, ea), g)  # original view
        aug_index, rows = augment_edges(g.edge_index, *g.node_membership(), c.aug_drop, c.aug_add)
        z_aug = readout_views(self.gat(x, aug_index, ea[rows]), g)  # augmented view
        fa = self.fusion_edge_enc(g.fusion_edge_type, g.fusion_edge_weight)
        z_fuse = readout_fusion(self.fusion_gat(fx, g.fusion_edge_index, fa), g)  # fusion view

        prediction = self.reg_head(torch.cat([z_ori, z_fuse], dim=-1)).squeeze(-1)
        logits = self.cls_head(z_ori)  # Eq. 8: Classifier(z_ori)
        losses = multi_view_losses(prediction, logits, batch.labels, z_ori, z_aug, z_fuse, c)
        info = g.introspection
        if info is not None:
            info.edge_counts = {"modality": int(g.edge_index.shape[1]),
                                "fusion": int(g.fusion_edge_index.shape[1]),
                                "augmented": int(aug_index.shape[1])}
        return SSUOutput(prediction=prediction, logits=logits, losses=losses, z_ori=z_ori, z_aug=z_aug,
                         z_fuse=z_fuse, introspection=info)
