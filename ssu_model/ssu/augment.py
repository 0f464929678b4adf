"""The augmented view of the multi-view objective: random edge deletion and addition (the
perturbation L_self (Eq. 9) contrasts against the original view)."""

from __future__ import annotations

import torch
from torch import Tensor


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
