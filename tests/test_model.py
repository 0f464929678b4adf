"""SSU model library: one test per equation plus shapes, gradients, determinism and edge cases.
Tiny configs only (hidden 16), so the file runs in seconds on a shared 2-core CPU. The equation
tests read what the model itself computed (``return_graphs=True`` introspection, the built graphs)
or call the functions the model calls; tests/test_graphs.py checks the built edges."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssu_model.data.batching import SSUBatch, UtteranceRecord, collate
from ssu_model.errors import DataError
from ssu_model.ssu.adjacency import symmetric_adjacency, threshold_keep, threshold_stats
from ssu_model.ssu.augment import augment_edges
from ssu_model.ssu.layers import temporal_pool
from ssu_model.ssu.losses import align_loss, discretise_labels, info_nce, regression_loss
from ssu_model.ssu.model import SSU, SSUConfig

TD = 12  # text_dim of the tiny config


def tiny(**over) -> SSUConfig:
    base = {"text_dim": TD, "audio_dim": 5, "vision_dim": 7, "hidden": 16, "heads": 2, "gat_layers": 2,
            "score_dim": 8, "edge_dim": 8, "max_nodes": 8, "max_len": 32, "num_relations": 16,
            "max_edges_per_node": 6, "fusion_k": 2}
    base.update(over)
    return SSUConfig(**base)


def record(rng, n_words, la, lv, label=None, llm_dim=0, max_nodes=8) -> UtteranceRecord:
    # a random tree: word 0 is the root (its own head), every other word hangs on an earlier one
    heads = np.array([0] + [int(rng.integers(0, i)) for i in range(1, n_words)][: max(n_words - 1, 0)],
                     dtype=np.int64)[:n_words]
    rec = UtteranceRecord(
        word_states=rng.standard_normal((n_words, TD)).astype(np.float32),
        heads=heads,
        deps=[int(d) for d in rng.integers(0, 16, n_words)],
        audio=None if la is None else rng.standard_normal((la, 5)).astype(np.float32),
        vision=None if lv is None else rng.standard_normal((lv, 7)).astype(np.float32),
        label=float(rng.uniform(-3, 3)) if label is None else label,
    )
    if llm_dim:
        rec.llm_states = {
            "text": rng.standard_normal((n_words, llm_dim)).astype(np.float32),
            "audio": rng.standard_normal((min(la, max_nodes), llm_dim)).astype(np.float32),
            "vision": rng.standard_normal((min(lv, max_nodes), llm_dim)).astype(np.float32),
        }
    return rec


def batch(seed=0, lengths=((5, 6, 6), (3, 4, 4), (7, 6, 6), (4, 2, 2))) -> SSUBatch:
    rng = np.random.default_rng(seed)
    return collate([record(rng, *lv) for lv in lengths])


UNALIGNED = ((5, 20, 30), (3, 9, 4), (7, 15, 17), (1, 3, 25))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------ shapes, pooling, batching
@pytest.mark.parametrize("lengths", [None, UNALIGNED], ids=["aligned", "unaligned"])
def test_shapes(lengths):
    b = batch() if lengths is None else batch(lengths=lengths)
    model = SSU(tiny())
    out = model(b, return_graphs=True)
    B = b.size
    assert out.prediction.shape == (B,) and out.logits.shape == (B, 3)
    assert set(out.losses) == {"reg", "sup", "self", "align", "total"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.losses.values())
    for m in ("audio", "vision"):
        n = out.introspection.adjacency[m].shape[1]
        assert n == min(getattr(b, m).shape[1], 8)  # pooled to max_nodes
        assert out.introspection.cross_attention[m].shape == (B, n, b.text.shape[1])
    assert out.z_ori.shape == out.z_fuse.shape == (B, 16)


def test_temporal_pool_averages_real_steps_only():
    x = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1)
    x[1, 6:] = 1e6  # padding must not leak in
    pooled, lengths = temporal_pool(x, torch.tensor([10, 6]), 4)
    assert lengths.tolist() == [4, 4]
    # sample 0: 10 steps in 4 chunks floor(t*4/10): [0,1,2] [3,4] [5,6,7] [8,9]
    assert pooled[0, :, 0].tolist() == pytest.approx([1.0, 3.5, 6.0, 8.5])
    # sample 1: 6 steps (values 10..15): chunks [0,1] [2] [3,4] [5]
    assert pooled[1, :, 0].tolist() == pytest.approx([10.5, 12.0, 13.5, 15.0])
    same, same_len = temporal_pool(x[:, :4], torch.tensor([4, 3]), 4)  # short: unchanged
    assert torch.equal(same, x[:, :4]) and same_len.tolist() == [4, 3]


def test_collate_pads_and_rejects_bad_records():
    rng = np.random.default_rng(0)
    recs = [record(rng, 3, 4, None), record(rng, 0, None, 2)]
    b = collate(recs)
    assert b.text.shape == (2, 3, TD) and b.text_mask.tolist() == [[True] * 3, [False] * 3]
    assert b.audio_lengths.tolist() == [4, 0] and b.vision_lengths.tolist() == [0, 2]
    assert b.heads[1].tolist() == [-1, -1, -1]
    bad = record(rng, 3, 4, 4)
    bad.heads = np.array([0, 1, 3])
    with pytest.raises(DataError, match="record 0: heads"):
        collate([bad])
    bad = record(rng, 3, 4, 4)
    bad.audio = bad.audio[:, :2]
    with pytest.raises(DataError, match="audio has width 2"):
        collate([record(rng, 3, 4, 4), bad])


# ------------------------------------------------------------------ Eq. 1-2
def test_eq1_2_text_informed_residual():
    model = SSU(tiny()).eval()
    b = batch()
    nodes = model.graph_builder.encode_nodes(b, introspect=True)
    xm = model.graph_builder.proj["audio"](b.audio)
    kv = model.graph_builder.text_kv(nodes.feats["text"])
    h, w = model.graph_builder.enhance["audio"](xm, kv, b.text_mask)
    assert torch.allclose(nodes.feats["audio"], h)
    assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))  # rows: distribution over words
    assert (w * (~b.text_mask)[:, None, :]).abs().max() == 0  # no attention to padded words
    # residual: with the output projection zeroed, H^m == X^m exactly
    with torch.no_grad():
        model.graph_builder.enhance["audio"].out.weight.zero_()
        model.graph_builder.enhance["audio"].out.bias.zero_()
    h0, _ = model.graph_builder.enhance["audio"](xm, kv, b.text_mask)
    assert torch.equal(h0, xm)


# ------------------------------------------------------------------ Eq. 3-5
def test_eq3_text_attention_is_softmax_over_real_words():
    """P of Eq. 3 as the model computed it: softmax over the words (each row sums to 1), zero on
    padded words, equal to softmax((X^m W_Q)(X^t W_K)^T / sqrt(d')) recomputed from the weights."""
    model = SSU(tiny()).eval()
    b = batch(lengths=((5, 6, 6), (3, 4, 4), (7, 6, 6), (1, 2, 2)))
    gb = model.graph_builder
    with torch.no_grad():
        info = model(b, return_graphs=True).introspection
        xt = gb.proj["text"](b.text) * b.text_mask[..., None]
    for m in ("audio", "vision"):
        p = info.text_attention[m]
        T = p.shape[1]
        real = torch.arange(T)[None, :] < info.lengths[m][:, None]
        sums = p.sum(-1)
        assert torch.allclose(sums[real], torch.ones(int(real.sum())), atol=1e-5)  # over words, per node
        assert (p * (~b.text_mask)[:, None, :]).abs().max() == 0  # padded words get nothing
        sc = gb.scorer[m]
        with torch.no_grad():
            xm = gb.proj[m](getattr(b, m))
            s = sc.wq(xm) @ sc.wk(xt).transpose(1, 2) / math.sqrt(8)
            ref = torch.softmax(s.masked_fill(~b.text_mask[:, None, :], -1e30), dim=-1)
        assert torch.allclose(p[real], ref[real], atol=1e-5)


def test_eq3_position_bias_enters_the_models_score():
    model = SSU(tiny()).eval()
    b = batch()
    with torch.no_grad():
        s0 = model(b, return_graphs=True).introspection.score["audio"]
        model.graph_builder.scorer["audio"].pos_bias[1] = 2.5
        s1 = model(b, return_graphs=True).introspection.score["audio"]
    diff = (s1 - s0)[0]
    T = diff.shape[0]
    expected = torch.zeros(T, T)
    for i in range(T - 1):
        expected[i, i + 1] = expected[i + 1, i] = 2.5
    assert torch.allclose(diff, expected, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_eq4_models_adjacency_is_symmetric_softmax(grad):
    """A of Eq. 4 as the model built it (before the threshold and its per-row cap, which make the
    kept graph asymmetric): symmetric, zero on padding, (softmax(S) + softmax(S)^T) / 2 of the
    model's own score S over real nodes."""
    model = SSU(tiny()).eval()
    b = batch(lengths=UNALIGNED)
    with torch.set_grad_enabled(grad):
        info = model(b, return_graphs=True).introspection
    for m in ("audio", "vision"):
        A, S, n = info.symmetric[m], info.score[m], info.lengths[m]
        assert torch.equal(A, A.transpose(1, 2))
        for s in range(b.size):
            k = int(n[s])
            assert A[s, k:].abs().sum() == 0 and A[s, :, k:].abs().sum() == 0
            p = torch.softmax(S[s, :k, :k].detach(), dim=-1)
            assert torch.allclose(A[s, :k, :k].detach(), 0.5 * (p + p.T), atol=1e-6)
        kept = info.adjacency[m]
        assert (kept <= A.detach() + 1e-7).all()  # the kept graph is a subset of A


def test_eq4_function_on_padded_stack():
    score = torch.randn(3, 6, 6)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5], dtype=torch.bool)
    a, pair = symmetric_adjacency(score.clone(), mask)
    assert torch.allclose(a, a.transpose(1, 2))
    assert a[1, 4:].abs().max() == 0 and a[1, :, 4:].abs().max() == 0
    assert torch.equal(pair.bool(), mask[:, :, None] & mask[:, None, :])
    # each row of softmax sums to 1, so A's real entries sum to the number of real nodes
    assert a.sum((1, 2)).tolist() == pytest.approx([6.0, 4.0, 1.0], abs=1e-5)
    p = torch.softmax(score[0], -1)
    assert torch.allclose(a[0], 0.5 * (p + p.T))


def _threshold(adj, mask, lam, cap):
    pair = (mask[:, :, None] & mask[:, None, :]).float()
    _, _, tau = threshold_stats(adj, pair, mask, torch.tensor(lam))
    return threshold_keep(adj, tau, mask, cap), tau


def test_eq5_threshold_padding_and_cap():
    torch.manual_seed(1)
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.bool)
    adj, pair = symmetric_adjacency(torch.randn(2, 8, 8) * 3, mask)
    keep, tau = _threshold(adj, mask, 0.5, cap=0)
    for b in range(2):
        vals = adj[b][pair[b].bool()]
        mu, sd = vals.mean(), vals.std(unbiased=False)
        assert tau[b] == pytest.approx(float(mu + 0.5 * sd), abs=1e-6)
        off = ~torch.eye(8, dtype=torch.bool)
        expect = (adj[b] >= tau[b]) & pair[b].bool() & off
        assert torch.equal(keep[b] & off, expect)  # exactly the entries >= tau (+ self-loops)
    assert not keep[1, 5:].any() and not keep[1, :, 5:].any()  # nothing touches padding
    keep_c, _ = _threshold(adj, mask, -2.0, cap=3)
    assert ((keep_c & ~torch.eye(8, dtype=torch.bool)).sum(-1) <= 3).all()


