"""Stage `evaluate --variant NAME`: every seed's checkpoint on the test split.

Outputs
- ``metrics/<variant>.json`` (contract D; DVC metrics, cache: false): MMSA metrics per seed,
  their mean and std (ddof=0) over seeds;
- ``reports/predictions/<variant>.parquet``: one row per (seed, id): label, prediction;
- ``plots/<variant>/``: ``confusion.json`` (7-class rows {actual, predicted}, all seeds pooled;
  DVC confusion template), ``scatter.json`` (label vs prediction per seed), ``curves.json``
  (per-seed epoch curves from ``models/<variant>/history.json``) and, with
  ``evaluate.png``, ``confusion.png`` / ``scatter.png`` / ``curves.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from stages.common import atomic_dir, log, stage_command
from stages.errors import ParamError
from stages.inputs import FEATURES_OPTION, PARSE_OPTION, TEXT_FEATURES_OPTION, input_dirs
from stages.params import BaseParams, load_params, load_section
from stages.score_files import write_metrics, write_predictions

SECTIONS: tuple[str, ...] = ("base", "evaluate")
CURVE_KEYS = ("train/total", "train/reg", "train/sup", "train/self", "train/align",
              "valid/total", "valid/MAE", "valid/Has0_acc_2", "valid/Non0_acc_2")


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """`evaluate`: test-split scoring."""

    batch_size: int  # utterances per forward pass
    png: bool  # also render PNG figures next to the DVC plot data

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ParamError(f"batch_size must be >= 1, got {self.batch_size}")


def _png_plots(out: Path, conf, y, preds_by_seed, history) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = list(range(-3, 4))
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(conf, cmap="Blues")
    for i in range(7):
        for j in range(7):
            ax.text(j, i, str(int(conf[i, j])), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(7), classes)
    ax.set_yticks(range(7), classes)
    ax.set_xlabel("predicted class (round(clip(p,-3,3)))")
    ax.set_ylabel("true class")
    ax.set_title("7-class confusion, all seeds")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for seed, p in preds_by_seed.items():
        ax.scatter(y, p, s=6, alpha=0.5, label=f"seed {seed}")
    ax.plot([-3, 3], [-3, 3], color="k", lw=0.8)
    ax.set_xlim(-3.2, 3.2)
    ax.set_xlabel("label")
    ax.set_ylabel("prediction")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scatter.png", dpi=110)
    plt.close(fig)

    keys = [k for k in ("train/total", "valid/total", "valid/MAE", "valid/Non0_acc_2") if any(
        k in row for rows in history.values() for row in rows)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 3))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys):
        for seed, rows in history.items():
            xs = [r["epoch"] for r in rows if key in r]
            ax.plot(xs, [r[key] for r in rows if key in r], marker=".", label=f"seed {seed}")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


@stage_command
def main(
    variant: str = typer.Option(..., "--variant", help="variant name (models/<variant>)"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    models: list[Path] | None = typer.Option(None, "--models",
                                             help="model dir (default models/<variant>); repeat for seed groups"),
    features: Path | None = FEATURES_OPTION,
    parse_dir: Path | None = PARSE_OPTION,
    text_features: Path | None = TEXT_FEATURES_OPTION,
    llm_states: Path | None = typer.Option(None, "--llm-states", help="LLM states dir (default: the one train used)"),
    out: Path | None = typer.Option(None, "--out", help="metrics JSON (default metrics/<variant>.json)"),
    predictions: Path | None = typer.Option(None, "--predictions", help="Parquet (default reports/predictions/<variant>.parquet)"),
    plots: Path | None = typer.Option(None, "--plots", help="plots dir (default plots/<variant>)"),
) -> None:
    """Score every seed's best checkpoint on the test split (MMSA metrics, mean/std over seeds)."""
    raw = load_params(params)
    base = load_section(raw, "base", BaseParams)
    cfg = load_section(raw, "evaluate", EvaluateParams)
    models = models or [Path("models") / variant]
    features, parse_dir, text_features = input_dirs(features, parse_dir, text_features)
    out = out or Path("metrics") / f"{variant}.json"
    predictions = predictions or Path("reports/predictions") / f"{variant}.parquet"
    plots = plots or Path("plots") / variant

    import json

    import numpy as np

    from ssu_model.errors import DataError
    from ssu_model.eval.metrics import metrics_report
    from ssu_model.train.checkpoints import load_checkpoint
    from stages.common import deterministic_torch, resolve_device
    from stages.inputs import encoder_path
    from stages.modelling import load_inputs

    deterministic_torch()
    device = resolve_device(base.device)
    ckpts = _checkpoints(models)
    wanted = set(base.seeds)
    have = {s for s, _ in ckpts}
    if wanted - have:
        raise DataError(f"{', '.join(map(str, models))} lacks checkpoints for seeds {sorted(wanted - have)} (re-run train)")
    ckpts = [(s, p) for s, p in ckpts if s in wanted]
    first = load_checkpoint(ckpts[0][1])
    meta = first["meta"]
    finetune = bool(meta.get("finetune_text"))
    llm_dir = llm_states or (Path(meta["llm_states"]) if meta.get("llm_states") else None)
    mcfg = first["model_config"]
    modalities = ["text"] + [m for m in ("audio", "vision") if mcfg.get(f"{m}_dim")]
    text_layers = int(meta.get("text_layers", 1))  # absent: the last layer (train records it only when > 1)
    encoder = None
    if finetune:
        from ssu_model.text.text_encoder import TextEncoder

        encoder = TextEncoder(encoder_path(meta["text_encoder"]), max_length=int(meta["max_length"]), layers=text_layers)
    examples, dep_labels, dims = load_inputs(
        ("test",), features, parse_dir, None if finetune else text_features, llm_dir, modalities,
        text_dim_hint=encoder.dim if encoder is not None else None, encoder=encoder, text_layers=text_layers,
    )
    if dep_labels != meta["dep_labels"]:
        raise DataError("the parse's relation labels differ from those the model was trained with (re-run train)")
    for key in ("text_dim", "audio_dim", "vision_dim"):
        if dims[key] != mcfg.get(key):
            raise DataError(f"test data {key} is {dims[key]} but the model expects {mcfg.get(key)}")
    test = examples["test"]
    ids = [e.id for e in test]
    y = np.array([e.label for e in test], dtype=np.float64)
    per_seed, preds_by_seed = _score_seeds(variant, ckpts, first, test, y, encoder if finetune else None,
                                           cfg.batch_size, device)
    seeds = [s for s, _ in ckpts]
    report = metrics_report(variant, seeds, per_seed)
    mean = report["mean"]
    log(f"evaluate[{variant}] mean of {len(seeds)}: Has0_acc_2 {mean['Has0_acc_2']:.4f} "
        f"Non0_acc_2 {mean['Non0_acc_2']:.4f} Acc7 {mean['Acc7']:.4f} MAE {mean['MAE']:.4f} Corr {mean['Corr']:.4f}")

    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    history = {seed: rows for m in models if (m / "history.json").is_file()
               for seed, rows in json.loads((m / "history.json").read_text()).items()}
    _write_plots(plots, seeds, ids, y, preds_by_seed, order, history, cfg.png)
    write_predictions(predictions, ids, y, {s: preds_by_seed[s] for s in seeds})
    write_metrics(out, report)
    log(f"evaluate[{variant}]: wrote {out}, {predictions}, {plots}")


