"""`sample`: MMSA layout, determinism, sentence variety, and a learnable non-verbal signal."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ssu_model.data import sample as synth
from ssu_model.data import sentences
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
MMSA_KEYS = {"raw_text", "audio", "vision", "id", "text", "text_bert", "annotations",
             "classification_labels", "regression_labels"}


@pytest.fixture
def params_file(tmp_path) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["sample"]["out"] = str(tmp_path / "sample.pkl")
    raw["sample"]["sizes"] = [20, 8, 10]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _sample(params_file: Path, *args: str):
    return runner.invoke(app, ["sample", "--params", str(params_file), *args])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path):
    with open(path, "rb") as fh:
        return pickle.load(fh)


def test_aligned_layout_matches_mmsa(tmp_path, params_file):
    result = _sample(params_file)
    assert result.exit_code == 0, result.output
    data = _load(tmp_path / "sample.pkl")
    assert set(data) == {"train", "valid", "test"}
    for split, n in zip(synth.SPLITS, (20, 8, 10)):
        s = data[split]
        assert set(s) == MMSA_KEYS  # aligned files carry no *_lengths keys
        assert s["audio"].shape == (n, 50, 5) and s["audio"].dtype == np.float32
        assert s["vision"].shape == (n, 50, 20) and s["vision"].dtype == np.float32
        assert s["text"].shape == (n, 50, 768) and s["text"].dtype == np.float32
        assert s["text_bert"].shape == (n, 3, 50) and s["text_bert"].dtype.kind == "i"
        assert s["regression_labels"].dtype == np.float32
        assert s["raw_text"].dtype.kind == "U" and s["id"].dtype.kind == "U"
        assert all("$_$" in i for i in s["id"])
        y = s["regression_labels"]
        assert (np.abs(y) <= 3).all()
        np.testing.assert_array_equal(
            s["annotations"], np.where(y > 0, "Positive", np.where(y < 0, "Negative", "Neutral"))
        )
        np.testing.assert_array_equal(s["classification_labels"], np.sign(y) + 1)
        # text_bert: [CLS] words [SEP], mask = non-padding, segment ids 0
        ids, mask, seg = s["text_bert"][:, 0], s["text_bert"][:, 1], s["text_bert"][:, 2]
        assert (ids[:, 0] == 101).all() and (mask == (ids != 0)).all() and (seg == 0).all()
        n_words = np.array([len(t.split()) for t in s["raw_text"]])
        np.testing.assert_array_equal(mask.sum(1), np.minimum(n_words, 48) + 2)
    all_ids = np.concatenate([data[s]["id"] for s in synth.SPLITS])
    assert len(set(all_ids)) == len(all_ids)
    videos = [{i.split("$_$")[0] for i in data[s]["id"]} for s in synth.SPLITS]
    assert not (videos[0] & videos[1]) and not (videos[1] & videos[2])  # split by video


def test_unaligned_and_mosei_scale(tmp_path, params_file):
    out = tmp_path / "mosei.pkl"
    result = _sample(params_file, "--scale", "mosei", "--unaligned", "--sizes", "6,3,4", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = _load(out)
    s = data["train"]
    assert set(s) == MMSA_KEYS | {"audio_lengths", "vision_lengths"}
    assert s["audio"].shape == (6, 500, 74) and s["vision"].shape == (6, 500, 35)
    assert s["text"].shape == (6, 50, 768)
    for m in ("audio", "vision"):
        lens = s[f"{m}_lengths"]
        assert ((lens >= 8) & (lens <= 500)).all() and len(set(lens.tolist())) > 1
        pad = np.arange(500)[None, :] >= lens[:, None]
        assert (s[m][pad] == 0).all() and (np.abs(s[m][~pad]) > 0).mean() > 0.99
    mosi = synth.generate(0, (3, 2, 2), aligned=False)["valid"]
    assert mosi["audio"].shape == (2, 375, 5) and mosi["vision"].shape == (2, 500, 20)


def test_mosei_default_sizes():
    assert synth.SCALES["mosei"].sizes == (16326, 1871, 4659)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, params_file):
    a, b, c = tmp_path / "a.pkl", tmp_path / "b.pkl", tmp_path / "c.pkl"
    for out, seed in ((a, "0"), (b, "0"), (c, "1")):
        assert _sample(params_file, "--unaligned", "--out", str(out), "--seed", seed).exit_code == 0
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)


def test_seed_comes_from_base_seeds(tmp_path, params_file):
    raw = yaml.safe_load(params_file.read_text())
    assert _sample(params_file, "--out", str(tmp_path / "x.pkl")).exit_code == 0
    raw["base"]["seeds"] = [7, 8]
    params_file.write_text(yaml.safe_dump(raw))
    assert _sample(params_file, "--out", str(tmp_path / "y.pkl")).exit_code == 0
    assert _sample(params_file, "--out", str(tmp_path / "z.pkl"), "--seed", "7").exit_code == 0
    assert _sha(tmp_path / "x.pkl") != _sha(tmp_path / "y.pkl") == _sha(tmp_path / "z.pkl")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("scale", "imdb", "sample.scale must be one of mosi, mosei"),
        ("sizes", [10, 0, 5], "sample.sizes must be three positive integers"),
        ("neutral_share", 1.5, "sample.neutral_share must be in [0, 1]"),
        ("bogus", 1, "unknown param sample.bogus"),
        ("baseline_std", -0.1, "baseline_std must be a finite number >= 0"),
        ("segment_share", [0.5, 0.2], "segment_share must be [low, high] with 0 < low <= high <= 1"),
        ("segment_share", [0.5], "segment_share must be [low, high]"),
        ("segment_share", [0.0, 0.5], "segment_share must be [low, high]"),
    ],
)
def test_bad_sample_params(tmp_path, params_file, key, value, message):
    raw = yaml.safe_load(params_file.read_text())
    raw["sample"][key] = value
    params_file.write_text(yaml.safe_dump(raw))
    result = _sample(params_file)
    assert result.exit_code == 1 and message in result.stderr
    assert not (tmp_path / "sample.pkl").exists()


def test_bad_sizes_option(params_file):
    result = _sample(params_file, "--sizes", "10,x")
    assert result.exit_code == 1 and "--sizes must be three positive integers" in result.stderr


def test_sentences_have_varied_syntax():
    texts = synth.generate(0, (400, 2, 2))["train"]["raw_text"].tolist()
    joined = " ".join(texts)
    for marker in (" but ", "although ", " not ", "n't ", " because ", "i think ", "really ",
                   "extremely ", "kind of ", " and "):
        assert marker in joined, marker
    assert len(set(texts)) > 0.9 * len(texts)
    assert all(t == t.lower() and t.strip() == t and "  " not in t for t in texts)
    n_words = [len(t.split()) for t in texts]
    assert min(n_words) >= 3 and max(n_words) <= 48


def _sentiment_words(text: str) -> bool:
    words = set(text.split())
    lexicon = {a for a, _ in sentences.POS_ADJ + sentences.NEG_ADJ} | {"liked", "loved", "hated", "like",
               "laugh", "smile", "asleep", "enjoyed", "disliked", "adored", "sick", "leave"}
    return bool(words & lexicon)


def test_neutral_share_and_label_sign_only_in_streams():
    d = synth.generate(0, (600, 2, 2), neutral_share=0.3)["train"]
    neutral = np.array([not _sentiment_words(t) for t in d["raw_text"]])
    assert 0.2 < neutral.mean() < 0.4
    y = d["regression_labels"][neutral]
    # Neutral text, yet clearly signed labels: the sign must come from audio/vision.
    assert (np.abs(y) >= 0.4).mean() > 0.9 and 0.3 < (y > 0).mean() < 0.7


def _pooled(split):
    feats = []
    for m in ("audio", "vision"):
        x = np.nan_to_num(split[m], nan=0.0, posinf=0.0, neginf=0.0)
        feats += [x.mean(1), x.max(1), x.min(1)]
    return np.concatenate(feats, 1)


def test_planted_signal_is_localised_not_a_constant_offset():
    d = synth.generate(0, (300, 2, 2), neutral_share=1.0)["train"]
    y = d["regression_labels"]
    x = np.nan_to_num(d["audio"][:, :, 0])
    peak = np.abs(x - np.median(x, axis=1, keepdims=True)).max(1)
    # The bump covers only a segment: the strongest deviation is far above the median step...
    assert np.corrcoef(peak, np.abs(y))[0, 1] > 0.5
    # ...and the sign of the label is readable from the segment, not from the first steps alone.
    signed = (x - np.median(x, axis=1, keepdims=True)).sum(1)
    assert np.corrcoef(signed, y)[0, 1] > 0.5
    assert abs(np.corrcoef(x[:, :5].mean(1), y)[0, 1]) < np.corrcoef(signed, y)[0, 1]


def test_signal_shape_decides_what_a_mean_readout_sees():
    """The default shape (small baseline, wide segment) puts affect into the mean over time, which
    SSU's mean readouts can use; the harder first design hid it there (only the segment shows it)."""

    def corr_of_time_mean(**kw):
        d = synth.generate(0, (300, 2, 2), neutral_share=1.0, **kw)["train"]
        x = np.nan_to_num(d["audio"][:, :, 0])
        return float(np.corrcoef(x.mean(1), d["regression_labels"])[0, 1])

    easy = corr_of_time_mean()
    hard = corr_of_time_mean(baseline_std=0.6, segment_share=(0.15, 0.35))
    assert easy > 0.75 and hard < 0.6, (easy, hard)
    with pytest.raises(ValueError, match="segment_share"):
        synth.generate(0, (3, 2, 2), segment_share=(0.2, 1.5))


def test_text_plus_streams_beats_text_only():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import Ridge

    d = synth.generate(0, (384, 96, 160))
    vec = CountVectorizer(ngram_range=(1, 2)).fit(d["train"]["raw_text"])

    def mae(use_streams: bool) -> float:
        def feats(s):
            t = vec.transform(s["raw_text"]).toarray()
            return np.concatenate([t, _pooled(s)], 1) if use_streams else t

        def err(model, split):
            return float(np.abs(model.predict(feats(d[split])) - d[split]["regression_labels"]).mean())

        fits = [Ridge(alpha=a).fit(feats(d["train"]), d["train"]["regression_labels"]) for a in (1, 3, 10, 30)]
        best = min(fits, key=lambda m: err(m, "valid"))  # alpha chosen on valid, scored on test
        return err(best, "test")

    text_only, fused = mae(False), mae(True)
    assert fused < text_only - 0.1, (text_only, fused)
