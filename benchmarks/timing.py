"""Clock helpers shared by the benchmarks and the `llm-graphs` latency measurement.

``time_call`` times repeated calls (warm-up excluded, device synchronised), ``median`` is the
summary every latency figure uses, and ``timing_record`` is one clock of a latency record: the
per-batch seconds with what is on the clock.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


def synchronize(device: str) -> None:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: str = "cpu") -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (device synchronised)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        fn()
    synchronize(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - t0)
    return out


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def timing_record(what: str, per_batch: Sequence[float], batch_size: int, threads: int, calls_per_batch: int,
                  steps: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One clock: the median over the timed batches of each batch's seconds, with what it covers."""
    rec: dict[str, Any] = {
        "what": what, "seconds_median": median(per_batch), "seconds_min": float(min(per_batch)),
        "seconds_max": float(max(per_batch)), "seconds": [float(v) for v in per_batch],
        "batch_size": int(batch_size), "n_timed_batches": len(per_batch), "threads": int(threads),
        "calls_per_batch": int(calls_per_batch),
    }
    if steps is not None:
        rec["steps_seconds_median"] = {k: float(v) for k, v in steps.items()}
    return rec
