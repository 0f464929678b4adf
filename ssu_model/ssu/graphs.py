"""Graph construction of SSU (paper "Methodology", Eq. 1-7 and the fusion graph): ``GraphBuilder``
owns every parameter of graph construction and turns a padded batch into the modality graphs
(text, audio, vision), their anchor nodes and edges, and the fusion graph, as PyG ``edge_index``
tensors ready for the GATs. ``forward`` reads as the paper:

1. ``encode_nodes``: projections to ``hidden``, temporal pooling of long streams, and
   ``enhance_with_text`` (Eq. 1-2: text-guided cross-attention + residual, H^m).
2. ``modality_graph.text_graph``: G^t from the dependency parse.
3. ``modality_graph.modality_scores`` (Eq. 3) and ``modality_graph.threshold_edges`` (Eq. 4
   ``adjacency.symmetric_adjacency``, Eq. 5 tau = mu + lambda * sigma), for all thresholded
   modalities stacked in one tensor.
4. ``anchor.semantic_anchor`` (Eq. 6 z_a), ``anchor.anchor_attention`` (Eq. 7 beta) and
   ``anchor.anchor_edges`` (z_a in every modality graph and in the fusion graph, both ways).
5. ``fusion_graph.cross_modal_edges`` and ``fusion_graph.node_features``: the fusion graph.

No python loop runs over samples: batched dense ops, one ``nonzero`` per edge family, one
concatenation per edge list. Speed helpers, each pinned against the plain form by
tests/test_graphs.py: ``_fused_queries`` (Eq. 1 and Eq. 3 queries in one product),
``TextInformedAttention.batched_without_dropout``, ``_scatter_words`` (no autograd: the node-feature
matrix preallocated and filled in place), ``graph_layout.edge_ids_for_layout``. Choices where the
paper is silent: docs/decisions/model.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssu_model.data.batching import SSUBatch
from ssu_model.errors import DataError
from ssu_model.ssu.adjacency import LLMScore, TextGuidedScore
from ssu_model.ssu.anchor import anchor_attention, anchor_edges, semantic_anchor
from ssu_model.ssu.config import SSUConfig
from ssu_model.ssu.fusion_graph import cross_modal_edges, node_features
from ssu_model.ssu.graph_layout import LayoutCache, modality_blocks
from ssu_model.ssu.graph_types import EdgeList, EdgeTypes, Graphs, Introspection, ModalityInput, NodeStates
from ssu_model.ssu.layers import (
    StreamStandardizer,
    TextInformedAttention,
    TextKeysValues,
    fused_linear,
    lengths_to_mask,
    temporal_pool,
)
from ssu_model.ssu.modality_graph import modality_scores, text_graph, threshold_edges


class GraphBuilder(nn.Module):
    """Node inputs -> modality graphs + anchors + fusion graph (no GAT). Owns every parameter of
    graph construction: projections, Eq. 1 attention, Eq. 3 scorers, lambda, W_a, anchor type."""

    def __init__(self, config: SSUConfig):
        super().__init__()
        c = self.config = config
        H = c.hidden
        self.edge_types = EdgeTypes(c.num_relations)
        dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
        self.proj = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(dims[m], H), nn.LayerNorm(H)) for m in c.modalities}
        )
        if len(c.modalities) > 1:
            self.text_kv = nn.Linear(H, 2 * H)  # keys and values of the Eq. 1 attention (shared)
        self.enhance = nn.ModuleDict(
            {m: TextInformedAttention(H, c.heads, c.dropout) for m in c.modalities if m != "text"}
        )
        if c.graph_source == "ssu":
            self.scorer = nn.ModuleDict(
                {m: TextGuidedScore(H, c.score_dim, c.max_len, c.affinity_scale_init)
                 for m in c.modalities if m != "text"}
            )
        else:
            self.llm_scorer = nn.ModuleDict({m: LLMScore(c.llm_dim, c.score_dim) for m in c.modalities})
        self.threshold_lambda = nn.Parameter(torch.tensor(float(c.threshold_init)))  # lambda (Eq. 5)
        stream_dims = {m: dims[m] for m in c.modalities if m != "text"}
        self.standardizer = StreamStandardizer(stream_dims) if c.standardize_streams and stream_dims else None
        if self.uses_beta:
            self.anchor_proj = nn.Linear(H, H, bias=False)  # W_a (Eq. 7)
        if c.use_anchor:
            self.anchor_type = nn.Parameter(torch.zeros(H))  # marks anchor nodes (modality nodes differ by projection)
        self.layout_cache = LayoutCache()

    @property
    def uses_beta(self) -> bool:
        """Eq. 7's beta is computed: for the anchor edges, or to pick cross-modal fusion pairs."""
        c = self.config
        return c.use_anchor or (c.cross_modal_edges and len(c.modalities) > 1)

    def forward(self, batch: SSUBatch, introspect: bool = False) -> Graphs:
        return self.graphs_from_nodes(batch, self.encode_nodes(batch, introspect))

    # ------------------------------------------------------------------ 1. nodes (Eq. 1-2)
    def modality_inputs(self, batch: SSUBatch) -> dict[str, ModalityInput]:
        """Raw node features per modality present in the batch, long streams temporally pooled."""
        c = self.config
        llm = c.graph_source == "llm"
        if llm and batch.llm_text is None:
            raise DataError("graph_source is 'llm' but the batch has no llm states")
        out = {"text": ModalityInput(batch.text, batch.text_mask, batch.llm_text if llm else None)}
        for m in c.modalities[1:]:
            x, lengths = getattr(batch, m), getattr(batch, f"{m}_lengths")
            if x is None:
                continue  # modality absent from this batch: text graph (+ the other) only
            if x.shape[-1] != getattr(c, f"{m}_dim"):
                raise DataError(f"batch {m} has width {x.shape[-1]}, config {m}_dim is {getattr(c, f'{m}_dim')}")
            if self.standardizer is not None:
                x = self.standardizer(m, x, lengths)
            x, lengths = temporal_pool(x, lengths, c.max_nodes)
            states = None
            if llm:
                states, llm_len = getattr(batch, f"llm_{m}"), getattr(batch, f"llm_{m}_lengths")
                if states is None or states.shape[1] > x.shape[1] or bool((llm_len != lengths).any()):
                    raise DataError(
                        f"llm {m} states do not match the temporal_pool'ed {m} lengths "
                        f"(max_nodes={c.max_nodes})"
                    )
                states = F.pad(states, (0, 0, 0, x.shape[1] - states.shape[1]))
            mask = lengths_to_mask(lengths, x.shape[1])
            if self.training and c.modality_dropout > 0:  # the sample loses this modality's graph
                mask = mask & (torch.rand(mask.shape[0], device=mask.device) >= c.modality_dropout)[:, None]
            out[m] = ModalityInput(x, mask, states)
        return out

    def encode_nodes(self, batch: SSUBatch, introspect: bool = False) -> NodeStates:
        """Projections to ``hidden`` and H^m = X^m + Attention(X^m, X^t) (Eq. 1-2).

        Text projections run on the real words only (padded word rows of X^t are 0: masked
        everywhere, isolated as nodes, excluded from every readout)."""
        c = self.config
        if batch.deps.numel() and int(batch.deps.max()) >= c.num_relations:
            raise DataError(f"relation id {int(batch.deps.max())} >= num_relations={c.num_relations}")
        inputs = self.modality_inputs(batch)
        B, Tt = batch.size, batch.text.shape[1]
        real_idx = batch.text_mask.reshape(-1).nonzero().squeeze(1)  # b * Tt + t of the real words
        xr = self.proj["text"](batch.text.reshape(B * Tt, -1).index_select(0, real_idx))
        n_rows = B * sum(inp.mask.shape[1] for inp in inputs.values()) + (len(inputs) * B if c.use_anchor else 0)
        x, xt = _scatter_words(xr, real_idx, B, Tt, n_rows)
        nodes = NodeStates(inputs=inputs, feats={"text": xt}, real_words=real_idx, real_word_x=xr, x=x,
                           introspection=Introspection() if introspect else None)
        if len(inputs) > 1:
            self.enhance_with_text(batch, nodes)
        return nodes

    def enhance_with_text(self, batch: SSUBatch, nodes: NodeStates) -> None:
        """Eq. 1-2, text-guided cross-attention + residual, for every non-text modality: H^m = X^m +
        W_o Attention(Q = X^m W_q, K/V = ``text_kv``(X^t)) into ``nodes.feats``; the projected X^m
        stays in ``nodes.inputs`` for Eq. 3.

        Without introspection and without attention dropout ``batched_without_dropout`` runs on the
        queries of ``_fused_queries``; otherwise ``TextInformedAttention.forward`` (it draws the
        dropout masks and returns the weights). Without autograd H^m is written into ``nodes.x``."""
        c = self.config
        B, H = batch.size, c.hidden
        Tt = batch.text.shape[1]
        real_idx, xr = nodes.real_words, nodes.real_word_x
        kv = xr.new_zeros(B * Tt, 2 * H).index_copy(0, real_idx, self.text_kv(xr)).view(B, Tt, 2 * H)
        info = nodes.introspection
        batched = info is None and not (self.training and c.dropout > 0)
        text = TextKeysValues.from_kv(kv, batch.text_mask, c.heads) if batched else None
        offset = B * Tt
        for m in list(nodes.inputs)[1:]:
            inp = nodes.inputs[m]
            xm = self.proj[m](inp.features)
            Tm = xm.shape[1]
            dest = None if nodes.x is None else nodes.x[offset: offset + B * Tm].view(B, Tm, H)
            if batched:
                q, score_q = self._fused_queries(m, xm)
                if score_q is not None:
                    nodes.score_q[m] = score_q
                hm = self.enhance[m].batched_without_dropout(xm, q, text, out=dest)
            else:
                hm, attn = self.enhance[m](xm, kv, batch.text_mask)
                if info is not None:
                    info.cross_attention[m] = attn.detach()
                if dest is not None:
                    hm = dest.copy_(hm)
            nodes.feats[m] = hm
            offset += B * Tm
            inp.features = xm

    def _fused_queries(self, m: str, xm: Tensor) -> tuple[Tensor, Tensor | None]:
        """Speed: (Eq. 1 queries ``enhance[m].q(xm)``, Eq. 3 queries ``scorer[m].wq(xm)``) from one
        matrix product (``fused_linear``); without SSU scores (LLM graphs) only the first, and None."""
        enh = self.enhance[m]
        if self.config.graph_source != "ssu":
            return enh.q(xm), None
        H = self.config.hidden
        qq = fused_linear(xm, [enh.q, self.scorer[m].wq])
        return qq[..., :H], qq[..., H:]

    # ------------------------------------------------------------------ 2-5. graphs (Eq. 3-7, fusion)
    def graphs_from_nodes(self, batch: SSUBatch, nodes: NodeStates) -> Graphs:
        """Dynamic graph generation (Eq. 3-7 and the fusion graph). Edge order: text tree
        (head->dep, dep->head, self-loops), thresholded modalities (row-major), then per modality
        graph its anchor edges (anchor->nodes, nodes->anchor), the anchor self-loops, and in the
        fusion graph the cross-modal pairs, modality pair by pair."""
        c = self.config
        dev = batch.text.device
        B = batch.size
        info = nodes.introspection
        blocks = modality_blocks(nodes.inputs, B, c.use_anchor)
        n_block_nodes = B * sum(blk.T for blk in blocks)
        llm = c.graph_source == "llm"
        scored = [blk for blk in blocks if llm or blk.name != "text"]
        Tmax = max((blk.T for blk in scored), default=0)
        layout = self.layout_cache.layout(B, blocks, scored, Tmax, dev)

        real = torch.cat([blk.mask.reshape(-1) for blk in blocks])  # real nodes of all blocks, id order
        node = real.nonzero().squeeze(1)
        counts = torch.stack([blk.mask.sum() for blk in blocks]).tolist()
        node_k = node.split(counts)

        intra = EdgeList()  # intra-modality edges, shared by both edge lists
        if not llm:
            text_graph(intra, batch, blocks[0], node_k[0], self.edge_types, info)
        if scored:
            scorers = self.llm_scorer if llm else self.scorer
            S = modality_scores(scorers, llm, scored, nodes, batch.text_mask, Tmax, self.layout_cache, info)  # Eq. 3
            threshold_edges(intra, S, scored, layout, self.threshold_lambda, c.mask_temperature,
                            c.max_edges_per_node, self.edge_types, info)  # Eq. 4-5

        z_a = semantic_anchor(nodes.feats["text"], batch.text_mask) if (self.uses_beta or info is not None) else None
        anchor_x = z_a + self.anchor_type if c.use_anchor else None
        betas = anchor_attention(self.anchor_proj, z_a, blocks, nodes.feats, info) if self.uses_beta else None
        mod_extra, fus_extra = EdgeList(), EdgeList()
        if c.use_anchor:
            mod_extra, fus_extra = anchor_edges(blocks, betas, node, node_k, counts, layout, B, self.edge_types)
        if c.cross_modal_edges and betas is not None:
            fus_extra = fus_extra + cross_modal_edges(blocks, betas, c.fusion_rule, c.fusion_k, self.edge_types)

        x, fusion_x = node_features(nodes, blocks, anchor_x, B)
        ei, ety, ew = (intra + mod_extra).assemble(dev)
        fei, fety, few = (intra + fus_extra).assemble(dev)
        if info is not None:
            info.anchor = z_a.detach()
            info.lengths = {blk.name: blk.mask.sum(1) for blk in blocks}
        anchor_offset = n_block_nodes if c.use_anchor else -1
        return Graphs(
            batch_size=B, blocks=blocks, x=x, edge_index=ei, edge_type=ety, edge_weight=ew,
            anchor_offset=anchor_offset, fusion_x=fusion_x, fusion_edge_index=fei, fusion_edge_type=fety,
            fusion_edge_weight=few, fusion_anchor_offset=anchor_offset, introspection=info,
        )


def _scatter_words(xr: Tensor, real_idx: Tensor, B: int, Tt: int, n_rows: int) -> tuple[Tensor | None, Tensor]:
    """X^t (B, Tt, H) from the real words' rows ``xr`` (padded words 0), and the node-feature matrix.
    Speed, without autograd: the whole (n_rows, H) node-feature matrix is allocated now with X^t as
    its first rows, and H^m and the anchors are later written into theirs (no final concatenation).
    With autograd the matrix is None (``node_features`` concatenates)."""
    H = xr.shape[-1]
    if not torch.is_grad_enabled():
        x = xr.new_empty(n_rows, H)
        return x, x[: B * Tt].zero_().index_copy_(0, real_idx, xr).view(B, Tt, H)
    return None, xr.new_zeros(B * Tt, H).index_copy(0, real_idx, xr).view(B, Tt, H)
