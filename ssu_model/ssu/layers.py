"""Building blocks of SSU that know nothing about graphs: masks, temporal pooling, ``fused_linear``
(several projections of one input in one matrix product), the Eq. 1-2 text-informed attention,
and the GATv2 encoder with edge features."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv

from ssu_model.errors import DataError


def lengths_to_mask(lengths: Tensor, T: int) -> Tensor:
    """(B,) true lengths -> (B, T) bool mask of the real steps."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``mask``ed entries; rows with no valid entry become all zeros (never NaN)."""
    s = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(s, dim=dim) * mask


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
    if max_nodes >= L:
        return x, lengths
    K = max_nodes
    new_len = lengths.clamp(max=K)
    t = torch.arange(L, device=x.device)
    chunk = (t[None, :] * new_len.clamp(min=1)[:, None]) // lengths.clamp(min=1)[:, None]
    chunk = torch.where(t[None, :] < lengths[:, None], chunk, K)  # padding -> no chunk
    onehot = (chunk[:, None, :] == torch.arange(K, device=x.device)[None, :, None]).to(x.dtype)
    onehot = onehot / onehot.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.bmm(onehot, x), new_len


def fused_linear(x: Tensor, layers: list[nn.Linear]) -> Tensor:
    """Speed: ``torch.cat([layer(x) for layer in layers], -1)`` as one matrix product (weights
    stacked, a missing bias read as zeros); column block k is layer k's output. Equal to the
    separate products up to float rounding (pinned by tests/test_graphs.py)."""
    weight = torch.cat([layer.weight for layer in layers])
    biases = [layer.bias for layer in layers]
    ref = next((b for b in biases if b is not None), None)
    if ref is None:
        return F.linear(x, weight)
    bias = torch.cat([ref.new_zeros(layer.out_features) if b is None else b for layer, b in zip(layers, biases, strict=True)])
    return F.linear(x, weight, bias)


