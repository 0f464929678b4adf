"""`features`: every reader on generated fixtures, the bad-input table through the CLI,
the restricted unpickler, atomic outputs and the columnar format."""

from __future__ import annotations

import copy
import csv
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ssu_model.data import sample as synth
from ssu_model.data.features import FeatureSplit, open_splits
from ssu_model.data.label_csv import read_label_csv
from ssu_model.data.mmsa_pickle import read_mmsa_pickle
from ssu_model.data.sources import read_source
from ssu_model.errors import DataError
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
SIZES = (12, 6, 8)


@pytest.fixture(scope="module")
def aligned_data():
    return synth.generate(3, SIZES, aligned=True, nonfinite_share=0.3)


@pytest.fixture(scope="module")
def unaligned_data():
    return synth.generate(4, SIZES, aligned=False, nonfinite_share=0.3)


@pytest.fixture
def params_file(tmp_path) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["path"] = str(tmp_path / "missing.pkl")
    raw["features"]["out"] = str(tmp_path / "features")
    raw["features"]["batch_rows"] = 5  # several record batches even for tiny splits
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _dump(obj, path: Path, protocol: int = 5) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def _features(params_file: Path, source: Path, out: Path):
    return runner.invoke(app, ["features", "--params", str(params_file), "--input", str(source), "--out", str(out)])


def _nonfinite(data, modality):
    return {s: int((~np.isfinite(data[s][modality])).sum()) for s in synth.SPLITS}


# ------------------------------------------------------------------------------------------
# Readers on good inputs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_every_protocol(tmp_path, aligned_data, protocol):
    path = _dump(aligned_data, tmp_path / "aligned_50.pkl", protocol)
    ds = read_mmsa_pickle(path)
    assert ds.kind == "mmsa-pickle" and ds.aligned is True
    for split in synth.SPLITS:
        got, want = ds.splits[split], aligned_data[split]
        assert got.ids == want["id"].tolist()
        assert got.texts == want["raw_text"].tolist()
        np.testing.assert_array_equal(got.labels, want["regression_labels"])
        np.testing.assert_array_equal(got.streams["audio"][0], want["audio"])  # NaN-aware equality
        assert (got.streams["audio"][1] == 50).all() and (got.streams["vision"][1] == 50).all()


def test_object_arrays_and_dev_split_are_accepted(tmp_path, aligned_data):
    data = copy.deepcopy(aligned_data)
    data["dev"] = data.pop("valid")
    for split in data.values():
        split["raw_text"] = np.array(split["raw_text"].tolist(), dtype=object)
        split["id"] = list(split["id"])
    ds = read_mmsa_pickle(_dump(data, tmp_path / "x.pkl", 4))
    assert len(ds.splits["valid"]) == SIZES[1]


