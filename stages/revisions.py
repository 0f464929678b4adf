"""One side of a `diff`: a (revision, pipeline folder, variant) and its metrics and predictions.

At a commit the metrics come from git and the predictions from git if tracked there, else from the
local DVC cache through ``<pipeline>/dvc.lock`` of that commit (the ``md5`` of the output), else
through ``dvc.api``. ``workspace`` reads the working tree. Used by stages/diff.py only; errors are
one ``error:`` line (stages.common.fail).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
import subprocess
from pathlib import Path
from typing import Any

from stages.common import fail

WORKSPACE = "workspace"
NOISE_FLOOR_FILE = "noise_floor.json"  # benchmarks/noise_floor.py writes it per pipeline folder
# A recomputed per-seed metric may differ from the JSON's by float rounding only.
CONSISTENCY_TOLERANCE = 1e-6


@dataclasses.dataclass
class Side:
    name: str  # "a" or "b"
    rev: str  # as given; "workspace" = the working tree
    commit: str | None  # full hash; None for the workspace
    pipeline: str  # "." or a folder such as "pipelines/mosi-av"
    variant: str
    metrics: dict | None = None
    predictions: Any = None  # significance.SeedPredictions, or None when unavailable
    predictions_note: str | None = None  # why predictions are unavailable

    def path(self, *parts: str) -> str:
        p = Path(self.pipeline, *parts).as_posix()
        return p[2:] if p.startswith("./") else p

    @property
    def metrics_path(self) -> str:
        return self.path("metrics", f"{self.variant}.json")

    @property
    def predictions_path(self) -> str:
        return self.path("reports", "predictions", f"{self.variant}.parquet")

    @property
    def where(self) -> str:
        return WORKSPACE if self.commit is None else f"{self.rev} ({self.commit[:7]})"

    def describe(self) -> str:
        dvc_yaml = self.path("dvc.yaml")
        at = "in the workspace" if self.commit is None else f"at `{self.rev}` ({self.commit[:7]})"
        return f"`{self.variant}` {at}, pipeline `{dvc_yaml}`"


# ---- git and the DVC cache

def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    except FileNotFoundError:
        fail("git is not installed (needed to read a revision)")


def resolve_revision(root: Path, rev: str) -> str | None:
    """Full commit hash of ``rev``; None for the workspace."""
    if rev == WORKSPACE:
        return None
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        fail(f"{root} is not a git repository: cannot read revision {rev!r}")
    res = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if res.returncode != 0:
        fail(f"unknown revision {rev!r} (not a commit of {root})")
    return res.stdout.decode().strip()


def head_commit(root: Path) -> str | None:
    res = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    return res.stdout.decode().strip() if res.returncode == 0 else None


def _git_blob(root: Path, commit: str, rel: str) -> bytes | None:
    res = _git(root, "cat-file", "blob", f"{commit}:./{rel}")
    return res.stdout if res.returncode == 0 else None


def _lock_entry(lock: dict, pipeline: str, rel: str) -> dict | None:
    """The dvc.lock out whose path is ``rel`` (relative to the root); a lock's paths are relative to
    the stage's wdir: the pipeline folder (wdir .) or the root (this project's pipelines/*: wdir ../..)."""
    want = posixpath.normpath(rel)
    for stage in (lock.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            path = str(out.get("path", ""))
            if want in (posixpath.normpath(path), posixpath.normpath(posixpath.join(pipeline, path))):
                return out
    return None


def _from_dvc(root: Path, side: Side, rel: str) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, why) for a DVC output of ``side``'s commit."""
    import yaml

    lock_rel = side.path("dvc.lock")
    raw = _git_blob(root, side.commit, lock_rel)
    if raw is None:
        return None, f"{rel} is not in git at {side.where} and there is no {lock_rel} there"
    try:
        lock = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        return None, f"{lock_rel} at {side.where} is not valid YAML ({exc})"
    entry = _lock_entry(lock, side.pipeline, rel) if isinstance(lock, dict) else None
    if entry is None or not entry.get("md5"):
        return None, f"{rel} is neither in git nor an output in {lock_rel} at {side.where}"
    md5 = str(entry["md5"])
    cache = root / ".dvc" / "cache"
    for path in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):  # DVC 3, DVC 2
        if path.is_file():
            data = path.read_bytes()
            if hashlib.md5(data).hexdigest() == md5:
                return data, None
    try:  # a configured remote or cache elsewhere
        import dvc.api

        with dvc.api.open(rel, repo=str(root), rev=side.commit, mode="rb") as f:
            data = f.read()
        if hashlib.md5(data).hexdigest() == md5:
            return data, None
    except Exception:  # noqa: BLE001 - any failure means: not available here
        pass
    return None, (f"{rel} at {side.where} (md5 {md5[:8]}…) is in neither git nor the local DVC cache "
                  f"(`dvc fetch` it from a remote, or it was never cached here)")


def _read(root: Path, side: Side, rel: str, dvc_output: bool) -> tuple[bytes | None, str | None]:
    if side.commit is None:
        path = root / rel
        if path.is_file():
            return path.read_bytes(), None
        hint = " (a DVC output: `dvc checkout`/`dvc pull`, or run evaluate)" if dvc_output else ""
        return None, f"{rel} is not in the workspace{hint}"
    data = _git_blob(root, side.commit, rel)
    if data is not None:
        return data, None
    if not dvc_output:
        return None, f"{rel} does not exist at {side.where}"
    return _from_dvc(root, side, rel)


# ---- loading one side

def variants_at(root: Path, side: Side) -> list[str]:
    """The variants with a metrics JSON in ``side``'s pipeline folder, at its commit or in the workspace."""
    folder = side.path("metrics")
    if side.commit is None:
        names = [p.name for p in (root / folder).glob("*.json")]
    else:
        res = _git(root, "ls-tree", "--name-only", f"{side.commit}:./{folder}")
        names = res.stdout.decode().split() if res.returncode == 0 else []
    return sorted(n[:-len(".json")] for n in names if n.endswith(".json"))


def load_metrics(root: Path, side: Side) -> None:
    data, why = _read(root, side, side.metrics_path, dvc_output=False)
    if data is None:
        found = variants_at(root, side)
        there = f"; variants there: {', '.join(found)}" if found else ""
        fail(f"side {side.name}: metrics of `{side.variant}` not found: {why}{there}")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"side {side.name}: {side.metrics_path} at {side.where} is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        fail(f"side {side.name}: {side.metrics_path} at {side.where} is not a JSON object")
    side.metrics = doc


def load_predictions(root: Path, side: Side) -> None:
    from ssu_model.errors import DataError
    from ssu_model.eval.metrics import METRIC_NAMES
    from ssu_model.eval.significance import per_seed_metrics, read_seed_grid

    rel = side.predictions_path
    data, why = _read(root, side, rel, dvc_output=True)
    if data is None:
        side.predictions_note = why
        return
    where = f"side {side.name}: {rel} at {side.where}"
    try:
        preds = read_seed_grid(io.BytesIO(data), where)
    except DataError as exc:
        fail(str(exc))
    # The predictions must be the ones behind the metrics (a stale workspace file would not be).
    json_seeds = sorted(int(s) for s in (side.metrics.get("per_seed") or {}))
    if list(preds.seeds) != json_seeds:
        side.predictions_note = (f"{rel} at {side.where} has seeds {list(preds.seeds)} but "
                                 f"{side.metrics_path} has {json_seeds}: not the same run")
        return
    for seed, got in per_seed_metrics(preds).items():
        want = side.metrics["per_seed"][str(seed)]
        for name in METRIC_NAMES:
            if not isinstance(want.get(name), (int, float)) or abs(got[name] - want[name]) > CONSISTENCY_TOLERANCE:
                side.predictions_note = (f"{rel} at {side.where} does not reproduce {side.metrics_path} "
                                         f"(seed {seed} {name}: {got[name]:.6g} vs {want.get(name)}): "
                                         "not the same run (stale file?)")
                return
    side.predictions = preds
