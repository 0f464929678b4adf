"""SSU's regression output alone: what ``SSU.forward`` returns as ``prediction``, and nothing else.

``forward`` also encodes the augmented view (a third GAT pass, about a third of its time on
MOSEI-length text) and computes the losses of Eq. 8-11; a score needs neither. Here the graphs,
the original view and the fusion view are computed exactly as in ``forward`` (the same calls in
the same order), so in eval mode the score is bit-identical to ``forward(batch).prediction``
(tests/test_scoring.py pins it). In train mode the node dropout would draw other random numbers
than ``forward``'s, so scoring refuses it.

It is a function beside the model rather than a method of ``SSU``: ``model.py`` is a declared
dependency of every `train` stage, and a change to the prediction path alone must not make DVC
retrain every model (docs/decisions/model.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssu_model.data.batching import SSUBatch
from ssu_model.ssu.model import SSU, readout_fusion, readout_views


@torch.no_grad()
def regression_scores(model: SSU, batch: SSUBatch) -> Tensor:
    """(B,) sentiment scores of ``batch``: the regression head on [z_ori, z_fuse] (eval mode)."""
    if model.training:
        raise ValueError("regression_scores needs the model in eval mode (model.eval())")
    g = model.build_graphs(batch)
    x, fx = model.node_drop(g.x), model.node_drop(g.fusion_x)
    ea = model.edge_enc(g.edge_type, g.edge_weight)
    z_ori = readout_views(model.gat(x, g.edge_index, ea), g)  # original view
    fa = model.fusion_edge_enc(g.fusion_edge_type, g.fusion_edge_weight)
    z_fuse = readout_fusion(model.fusion_gat(fx, g.fusion_edge_index, fa), g)  # fusion view
    return model.reg_head(torch.cat([z_ori, z_fuse], dim=-1)).squeeze(-1)
