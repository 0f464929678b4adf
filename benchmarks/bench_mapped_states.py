"""What dropping the mapped text states' pages after each batch costs, and what it saves.

`train` reads each batch's word states from the memory-mapped text-states file and, since
a156c6a, calls ``drop_mapped_state_pages()`` after every optimiser step. This times the reading
side of an epoch alone: ``collate`` of the records that ``build_records``-style views give, in
the random batches of ``--batch-size`` that ``train`` draws (a new permutation per epoch), with
and without the drop, one side after the other in one process (a drop unmaps every page of the
file, so the sides cannot alternate: without it, epochs after the first find the pages
resident). It reports seconds per epoch (median over ``--rounds``) and the
file's resident pages at the end of an epoch and at their peak (``/proc/self/smaps``, Linux).
The model's forward and backward are off this clock: they do not change with the drop, and a
real epoch (mosei-mpnet, 1 thread) takes ~50-70 s, next to which the difference here stands.

    python benchmarks/bench_mapped_states.py --states pipelines/mosei-mpnet/data/text_features/train.arrow
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def mapped_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (tests/test_train.py reads it too)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            inside = line.endswith(str(path))
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


def one_epoch(records, batch_size: int, seed: int, drop, path: Path) -> tuple[float, float, float]:
    """(seconds, peak mapped MiB sampled every 50 batches, mapped MiB at the end)."""
    from ssu_model.data.batching import collate

    order = np.random.default_rng(seed).permutation(len(records))
    peak = 0.0
    t0 = time.perf_counter()
    for k, start in enumerate(range(0, len(order), batch_size)):
        collate([records[i] for i in order[start:start + batch_size]])
        if drop is not None:
            drop()
        if k % 50 == 0:
            peak = max(peak, mapped_rss_kib(path) / 1024)
    seconds = time.perf_counter() - t0
    end = mapped_rss_kib(path) / 1024
    return seconds, max(peak, end), end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", required=True, help="a text-states file ({split}.arrow of text-features)")
    ap.add_argument("--batch-size", type=int, default=32, help="train.batch_size (mosei-mpnet: 32)")
    ap.add_argument("--rounds", type=int, default=5, help="epochs per side")
    args = ap.parse_args()
    from ssu_model.data.batching import UtteranceRecord
    from ssu_model.text.text_encoder import drop_mapped_state_pages, read_text_states

    torch.set_num_threads(1)  # the pipelines' train.threads
    path = Path(args.states).resolve()
    states, _meta = read_text_states(path)
    records = [UtteranceRecord(word_states=s, heads=np.zeros(len(s), np.int64), deps=[0] * len(s), audio=None,
                               vision=None, label=0.0) for s in states.values() if len(s)]
    sides = {"pages kept (before a156c6a)": None, "pages dropped per batch": drop_mapped_state_pages}
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
    for name, drop in sides.items():  # one side after the other: a drop unmaps the other side's pages too
        drop_mapped_state_pages()  # each side starts with no pages resident (the page cache warm)
        for r in range(args.rounds):
            rows[name].append(one_epoch(records, args.batch_size, r, drop, path))
    print(f"{path.name}: {len(records)} utterances, {path.stat().st_size / 2**20:.0f} MiB, batches of "
          f"{args.batch_size}, {args.rounds} rounds (median)\n")
    print("| side | s / epoch (reading only) | mapped MiB, peak | mapped MiB, epoch end |")
    print("|---|---:|---:|---:|")
    for name, vals in rows.items():
        s, peak, end = (statistics.median(v[i] for v in vals) for i in range(3))
        print(f"| {name} | {s:.2f} | {peak:.0f} | {end:.0f} |")


if __name__ == "__main__":
    main()
