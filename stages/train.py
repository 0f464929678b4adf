"""Stage `train` (placeholder until its issue lands)."""

from __future__ import annotations

from stages.common import fail, stage_command

SECTIONS: tuple[str, ...] = ()


@stage_command
def main() -> None:
    """Not built yet."""
    fail("stage 'train' is not implemented yet")