def test_masked_edges_in_model_obey_threshold_and_padding():
    model = SSU(tiny()).eval()
    b = batch(lengths=UNALIGNED)
    with torch.no_grad():
        out = model(b, return_graphs=True)
        g = model.build_graphs(b)
    for m in ("audio", "vision"):
        a = out.introspection.adjacency[m]
        tau = out.introspection.threshold[m]
        n = out.introspection.lengths[m]
        T = a.shape[1]
        off = ~torch.eye(T, dtype=torch.bool)
        for s in range(b.size):
            kept = a[s][off & (a[s] > 0)]
            assert (kept >= tau[s] - 1e-7).all()
            assert a[s, n[s]:].abs().sum() == 0 and a[s, :, n[s]:].abs().sum() == 0
    # no edge of the PyG graph touches a padded node
    real = torch.cat([blk.mask.reshape(-1) for blk in g.blocks])
    real = torch.cat([real, torch.ones(g.x.shape[0] - real.numel(), dtype=torch.bool)])
    assert real[g.edge_index].all() and real[g.fusion_edge_index].all()


def test_lambda_gets_gradient():
    model = SSU(tiny(reg_loss="mse"))
    out = model(batch())
    out.losses["total"].backward()
    assert model.graph_builder.threshold_lambda.grad is not None
    assert model.graph_builder.threshold_lambda.grad.abs() > 0


