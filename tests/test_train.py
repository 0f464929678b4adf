"""The train stage and the training library on a tiny synthetic workspace (no real encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
TEXT_DIM = 16
DEP_LABELS = ["ROOT", "nsubj", "dobj", "amod", "neg", "advmod"]
WORDS = ["i", "really", "liked", "this", "movie", "not", "good", "bad", "plot", "acting"]


def _parse_table(ids, texts, rng):
    import pyarrow as pa

    rows = {k: [] for k in ("id", "text", "words", "heads", "deps", "pos", "sub_start", "sub_end",
                            "n_subwords", "truncated")}
    for uid, text in zip(ids, texts):
        words = text.split()
        n = len(words)
        heads = [0] + [int(rng.integers(0, n)) for _ in range(n - 1)] if n else []
        rows["id"].append(uid)
        rows["text"].append(text)
        rows["words"].append(words)
        rows["heads"].append(heads)
        rows["deps"].append(["ROOT"] + [DEP_LABELS[int(rng.integers(1, len(DEP_LABELS)))] for _ in range(n - 1)]
                            if n else [])
        rows["pos"].append(["X"] * n)
        rows["sub_start"].append(list(range(1, n + 1)))
        rows["sub_end"].append(list(range(2, n + 2)))
        rows["n_subwords"].append(n + 2)
        rows["truncated"].append(False)
    schema = pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("words", pa.list_(pa.string())),
        ("heads", pa.list_(pa.int32())), ("deps", pa.list_(pa.string())), ("pos", pa.list_(pa.string())),
        ("sub_start", pa.list_(pa.int32())), ("sub_end", pa.list_(pa.int32())), ("n_subwords", pa.int32()),
        ("truncated", pa.bool_()),
    ], metadata={"ssu.dep_labels": json.dumps(DEP_LABELS), "ssu.max_length": "128",
                 "ssu.tokenizer": "fake", "ssu.spacy_version": "x", "ssu.spacy_model": "x",
                 "ssu.spacy_model_version": "x"})
    return pa.table(rows, schema=schema)


def make_workspace(root: Path, sizes=(24, 12, 12), seeds=(0, 1), text_only=False) -> Path:
    """features/parse/text_features dirs + params.yaml under ``root``; labels follow a planted
    signal in the word states and in the audio stream so a model can learn something."""
    import pyarrow.parquet as pq

    from ssu_model.data.features import write_split
    from ssu_model.text.text_encoder import write_text_states

    rng = np.random.default_rng(0)
    for d in ("features", "parse", "text_features"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), sizes):
        ids = [f"{split}{i:03d}" for i in range(n)]
        texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(0 if i == 0 else 2, 7)))) for i in range(n)]
        labels = np.clip(rng.normal(0, 1.5, n), -3, 3).round(1).astype(np.float32)
        labels[0] = 0.0
        audio = rng.normal(0, 0.5, (n, 10, 5)).astype(np.float32)
        audio[:, 3:6, 0] += labels[:, None]
        vision = rng.normal(0, 0.5, (n, 10, 20)).astype(np.float32)
        kw = {} if text_only else {"audio": audio, "vision": vision}
        write_split(root / "features" / f"{split}.arrow", ids, texts, labels, source="test", **kw)
        pq.write_table(_parse_table(ids, texts, rng), root / "parse" / f"{split}.parquet")
        states = []
        for t, y in zip(texts, labels):
            k = len(t.split())
            s = rng.normal(0, 1, (k, TEXT_DIM)).astype(np.float32)
            s[:, 0] += 0.5 * y
            states.append(s)
        write_text_states(root / "text_features" / f"{split}.arrow", ids, states, TEXT_DIM, "fake", 128)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"] = {"seeds": list(seeds), "device": "cpu"}
    params["model"].update(hidden=16, heads=2, gat_layers=1, score_dim=8, edge_dim=8, max_nodes=8,
                           max_edges_per_node=4, fusion_k=2)
    params["train"].update(epochs=3, patience=2, batch_size=8, eval_batch_size=16, lr=0.003, threads=1)
    params["evaluate"] = {"batch_size": 16, "png": True}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def train_args(ws: Path, variant: str = "full", extra=()):
    return ["train", "--variant", variant, "--params", str(ws / "params.yaml"),
            "--features", str(ws / "features"), "--parse", str(ws / "parse"),
            "--text-features", str(ws / "text_features"), "--out", str(ws / "models" / variant),
            "--live", str(ws / "dvclive" / variant), *extra]


@pytest.fixture
def workspace(tmp_path) -> Path:
    return make_workspace(tmp_path)


def _invoke(args):
    result = runner.invoke(app, args)
    return result


def test_train_writes_one_checkpoint_per_seed(workspace):
    r = _invoke(train_args(workspace))
    assert r.exit_code == 0, r.output
    out = workspace / "models" / "full"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "env.json", "history.json", "seed_0.pt", "seed_1.pt"]
    ckpt = torch.load(out / "seed_0.pt", weights_only=True)  # tensors + plain config only
    assert ckpt["seed"] == 0 and ckpt["model_config"]["text_dim"] == TEXT_DIM
    assert ckpt["model_config"]["audio_dim"] == 5 and ckpt["model_config"]["vision_dim"] == 20
    assert ckpt["meta"]["dep_labels"] == DEP_LABELS
    # the parse settings, read from the parse split's metadata, so predict re-parses the same way
    assert ckpt["meta"]["spacy_model"] == "x" and ckpt["meta"]["parse_max_length"] == 128
    assert ckpt["meta"]["parse"]["tokenizer"] == "fake" and "dep_labels" not in ckpt["meta"]["parse"]
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state"].values())
    env = json.loads((out / "env.json").read_text())
    assert env["device"] == "cpu" and env["world_size"] == 1 and env["torch"] == torch.__version__
    assert env["spacy"] and env["torch_geometric"]
    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"0", "1"}
    rows = history["0"]
    # the checkpoint holds the best validation epoch (select_metric MAE: lowest)
    best = min(rows, key=lambda r: r["valid/MAE"])
    assert ckpt["best_epoch"] == int(best["epoch"])
    assert ckpt["best_score"] == pytest.approx(best["valid/MAE"])
    for key in ("train/reg", "train/sup", "train/self", "train/align", "train/total", "valid/MAE", "valid/Non0_acc_2"):
        assert key in rows[0]
    # dvclive curves per seed, no timestamps (deterministic files)
    tsv = workspace / "dvclive" / "full" / "seed_0" / "plots" / "metrics" / "valid" / "MAE.tsv"
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == ["step", "MAE"] and len(lines) == len(rows) + 1


def test_training_is_deterministic(workspace):
    assert _invoke(train_args(workspace)).exit_code == 0
    first = torch.load(workspace / "models" / "full" / "seed_1.pt", weights_only=True)
    assert _invoke(train_args(workspace)).exit_code == 0
    second = torch.load(workspace / "models" / "full" / "seed_1.pt", weights_only=True)
    assert first["best_epoch"] == second["best_epoch"]
    for k, v in first["state"].items():
        assert torch.equal(v, second["state"][k]), k
    assert (workspace / "models" / "full" / "history.json").read_text()  # rewritten whole


def test_seeds_differ(workspace):
    assert _invoke(train_args(workspace)).exit_code == 0
    a = torch.load(workspace / "models" / "full" / "seed_0.pt", weights_only=True)["state"]
    b = torch.load(workspace / "models" / "full" / "seed_1.pt", weights_only=True)["state"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_variants_override_model_and_train(workspace):
    r = _invoke(train_args(workspace, "no_anchor"))
    assert r.exit_code == 0, r.output
    ck = torch.load(workspace / "models" / "no_anchor" / "seed_0.pt", weights_only=True)
    assert ck["model_config"]["use_anchor"] is False
    r = _invoke(train_args(workspace, "text_only"))
    assert r.exit_code == 0, r.output
    ck = torch.load(workspace / "models" / "text_only" / "seed_0.pt", weights_only=True)
    assert ck["model_config"]["audio_dim"] is None and ck["model_config"]["vision_dim"] is None
    r = _invoke(train_args(workspace, "reg_only"))
    assert r.exit_code == 0, r.output
    ck = torch.load(workspace / "models" / "reg_only" / "seed_0.pt", weights_only=True)
    assert ck["model_config"]["lambda_sup"] == 0 and ck["model_config"]["lambda_self"] == 0


def _edit(ws: Path, fn):
    p = yaml.safe_load((ws / "params.yaml").read_text())
    fn(p)
    (ws / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["train"].update(lr=-1.0), "train.lr must be > 0"),
    (lambda p: p["train"].update(bogus=1), "unknown param train.bogus"),
    (lambda p: p["model"].update(bogus=1), "unknown param model.bogus"),
    (lambda p: p["model"].update(text_dim=3), "model.text_dim is derived"),
    (lambda p: p["base"].update(device="tpu"), "device must be auto, cpu or cuda"),
    (lambda p: p["variants"].update(broken={"model": {"no_such": 1}}), "unknown param variants.broken.model.no_such"),
    (lambda p: p["variants"].update(broken={"optim": {}}), "unknown param variants.broken.optim"),
    (lambda p: p["train"].update(select_metric="Acc9"), "select_metric must be one of"),
    (lambda p: p["train"].update(modalities=["audio"]), "modalities must include text"),
    (lambda p: p["model"].update(hidden=15), "hidden must be divisible"),
])
def test_bad_params_fail_with_one_line(workspace, edit, message):
    _edit(workspace, edit)
    r = _invoke(train_args(workspace))
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], r.output
    assert not (workspace / "models" / "full").exists()  # nothing half-written


def test_unknown_variant(workspace):
    r = _invoke(train_args(workspace, "nope"))
    assert r.exit_code == 1 and "unknown variant 'nope'" in r.output


def test_missing_text_states_named(workspace):
    (workspace / "text_features" / "valid.arrow").unlink()
    r = _invoke(train_args(workspace))
    assert r.exit_code == 1 and "text states file not found" in r.output


def test_word_count_mismatch_named(workspace):
    from ssu_model.text.text_encoder import read_text_states, write_text_states

    states, _ = read_text_states(workspace / "text_features" / "train.arrow")
    ids = list(states)
    arrays = [states[i] for i in ids]
    arrays[3] = np.zeros((arrays[3].shape[0] + 1, TEXT_DIM), np.float32)
    write_text_states(workspace / "text_features" / "train.arrow", ids, arrays, TEXT_DIM, "fake", 128)
    r = _invoke(train_args(workspace))
    assert r.exit_code == 1 and f"text states of {ids[3]}" in r.output


def test_fit_early_stopping_and_select_loss(workspace):
    from ssu_model.ssu.model import SSU
    from ssu_model.train.config import TrainConfig
    from ssu_model.train.loop import fit, seed_everything
    from stages.modelling import build_model_config, load_inputs
    from stages.params import load_params
    from stages.train import resolve_variant

    raw = load_params(workspace / "params.yaml")
    overrides, _tp = resolve_variant(raw, "full")
    ex, labels, dims = load_inputs(("train", "valid"), workspace / "features", workspace / "parse",
                                   workspace / "text_features", None, ("text", "audio", "vision"))
    cfg = build_model_config(overrides, dims, len(labels), False)
    seed_everything(0)
    model = SSU(cfg)
    seen = []
    # lr so small that nothing improves after epoch 1 -> stops after 1 + patience epochs
    res = fit(model, ex["train"], ex["valid"], TrainConfig(lr=1e-12, epochs=10, patience=2, select_metric="loss",
                                                          batch_size=8), 0, callback=lambda e, r: seen.append(r))
    totals = [r["valid/total"] for r in seen]
    assert res.epochs_run == len(seen) < 10
    assert res.best_epoch == int(np.argmin(totals)) + 1
    assert res.epochs_run - res.best_epoch == 2


def test_fit_runs_after_batch_once_per_optimiser_step(workspace):
    from ssu_model.ssu.model import SSU
    from ssu_model.train.config import TrainConfig
    from ssu_model.train.loop import fit, seed_everything
    from stages.modelling import build_model_config, load_inputs
    from stages.params import load_params
    from stages.train import resolve_variant

    overrides, _tp = resolve_variant(load_params(workspace / "params.yaml"), "full")
    ex, labels, dims = load_inputs(("train", "valid"), workspace / "features", workspace / "parse",
                                   workspace / "text_features", None, ("text", "audio", "vision"))
    seed_everything(0)
    model = SSU(build_model_config(overrides, dims, len(labels), False))
    calls = []
    res = fit(model, ex["train"], ex["valid"], TrainConfig(epochs=2, patience=5, batch_size=5), 0,
              after_batch=lambda: calls.append(1))
    assert res.epochs_run == 2 and len(calls) == 2 * -(-len(ex["train"]) // 5)


def test_train_stage_releases_the_mapped_states_after_each_batch(workspace, monkeypatch):
    import ssu_model.text.text_encoder as text_encoder

    calls = []
    monkeypatch.setattr(text_encoder, "drop_mapped_state_pages", lambda: calls.append(1))
    assert _invoke(train_args(workspace)).exit_code == 0
    history = json.loads((workspace / "models" / "full" / "history.json").read_text())
    epochs = sum(len(rows) for rows in history.values())
    assert len(calls) == epochs * -(-24 // 8)  # 24 train utterances, batches of 8


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux /proc")
def test_dropping_mapped_state_pages_empties_the_resident_set_not_the_values(tmp_path):
    from benchmarks.bench_mapped_states import mapped_rss_kib
    from ssu_model.text.text_encoder import drop_mapped_state_pages, read_text_states, write_text_states

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(40, 64)).astype(np.float32) for _ in range(2000)]  # 20 MB
    ids = [f"u{i}" for i in range(len(arrays))]
    path = (tmp_path / "x.arrow").resolve()
    write_text_states(path, ids, arrays, 64, "enc", 64)
    back, _ = read_text_states(path)
    assert sum(float(back[k].sum()) for k in ids) == pytest.approx(sum(float(a.sum()) for a in arrays))
    touched = mapped_rss_kib(path)
    assert touched > 15_000
    drop_mapped_state_pages()
    assert mapped_rss_kib(path) < touched // 20
    assert all(np.array_equal(back[k], a) for k, a in zip(ids, arrays))  # faulted back in, unchanged


def test_text_encoder_pooling_matrix():
    from ssu_model.text.text_encoder import EncodedText, collate_encoded

    a = EncodedText(np.array([101, 5, 6, 7, 102]), np.array([1, 2]), np.array([2, 4]))
    b = EncodedText(np.array([101, 9, 102]), np.array([1, -1]), np.array([2, -1]))  # word 2 cut off
    ids, mask, pool = collate_encoded([a, b], pad_id=0)
    assert ids.tolist() == [[101, 5, 6, 7, 102], [101, 9, 102, 0, 0]]
    assert mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    words = torch.bmm(pool, hidden)
    assert torch.allclose(words[0, 0], hidden[0, 1])
    assert torch.allclose(words[0, 1], (hidden[0, 2] + hidden[0, 3]) / 2)  # mean of its 2 sub-words
    assert torch.allclose(words[1, 1], torch.zeros(3))  # cut-off word -> zeros


def test_text_states_roundtrip(tmp_path):
    from ssu_model.errors import DataError
    from ssu_model.text.text_encoder import read_text_states, write_text_states

    arrays = [np.ones((2, 4), np.float32), np.zeros((0, 4), np.float32), np.arange(12, dtype=np.float32).reshape(3, 4)]
    write_text_states(tmp_path / "x.arrow", ["a", "b", "c"], arrays, 4, "enc", 64)
    back, meta = read_text_states(tmp_path / "x.arrow")
    assert meta["ssu.text_dim"] == "4" and meta["ssu.text_encoder"] == "enc"
    for k, a in zip("abc", arrays):
        assert np.array_equal(back[k], a)
    with pytest.raises(DataError, match="expected"):
        write_text_states(tmp_path / "y.arrow", ["a"], [np.ones((2, 3), np.float32)], 4, "enc", 64)


@pytest.mark.parametrize("content", [b"", b"not arrow"], ids=["empty", "garbage"])
def test_unreadable_text_states_file_is_one_data_error(tmp_path, content):
    from ssu_model.errors import DataError
    from ssu_model.text.text_encoder import read_text_states

    (tmp_path / "train.arrow").write_bytes(content)
    with pytest.raises(DataError, match=r"train\.arrow is not an Arrow text-states file"):
        read_text_states(tmp_path / "train.arrow")


def test_text_states_are_read_from_the_mapped_file_not_copied(tmp_path):
    """Several record batches (4,096 rows each): every row a view of the file, none in Arrow's heap."""
    import pyarrow as pa

    from ssu_model.text.text_encoder import read_text_states, write_text_states

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(int(n), 32)).astype(np.float32) for n in rng.integers(0, 6, 9000)]
    ids = [f"u{i}" for i in range(len(arrays))]
    write_text_states(tmp_path / "x.arrow", ids, arrays, 32, "enc", 64)
    before = pa.total_allocated_bytes()
    back, _ = read_text_states(tmp_path / "x.arrow")
    assert pa.total_allocated_bytes() - before < sum(a.nbytes for a in arrays) // 10
    assert list(back) == ids
    assert all(np.array_equal(back[k], a) for k, a in zip(ids, arrays))
    assert not back["u8999"].flags.writeable  # a view of the read-only map


