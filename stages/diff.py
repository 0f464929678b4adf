"""Command `diff`: does a metric move between two runs by more than noise? (not a DVC stage)

    python -m stages diff                        # full: HEAD against the workspace (like dvc metrics diff)
    python -m stages diff HEAD~1 HEAD            # two commits
    python -m stages diff --variant full --variant-b text_only          # two variants, both in the workspace
    python -m stages diff --pipeline pipelines/mosi-av --variant full --variant-b text_only
    python -m stages diff --pipeline pipelines/mosi-av --pipeline-b pipelines/mosi-text --variant-b frozen
    python -m stages diff HEAD~1 --metric MAE,Has0_acc_2 --noise-floor floor.json --out diff.json

A side is (revision, pipeline folder, variant): ``<pipeline>/metrics/<variant>.json`` (git-tracked,
contract D) and ``<pipeline>/reports/predictions/<variant>.parquet`` (the DVC output of `evaluate`:
one row per (seed, id)). At a commit the metrics come from git and the predictions from git if
tracked there, else from the local DVC cache through ``<pipeline>/dvc.lock`` of that commit (the
``md5`` of the output), else through ``dvc.api`` (a configured remote or cache). "workspace" reads the
working tree. Missing predictions: a note and the per-seed test only (``--require-bootstrap`` makes
it an error). The statistics are ``ssu_model.eval.significance``'s.

Output: a markdown table on stdout (``--json``: the JSON instead), ``--out FILE.json``: the JSON with
everything (sides with resolved commits, settings, per-seed values, CIs, tests, notes), written
atomically. Same inputs and options, byte-identical JSON. Data errors (unknown revision, missing
metrics, no shared utterance ids, a malformed file): one ``error:`` line, exit 1; bad usage: exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from stages.common import atomic_file, fail, log, stage_command
from stages.revisions import (
    NOISE_FLOOR_FILE,
    WORKSPACE,
    Side,
    head_commit,
    load_metrics,
    load_predictions,
    resolve_revision,
)

SECTIONS: tuple[str, ...] = ()  # reads no params.yaml section


def _read_floor(path: Path) -> dict[str, float]:
    from ssu_model.eval.metrics import METRIC_NAMES

    if not path.is_file():
        fail(f"noise floor file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}")
    if isinstance(doc, dict) and isinstance(doc.get("floor"), dict):  # benchmarks/noise_floor.py's file
        doc = doc["floor"]
    if not isinstance(doc, dict):
        fail(f"{path}: the noise floor must be a JSON object {{metric: absolute floor}}")
    floors = {}
    for name, v in doc.items():
        if name not in METRIC_NAMES:
            fail(f"{path}: unknown metric {name!r} (one of {', '.join(METRIC_NAMES)})")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or v == float("inf"):
            fail(f"{path}: the floor of {name} must be a finite number >= 0, got {v!r}")
        floors[name] = float(v)
    return floors


def _pipeline(value: str) -> str:
    p = Path(value.strip() or ".")
    if p.is_absolute() or ".." in p.parts:
        raise typer.BadParameter(f"must be a folder inside the repository (e.g. pipelines/mosi-av), got {value!r}")
    return p.as_posix()


def _metric_names(values: list[str] | None) -> list[str]:
    from ssu_model.eval.metrics import METRIC_NAMES

    if not values:
        return list(METRIC_NAMES)
    names: list[str] = []
    for v in values:
        for name in (x.strip() for x in v.split(",")):
            if name and name not in METRIC_NAMES:
                raise typer.BadParameter(f"unknown metric {name!r} (one of {', '.join(METRIC_NAMES)})",
                                         param_hint="--metric")
            if name and name not in names:
                names.append(name)
    if not names:
        raise typer.BadParameter("no metric named", param_hint="--metric")
    return names


# ---- output

def _markdown(doc: dict) -> str:
    from ssu_model.eval.diff_table import markdown_table

    a, b = doc["sides"]["a"], doc["sides"]["b"]
    s = doc["settings"]
    boot = doc["bootstrap"]

    def seeds(side):
        return ", ".join(str(x) for x in side["seeds"])

    lines = [f"**a**: {a['description']}; seeds {seeds(a)}",
             f"**b**: {b['description']}; seeds {seeds(b)}", "", markdown_table(doc).rstrip("\n")]
    conf = int(round(100 * (1 - s["alpha"])))
    if boot is not None:
        how = {"paired": "and of the seeds: one draw for both sides, which ran the same seeds",
               "independent": "and of each side's seeds, drawn independently: the seed sets differ",
               "none": "the seeds not resampled"}[boot["seed_resampling"]]
        ci = (f"CI: {conf}% percentile interval of b − a over {boot['n_boot']} paired bootstrap resamples of the "
              f"{boot['n_utterances']} test utterances both sides scored, {how}.")
    else:
        ci = "CI: none (no bootstrap: see the notes); the verdict rests on p (seeds)."
    tests = sorted({r["seed_test"]["test"] for r in doc["metrics"].values()})
    test = {"paired t": f"paired t-test over the {len(a['seeds'])} matching seeds",
            "Welch t": "Welch's t-test over the per-seed values",
            "none": "no test (a side has a single seed)"}
    floor = s["noise_floor"]
    floor_txt = ("none" if not floor else ", ".join(f"{k} {v:g}" for k, v in floor.items()))
    evidence = "the CI excludes 0" if boot is not None else f"p (seeds) < {s['alpha']:g}"
    lines += ["", f"Mean ± std over seeds (std with ddof 0, as MMSA). Acc/F1 in %, their differences in "
                  f"percentage points; ↓: lower is better. {ci} p (seeds): "
                  f"{'; '.join(test[t] for t in tests)}. Verdict for b against a: better/worse when {evidence} "
                  f"and |b − a| exceeds the noise floor ({floor_txt}), else within noise."]
    if doc["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


@stage_command
def main(
    a_rev: str | None = typer.Argument(
        None, metavar="A_REV", show_default=False,
        help="side a's git revision, or 'workspace' (default: HEAD when both sides are the same variant and "
             "pipeline, as dvc metrics diff; else workspace)"),
    b_rev: str = typer.Argument(WORKSPACE, metavar="B_REV", help="side b's git revision, or 'workspace'"),
    variant: str = typer.Option("full", "--variant", "-v", help="side a's variant (and b's unless --variant-b)"),
    variant_b: str | None = typer.Option(None, "--variant-b", help="side b's variant (default: --variant)"),
    pipeline: str = typer.Option(".", "--pipeline", "-p",
                                 help="side a's pipeline folder: '.' the sample, or e.g. pipelines/mosi-av "
                                      "(and b's unless --pipeline-b)"),
    pipeline_b: str | None = typer.Option(None, "--pipeline-b", help="side b's pipeline folder (default: --pipeline)"),
    metric: list[str] | None = typer.Option(
        None, "--metric", "-m", help="metrics to show (repeat or comma-separate; default all eight)"),
    n_boot: int = typer.Option(2000, "--n-boot", min=0, help="bootstrap resamples (0: per-seed test only)"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap's random draws"),
    alpha: float = typer.Option(0.05, "--alpha", help="1 - the CI level (0.05: 95% CI); the p threshold "
                                "without bootstrap"),
    noise_floor: Path | None = typer.Option(
        None, "--noise-floor", help="JSON {metric: absolute floor} (or benchmarks/noise_floor.py's file): smaller "
                                    "differences are within noise (default: <pipeline>/noise_floor.json when present)"),
    measured_floor: bool = typer.Option(True, "--measured-floor/--no-measured-floor",
                                        help="use side a's pipeline's measured noise_floor.json when no --noise-floor"),
    resample_seeds: bool = typer.Option(True, "--resample-seeds/--no-resample-seeds",
                                        help="bootstrap the seeds as well as the utterances"),
    require_bootstrap: bool = typer.Option(False, "--require-bootstrap",
                                           help="fail instead of falling back when predictions are missing"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write the JSON report here"),
    json_output: bool = typer.Option(False, "--json", help="print the JSON report instead of the table"),
    repo: Path = typer.Option(Path("."), "--repo", help="repository root (git + DVC)"),
) -> None:
    """Compare two runs per metric: mean ± std per side, b − a, and whether it is more than noise
    (per-seed t-test, paired bootstrap over test utterances)."""
    names = _metric_names(metric)
    if not 0.0 < alpha < 1.0:
        raise typer.BadParameter(f"must be between 0 and 1 (exclusive), got {alpha}", param_hint="--alpha")
    pipe_a = _pipeline(pipeline)
    pipe_b = _pipeline(pipeline_b) if pipeline_b is not None else pipe_a
    var_b = variant_b or variant
    if out is not None and out.suffix.lower() != ".json":
        raise typer.BadParameter("the file name must end in .json", param_hint="--out")
    if a_rev is None:
        a_rev = "HEAD" if (var_b, pipe_b) == (variant, pipe_a) else WORKSPACE
    root = repo
    if not root.is_dir():
        fail(f"repository folder not found: {root}")
    floors, notes = _noise_floor(root, pipe_a, noise_floor, measured_floor)
    sides = [Side("a", a_rev, resolve_revision(root, a_rev), pipe_a, variant),
             Side("b", b_rev, resolve_revision(root, b_rev), pipe_b, var_b)]
    notes += _load_sides(root, sides, n_boot, require_bootstrap)
    report = _compare(sides, names, n_boot=n_boot, rng_seed=seed, alpha=alpha, resample_seeds=resample_seeds,
                      floors=floors)
    notes += _bootstrap_notes(report["bootstrap"], n_boot)
    doc = _report_doc(root, sides, report, notes)
    _emit(doc, out, json_output)


def _noise_floor(root: Path, pipe_a: str, noise_floor: Path | None, measured: bool) -> tuple[dict, list[str]]:
    """({metric: floor}, notes): --noise-floor, else side a's pipeline's measured noise_floor.json."""
    notes = []
    if noise_floor is None and measured and (root / pipe_a / NOISE_FLOOR_FILE).is_file():
        noise_floor = root / pipe_a / NOISE_FLOOR_FILE
        notes.append(f"noise floor: {pipe_a}/{NOISE_FLOOR_FILE} (measured machine-to-machine change; "
                     "--no-measured-floor ignores it)")
    return (_read_floor(noise_floor) if noise_floor is not None else {}), notes


def _load_sides(root: Path, sides: list[Side], n_boot: int, require_bootstrap: bool) -> list[str]:
    """Read each side's metrics (and predictions when bootstrapping); the notes that gives."""
    notes = []
    for side in sides:
        load_metrics(root, side)
    if n_boot > 0:
        for side in sides:
            load_predictions(root, side)
            if side.predictions_note:
                if require_bootstrap:
                    fail(f"side {side.name}: no usable predictions: {side.predictions_note}")
                notes.append(f"side {side.name}: no bootstrap: {side.predictions_note}")
    a, b = sides
    if (a.commit, a.pipeline, a.variant) == (b.commit, b.pipeline, b.variant):
        notes.append("both sides are the same files")
    return notes