# ------------------------------------------------------------------ Eq. 6-7 and fusion graph
def test_anchor_is_mean_of_real_words_and_beta_sums_to_one():
    model = SSU(tiny()).eval()
    b = batch()
    b2 = dataclasses.replace(b, text=b.text.masked_fill(~b.text_mask[..., None], 99.0))
    with torch.no_grad():
        out = model(b, return_graphs=True)
        out2 = model(b2, return_graphs=True)
        xt = model.graph_builder.proj["text"](b.text)
    for s in range(b.size):
        n = int(b.text_mask[s].sum())
        assert torch.allclose(out.introspection.anchor[s], xt[s, :n].mean(0), atol=1e-6)
    assert torch.allclose(out.introspection.anchor, out2.introspection.anchor)  # padding ignored
    assert torch.allclose(out.prediction, out2.prediction, atol=1e-6)
    for m in ("text", "audio", "vision"):
        beta = out.introspection.beta[m]
        assert torch.allclose(beta.sum(1), torch.ones(b.size), atol=1e-5)


def test_empty_text_anchor_is_zero():
    rng = np.random.default_rng(3)
    b = collate([record(rng, 0, 4, 4), record(rng, 3, 5, 5)])
    model = SSU(tiny()).eval()
    with torch.no_grad():
        out = model(b, return_graphs=True)
    assert out.introspection.anchor[0].abs().max() == 0
    assert torch.isfinite(out.prediction).all() and torch.isfinite(out.losses["total"])


