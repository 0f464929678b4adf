"""Seconds per training epoch and peak RSS of SSU training with a frozen encoder.

Synthetic inputs at real scales: word states (frozen-encoder output, 384-d), random
dependency trees, audio/vision streams (MOSI A5/V20, MOSEI A74/V35), aligned (50 steps) or
unaligned (MOSEI 500/500). Needs torch + torch_geometric only (no spaCy, no DVC), so it runs
on a bare GPU image:

    python benchmarks/bench_train.py                       # the default table on CPU
    python benchmarks/bench_train.py --device cuda         # the same on a GPU
    python benchmarks/bench_train.py --cases mosi --epochs 1 --hidden 128 --max-nodes 64

Each case trains ``--epochs`` epochs (after one warm-up batch) and prints s/epoch (median
over the epochs), utterances/s, the valid-pass time and the process's peak RSS (ru_maxrss;
cumulative over the cases run before it in this process: run one case per process for exact
per-case figures).

Data-parallel mode (``--ddp``): the same measurement through ``fit(dist=...)``, the code path
`train` takes under torchrun (DistributedDataParallel, DistributedSampler, sharded validation);
``--batch-size`` stays the global batch, s/epoch and utt/s are for the whole job, rank 0 prints:

    torchrun --standalone --nproc_per_node 2 benchmarks/bench_train.py --ddp --cases mosei --limit 2048 --epochs 3 --threads 1
    python benchmarks/bench_train.py --ddp --device cuda     # world size 1 on one GPU (NCCL), no torchrun
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CASES = {
    # name: (n_train, audio_dim, vision_dim, audio_len, vision_len)
    "mosi": (1284, 5, 20, 50, 50),
    "mosei": (16326, 74, 35, 50, 50),
    "mosei-unaligned": (16326, 74, 35, 500, 500),
}


def make_records(n, a_dim, v_dim, a_len, v_len, text_dim, seed=0):
    from ssu_model.data.batching import UtteranceRecord

    rng = np.random.default_rng(seed)
    recs = []
    for _ in range(n):
        w = int(rng.integers(4, 30))
        heads = np.array([0] + [int(rng.integers(0, i)) for i in range(1, w)])
        recs.append(UtteranceRecord(
            word_states=rng.standard_normal((w, text_dim), dtype=np.float32),
            heads=heads, deps=rng.integers(1, 46, w).tolist(),
            audio=rng.standard_normal((a_len, a_dim), dtype=np.float32),
            vision=rng.standard_normal((v_len, v_dim), dtype=np.float32),
            label=float(rng.uniform(-3, 3)),
        ))
    return recs


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="mosi,mosei,mosei-unaligned", help="comma list of " + ",".join(CASES))
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64, help="model.hidden (params.yaml default 64; paper 128)")
    ap.add_argument("--max-nodes", type=int, default=16, help="model.max_nodes (params.yaml default 16)")
    ap.add_argument("--max-edges-per-node", type=int, default=8)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0")), help="0 = torch default")
    ap.add_argument("--limit", type=int, default=0, help="train on at most this many utterances (0 = full scale)")
    ap.add_argument("--ddp", action="store_true",
                    help="train through fit(dist=...) (DDP); under torchrun, or alone as a world of size 1")
    args = ap.parse_args()

    from ssu_model.ssu.model import SSU, SSUConfig
    from ssu_model.train.config import TrainConfig
    from ssu_model.train.loop import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA device is available")
    dist = join_process_group(args.device) if args.ddp else None
    device = dist.device if dist is not None else args.device
    say = print if dist is None or dist.is_main else (lambda *a, **k: None)
    procs = dist.world_size if dist is not None else 1
    dev_name = torch.cuda.get_device_name(device) if args.device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    say(f"# bench_train: device {dev_name}, torch {torch.__version__}, batch {args.batch_size} (global), "
        f"hidden {args.hidden}, max_nodes {args.max_nodes}, max_edges_per_node {args.max_edges_per_node}, "
        + (f"DDP ({dist.backend}), {procs} process(es)" if dist is not None else "single process (no DDP)"))
    say(f"{'case':<18}{'procs':>6}{'n_train':>8}{'s/epoch':>10}{'utt/s':>9}{'valid s':>9}{'peak RSS MiB':>14}"
        f"{'peak GPU MiB':>14}")
    for name in args.cases.split(","):
        n, a_dim, v_dim, a_len, v_len = CASES[name]
        if args.limit:
            n = min(n, args.limit)
        train = [dataclasses.replace(r, id=str(i)) for i, r in enumerate(make_records(n, a_dim, v_dim, a_len, v_len, 384))]
        valid = train[: min(256, n)]
        cfg = SSUConfig(text_dim=384, audio_dim=a_dim, vision_dim=v_dim, hidden=args.hidden,
                        max_nodes=args.max_nodes, max_edges_per_node=args.max_edges_per_node)
        torch.manual_seed(0)
        model = SSU(cfg)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        last = [time.perf_counter()]

        def on_epoch(epoch, row):
            if args.device == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        # warm-up: one tiny fit (allocations, lazy init) not counted
        fit(model, train[:args.batch_size], valid[:8], TrainConfig(epochs=1, batch_size=args.batch_size), 0,
            device, dist=dist)
        t_valid = time.perf_counter()
        from ssu_model.train.loop import predict

        predict(model, valid, 128, device, dist=dist)
        t_valid = time.perf_counter() - t_valid
        last[0] = time.perf_counter()
        fit(model, train, valid[:8], TrainConfig(epochs=args.epochs, patience=args.epochs + 1,
                                                 batch_size=args.batch_size), 0, device, callback=on_epoch,
            dist=dist)
        spe = float(np.median(times))
        gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else float("nan")
        say(f"{name:<18}{procs:>6}{n:>8}{spe:>10.1f}{n / spe:>9.0f}{t_valid * len(train) / len(valid):>9.1f}"
            f"{peak_rss_mib():>14.0f}{gpu:>14.0f}", flush=True)
    if dist is not None:
        from ssu_model.train.distributed import teardown

        teardown()


def join_process_group(device: str):
    """A DistContext from torchrun's variables, or a world of size 1 on this machine without them."""
    from ssu_model.train.distributed import Rendezvous, init_distributed, rendezvous_from_env

    try:
        rendezvous = rendezvous_from_env(os.environ)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    if rendezvous is None:  # no torchrun, or torchrun with one process: a group of one
        import socket

        if "MASTER_PORT" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        rendezvous = Rendezvous(rank=0, world_size=1, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    return init_distributed(rendezvous, device)


if __name__ == "__main__":
    main()
