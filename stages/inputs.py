"""Shared helper module (like common.py and params.py: not a stage, it registers no command):
the upstream folders that several stages read.

- the ``--features`` / ``--parse`` / ``--text-features`` options of `train` and `evaluate`, and
  their defaults (``input_dirs``);
- reading a parse split (``read_parse_table``) and its sub-word budget (``parse_max_length``),
  used by `text-features`, `train`, `llm-graphs` and ``modelling.load_inputs``.

Stage modules never import one another (tests/test_dvc_deps.py); what two stages share lives in
these helper modules. This one imports no model code, so a stage that only reads parse splits
does not depend on the model library in dvc.yaml (code deps there follow imports, module by module).
"""

from __future__ import annotations

from pathlib import Path

import typer

ENCODER_CACHE = Path(".cache/encoders")  # packaged encoders unpacked once (not a DVC output; safe to delete)


def encoder_path(model_path: str) -> str | None:
    """What ``TextEncoder`` loads for a ``text_features.model_path``: None (the packaged
    all-MiniLM-L6-v2) for ``minilm``, the unpacked all-mpnet-base-v2 folder for ``mpnet``, else
    the folder itself."""
    from ssu_model.text.pretrained import MINILM, encoder_folder

    return None if model_path == MINILM else encoder_folder(model_path, ENCODER_CACHE)


# Input folders read by `train` and `evaluate`; dvc.yaml always passes them explicitly.
FEATURES_OPTION = typer.Option(None, "--features", help="features dir (default data/features)")
PARSE_OPTION = typer.Option(None, "--parse", help="parse dir (default data/parse)")
TEXT_FEATURES_OPTION = typer.Option(None, "--text-features", help="cached word states (default data/text_features)")


def input_dirs(features: Path | None, parse_dir: Path | None, text_features: Path | None):
    """(features, parse, text_features) folders, each defaulting to the path dvc.yaml uses."""
    return (features or Path("data/features"), parse_dir or Path("data/parse"),
            text_features or Path("data/text_features"))


def read_parse_table(path: Path):
    """A parse split as a pyarrow Table (via the parse library when present)."""
    from ssu_model.errors import DataError

    if not path.is_file():
        raise DataError(f"parse file not found: {path} (run parse)")
    try:
        from ssu_model.text.parse_table import read_parse
    except ImportError:  # pragma: no cover - parse library not there yet
        import pyarrow.parquet as pq

        return pq.read_table(str(path))
    return read_parse(path)


def recorded_parse_settings(path: Path) -> dict:
    """How a parse split was made, from its Parquet metadata, as `train` records it in every
    checkpoint's meta (so `predict` re-parses new text the same way): ``spacy_model``,
    ``parse_max_length`` and ``parse`` (spaCy/model versions, tokenizer name and fingerprint,
    text normalisation)."""
    import pyarrow.parquet as pq

    from ssu_model.errors import DataError

    if not path.is_file():
        raise DataError(f"parse file not found: {path} (run parse)")
    meta = {k.decode(): v.decode() for k, v in (pq.read_schema(str(path)).metadata or {}).items()
            if k.startswith(b"ssu.") and k != b"ssu.dep_labels"}
    if "ssu.spacy_model" not in meta or "ssu.max_length" not in meta:
        raise DataError(f"{path}: parse metadata lacks ssu.spacy_model / ssu.max_length (not written by parse?)")
    return {"spacy_model": meta["ssu.spacy_model"], "parse_max_length": int(meta["ssu.max_length"]),
            "parse": {k[len("ssu."):]: v for k, v in sorted(meta.items())}}


def same_tokenizer_as_parse(parse: dict | None, tokenizer_folder: Path | str) -> bool:
    """Whether the tokenizer in ``tokenizer_folder`` has the fingerprint `parse` recorded
    (``parse``: the ``parse`` entry of :func:`recorded_parse_settings`, which `train` copies into
    every checkpoint's meta). The fingerprint also covers the transformers/tokenizers versions,
    so an upgrade alone changes it; a parse that records none (made before the parse recorded
    it) is taken as the same. `predict` warns on a difference, `llm-graphs` refuses."""
    from ssu_model.text.subwords import tokenizer_info

    recorded = (parse or {}).get("tokenizer_fingerprint")
    return not recorded or tokenizer_info(tokenizer_folder).fingerprint == recorded


def parse_max_length(table, path: Path) -> int:
    from ssu_model.errors import DataError

    meta = table.schema.metadata or {}
    raw = meta.get(b"ssu.max_length")
    if raw is None:
        raise DataError(f"{path}: parse metadata lacks ssu.max_length")
    return int(raw.decode())