def test_fusion_graph_cross_modal_edges_follow_topk_beta():
    model = SSU(tiny(fusion_k=2)).eval()
    b = batch()
    with torch.no_grad():
        g = model.build_graphs(b, introspect=True)
    cross = g.fusion_edge_type == model.edge_types.cross
    src, dst = g.fusion_edge_index[:, cross]
    # 3 modality pairs x 2x2 selected nodes x 2 directions per sample (all lengths >= 2)
    assert int(cross.sum()) == b.size * 3 * 4 * 2
    beta = g.introspection.beta
    for blk in g.blocks:
        ids = src[(src >= blk.offset) & (src < blk.offset + b.size * blk.T)] - blk.offset
        s, i = ids // blk.T, ids % blk.T
        top = beta[blk.name].masked_fill(~blk.mask, -1).topk(2, -1).indices
        assert all(int(i[k]) in top[int(s[k])].tolist() for k in range(ids.numel()))
    # every node-anchor edge present in both directions, weighted by beta
    a_out = g.fusion_edge_type == model.edge_types.anchor_out
    n_real = sum(int(blk.mask.sum()) for blk in g.blocks)
    assert int(a_out.sum()) == n_real


def test_anchor_off_removes_only_the_anchor():
    """Table 3's ablation: no anchor node, no anchor edges, but the cross-modal fusion edges stay
    (picked by the same beta); ``cross_modal_edges: false`` removes those on its own."""
    b = batch()
    on = SSU(tiny()).eval()
    off = SSU(tiny(use_anchor=False)).eval()
    missing, unexpected = off.load_state_dict(on.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"graph_builder.anchor_type"}
    with torch.no_grad():
        p_on, p_off = on(b).prediction, off(b).prediction
        g = off.build_graphs(b)
    assert not torch.allclose(p_on, p_off)
    et = off.edge_types
    types = set(g.fusion_edge_type.unique().tolist()) | set(g.edge_type.unique().tolist())
    assert not types & {et.anchor_out, et.anchor_in, et.anchor_self}
    assert int((g.fusion_edge_type == et.cross).sum()) == b.size * 3 * 4 * 2  # fusion_k=2, 3 pairs
    assert g.x.shape[0] == sum(b.size * blk.T for blk in g.blocks) and g.anchor_offset == -1

    no_cross = SSU(tiny(cross_modal_edges=False)).eval()
    no_cross.load_state_dict(on.state_dict())
    with torch.no_grad():
        g_nc, g_on = no_cross.build_graphs(b), on.build_graphs(b)
        p_nc = no_cross(b).prediction
    assert not (g_nc.fusion_edge_type == et.cross).any()
    assert torch.equal(g_nc.edge_index, g_on.edge_index)  # modality graphs untouched
    assert int((g_nc.fusion_edge_type == et.anchor_out).sum()) == int((g_on.fusion_edge_type == et.anchor_out).sum())
    assert not torch.allclose(p_nc, p_on)

    neither = SSU(tiny(use_anchor=False, cross_modal_edges=False))
    assert not any(n.startswith("graph_builder.anchor") for n, _ in neither.named_parameters())


