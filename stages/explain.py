"""Stage `explain`: the paper's Figs. 5-7 from two trained model folders (params section `explain`).

    python -m stages explain [--params params.yaml] [--models models] [--features data/features]
        [--parse data/parse] [--text-features data/text_features] [--out reports/explain]

Reads ``<models>/<explain.variant>`` and ``<models>/<explain.compare_to>`` (default: full and
no_anchor) and writes, into ``--out`` (replaced whole, only once everything is computed):

- ``fig6_predictions.{png,json}``: per chosen utterance, every seed's prediction of both models
  and the anchor attention beta (Eq. 7) over the words and the audio/visual nodes;
- ``fig7_cross_attention.{png,json}``: the text-to-audio and text-to-video attention maps (Eq. 1)
  of both models, top-N weights boxed;
- ``fig5_loss_surface.{png,json}``: the loss around each model's trained weights along two
  filter-normalised random directions, on a fixed validation batch, and a sharpness number.

Predictions, beta and the attention maps come from one forward pass per seed
(``model(batch, return_graphs=True)``); the computations live in ``ssu_model/eval/explain.py``, the
drawing in ``ssu_model/eval/explain_figures.py``. Choices: docs/decisions/explain.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import typer

from ssu_model.data.splits import SPLITS
from stages.common import atomic_dir, log, stage_command
from stages.errors import ParamError
from stages.inputs import FEATURES_OPTION, PARSE_OPTION, TEXT_FEATURES_OPTION, input_dirs
from stages.params import BaseParams, load_params, load_section

SECTIONS: tuple[str, ...] = ("base", "explain", "variants")  # variants: only its names (explain.variant must be one)
LOSSES = ("total", "reg")
FILES = ("fig5_loss_surface", "fig6_predictions", "fig7_cross_attention")
FLOAT_DIGITS = 6  # significant digits of every float in the JSON (byte-stable across runs)


@dataclasses.dataclass(frozen=True)
class ExplainParams:
    """`explain`: the Figs. 5-7 counterparts (reports/explain/)."""

    variant: str  # the model explained (paper: SSU with the anchor); a key of `variants`
    compare_to: str  # the model it is compared with (paper: without the anchor); a key of `variants`
    utterances: tuple[str, ...]  # ids drawn in Figs. 6-7, all from `split`
    split: str  # train | valid | test: where the utterances are
    seed: int  # the seed whose checkpoint gives the attention maps and the loss surface (in base.seeds)
    top_n: int  # largest cross-attention weights boxed per map (Fig. 7)
    top_nodes: int  # most attended nodes marked per beta (Fig. 6)
    surface_loss: str  # total (Eq. 11, eval mode) | reg (L_reg alone): the loss drawn and scored in Fig. 5
    surface_split: str  # train | valid | test: where the fixed batch of Fig. 5 comes from
    surface_batch: int  # utterances in that batch (drawn with surface_seed; all when the split has fewer)
    surface_seed: int  # seeds the batch draw, the two directions and the augmented view's random numbers
    grid_points: int  # points per axis of the grid, odd so the trained weights are the centre
    grid_range: float  # the grid spans [-grid_range, grid_range]^2 in units of the directions
    sharpness_radius: float  # sharpness = mean loss increase over the grid points within this radius
    threads: int  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        if not self.variant or not self.compare_to:
            raise ParamError("variant and compare_to must name variants")
        if self.variant == self.compare_to:
            raise ParamError(f"compare_to must differ from variant, both are {self.variant!r}")
        if not self.utterances:
            raise ParamError("utterances must list at least one utterance id")
        if len(set(self.utterances)) != len(self.utterances):
            raise ParamError("utterances must be distinct")
        for name in ("split", "surface_split"):
            if getattr(self, name) not in SPLITS:
                raise ParamError(f"{name} must be one of {', '.join(SPLITS)}, got {getattr(self, name)!r}")
        for name in ("seed", "surface_seed", "threads"):
            if getattr(self, name) < 0:
                raise ParamError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("top_n", "top_nodes", "surface_batch"):
            if getattr(self, name) < 1:
                raise ParamError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.surface_loss not in LOSSES:
            raise ParamError(f"surface_loss must be one of {', '.join(LOSSES)}, got {self.surface_loss!r}")
        if self.grid_points < 3 or self.grid_points % 2 == 0:
            raise ParamError(f"grid_points must be odd and >= 3 (the centre is a grid point), got {self.grid_points}")
        if not self.grid_range > 0:
            raise ParamError(f"grid_range must be > 0, got {self.grid_range}")
        step = 2 * self.grid_range / (self.grid_points - 1)
        if not step <= self.sharpness_radius <= self.grid_range:
            raise ParamError(f"sharpness_radius must lie between one grid step ({step:g}) and grid_range "
                             f"({self.grid_range:g}), got {self.sharpness_radius}")


def check_against(cfg: ExplainParams, base: BaseParams, variants: Any) -> None:
    """What the section can only be checked against the other sections."""
    names = sorted(variants) if isinstance(variants, dict) else []
    for field in ("variant", "compare_to"):
        if getattr(cfg, field) not in names:
            raise ParamError(f"explain.{field} is {getattr(cfg, field)!r}, which is no key of variants "
                             f"(have: {', '.join(names)})")
    if cfg.seed not in base.seeds:
        raise ParamError(f"explain.seed {cfg.seed} is not one of base.seeds {list(base.seeds)}")


def _rounded(value: Any) -> Any:
    """Floats to FLOAT_DIGITS significant digits, recursively (JSON stays byte-stable)."""
    if isinstance(value, float):
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def _write_json(path: Path, doc: dict) -> None:
    import json

    path.write_text(json.dumps(_rounded(doc), indent=1, sort_keys=True, allow_nan=False) + "\n")


@stage_command
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    models: Path = typer.Option(Path("models"), "--models", help="folder of the model folders (<models>/<variant>)"),
    features: Path | None = FEATURES_OPTION,
    parse_dir: Path | None = PARSE_OPTION,
    text_features: Path | None = TEXT_FEATURES_OPTION,
    out: Path = typer.Option(Path("reports/explain"), "--out", help="output folder (replaced whole)"),
) -> None:
    """Figs. 5-7 of the paper from two trained models: predictions, anchor attention, cross-attention
    maps and loss surfaces (PNG + the JSON behind each)."""
    raw = load_params(params)
    base = load_section(raw, "base", BaseParams)
    cfg = load_section(raw, "explain", ExplainParams)
    check_against(cfg, base, raw.get("variants"))
    features, parse_dir, text_features = input_dirs(features, parse_dir, text_features)
    t_start = time.perf_counter()

    import torch

    from stages.common import deterministic_torch, resolve_device

    deterministic_torch()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(base.device)
    names = [cfg.variant, cfg.compare_to]
    trained = _trained_models(models, names, base)
    examples, texts, words = _model_inputs(cfg, names, trained, features, parse_dir, text_features)
    fig6, fig7, loaded, common = _figs_6_7(cfg, base, names, trained, examples, texts, words, device)
    fig5 = _fig5(cfg, names, examples, loaded, common, device)
    _write_figures(out, fig5, fig6, fig7)
    log(f"explain: wrote {out}/{{{','.join(FILES)}}}.{{png,json}} in {time.perf_counter() - t_start:.1f}s")


def _trained_models(models: Path, names: list[str], base: BaseParams) -> dict:
    """The model folders: every seed of base.seeds, checked as predict checks them."""
    from ssu_model.errors import DataError
    from ssu_model.train.model_folder import load_model_folder

    trained = {}
    for name in names:
        folder = models / name
        if not folder.is_dir():
            raise DataError(f"model folder not found: {folder} (run train --variant {name})")
        t = load_model_folder(folder)
        if t.finetuned:
            raise DataError(f"{folder} fine-tunes its text encoder: explain reads the cached word states "
                            "(text-features) and does not run the encoder")
        missing = sorted(set(base.seeds) - set(t.seeds))
        if missing:
            raise DataError(f"{folder} lacks checkpoints for seeds {missing} (re-run train)")
        trained[name] = t
        log(f"explain: {folder}: seeds {', '.join(map(str, base.seeds))}; reads {' + '.join(t.modalities)}")
    return trained


def _model_inputs(cfg: ExplainParams, names: list[str], trained: dict, features: Path, parse_dir: Path,
                  text_features: Path) -> tuple[dict, dict, dict]:
    """Inputs per model (each reads its own streams), as evaluate builds them; texts and words by id."""
    from ssu_model.data.features import FeatureSplit, split_path
    from ssu_model.data.records import parse_index
    from ssu_model.errors import DataError
    from stages.inputs import read_parse_table
    from stages.modelling import load_inputs

    splits = tuple(dict.fromkeys((cfg.split, cfg.surface_split)))
    examples = {}
    for name in names:
        t = trained[name]
        ex, dep_labels, dims = load_inputs(splits, features, parse_dir, text_features, None, t.modalities,
                                           text_layers=t.settings.text_layers)
        if dep_labels != t.meta["dep_labels"]:
            raise DataError(f"the parse's relation labels differ from those {name} was trained with (re-run train)")
        for key in ("text_dim", "audio_dim", "vision_dim"):
            if dims[key] != t.model_config.get(key):
                raise DataError(f"the data's {key} is {dims[key]} but {name} expects {t.model_config.get(key)}")
        examples[name] = {s: {e.id: e for e in ex[s]} for s in splits}
    split_rows = FeatureSplit(split_path(features, cfg.split))
    texts = dict(zip(split_rows.ids, split_rows.texts))
    parsed = parse_index(read_parse_table(parse_dir / f"{cfg.split}.parquet"))
    words = {uid: row["words"] for uid, row in parsed.items()}
    for uid in cfg.utterances:
        if uid not in examples[names[0]][cfg.split]:
            some = ", ".join(sorted(examples[names[0]][cfg.split])[:3])
            raise DataError(f"utterance {uid!r} is not in the {cfg.split} split of {features} (ids look like {some})")
    return examples, texts, words


def _figs_6_7(cfg: ExplainParams, base: BaseParams, names: list[str], trained: dict, examples: dict,
              texts: dict, words: dict, device) -> tuple[dict, dict, dict, dict]:
    """Figs. 6-7: one forward pass per model and seed over the chosen utterances. Returns (fig6, fig7,
    the attention seed's model per name, the fields every figure shares)."""
    import numpy as np

    from ssu_model.data.batching import collate
    from ssu_model.eval import explain
    from ssu_model.train.checkpoints import model_from_checkpoint

    utterances = []
    for uid in cfg.utterances:
        e = examples[names[0]][cfg.split][uid]
        utterances.append({"id": uid, "split": cfg.split, "text": texts[uid], "words": list(words[uid]),
                           "label": float(e.label), "models": {}})
    attention = [{"id": u["id"], "split": u["split"], "text": u["text"], "words": u["words"], "models": {}}
                 for u in utterances]
    loaded = {}
    for name in names:
        t = trained[name]
        batch = collate([examples[name][cfg.split][uid] for uid in cfg.utterances]).to(device)
        preds = {}
        for seed, ckpt in zip(t.seeds, t.checkpoints):
            if seed not in base.seeds:
                continue
            model = model_from_checkpoint(ckpt).to(device)
            output = explain.introspect(model, batch, seed)
            preds[seed] = output.prediction.double().cpu().numpy()
            if seed == cfg.seed:
                loaded[name] = model
                info, config = output.introspection, model.config
        reads = list(config.modalities)
        for b, (u, a) in enumerate(zip(utterances, attention)):
            steps = {m: explain.stream_steps(batch, m, b, config.max_nodes) for m in reads if m != "text"}
            u["models"][name] = {
                "reads": reads, "use_anchor": config.use_anchor, "cross_modal_edges": config.cross_modal_edges,
                "beta_role": explain.beta_role(config),
                "predictions": {str(s): float(p[b]) for s, p in sorted(preds.items())},
                "prediction_mean": float(np.mean([p[b] for p in preds.values()])),
                "beta": {m: explain.beta_entry(info, b, m, reads, cfg.top_nodes, steps.get(m))
                         for m in ("text", "audio", "vision")},
            }
            a["models"][name] = {
                "reads": reads, "use_anchor": config.use_anchor,
                "cross_attention": {m: explain.cross_attention_entry(info, b, m, reads, cfg.top_n, steps.get(m))
                                    for m in ("audio", "vision")},
            }
            log(f"explain: {u['id']}: {name} predicts {u['models'][name]['prediction_mean']:+.3f} "
                f"(label {u['label']:+.2f}; seeds {', '.join(f'{p[b]:+.3f}' for p in preds.values())})")
    use_anchor = {n: bool(loaded[n].config.use_anchor) for n in names}
    common = {"variants": names, "use_anchor": use_anchor, "seed": cfg.seed, "seeds": list(base.seeds)}
    fig6 = {**common, "figure": "paper Fig. 6: predictions with and without the semantic anchor",
            "top_nodes": cfg.top_nodes, "utterances": utterances,
            "beta_definition": "Eq. 7 beta = softmax over a modality's real nodes of z_a^T W_a H_i, from "
                               "Introspection.beta of the attention seed's forward pass; normalised_entropy = "
                               "entropy / log(nodes): 1 uniform, 0 one node takes all"}
    fig7 = {**common, "figure": "paper Fig. 7: cross-modal attention maps with and without the semantic anchor",
            "top_n": cfg.top_n, "utterances": attention,
            "attention_definition": "Eq. 1 weights (Introspection.cross_attention, head average): rows = the "
                                    "stream's real nodes (queries), columns = the real words, each row sums to 1; "
                                    "mean_row_entropy = mean over rows of entropy / log(words)"}
    return fig6, fig7, loaded, common


def _fig5(cfg: ExplainParams, names: list[str], examples: dict, loaded: dict, common: dict, device) -> dict:
    """Fig. 5: the loss surface of each model's attention-seed checkpoint on one fixed batch."""
    from ssu_model.data.batching import collate
    from ssu_model.eval import explain

    pool = examples[names[0]][cfg.surface_split]
    ids = explain.fixed_batch_ids(list(pool), cfg.surface_batch, cfg.surface_seed)
    alphas = explain.grid_coordinates(cfg.grid_points, cfg.grid_range)
    surfaces = {}
    for name in names:
        model = loaded[name]
        batch = collate([examples[name][cfg.surface_split][uid] for uid in ids]).to(device)
        d1 = explain.filter_normalised_direction(model, cfg.surface_seed, "d1")
        d2 = explain.filter_normalised_direction(model, cfg.surface_seed, "d2")
        t0 = time.perf_counter()
        grid = explain.loss_surface(model, batch, d1, d2, alphas, alphas, cfg.surface_seed)
        values = grid[cfg.surface_loss]
        mid = len(alphas) // 2  # grid point (0, 0): the trained weights themselves
        surfaces[name] = {
            "centre": {k: float(v[mid, mid]) for k, v in grid.items()},
            "surface": {k: v.tolist() for k, v in grid.items()},
            "sharpness": explain.sharpness(values, alphas, alphas, cfg.sharpness_radius),
            "min": float(values.min()), "max": float(values.max()),
            "direction_cosine": explain.direction_cosine(d1, d2),
        }
        log(f"explain: loss surface of {name} (seed {cfg.seed}): {values.size} points on {len(ids)} "
            f"{cfg.surface_split} utterances in {time.perf_counter() - t0:.1f}s; "
            f"sharpness {surfaces[name]['sharpness']:.4f}")
    loss_definition = ("the total training loss of Eq. 11 (L_reg + lambda_sup L_sup + lambda_self L_self + "
                       "lambda_align L_align, the model's own weights) in eval mode (no dropout), torch seeded with "
                       "surface_seed before every forward pass (the augmented view of L_self draws the same numbers)."
                       if cfg.surface_loss == "total" else
                       "L_reg alone (the regression loss the model trains with) in eval mode.")
    fig5 = {**common, "figure": "paper Fig. 5: loss surface with and without the semantic anchor",
            "loss": cfg.surface_loss, "loss_definition": loss_definition,
            "batch": {"split": cfg.surface_split, "seed": cfg.surface_seed, "ids": ids},
            "grid": {"alphas": alphas.tolist(), "betas": alphas.tolist(),
                     "layout": "surface[term][i][j] = loss at theta* + alphas[i] d1 + betas[j] d2"},
            "directions": {"seed": cfg.surface_seed,
                           "method": "Gaussian, rescaled per filter (slice along the first dimension of every "
                                     "parameter with >= 2 dims) to that filter's norm in the trained weights; "
                                     "1-d and scalar parameters (biases, LayerNorm, B_pos, lambda) get 0 "
                                     "(Li et al. 2018, ignore biasbn)."},
            "sharpness_radius": cfg.sharpness_radius,
            "sharpness_definition": f"mean of L(a, b) - L(0, 0) over the grid points with 0 < sqrt(a^2 + b^2) <= "
                                    f"{cfg.sharpness_radius:g}, L = the {cfg.surface_loss} loss",
            "models": surfaces}
    return fig5


def _write_figures(out: Path, fig5: dict, fig6: dict, fig7: dict) -> None:
    """The JSON and PNG of each figure; the folder is replaced only once every file is written."""
    from ssu_model.eval import explain_figures

    with atomic_dir(out) as tmp:
        for stem, doc, draw in ((FILES[0], fig5, explain_figures.draw_loss_surfaces),
                                (FILES[1], fig6, explain_figures.draw_predictions),
                                (FILES[2], fig7, explain_figures.draw_cross_attention)):
            _write_json(tmp / f"{stem}.json", doc)
            explain_figures.save_png(draw(_rounded(doc)), tmp / f"{stem}.png")
