"""`explain`: the paper's Figs. 5-7 from trained models, and the library functions behind them.

One module-scoped workspace runs the real stages on a tiny aligned sample (spaCy, MiniLM, 2 seeds,
1 epoch): `features`, `parse`, `text-features`, `train` of ``full`` (text + audio + vision, with
the anchor) and ``no_anchor_ta`` (no anchor, text + audio only, as mosi-av's models read), their
`evaluate`, and `explain` comparing the two. The tests check that the figure data is what the
models computed: predictions equal evaluate's, beta and the cross-attention maps equal a forward
pass run here, the loss surface's centre equals the model's loss on the fixed batch. Library
tests use a tiny random SSU (no training).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from tests.workspace import invoke as _invoke
from tests.workspace import ok as _ok
from tests.workspace import tiny_params, train_tiny

SIZES = (24, 12, 12)
VARIANTS = ("full", "no_anchor_ta")
EXPLAIN = {  # small enough for a test: a 5 x 5 grid on 8 utterances
    "variant": "full", "compare_to": "no_anchor_ta", "utterances": [], "split": "test", "seed": 1, "top_n": 3,
    "top_nodes": 2, "surface_loss": "total", "surface_split": "valid", "surface_batch": 8, "surface_seed": 3,
    "grid_points": 5, "grid_range": 1.0, "sharpness_radius": 0.5, "threads": 1,
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from ssu_model.data import sample

    root = tmp_path_factory.mktemp("explain")
    data = sample.generate(0, SIZES, aligned=True, nonfinite_share=0.0)
    sample.dump(data, root / "sample.pkl")
    params = tiny_params()
    params["variants"] = {"full": {}, "no_anchor_ta": {"model": {"use_anchor": False},
                                                       "train": {"modalities": ["text", "audio"]}}}
    params["explain"] = dict(EXPLAIN, utterances=[str(i) for i in sorted(data["test"]["id"])[:2]])
    train_tiny(root, params, VARIANTS,
               {v: (root / f"metrics_{v}.json", root / f"{v}.parquet", root / "plots" / v) for v in VARIANTS})
    _ok(_invoke(explain_args(root)))
    return root


def explain_args(ws, params=None, out=None):
    return ["explain", "--params", params or ws / "params.yaml", "--models", ws / "models",
            "--features", ws / "features", "--parse", ws / "parse", "--text-features", ws / "text_features",
            "--out", out or ws / "explain"]


def _doc(ws, stem):
    return json.loads((ws / "explain" / f"{stem}.json").read_text())


def _model_and_batch(ws, variant, seed, split, ids):
    """The variant's checkpoint of ``seed`` and a batch of ``ids``, loaded as evaluate does."""
    from ssu_model.data.batching import collate
    from ssu_model.train.checkpoints import model_from_checkpoint
    from ssu_model.train.model_folder import load_model_folder
    from stages.modelling import load_inputs

    trained = load_model_folder(ws / "models" / variant)
    model = model_from_checkpoint(trained.checkpoints[trained.seeds.index(seed)]).eval()
    examples, _labels, _dims = load_inputs((split,), ws / "features", ws / "parse", ws / "text_features", None,
                                           trained.modalities)
    by_id = {e.id: e for e in examples[split]}
    return model, collate([by_id[i] for i in ids])


# --------------------------------------------------------------------------- the figure data is the model's


def test_predictions_equal_evaluates_per_seed_predictions(ws):
    doc = _doc(ws, "fig6_predictions")
    assert doc["variants"] == list(VARIANTS) and doc["seeds"] == [0, 1]
    for variant in VARIANTS:
        evaluated = pq.read_table(ws / f"{variant}.parquet").to_pandas().set_index(["seed", "id"])
        for utt in doc["utterances"]:
            got = utt["models"][variant]["predictions"]
            assert sorted(got) == ["0", "1"]
            for seed in (0, 1):
                assert got[str(seed)] == pytest.approx(float(evaluated.loc[(seed, utt["id"]), "prediction"]),
                                                       abs=1e-5, rel=1e-5)
            assert utt["models"][variant]["prediction_mean"] == pytest.approx(np.mean(list(got.values())), abs=1e-5)
            assert utt["label"] == pytest.approx(float(evaluated.loc[(0, utt["id"]), "label"]), abs=1e-6)