def test_checkpoint_from_before_the_graph_builder_loads():
    """State dicts saved when graph construction lived on SSU itself (keys without the
    ``graph_builder.`` prefix) load into the same model."""
    model = SSU(tiny()).eval()
    old = {k.removeprefix("graph_builder."): v for k, v in model.state_dict().items()}
    assert "threshold_lambda" in old and "proj.text.0.weight" in old
    loaded = SSU(tiny()).eval()
    loaded.load_state_dict(old)
    b = batch()
    with torch.no_grad():
        assert torch.equal(model(b).prediction, loaded(b).prediction)
    cfg = tiny(use_anchor=False).to_dict()
    del cfg["cross_modal_edges"]  # a config saved then: no anchor meant no cross-modal edges either
    assert SSUConfig.from_dict(cfg).cross_modal_edges is False


def test_edge_features_change_output():
    model = SSU(tiny()).eval()
    b = batch()
    with torch.no_grad():
        p0 = model(b).prediction
        # same tree, other relation labels -> other edge types only
        p_rel = model(dataclasses.replace(b, deps=(b.deps + 1) % 16)).prediction
        model.edge_enc.weight_vec.mul_(5.0)  # edge weights scaled inside the features
        model.fusion_edge_enc.weight_vec.mul_(5.0)
        p_w = model(b).prediction
    assert not torch.allclose(p0, p_rel)
    assert not torch.allclose(p0, p_w)


# ------------------------------------------------------------------ augmentation
def test_augmentation_deletes_and_adds_at_ratios():
    model = SSU(tiny()).eval()
    with torch.no_grad():
        g = model.build_graphs(batch(lengths=UNALIGNED))
    ei = g.edge_index
    N = g.x.shape[0]
    non_self = int((ei[0] != ei[1]).sum())
    start, count, anchor = g.node_membership()
    new, rows = augment_edges(ei, start, count, anchor,
                              0.3, 0.2, generator=torch.Generator().manual_seed(0))
    orig = set((ei[0] * N + ei[1]).tolist())
    keys = (new[0] * N + new[1]).tolist()
    kept = [k for k in keys if k in orig]
    added = [k for k in keys if k not in orig]
    assert len(kept) == ei.shape[1] - round(0.3 * non_self)  # really deleted, exact count
    assert len(added) == round(0.2 * non_self) > 0  # really added, exact count
    assert len(set(keys)) == len(keys)  # no duplicates
    assert all(k // N != k % N for k in added)  # no self-loop added
    n_self = int((ei[0] == ei[1]).sum())
    assert int((new[0] == new[1]).sum()) == n_self  # self-loops kept
    # added edges stay inside one modality graph of one sample; their features come from an edge
    # with the same source
    add_mask = torch.tensor([k not in orig for k in keys])
    s, d = new[:, add_mask]
    assert (anchor[s] == anchor[d]).all()  # same graph (its anchor)
    assert (start[s] == start[d]).all()
    assert torch.equal(ei[0, rows[add_mask]], s)


# ------------------------------------------------------------------ losses (Eq. 8-11)
def test_losses_match_hand_computation():
    y = torch.tensor([-1.2, 0.0, 2.6])
    pred = torch.tensor([-0.2, 0.5, 2.0])
    assert float(regression_loss(pred, y, "l1")) == pytest.approx((1.0 + 0.5 + 0.6) / 3, abs=1e-6)
    assert float(regression_loss(pred, y, "mse")) == pytest.approx((1.0 + 0.25 + 0.36) / 3, abs=1e-6)
    assert discretise_labels(y, "sign3").tolist() == [0, 1, 2]
    assert discretise_labels(y, "binary").tolist() == [0, 1, 1]
    assert discretise_labels(torch.tensor([-3.7, -0.5, 2.5, 1.5]), "round7").tolist() == [0, 3, 5, 5]
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3], [0.0, 1.0, 3.0]])
    ce = -sum(math.log(math.exp(logits[i, c]) / sum(math.exp(v) for v in logits[i]))
              for i, c in enumerate([0, 1, 2])) / 3
    assert float(F.cross_entropy(logits, discretise_labels(y, "sign3"))) == pytest.approx(ce, abs=1e-6)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z2 = torch.tensor([[2.0, 0.5], [0.0, 1.0], [-1.0, 1.0]])
    eta = 0.5

    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    nce = 0.0
    for i in range(3):
        den = sum(math.exp(cos(z1[i], z2[j]) / eta) for j in range(3))  # positive included
        nce += -math.log(math.exp(cos(z1[i], z2[i]) / eta) / den)
    assert float(info_nce(z1, z2, eta)) == pytest.approx(nce / 3, abs=1e-6)
    al = sum(float(((z2[i] - z1[i]) ** 2).sum()) for i in range(3)) / 3
    assert float(align_loss(z2, z1)) == pytest.approx(al, abs=1e-6)


