"""Data-parallel training across processes (``torch.distributed``) for ``training.fit``.

A launcher (``torchrun``) starts one process per device and gives each its place in the
job: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address ``MASTER_ADDR`` /
``MASTER_PORT``. This module turns those values into a process group and a ``DistContext``:
the rank, the world size, and the few collectives the training loop needs (wrap a module in
``DistributedDataParallel``, sum numbers across ranks, gather or broadcast small Python
objects, barrier). ``fit`` and ``predict`` take the context as ``dist``; without one they are
plain single-process code, and a world of size 1 never creates a process group.

- ``rendezvous_from_env(environ)``: the launcher's variables (the mapping is passed in, so
  nothing here reads the process environment) -> ``Rendezvous`` or None for a plain run.
- ``init_distributed(rendezvous, device, backend, timeout_s)``: the process group (gloo on
  CPU, NCCL on CUDA unless told otherwise) -> ``DistContext``. Every collective fails after
  ``timeout_s`` instead of waiting forever for a peer that died.
- ``teardown()``: destroys the process group if there is one.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

BACKENDS = ("auto", "gloo", "nccl")
# what init_process_group's env:// rendezvous reads, besides RANK and WORLD_SIZE
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Rendezvous:
    """This process's place in the job, as the launcher gave it."""

    rank: int  # 0 .. world_size - 1, across all nodes
    world_size: int  # processes in the job (nodes x processes per node)
    local_rank: int  # index of this process on its node (= its GPU index)


def _int_var(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name)
    if raw is None:
        raise ValueError(f"WORLD_SIZE={environ.get('WORLD_SIZE')} is set but {name} is not: "
                         "start multi-process training with torchrun (see README, Scaling out)")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def rendezvous_from_env(environ: Mapping[str, str]) -> Rendezvous | None:
    """torchrun's variables -> ``Rendezvous``; None when ``WORLD_SIZE`` is absent or 1.

    Raises ``ValueError`` (one line naming the variable) when ``WORLD_SIZE`` > 1 comes without
    the rest of the rendezvous (``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or
    with values out of range."""
    if environ.get("WORLD_SIZE") is None:
        return None
    world_size = _int_var(environ, "WORLD_SIZE")
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {world_size}")
    if world_size == 1:
        return None
    rank = _int_var(environ, "RANK")
    local_rank = _int_var(environ, "LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in 0..{world_size - 1} (WORLD_SIZE={world_size}), got {rank}")
    if local_rank < 0:
        raise ValueError(f"LOCAL_RANK must be >= 0, got {local_rank}")
    for name in RENDEZVOUS_VARS:
        if not environ.get(name):
            raise ValueError(f"WORLD_SIZE={world_size} is set but {name} is not: start multi-process "
                             "training with torchrun (see README, Scaling out)")
    return Rendezvous(rank=rank, world_size=world_size, local_rank=local_rank)


def resolve_backend(backend: str, device: str) -> str:
    """'auto' -> NCCL for CUDA devices, gloo for CPU; a backend that cannot serve the device
    is a ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown distributed backend {backend!r} (one of {', '.join(BACKENDS)})")
    cuda = device.startswith("cuda")
    if backend == "auto":
        return "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        raise ValueError("the nccl backend needs CUDA devices; training runs on cpu (use gloo)")
    return backend


@dataclass
class DistContext:
    """A joined process group: who this process is and the collectives ``fit`` uses.

    Every method is a collective: all ranks call it, in the same order."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "gloo" | "nccl"
    device: str  # this rank's device: "cpu" or "cuda:<local_rank>"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes outputs and logs."""
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in ``DistributedDataParallel``: gradients are averaged across ranks in
        backward; the parameters start from rank 0's. The model has no buffers that training
        changes, so none are broadcast in forward. Parameters that get no gradient in a step
        keep none on every rank (as in a single process: AdamW skips them)."""
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        # torch >= 2.12 renamed the switch (and deprecates the old name)
        no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel.__init__).parameters else "broadcast_buffers")
        # find_unused_parameters: some parameters get no gradient in some runs (text_only never
        # builds audio/vision graphs, so the threshold's lambda is unused); DDP must not wait for them
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True, **{no_sync: False})

    def _tensor_device(self) -> str:
        return self.device if self.backend == "nccl" else "cpu"

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over ranks (float64)."""
        import torch.distributed as tdist

        t = torch.tensor(list(values), dtype=torch.float64, device=self._tensor_device())
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return [float(v) for v in t.cpu().tolist()]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        import torch.distributed as tdist

        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        import torch.distributed as tdist

        box = [obj]
        tdist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        import torch.distributed as tdist

        if self.backend == "nccl":
            tdist.barrier(device_ids=[torch.device(self.device).index])
        else:
            tdist.barrier()

    def rank_seed(self, seed: int) -> int:
        """A seed for this rank's own random stream (dropout, augmentation) derived from
        (``seed``, rank): ranks see different examples and should not share dropout masks."""
        import numpy as np

        return int(np.random.SeedSequence([int(seed), self.rank]).generate_state(1, dtype=np.uint64)[0]
                   % (2**63 - 1))


def init_distributed(rendezvous: Rendezvous, device: str, backend: str = "auto",
                     timeout_s: float = 600.0) -> DistContext:
    """Join the process group through the env:// rendezvous (``MASTER_ADDR`` / ``MASTER_PORT``).

    ``device`` is "cpu" or "cuda"; on CUDA each process takes GPU ``local_rank``. A collective
    that waits longer than ``timeout_s`` (a peer died or hangs) raises instead of blocking.
    ``ValueError`` for a bad backend, timeout or GPU count; ``RuntimeError`` when the group
    cannot be formed."""
    import torch.distributed as tdist

    if not tdist.is_available():
        raise ValueError("this torch build has no torch.distributed")
    name = resolve_backend(backend, device)
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"the collective timeout must be > 0 seconds, got {timeout_s}")
    if device.startswith("cuda"):
        count = torch.cuda.device_count()
        if rendezvous.local_rank >= count:
            raise ValueError(f"LOCAL_RANK {rendezvous.local_rank} but this node has {count} CUDA device(s): "
                             "start at most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(rendezvous.local_rank)
        device = f"cuda:{rendezvous.local_rank}"
    if name == "gloo" and not tdist.is_gloo_available():
        raise ValueError("this torch build has no gloo backend")
    if name == "nccl" and not tdist.is_nccl_available():
        raise ValueError("this torch build has no nccl backend")
    tdist.init_process_group(name, init_method="env://", rank=rendezvous.rank,
                             world_size=rendezvous.world_size,
                             timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rendezvous.rank, world_size=rendezvous.world_size,
                       local_rank=rendezvous.local_rank, backend=name, device=device)


def teardown() -> None:
    """Destroy the process group (no-op when none exists)."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
