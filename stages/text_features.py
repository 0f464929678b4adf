"""Stage `text-features`: frozen text encoder -> cached word-level states per split.

Reads the parse output (words and the word -> sub-word map, contract B), re-encodes each
utterance's words exactly as that map says, runs the encoder once with gradients off and
mean-pools sub-word states per word, writing them in bounded memory
(``ssu_model.text.streamed_states``). Output: ``data/text_features/{train,valid,test}.arrow``
(format in ``ssu_model.text.text_encoder``: id, n_words, states) plus ``meta.json``.

With ``train.finetune_text: true`` the train stage bypasses this cache and runs the encoder
itself; this stage still runs (it is cheap and keeps the pipeline graph fixed).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ssu_model.data.splits import SPLITS
from stages.common import atomic_dir, log, stage_command
from stages.inputs import encoder_path, parse_max_length, read_parse_table
from stages.params import MINILM, load_params, variant_text_features

SECTIONS: tuple[str, ...] = ("text_features", "variants")  # variants: a variant's text_features overrides


@stage_command
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    parse_dir: Path | None = typer.Option(None, "--parse", help="parse output dir (default data/parse)"),
    out: Path | None = typer.Option(None, "--out", help="output dir (default data/text_features)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (the cache is small; cpu by default)"),
    variant: str | None = typer.Option(None, "--variant",
                                       help="apply variants.<name>.text_features (a variant with states of its own)"),
) -> None:
    """Encode every utterance with the frozen text encoder and cache word-level states."""
    raw = load_params(params)
    cfg = variant_text_features(raw, variant)
    parse_dir = parse_dir or Path("data/parse")
    out = out or Path("data/text_features")

    import json

    import torch

    from ssu_model.errors import DataError
    from ssu_model.text.streamed_states import write_streamed_states
    from ssu_model.text.text_encoder import TextEncoder, pooling_description

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tables = {s: read_parse_table(parse_dir / f"{s}.parquet") for s in SPLITS}
    lengths = {parse_max_length(t, parse_dir / f"{s}.parquet") for s, t in tables.items()}
    if len(lengths) != 1:
        raise DataError(f"parse splits disagree on max_length: {sorted(lengths)}")
    max_length = lengths.pop()
    log(f"text-features: loading encoder {cfg.model_path}")
    try:
        encoder = TextEncoder(encoder_path(cfg.model_path), max_length=max_length, layers=cfg.layers).to(device)
    except OSError as exc:
        raise DataError(f"cannot load text encoder {cfg.model_path!r}: {str(exc).splitlines()[0]}") from None
    encoder.requires_grad_(False)
    name = "all-MiniLM-L6-v2" if cfg.model_path == MINILM else Path(encoder.model_path).name
    with atomic_dir(out) as tmp:
        counts = {}
        for split, table in tables.items():
            cols = {c: table.column(c).to_pylist() for c in ("id", "words", "sub_start", "sub_end")}
            encoded = [
                encoder.encode(w, s, e, where=f"{split}:{uid}")
                for uid, w, s, e in zip(cols["id"], cols["words"], cols["sub_start"], cols["sub_end"], strict=True)
            ]
            words = write_streamed_states(encoder, encoded, cols["id"], tmp / f"{split}.arrow", name,
                                          batch_size=cfg.batch_size, device=device)
            counts[split] = len(encoded)
            log(f"text-features: {split}: {counts[split]} utterances, {words} words")
        meta = {"encoder": name, "dim": encoder.dim, "max_length": max_length,
                "pooling": pooling_description(cfg.layers), "rows": counts}
        if cfg.layers != 1:  # as the states files: absent = the last layer alone
            meta["layers"] = cfg.layers
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log(f"text-features: wrote {out}")