def test_total_loss_is_weighted_sum_and_terms_recompute():
    cfg = tiny(lambda_sup=0.3, lambda_self=0.7, lambda_align=0.05, temperature=0.2, reg_loss="mse")
    model = SSU(cfg).eval()
    b = batch(lengths=((5, 6, 6), (3, 4, 4), (7, 6, 6)))  # 3 samples
    torch.manual_seed(5)
    out = model(b)
    L = out.losses
    assert float(L["total"]) == pytest.approx(
        float(L["reg"] + 0.3 * L["sup"] + 0.7 * L["self"] + 0.05 * L["align"]), abs=1e-5)
    assert float(L["reg"]) == pytest.approx(float(((out.prediction - b.labels) ** 2).mean()), abs=1e-6)
    assert float(L["sup"]) == pytest.approx(
        float(F.cross_entropy(out.logits, discretise_labels(b.labels, "sign3"))), abs=1e-6)
    assert float(L["self"]) == pytest.approx(float(info_nce(out.z_ori, out.z_aug, 0.2)), abs=1e-6)
    assert float(L["align"]) == pytest.approx(
        float(((out.z_fuse - out.z_ori) ** 2).sum(-1).mean()), abs=1e-5)
    # a zero weight switches the term off but it is still reported
    off = SSU(dataclasses.replace(cfg, lambda_self=0.0)).eval()
    off.load_state_dict(model.state_dict())
    o = off(b)
    assert float(o.losses["self"]) > 0
    assert float(o.losses["total"]) == pytest.approx(
        float(o.losses["reg"] + 0.3 * o.losses["sup"] + 0.05 * o.losses["align"]), abs=1e-5)


def test_total_loss_reaches_every_parameter():
    model = SSU(tiny(reg_loss="mse"))
    out = model(batch(lengths=UNALIGNED))
    out.losses["total"].backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


# ------------------------------------------------------------------ missing modalities, llm source
def test_text_only_batch_and_config():
    rng = np.random.default_rng(2)
    b = collate([record(rng, n, None, None) for n in (4, 2, 6)])
    assert b.audio is None and b.vision is None
    for cfg in (tiny(), tiny(audio_dim=None, vision_dim=None)):
        model = SSU(cfg)
        out = model(b, return_graphs=True)
        assert out.prediction.shape == (3,) and torch.isfinite(out.losses["total"])
        assert set(out.introspection.beta) == {"text"}
        out.losses["total"].backward()
    # a mixed batch: one sample without audio gets no audio graph (text + vision + anchor)
    mixed = collate([record(rng, 3, None, 4), record(rng, 3, 5, 5)])
    with torch.no_grad():
        out = SSU(tiny()).eval()(mixed, return_graphs=True)
    assert out.introspection.lengths["audio"].tolist() == [0, 5]
    assert out.introspection.adjacency["audio"][0].abs().sum() == 0


def test_llm_graph_source():
    rng = np.random.default_rng(4)
    recs = [record(rng, n, la, lv, llm_dim=6) for n, la, lv in ((4, 10, 3), (2, 5, 12), (5, 7, 7))]
    b = collate(recs)
    cfg = tiny(graph_source="llm", llm_dim=6, reg_loss="mse")
    model = SSU(cfg)
    out = model(b, return_graphs=True)
    assert set(out.introspection.adjacency) == {"text", "audio", "vision"}
    a = out.introspection.adjacency["text"]
    assert a.shape == (3, 5, 5)
    out.losses["total"].backward()
    assert model.graph_builder.llm_scorer["text"].wq.weight.grad.abs().sum() > 0
    wrong = dataclasses.replace(b, llm_audio_lengths=b.llm_audio_lengths + 1)
    with pytest.raises(DataError, match="llm audio states"):
        model(wrong)


