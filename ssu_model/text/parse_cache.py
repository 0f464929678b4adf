"""The content-addressed parse cache: a directory of a few Parquet shards per kind.

* ``parse`` rows (words, heads, deps, pos) are keyed by ``parse_key`` = sha256 of (cache
  format, normalised text, spaCy version, model name, model version);
* ``map`` rows (sub-word spans) are keyed by sha256 of (parse key, tokenizer fingerprint,
  max_length), so a run with nothing new neither loads spaCy nor the tokenizer.

A run appends at most one shard per kind; above ``max_shards`` shards a kind is compacted
into one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CACHE_FORMAT = "ssu-parse-cache-1"


def content_key(*parts: str) -> str:
    """sha256 of ``parts``, each length-prefixed so that no two part lists collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cache_schemas() -> dict[str, Any]:
    """The Arrow schema of each cache kind (parse | map)."""
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
        self.dir.mkdir(parents=True, exist_ok=True)
        ignore = self.dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# content-addressed parse cache (ssu_model.text.parse_cache); safe to delete\n*\n")
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, kind: str) -> Any:
        schema = cache_schemas()[kind]
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
