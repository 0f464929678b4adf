"""``SSUConfig``: every hyper-parameter of the SSU model, one documented line each.

The defaults are the sample pipeline's (params.yaml `model`, the documented source; a test keeps
the two equal). Frozen and validated on construction (a bad value names the field). ``to_dict`` / ``from_dict``
round-trip it through a checkpoint. Choices where the paper is silent: docs/decisions/model.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CLASS_RULES = {"sign3": 3, "binary": 2, "round7": 7}  # rule -> number of classes it yields


@dataclass(frozen=True)
class SSUConfig:
    text_dim: int = 384  # width of the word states (text encoder hidden size; MiniLM-L6 = 384)
    audio_dim: int | None = 5  # acoustic feature width (MOSI COVAREP 5, MOSEI 74); None = no audio
    vision_dim: int | None = 20  # visual feature width (MOSI 20, MOSEI 35); None = no vision
    hidden: int = 64  # d: node feature width everywhere (paper: 128; 64 keeps the sample within its CPU budget)
    heads: int = 4  # attention heads of the Eq. 1 cross-attention and of every GAT layer
    gat_layers: int = 2  # GATv2 layers in the shared GAT and in the fusion GAT
    dropout: float = 0.1  # dropout on node features, attention weights and heads
    score_dim: int = 64  # d': width of W_Q, W_K in Eq. 3 (and of the LLM-state projections)
    edge_dim: int = 32  # width of edge features (edge-type embedding + weight * learned vector)
    max_nodes: int = 16  # audio/vision streams longer than this are temporally pooled to this many nodes
    max_len: int = 512  # B_pos covers temporal distances 0..max_len-1 (node counts up to max_len)
    max_edges_per_node: int = 8  # per-node cap on kept modality edges after Eq. 5 (0 = no cap)
    threshold_init: float = 1.0  # initial lambda of tau = mu + lambda * sigma (Eq. 5)
    mask_temperature: float = 0.1  # width (in units of sigma) of the sigmoid surrogate used for lambda's gradient
    affinity_scale_init: float = 5.0  # initial scale of the cosine affinity between text-informed attention vectors
    use_anchor: bool = True  # semantic anchor node z_a (Eq. 6) and its beta-weighted edges (Eq. 7) in every graph
    cross_modal_edges: bool = True  # fusion-graph edges between modalities, picked by beta (fusion_rule)
    standardize_streams: bool = False  # z-score audio/vision with train-split statistics stored in the model
    modality_dropout: float = 0.0  # training only: each sample loses each non-text modality with this probability
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
        for name in ("dropout", "aug_drop", "aug_add", "modality_dropout"):
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
        d = dict(d)
        # configs saved before cross_modal_edges existed tied those edges to the anchor
        d.setdefault("cross_modal_edges", d.get("use_anchor", True))
        return cls(**d)