# ------------------------------------------------------------------ persistence, determinism, config
def test_save_load_roundtrip(tmp_path):
    cfg = tiny()
    model = SSU(cfg)
    torch.save({"config": cfg.to_dict(), "state": model.state_dict()}, tmp_path / "m.pt")
    ck = torch.load(tmp_path / "m.pt")
    loaded = SSU(SSUConfig.from_dict(ck["config"]))
    loaded.load_state_dict(ck["state"])
    b = batch()
    model.eval(), loaded.eval()
    with torch.no_grad():
        a, c = model(b), loaded(b)
    assert torch.equal(a.prediction, c.prediction) and torch.equal(a.logits, c.logits)


def test_same_seed_same_output_in_training_mode():
    b = batch(lengths=UNALIGNED)

    def run():
        torch.manual_seed(7)
        model = SSU(tiny()).train()
        out = model(b)
        out.losses["total"].backward()
        return out, model.graph_builder.threshold_lambda.grad.clone()

    (o1, g1), (o2, g2) = run(), run()
    assert torch.equal(o1.prediction, o2.prediction)
    assert all(torch.equal(o1.losses[k], o2.losses[k]) for k in o1.losses)
    assert torch.equal(g1, g2)


def test_config_validation():
    with pytest.raises(ValueError, match="SSUConfig.hidden"):
        SSUConfig(hidden=130, heads=4)
    with pytest.raises(ValueError, match="SSUConfig.num_classes"):
        SSUConfig(class_rule="round7", num_classes=3)
    with pytest.raises(ValueError, match="SSUConfig.llm_dim"):
        SSUConfig(graph_source="llm")
    with pytest.raises(DataError, match="num_relations"):
        SSU(tiny(num_relations=4))(batch())


# ------------------------------------------------------------------ fast graph-construction path
def test_threshold_cap_matches_row_by_row_definition():
    """The batched Eq. 5 mask (cap applied only on the rows where it binds) equals the definition
    evaluated row by row: entries >= tau among real pairs, at most the cap largest (ties kept),
    plus the self-loop; including lambda < 0 (tau below some entries of padded rows)."""
    torch.manual_seed(3)
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3, [1] * 2 + [0] * 7], dtype=torch.bool)
    adj, _ = symmetric_adjacency(torch.randn(3, 9, 9) * 2, mask)
    for lam, cap in ((-0.5, 3), (0.0, 2), (1.0, 1), (-3.0, 4)):
        keep, tau = _threshold(adj, mask, lam, cap)
        for b in range(3):
            n = int(mask[b].sum())
            for i in range(9):
                expect = set()
                if i < n:
                    kept = [j for j in range(n) if adj[b, i, j] >= tau[b]]
                    if len(kept) > cap:
                        kth = sorted((float(adj[b, i, j]) for j in kept), reverse=True)[cap - 1]
                        kept = [j for j in kept if float(adj[b, i, j]) >= kth]
                    expect = set(kept) | {i}
                assert set(keep[b, i].nonzero().squeeze(1).tolist()) == expect, (lam, cap, b, i)


