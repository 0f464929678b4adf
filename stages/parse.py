"""Stage `parse`: offline spaCy dependency parses + word to sub-word map, per split.

Reads ``{input}/{train,valid,test}.arrow`` (the `features` output), writes
``{out}/{split}.parquet`` (contract B, byte-stable), and keeps a content-addressed parse
cache in ``cache`` (not a DVC output, so the stage's run-cache stays usable; see
docs/decisions/parse.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from stages.common import atomic_dir, fail, log, stage_command
from stages.errors import ParamError

SECTIONS: tuple[str, ...] = ("parse",)


@dataclass(frozen=True)
class ParseParams:
    """`parse`: dependency parsing and the sub-word map of the text encoder."""

    input: str  # `features` output directory holding {train,valid,test}.arrow
    out: str  # output directory for {train,valid,test}.parquet
    cache: str | None  # persistent parse cache directory (null = no cache); safe to delete
    spacy_model: str  # installed spaCy package name or a spaCy model folder
    tokenizer: str  # "minilm" (all-MiniLM-L6-v2), "mpnet" (all-mpnet-base-v2) or a local HF tokenizer folder
    max_length: int  # text encoder max length in sub-words, special tokens included
    batch_size: int  # texts per nlp.pipe batch
    n_process: int  # nlp.pipe worker processes
    max_cache_shards: int  # cache shards per kind before they are compacted into one

    def __post_init__(self) -> None:
        if not self.input:
            raise ParamError("input must not be empty")
        if not self.out:
            raise ParamError("out must not be empty")
        if self.cache is not None and not self.cache:
            raise ParamError("cache must be a directory or null")
        if not self.spacy_model:
            raise ParamError("spacy_model must not be empty")
        if not self.tokenizer:
            raise ParamError("tokenizer must not be empty")
        if self.max_length < 2:
            raise ParamError(f"max_length must be at least 2, got {self.max_length}")
        for name in ("batch_size", "n_process", "max_cache_shards"):
            if getattr(self, name) < 1:
                raise ParamError(f"{name} must be at least 1, got {getattr(self, name)}")


def resolve_tokenizer(value: str) -> str:
    """The tokenizer folder a `parse.tokenizer` value names (minilm, mpnet or a folder)."""
    from ssu_model.errors import DataError
    from ssu_model.text.pretrained import encoder_folder
    from stages.inputs import ENCODER_CACHE

    try:
        return encoder_folder(value, ENCODER_CACHE)
    except DataError as exc:
        fail(f"parse.tokenizer: {exc}")


@stage_command
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    input: Annotated[Path | None, typer.Option(help="features directory (default: parse.input)")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (default: parse.out)")] = None,
    cache: Annotated[Path | None, typer.Option(help="parse cache directory (default: parse.cache)")] = None,
) -> None:
    """Dependency-parse every utterance (spaCy, cached) and map words to encoder sub-words."""
    from stages.params import load_params, load_section

    p = load_section(load_params(params), "parse", ParseParams)
    in_dir = Path(input) if input is not None else Path(p.input)
    out_dir = Path(out) if out is not None else Path(p.out)
    cache_dir = cache if cache is not None else (Path(p.cache) if p.cache else None)

    from ssu_model.data.features import open_splits
    from ssu_model.data.splits import SPLITS
    from ssu_model.text.parse_table import ParseConfig, parse_splits, write_parse

    if not in_dir.is_dir():
        fail(f"features directory not found: {in_dir}")
    splits = open_splits(in_dir)
    config = ParseConfig(
        model=p.spacy_model,
        tokenizer=resolve_tokenizer(p.tokenizer),
        max_length=p.max_length,
        batch_size=p.batch_size,
        n_process=p.n_process,
        max_shards=p.max_cache_shards,
    )
    log(f"parse: {sum(len(s) for s in splits.values())} utterances from {in_dir}, cache {cache_dir or 'off'}")
    tables, stats = parse_splits(
        {name: (splits[name].ids, splits[name].texts) for name in SPLITS}, config, cache_dir, log
    )
    for warning in stats.warnings:
        log(f"parse: warning: {warning}")
    with atomic_dir(out_dir) as tmp:
        for name in SPLITS:
            write_parse(tables[name], tmp / f"{name}.parquet")
    log(
        f"parse: {stats.texts} texts ({stats.unique} distinct): parsed {stats.parsed} new, "
        f"{stats.unique - stats.parsed} from cache; sub-word maps computed {stats.encoded}; "
        f"{stats.words} words, {stats.truncated} truncated utterances -> {out_dir}"
    )
