"""What the paper's Figs. 5-7 show, computed from a trained SSU model (no paths, no plotting).

- Figs. 6-7 read the model's own internals: one forward pass with ``return_graphs=True``
  (:func:`introspect`) gives the prediction, the anchor attention beta of Eq. 7
  (``Introspection.beta``) and the Eq. 1 cross-attention weights
  (``Introspection.cross_attention``). :func:`anchor_attention_for` and
  :func:`cross_attention_for` cut one utterance's real nodes out of those tensors; nothing is
  recomputed here.
- Fig. 5 is the loss surface around the trained weights along two random filter-normalised
  directions (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"):
  :func:`filter_normalised_direction`, :func:`loss_surface`, :func:`sharpness`.

Choices (loss used, what the directions leave out, the sharpness number):
docs/decisions/explain.md.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ssu_model.errors import DataError

LOSS_TERMS = ("reg", "sup", "self", "align", "total")  # what SSU's forward reports (Eq. 8-11)

# ----------------------------------------------------------------------------- forward pass


@torch.no_grad()
def introspect(model, batch, seed: int):
    """``model(batch, return_graphs=True)`` in eval mode, torch's random stream seeded first.

    The seed only matters for the augmented view (random edge deletion/addition), which enters
    L_self and so the total loss, never the prediction; seeding makes the losses repeatable.
    The model's train/eval mode is restored afterwards."""
    was = model.training
    model.eval()
    try:
        torch.manual_seed(seed)
        return model(batch, return_graphs=True)
    finally:
        model.train(was)


def _real_lengths(info, modality: str, b: int) -> int:
    return int(info.lengths[modality][b])


def anchor_attention_for(info, b: int, modality: str) -> np.ndarray | None:
    """Eq. 7's beta of sample ``b`` over the real nodes of ``modality`` (sums to 1), as the model
    computed it; None when the model computed no beta for that modality (no anchor and no
    beta-picked fusion pairs, or a modality the model does not read)."""
    beta = info.beta.get(modality)
    if beta is None:
        return None
    n = _real_lengths(info, modality, b)
    return beta[b, :n].double().cpu().numpy()


def cross_attention_for(info, b: int, modality: str) -> np.ndarray | None:
    """Eq. 1's attention weights of sample ``b``: (real ``modality`` nodes, real words), rows =
    the audio/vision queries, each row a softmax over the words (head average, as
    ``TextInformedAttention`` returns it); None when the model does not read ``modality``."""
    weights = info.cross_attention.get(modality)
    if weights is None:
        return None
    n_m = _real_lengths(info, modality, b)
    n_t = _real_lengths(info, "text", b)
    return weights[b, :n_m, :n_t].double().cpu().numpy()


# ----------------------------------------------------------------------------- summaries


