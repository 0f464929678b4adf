"""The ridge reference: the closed-form fit, the alpha choice on validation, the pooled embedding,
and the `ridge` stage end to end on the sample (its outputs are what `diff` reads for a variant)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from ssu_model.errors import DataError
from ssu_model.eval.ridge import fit_ridge, select_alpha
from tests.conftest import ROOT
from tests.workspace import invoke


def _data(n=200, dim=6, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    w = rng.normal(size=dim)
    return x, x @ w + 2.0 + noise * rng.normal(size=n), w


def test_fit_ridge_is_the_penalised_least_squares_solution_with_a_free_intercept():
    x, y, _w = _data()
    alpha = 3.0
    model = fit_ridge(x, y, alpha)
    # the same problem as an augmented least-squares system: [X 1; sqrt(a) I 0] [w; b] = [y; 0]
    aug = np.block([[x, np.ones((len(x), 1))], [np.sqrt(alpha) * np.eye(x.shape[1]), np.zeros((x.shape[1], 1))]])
    sol = np.linalg.lstsq(aug, np.concatenate([y, np.zeros(x.shape[1])]), rcond=None)[0]
    np.testing.assert_allclose(model.weights, sol[:-1], rtol=1e-10, atol=1e-12)
    assert model.intercept == pytest.approx(sol[-1], abs=1e-10)
    # a huge penalty leaves the intercept alone: every prediction tends to the mean label
    flat = fit_ridge(x, y, 1e12)
    np.testing.assert_allclose(flat.predict(x), y.mean(), atol=1e-6)


def test_select_alpha_keeps_the_best_validation_score():
    rng = np.random.default_rng(3)
    w = rng.normal(size=40)  # few rows, many features, noisy labels: some penalty helps
    x = rng.normal(size=(60, 40))
    y = x @ w + 2.0 * rng.normal(size=60)
    xv = rng.normal(size=(300, 40))
    yv = xv @ w + 2.0 * rng.normal(size=300)
    alphas = [1e-3, 1.0, 10.0, 1e6]
    model, rows = select_alpha(x, y, xv, yv, alphas)
    maes = {r["alpha"]: r["MAE"] for r in rows}
    assert [r["alpha"] for r in rows] == sorted(alphas)
    assert model.alpha == min(maes, key=maes.get)
    assert model.alpha not in (1e-3, 1e6)  # neither extreme wins on this data
    refit = fit_ridge(x, y, model.alpha)  # the shared normal equations give the one-alpha solution exactly
    np.testing.assert_array_equal(model.weights, refit.weights)
    assert model.intercept == refit.intercept
    corr_model, _ = select_alpha(x, y, xv, yv, alphas, metric="Corr")  # higher is better
    assert corr_model.alpha == max({r["alpha"]: r["Corr"] for r in rows}.items(), key=lambda kv: kv[1])[0]


def test_ridge_rejects_bad_inputs():
    x, y, _ = _data(n=10)
    with pytest.raises(DataError, match="alpha must be > 0"):
        fit_ridge(x, y, 0.0)
    with pytest.raises(DataError, match="NaN or inf"):
        fit_ridge(np.where(np.eye(10, 6) > 0, np.nan, x), y, 1.0)
    with pytest.raises(DataError, match="needs"):
        fit_ridge(x, y[:5], 1.0)
    with pytest.raises(DataError, match="unknown selection metric"):
        select_alpha(x, y, x, y, [1.0], metric="R2")
    with pytest.raises(DataError, match="no alphas"):
        select_alpha(x, y, x, y, [])
    # a bad alpha is named before the training rows are touched (also when those are bad too)
    with pytest.raises(DataError, match="alpha must be > 0"):
        fit_ridge(x, y[:5], -1.0)
    with pytest.raises(DataError, match="alpha must be > 0"):
        select_alpha(x, y[:5], x, y, [1.0, 0.0])


def test_mean_pooled_embedding_ignores_padding_and_keeps_input_order():
    from ssu_model.text.sentence_embedding import mean_pooled_embeddings
    from ssu_model.text.text_encoder import TextEncoder

    enc = TextEncoder()
    texts = ["a much longer sentence that needs a lot more sub-words than the others do", "ok", "", "not bad"]
    batched = mean_pooled_embeddings(enc.model, enc.tokenizer, texts, max_length=256, batch_size=4)
    for i, text in enumerate(texts):  # alone: no padding at all
        alone = mean_pooled_embeddings(enc.model, enc.tokenizer, [text], max_length=256, batch_size=1)[0]
        np.testing.assert_allclose(batched[i], alone, atol=2e-5)
    # what sentence-transformers computes: the mean of every kept token's last hidden state
    ids = enc.tokenizer(texts[3], return_tensors="pt")
    import torch

    with torch.no_grad():
        manual = enc.model(**ids).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(batched[3], manual, atol=2e-5)
    cut = mean_pooled_embeddings(enc.model, enc.tokenizer, texts[:1], max_length=4, batch_size=1)[0]
    assert not np.allclose(cut, batched[0], atol=1e-3)  # max_length cuts the text


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    from ssu_model.data import sample

    root = tmp_path_factory.mktemp("ridge")
    sample.dump(sample.generate(0, (60, 20, 24), aligned=False), root / "sample.pkl")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = invoke(["features", "--params", root / "params.yaml", "--input", root / "sample.pkl", "--out", root / "features"])
    assert r.exit_code == 0, r.output
    return root


def _ridge(root, *extra):
    return invoke(["ridge", "--params", root / "params.yaml", "--features", root / "features",
                   "--out", root / "out" / "ridge.json", "--predictions", root / "out" / "ridge.parquet", *extra])


def test_ridge_stage_writes_a_variant_like_report_and_predictions(features):
    r = _ridge(features)
    assert r.exit_code == 0, r.output
    report = json.loads((features / "out" / "ridge.json").read_text())
    assert report["variant"] == "ridge" and report["seeds"] == [0] and report["n_seeds"] == 1
    assert set(report["mean"]) == set(report["per_seed"]["0"]) and "Non0_acc_2" in report["mean"]
    assert report["selection"]["alpha"] in [r["alpha"] for r in report["selection"]["valid"]]
    best = min(report["selection"]["valid"], key=lambda row: (row["MAE"], -row["alpha"]))
    assert report["selection"]["alpha"] == best["alpha"]
    table = pq.read_table(features / "out" / "ridge.parquet").to_pydict()
    assert len(table["id"]) == 24 and table["id"] == sorted(table["id"]) and set(table["seed"]) == {0}
    from ssu_model.eval.metrics import regression_metrics

    again = regression_metrics(np.array(table["prediction"], dtype=np.float64), np.array(table["label"], dtype=np.float64))
    assert again["MAE"] == pytest.approx(report["mean"]["MAE"], abs=1e-5)  # predictions and metrics agree
    first = (features / "out" / "ridge.json").read_bytes()
    assert _ridge(features).exit_code == 0
    assert (features / "out" / "ridge.json").read_bytes() == first  # deterministic


def test_ridge_stage_refuses_bad_params_and_inputs(features, tmp_path):
    params = yaml.safe_load((features / "params.yaml").read_text())
    params["ridge"]["alphas"] = [1.0, -2.0]
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    r = invoke(["ridge", "--params", bad, "--features", features / "features", "--out", tmp_path / "m.json"])
    assert r.exit_code != 0 and "alphas" in r.output and not (tmp_path / "m.json").exists()
    params["ridge"] = {**yaml.safe_load((ROOT / "params.yaml").read_text())["ridge"], "lambda": 1}
    bad.write_text(yaml.safe_dump(params))
    r = invoke(["ridge", "--params", bad, "--features", features / "features", "--out", tmp_path / "m.json"])
    assert r.exit_code != 0 and "lambda" in r.output
    r = invoke(["ridge", "--params", features / "params.yaml", "--features", tmp_path / "nowhere",
                "--out", tmp_path / "m.json"])
    assert r.exit_code == 1 and "not found" in r.output and not (tmp_path / "m.json").exists()