def test_features_on_aligned_pickle(tmp_path, params_file, aligned_data):
    src = _dump(aligned_data, tmp_path / "aligned_50.pkl")
    out = tmp_path / "feat"
    result = _features(params_file, src, out)
    assert result.exit_code == 0, result.output
    splits = open_splits(out)
    report = json.loads((out / "report.json").read_text())
    planted = _nonfinite(aligned_data, "audio")
    assert sum(planted.values()) > 0
    for split, fs in splits.items():
        want = aligned_data[split]
        order = np.argsort(want["id"])
        assert fs.ids == sorted(want["id"].tolist())  # rows sorted by id
        assert fs.texts == want["raw_text"][order].tolist()
        np.testing.assert_array_equal(fs.labels, want["regression_labels"][order])
        assert fs.shapes == {"audio": (50, 5), "vision": (50, 20)}
        assert fs.num_batches == -(-len(fs) // 5)
        audio, lens = fs.gather("audio", np.arange(len(fs)))
        assert np.isfinite(audio).all() and (lens == 50).all()
        src_audio = want["audio"][order]
        finite = np.isfinite(src_audio)
        np.testing.assert_array_equal(audio[finite], src_audio[finite])
        assert (audio[~finite] == 0).all()
        assert report["splits"][split]["rows"] == len(want["id"])
        assert report["splits"][split]["nonfinite_replaced"] == {"audio": planted[split], "vision": 0}
    assert report["dims"] == {"audio": 5, "vision": 20}
    assert report["source"] == {"path": str(src), "kind": "mmsa-pickle", "layout": "aligned"}
    assert report["nonfinite_replaced"]["audio"] == sum(planted.values())


def test_features_on_unaligned_pickle_keeps_lengths(tmp_path, params_file, unaligned_data):
    src = _dump(unaligned_data, tmp_path / "unaligned_50.pkl")
    out = tmp_path / "feat"
    assert _features(params_file, src, out).exit_code == 0
    fs = FeatureSplit(out / "train.arrow")
    want = unaligned_data["train"]
    order = np.argsort(want["id"])
    assert fs.shapes == {"audio": (375, 5), "vision": (500, 20)}
    vision, vlen = fs.gather("vision", [0, 3])
    np.testing.assert_array_equal(vlen, want["vision_lengths"][order][[0, 3]])
    np.testing.assert_array_equal(vision, want["vision"][order][[0, 3]])
    row = fs.row(2)
    assert row.id == want["id"][order][2] and row.audio_length == want["audio_lengths"][order][2]
    assert (row.audio[row.audio_length :] == 0).all()  # padding stays as the source had it
    report = json.loads((out / "report.json").read_text())
    assert report["aligned"] is False and report["source"]["layout"] == "unaligned"
    assert report["splits"]["train"]["lengths"]["audio"]["max"] <= 375


def test_lengths_beyond_the_padded_size_are_clipped_and_counted(tmp_path, params_file, unaligned_data):
    data = copy.deepcopy(unaligned_data)
    data["test"]["audio_lengths"][:2] = 400
    out = tmp_path / "feat"
    assert _features(params_file, _dump(data, tmp_path / "u.pkl"), out).exit_code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["splits"]["test"]["lengths_clipped"] == {"audio": 2}
    assert FeatureSplit(out / "test.arrow").gather("audio", [0, 1, 2])[1].max() <= 375


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _mmsa_rows(n_per_split=(5, 3, 4), dev_name="valid"):
    rows = []
    labels = [-3, -1.4, 0.0, 0.6, 2.8]
    for split, n in zip(("train", dev_name, "test"), n_per_split):
        for i in range(n):
            label = labels[(i + len(rows)) % len(labels)]
            rows.append({
                "video_id": f"vid_{split}", "clip_id": str(i + 1), "text": f"the {split} movie number {i} was fine",
                "label": label, "label_T": label, "label_A": label, "label_V": label,
                "annotation": "Positive" if label > 0 else "Negative" if label < 0 else "Neutral",
                "mode": split,
            })
    return rows


MOSI_HEADER = ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]
MOSEI_HEADER = ["video_id", "clip_id", "text", "label", "annotation", "mode", "label_T", "label_A", "label_V"]


@pytest.mark.parametrize("header", [MOSI_HEADER, MOSEI_HEADER], ids=["mosi-order", "mosei-order"])
def test_mmsa_label_csv_layouts(tmp_path, params_file, header):
    rows = _mmsa_rows(dev_name="valid" if header is MOSI_HEADER else "dev")
    src = _write_csv(tmp_path / "label.csv", header, rows)
    ds = read_label_csv(src)
    assert ds.kind == "label-csv" and ds.layout == "mmsa" and ds.aligned is None
    assert [len(ds.splits[s]) for s in synth.SPLITS] == [5, 3, 4]
    assert ds.splits["train"].ids[0] == "vid_train$_$1"
    out = tmp_path / "feat"
    result = _features(params_file, src, out)
    assert result.exit_code == 0, result.output
    fs = FeatureSplit(out / "valid.arrow")
    assert not fs.has_audio and not fs.has_vision and len(fs) == 3
    assert fs.texts[0] == rows[5]["text"]
    np.testing.assert_allclose(fs.labels, [r["label"] for r in rows[5:8]])
    report = json.loads((out / "report.json").read_text())
    assert report["modalities"] == ["text"] and report["dims"] == {}
    assert report["source"]["kind"] == "label-csv"


