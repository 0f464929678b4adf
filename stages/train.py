"""Stage `train --variant NAME`: one SSU model per seed in ``base.seeds``.

Inputs: ``data/features`` (contract A), ``data/parse`` (contract B), ``data/text_features``
(frozen word states; bypassed with ``train.finetune_text``) and, with ``--llm-states DIR``,
the LLM baseline's cached states (contract F in docs/interfaces.md; switches ``graph_source`` to "llm").
Outputs: ``models/<variant>/`` = ``seed_<s>.pt`` (tensors + plain config, loadable with
``torch.load(weights_only=True)``), ``history.json`` (per-seed epoch curves, read by
`evaluate` for the training-curve plot), ``config.json`` (the resolved configuration) and
``env.json`` (library versions, device, GPU name, world size; no wall-clock), plus dvclive
curves in ``dvclive/<variant>/seed_<s>/`` (declared as plots; no later stage reads them).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional

import typer

from stages.common import atomic_dir, log, stage_command
from stages.errors import ParamError
from stages.inputs import FEATURES_OPTION, PARSE_OPTION, TEXT_FEATURES_OPTION, input_dirs
from stages.modelling import build_model_config, load_inputs, model_overrides
from stages.params import BaseParams, build, load_params, load_section

SECTIONS: tuple[str, ...] = ("base", "text_features", "model", "train", "variants")
MODALITIES = ("text", "audio", "vision")
VARIANT_KEYS = ("model", "train")


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
        from ssu_model.training import TrainConfig

        return TrainConfig(
            lr=self.lr, encoder_lr=self.encoder_lr, weight_decay=self.weight_decay,
            batch_size=self.batch_size, eval_batch_size=self.eval_batch_size, epochs=self.epochs,
            patience=self.patience, select_metric=self.select_metric, grad_clip=self.grad_clip,
            finetune_text=self.finetune_text,
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
            raise ParamError(f"unknown param variants.{name}.{unknown[0]} (allowed: model, train)")
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


def env_record(device: str, threads: int) -> dict[str, Any]:
    """Versions and hardware of this run (no wall-clock, no host names)."""
    import importlib.metadata as md
    import os
    import platform

    import torch

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": version("torch-geometric"),
        "spacy": version("spacy"),
        "transformers": version("transformers"),
        "numpy": version("numpy"),
        "device": device,
        "gpu_name": gpu,
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "torch_threads": threads,
    }


@stage_command
def main(
    variant: str = typer.Option(..., "--variant", help="variant name from params `variants` (or llm_<name> with --llm-states)"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    features: Optional[Path] = FEATURES_OPTION,
    parse_dir: Optional[Path] = PARSE_OPTION,
    text_features: Optional[Path] = TEXT_FEATURES_OPTION,
    llm_states: Optional[Path] = typer.Option(None, "--llm-states", help="LLM states dir: graph_source=llm"),
    out: Optional[Path] = typer.Option(None, "--out", help="model dir (default models/<variant>)"),
    live: Optional[Path] = typer.Option(None, "--live", help="dvclive dir (default dvclive/<variant>)"),
) -> None:
    """Train one SSU model per seed and keep each seed's best validation state."""
    raw = load_params(params)
    base = load_section(raw, "base", BaseParams)
    from stages.inputs import encoder_path
    from stages.params import TextFeaturesParams

    tf = load_section(raw, "text_features", TextFeaturesParams)
    overrides, tp = resolve_variant(raw, variant, allow_unlisted=llm_states is not None)
    features, parse_dir, text_features = input_dirs(features, parse_dir, text_features)
    out = out or Path("models") / variant
    live = live or Path("dvclive") / variant

    import json
    import time

    import torch

    from stages.common import deterministic_torch, resolve_device
    from ssu_model.model import SSU
    from ssu_model.training import fit, make_checkpoint, save_checkpoint, seed_everything

    deterministic_torch()
    device = resolve_device(base.device)
    if tp.threads:
        torch.set_num_threads(tp.threads)
    threads = torch.get_num_threads()
    train_cfg = tp.library_config()
    encoder = None
    max_length = None
    if tp.finetune_text:
        from ssu_model.text_encoder import TextEncoder
        from stages.inputs import parse_max_length, read_parse_table

        max_length = parse_max_length(read_parse_table(parse_dir / "train.parquet"), parse_dir / "train.parquet")
        encoder = TextEncoder(encoder_path(tf.model_path), max_length=max_length)
    log(f"train[{variant}]: loading data (device {device}, {threads} threads)")
    examples, dep_labels, dims = load_inputs(
        ("train", "valid"), features, parse_dir, None if tp.finetune_text else text_features,
        llm_states, tp.modalities, text_dim_hint=encoder.dim if encoder is not None else None, encoder=encoder,
    )
    model_cfg = build_model_config(overrides, dims, len(dep_labels), llm_states is not None)
    log(f"train[{variant}]: {len(examples['train'])} train / {len(examples['valid'])} valid utterances; "
        f"modalities {['text'] + [m for m in ('audio', 'vision') if dims[m + '_dim']]}")

    from dvclive import Live

    meta = {
        "variant": variant,
        "train": dataclasses.asdict(tp),
        "dep_labels": dep_labels,
        "text_encoder": tf.model_path,
        "max_length": max_length,
        "llm_states": str(llm_states) if llm_states is not None else None,
        "finetune_text": tp.finetune_text,
    }
    history: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    with atomic_dir(out) as tmp:
        for seed in base.seeds:
            seed_everything(seed)
            model = SSU(model_cfg)
            if model_cfg.standardize_streams:  # train-split statistics, saved with the model
                model.fit_stream_statistics([e.record for e in examples["train"]])
            enc = None
            if encoder is not None:  # a fresh pretrained encoder per seed
                from ssu_model.text_encoder import TextEncoder

                enc = TextEncoder(encoder_path(tf.model_path), max_length=max_length)
            t0 = time.perf_counter()
            with Live(str(live / f"seed_{seed}"), save_dvc_exp=False, dvcyaml=False, report=None) as lv:

                def on_epoch(epoch: int, row: dict[str, float], lv=lv, seed=seed, t0=t0) -> None:
                    for key, value in row.items():
                        if key != "epoch" and math.isfinite(value):
                            lv.log_metric(key, value)
                    lv.next_step()
                    log(f"train[{variant}] seed {seed} epoch {epoch}: "
                        f"train loss {row.get('train/total', float('nan')):.4f} "
                        f"valid MAE {row['valid/MAE']:.4f} Acc2 {row['valid/Non0_acc_2']:.4f} "
                        f"({time.perf_counter() - t0:.1f}s)")

                result = fit(model, examples["train"], examples["valid"], train_cfg, seed, device, enc, on_epoch)
            log(f"train[{variant}] seed {seed}: best epoch {result.best_epoch} "
                f"({train_cfg.select_metric} {result.best_score:.4f}), {result.epochs_run} epochs")
            save_checkpoint(make_checkpoint(model_cfg, result, seed, meta), tmp / f"seed_{seed}.pt")
            history[str(seed)] = result.history
            summary[str(seed)] = {"best_epoch": result.best_epoch, "best_score": result.best_score,
                                  "epochs_run": result.epochs_run}
        (tmp / "history.json").write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
        config = {"variant": variant, "seeds": list(base.seeds), "model": dataclasses.asdict(model_cfg),
                  "train": dataclasses.asdict(tp), "select_metric": tp.select_metric, "best": summary,
                  "text_encoder": tf.model_path,
                  "llm_states": meta["llm_states"]}
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=list) + "\n")
        (tmp / "env.json").write_text(json.dumps(env_record(device, threads), indent=2, sort_keys=True) + "\n")
    log(f"train[{variant}]: wrote {out}")
