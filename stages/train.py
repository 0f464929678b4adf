"""Stage `train --variant NAME`: one SSU model per seed in ``base.seeds``.

Inputs: ``data/features`` (contract A), ``data/parse`` (contract B), ``data/text_features``
(frozen word states; bypassed with ``train.finetune_text``) and, with ``--llm-states DIR``,
the LLM baseline's cached states (contract F in docs/interfaces.md; switches ``graph_source`` to "llm").
Outputs: ``models/<variant>/`` = ``seed_<s>.pt`` (tensors + plain config, loadable with
``torch.load(weights_only=True)``), ``history.json`` (per-seed epoch curves, read by
`evaluate` for the training-curve plot), ``config.json`` (the resolved configuration) and
``env.json`` (library versions, device, GPU name, world size; no wall-clock), plus dvclive
curves in ``dvclive/<variant>/seed_<s>/`` (declared as plots; no later stage reads them).

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins a process group
(``stages.distributed_run``, ``ssu_model.train.distributed``; gloo on CPU, NCCL on CUDA) and trains each seed data-parallel
(``fit(dist=...)``); rank 0 alone logs and writes, and moves the model directory into place only
after every rank has finished. A failure on any rank fails every rank with one error line, and
no model directory is left behind. ``WORLD_SIZE`` absent or 1: the single-process run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import typer

from ssu_model.data.splits import MODALITIES
from stages.common import atomic_dir, env_record, fail, log, stage_command
from stages.distributed_run import run_distributed
from stages.errors import ParamError
from stages.inputs import (
    FEATURES_OPTION,
    PARSE_OPTION,
    TEXT_FEATURES_OPTION,
    encoder_path,
    input_dirs,
    recorded_parse_settings,
)
from stages.modelling import build_model_config, load_inputs, model_overrides
from stages.params import BaseParams, build, load_params, load_section, variant_text_features

SECTIONS: tuple[str, ...] = ("base", "text_features", "model", "train", "variants")
VARIANT_KEYS = ("model", "train", "text_features")  # text_features: the variant has word states of its own


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """`train`: optimisation and data settings of the train stage."""

    lr: float  # AdamW learning rate of the SSU model (everything but the text encoder)
    encoder_lr: float  # AdamW learning rate of the text encoder when fine-tuned (paper: 1e-5)
    weight_decay: float  # AdamW decoupled weight decay
    batch_size: int  # utterances per optimisation step
    eval_batch_size: int  # utterances per forward pass on the validation/test split
    epochs: int  # maximum number of epochs
    patience: int  # early stopping: epochs without a better validation score before stopping
    select_metric: str  # "loss" (validation total loss) or an MMSA metric (MAE lower-better, others higher)
    grad_clip: float  # max global gradient norm; 0 = off
    finetune_text: bool  # true: train the text encoder too (bypasses data/text_features)
    length_buckets: int  # 0: batches drawn at random; k > 0: batches of similar length (runs of k batches)
    max_batch_tokens: int  # with length_buckets: cap on utterances x longest length per batch (0 = none)
    modalities: tuple[str, ...]  # modalities the model reads: text plus any of audio, vision
    threads: int  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        try:  # the optimisation fields are checked by the library's TrainConfig
            self.library_config()
        except ValueError as exc:
            raise ParamError(str(exc)) from None
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad:
            raise ParamError(f"modalities: unknown modality {bad[0]!r} (text, audio, vision)")
        if "text" not in self.modalities:
            raise ParamError("modalities must include text (the graphs are text-guided)")
        if len(set(self.modalities)) != len(self.modalities):
            raise ParamError("modalities must be distinct")
        if self.threads < 0:
            raise ParamError(f"threads must be >= 0, got {self.threads}")

    def library_config(self):
        from ssu_model.train.config import TrainConfig

        return TrainConfig(
            lr=self.lr, encoder_lr=self.encoder_lr, weight_decay=self.weight_decay,
            batch_size=self.batch_size, eval_batch_size=self.eval_batch_size, epochs=self.epochs,
            patience=self.patience, select_metric=self.select_metric, grad_clip=self.grad_clip,
            finetune_text=self.finetune_text, length_buckets=self.length_buckets,
            max_batch_tokens=self.max_batch_tokens,
        )


def resolve_variant(params: dict[str, Any], variant: str, allow_unlisted: bool = False):
    """(model overrides merged with the variant's, TrainParams with the variant's overrides)."""
    if "variants" not in params:
        raise ParamError("missing params section: variants")
    if "train" not in params:
        raise ParamError("missing params section: train")
    if "model" not in params:
        raise ParamError("missing params section: model")
    variants = params["variants"]
    if not isinstance(variants, dict):
        raise ParamError("variants must be a mapping of name -> overrides")
    # validate every variant, so a typo anywhere fails before any work
    base_model = model_overrides(params.get("model"), "model")
    for name, body in variants.items():
        body = body or {}
        if not isinstance(body, dict):
            raise ParamError(f"variants.{name} must be a mapping")
        unknown = sorted(set(body) - set(VARIANT_KEYS))
        if unknown:
            raise ParamError(f"unknown param variants.{name}.{unknown[0]} (allowed: {', '.join(VARIANT_KEYS)})")
        variant_text_features(params, name)
        model_overrides(body.get("model"), f"variants.{name}.model")
        train_raw = body.get("train") or {}
        if not isinstance(train_raw, dict):
            raise ParamError(f"variants.{name}.train must be a mapping")
        merged = {**(params.get("train") or {}), **train_raw}
        build(TrainParams, merged, f"variants.{name}.train" if train_raw else "train")
    if variant in variants:
        body = variants[variant] or {}
    elif allow_unlisted:
        body = {}
    else:
        raise ParamError(f"unknown variant {variant!r} (params variants: {', '.join(variants)})")
    model = {**base_model, **model_overrides(body.get("model"), f"variants.{variant}.model")}
    train_raw = {**(params.get("train") or {}), **(body.get("train") or {})}
    train = build(TrainParams, train_raw, "train")
    return model, train


@stage_command
def main(
    variant: str = typer.Option(..., "--variant", help="variant name from params `variants` (or llm_<name> with --llm-states)"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    features: Path | None = FEATURES_OPTION,
    parse_dir: Path | None = PARSE_OPTION,
    text_features: Path | None = TEXT_FEATURES_OPTION,
    llm_states: Path | None = typer.Option(None, "--llm-states", help="LLM states dir: graph_source=llm"),
    out: Path | None = typer.Option(None, "--out", help="model dir (default models/<variant>)"),
    live: Path | None = typer.Option(None, "--live", help="dvclive dir (default dvclive/<variant>)"),
    seeds: str | None = typer.Option(None, "--seeds",
                                     help="comma-separated subset of base.seeds to train (one stage per seed group)"),
    backend: str = typer.Option("auto", "--backend",
                                help="under torchrun: torch.distributed backend, auto (nccl on CUDA, gloo on CPU), gloo or nccl"),
    dist_timeout: float = typer.Option(600.0, "--dist-timeout",
                                      help="under torchrun: seconds a rank waits for the others before the run fails"),
) -> None:
    """Train one SSU model per seed and keep each seed's best validation state.

    Under `torchrun --nproc_per_node N` (WORLD_SIZE > 1) the seeds are trained one after the
    other, each data-parallel over the N processes; rank 0 alone writes outputs and logs."""
    import os

    from ssu_model.train.distributed import BACKENDS, rendezvous_from_env, resolve_backend

    raw = load_params(params)
    base = _seed_group(load_section(raw, "base", BaseParams), seeds)
    overrides, tp = resolve_variant(raw, variant, allow_unlisted=llm_states is not None)
    tf = variant_text_features(raw, variant if variant in raw["variants"] else None)
    features, parse_dir, text_features = input_dirs(features, parse_dir, text_features)
    out = out or Path("models") / variant
    live = live or Path("dvclive") / variant
    if backend not in BACKENDS:
        fail(f"unknown distributed backend {backend!r} (--backend: {', '.join(BACKENDS)})")
    try:
        rendezvous = rendezvous_from_env(os.environ)
    except ValueError as exc:
        fail(str(exc))
    if rendezvous is not None and tp.batch_size % rendezvous.world_size:
        fail(f"train.batch_size {tp.batch_size} is not divisible by the world size {rendezvous.world_size} "
             "(the batch is global: each process takes batch_size / world size)")

    from stages.common import deterministic_torch, resolve_device

    deterministic_torch()
    device = resolve_device(base.device)
    try:
        resolve_backend(backend, device)
    except ValueError as exc:
        fail(str(exc))
    run = functools.partial(_train, variant=variant, base=base, tf=tf, overrides=overrides, tp=tp,
                            features=features, parse_dir=parse_dir, text_features=text_features,
                            llm_states=llm_states, out=out, live=live)
    if rendezvous is None:  # a plain run (also torchrun with one process): no process group
        run(device=device, dist=None)
    else:
        run_distributed(rendezvous, device, backend, dist_timeout, run)


def _seed_group(base: BaseParams, seeds: str | None) -> BaseParams:
    """``base`` with only the ``--seeds`` listed (all of ``base.seeds`` without the option)."""
    if seeds is None:
        return base
    try:
        chosen = tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise typer.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not chosen or len(set(chosen)) != len(chosen) or set(chosen) - set(base.seeds):
        raise typer.BadParameter(f"--seeds {seeds} must be distinct seeds of base.seeds {list(base.seeds)}")
    return dataclasses.replace(base, seeds=chosen)


def _train(*, variant, base, tf, overrides, tp, features, parse_dir, text_features, llm_states, out, live,
           device: str, dist) -> None:
    """The seeds loop. ``dist`` None: one process. With a ``DistContext`` every rank runs the same
    loop and collectives; rank 0 alone logs and writes (the model directory, dvclive)."""
    import torch

    from ssu_model.train.checkpoints import make_checkpoint, save_checkpoint

    main_rank = dist is None or dist.is_main
    say = log if main_rank else (lambda msg: None)
    if tp.threads:
        torch.set_num_threads(tp.threads)
    threads = torch.get_num_threads()
    world_size = 1 if dist is None else dist.world_size
    train_cfg = tp.library_config()
    encoder, max_length = _finetuned_encoder(tp, tf, parse_dir, main_rank) if tp.finetune_text else (None, None)
    say(f"train[{variant}]: loading data (device {device}, {threads} threads"
        + (f", {world_size} processes" if dist is not None else "") + ")")
    examples, dep_labels, dims = load_inputs(
        ("train", "valid"), features, parse_dir, None if tp.finetune_text else text_features,
        llm_states, tp.modalities, text_dim_hint=encoder.dim if encoder is not None else None, encoder=encoder,
        log=say, text_layers=tf.layers,
    )
    model_cfg = build_model_config(overrides, dims, len(dep_labels), llm_states is not None)
    say(f"train[{variant}]: {len(examples['train'])} train / {len(examples['valid'])} valid utterances; "
        f"modalities {['text'] + [m for m in ('audio', 'vision') if dims[m + '_dim']]}")

    layers_record = {"text_layers": tf.layers} if tf.layers != 1 else {}  # absent = 1: older outputs stay the same
    meta = {
        "variant": variant,
        "train": dataclasses.asdict(tp),
        "dep_labels": dep_labels,
        "text_encoder": tf.model_path,
        **layers_record,
        "max_length": max_length,
        "llm_states": str(llm_states) if llm_states is not None else None,
        "finetune_text": tp.finetune_text,
        **recorded_parse_settings(parse_dir / "train.parquet"),  # predict re-parses with these
    }
    history: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    # rank 0 writes into a temporary directory that replaces `out` only when every rank got through
    with (atomic_dir(out) if main_rank else contextlib.nullcontext(None)) as tmp:
        for seed in base.seeds:
            result = _fit_seed(seed, variant=variant, model_cfg=model_cfg, examples=examples, train_cfg=train_cfg,
                               encoder_spec=(encoder_path(tf.model_path), max_length, tf.layers) if encoder is not None else None,
                               device=device, dist=dist, live=live if main_rank else None)
            say(f"train[{variant}] seed {seed}: best epoch {result.best_epoch} "
                f"({train_cfg.select_metric} {result.best_score:.4f}), {result.epochs_run} epochs")
            if tmp is not None:
                save_checkpoint(make_checkpoint(model_cfg, result, seed, meta), tmp / f"seed_{seed}.pt")
            history[str(seed)] = result.history
            summary[str(seed)] = {"best_epoch": result.best_epoch, "best_score": result.best_score,
                                  "epochs_run": result.epochs_run}
        if tmp is not None:
            config = {"variant": variant, "seeds": list(base.seeds), "model": dataclasses.asdict(model_cfg),
                      "train": dataclasses.asdict(tp), "select_metric": tp.select_metric, "best": summary,
                      "text_encoder": tf.model_path, **layers_record,
                      "llm_states": meta["llm_states"]}
            _write_records(tmp, history, config, env_record(device, threads, world_size))
        if dist is not None:  # every rank got here: only now does rank 0 put the directory in place
            dist.barrier()
    say(f"train[{variant}]: wrote {out}")


def _finetuned_encoder(tp, tf, parse_dir: Path, main_rank: bool):
    """(the pretrained text encoder to fine-tune, the parse's max_length it tokenises with)."""
    from ssu_model.text.text_encoder import TextEncoder
    from stages.inputs import parse_max_length, read_parse_table

    if not main_rank:  # transformers' loading progress bars: rank 0's is enough
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    max_length = parse_max_length(read_parse_table(parse_dir / "train.parquet"), parse_dir / "train.parquet")
    return TextEncoder(encoder_path(tf.model_path), max_length=max_length, layers=tf.layers), max_length


def _fit_seed(seed: int, *, variant: str, model_cfg, examples, train_cfg, encoder_spec, device: str, dist,
              live: Path | None):
    """One seed's ``fit`` result. ``encoder_spec`` (folder, max_length): fine-tune a fresh pretrained
    text encoder; ``live`` (rank 0 only): the dvclive folder that gets every epoch's metrics."""
    import time

    from dvclive import Live

    from ssu_model.ssu.model import SSU
    from ssu_model.text.text_encoder import drop_mapped_state_pages
    from ssu_model.train.loop import fit, seed_everything

    seed_everything(seed)
    model = SSU(model_cfg)
    if model_cfg.standardize_streams:  # train-split statistics, saved with the model
        model.fit_stream_statistics(examples["train"])
    enc = None
    if encoder_spec is not None:  # a fresh pretrained encoder per seed
        from ssu_model.text.text_encoder import TextEncoder

        enc = TextEncoder(encoder_spec[0], max_length=encoder_spec[1], layers=encoder_spec[2])
    t0 = time.perf_counter()
    live_run = (Live(str(live / f"seed_{seed}"), save_dvc_exp=False, dvcyaml=False, report=None)
                if live is not None else contextlib.nullcontext(None))
    with live_run as lv:

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            for key, value in row.items():
                if key != "epoch" and math.isfinite(value):
                    lv.log_metric(key, value)
            lv.next_step()
            log(f"train[{variant}] seed {seed} epoch {epoch}: "
                f"train loss {row.get('train/total', float('nan')):.4f} "
                f"valid MAE {row['valid/MAE']:.4f} Acc2 {row['valid/Non0_acc_2']:.4f} "
                f"({time.perf_counter() - t0:.1f}s)")

        result = fit(model, examples["train"], examples["valid"], train_cfg, seed, device, enc,
                     on_epoch if live is not None else None, dist=dist, after_batch=drop_mapped_state_pages)
    return result


def _write_records(tmp: Path, history: dict, config: dict, env: dict) -> None:
    """history.json, config.json and env.json of the model folder."""
    import json

    (tmp / "history.json").write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=list) + "\n")
    (tmp / "env.json").write_text(json.dumps(env, indent=2, sort_keys=True) + "\n")
