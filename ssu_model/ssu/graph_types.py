"""Typed containers passed between the steps of graph construction and to the model.

Node ids: the nodes of modality m for sample b, step i have id ``offset_m + b * T_m + i`` (one
``Block`` per modality, blocks in the order text, audio, vision); anchors follow all blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class EdgeTypes:
    """Edge-type ids: relation x direction for dependency edges (2r head->dep, 2r+1 dep->head),
    then the special types."""

    num_relations: int

    @property
    def text_self(self) -> int:
        return 2 * self.num_relations

    @property
    def audio(self) -> int:
        return 2 * self.num_relations + 1

    @property
    def vision(self) -> int:
        return 2 * self.num_relations + 2

    @property
    def anchor_out(self) -> int:  # anchor -> node
        return 2 * self.num_relations + 3

    @property
    def anchor_in(self) -> int:  # node -> anchor
        return 2 * self.num_relations + 4

    @property
    def anchor_self(self) -> int:
        return 2 * self.num_relations + 5

    @property
    def cross(self) -> int:  # cross-modal fusion edge
        return 2 * self.num_relations + 6

    @property
    def llm_text(self) -> int:  # thresholded text edge of the LLM graph constructor
        return 2 * self.num_relations + 7

    @property
    def count(self) -> int:
        return 2 * self.num_relations + 8

    def scored(self, modality: str) -> int:
        """Type of the thresholded (Eq. 5) edges of ``modality``."""
        return {"text": self.llm_text, "audio": self.audio, "vision": self.vision}[modality]


@dataclass
class ModalityInput:
    """One modality of a batch as graph construction reads it."""

    features: Tensor  # (B, T, D) raw (then projected) node features, temporally pooled if long
    mask: Tensor  # (B, T) bool real nodes
    llm_states: Tensor | None = None  # (B, T, llm_dim) when graph_source == "llm"


@dataclass
class NodeStates:
    """What node encoding (Eq. 1-2) hands to graph building."""

    inputs: dict[str, ModalityInput]  # modality -> projected X^m (text: raw) and mask
    feats: dict[str, Tensor]  # modality -> node features (text: X^t, others: H^m of Eq. 2)
    real_words: Tensor  # (n_real,) index b * T_t + t of the real words
    real_word_x: Tensor  # (n_real, hidden) X^t of the real words
    score_q: dict[str, Tensor] = field(default_factory=dict)  # Eq. 3 queries computed with Eq. 1's
    x: Tensor | None = None  # node-feature matrix filled in place (no autograd), else built later
    introspection: Introspection | None = None  # filled along the way when asked for


@dataclass
class Introspection:
    """What the model computed, per modality, for inspection (``return_graphs=True``)."""

    cross_attention: dict[str, Tensor] = field(default_factory=dict)  # Eq. 1 weights (B, T_m, T_t)
    text_attention: dict[str, Tensor] = field(default_factory=dict)  # Eq. 3 softmax P (B, T_m, T_t)
    score: dict[str, Tensor] = field(default_factory=dict)  # square score S before Eq. 4 (B, T, T)
    symmetric: dict[str, Tensor] = field(default_factory=dict)  # Eq. 4 A before thresholding (B, T, T)
    adjacency: dict[str, Tensor] = field(default_factory=dict)  # kept, weighted adjacency (B, T, T)
    threshold: dict[str, Tensor] = field(default_factory=dict)  # tau of Eq. 5 (B,)
    beta: dict[str, Tensor] = field(default_factory=dict)  # Eq. 7 anchor attention (B, T)
    lengths: dict[str, Tensor] = field(default_factory=dict)  # real nodes per sample (B,)
    anchor: Tensor | None = None  # z_a of Eq. 6 (B, hidden)
    edge_counts: dict[str, int] = field(default_factory=dict)  # modality / fusion / augmented


@dataclass
class Block:
    """One modality's nodes in the padded layout: node id of (sample b, step i) = offset + b*T + i."""

    name: str
    offset: int
    T: int
    mask: Tensor  # (B, T) bool real nodes
    present: Tensor  # (B,) bool: the sample has this modality graph (enters the readout)

    def node_ids(self, b: Tensor, i: Tensor) -> Tensor:
        return self.offset + b * self.T + i


@dataclass
class EdgeList:
    """Edges collected piece by piece, concatenated once by ``assemble``."""

    src: list[Tensor] = field(default_factory=list)
    dst: list[Tensor] = field(default_factory=list)
    type: list[Tensor] = field(default_factory=list)
    weight: list[Tensor] = field(default_factory=list)

    def add(self, src: Tensor, dst: Tensor, type: Tensor, weight: Tensor) -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.type.append(type)
        self.weight.append(weight)

    def __add__(self, other: EdgeList) -> EdgeList:
        return EdgeList(self.src + other.src, self.dst + other.dst, self.type + other.type,
                        self.weight + other.weight)

    def assemble(self, device) -> tuple[Tensor, Tensor, Tensor]:
        """-> (edge_index (2, E), type (E,), weight (E,)); one copy each."""
        if not self.src:
            z = torch.zeros(0, dtype=torch.long, device=device)
            return torch.zeros(2, 0, dtype=torch.long, device=device), z, z.float()
        E = sum(int(s.numel()) for s in self.src)
        ei = torch.empty(2, E, dtype=torch.long, device=device)
        torch.cat(self.src, out=ei[0])
        torch.cat(self.dst, out=ei[1])
        return ei, torch.cat(self.type), torch.cat(self.weight)


@dataclass
class Graphs:
    """Everything graph construction produces: ready for the GATs, plus introspection."""

    batch_size: int
    blocks: list[Block]
    x: Tensor  # (N, hidden) node features of the modality-graph batch (blocks, then anchors)
    edge_index: Tensor  # (2, E) source -> target over the modality graphs
    edge_type: Tensor  # (E,) long edge-type id (EdgeTypes)
    edge_weight: Tensor  # (E,) float edge weight (adjacency value, beta, or 1)
    anchor_offset: int  # id of the first anchor node in x (one per modality graph per sample), -1 if none
    fusion_x: Tensor  # (N_f, hidden) fusion-graph nodes (blocks, then one anchor per sample)
    fusion_edge_index: Tensor
    fusion_edge_type: Tensor
    fusion_edge_weight: Tensor
    fusion_anchor_offset: int
    introspection: Introspection | None = None

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