def test_beta_and_cross_attention_are_the_models_introspection(ws):
    """The JSON holds what a forward pass with return_graphs=True gives, seed explain.seed."""
    fig6, fig7 = _doc(ws, "fig6_predictions"), _doc(ws, "fig7_cross_attention")
    ids = [u["id"] for u in fig6["utterances"]]
    for variant in VARIANTS:
        model, batch = _model_and_batch(ws, variant, EXPLAIN["seed"], "test", ids)
        with torch.no_grad():
            out = model(batch, return_graphs=True)
        info = out.introspection
        for b, (u6, u7) in enumerate(zip(fig6["utterances"], fig7["utterances"])):
            n_words = int(batch.text_mask[b].sum())
            assert len(u6["words"]) == n_words
            beta = u6["models"][variant]["beta"]
            for m in model.config.modalities:
                n = int(info.lengths[m][b])
                np.testing.assert_allclose(beta[m]["weights"], info.beta[m][b, :n].numpy(), rtol=1e-5, atol=1e-7)
                assert beta[m]["top"][0]["weight"] == pytest.approx(float(info.beta[m][b, :n].max()), rel=1e-5)
            for m in ("audio", "vision"):
                if m not in model.config.modalities:
                    continue
                n = int(info.lengths[m][b])
                np.testing.assert_allclose(u7["models"][variant]["cross_attention"][m]["matrix"],
                                           info.cross_attention[m][b, :n, :n_words].numpy(), rtol=1e-5, atol=1e-7)
            # the prediction comes from the same pass
            assert u6["models"][variant]["predictions"][str(EXPLAIN["seed"])] == pytest.approx(
                float(out.prediction[b]), abs=1e-5, rel=1e-5)


def test_a_model_with_the_anchor_attends_differently_from_one_without(ws):
    fig6, fig7 = _doc(ws, "fig6_predictions"), _doc(ws, "fig7_cross_attention")
    for u6, u7 in zip(fig6["utterances"], fig7["utterances"]):
        full, other = u6["models"]["full"], u6["models"]["no_anchor_ta"]
        assert full["use_anchor"] and not other["use_anchor"]
        assert "anchor's edges" in full["beta_role"] and "no anchor node" in other["beta_role"]
        assert not np.allclose(full["beta"]["text"]["weights"], other["beta"]["text"]["weights"], atol=1e-4)
        a, b = (np.asarray(u7["models"][v]["cross_attention"]["audio"]["matrix"]) for v in VARIANTS)
        assert a.shape == b.shape and not np.allclose(a, b, atol=1e-4)


def test_a_stream_the_model_does_not_read_says_so(ws):
    from matplotlib.text import Text

    from ssu_model.eval.explain_figures import draw_cross_attention, draw_predictions

    fig6, fig7 = _doc(ws, "fig6_predictions"), _doc(ws, "fig7_cross_attention")
    for u6, u7 in zip(fig6["utterances"], fig7["utterances"]):
        assert u6["models"]["no_anchor_ta"]["reads"] == ["text", "audio"]
        assert u6["models"]["no_anchor_ta"]["beta"]["vision"] == {"status": "not read by this model"}
        assert u7["models"]["no_anchor_ta"]["cross_attention"]["vision"] == {"status": "not read by this model"}
        assert u7["models"]["full"]["cross_attention"]["vision"]["status"] == "ok"
    for fig in (draw_predictions(fig6), draw_cross_attention(fig7)):
        texts = " | ".join(t.get_text() for t in fig.findobj(Text))
        assert "not read by this model" in texts and "no_anchor_ta" in texts


def test_loss_surface_centre_is_the_models_loss_on_the_fixed_batch(ws):
    from ssu_model.eval.explain import fixed_batch_ids

    doc = _doc(ws, "fig5_loss_surface")
    batch_doc = doc["batch"]
    assert batch_doc == {"split": "valid", "seed": EXPLAIN["surface_seed"], "ids": batch_doc["ids"]}
    valid_ids = pq.read_table(ws / "parse" / "valid.parquet").column("id").to_pylist()
    assert batch_doc["ids"] == fixed_batch_ids(valid_ids, EXPLAIN["surface_batch"], EXPLAIN["surface_seed"])
    assert len(batch_doc["ids"]) == EXPLAIN["surface_batch"]
    assert doc["loss"] == "total" and "Eq. 11" in doc["loss_definition"]
    assert "0.5" in doc["sharpness_definition"] and doc["seed"] == EXPLAIN["seed"]
    grid = np.asarray(doc["grid"]["alphas"])
    assert grid.tolist() == pytest.approx(np.linspace(-1, 1, 5).tolist())
    mid = len(grid) // 2
    for variant in VARIANTS:
        model, batch = _model_and_batch(ws, variant, EXPLAIN["seed"], "valid", batch_doc["ids"])
        torch.manual_seed(EXPLAIN["surface_seed"])
        with torch.no_grad():
            losses = model(batch).losses
        m = doc["models"][variant]
        for term in ("reg", "total"):
            assert m["surface"][term][mid][mid] == pytest.approx(float(losses[term]), rel=1e-5)
            assert m["centre"][term] == pytest.approx(float(losses[term]), rel=1e-5)
        surface = np.asarray(m["surface"]["total"])
        assert surface.shape == (5, 5) and m["min"] == pytest.approx(surface.min())
        ring = [surface[i, j] - surface[mid, mid] for i in range(5) for j in range(5)
                if 0 < np.hypot(grid[i], grid[j]) <= 0.5]
        assert len(ring) == 4 and m["sharpness"] == pytest.approx(np.mean(ring), rel=1e-4, abs=1e-6)
        assert abs(m["direction_cosine"]) < 0.2  # two random directions: nearly orthogonal