def test_id_layout_csv(tmp_path):
    rows = [{"id": f"v{i}_{i}", "text": f"sentence {i}", "label": i / 10, "mode": m}
            for i, m in enumerate(["train", "train", "dev", "test", "test"])]
    ds = read_source(_write_csv(tmp_path / "labels.csv", ["id", "text", "label", "mode"], rows))
    assert ds.layout == "id"
    assert ds.splits["valid"].ids == ["v2_2"] and ds.splits["test"].texts == ["sentence 3", "sentence 4"]


def test_label_csv_bom_blank_lines_quoting_and_nan_text(tmp_path):
    """A BOM is accepted, blank lines (and all-empty ones) are skipped, quoted fields may hold
    commas and newlines, every value is read as a string: the text "nan" stays text."""
    src = tmp_path / "labels.csv"
    src.write_text("\ufeffid,text,label,mode\na,nan,1,train\n\n,,,\nb,\"multi\nline, comma\",-0.4,dev\n"
                   "c,NA,0,test\n", encoding="utf-8")
    ds = read_label_csv(src)
    assert ds.splits["train"].texts == ["nan"] and ds.splits["test"].texts == ["NA"]
    assert ds.splits["valid"].ids == ["b"] and ds.splits["valid"].texts == ["multi\nline, comma"]
    assert ds.splits["valid"].labels.tolist() == [np.float32(-0.4)]


@pytest.mark.parametrize("line, message", [("b,bad,-1", "line 3 has 3 fields, header has 4"),
                                           ("b,bad,-1,valid,extra", "line 3 has 5 fields, header has 4")])