def _checkpoints(models: list[Path]) -> list[tuple[int, Path]]:
    """(seed, path) of every checkpoint in the model folders, by seed; a seed in two is an error."""
    from ssu_model.errors import DataError
    from ssu_model.train.checkpoints import seed_checkpoints

    found = sorted(c for m in models for c in seed_checkpoints(m))
    seeds = [s for s, _ in found]
    if len(set(seeds)) != len(seeds):
        raise DataError(f"a seed has a checkpoint in two model folders: {sorted(s for s in set(seeds) if seeds.count(s) > 1)}")
    return found


def _score_seeds(variant: str, ckpts, first: dict, test, y, encoder, batch_size: int, device: str):
    """(seed -> MMSA metrics, seed -> test predictions) of every checkpoint; ``first`` is the first
    one, already loaded; ``encoder`` (fine-tuned models) gets each seed's own encoder state."""
    from ssu_model.errors import DataError
    from ssu_model.eval.metrics import regression_metrics
    from ssu_model.train.checkpoints import load_checkpoint, model_from_checkpoint
    from ssu_model.train.loop import predict, seed_everything

    per_seed = {}
    preds_by_seed = {}
    for seed, path in ckpts:
        ckpt = load_checkpoint(path) if path != ckpts[0][1] else first
        model = model_from_checkpoint(ckpt).to(device)
        enc = None
        if encoder is not None:
            if "encoder_state" not in ckpt:
                raise DataError(f"{path}: fine-tuned checkpoint lacks encoder_state")
            encoder.load_state_dict(ckpt["encoder_state"])
            enc = encoder.to(device)
        seed_everything(seed)  # the augmented view (unused for predictions) draws random numbers
        p, _losses = predict(model, test, batch_size, device, enc)  # predict runs under no_grad
        per_seed[seed] = regression_metrics(p, y)
        preds_by_seed[seed] = p
        m = per_seed[seed]
        log(f"evaluate[{variant}] seed {seed}: Non0_acc_2 {m['Non0_acc_2']:.4f} Non0_F1 {m['Non0_F1']:.4f} "
            f"Acc7 {m['Acc7']:.4f} MAE {m['MAE']:.4f} Corr {m['Corr']:.4f}")
    return per_seed, preds_by_seed


def _write_plots(plots: Path, seeds, ids, y, preds_by_seed, order, history: dict, png: bool) -> None:
    """The plot data (confusion, scatter, learning curves; PNGs with ``png``), written atomically."""
    import json

    from ssu_model.eval.metrics import confusion7, seven_class

    conf = sum(confusion7(preds_by_seed[s], y) for s in seeds)
    with atomic_dir(plots) as tmp:
        confusion_rows = []
        for s in seeds:
            confusion_rows += [{"actual": int(a), "predicted": int(b)}
                               for a, b in zip(seven_class(y[order]), seven_class(preds_by_seed[s][order]))]
        (tmp / "confusion.json").write_text(json.dumps(confusion_rows) + "\n")
        scatter = [{"seed": s, "id": ids[i], "label": round(float(y[i]), 4),
                    "prediction": round(float(preds_by_seed[s][i]), 4)} for s in seeds for i in order]
        (tmp / "scatter.json").write_text(json.dumps(scatter) + "\n")
        curves = []
        for s, rows in sorted(history.items(), key=lambda kv: int(kv[0])):
            for r in rows:
                point = {"seed": int(s), "epoch": int(r["epoch"])}
                point.update({k.replace("/", "_"): round(float(r[k]), 6) for k in CURVE_KEYS if k in r})
                curves.append(point)
        (tmp / "curves.json").write_text(json.dumps(curves) + "\n")
        if png:
            _png_plots(tmp, conf, y, preds_by_seed, history)