def test_flat_text_states_writer_matches_the_list_writer(tmp_path):
    """text-features writes from one buffer (write_flat_text_states): the same bytes as from a list."""
    from ssu_model.errors import DataError
    from ssu_model.text.text_encoder import write_flat_text_states, write_text_states

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(n, 4)).astype(np.float32) for n in (3, 0, 5, 1)]
    ids = ["a", "b", "c", "d"]
    write_text_states(tmp_path / "list.arrow", ids, arrays, 4, "enc", 64)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])
    write_flat_text_states(tmp_path / "flat.arrow", ids, np.concatenate(arrays), offsets, "enc", 64)
    assert (tmp_path / "flat.arrow").read_bytes() == (tmp_path / "list.arrow").read_bytes()
    with pytest.raises(DataError, match="offsets do not match"):
        write_flat_text_states(tmp_path / "bad.arrow", ids, np.concatenate(arrays), offsets[:-1], "enc", 64)


@pytest.mark.slow
def test_finetune_text_trains_the_encoder(tmp_path):
    """finetune_text: the real MiniLM runs inside the loop and its weights change."""
    from ssu_model.text.subwords import encode_words
    from ssu_model.text.text_encoder import TextEncoder

    ws = make_workspace(tmp_path, sizes=(8, 4, 4), seeds=(0,))
    enc = TextEncoder(None, max_length=128)
    import pyarrow.parquet as pq

    for split in ("train", "valid", "test"):  # a parse map that matches the real tokenizer
        t = pq.read_table(ws / "parse" / f"{split}.parquet")
        starts, ends = [], []
        for words in t.column("words").to_pylist():
            _ids, _m, s, e = encode_words(enc.tokenizer, words, 128)
            starts.append(s)
            ends.append(e)
        t = t.set_column(t.schema.get_field_index("sub_start"), "sub_start", [starts]).set_column(
            t.schema.get_field_index("sub_end"), "sub_end", [ends])
        pq.write_table(t, ws / "parse" / f"{split}.parquet")
    _edit(ws, lambda p: p["train"].update(finetune_text=True, epochs=1, encoder_lr=1e-3))
    r = _invoke(train_args(ws))
    assert r.exit_code == 0, r.output
    ck = torch.load(ws / "models" / "full" / "seed_0.pt", weights_only=True)
    assert ck["model_config"]["text_dim"] == 384
    changed = [k for k, v in ck["encoder_state"].items() if not torch.equal(v, enc.state_dict()[k])]
    assert changed, "the encoder was not trained"