def test_label_csv_line_with_wrong_field_count(tmp_path, line, message):
    src = tmp_path / "labels.csv"
    src.write_text(f"id,text,label,mode\na,good,1,train\n{line}\nc,meh,0,test\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)):
        read_label_csv(src)


def test_real_mosi_label_csv(tmp_path, params_file, mosi_csv):
    ds = read_label_csv(mosi_csv)
    assert [len(ds.splits[s]) for s in synth.SPLITS] == [1281, 229, 685]
    out = tmp_path / "feat"
    result = _features(params_file, mosi_csv, out)
    assert result.exit_code == 0, result.output
    splits = open_splits(out)
    assert splits["test"].ids == sorted(splits["test"].ids)
    assert "03bSnISJMiM_1" in splits["train"].ids
    assert json.loads((out / "report.json").read_text())["splits"]["valid"]["rows"] == 229


def test_source_type_is_detected_by_content(tmp_path, aligned_data):
    pkl = _dump(aligned_data, tmp_path / "features.bin")
    assert read_source(pkl).kind == "mmsa-pickle"
    rows = [{"id": str(i), "text": "ok then", "label": 0, "mode": m} for i, m in enumerate(["train", "valid", "test"])]
    txt = _write_csv(tmp_path / "labels.txt", ["id", "text", "label", "mode"], rows)
    assert read_source(txt).kind == "label-csv"


def test_record_batches_are_read_one_at_a_time(tmp_path, params_file, unaligned_data):
    out = tmp_path / "feat"
    assert _features(params_file, _dump(unaligned_data, tmp_path / "u.pkl"), out).exit_code == 0
    fs = FeatureSplit(out / "train.arrow")
    values, lengths = fs.sequence_batch("audio", 1)
    assert values.shape == (5, 375, 5) and not values.flags.owndata  # a view of the mapped file
    assert lengths.shape == (5,)


# ------------------------------------------------------------------------------------------
# The bad-input table
# ------------------------------------------------------------------------------------------


def _mutate(fn):
    def build(tmp_path: Path, base) -> Path:
        data = copy.deepcopy(base)
        fn(data)
        return _dump(data, tmp_path / "bad.pkl")

    return build


def _text_file(name: str, content: bytes):
    def build(tmp_path: Path, base) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return build


def _csv_case(header, mutate=lambda rows: None):
    def build(tmp_path: Path, base) -> Path:
        rows = _mmsa_rows()
        mutate(rows)
        rows = [{k: r.get(k, "") for k in header} for r in rows]
        return _write_csv(tmp_path / "label.csv", header, rows)

    return build


def _set(split, key, value_fn):
    def fn(data):
        data[split][key] = value_fn(data[split])

    return _mutate(fn)


def _row_set(i, key, value):
    def fn(rows):
        rows[i][key] = value

    return fn


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


BAD_INPUTS = [
    ("missing file", lambda tmp, base: tmp / "nope.pkl", "input file not found"),
    ("not a pickle (.pkl garbage)", _text_file("x.pkl", b"hello, this is not a pickle"), "is not a valid pickle"),
    ("truncated pickle", lambda tmp, base: _text_file("t.pkl", pickle.dumps(base, protocol=5)[:5000])(tmp, base),
     "is not a valid pickle"),
    ("neither pickle nor csv", _text_file("x.bin", b"\x00\x01binary junk"), "neither an MMSA pickle nor a label CSV"),
    ("top level not a dict", lambda tmp, base: _dump([1, 2], tmp / "l.pkl"), "top level must be a dict"),
    ("missing split", _mutate(lambda d: d.pop("test")), "missing split 'test'"),
    ("missing key", _mutate(lambda d: d["valid"].pop("vision")), "split 'valid' is missing key 'vision'"),
    ("mismatched N", _set("train", "vision", lambda s: s["vision"][:-1]), "mismatched N across keys"),
    ("mismatched N (labels)", _set("test", "regression_labels", lambda s: s["regression_labels"][:3]),
     "'regression_labels' has 3 rows"),
    ("wrong rank", _set("train", "audio", lambda s: s["audio"][:, :, 0]), "'audio' must have rank 3"),
    ("dims differ between splits", _set("test", "vision", lambda s: s["vision"][:, :, :7]),
     "vision feature dims differ between splits"),
    ("label out of range", _set("valid", "regression_labels", lambda s: s["regression_labels"] * 0 + 3.5),
     "regression_labels out of [-3, 3]"),
    ("label NaN", _set("valid", "regression_labels", lambda s: np.where(np.arange(len(s["id"])) == 1, np.nan, 0)),
     "out of [-3, 3]: nan"),
    ("non-numeric labels", _set("train", "regression_labels", lambda s: np.array(["pos"] * len(s["id"]))),
     "regression_labels are not numeric"),
    ("duplicate ids within a split", _set("train", "id", lambda s: np.array([s["id"][0]] * len(s["id"]))),
     "duplicate id"),
    ("duplicate ids across splits", _set("test", "id", lambda s: np.array(["syn00000$_$1"] + s["id"][1:].tolist())),
     "in splits 'train' and 'test'"),
    ("empty text", _set("train", "raw_text", lambda s: np.array(["  "] + s["raw_text"][1:].tolist())),
     "empty raw_text"),
    ("non-string text", _set("train", "raw_text", lambda s: np.array([7] + s["raw_text"][1:].tolist(), dtype=object)),
     "is not a string"),
    ("non-numeric audio", _set("train", "audio", lambda s: s["audio"].astype(str)), "'audio' is not numeric"),
    ("negative length", _set("train", "audio_lengths", lambda s: np.full(len(s["id"]), -1)),
     "'audio_lengths' has a negative length"),
    ("malicious pickle", lambda tmp, base: _dump({"train": Evil()}, tmp / "evil.pkl"),
     "refusing to unpickle global 'posix.system'"),
    ("csv missing column", _csv_case(["video_id", "clip_id", "text", "label"]), "missing column(s): mode"),
    ("csv missing id columns", _csv_case(["text", "label", "mode"]), "missing column(s): id"),
    ("csv unknown mode", _csv_case(MOSI_HEADER, _row_set(2, "mode", "training")), "unknown mode value 'training'"),
    ("csv non-numeric label", _csv_case(MOSI_HEADER, _row_set(1, "label", "high")), "non-numeric label 'high'"),
    ("csv label out of range", _csv_case(MOSI_HEADER, _row_set(1, "label", "-4")), "label '-4' out of [-3, 3]"),
    ("csv empty text", _csv_case(MOSI_HEADER, _row_set(0, "text", " ")), "empty text on line 2"),
    ("csv duplicate id", _csv_case(MOSI_HEADER, _row_set(1, "clip_id", "1")), "duplicate id 'vid_train$_$1'"),
    ("csv missing split", _csv_case(MOSI_HEADER, lambda rows: [r.update(mode="train") for r in rows if r["mode"] == "test"]),
     "missing split 'test'"),
]


@pytest.mark.parametrize("name, build, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_1_with_one_line_and_leaves_no_output(
    tmp_path, params_file, unaligned_data, name, build, message, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    src = build(tmp_path, unaligned_data)
    out = tmp_path / "features"
    out.mkdir()
    (out / "previous.txt").write_text("an earlier good run")
    result = _features(params_file, src, out)
    assert result.exit_code == 1, result.output
    # Progress lines may precede it; the failure is exactly one line, the last one.
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert message in errors[0]
    # The earlier output is untouched and no temporary directory is left behind.
    assert sorted(p.name for p in out.iterdir()) == ["previous.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_malicious_pickle_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _dump({"train": {"raw_text": Evil()}}, tmp_path / "evil.pkl", protocol=2)
    with pytest.raises(DataError, match="refusing to unpickle"):
        read_mmsa_pickle(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_codecs_encode_is_only_admitted_for_latin1(tmp_path):
    # A protocol-2 pickle of bytes uses _codecs.encode(text, 'latin1'); other codecs are refused.
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x06\x00\x00\x00rot_13q\x02\x86q\x03Rq\x04."
    path = tmp_path / "codec.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match="only admitted for latin1 text"):
        read_mmsa_pickle(path)


def test_bad_features_param_names_the_key(tmp_path, params_file, aligned_data):
    raw = yaml.safe_load(params_file.read_text())
    raw["features"]["batch_rows"] = 0
    params_file.write_text(yaml.safe_dump(raw))
    result = _features(params_file, _dump(aligned_data, tmp_path / "a.pkl"), tmp_path / "f")
    assert result.exit_code == 1 and "features.batch_rows must be at least 1" in result.stderr
    assert not (tmp_path / "f").exists()


def test_features_defaults_come_from_params(tmp_path, params_file, aligned_data):
    raw = yaml.safe_load(params_file.read_text())
    raw["data"]["path"] = str(_dump(aligned_data, tmp_path / "a.pkl"))
    params_file.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["features", "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    assert len(FeatureSplit(Path(raw["features"]["out"]) / "test.arrow")) == SIZES[2]


def test_real_mosei_file_through_the_reader(mosei_csv):
    """The MOSEI label CSV as it is (mode `valid`, video_id/clip_id): the official folds, MMSA ids,
    no video in two splits. Skips when ../shared/data does not hold the file."""
    ds = read_label_csv(mosei_csv)
    assert ds.layout == "mmsa"
    assert [len(ds.splits[s]) for s in synth.SPLITS] == [16274, 1861, 4653]
    videos = {s: {uid.split("$_$")[0] for uid in ds.splits[s].ids} for s in synth.SPLITS}
    assert all("$_$" in uid for s in synth.SPLITS for uid in ds.splits[s].ids)
    assert sum(len(v) for v in videos.values()) == len(set().union(*videos.values())) == 3217
    labels = np.concatenate([ds.splits[s].labels for s in synth.SPLITS])
    assert labels.min() >= -3 and labels.max() <= 3
    assert all(t.strip() for s in synth.SPLITS for t in ds.splits[s].texts)