def top_entries(weights: np.ndarray, n: int) -> list[tuple[tuple[int, ...], float]]:
    """The ``n`` largest entries of ``weights`` (any shape) as (index, value), largest first;
    ties go to the lower flat index (a stable sort), so the choice is deterministic."""
    flat = np.asarray(weights, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")[: max(0, int(n))]
    shape = np.shape(weights)
    return [(tuple(int(i) for i in np.unravel_index(k, shape)), float(flat[k])) for k in order]


def normalised_entropy(p: np.ndarray) -> float | None:
    """Entropy of the distribution ``p`` divided by log(len(p)): 1 = uniform, 0 = all mass on one
    entry. None for fewer than 2 entries (a single node carries all the mass by construction)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size < 2:
        return None
    q = p[p > 0]
    return float(-(q * np.log(q)).sum() / math.log(p.size))


def mean_row_entropy(weights: np.ndarray) -> float | None:
    """Mean over rows of :func:`normalised_entropy` (a cross-attention map: one softmax per row)."""
    rows = [normalised_entropy(r) for r in np.atleast_2d(weights)]
    rows = [r for r in rows if r is not None]
    return float(np.mean(rows)) if rows else None


def pooled_steps(n_steps: int, max_nodes: int) -> list[tuple[int, int]]:
    """Which input steps each node of a stream covers: (first, last) per node, for a stream of
    ``n_steps`` real steps that ``layers.temporal_pool`` averages into at most ``max_nodes``
    nodes (step t goes to node floor(t * K / n)); one step per node when it is not pooled.
    Only labels the figure's axis: the attention itself comes from the model."""
    if n_steps <= max_nodes:
        return [(t, t) for t in range(n_steps)]
    owner = [(t * max_nodes) // n_steps for t in range(n_steps)]
    return [(owner.index(k), len(owner) - 1 - owner[::-1].index(k)) for k in range(max_nodes)]


# ----------------------------------------------------------------------------- Fig. 5: loss surface


def filter_normalised_direction(model, seed: int, label: str = "d1") -> dict[str, Tensor]:
    """A random direction in weight space, filter-normalised as Li et al. (2018).

    Every parameter with at least 2 dimensions gets a Gaussian draw of its shape, and each slice
    along its first dimension (a "filter": one output unit's row of a linear weight, one row of an
    embedding; GATv2's ``att`` of shape (1, heads, C) is one filter) is rescaled to the Frobenius
    norm of the same slice of the weight. Parameters with fewer than 2 dimensions (biases,
    LayerNorm gains/shifts, B_pos, the anchor-type vector, the scalar lambda and log-scales) get a
    zero direction, as Li et al.'s "ignore biasbn" setting: they stay at their trained values.

    Each parameter's draw is seeded by ``seed``, ``label`` (one per direction: "d1", "d2") and the
    parameter's name, so two models that share a parameter (e.g. ``full`` and ``no_anchor``) draw
    the same numbers for it."""
    direction = {}
    for name, p in model.named_parameters():
        if p.dim() < 2:
            direction[name] = torch.zeros_like(p)
            continue
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{label}/{name}".encode()))
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        w = p.detach().to("cpu", torch.float64)
        d_norm = d.flatten(1).norm(dim=1)
        w_norm = w.flatten(1).norm(dim=1)
        scale = (w_norm / (d_norm + 1e-10)).view(-1, *([1] * (p.dim() - 1)))
        direction[name] = (d * scale).to(device=p.device, dtype=p.dtype)
    return direction


def direction_cosine(d1: dict[str, Tensor], d2: dict[str, Tensor]) -> float:
    """Cosine between two directions over all parameters (random ones are nearly orthogonal)."""
    dot = sum(float((d1[k].double() * d2[k].double()).sum()) for k in d1)
    n1 = math.sqrt(sum(float(d1[k].double().pow(2).sum()) for k in d1))
    n2 = math.sqrt(sum(float(d2[k].double().pow(2).sum()) for k in d2))
    return dot / (n1 * n2) if n1 and n2 else 0.0


def grid_coordinates(points: int, extent: float) -> np.ndarray:
    """``points`` evenly spaced coordinates over [-extent, extent]; ``points`` odd, so 0 (the
    trained weights) is one of them."""
    if points < 3 or points % 2 == 0:
        raise DataError(f"the grid needs an odd number of points >= 3, got {points}")
    return np.linspace(-extent, extent, points)


@torch.no_grad()
def loss_surface(model, batch, d1: dict[str, Tensor], d2: dict[str, Tensor], alphas: Sequence[float],
                 betas: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Every loss term at theta* + alpha d1 + beta d2 on the grid: term -> (len(alphas),
    len(betas)) array, ``[i, j]`` at (alphas[i], betas[j]).

    Eval mode (no dropout); torch's random stream is re-seeded with ``seed`` before every forward
    pass, so the augmented view (L_self) draws the same random numbers at every grid point and at
    the centre as :func:`introspect` does. The trained weights are restored afterwards, also on
    error."""
    params = dict(model.named_parameters())
    if set(d1) != set(params) or set(d2) != set(params):
        raise DataError("the directions do not match the model's parameters")
    base = {k: p.detach().clone() for k, p in params.items()}
    out = {t: np.zeros((len(alphas), len(betas))) for t in LOSS_TERMS}
    was = model.training
    model.eval()
    try:
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                for k, p in params.items():
                    p.copy_(base[k] + float(a) * d1[k] + float(b) * d2[k])
                torch.manual_seed(seed)
                losses = model(batch).losses
                for t in LOSS_TERMS:
                    out[t][i, j] = float(losses[t])
    finally:
        for k, p in params.items():
            p.copy_(base[k])
        model.train(was)
    return out


def sharpness(values: np.ndarray, alphas: Sequence[float], betas: Sequence[float], radius: float) -> float:
    """Mean loss increase over the centre: mean of L(a, b) - L(0, 0) over the grid points with
    0 < sqrt(a^2 + b^2) <= ``radius`` (in units of the filter-normalised directions). Higher =
    the loss rises faster around the trained weights (a sharper minimum); negative = the trained
    weights are not a minimum of this batch's loss along these directions."""
    a = np.asarray(alphas, dtype=np.float64)[:, None]
    b = np.asarray(betas, dtype=np.float64)[None, :]
    r = np.sqrt(a**2 + b**2)
    centre = np.argwhere(np.isclose(r, 0.0))
    if len(centre) != 1:
        raise DataError("the grid has no centre point (0, 0)")
    ring = (r > 1e-12) & (r <= radius + 1e-9)
    if not ring.any():
        raise DataError(f"no grid point lies within radius {radius} of the centre")
    values = np.asarray(values, dtype=np.float64)
    return float((values[ring] - values[tuple(centre[0])]).mean())


def fixed_batch_ids(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` ids drawn without replacement from ``ids`` (sorted first, so the draw depends only on
    the set of ids and the seed), returned sorted; all of them when there are fewer."""
    pool = sorted(ids)
    if n >= len(pool):
        return pool
    rng = np.random.default_rng(seed)
    return sorted(pool[i] for i in rng.choice(len(pool), size=n, replace=False))


# ----------------------------------------------------------------------------- figure data

NOT_READ = "not read by this model"
NO_BETA = "not computed: this model has no anchor and no beta-picked fusion pairs"


def beta_role(config) -> str:
    """What Eq. 7's beta does in a model of this configuration (said next to its bars)."""
    if config.use_anchor:
        return ("weights of the anchor's edges (Eq. 7)"
                + (" and picks the fusion graph's cross-modal pairs" if config.cross_modal_edges else ""))
    if config.cross_modal_edges and len(config.modalities) > 1:
        return "no anchor node: beta only picks the fusion graph's cross-modal pairs"
    return "not computed"


def stream_steps(batch, modality: str, b: int, max_nodes: int) -> list[tuple[int, int]]:
    """The input steps behind each node of sample ``b``'s ``modality`` stream (``pooled_steps``)."""
    n = int(getattr(batch, f"{modality}_lengths")[b])
    return pooled_steps(n, max_nodes)


def beta_entry(info, b: int, modality: str, reads: Sequence[str], n_top: int,
               steps: list[tuple[int, int]] | None = None) -> dict:
    """Fig. 6 data for one modality: beta over its real nodes (from the model's introspection),
    the ``n_top`` most attended nodes and how spread beta is, or why there is none."""
    if modality not in reads:
        return {"status": NOT_READ}
    weights = anchor_attention_for(info, b, modality)
    if weights is None:
        return {"status": NO_BETA}
    entry = {"status": "ok", "weights": weights.tolist(), "nodes": int(weights.size),
             "normalised_entropy": normalised_entropy(weights),
             "top": [{"node": idx[0], "weight": w} for idx, w in top_entries(weights, n_top)]}
    if steps is not None:
        entry["steps"] = [list(s) for s in steps]
    return entry


def cross_attention_entry(info, b: int, modality: str, reads: Sequence[str], n_top: int,
                          steps: list[tuple[int, int]] | None = None) -> dict:
    """Fig. 7 data for one stream: the Eq. 1 map (stream nodes x words) from the model's
    introspection, its ``n_top`` largest weights and how concentrated its rows are, or why
    there is none."""
    if modality not in reads:
        return {"status": NOT_READ}
    weights = cross_attention_for(info, b, modality)
    if weights is None:  # the model reads the stream but computed no map: should not happen
        raise DataError(f"the model reads {modality} but its forward pass recorded no cross-attention")
    entry = {"status": "ok", "matrix": weights.tolist(), "nodes": int(weights.shape[0]),
             "one_node": bool(weights.shape[0] == 1),
             "mean_row_entropy": mean_row_entropy(weights),
             "top": [{"node": idx[0], "word": idx[1], "weight": w} for idx, w in top_entries(weights, n_top)]}
    if steps is not None:
        entry["steps"] = [list(s) for s in steps]
    return entry
