"""A stage's work under ``torchrun``: join the process group, run, leave it, with every failure
as one error line that names the rank (`train` uses it; ``WORLD_SIZE`` > 1).

A rank whose peer failed (the collective breaks, or torchrun sends SIGTERM) fails too; rank 0's
temporary output folder is removed on the way out by the caller's ``atomic_dir``.
"""

from __future__ import annotations

import re
import sys
import warnings

from ssu_model.errors import DataError
from stages.common import fail
from stages.errors import StageError


def _collective_failure(exc: BaseException) -> bool:
    """A failed or timed-out collective (a peer died or hangs), as gloo/NCCL report it."""
    import torch.distributed as tdist

    dist_error = getattr(tdist, "DistError", ())
    return isinstance(exc, dist_error) or (
        isinstance(exc, RuntimeError) and re.search(r"gloo|nccl|processgroup", str(exc), re.IGNORECASE) is not None)


def _first_line(exc: BaseException) -> str:
    """The first sentence of an error message, without gloo's source-file prefix."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = re.sub(r"^\[[^\]]*\]\s*", "", line)
    return re.split(r"(?<=\.)\s", line, maxsplit=1)[0]


def run_distributed(rendezvous, device: str, backend: str, timeout_s: float, run) -> None:
    """Join the process group, call ``run(device=..., dist=...)``, leave it. Any failure becomes one
    error line naming this rank; a rank whose peer failed (the collective breaks, or torchrun sends
    SIGTERM) fails too, and rank 0's temporary model directory is removed on the way out
    (``atomic_dir``)."""
    import signal

    from ssu_model.train.distributed import init_distributed, teardown

    where = f"rank {rendezvous.rank} of {rendezvous.world_size}"

    def on_sigterm(signum, frame) -> None:
        if sys.exc_info()[1] is not None:  # already failing: let the clean-up finish
            return
        raise StageError(f"{where}: stopped by the launcher (another rank failed or the run was cancelled)")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    joined = failed = False
    try:
        try:
            ctx = init_distributed(rendezvous, device, backend, timeout_s)
        except ValueError as exc:
            fail(f"{where}: {exc}")
        except RuntimeError as exc:
            fail(f"{where}: could not join the process group: {_first_line(exc)}")
        joined = True
        if not ctx.is_main:  # rank 0 reports what every rank would: the others stay silent
            warnings.simplefilter("ignore")
        try:
            run(device=ctx.device, dist=ctx)
        except (StageError, DataError) as exc:
            if str(exc).startswith(where):
                raise
            raise type(exc)(f"{where}: {exc}") from None
        except Exception as exc:
            if not _collective_failure(exc):
                raise
            fail(f"{where}: lost contact with another rank, which failed or stopped answering "
                 f"({_first_line(exc)}); torchrun's summary names the rank that failed first")
    except BaseException:
        failed = True
        raise
    finally:
        # a rank that failed after joining is on its way out: torchrun's SIGTERM (sent when it sees
        # the other rank fail) must not cut its error line short, and the process group is left to
        # the exit (destroying a group whose peer died can block, with NCCL)
        signal.signal(signal.SIGTERM, signal.SIG_IGN if (joined and failed) else previous)
        if not failed:
            teardown()