def _compare(sides: list[Side], names: list[str], *, n_boot: int, rng_seed: int, alpha: float,
             resample_seeds: bool, floors: dict) -> dict:
    from ssu_model.errors import DataError
    from ssu_model.eval.significance import compare_sides

    a, b = sides
    preds_a, preds_b = a.predictions, b.predictions
    if preds_a is None or preds_b is None:
        preds_a = preds_b = None
    else:
        log(f"diff: bootstrap: {n_boot} resamples of the test utterances, seeds {len(preds_a.seeds)} + "
            f"{len(preds_b.seeds)} ...")
    try:
        return compare_sides(a.metrics, b.metrics, preds_a=preds_a, preds_b=preds_b, metrics=names,
                             n_boot=n_boot, rng_seed=rng_seed, alpha=alpha, resample_seeds=resample_seeds,
                             noise_floor=floors)
    except DataError as exc:
        if preds_a is not None and "share no test utterance" in str(exc):
            fail(f"{exc}; --n-boot 0 compares the per-seed metrics only")
        raise


def _bootstrap_notes(boot: dict | None, n_boot: int) -> list[str]:
    notes = []
    if boot is not None:
        if boot["ids_only_in_a"] or boot["ids_only_in_b"]:
            notes.append(f"the bootstrap uses the {boot['n_utterances']} utterances both sides scored "
                         f"({boot['ids_only_in_a']} only in a, {boot['ids_only_in_b']} only in b); its verdict "
                         "judges the difference on those, the b − a column is the metrics JSON's")
        if boot["id_matching"] != "exact":
            notes.append(f"utterances paired by {boot['id_matching']}")
        if boot["labels_differ"]:
            notes.append(f"{boot['labels_differ']} shared utterance ids have different labels on the two sides "
                         "(each side is scored against its own)")
    if n_boot == 0:
        notes.append("--n-boot 0: no bootstrap, the verdict rests on the per-seed test")
    return notes


def _report_doc(root: Path, sides: list[Side], report: dict, notes: list[str]) -> dict:
    head = head_commit(root) if any(s.commit is None for s in sides) else None
    doc = {
        "sides": {s.name: {"rev": s.rev, "commit": s.commit, "head": head if s.commit is None else None,
                           "pipeline": s.pipeline, "variant": s.variant, "metrics": s.metrics_path,
                           "predictions": s.predictions_path,
                           "predictions_used": report["bootstrap"] is not None,
                           "predictions_note": s.predictions_note,
                           "seeds": report["seeds"][s.name],
                           "n_utterances": len(s.predictions.ids) if s.predictions is not None else None,
                           "description": s.describe()}
                  for s in sides},
        **report,
        "notes": notes,
    }
    del doc["seeds"]
    return doc


def _emit(doc: dict, out: Path | None, json_output: bool) -> None:
    """The JSON report to --out (atomically) and the table (or the JSON) to stdout."""
    text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    if json_output:
        typer.echo(text, nl=False)
        for n in doc["notes"]:
            log(f"diff: note: {n}")
    else:
        typer.echo(_markdown(doc), nl=False)
    if out is not None:
        log(f"diff: wrote {out}")
