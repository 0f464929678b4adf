"""The edges ``GraphBuilder`` really builds, read back from the PyG tensors the GATs consume:
text graph = parse arcs, modality edges = the Eq. 5 mask, anchor edges with Eq. 7's beta in every
graph, cross-modal fusion edges. Each test runs the batched no-grad path and the autograd path.
The speed helpers of graph construction are pinned against their plain form at the end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model import UNALIGNED, batch, record, tiny

from ssu_model.data.batching import collate
from ssu_model.ssu.graph_layout import edge_ids_for_layout
from ssu_model.ssu.layers import TextKeysValues, fused_linear
from ssu_model.ssu.model import SSU

R = 16  # num_relations of the tiny config


@pytest.fixture(params=[False, True], ids=["no_grad", "grad"])
def built(request):
    torch.manual_seed(0)
    model = SSU(tiny()).eval()
    b = batch(lengths=UNALIGNED)
    with torch.set_grad_enabled(request.param):
        g = model.build_graphs(b, introspect=True)
        g_plain = model.build_graphs(b)  # the path training and evaluation take
    return model, b, g, g_plain


def edge_dict(index, types, weights, mask):
    """{(src, dst): (type, weight)} of the selected edges; duplicates are an error."""
    out = {}
    for s, d, t, w in zip(index[0][mask].tolist(), index[1][mask].tolist(), types[mask].tolist(),
                          weights[mask].tolist(), strict=True):
        assert (s, d) not in out, f"duplicate edge {(s, d)}"
        out[(s, d)] = (t, w)
    return out


def test_plain_and_introspected_graphs_agree(built):
    _, _, g, plain = built
    assert torch.equal(g.edge_index, plain.edge_index) and torch.equal(g.edge_type, plain.edge_type)
    assert torch.equal(g.fusion_edge_index, plain.fusion_edge_index)
    assert torch.allclose(g.edge_weight, plain.edge_weight, atol=1e-6)


def test_text_edges_are_the_parse_arcs_both_ways_with_relation_types(built):
    model, b, g, _ = built
    et = model.edge_types
    text = g.blocks[0]
    assert text.name == "text" and text.offset == 0
    for index, types, weights in ((g.edge_index, g.edge_type, g.edge_weight),
                                  (g.fusion_edge_index, g.fusion_edge_type, g.fusion_edge_weight)):
        sel = (types < 2 * R) | (types == et.text_self)
        got = edge_dict(index, types, weights, sel)
        expect = {}
        for s in range(b.size):
            n = int(b.text_mask[s].sum())
            for i in range(n):
                node = s * text.T + i
                expect[(node, node)] = (et.text_self, 1.0)
                h = int(b.heads[s, i])
                if h != i:
                    r = int(b.deps[s, i])
                    expect[(s * text.T + h, node)] = (2 * r, 1.0)  # head -> dependent
                    expect[(node, s * text.T + h)] = (2 * r + 1, 1.0)  # dependent -> head
        assert got == expect


def test_modality_edges_are_the_eq5_mask_with_adjacency_weights(built):
    model, b, g, _ = built
    info = g.introspection
    for blk in g.blocks[1:]:
        sel = g.edge_type == model.edge_types.scored(blk.name)
        got = edge_dict(g.edge_index, g.edge_type, g.edge_weight.detach(), sel)
        A = info.adjacency[blk.name]  # kept entries of A (Eq. 5 applied), 0 elsewhere
        expect = {}
        for s, i, j in (A != 0).nonzero().tolist():  # entry (i, j) is the edge j -> i
            expect[(blk.node_ids(s, j), blk.node_ids(s, i))] = float(A[s, i, j])
        assert got.keys() == expect.keys()
        assert all(got[k][1] == pytest.approx(v, abs=1e-6) for k, v in expect.items())
        for s in range(b.size):  # every real node keeps its self-loop
            for i in range(int(blk.mask[s].sum())):
                assert (blk.node_ids(s, i), blk.node_ids(s, i)) in got


def _anchor_edges_ok(index, types, weights, model, g, anchor_of, beta):
    et = model.edge_types
    out_e = edge_dict(index, types, weights.detach(), types == et.anchor_out)
    in_e = edge_dict(index, types, weights.detach(), types == et.anchor_in)
    n_real = 0
    for k, blk in enumerate(g.blocks):
        for s in range(g.batch_size):
            a = anchor_of(k, s)
            for i in range(int(blk.mask[s].sum())):
                node = blk.node_ids(s, i)
                w = float(beta[blk.name][s, i])
                assert out_e[(a, node)][1] == pytest.approx(w, abs=1e-6)  # anchor -> node, beta
                assert in_e[(node, a)][1] == pytest.approx(w, abs=1e-6)  # node -> anchor, beta
                n_real += 1
    assert len(out_e) == len(in_e) == n_real  # nothing else


def test_anchor_edges_carry_beta_both_ways_in_every_modality_graph(built):
    model, _, g, _ = built
    B = g.batch_size
    beta = g.introspection.beta
    for blk in g.blocks:  # Eq. 7: a distribution over each graph's real nodes
        assert torch.allclose(beta[blk.name].sum(1)[blk.mask.any(1)], torch.ones(int(blk.mask.any(1).sum())))
    _anchor_edges_ok(g.edge_index, g.edge_type, g.edge_weight, model, g,
                     lambda k, s: g.anchor_offset + k * B + s, beta)
    selfs = g.edge_index[:, g.edge_type == model.edge_types.anchor_self]
    assert sorted(selfs[0].tolist()) == list(range(g.anchor_offset, g.anchor_offset + len(g.blocks) * B))


def test_fusion_graph_has_one_anchor_per_sample_with_beta_edges(built):
    model, _, g, _ = built
    _anchor_edges_ok(g.fusion_edge_index, g.fusion_edge_type, g.fusion_edge_weight, model, g,
                     lambda k, s: g.fusion_anchor_offset + s, g.introspection.beta)
    assert g.fusion_x.shape[0] == g.fusion_anchor_offset + g.batch_size


def test_cross_modal_fusion_edges_join_topk_beta_nodes_both_ways(built):
    model, b, g, _ = built
    beta = g.introspection.beta
    cross = edge_dict(g.fusion_edge_index, g.fusion_edge_type, g.fusion_edge_weight.detach(),
                      g.fusion_edge_type == model.edge_types.cross)
    expect = {}
    for a in range(len(g.blocks)):
        for v in range(a + 1, len(g.blocks)):
            ba, bv = g.blocks[a], g.blocks[v]
            for s in range(b.size):
                top_a = beta[ba.name][s].masked_fill(~ba.mask[s], -1).topk(min(2, ba.T)).indices.tolist()
                top_v = beta[bv.name][s].masked_fill(~bv.mask[s], -1).topk(min(2, bv.T)).indices.tolist()
                for i in top_a:
                    for j in top_v:
                        if ba.mask[s, i] and bv.mask[s, j]:
                            w = float((beta[ba.name][s, i] * beta[bv.name][s, j]).sqrt())
                            expect[(ba.node_ids(s, i), bv.node_ids(s, j))] = w
                            expect[(bv.node_ids(s, j), ba.node_ids(s, i))] = w
    assert cross.keys() == expect.keys() and len(expect) > 0
    assert all(cross[k][1] == pytest.approx(w, abs=1e-6) for k, w in expect.items())
    assert not (g.edge_type == model.edge_types.cross).any()  # fusion graph only


def test_cross_modal_weights_stay_differentiable_when_a_selected_beta_underflows():
    """One dominant word makes the other words' beta exactly 0 in float32; top-k still selects
    some of them, and sqrt(beta_i * beta_j) then has an infinite derivative. The weights must keep
    finite gradients (a real run on MOSI audio diverged to NaN here)."""
    torch.manual_seed(0)
    model = SSU(tiny(fusion_k=4))
    with torch.no_grad():
        model.graph_builder.anchor_proj.weight.mul_(1e4)  # extreme anchor attention
    b = batch()
    g = model.build_graphs(b, introspect=True)
    beta = g.introspection.beta["text"]
    assert ((beta == 0) & b.text_mask).any(), "the case needs an underflowed beta of a real word"
    cross = g.fusion_edge_type == model.edge_types.cross
    w = g.fusion_edge_weight[cross]
    assert torch.isfinite(w).all()
    w.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


# ------------------------------------------------------------------ speed helpers vs the plain form
def test_fused_queries_and_keys_equal_the_separate_projections():
    """``fused_linear`` as the production path calls it: Eq. 1 + Eq. 3 queries of one modality
    (``_fused_queries``) and the Eq. 3 keys of all modalities, against each projection alone."""
    torch.manual_seed(0)
    model = SSU(tiny()).eval()
    gb = model.graph_builder
    b = batch(lengths=UNALIGNED)
    with torch.no_grad():
        nodes = gb.encode_nodes(b)
        for m in ("audio", "vision"):
            xm = nodes.inputs[m].features  # projected X^m
            q, score_q = gb._fused_queries(m, xm)
            assert torch.allclose(q, gb.enhance[m].q(xm), atol=1e-6)
            assert torch.allclose(score_q, gb.scorer[m].wq(xm), atol=1e-6)
            assert torch.allclose(nodes.score_q[m], score_q)
        xr = nodes.real_word_x
        keys = fused_linear(xr, [gb.scorer["audio"].wk, gb.scorer["vision"].wk])
        assert torch.allclose(keys, torch.cat([gb.scorer["audio"].wk(xr), gb.scorer["vision"].wk(xr)], -1), atol=1e-6)


@pytest.mark.parametrize("with_out", [False, True], ids=["returned", "written_in_place"])
def test_batched_attention_equals_the_paper_form(with_out):
    """``TextInformedAttention.batched_without_dropout`` (eval path) vs ``forward`` (Eq. 1-2 as
    written), including an utterance without words (no enhancement)."""
    torch.manual_seed(0)
    model = SSU(tiny()).eval()
    gb = model.graph_builder
    rng = np.random.default_rng(3)
    for words in ((0, 3, 6), (2, 3, 6)):  # with / without an utterance that has no words
        b = collate([record(rng, n, 4, 3) for n in words])
        with torch.no_grad():
            xt = gb.proj["text"](b.text) * b.text_mask[..., None]
            kv = gb.text_kv(xt) * b.text_mask[..., None]
            text = TextKeysValues.from_kv(kv, b.text_mask, 2)
            for m in ("audio", "vision"):
                enh = gb.enhance[m]
                xm = gb.proj[m](getattr(b, m))
                ref, _ = enh(xm, kv, b.text_mask)
                out = torch.full_like(xm, float("nan")) if with_out else None
                got = enh.batched_without_dropout(xm, enh.q(xm), text, out=out)
                assert torch.allclose(got, ref, atol=1e-6)
                if words[0] == 0:
                    assert torch.equal(got[0], xm[0])  # no words: H^m = X^m
                if with_out:
                    assert got.data_ptr() == out.data_ptr()


@pytest.mark.parametrize("lengths", [None, UNALIGNED], ids=["aligned", "unaligned"])
def test_in_place_no_grad_path_equals_the_autograd_path(lengths):
    """Without autograd the node-feature matrix is preallocated and filled in place
    (``_scatter_words``, ``node_features``), the scores are written into one buffer and Eq. 4-5
    overwrite them; with autograd every step allocates. Same graphs, same intermediate values."""
    torch.manual_seed(0)
    model = SSU(tiny()).eval()
    b = batch() if lengths is None else batch(lengths=lengths)
    with torch.no_grad():
        fast = model.build_graphs(b)
        fast_info = model.build_graphs(b, introspect=True).introspection
    plain = model.build_graphs(b)
    plain_info = model.build_graphs(b, introspect=True).introspection
    assert fast.x.shape == plain.x.shape
    assert torch.allclose(fast.x, plain.x.detach(), atol=1e-6)
    assert torch.allclose(fast.fusion_x, plain.fusion_x.detach(), atol=1e-6)
    for name in ("edge_index", "edge_type", "fusion_edge_index", "fusion_edge_type"):
        assert torch.equal(getattr(fast, name), getattr(plain, name)), name
    for name in ("edge_weight", "fusion_edge_weight"):
        assert torch.allclose(getattr(fast, name), getattr(plain, name).detach(), atol=1e-6), name
    for field in ("score", "symmetric", "adjacency", "threshold", "beta"):
        for m, ref in getattr(plain_info, field).items():
            assert torch.allclose(getattr(fast_info, field)[m], ref, atol=1e-6), (field, m)


def test_edge_ids_for_layout_are_the_block_node_ids():
    """The hand-computed ids of ``edge_ids_for_layout`` against ``Block.node_ids`` and the anchor
    numbering of graph_types (modality graph k of sample b: n + k*B + b; fusion graph: n + b)."""
    torch.manual_seed(0)
    model = SSU(tiny()).eval()
    b = batch(lengths=UNALIGNED)
    with torch.no_grad():
        g = model.build_graphs(b)
    blocks, B = g.blocks, g.batch_size
    scored = blocks[1:]
    Tmax = max(blk.T for blk in scored)
    lay = edge_ids_for_layout(B, blocks, scored, Tmax, "cpu")
    n = sum(B * blk.T for blk in blocks)
    mod_anchor, fus_anchor = [], []
    for k, blk in enumerate(blocks):
        for s in range(B):
            for i in range(blk.T):
                assert blk.node_ids(s, i) == len(mod_anchor)
                mod_anchor.append(n + k * B + s)
                fus_anchor.append(n + s)
    assert lay.mod_anchor.tolist() == mod_anchor and lay.fus_anchor.tolist() == fus_anchor
    assert lay.anchor_self.tolist() == list(range(n, n + len(blocks) * B))
    base, node, graph = [], [], []
    for m, blk in enumerate(scored):
        for s in range(B):
            for i in range(Tmax):
                base.append(blk.node_ids(s, 0))
                node.append(blk.node_ids(s, i))
                graph.append(m * B + s)
    assert lay.row_base.tolist() == base and lay.row_node.tolist() == node and lay.row_graph.tolist() == graph
