"""SSU, the Structural-Semantic Unifier (paper section "Methodology"; equation numbers are the paper's).

Read top to bottom:

1. ``SSUConfig``: every hyper-parameter, one line each.
2. ``temporal_pool``: the one pooling of long audio/vision streams (the LLM constructor uses it too).
3. Graph construction (no python loops over samples; batched dense ops with the thresholded
   modalities stacked into one tensor, then one ``nonzero`` and one concatenation to PyG
   ``edge_index``; index tensors that depend only on the batch layout are cached):
   - text graph G^t from the dependency parse (relation x direction edge types, self-loops);
   - Eq. 1-2 text-informed cross-attention + residual for audio/vision node features;
   - Eq. 3 score, the Fig. 3 affinity between text-informed attention vectors plus a temporal
     position bias B_pos, Eq. 4 softmax + symmetrisation, Eq. 5 adaptive threshold (learnable lambda,
     straight-through gradient) with a per-node cap on kept edges;
   - Eq. 6-7 semantic anchor node + attention edges beta in every modality graph;
   - the fusion graph G^f (intra-modality edges, node-anchor edges, cross-modal pairs picked by beta).
4. ``augment_edges``: the perturbed view (random deletion of edges, addition of absent ones).
5. ``GATEncoder``: GATv2 layers that use edge features (type embedding + weight).
6. Losses (Eq. 8-11) as plain functions, then ``SSU`` that ties it together.

Choices where the paper is silent are listed in docs/decisions.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv

from ssu_model.batching import SSUBatch
from ssu_model.errors import DataError

CLASS_RULES = {"sign3": 3, "binary": 2, "round7": 7}  # rule -> number of classes it yields


# --------------------------------------------------------------------------------------------
# 1. Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SSUConfig:
    text_dim: int = 384  # width of the word states (text encoder hidden size; MiniLM-L6 = 384)
    audio_dim: int | None = 5  # acoustic feature width (MOSI COVAREP 5, MOSEI 74); None = no audio
    vision_dim: int | None = 20  # visual feature width (MOSI 20, MOSEI 35); None = no vision
    hidden: int = 128  # d: node feature width everywhere (paper: hidden size 128)
    heads: int = 4  # attention heads of the Eq. 1 cross-attention and of every GAT layer
    gat_layers: int = 2  # GATv2 layers in the shared GAT and in the fusion GAT
    dropout: float = 0.1  # dropout on node features, attention weights and heads
    score_dim: int = 64  # d': width of W_Q, W_K in Eq. 3 (and of the LLM-state projections)
    edge_dim: int = 32  # width of edge features (edge-type embedding + weight * learned vector)
    max_nodes: int = 64  # audio/vision streams longer than this are temporally pooled to this many nodes
    max_len: int = 512  # B_pos covers temporal distances 0..max_len-1 (node counts up to max_len)
    max_edges_per_node: int = 16  # per-node cap on kept modality edges after Eq. 5 (0 = no cap)
    threshold_init: float = 1.0  # initial lambda of tau = mu + lambda * sigma (Eq. 5)
    mask_temperature: float = 0.1  # width (in units of sigma) of the sigmoid surrogate used for lambda's gradient
    affinity_scale_init: float = 5.0  # initial scale of the cosine affinity between text-informed attention vectors
    use_anchor: bool = True  # semantic anchor node + anchor edges + anchor-selected cross-modal fusion edges
    num_relations: int = 64  # dependency-relation vocabulary size (id 0 = unknown)
    fusion_rule: str = "topk"  # cross-modal fusion pairs: "topk" (k highest-beta nodes per modality) | "above_uniform" (beta > 1/n)
    fusion_k: int = 4  # k of fusion_rule "topk"
    aug_drop: float = 0.2  # fraction of (non-self-loop) edges deleted in the augmented view
    aug_add: float = 0.1  # number of absent edges added in the augmented view, as a fraction of the edges
    lambda_sup: float = 0.1  # weight of L_sup (Eq. 11); 0 switches it off (still reported)
    lambda_self: float = 0.1  # weight of L_self (Eq. 11)
    lambda_align: float = 0.1  # weight of L_align (Eq. 11)
    temperature: float = 0.1  # eta, InfoNCE temperature (Eq. 9)
    num_classes: int = 3  # classifier outputs; must equal the class count of class_rule
    class_rule: str = "sign3"  # labels -> classes: "sign3" (<0,=0,>0) | "binary" (>=0) | "round7" (round(clip(y,-3,3))+3)
    reg_loss: str = "l1"  # L_reg: "l1" | "mse"
    graph_source: str = "ssu"  # "ssu" | "llm": who builds the modality adjacencies
    llm_dim: int = 0  # width of cached LLM states when graph_source == "llm"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"SSUConfig.{name} {why}, got {getattr(self, name)!r}")

        for name in ("text_dim", "hidden", "heads", "gat_layers", "score_dim", "edge_dim",
                     "max_nodes", "max_len", "num_relations", "fusion_k"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be >= 1")
        for name in ("audio_dim", "vision_dim"):
            v = getattr(self, name)
            if v is not None and v < 1:
                bad(name, "must be >= 1 or None")
        if self.hidden % self.heads:
            bad("hidden", f"must be divisible by heads={self.heads}")
        if self.max_nodes > self.max_len:
            bad("max_nodes", f"must be <= max_len={self.max_len}")
        if self.max_edges_per_node < 0:
            bad("max_edges_per_node", "must be >= 0")
        for name in ("dropout", "aug_drop", "aug_add"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must be in [0, 1)")
        for name in ("lambda_sup", "lambda_self", "lambda_align"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        for name in ("temperature", "mask_temperature", "affinity_scale_init"):
            if getattr(self, name) <= 0:
                bad(name, "must be > 0")
        if self.fusion_rule not in ("topk", "above_uniform"):
            bad("fusion_rule", "must be 'topk' or 'above_uniform'")
        if self.class_rule not in CLASS_RULES:
            bad("class_rule", f"must be one of {sorted(CLASS_RULES)}")
        if self.num_classes != CLASS_RULES[self.class_rule]:
            bad("num_classes", f"must be {CLASS_RULES[self.class_rule]} for class_rule {self.class_rule!r}")
        if self.reg_loss not in ("l1", "mse"):
            bad("reg_loss", "must be 'l1' or 'mse'")
        if self.graph_source not in ("ssu", "llm"):
            bad("graph_source", "must be 'ssu' or 'llm'")
        if self.graph_source == "llm" and self.llm_dim < 1:
            bad("llm_dim", "must be >= 1 when graph_source is 'llm'")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model uses: text always, audio/vision when their dim is set."""
        dims = {"audio": self.audio_dim, "vision": self.vision_dim}
        return ("text",) + tuple(m for m in ("audio", "vision") if dims[m] is not None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SSUConfig:
        return cls(**d)


# --------------------------------------------------------------------------------------------
# 2. Temporal pooling of long streams
# --------------------------------------------------------------------------------------------
def temporal_pool(x: Tensor, lengths: Tensor, max_nodes: int) -> tuple[Tensor, Tensor]:
    """Average the real steps of each sequence into at most ``max_nodes`` contiguous segments.

    x: (B, L, D), lengths: (B,) true lengths. A sequence with n <= max_nodes real steps is
    returned unchanged; longer ones are split into ``max_nodes`` near-equal consecutive chunks
    (step t goes to chunk floor(t * max_nodes / n)) and each chunk is averaged. Padded steps never
    contribute. Returns (B, min(L, max_nodes), D) and the new lengths min(n, max_nodes).
    Deterministic (a batched matrix product, no atomics).
    """
    B, L, _ = x.shape
    lengths = lengths.to(device=x.device, dtype=torch.long)
    if L <= max_nodes:
        return x, lengths
    K = max_nodes
    new_len = lengths.clamp(max=K)
    t = torch.arange(L, device=x.device)
    chunk = (t[None, :] * new_len.clamp(min=1)[:, None]) // lengths.clamp(min=1)[:, None]
    chunk = torch.where(t[None, :] < lengths[:, None], chunk, K)  # padding -> no chunk
    onehot = (chunk[:, None, :] == torch.arange(K, device=x.device)[None, :, None]).to(x.dtype)
    onehot = onehot / onehot.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.bmm(onehot, x), new_len


def lengths_to_mask(lengths: Tensor, T: int) -> Tensor:
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def _masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``mask``ed entries; rows with no valid entry become all zeros (never NaN)."""
    s = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(s, dim=dim) * mask


# --------------------------------------------------------------------------------------------
# 3a. Eq. 1-2: text-informed cross-attention enhancement
# --------------------------------------------------------------------------------------------
class TextInformedAttention(nn.Module):
    """H^m = X^m + Attention(X^m queries, X^t keys/values)  (Eq. 1-2; Q from the modality so the
    output has one row per modality step, see decisions). The text keys/values ``kv`` =
    ``text_kv(X^t)`` are computed once and shared by audio and vision. Returns H^m and the
    head-averaged attention weights (B, T_m, T_t) for introspection."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, xm: Tensor, kv: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        B, Tm, H = xm.shape
        Tt = kv.shape[1]
        h, dh = self.heads, H // self.heads
        q = self.q(xm).view(B, Tm, h, dh).transpose(1, 2)
        k, v = (t.reshape(B, Tt, h, dh).transpose(1, 2) for t in kv.split(H, dim=-1))
        w = _masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), text_mask[:, None, None, :])
        enh = (self.drop(w) @ v).transpose(1, 2).reshape(B, Tm, H)
        has_text = text_mask.any(1).to(xm.dtype)[:, None, None]  # empty text -> no enhancement
        return xm + self.out(enh) * has_text, w.mean(1)