class StreamStandardizer(nn.Module):
    """Per-dimension z-scores of the audio/vision features, with statistics fitted once on the
    training split and kept as buffers, so evaluation and prediction apply exactly the same
    transform (real features span many scales: raw acoustic descriptors reach ~10^2). Dimensions
    that are constant on train keep a scale of 1. Padded steps stay 0."""

    def __init__(self, dims: dict[str, int]):
        super().__init__()
        for m, d in dims.items():
            self.register_buffer(f"{m}_mean", torch.zeros(d))
            self.register_buffer(f"{m}_scale", torch.ones(d))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, values: dict[str, Tensor]) -> None:
        """``values``: modality -> (n_steps, d) every real step of the training split."""
        for m, v in values.items():
            if v.ndim != 2 or v.shape[0] == 0:
                raise DataError(f"the training split has no {m} steps to fit the stream statistics on (every {m} stream empty?)")
            v = v.double()
            mean, std = v.mean(0), v.std(0, unbiased=False)
            getattr(self, f"{m}_mean").copy_(mean)
            getattr(self, f"{m}_scale").copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        self.fitted.fill_(True)

    def forward(self, modality: str, x: Tensor, lengths: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise DataError("standardize_streams is on but the stream statistics were never fitted "
                            "(SSU.fit_stream_statistics on the training records)")
        z = (x - getattr(self, f"{modality}_mean")) / getattr(self, f"{modality}_scale")
        return z * lengths_to_mask(lengths.to(x.device), x.shape[1])[..., None].to(x.dtype)


# --------------------------------------------------------------------------------------------
# Eq. 1-2: text-informed cross-attention enhancement
# --------------------------------------------------------------------------------------------
@dataclass
class TextKeysValues:
    """The words' keys and values of Eq. 1, laid out once per batch for the batched path:
    (B*heads, T_t, d_head) each, plus the additive padding bias and which samples have words."""

    keys: Tensor
    values: Tensor
    bias: Tensor  # (B*heads, 1, T_t): 0 on real words, the dtype's minimum on padding
    has_text: Tensor  # (B,) bool
    all_text: bool  # every sample has at least one word

    @classmethod
    def from_kv(cls, kv: Tensor, text_mask: Tensor, heads: int) -> TextKeysValues:
        """kv: (B, T_t, 2*hidden) = ``text_kv(X^t)`` (keys then values)."""
        B, Tt, two_h = kv.shape
        dh = two_h // 2 // heads
        kvh = kv.view(B, Tt, 2, heads, dh)
        keys = kvh[:, :, 0].transpose(1, 2).reshape(B * heads, Tt, dh)
        values = kvh[:, :, 1].transpose(1, 2).reshape(B * heads, Tt, dh)
        bias = torch.zeros(B, 1, 1, Tt, dtype=kv.dtype, device=kv.device)
        bias.masked_fill_(~text_mask[:, None, None, :], torch.finfo(kv.dtype).min)
        bias = bias.expand(B, heads, 1, Tt).reshape(B * heads, 1, Tt)
        has_text = text_mask.any(1)
        return cls(keys, values, bias, has_text, bool(has_text.all()))


class TextInformedAttention(nn.Module):
    """H^m = X^m + Attention(X^m queries, X^t keys/values)  (Eq. 1-2; Q from the modality so the
    output has one row per modality step, see docs/decisions/model.md). The text keys/values
    ``kv = text_kv(X^t)`` are computed once and shared by audio and vision; an utterance with no
    words gets no enhancement.

    Two implementations of the same equation, both used by the model and pinned equal (up to float
    rounding) by tests/test_graphs.py: ``forward``, the paper form (draws attention dropout, returns
    the weights; training and introspection), and ``batched_without_dropout`` (speed, no dropout:
    eval; queries given, samples x heads in one ``baddbmm``, the result written straight into the
    graphs' node-feature matrix)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, xm: Tensor, kv: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Returns H^m (B, T_m, hidden) and the head-averaged weights (B, T_m, T_t)."""
        B, Tm, H = xm.shape
        Tt = kv.shape[1]
        h, dh = self.heads, H // self.heads
        q = self.q(xm).view(B, Tm, h, dh).transpose(1, 2)
        k, v = (t.reshape(B, Tt, h, dh).transpose(1, 2) for t in kv.split(H, dim=-1))
        w = masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), text_mask[:, None, None, :])
        enh = (self.drop(w) @ v).transpose(1, 2).reshape(B, Tm, H)
        has_text = text_mask.any(1).to(xm.dtype)[:, None, None]  # empty text -> no enhancement
        return xm + self.out(enh) * has_text, w.mean(1)

    def batched_without_dropout(self, xm: Tensor, q: Tensor, text: TextKeysValues,
                                out: Tensor | None = None) -> Tensor:
        """Speed: ``forward(xm, kv, text_mask)[0]`` without dropout, from precomputed queries ``q =
        self.q(xm)`` (B, T_m, hidden) and the batch's ``TextKeysValues``; written into ``out`` (a
        (B, T_m, hidden) view) when given."""
        B, Tm, H = xm.shape
        h, dh = self.heads, H // self.heads
        qc = q.reshape(B, Tm, h, dh).transpose(1, 2).reshape(B * h, Tm, dh)
        w = torch.softmax(torch.baddbmm(text.bias, qc, text.keys.transpose(1, 2), alpha=1.0 / math.sqrt(dh)),
                          dim=-1)
        o = torch.bmm(w, text.values).view(B, h, Tm, dh).transpose(1, 2).reshape(B, Tm, H)
        y = self.out(o)
        if out is not None:
            if text.all_text:
                return torch.add(xm, y, out=out)
            return torch.addcmul(xm, y, text.has_text.to(y.dtype)[:, None, None], out=out)
        return y.add_(xm) if text.all_text else xm + y * text.has_text.to(y.dtype)[:, None, None]


# --------------------------------------------------------------------------------------------
# GAT encoder with edge features
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
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = norm(x + self.drop(F.elu(conv(x, edge_index, edge_attr))))
        return x