def test_text_encoder_layers_average_the_last_hidden_layers():
    """layers K: each word's state is its sub-words' mean in the mean of the last K hidden layers
    (1: the last layer, as before); K beyond the encoder's depth is one DataError."""
    from ssu_model.errors import DataError
    from ssu_model.text.text_encoder import TextEncoder, collate_encoded

    one, two = TextEncoder(None, layers=1), TextEncoder(None, layers=2)
    encoded = [one.encode(["a", "lovely", "film"]), one.encode(["not", "good"])]
    ids, mask, pool = collate_encoded(encoded, one.pad_id)
    with torch.no_grad():
        hidden = one.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got1, got2 = one(ids, mask, pool), two(ids, mask, pool)
    assert torch.equal(got1, torch.bmm(pool, hidden[-1]))
    assert torch.allclose(got2, torch.bmm(pool, (hidden[-1] + hidden[-2]) / 2), atol=1e-6)
    assert not torch.allclose(got1, got2, atol=1e-3)
    with pytest.raises(DataError, match=r"layers must be in 1\.\.6"):
        TextEncoder(None, layers=7)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["text_features"].update(layers=0), "text_features.layers must be >= 1, got 0"),
    (lambda p: p["variants"].update(bad={"text_features": {"pooling": "max"}}), "unknown param variants.bad.text_features.pooling"),
])
def test_bad_text_features_layers_params_fail_with_one_line(workspace, edit, message):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    edit(params)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    result = _invoke(train_args(workspace))
    assert result.exit_code != 0 and message in result.output, result.output
