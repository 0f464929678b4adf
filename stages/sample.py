"""Stage `sample`: write the embedded synthetic dataset as an MMSA-layout pickle.

Deterministic: the pickle is a pure function of `base.seeds[0]` and the `sample` section
(same params -> byte-identical file). See `ssu_model.data.sample` for the content and
docs/data.md for the layout.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer

from stages.common import atomic_file, fail, log, stage_command
from stages.errors import ParamError
from stages.params import BaseParams, load_params, load_section

SECTIONS: tuple[str, ...] = ("base", "sample")
SCALES = ("mosi", "mosei")


@dataclasses.dataclass(frozen=True)
class SampleParams:
    """`sample`: the synthetic MMSA-layout dataset."""

    out: str  # path of the pickle to write (data.path usually points here)
    scale: str  # mosi: A5/V20, split sizes from `sizes`; mosei: A74/V35, MOSEI's 16326/1871/4659
    aligned: bool  # true: text/audio/vision 50/50/50 steps; false: 50/375/500 (mosi), 50/500/500 (mosei)
    sizes: tuple[int, ...]  # train, valid, test utterances at scale mosi
    neutral_share: float  # share of utterances whose text is neutral (sign only in audio/vision)
    nonfinite_share: float  # share of utterances with one -inf/NaN planted in audio (as real MOSI)
    baseline_std: float  # std of the per-utterance baseline offset of every audio/vision dim
    segment_share: tuple[float, ...]  # [low, high]: width of the planted segment, share of the stream

    def __post_init__(self) -> None:
        if not self.out:
            raise ParamError("out must not be empty")
        if self.scale not in SCALES:
            raise ParamError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if len(self.sizes) != 3 or any(s < 1 for s in self.sizes):
            raise ParamError("sizes must be three positive integers (train, valid, test)")
        if not 0.0 <= self.neutral_share <= 1.0:
            raise ParamError("neutral_share must be in [0, 1]")
        if not 0.0 <= self.nonfinite_share <= 1.0:
            raise ParamError("nonfinite_share must be in [0, 1]")
        from ssu_model.data.sample import check_signal_shape  # numpy only: cheap

        try:
            check_signal_shape(self.baseline_std, self.segment_share)
        except ValueError as exc:
            raise ParamError(str(exc)) from None


def _parse_sizes(text: str) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or any(s < 1 for s in sizes):
        fail(f"--sizes must be three positive integers like 384,96,160, got {text!r}")
    return sizes  # type: ignore[return-value]


@stage_command
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read"),
    out: Path | None = typer.Option(None, "--out", help="pickle to write (default: sample.out)"),
    scale: str | None = typer.Option(None, "--scale", help="mosi | mosei (default: sample.scale)"),
    aligned: bool | None = typer.Option(
        None, "--aligned/--unaligned", help="sequence layout (default: sample.aligned)"
    ),
    sizes: str | None = typer.Option(
        None, "--sizes", help="TRAIN,VALID,TEST utterances (overrides the scale's sizes)"
    ),
    seed: int | None = typer.Option(None, "--seed", help="generator seed (default: base.seeds[0])"),
) -> None:
    """Write the deterministic synthetic dataset (MMSA pickle layout)."""
    from ssu_model.data import sample as lib

    raw = load_params(params)
    base = load_section(raw, "base", BaseParams)
    cfg = load_section(raw, "sample", SampleParams)
    scale = scale if scale is not None else cfg.scale
    if scale not in SCALES:
        fail(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    aligned = cfg.aligned if aligned is None else aligned
    if sizes is not None:
        split_sizes = _parse_sizes(sizes)
    elif scale == "mosei":
        split_sizes = lib.SCALES["mosei"].sizes
    else:
        split_sizes = cfg.sizes
    seed = base.seed if seed is None else seed
    target = Path(out) if out is not None else Path(cfg.out)
    log(
        f"sample: scale={scale} aligned={aligned} sizes={'/'.join(map(str, split_sizes))} "
        f"seed={seed} -> {target}"
    )
    start = time.perf_counter()
    data = lib.generate(
        seed, split_sizes, scale=scale, aligned=aligned,
        neutral_share=cfg.neutral_share, nonfinite_share=cfg.nonfinite_share,
        baseline_std=cfg.baseline_std, segment_share=cfg.segment_share,
    )
    generated = time.perf_counter()
    with atomic_file(target) as tmp:
        lib.dump(data, tmp)
    log(
        f"sample: wrote {target} ({target.stat().st_size / 2**20:.1f} MiB; generated in "
        f"{generated - start:.1f} s, pickled in {time.perf_counter() - generated:.1f} s)"
    )