def test_outputs_are_byte_identical_across_runs(ws, tmp_path):
    _ok(_invoke(explain_args(ws, out=tmp_path / "again")))
    for path in sorted((ws / "explain").iterdir()):
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name
    assert sorted(p.name for p in (ws / "explain").iterdir()) == sorted(
        f"{stem}.{ext}" for stem in ("fig5_loss_surface", "fig6_predictions", "fig7_cross_attention")
        for ext in ("json", "png"))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("change, message", [
    ({"utterances": ["nope$_$1"]}, "utterance 'nope$_$1' is not in the test split"),
    ({"compare_to": "no_such_variant"}, "explain.compare_to is 'no_such_variant', which is no key of variants"),
    ({"surprise": 1}, "unknown param explain.surprise"),
    ({"grid_points": 4}, "grid_points must be odd"),
    ({"seed": 7}, "explain.seed 7 is not one of base.seeds"),
])
def test_bad_params_fail_with_one_line_and_leave_the_outputs(ws, tmp_path, change, message):
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["explain"].update(change)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    shutil.copytree(ws / "explain", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = _invoke(explain_args(ws, params=tmp_path / "params.yaml", out=out))
    assert r.exit_code == 1, r.output
    assert r.output.count("error:") == 1 and message in r.output, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_missing_model_folder_and_bad_usage(ws, tmp_path):
    args = explain_args(ws, out=tmp_path / "o")
    args[args.index("--models") + 1] = tmp_path / "none"
    r = _invoke(args)
    assert r.exit_code == 1 and "model folder not found" in r.output and not (tmp_path / "o").exists()
    assert _invoke(["explain", "--no-such-option"]).exit_code == 2


# --------------------------------------------------------------------------- library


def _tiny_model(**kw):
    from ssu_model.ssu.model import SSU, SSUConfig

    torch.manual_seed(0)
    return SSU(SSUConfig(text_dim=6, audio_dim=3, vision_dim=4, hidden=8, heads=2, gat_layers=1, score_dim=4,
                         edge_dim=4, max_nodes=4, fusion_k=2, num_relations=8, **kw))


def _records(audio_len=7, n=3):
    from ssu_model.data.batching import UtteranceRecord

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        words = 3 + i
        out.append(UtteranceRecord(
            word_states=rng.normal(size=(words, 6)).astype(np.float32), heads=np.zeros(words, dtype=np.int64),
            deps=[1] * words, audio=rng.normal(size=(audio_len, 3)).astype(np.float32),
            vision=rng.normal(size=(audio_len, 4)).astype(np.float32), label=float(i) - 1.0))
    return out


def test_filter_normalised_direction_has_the_weights_filter_norms():
    from ssu_model.eval.explain import filter_normalised_direction

    full, no_anchor = _tiny_model(), _tiny_model(use_anchor=False)
    d = filter_normalised_direction(full, 5, "d1")
    assert set(d) == {n for n, _ in full.named_parameters()}
    for name, p in full.named_parameters():
        if p.dim() < 2:
            assert not d[name].any(), name  # biases, LayerNorm, B_pos, lambda: left at their values
            continue
        np.testing.assert_allclose(d[name].flatten(1).norm(dim=1).numpy(), p.detach().flatten(1).norm(dim=1).numpy(),
                                   rtol=1e-5, err_msg=name)
        assert not torch.allclose(d[name], p.detach())  # a random direction, not the weights themselves
    again, other = filter_normalised_direction(full, 5, "d1"), filter_normalised_direction(full, 5, "d2")
    assert all(torch.equal(d[k], again[k]) for k in d)
    assert not torch.equal(d["gat.convs.0.lin_l.weight"], other["gat.convs.0.lin_l.weight"])
    shared = filter_normalised_direction(no_anchor, 5, "d1")  # same draw for a parameter both models have
    name = "reg_head.0.weight"
    gd = d[name] / full.get_parameter(name).detach().flatten(1).norm(dim=1, keepdim=True)
    gs = shared[name] / no_anchor.get_parameter(name).detach().flatten(1).norm(dim=1, keepdim=True)
    torch.testing.assert_close(gd, gs)


def test_loss_surface_restores_the_weights_and_its_centre_is_the_loss():
    from ssu_model.data.batching import collate
    from ssu_model.eval.explain import filter_normalised_direction, grid_coordinates, introspect, loss_surface

    model = _tiny_model()
    batch = collate(_records())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d1, d2 = filter_normalised_direction(model, 0, "d1"), filter_normalised_direction(model, 0, "d2")
    grid = grid_coordinates(3, 0.5)
    surface = loss_surface(model, batch, d1, d2, grid, grid, seed=4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # the mode it was in
    centre = introspect(model, batch, 4).losses
    for term in ("reg", "total"):
        assert surface[term][1, 1] == pytest.approx(float(centre[term]), rel=1e-6)
        assert surface[term].shape == (3, 3) and len(np.unique(surface[term])) > 1
    with pytest.raises(Exception, match="odd"):
        grid_coordinates(4, 1.0)


def test_sharpness_is_the_mean_increase_within_the_radius():
    from ssu_model.eval.explain import sharpness

    grid = np.linspace(-1, 1, 5)
    bowl = grid[:, None] ** 2 + grid[None, :] ** 2  # L = a^2 + b^2, centre 0
    # radius 0.5: the 4 neighbours at distance 0.5 -> mean 0.25; radius 0.75 adds the 4 diagonals (0.5)
    assert sharpness(bowl, grid, grid, 0.5) == pytest.approx(0.25)
    assert sharpness(bowl, grid, grid, 0.75) == pytest.approx(0.375)
    assert sharpness(2 * bowl + 7, grid, grid, 0.5) == pytest.approx(0.5)  # sharper bowl, higher number
    assert sharpness(-bowl, grid, grid, 0.5) < 0  # the centre is no minimum


def test_one_node_streams_are_a_1_x_T_map_and_beta_is_one_by_construction():
    from matplotlib.text import Text

    from ssu_model.data.batching import collate
    from ssu_model.eval.explain import beta_entry, cross_attention_entry, introspect, stream_steps
    from ssu_model.eval.explain_figures import draw_cross_attention, draw_predictions

    model = _tiny_model()
    batch = collate(_records(audio_len=1))  # utterance-level features, as mosi-av
    info = introspect(model, batch, 0).introspection
    reads = list(model.config.modalities)
    steps = stream_steps(batch, "audio", 0, model.config.max_nodes)
    att = cross_attention_entry(info, 0, "audio", reads, 2, steps)
    beta = beta_entry(info, 0, "audio", reads, 2, steps)
    assert att["one_node"] and np.asarray(att["matrix"]).shape == (1, 3) and steps == [(0, 0)]
    assert beta["weights"] == [pytest.approx(1.0)] and beta["normalised_entropy"] is None
    words = ["a", "b", "c"]
    models = {n: {"reads": reads, "use_anchor": True,
                  "cross_attention": {"audio": att, "vision": {"status": "not read by this model"}}} for n in "xy"}
    common = {"variants": ["x", "y"], "use_anchor": {"x": True, "y": True}, "seed": 0, "seeds": [0], "top_n": 2,
              "top_nodes": 2}
    utt = {"id": "v$_$1", "split": "test", "text": "a b c", "words": words}
    fig = draw_cross_attention({**common, "utterances": [{**utt, "models": models}]})
    texts = " | ".join(t.get_text() for t in fig.findobj(Text))
    assert "a 1 x 3 map, no time axis" in texts and "one audio node per utterance" in texts
    fig6 = {n: {"reads": reads, "beta_role": "r", "predictions": {"0": 0.1}, "prediction_mean": 0.1,
                "beta": {"text": beta_entry(info, 0, "text", reads, 2), "audio": beta,
                         "vision": {"status": "not read by this model"}}} for n in "xy"}
    fig = draw_predictions({**common, "utterances": [{**utt, "label": -1.0, "models": fig6}]})
    assert "beta = 1 by construction" in " | ".join(t.get_text() for t in fig.findobj(Text))


def test_pooled_steps_name_the_steps_temporal_pool_averages():
    from ssu_model.eval.explain import pooled_steps
    from ssu_model.ssu.layers import temporal_pool

    for n, k in ((50, 16), (7, 4), (3, 4), (1, 4)):
        x = torch.arange(n, dtype=torch.float32).view(1, n, 1)
        pooled, _ = temporal_pool(x, torch.tensor([n]), k)
        ranges = pooled_steps(n, k)
        assert len(ranges) == pooled.shape[1] == min(n, k)
        assert [(a + b) / 2 for a, b in ranges] == pytest.approx(pooled[0, :, 0].tolist())
        assert ranges[0][0] == 0 and ranges[-1][1] == n - 1
