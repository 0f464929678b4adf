"""Graph construction of SSU (paper "Methodology", Eq. 1-7 and the fusion graph): ``GraphBuilder``
turns a padded batch into the modality graphs (text, audio, vision), their anchor nodes and edges,
and the fusion graph, as PyG ``edge_index`` tensors ready for the GATs.

Steps, each a method:

1. ``encode_nodes``: projections to ``hidden``, temporal pooling of long streams, Eq. 1-2
   text-informed enhancement H^m of the audio/vision nodes.
2. ``text_graph_edges``: G^t from the dependency parse (relation x direction types, self-loops).
3. ``scored_edges``: Eq. 3 scores (``modality_scores``), Eq. 4 symmetric adjacency, Eq. 5 adaptive
   threshold with a per-node cap, for all thresholded modalities stacked in one tensor.
4. ``anchor_summary`` / ``anchor_attention``: Eq. 6 z_a = AvgPool(X^t), Eq. 7 beta per modality.
5. ``anchor_edges``: z_a in every modality graph and in the fusion graph, beta-weighted, both ways.
6. ``cross_modal_edges``: fusion-graph pairs of nodes of two modalities picked by beta.

No python loop runs over samples: batched dense ops, one ``nonzero`` per edge family, one
concatenation per edge list. Choices where the paper is silent: docs/decisions/model.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssu_model.ssu.adjacency import (
    LLMScore,
    TextGuidedScore,
    straight_through_weights,
    symmetric_adjacency,
    threshold_keep,
    threshold_stats,
)
from ssu_model.data.batching import SSUBatch
from ssu_model.ssu.config import SSUConfig
from ssu_model.errors import DataError
from ssu_model.ssu.graph_types import (
    Block,
    EdgeList,
    EdgeTypes,
    Graphs,
    Introspection,
    ModalityInput,
    NodeStates,
)
from ssu_model.ssu.layers import (
    StreamStandardizer,
    TextInformedAttention,
    TextKeysValues,
    lengths_to_mask,
    masked_softmax,
    temporal_pool,
)


@dataclass
class Layout:
    """Index tensors that depend only on the batch layout (cached per layout)."""

    mod_anchor: Tensor  # per block node id: the anchor of its modality graph
    fus_anchor: Tensor  # per block node id: the anchor of its sample's fusion graph
    anchor_self: Tensor  # ids of all modality-graph anchors
    row_base: Tensor | None = None  # per row (m, b, i) of the stacked adjacency: id of node (m, b, 0)
    row_node: Tensor | None = None  # per row: id of node (m, b, i)
    row_graph: Tensor | None = None  # per row: m * B + b


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
        everywhere, isolated as nodes, excluded from every readout). Without autograd the node
        features are written straight into the graphs' node-feature matrix ``x``."""
        c = self.config
        if batch.deps.numel() and int(batch.deps.max()) >= c.num_relations:
            raise DataError(f"relation id {int(batch.deps.max())} >= num_relations={c.num_relations}")
        inputs = self.modality_inputs(batch)
        B, H = batch.size, c.hidden
        Tt = batch.text.shape[1]
        real_idx = batch.text_mask.reshape(-1).nonzero().squeeze(1)  # b * Tt + t of the real words
        xr = self.proj["text"](batch.text.reshape(B * Tt, -1).index_select(0, real_idx))
        x = None
        if not torch.is_grad_enabled():
            n_nodes = B * sum(inp.mask.shape[1] for inp in inputs.values())
            x = xr.new_empty(n_nodes + (len(inputs) * B if c.use_anchor else 0), H)
            xt = x[: B * Tt].zero_().index_copy_(0, real_idx, xr).view(B, Tt, H)
        else:
            xt = xr.new_zeros(B * Tt, H).index_copy(0, real_idx, xr).view(B, Tt, H)
        nodes = NodeStates(inputs=inputs, feats={"text": xt}, real_words=real_idx, real_word_x=xr, x=x,
                           introspection=Introspection() if introspect else None)
        if len(inputs) > 1:
            self.enhance_modalities(batch, nodes)
        return nodes

    def enhance_modalities(self, batch: SSUBatch, nodes: NodeStates) -> None:
        """Eq. 1-2 for every non-text modality; keeps the projected X^m for Eq. 3.

        Without introspection and without attention dropout the batched attention runs, with the
        Eq. 1 and Eq. 3 queries of a modality from one matrix product; otherwise the per-module
        ``TextInformedAttention.forward`` (it draws the dropout masks and returns the weights)."""
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
                hm = self.enhance[m].batched(xm, self.attention_queries(m, xm, nodes), text, out=dest)
            else:
                hm, attn = self.enhance[m](xm, kv, batch.text_mask)
                if info is not None:
                    info.cross_attention[m] = attn.detach()
                if dest is not None:
                    hm = dest.copy_(hm)
            nodes.feats[m] = hm
            offset += B * Tm
            inp.features = xm

    def attention_queries(self, m: str, xm: Tensor, nodes: NodeStates) -> Tensor:
        """Eq. 1 queries of modality m; with SSU scores the Eq. 3 queries X^m W_Q come from the same
        matrix product and are kept in ``nodes.score_q``."""
        enh = self.enhance[m]
        if self.config.graph_source != "ssu":
            return enh.q(xm)
        H = self.config.hidden
        wq = self.scorer[m].wq.weight
        qq = F.linear(xm, torch.cat([enh.q.weight, wq]), torch.cat([enh.q.bias, enh.q.bias.new_zeros(wq.shape[0])]))
        nodes.score_q[m] = qq[..., H:]
        return qq[..., :H]

    # ------------------------------------------------------------------ graphs
    def graphs_from_nodes(self, batch: SSUBatch, nodes: NodeStates) -> Graphs:
        """Dynamic graph generation (Eq. 3-7 and the fusion graph). Edge order: text tree
        (head->dep, dep->head, self-loops), thresholded modalities (row-major), then per modality
        graph its anchor edges (anchor->nodes, nodes->anchor), the anchor self-loops, and in the
        fusion graph the cross-modal pairs, modality pair by pair."""
        c = self.config
        dev = batch.text.device
        B = batch.size
        info = nodes.introspection
        blocks = self.blocks(nodes.inputs, B)
        n_block_nodes = B * sum(blk.T for blk in blocks)
        llm = c.graph_source == "llm"
        scored = [blk for blk in blocks if llm or blk.name != "text"]
        Tmax = max((blk.T for blk in scored), default=0)
        layout = self.layout(B, blocks, scored, Tmax, dev)

        real = torch.cat([blk.mask.reshape(-1) for blk in blocks])  # real nodes of all blocks, id order
        node = real.nonzero().squeeze(1)
        counts = torch.stack([blk.mask.sum() for blk in blocks]).tolist()
        node_k = node.split(counts)

        intra = EdgeList()  # intra-modality edges, shared by both edge lists
        if not llm:
            self.text_graph_edges(intra, batch, blocks[0], node_k[0], info)
        if scored:
            self.scored_edges(intra, scored, nodes, layout, Tmax, batch.text_mask, info)

        xt, text_mask = nodes.feats["text"], batch.text_mask
        z_a = self.anchor_summary(xt, text_mask) if (self.uses_beta or info is not None) else None
        anchor_x = z_a + self.anchor_type if c.use_anchor else None
        betas = self.anchor_attention(z_a, blocks, nodes.feats, info) if self.uses_beta else None
        mod_extra, fus_extra = EdgeList(), EdgeList()
        if c.use_anchor:
            mod_extra, fus_extra = self.anchor_edges(blocks, betas, node, node_k, counts, layout, B)
        if c.cross_modal_edges and betas is not None:
            fus_extra = fus_extra + self.cross_modal_edges(blocks, betas)

        x = nodes.x
        if c.use_anchor:
            # one copy: the fusion graph's anchor of sample b is row n_block_nodes + b, the same row
            # as the text graph's anchor, so fusion_x is a prefix view of x
            if x is not None:
                x[n_block_nodes:].view(len(blocks), B, c.hidden).copy_(anchor_x)
            else:
                x = torch.cat([nodes.feats[blk.name].reshape(-1, c.hidden) for blk in blocks] + [anchor_x] * len(blocks))
            fusion_x = x[: n_block_nodes + B]
        else:
            if x is None:
                x = torch.cat([nodes.feats[blk.name].reshape(-1, c.hidden) for blk in blocks])
            fusion_x = x

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

    def blocks(self, inputs: dict[str, ModalityInput], B: int) -> list[Block]:
        """The node-id layout: one block per modality of the batch, in order."""
        blocks, offset = [], 0
        for m, inp in inputs.items():
            T = inp.mask.shape[1]
            present = inp.mask.any(1)
            if m == "text" and self.config.use_anchor:
                present = torch.ones_like(present)  # the text graph always has its anchor node
            blocks.append(Block(m, offset, T, inp.mask, present))
            offset += B * T
        return blocks

    # ------------------------------------------------------------------ 2. text graph
    def text_graph_edges(self, edges: EdgeList, batch: SSUBatch, text: Block, self_nodes: Tensor,
                         info: Introspection | None) -> None:
        """G^t: every dependency arc in both directions (type 2r head->dep, 2r+1 dep->head, weight
        1) and a self-loop per real word. The text block is first (offset 0)."""
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
        edges.add(self_nodes, self_nodes, _const(self.edge_types.text_self, self_nodes.numel(), dev),
                  torch.ones(self_nodes.numel(), device=dev))
        if info is not None:
            a = torch.zeros(batch.size, T, T, device=dev)
            a[b, i, h] = 1.0
            a[b, h, i] = 1.0
            info.adjacency["text"] = a

    # ------------------------------------------------------------------ 3. Eq. 3-5
    def scored_edges(self, edges: EdgeList, scored: list[Block], nodes: NodeStates, layout: Layout,
                     Tmax: int, text_mask: Tensor, info: Introspection | None) -> None:
        """Eq. 3-5 for all thresholded modalities at once, stacked zero-padded to (M, B, Tmax, Tmax):
        edge j -> i for every kept entry A[m, b, i, j], weighted by A (straight-through to lambda)."""
        c = self.config
        B, M = text_mask.shape[0], len(scored)
        S = self.modality_scores(scored, nodes, text_mask, Tmax, info)
        node_mask = torch.stack([F.pad(blk.mask, (0, Tmax - blk.T)) for blk in scored])  # (M, B, Tmax)
        if info is not None:
            for idx, blk in enumerate(scored):
                info.score[blk.name] = S[idx, :, : blk.T, : blk.T].detach().clone()
        A, pair = symmetric_adjacency(S, node_mask)  # Eq. 4
        _, sigma, tau = threshold_stats(A, pair, node_mask, self.threshold_lambda)  # Eq. 5
        keep = threshold_keep(A, tau, node_mask, c.max_edges_per_node)
        rows, j = keep.view(-1, Tmax).nonzero(as_tuple=True)
        w = A.view(-1, Tmax)[rows, j]
        if torch.is_grad_enabled():
            w = straight_through_weights(w, layout.row_graph[rows], tau, sigma, c.mask_temperature)
        bounds = torch.searchsorted(rows, torch.arange(1, M + 1, device=rows.device) * (B * Tmax))
        per_modality = torch.diff(bounds, prepend=bounds.new_zeros(1))
        types = torch.tensor([self.edge_types.scored(blk.name) for blk in scored], device=rows.device)
        edges.add(layout.row_base[rows] + j, layout.row_node[rows],
                  types.repeat_interleave(per_modality, output_size=rows.numel()), w)
        if info is not None:
            for idx, blk in enumerate(scored):
                T = blk.T
                info.symmetric[blk.name] = A[idx, :, :T, :T].detach()
                info.adjacency[blk.name] = (A[idx, :, :T, :T] * keep[idx, :, :T, :T]).detach()
                info.threshold[blk.name] = tau[idx].detach()

    def modality_scores(self, scored: list[Block], nodes: NodeStates, text_mask: Tensor, Tmax: int,
                        info: Introspection | None) -> Tensor:
        """The square score of every scored modality (Eq. 3 + Fig. 3 + B_pos, or the LLM score),
        stacked and zero-padded to (M, B, Tmax, Tmax)."""
        c = self.config
        xt = nodes.feats["text"]
        B, Tt = text_mask.shape
        M = len(scored)
        outs: list[Tensor] = []
        S = None
        if not torch.is_grad_enabled() and all(blk.T == Tmax for blk in scored):
            S = xt.new_empty(M, B, Tmax, Tmax)  # written in place below
        if c.graph_source == "llm":
            for blk in scored:
                outs.append(self.llm_scorer[blk.name](nodes.inputs[blk.name].llm_states))
        else:
            d = c.score_dim
            # keys of all modalities in one product, real words only (padded keys are masked)
            wk = torch.cat([self.scorer[blk.name].wk.weight for blk in scored])
            keys = nodes.real_word_x.new_zeros(B * Tt, wk.shape[0]).index_copy(
                0, nodes.real_words, F.linear(nodes.real_word_x, wk)).view(B, Tt, -1)
            text_bias = torch.zeros(B, 1, Tt, dtype=xt.dtype, device=xt.device)
            text_bias.masked_fill_(~text_mask[:, None, :], torch.finfo(xt.dtype).min)
            all_text = bool(text_mask.any(1).all())
            for idx, blk in enumerate(scored):
                scorer = self.scorer[blk.name]
                scorer.check_length(blk.T)
                q = nodes.score_q.get(blk.name)
                if q is None:
                    q = scorer.wq(nodes.inputs[blk.name].features)
                p = scorer.text_attention(q, keys[..., idx * d:(idx + 1) * d], text_bias, text_mask, all_text)
                if info is not None:
                    info.text_attention[blk.name] = p.detach()
                distance = self.distance(blk.T, xt.device)
                if S is not None:
                    scorer.affinity(p, distance, out=S[idx])
                else:
                    outs.append(scorer.affinity(p, distance))
        if S is not None and not outs:
            return S
        if all(o.shape[-1] == Tmax for o in outs):
            return torch.stack(outs)
        S = outs[0].new_zeros(M, B, Tmax, Tmax)
        for idx, o in enumerate(outs):
            S[idx, :, : o.shape[1], : o.shape[2]] = o
        return S

    # ------------------------------------------------------------------ 4-6. anchor, fusion
    @staticmethod
    def anchor_summary(xt: Tensor, text_mask: Tensor) -> Tensor:
        """Eq. 6: z_a = AvgPool over the real words of X^t; an utterance without words gets 0."""
        tmf = text_mask.to(xt.dtype)[..., None]
        return (xt * tmf).sum(1) / tmf.sum(1).clamp(min=1.0)

    def anchor_attention(self, z_a: Tensor, blocks: list[Block], feats: dict[str, Tensor],
                         info: Introspection | None) -> list[Tensor]:
        """Eq. 7: beta_i = softmax_i(z_a^T W_a H_i) over each modality's real nodes, (B, T) per block."""
        qa = self.anchor_proj(z_a)  # W_a^T z_a, so z_a^T W_a H_i = <qa, H_i>
        betas = []
        for blk in blocks:
            beta = masked_softmax(torch.linalg.vecdot(feats[blk.name], qa[:, None, :]), blk.mask)
            betas.append(beta)
            if info is not None:
                info.beta[blk.name] = beta.detach()
        return betas

    def anchor_edges(self, blocks: list[Block], betas: list[Tensor], node: Tensor, node_k: list[Tensor],
                     counts: list[int], layout: Layout, B: int) -> tuple[EdgeList, EdgeList]:
        """Anchor -> node and node -> anchor edges with weight beta in every modality graph (one
        anchor per graph) and in the fusion graph (one anchor per sample), plus anchor self-loops."""
        et, dev = self.edge_types, node.device
        w_k = torch.cat([beta.reshape(-1) for beta in betas])[node].split(counts)
        a_k = layout.mod_anchor[node].split(counts)
        f_k = layout.fus_anchor[node].split(counts)
        modality, fusion = EdgeList(), EdgeList()
        for k in range(len(blocks)):
            n_k, cnt = node_k[k], counts[k]
            out_t, in_t = _const(et.anchor_out, cnt, dev), _const(et.anchor_in, cnt, dev)
            modality.add(a_k[k], n_k, out_t, w_k[k])
            modality.add(n_k, a_k[k], in_t, w_k[k])
            fusion.add(f_k[k], n_k, out_t, w_k[k])
            fusion.add(n_k, f_k[k], in_t, w_k[k])
        a_self = layout.anchor_self
        modality.add(a_self, a_self, _const(et.anchor_self, a_self.numel(), dev), torch.ones(a_self.numel(), device=dev))
        f_self = a_self[:B]
        fusion.add(f_self, f_self, _const(et.anchor_self, B, dev), torch.ones(B, device=dev))
        return modality, fusion

    def cross_modal_edges(self, blocks: list[Block], betas: list[Tensor]) -> EdgeList:
        """Fusion-graph pairs between the beta-selected nodes of every two modalities, both
        directions, weight sqrt(beta_i * beta_j) (floored at 1e-6). Selection ``fusion_rule``: "topk" (the k
        highest-beta real nodes) or "above_uniform" (beta > 1/n)."""
        c = self.config
        edges = EdgeList()
        if c.fusion_rule == "topk":
            selected = []
            for blk, beta in zip(blocks, betas):
                idx = beta.masked_fill(~blk.mask, -1.0).topk(min(c.fusion_k, blk.T), dim=-1).indices.sort(dim=-1).values
                selected.append((idx, blk.mask.gather(1, idx)))  # selected steps (ascending), real?
        for a in range(len(blocks)):
            for v in range(a + 1, len(blocks)):
                ba, bv = blocks[a], blocks[v]
                if c.fusion_rule == "topk":
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
                types = _const(self.edge_types.cross, na.numel(), na.device)
                edges.add(na, nv, types, w)
                edges.add(nv, na, types, w)
        return edges

    # ------------------------------------------------------------------ cached index tensors
    def layout(self, B: int, blocks: list[Block], scored: list[Block], Tmax: int, device) -> Layout:
        """Index tensors that depend only on the batch layout (cached)."""
        key = (B, tuple((blk.name, blk.T) for blk in blocks), len(scored), Tmax, str(device))
        cache = self.__dict__.setdefault("_layout_cache", {})
        hit = cache.get(key)
        if hit is not None:
            return hit
        n_block_nodes = B * sum(blk.T for blk in blocks)
        barange = torch.arange(B, device=device)
        hit = Layout(
            mod_anchor=torch.cat([(n_block_nodes + k * B + barange).repeat_interleave(blk.T)
                                  for k, blk in enumerate(blocks)]),
            fus_anchor=torch.cat([(n_block_nodes + barange).repeat_interleave(blk.T) for blk in blocks]),
            anchor_self=n_block_nodes + torch.arange(len(blocks) * B, device=device),
        )
        if scored:
            M = len(scored)
            sample_base = torch.stack([blk.offset + barange * blk.T for blk in scored])  # (M, B)
            steps = torch.arange(Tmax, device=device)
            hit.row_base = sample_base[:, :, None].expand(M, B, Tmax).reshape(-1)
            hit.row_node = hit.row_base + steps.repeat(M * B)
            hit.row_graph = torch.arange(M * B, device=device).repeat_interleave(Tmax)
        if len(cache) >= 64:
            cache.clear()
        cache[key] = hit
        return hit

    def distance(self, T: int, device) -> Tensor:
        """|i - j| for i, j < T (cached): the index of B_pos."""
        cache = self.__dict__.setdefault("_distance_cache", {})
        key = (T, str(device))
        if key not in cache:
            steps = torch.arange(T, device=device)
            cache[key] = (steps[:, None] - steps[None, :]).abs()
        return cache[key]


def _const(value: int, n: int, device) -> Tensor:
    return torch.full((n,), value, dtype=torch.long, device=device)