# --------------------------------------------------------------------------------------------
# 3b. Eq. 3 + Fig. 3: modality score matrices
# --------------------------------------------------------------------------------------------
class TextGuidedScore(nn.Module):
    """Square score for one modality: the Eq. 3 text-guided score S^m = (X^m W_Q)(X^t W_K)^T / sqrt(d')
    (T_m x T_t) is turned into text-informed attention vectors P = softmax_text(S^m); their pairwise
    cosine similarity (Fig. 3), scaled by a learnable factor, plus the learnable temporal position
    bias B_pos(|i - j|) gives the T_m x T_m score that Eq. 4 normalises."""

    def __init__(self, hidden: int, score_dim: int, max_len: int, scale_init: float):
        super().__init__()
        self.wq = nn.Linear(hidden, score_dim, bias=False)
        self.wk = nn.Linear(hidden, score_dim, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(max_len))  # B_pos as a function of |i - j|
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale_init)))

    def forward(self, xm: Tensor, xt: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        Tm = xm.shape[1]
        if Tm > self.pos_bias.numel():
            raise DataError(f"{Tm} nodes exceed max_len={self.pos_bias.numel()} of the position bias")
        s = self.wq(xm) @ self.wk(xt).transpose(1, 2) / math.sqrt(self.wq.out_features)  # Eq. 3
        p = _masked_softmax(s, text_mask[:, None, :])  # text-informed attention vectors
        pn = F.normalize(p, dim=-1)
        steps = torch.arange(Tm, device=xm.device)
        dist = (steps[:, None] - steps[None, :]).abs()
        score = self.log_scale.exp() * (pn @ pn.transpose(1, 2)) + self.pos_bias[dist]
        return score, p


class LLMScore(nn.Module):
    """graph_source="llm": score = (H W_q)(H W_k)^T / sqrt(d') from cached LLM states (contract C)."""

    def __init__(self, llm_dim: int, score_dim: int):
        super().__init__()
        self.wq = nn.Linear(llm_dim, score_dim, bias=False)
        self.wk = nn.Linear(llm_dim, score_dim, bias=False)

    def forward(self, states: Tensor) -> Tensor:
        return self.wq(states) @ self.wk(states).transpose(1, 2) / math.sqrt(self.wq.out_features)


# --------------------------------------------------------------------------------------------
# 3c. Eq. 4-5: softmax + symmetrisation, adaptive threshold
# --------------------------------------------------------------------------------------------
def pair_mask(node_mask: Tensor) -> Tensor:
    """(B,T) real-node mask -> (B,T,T) mask of pairs of real nodes."""
    return node_mask[:, :, None] & node_mask[:, None, :]


def symmetric_adjacency(score: Tensor, pair: Tensor) -> Tensor:
    """Eq. 4: A = (softmax(S) + softmax(S)^T) / 2 over pairs of real nodes; padding rows/cols are 0."""
    p = _masked_softmax(score, pair)
    return 0.5 * (p + p.transpose(1, 2))


def adaptive_threshold(
    adj: Tensor, pair: Tensor, lam: Tensor, mask_temperature: float, cap: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 5 with tau = mu + lambda * sigma per sample over the real (unpadded) entries.

    Returns (keep, weights, tau): ``keep`` (B,T,T) bool is the hard mask M (entries >= tau, the
    diagonal always kept as self-loops, at most ``cap`` largest entries per row when cap > 0, never a
    padded node); ``weights`` = A * M in the forward pass, with a straight-through gradient
    d M / d lambda taken from sigmoid((A - tau) / (mask_temperature * sigma)) (only built when
    autograd is on). ``pair`` = ``pair_mask(node_mask)``. The model uses the same ``_threshold_stats`` /
    ``_threshold_keep`` on all its modalities at once and builds the straight-through weights
    only for the kept edges.
    """
    node_mask = pair.diagonal(dim1=-2, dim2=-1)
    pf = pair.to(adj.dtype)
    masked = adj * pf
    _, sigma, tau = _threshold_stats(masked, pf, node_mask, lam)
    keep = _threshold_keep(masked, tau, node_mask, cap)
    if not (torch.is_grad_enabled() and (adj.requires_grad or lam.requires_grad)):
        return keep, adj, tau
    soft = torch.sigmoid((adj - tau[:, None, None]) / (mask_temperature * sigma[:, None, None] + 1e-12))
    st = keep.to(adj.dtype) + soft - soft.detach()  # forward: hard mask; backward: sigmoid
    return keep, adj * st, tau


def _threshold_stats(adj: Tensor, pf: Tensor, node_mask: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mu, sigma, tau) of Eq. 5 over the real pairs of each (..., T, T) adjacency: population mean
    and std of the n^2 real entries. ``adj`` is 0 outside the real pairs, ``pf`` their float mask."""
    cnt = node_mask.sum(-1).to(adj.dtype)
    n = (cnt * cnt).clamp(min=1.0)
    mu = adj.sum((-2, -1)) / n
    dev = (adj - mu[..., None, None]) * pf  # exact: (A - mu) on real pairs, 0 elsewhere
    if torch.is_grad_enabled() and dev.requires_grad:
        sq = dev * dev
    else:
        sq = dev.mul_(dev)
    var = sq.sum((-2, -1)) / n
    sigma = (var + 1e-12).sqrt()
    return mu, sigma, mu + lam * sigma


def _threshold_keep(adj: Tensor, tau: Tensor, node_mask: Tensor, cap: int) -> Tensor:
    """Hard mask M of Eq. 5 for (..., T, T) adjacencies: real pairs with A >= tau, then in every
    row with more than ``cap`` such entries (cap > 0) only those >= the cap-th largest of them
    (ties kept), plus the real diagonal (self-loops). The cap is evaluated only on the rows where
    it binds (usually few), with the same masked top-k as a dense pass would use."""
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


# --------------------------------------------------------------------------------------------
# 3d. Graph containers and vectorised edge builders
# --------------------------------------------------------------------------------------------
@dataclass
class Block:
    """One modality's nodes in the padded layout: node id of (sample b, step i) = offset + b*T + i."""

    name: str
    offset: int
    T: int
    mask: Tensor  # (B, T) bool real nodes
    present: Tensor  # (B,) bool: the sample has this modality graph (enters the readout)


@dataclass
class Graphs:
    """Everything ``build_graphs`` produces: ready for the GATs, plus introspection."""

    batch_size: int
    blocks: list[Block]
    x: Tensor  # (N, hidden) node features of the modality-graph batch (blocks, then anchors)
    edge_index: Tensor  # (2, E) source -> target over the modality graphs
    edge_type: Tensor  # (E,) long edge-type id (see SSU.edge_types)
    edge_weight: Tensor  # (E,) float edge weight (adjacency value, beta, or 1)
    anchor_offset: int  # id of the first anchor node in x (one per modality graph per sample), -1 if none
    fusion_x: Tensor  # (N_f, hidden) fusion-graph nodes (blocks, then one anchor per sample)
    fusion_edge_index: Tensor
    fusion_edge_type: Tensor
    fusion_edge_weight: Tensor
    fusion_anchor_offset: int
    introspection: dict = field(default_factory=dict)

    def node_membership(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per node of ``x``: (first real node id of its modality graph, number of real nodes in
        that graph, that graph's anchor id or -1); what ``augment_edges`` samples absent edges from."""
        B = self.batch_size
        dev = self.x.device
        barange = torch.arange(B, device=dev)
        has_anchor = self.anchor_offset >= 0
        starts, counts, anchors = [], [], []
        for k, blk in enumerate(self.blocks):
            st, cnt = blk.offset + barange * blk.T, blk.mask.sum(1)
            anc = self.anchor_offset + k * B + barange if has_anchor else torch.full_like(barange, -1)
            starts.append(st.repeat_interleave(blk.T))
            counts.append(cnt.repeat_interleave(blk.T))
            anchors.append(anc.repeat_interleave(blk.T))
        if has_anchor:  # the anchor nodes themselves, graph by graph
            for k, blk in enumerate(self.blocks):
                starts.append(blk.offset + barange * blk.T)
                counts.append(blk.mask.sum(1))
                anchors.append(self.anchor_offset + k * B + barange)
        return torch.cat(starts), torch.cat(counts), torch.cat(anchors)


def _assemble_edges(src: list[Tensor], dst: list[Tensor], typ: list[Tensor], w: list[Tensor],
                    device) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate edge pieces -> (edge_index (2,E), type (E,), weight (E,)); one copy each."""
    if not src:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return torch.zeros(2, 0, dtype=torch.long, device=device), z, z.float()
    E = sum(int(s.numel()) for s in src)
    ei = torch.empty(2, E, dtype=torch.long, device=device)
    torch.cat(src, out=ei[0])
    torch.cat(dst, out=ei[1])
    return ei, torch.cat(typ), torch.cat(w)


# --------------------------------------------------------------------------------------------
# 4. Augmented view: edge deletion and addition
# --------------------------------------------------------------------------------------------
def augment_edges(
    edge_index: Tensor,
    node_graph_start: Tensor,
    node_graph_count: Tensor,
    node_graph_anchor: Tensor,
    p_drop: float,
    p_add: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Perturb a batch of graphs. Of the E' non-self-loop edges, exactly round(p_drop * E') chosen
    uniformly are deleted, and round(p_add * E') edges that are ABSENT from the input (no self-loops,
    no duplicates) are added, each inside the graph of a uniformly chosen existing edge, from that
    edge's source to a uniformly chosen node of the same graph. Self-loops are kept.

    Returns (new_edge_index, row): ``row[e]`` is the input edge whose features new edge e takes (its
    own for kept edges, the seed edge for added ones). Fewer edges are added only when a graph has
    no absent pair left after 8 rounds of sampling.
    """
    dev = edge_index.device
    N = int(node_graph_start.numel())
    src, dst = edge_index
    cand = (src != dst).nonzero().squeeze(1)
    n_el = int(cand.numel())
    n_drop, n_add = int(round(p_drop * n_el)), int(round(p_add * n_el))
    keep = torch.ones(src.numel(), dtype=torch.bool, device=dev)
    if n_drop:
        perm = torch.randperm(n_el, generator=generator, device=dev)
        keep[cand[perm[:n_drop]]] = False
    kept_rows = keep.nonzero().squeeze(1)
    if n_add == 0 or n_el == 0:
        return edge_index[:, kept_rows], kept_rows
    taken = src * N + dst  # keys of every edge of the input graph ("absent" is relative to it)
    new_src, new_dst, new_row = [], [], []
    need = n_add
    for _ in range(8):
        m = max(2 * need, 16)
        seed = cand[torch.randint(n_el, (m,), generator=generator, device=dev)]
        s = src[seed]
        has_anchor = node_graph_anchor[s] >= 0
        cnt = node_graph_count[s] + has_anchor.long()
        r = (torch.rand(m, generator=generator, device=dev) * cnt).long()
        d = torch.where(r < node_graph_count[s], node_graph_start[s] + r, node_graph_anchor[s])
        key = s * N + d
        ok = (d != s) & ~torch.isin(key, taken)
        key, s, d, seed = key[ok], s[ok], d[ok], seed[ok]
        if key.numel() == 0:
            continue
        uniq, inv = torch.unique(key, return_inverse=True)
        first = torch.full((uniq.numel(),), key.numel(), dtype=torch.long, device=dev)
        first = first.scatter_reduce(0, inv, torch.arange(key.numel(), device=dev), "amin")
        first = first.sort().values[:need]
        new_src.append(s[first])
        new_dst.append(d[first])
        new_row.append(seed[first])
        taken = torch.cat([taken, key[first]])
        need -= int(first.numel())
        if need == 0:
            break
    add_index = torch.stack([torch.cat(new_src), torch.cat(new_dst)]) if new_src else edge_index[:, :0]
    rows = torch.cat([kept_rows, *new_row])
    return torch.cat([edge_index[:, kept_rows], add_index], dim=1), rows


# --------------------------------------------------------------------------------------------
# 5. GAT encoder with edge features
# --------------------------------------------------------------------------------------------
class EdgeEncoder(nn.Module):
    """Edge feature = embedding(edge type) + weight * learned vector (so both really reach GATv2)."""

    def __init__(self, num_types: int, edge_dim: int):
        super().__init__()
        self.type_emb = nn.Embedding(num_types, edge_dim)
        self.weight_vec = nn.Parameter(torch.randn(edge_dim) / math.sqrt(edge_dim))

    def forward(self, edge_type: Tensor, edge_weight: Tensor) -> Tensor:
        return self.type_emb(edge_type) + edge_weight[:, None] * self.weight_vec


class GATEncoder(nn.Module):
    """``layers`` x [GATv2Conv(edge_dim) -> ELU -> dropout -> residual -> LayerNorm]."""

    def __init__(self, hidden: int, heads: int, layers: int, edge_dim: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList(
            GATv2Conv(hidden, hidden // heads, heads=heads, edge_dim=edge_dim,
                      add_self_loops=False, dropout=dropout)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = norm(x + self.drop(F.elu(conv(x, edge_index, edge_attr))))
        return x


# --------------------------------------------------------------------------------------------
# 6. Losses (Eq. 8-11)
# --------------------------------------------------------------------------------------------
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


@dataclass
class SSUOutput:
    prediction: Tensor  # (B,) regression output
    logits: Tensor  # (B, num_classes)
    losses: dict[str, Tensor]  # "reg", "sup", "self", "align", "total" (Eq. 11)
    graphs: dict | None = None  # introspection (return_graphs=True)
    z: dict[str, Tensor] | None = None  # "ori", "aug", "fuse" readouts (B, hidden)


# --------------------------------------------------------------------------------------------
# 7. The model
# --------------------------------------------------------------------------------------------
class SSU(nn.Module):
    def __init__(self, config: SSUConfig):
        super().__init__()
        c = self.config = config
        H = c.hidden
        R = c.num_relations
        # edge-type ids: relation x direction for dependency edges, then the special types
        self.edge_types = {
            "text_self": 2 * R, "audio": 2 * R + 1, "vision": 2 * R + 2, "anchor_out": 2 * R + 3,
            "anchor_in": 2 * R + 4, "anchor_self": 2 * R + 5, "cross": 2 * R + 6, "llm_text": 2 * R + 7,
        }
        n_types = 2 * R + 8
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
        if c.use_anchor:
            self.anchor_proj = nn.Linear(H, H, bias=False)  # W_a (Eq. 7)
            self.anchor_type = nn.Parameter(torch.zeros(H))  # marks anchor nodes (modality nodes differ by projection)
        self.node_drop = nn.Dropout(c.dropout)
        self.edge_enc = EdgeEncoder(n_types, c.edge_dim)
        self.gat = GATEncoder(H, c.heads, c.gat_layers, c.edge_dim, c.dropout)  # shared GAT
        self.fusion_edge_enc = EdgeEncoder(n_types, c.edge_dim)
        self.fusion_gat = GATEncoder(H, c.heads, c.gat_layers, c.edge_dim, c.dropout)
        self.reg_head = nn.Sequential(nn.Linear(2 * H, H), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(H, 1))
        self.cls_head = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Dropout(c.dropout),
                                      nn.Linear(H, c.num_classes))

    # ---------------------------------------------------------------- graph construction
    def _modality_inputs(self, batch: SSUBatch) -> dict[str, tuple[Tensor, Tensor, Tensor | None]]:
        """name -> (raw features (B,T,D) pooled if long, node mask (B,T), llm states or None)."""
        c = self.config
        out: dict[str, tuple[Tensor, Tensor, Tensor | None]] = {}
        llm = c.graph_source == "llm"
        if llm and batch.llm_text is None:
            raise DataError("graph_source is 'llm' but the batch has no llm states")
        out["text"] = (batch.text, batch.text_mask, batch.llm_text if llm else None)
        for m in c.modalities[1:]:
            x, lengths = getattr(batch, m), getattr(batch, f"{m}_lengths")
            if x is None:
                continue  # modality absent from this batch: text graph (+ the other) only
            if x.shape[-1] != getattr(c, f"{m}_dim"):
                raise DataError(f"batch {m} has width {x.shape[-1]}, config {m}_dim is {getattr(c, f'{m}_dim')}")
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
            out[m] = (x, lengths_to_mask(lengths, x.shape[1]), states)
        return out

    def encode_nodes(self, batch: SSUBatch, introspect: bool = False) -> dict:
        """Stage 1, feature enhancement: projections to ``hidden``, temporal pooling, and
        H^m = X^m + Attention(X^m, X^t) (Eq. 1-2). Returns the state ``graphs_from_nodes`` needs.

        Without introspection and without attention dropout (eval, or dropout 0) a fast path runs:
        the Eq. 1 queries and the Eq. 3 queries of a modality come from one matrix product, the
        attention is batched over samples x heads with the text keys/values laid out once, and
        (autograd off) the node features are written straight into the node-feature matrix of the
        graphs. Otherwise ``TextInformedAttention.forward`` runs (it also returns the attention
        weights and draws the dropout masks)."""
        c = self.config
        if batch.deps.numel() and int(batch.deps.max()) >= c.num_relations:
            raise DataError(f"relation id {int(batch.deps.max())} >= num_relations={c.num_relations}")
        inputs = self._modality_inputs(batch)
        info: dict = {"adjacency": {}, "beta": {}, "cross_attention": {}, "threshold": {},
                      "text_attention": {}, "lengths": {}} if introspect else {}
        names = list(inputs)
        B, H = batch.size, c.hidden
        # text projections only on the real words (padded word rows of X^t are 0: they are masked
        # everywhere, and as nodes they are isolated and excluded from every readout)
        Tt = batch.text.shape[1]
        real_idx = batch.text_mask.reshape(-1).nonzero().squeeze(1)  # b * Tt + t of the real words
        xr = self.proj["text"](batch.text.reshape(B * Tt, -1).index_select(0, real_idx))
        x = None
        if not torch.is_grad_enabled():  # node-feature matrix of the graphs, filled in place
            n_nodes = B * sum(inputs[m][1].shape[1] for m in names)
            x = xr.new_empty(n_nodes + (len(names) * B if c.use_anchor else 0), H)
            xt = x[: B * Tt].zero_().index_copy_(0, real_idx, xr).view(B, Tt, H)
        else:
            xt = xr.new_zeros(B * Tt, H).index_copy(0, real_idx, xr).view(B, Tt, H)
        feats: dict[str, Tensor] = {"text": xt}
        out = {"inputs": inputs, "feats": feats, "info": info, "x": x, "score_q": {},
               "text_rows": (real_idx, xr)}
        others = names[1:]
        if not others:
            return out
        kv = xr.new_zeros(B * Tt, 2 * H).index_copy(0, real_idx, self.text_kv(xr)).view(B, Tt, 2 * H)
        text_mask = batch.text_mask
        fast = not introspect and not (self.training and c.dropout > 0)
        if fast:
            h = c.heads
            dh = H // h
            kvh = kv.view(B, Tt, 2, h, dh)
            kc = kvh[:, :, 0].transpose(1, 2).reshape(B * h, Tt, dh)  # (B*h, Tt, dh) keys
            vc = kvh[:, :, 1].transpose(1, 2).reshape(B * h, Tt, dh)
            bias = torch.zeros(B, 1, 1, Tt, dtype=xt.dtype, device=xt.device)
            bias.masked_fill_(~text_mask[:, None, None, :], torch.finfo(xt.dtype).min)
            bias = bias.expand(B, h, 1, Tt).reshape(B * h, 1, Tt)
            has_text = text_mask.any(1)
            all_text = bool(has_text.all())
        offset = B * xt.shape[1]
        for m in others:
            xm = self.proj[m](inputs[m][0])
            Tm = xm.shape[1]
            if fast:
                enh = self.enhance[m]
                if c.graph_source == "ssu":  # Eq. 1 queries and Eq. 3 queries in one product
                    wq = self.scorer[m].wq.weight
                    qq = F.linear(xm, torch.cat([enh.q.weight, wq]),
                                  torch.cat([enh.q.bias, enh.q.bias.new_zeros(wq.shape[0])]))
                    q = qq[..., :H]
                    out["score_q"][m] = qq[..., H:]
                else:
                    q = enh.q(xm)
                qc = q.reshape(B, Tm, h, dh).transpose(1, 2).reshape(B * h, Tm, dh)
                w = torch.softmax(torch.baddbmm(bias, qc, kc.transpose(1, 2), alpha=1.0 / math.sqrt(dh)), dim=-1)
                o = torch.bmm(w, vc).view(B, h, Tm, dh).transpose(1, 2).reshape(B, Tm, H)
                y = enh.out(o)
                # H^m = X^m + out(attn); an empty text gives no enhancement
                if x is not None:
                    dest = x[offset: offset + B * Tm].view(B, Tm, H)
                    if all_text:
                        hm = torch.add(xm, y, out=dest)
                    else:
                        hm = torch.addcmul(xm, y, has_text.to(y.dtype)[:, None, None], out=dest)
                else:
                    hm = y.add_(xm) if all_text else xm + y * has_text.to(y.dtype)[:, None, None]
            else:
                hm, attn = self.enhance[m](xm, kv, text_mask)
                if introspect:
                    info["cross_attention"][m] = attn.detach()
                if x is not None:
                    hm = x[offset: offset + B * Tm].view(B, Tm, H).copy_(hm)
            feats[m] = hm
            offset += B * Tm
            inputs[m] = (xm, inputs[m][1], inputs[m][2])  # keep X^m (projected) for Eq. 3
        return out

    def build_graphs(self, batch: SSUBatch, introspect: bool = False) -> Graphs:
        """Inputs -> modality graphs (text, audio, vision) with anchor nodes/edges, and the fusion
        graph (no GAT): ``encode_nodes`` then ``graphs_from_nodes``."""
        return self.graphs_from_nodes(batch, self.encode_nodes(batch, introspect), introspect)

    def _layout(self, B: int, blocks: list[Block], scored: list[Block], Tmax: int, device) -> dict[str, Tensor]:
        """Index tensors that depend only on the batch layout (cached): per real-node id its
        modality-graph anchor and fusion-graph anchor; per row r of the stacked (M*B*Tmax, Tmax)
        adjacency its node id, the id of its sample's first node and m*B + b."""
        key = (B, tuple((blk.name, blk.T) for blk in blocks), len(scored), Tmax, str(device))
        cache = self.__dict__.setdefault("_layout_cache", {})
        hit = cache.get(key)
        if hit is not None:
            return hit
        n_block_nodes = B * sum(blk.T for blk in blocks)
        barange = torch.arange(B, device=device)
        hit = {
            "mod_anchor": torch.cat([(n_block_nodes + k * B + barange).repeat_interleave(blk.T)
                                     for k, blk in enumerate(blocks)]),
            "fus_anchor": torch.cat([(n_block_nodes + barange).repeat_interleave(blk.T) for blk in blocks]),
            "anchor_self": n_block_nodes + torch.arange(len(blocks) * B, device=device),
        }
        if scored:
            M = len(scored)
            sample_base = torch.stack([blk.offset + barange * blk.T for blk in scored])  # (M, B)
            steps = torch.arange(Tmax, device=device)
            hit["row_base"] = sample_base[:, :, None].expand(M, B, Tmax).reshape(-1)
            hit["row_node"] = hit["row_base"] + steps.repeat(M * B)
            hit["row_mb"] = torch.arange(M * B, device=device).repeat_interleave(Tmax)
        if len(cache) >= 64:
            cache.clear()
        cache[key] = hit
        return hit

    def _scores(self, scored: list[Block], inputs: dict, nodes: dict, xt: Tensor, text_mask: Tensor,
                Tmax: int, introspect: bool, info: dict) -> Tensor:
        """Eq. 3 (+ Fig. 3 affinity and B_pos) or the LLM score for every scored modality, stacked
        and zero-padded to (M, B, Tmax, Tmax)."""
        c = self.config
        B = text_mask.shape[0]
        M = len(scored)
        outs: list[Tensor] = []
        S = None
        if not torch.is_grad_enabled() and all(blk.T == Tmax for blk in scored):
            S = xt.new_empty(M, B, Tmax, Tmax)  # written in place below
        if c.graph_source == "llm":
            for blk in scored:
                outs.append(self.llm_scorer[blk.name](inputs[blk.name][2]))
        else:
            d = c.score_dim
            # keys of all modalities in one product, real words only (padded keys are masked)
            wk = torch.cat([self.scorer[blk.name].wk.weight for blk in scored])
            real_idx, xr = nodes["text_rows"]
            Bt, Tt = text_mask.shape
            keys = xr.new_zeros(Bt * Tt, wk.shape[0]).index_copy(0, real_idx, F.linear(xr, wk)).view(Bt, Tt, -1)
            score_q = nodes.get("score_q", {})
            tbias = torch.zeros(B, 1, xt.shape[1], dtype=xt.dtype, device=xt.device)
            tbias.masked_fill_(~text_mask[:, None, :], torch.finfo(xt.dtype).min)
            all_text = bool(text_mask.any(1).all())
            for idx, blk in enumerate(scored):
                sc = self.scorer[blk.name]
                T = blk.T
                if T > sc.pos_bias.numel():
                    raise DataError(f"{T} nodes exceed max_len={sc.pos_bias.numel()} of the position bias")
                q = score_q.get(blk.name)
                if q is None:
                    q = sc.wq(inputs[blk.name][0])
                k = keys[..., idx * d:(idx + 1) * d]
                s = torch.baddbmm(tbias, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(d))  # Eq. 3
                p = torch.softmax(s, dim=-1)  # text-informed attention vectors
                if not all_text:
                    p = p * text_mask[:, None, :]  # empty text -> zero vector
                if introspect:
                    info["text_attention"][blk.name] = p.detach()
                pn = F.normalize(p, dim=-1)
                pb = sc.pos_bias[self._distance(T, xt.device)]
                if S is not None:
                    torch.bmm(pn, pn.transpose(1, 2), out=S[idx])
                    S[idx].mul_(sc.log_scale.exp()).add_(pb)
                else:
                    outs.append(sc.log_scale.exp() * (pn @ pn.transpose(1, 2)) + pb)
        if S is not None and not outs:
            return S
        if all(o.shape[-1] == Tmax for o in outs):
            return torch.stack(outs)
        S = outs[0].new_zeros(M, B, Tmax, Tmax)
        for idx, o in enumerate(outs):
            S[idx, :, : o.shape[1], : o.shape[2]] = o
        return S

    def _distance(self, T: int, device) -> Tensor:
        """|i - j| for i, j < T (cached): the index of B_pos."""
        cache = self.__dict__.setdefault("_dist_cache", {})
        key = (T, str(device))
        if key not in cache:
            steps = torch.arange(T, device=device)
            cache[key] = (steps[:, None] - steps[None, :]).abs()
        return cache[key]

    def graphs_from_nodes(self, batch: SSUBatch, nodes: dict, introspect: bool = False) -> Graphs:
        """Stage 2, dynamic graph generation (Eq. 3-7 and the fusion graph), batched; sample b's
        node i of modality m has id offset_m + b*T_m + i.

        All thresholded modalities are stacked into one zero-padded (M, B, Tmax, Tmax) tensor, so
        Eq. 4-5 run once for all of them and their edges come from one ``nonzero``. Edge order:
        text tree (head->dep, dep->head, self-loops), thresholded modalities (row-major), then
        per modality graph its anchor edges (anchor->nodes, nodes->anchor), the anchor
        self-loops, and in the fusion graph the cross-modal pairs, modality pair by pair."""
        c, et = self.config, self.edge_types
        dev = batch.text.device
        B = batch.size
        inputs, feats, info = nodes["inputs"], nodes["feats"], nodes["info"]
        names = list(inputs)
        lam = self.threshold_lambda
        text_mask = batch.text_mask
        xt = feats["text"]
        llm = c.graph_source == "llm"
        grad = torch.is_grad_enabled()
        blocks: list[Block] = []
        offset = 0
        for m in names:
            mask = inputs[m][1]
            T = mask.shape[1]
            present = mask.any(1)
            if m == "text" and c.use_anchor:
                present = torch.ones_like(present)  # the text graph always has its anchor node
            blocks.append(Block(m, offset, T, mask, present))
            offset += B * T
        n_block_nodes = offset
        scored = [blk for blk in blocks if llm or blk.name != "text"]
        Tmax = max((blk.T for blk in scored), default=0)
        L = self._layout(B, blocks, scored, Tmax, dev)

        # real nodes of all blocks, in id order, and their count per block
        real = torch.cat([blk.mask.reshape(-1) for blk in blocks])
        node = real.nonzero().squeeze(1)
        counts = torch.stack([blk.mask.sum() for blk in blocks]).tolist()
        node_k = node.split(counts)

        src_i: list[Tensor] = []  # intra-modality edges, shared by both edge lists
        dst_i: list[Tensor] = []
        typ_i: list[Tensor] = []
        w_i: list[Tensor] = []

        def const(value, n: int) -> Tensor:
            return torch.full((n,), value, dtype=torch.long, device=dev)

        if not llm:  # text graph G^t from the dependency tree
            T = blocks[0].T
            heads = batch.heads
            dep = text_mask & (heads != torch.arange(T, device=dev)[None, :]) & (heads >= 0)
            b, i = dep.nonzero(as_tuple=True)
            h = heads[b, i]
            r = batch.deps[b, i]
            base = b * T  # the text block is first: offset 0
            selfn = node_k[0]
            src_i += [base + h, base + i, selfn]
            dst_i += [base + i, base + h, selfn]
            typ_i += [2 * r, 2 * r + 1, const(et["text_self"], selfn.numel())]
            w_i.append(torch.ones(2 * b.numel() + selfn.numel(), device=dev))
            if introspect:
                a = torch.zeros(B, T, T, device=dev)
                a[b, i, h] = 1.0
                a[b, h, i] = 1.0
                info["adjacency"]["text"] = a

        if scored:  # Eq. 3-5 for all thresholded modalities at once
            M = len(scored)
            S = self._scores(scored, inputs, nodes, xt, text_mask, Tmax, introspect, info)
            nm = torch.stack([F.pad(blk.mask, (0, Tmax - blk.T)) for blk in scored])  # (M, B, Tmax)
            nmf = nm.to(S.dtype)
            pf = nmf[..., :, None] * nmf[..., None, :]  # real pairs
            fill = torch.finfo(S.dtype).min
            S = S.masked_fill(~nm[:, :, None, :], fill) if grad else S.masked_fill_(~nm[:, :, None, :], fill)
            P = torch.softmax(S, dim=-1)
            # Eq. 4: A = (softmax(S) + softmax(S)^T) / 2 on real pairs, 0 elsewhere
            A = P + P.transpose(-1, -2)
            A = A * pf * 0.5 if grad else A.mul_(pf).mul_(0.5)
            _, sigma, tau = _threshold_stats(A, pf, nm, lam)
            keep = _threshold_keep(A, tau, nm, c.max_edges_per_node)
            rows, j = keep.view(-1, Tmax).nonzero(as_tuple=True)  # edge j -> i of row (m, b, i)
            w = A.view(-1, Tmax)[rows, j]
            src_i.append(L["row_base"][rows] + j)
            dst_i.append(L["row_node"][rows])
            if grad:  # straight-through gradient to lambda (forward value stays A)
                mb = L["row_mb"][rows]
                denom = (c.mask_temperature * sigma + 1e-12).reshape(-1)
                soft = torch.sigmoid((w - tau.reshape(-1)[mb]) / denom[mb])
                w = w * ((1.0 + soft) - soft.detach())
            w_i.append(w)
            bounds = torch.searchsorted(rows, torch.arange(1, M + 1, device=dev) * (B * Tmax))
            per_mod = torch.diff(bounds, prepend=bounds.new_zeros(1))
            etypes = torch.tensor([et["llm_text"] if blk.name == "text" else et[blk.name] for blk in scored],
                                  device=dev)
            typ_i.append(etypes.repeat_interleave(per_mod, output_size=rows.numel()))
            if introspect:
                for idx, blk in enumerate(scored):
                    T = blk.T
                    info["adjacency"][blk.name] = (A[idx, :, :T, :T] * keep[idx, :, :T, :T]).detach()
                    info["threshold"][blk.name] = tau[idx].detach()

        # semantic anchor (Eq. 6-7)
        z_a = None
        if c.use_anchor or introspect:
            tmf = text_mask.to(xt.dtype)[..., None]
            z_a = (xt * tmf).sum(1) / tmf.sum(1).clamp(min=1.0)  # AvgPool over real words; empty -> 0
        x = nodes.get("x")
        if c.use_anchor:
            anchor_x = z_a + self.anchor_type
            qa = self.anchor_proj(z_a)  # W_a^T z_a, so z_a^T W_a H_i = <qa, H_i>
            betas = []
            for blk in blocks:
                logits = torch.linalg.vecdot(feats[blk.name], qa[:, None, :])
                beta = _masked_softmax(logits, blk.mask)  # Eq. 7, over this modality's nodes
                betas.append(beta)
                if introspect:
                    info["beta"][blk.name] = beta.detach()
            w_node = torch.cat([beta.reshape(-1) for beta in betas])[node]
            w_k = w_node.split(counts)
            a_k = L["mod_anchor"][node].split(counts)
            f_k = L["fus_anchor"][node].split(counts)
            a_self = L["anchor_self"]
            f_self = a_self[:B]
            mod_src, mod_dst, mod_typ, mod_w = [], [], [], []
            fus_src, fus_dst, fus_typ, fus_w = [], [], [], []
            for k in range(len(blocks)):
                n_k, cnt = node_k[k], counts[k]
                mod_src += [a_k[k], n_k]
                mod_dst += [n_k, a_k[k]]
                fus_src += [f_k[k], n_k]
                fus_dst += [n_k, f_k[k]]
                t = torch.cat([const(et["anchor_out"], cnt), const(et["anchor_in"], cnt)])
                mod_typ.append(t)
                fus_typ.append(t)
                mod_w += [w_k[k], w_k[k]]
                fus_w += [w_k[k], w_k[k]]
            mod_src.append(a_self)
            mod_dst.append(a_self)
            mod_typ.append(const(et["anchor_self"], a_self.numel()))
            mod_w.append(torch.ones(a_self.numel(), device=dev))
            fus_src.append(f_self)
            fus_dst.append(f_self)
            fus_typ.append(const(et["anchor_self"], B))
            fus_w.append(torch.ones(B, device=dev))
            # cross-modal pairs among the anchor-selected nodes, both directions
            if c.fusion_rule == "topk":
                sel = []
                for blk, beta in zip(blocks, betas):
                    kk = min(c.fusion_k, blk.T)
                    idx = beta.masked_fill(~blk.mask, -1.0).topk(kk, dim=-1).indices.sort(dim=-1).values
                    sel.append((idx, blk.mask.gather(1, idx)))  # selected steps (ascending), real?
            for a in range(len(blocks)):
                for bb in range(a + 1, len(blocks)):
                    ba, bv = blocks[a], blocks[bb]
                    if c.fusion_rule == "topk":
                        (ia, va), (iv, vv) = sel[a], sel[bb]
                        b, p, q = (va[:, :, None] & vv[:, None, :]).nonzero(as_tuple=True)
                        i, j = ia[b, p], iv[b, q]
                    else:
                        n_real = ba.mask.sum(1, keepdim=True).to(betas[a].dtype)
                        sa = ba.mask & (betas[a] * n_real > 1.0)
                        n_real = bv.mask.sum(1, keepdim=True).to(betas[bb].dtype)
                        sv = bv.mask & (betas[bb] * n_real > 1.0)
                        b, i, j = (sa[:, :, None] & sv[:, None, :]).nonzero(as_tuple=True)
                    na, nv = ba.offset + b * ba.T + i, bv.offset + b * bv.T + j
                    w = (betas[a][b, i] * betas[bb][b, j]).sqrt()
                    fus_src += [na, nv]
                    fus_dst += [nv, na]
                    fus_typ.append(const(et["cross"], 2 * na.numel()))
                    fus_w += [w, w]
            # one copy: the fusion graph's anchor of sample b is row n_block_nodes + b, the same row
            # as the text graph's anchor, so fusion_x is a prefix view of x
            if x is not None:
                x[n_block_nodes:].view(len(blocks), B, c.hidden).copy_(anchor_x)
            else:
                x = torch.cat([feats[blk.name].reshape(-1, c.hidden) for blk in blocks] + [anchor_x] * len(blocks))
            fusion_x = x[: n_block_nodes + B]
        else:
            mod_src = mod_dst = mod_typ = mod_w = []
            fus_src, fus_dst, fus_typ, fus_w = mod_src, mod_dst, mod_typ, mod_w
            if x is None:
                x = torch.cat([feats[blk.name].reshape(-1, c.hidden) for blk in blocks])
            fusion_x = x

        ei, ety, ew = _assemble_edges(src_i + mod_src, dst_i + mod_dst, typ_i + mod_typ, w_i + mod_w, dev)
        fei, fety, few = _assemble_edges(src_i + fus_src, dst_i + fus_dst, typ_i + fus_typ, w_i + fus_w, dev)

        if introspect:
            info["anchor"] = z_a.detach()
            info["lengths"] = {blk.name: blk.mask.sum(1) for blk in blocks}
        return Graphs(
            batch_size=B, blocks=blocks, x=x, edge_index=ei, edge_type=ety, edge_weight=ew,
            anchor_offset=n_block_nodes if c.use_anchor else -1,
            fusion_x=fusion_x, fusion_edge_index=fei, fusion_edge_type=fety, fusion_edge_weight=few,
            fusion_anchor_offset=n_block_nodes if c.use_anchor else -1,
            introspection=info,
        )

    # ---------------------------------------------------------------- readouts
    def _readout_views(self, h: Tensor, g: Graphs) -> Tensor:
        """z: mean over the sample's present modality graphs of (mean of the graph's real nodes and
        its anchor node)."""
        B, H = g.batch_size, self.config.hidden
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

    def _readout_fusion(self, h: Tensor, g: Graphs) -> Tensor:
        """z_fuse: mean over all real nodes of the sample's fusion graph and its anchor."""
        B, H = g.batch_size, self.config.hidden
        s, cnt = h.new_zeros(B, H), h.new_zeros(B)
        for blk in g.blocks:
            hb = h[blk.offset: blk.offset + B * blk.T].view(B, blk.T, H)
            mf = blk.mask.to(h.dtype)
            s, cnt = s + (hb * mf[..., None]).sum(1), cnt + mf.sum(1)
        if g.fusion_anchor_offset >= 0:
            s, cnt = s + h[g.fusion_anchor_offset: g.fusion_anchor_offset + B], cnt + 1.0
        return s / cnt.clamp(min=1.0)[:, None]

    # ---------------------------------------------------------------- forward
    def forward(self, batch: SSUBatch, return_graphs: bool = False) -> SSUOutput:
        c = self.config
        g = self.build_graphs(batch, introspect=return_graphs)
        x, fx = self.node_drop(g.x), self.node_drop(g.fusion_x)
        ea = self.edge_enc(g.edge_type, g.edge_weight)
        z_ori = self._readout_views(self.gat(x, g.edge_index, ea), g)  # original view
        aug_index, rows = augment_edges(g.edge_index, *g.node_membership(), c.aug_drop, c.aug_add)
        z_aug = self._readout_views(self.gat(x, aug_index, ea[rows]), g)  # augmented view
        fa = self.fusion_edge_enc(g.fusion_edge_type, g.fusion_edge_weight)
        z_fuse = self._readout_fusion(self.fusion_gat(fx, g.fusion_edge_index, fa), g)  # fusion view

        prediction = self.reg_head(torch.cat([z_ori, z_fuse], dim=-1)).squeeze(-1)
        logits = self.cls_head(z_ori)  # Eq. 8: Classifier(z_ori)
        y = batch.labels
        losses = {
            "reg": regression_loss(prediction, y, c.reg_loss),
            "sup": F.cross_entropy(logits, discretise_labels(y, c.class_rule)),
            "self": info_nce(z_ori, z_aug, c.temperature),
            "align": align_loss(z_fuse, z_ori),
        }
        losses["total"] = (losses["reg"] + c.lambda_sup * losses["sup"]
                           + c.lambda_self * losses["self"] + c.lambda_align * losses["align"])  # Eq. 11
        graphs = None
        if return_graphs:
            graphs = dict(g.introspection)
            graphs["edge_counts"] = {"modality": int(g.edge_index.shape[1]),
                                     "fusion": int(g.fusion_edge_index.shape[1]),
                                     "augmented": int(aug_index.shape[1])}
        return SSUOutput(prediction=prediction, logits=logits, losses=losses, graphs=graphs,
                         z={"ori": z_ori, "aug": z_aug, "fuse": z_fuse})