@pytest.mark.parametrize("lengths", [None, UNALIGNED], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_fast_path_equals_module_path(lengths, grad):
    """build_graphs without introspection (fused Eq. 1/Eq. 3 queries, batched attention, stacked
    Eq. 4-5, one nonzero) gives the same graphs as the introspection path, which runs
    TextInformedAttention.forward / TextGuidedScore-style per-module code."""
    model = SSU(tiny()).eval()
    b = batch() if lengths is None else batch(lengths=lengths)
    with torch.set_grad_enabled(grad):
        fast = model.build_graphs(b)
        slow = model.build_graphs(b, introspect=True)
    for name in ("edge_index", "edge_type", "fusion_edge_index", "fusion_edge_type"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    for name in ("edge_weight", "fusion_edge_weight"):
        assert torch.allclose(getattr(fast, name), getattr(slow, name), atol=1e-6), name
    real = torch.cat([blk.mask.reshape(-1) for blk in fast.blocks])
    real = torch.cat([real, torch.ones(fast.x.shape[0] - real.numel(), dtype=torch.bool)])
    assert torch.allclose(fast.x[real], slow.x[real], atol=1e-5)
    # the module path really is the per-module computation
    xm = model.graph_builder.proj["audio"](b.audio if lengths is None else temporal_pool(b.audio, b.audio_lengths, 8)[0])
    kv = model.graph_builder.text_kv(model.graph_builder.proj["text"](b.text))
    h, _ = model.graph_builder.enhance["audio"](xm, kv, b.text_mask)
    blk = fast.blocks[1]
    mask = blk.mask.reshape(-1)
    got = fast.x[blk.offset: blk.offset + b.size * blk.T][mask]
    assert torch.allclose(got, h.reshape(-1, h.shape[-1])[mask], atol=1e-5)


# ------------------------------------------------------------------ real-feature handling
def test_stream_standardisation_uses_train_statistics_and_travels_with_the_model(tmp_path):
    rng = np.random.default_rng(5)
    recs = [record(rng, 4, 6, 5) for _ in range(6)]
    for r in recs:  # raw scales like real acoustic descriptors
        r.audio = r.audio * 100.0 + 40.0
        r.vision = r.vision * 0.01
    b = collate(recs)
    model = SSU(tiny(standardize_streams=True)).eval()
    with pytest.raises(DataError, match="never fitted"):
        model(b)
    empty = [dataclasses.replace(r, audio=r.audio[:0]) for r in recs]  # a split without audio steps
    with pytest.raises(DataError, match="no audio steps"):
        model.fit_stream_statistics(empty)
    model.fit_stream_statistics(recs)
    audio = np.concatenate([r.audio for r in recs])
    st = model.graph_builder.standardizer
    assert torch.allclose(st.audio_mean, torch.tensor(audio.mean(0)), atol=1e-4)
    assert torch.allclose(st.audio_scale, torch.tensor(audio.std(0)), atol=1e-3)
    # the same as a model without standardisation fed z-scored streams by hand
    plain = SSU(tiny()).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    z = dataclasses.replace(
        b, audio=(b.audio - st.audio_mean) / st.audio_scale * lengths_mask(b.audio_lengths, b.audio.shape[1]),
        vision=(b.vision - st.vision_mean) / st.vision_scale * lengths_mask(b.vision_lengths, b.vision.shape[1]))
    with torch.no_grad():
        assert torch.allclose(model(b).prediction, plain(z).prediction, atol=1e-5)
    torch.save({"config": model.config.to_dict(), "state": model.state_dict()}, tmp_path / "m.pt")
    ck = torch.load(tmp_path / "m.pt")
    loaded = SSU(SSUConfig.from_dict(ck["config"])).eval()
    loaded.load_state_dict(ck["state"])
    with torch.no_grad():
        assert torch.equal(loaded(b).prediction, model(b).prediction)


def lengths_mask(lengths, T):
    return (torch.arange(T)[None, :] < lengths[:, None])[..., None].float()


def test_modality_dropout_removes_stream_graphs_in_training_only():
    b = batch()
    model = SSU(tiny(modality_dropout=0.9))
    torch.manual_seed(0)
    out = model.train()(b, return_graphs=True)
    lengths = out.introspection.lengths
    assert (lengths["audio"] == 0).any() or (lengths["vision"] == 0).any()
    assert (lengths["text"] > 0).all()  # text is never dropped
    with torch.no_grad():
        ev = model.eval()(b, return_graphs=True).introspection.lengths
    assert (ev["audio"] > 0).all() and (ev["vision"] > 0).all()
    with pytest.raises(ValueError, match="modality_dropout"):
        tiny(modality_dropout=1.0)


def test_stream_statistics_of_a_text_only_model_are_a_no_op():
    """A pipeline that standardises its streams also trains text-only variants (no stream to fit)."""
    rng = np.random.default_rng(6)
    recs = [record(rng, 4, 6, 5) for _ in range(3)]
    model = SSU(tiny(audio_dim=None, vision_dim=None, standardize_streams=True))
    model.fit_stream_statistics(recs)
    assert model.graph_builder.standardizer is None
    with pytest.raises(ValueError, match="standardize_streams is off"):
        SSU(tiny()).fit_stream_statistics(recs)
