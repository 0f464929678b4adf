"""`diff` and ssu_model/eval/significance.py on constructed cases whose answer is known.

Library cases: identical sides, a shift toward the labels, pure noise (false-positive rate), a
bootstrap CI with an analytic answer, paired vs unpaired seeds, the direction of MAE, the noise
floor. CLI cases: two commits of a tiny git repo (predictions in git at one, in a DVC cache at the
other), the workspace, the fallbacks and the error paths, and the sample's own metrics.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ssu_model.errors import DataError
from ssu_model.eval.diff_table import markdown_table
from ssu_model.eval.metrics import METRIC_NAMES, metrics_report
from ssu_model.eval.significance import (
    BETTER,
    NOT_TESTED,
    WITHIN_NOISE,
    WORSE,
    compare_sides,
    paired_bootstrap,
    per_seed_metrics,
    seed_predictions,
    seed_test,
    verdict,
)
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()


# ---- constructed sides

def labels(n: int, rng_seed: int = 0) -> np.ndarray:
    """Labels in [-3, 3] like MOSI, exactly representable in float32 (as the parquet stores them)."""
    y = np.random.default_rng(rng_seed).uniform(-3, 3, n)
    return y.astype(np.float32).astype(np.float64)


def side(y: np.ndarray, preds: dict[int, np.ndarray], ids=None):
    """SeedPredictions from {seed: predictions} over utterances ids (default u000, u001, ...)."""
    ids = ids or [f"u{i:03d}" for i in range(len(y))]
    seeds = sorted(preds)
    return seed_predictions(
        np.repeat(seeds, len(y)), ids * len(seeds), np.tile(y, len(seeds)),
        np.concatenate([np.asarray(preds[s], dtype=np.float32).astype(np.float64) for s in seeds]))


def doc(preds) -> dict:
    """The contract-D metrics JSON `evaluate` would write for these predictions."""
    per = per_seed_metrics(preds)
    return metrics_report("v", list(preds.seeds), per)


def run_compare(a, b, **kw):
    kw.setdefault("n_boot", 300)
    return compare_sides(doc(a), doc(b), preds_a=a, preds_b=b, **kw)


# ---- statistics

def test_identical_sides_differ_by_nothing():
    y = labels(80)
    rng = np.random.default_rng(1)
    a = side(y, {s: y + rng.normal(0, 0.7, y.size) for s in (0, 1, 2)})
    rep = run_compare(a, a)
    for name in METRIC_NAMES:
        r = rep["metrics"][name]
        assert r["diff"] == 0.0 and r["bootstrap"]["point"] == 0.0
        assert r["bootstrap"]["ci_low"] == 0.0 == r["bootstrap"]["ci_high"]  # contains 0
        assert not r["bootstrap"]["excludes_zero"]
        assert r["seed_test"]["test"] == "paired t" and r["seed_test"]["p"] == 1.0
        assert r["verdict"] == WITHIN_NOISE
    assert rep["bootstrap"]["seed_resampling"] == "paired" and rep["bootstrap"]["n_utterances"] == 80


def test_a_shift_toward_the_labels_is_better_and_a_shift_away_worse():
    """b = a moved 0.8 toward the labels on every utterance (a overshoots by ~1): MAE, Has0, Acc7 better
    with a CI on the right side of 0; Corr is unchanged by a shift (diff ~1e-16: within noise)."""
    y = labels(120)
    rng = np.random.default_rng(2)
    base = {s: y + 1.0 + rng.normal(0, 0.1, y.size) for s in (0, 1, 2)}
    a = side(y, base)
    b = side(y, {s: p - 0.8 for s, p in base.items()})
    rep = run_compare(a, b)
    m = rep["metrics"]
    assert m["MAE"]["diff"] == pytest.approx(-0.8, abs=0.01)
    assert m["MAE"]["bootstrap"]["ci_high"] < 0 and m["MAE"]["verdict"] == BETTER
    for name in ("Has0_acc_2", "Non0_acc_2", "Acc7"):
        assert m[name]["diff"] > 0 and m[name]["bootstrap"]["ci_low"] > 0 and m[name]["verdict"] == BETTER, name
    assert abs(m["Corr"]["diff"]) < 1e-6 and m["Corr"]["verdict"] == WITHIN_NOISE
    back = run_compare(b, a)["metrics"]  # the same pair the other way round
    assert back["MAE"]["verdict"] == WORSE and back["MAE"]["bootstrap"]["ci_low"] > 0
    assert back["Has0_acc_2"]["verdict"] == WORSE and back["Has0_acc_2"]["bootstrap"]["ci_high"] < 0


def test_pure_noise_is_within_noise_at_about_the_alpha_rate():
    """a and b: the labels plus independent errors of the same distribution (exchangeable, so no
    metric truly differs; b = a + noise would not do: by Jensen it is truly worse in MAE).
    20 draws x 8 metrics at alpha 0.05: about 5% false "differences" expected; allow up to 15%."""
    false_pos, mae_fp = 0, 0
    for draw in range(20):
        rng = np.random.default_rng(100 + draw)
        y = labels(150, rng_seed=100 + draw)
        a = side(y, {0: y + rng.normal(0, 0.8, y.size)})
        b = side(y, {0: y + rng.normal(0, 0.8, y.size)})
        rep = run_compare(a, b, rng_seed=draw)
        verdicts = [r["verdict"] for r in rep["metrics"].values()]
        false_pos += sum(v != WITHIN_NOISE for v in verdicts)
        mae_fp += rep["metrics"]["MAE"]["verdict"] != WITHIN_NOISE
    assert false_pos / 160 <= 0.15, false_pos
    assert mae_fp <= 4, mae_fp


def test_bootstrap_ci_equals_the_analytic_one():
    from scipy import stats

    y = labels(100)
    # Constant offsets: every resample has MAE a = 1.0, b = 0.5 -> the CI is the point -0.5.
    rep = paired_bootstrap(side(y, {0: y + 1.0}), side(y, {0: y + 0.5}), n_boot=200)
    mae = rep["metrics"]["MAE"]
    assert mae["ci_low"] == pytest.approx(-0.5, abs=1e-6) and mae["ci_high"] == pytest.approx(-0.5, abs=1e-6)
    # b's absolute error is 1 on half the utterances and 0 on the rest, a's is 1 everywhere: the
    # resampled MAE difference is Binomial(100, 0.5)/100 - 1 exactly, so the 95% percentile CI is
    # the binomial's 2.5% and 97.5% quantiles (40 and 60) / 100 - 1, to the bootstrap's precision.
    d = np.zeros(100)
    d[::2] = 1.0
    rep = paired_bootstrap(side(y, {0: y + 1.0}), side(y, {0: y + d}), n_boot=4000, rng_seed=3)
    mae = rep["metrics"]["MAE"]
    lo = stats.binom.ppf(0.025, 100, 0.5) / 100 - 1
    hi = stats.binom.ppf(0.975, 100, 0.5) / 100 - 1
    assert (lo, hi) == pytest.approx((-0.60, -0.40))
    assert mae["point"] == pytest.approx(-0.5)
    assert abs(mae["ci_low"] - lo) <= 0.0101 and abs(mae["ci_high"] - hi) <= 0.0101, mae


def test_paired_seeds_cancel_seed_noise_unpaired_seeds_keep_it():
    """Seed s overshoots by c_s = 1, 2, 3 on both sides; b is 0.1 closer on every seed. Same seeds:
    the paired t-test and the seed-paired bootstrap see a sure 0.1 gain. Different seeds (3, 4, 5):
    Welch and the independent seed draws see 0.1 against a seed spread of ~0.8: within noise."""
    y = labels(60)
    a = side(y, {s: y + c for s, c in zip((0, 1, 2), (1.0, 2.0, 3.0))})
    b_same = side(y, {s: y + c - 0.1 for s, c in zip((0, 1, 2), (1.0, 2.0, 3.0))})
    b_other = side(y, {s: y + c - 0.1 for s, c in zip((3, 4, 5), (1.0, 2.0, 3.0))})

    paired = run_compare(a, b_same)
    assert paired["bootstrap"]["seed_resampling"] == "paired"
    mae = paired["metrics"]["MAE"]
    assert mae["seed_test"]["test"] == "paired t" and mae["seed_test"]["p"] < 1e-6
    assert mae["bootstrap"]["ci_low"] == pytest.approx(-0.1, abs=1e-6) == mae["bootstrap"]["ci_high"]
    assert mae["verdict"] == BETTER

    unpaired = run_compare(a, b_other)
    assert unpaired["bootstrap"]["seed_resampling"] == "independent"
    mae = unpaired["metrics"]["MAE"]
    assert mae["seed_test"]["test"] == "Welch t" and mae["seed_test"]["p"] > 0.5
    assert mae["bootstrap"]["ci_low"] < 0 < mae["bootstrap"]["ci_high"] and mae["verdict"] == WITHIN_NOISE
    # Without seed resampling the seed spread is invisible: the same case then reads "better".
    fixed = run_compare(a, b_other, resample_seeds=False)["metrics"]["MAE"]
    assert fixed["bootstrap"]["ci_high"] < 0 and fixed["verdict"] == BETTER


def test_seed_test_against_scipy_and_degenerate_cases():
    from scipy import stats

    a = {0: 0.80, 1: 0.86, 2: 0.83}
    b = {0: 0.75, 1: 0.84, 2: 0.76}
    t = seed_test(a, b)
    assert t["test"] == "paired t" and t["df"] == 2.0
    assert t["p"] == pytest.approx(stats.ttest_rel([0.75, 0.84, 0.76], [0.80, 0.86, 0.83]).pvalue)
    w = seed_test(a, {3: 0.75, 4: 0.84})
    assert w["test"] == "Welch t"
    assert w["p"] == pytest.approx(stats.ttest_ind([0.75, 0.84], [0.80, 0.86, 0.83], equal_var=False).pvalue)
    assert seed_test({0: 1.0}, {0: 2.0}) == {"test": "none", "p": None, "statistic": None, "df": None,
                                             "n_a": 1, "n_b": 1}
    assert seed_test({0: 1.0, 1: 1.0}, {2: 1.0, 3: 1.0})["p"] == 1.0  # no spread, same mean
    assert seed_test({0: 1.0, 1: 1.0}, {2: 2.0, 3: 2.0})["p"] == 0.0  # no spread, different means


def test_rounding_size_differences_are_no_difference_in_the_seed_test_and_the_table():
    """The same predictions scored twice can give a Corr off in the 16th digit. Seen on MOSEI: a
    paired p of 0.009 and "-2.2e-16" in the table for two runs with byte-identical predictions."""
    a = {0: 0.6943, 1: 0.7051, 2: 0.6989, 3: 0.7012, 4: 0.7004}
    b = {s: float(np.nextafter(v, 0.0 if s % 2 else 1.0)) for s, v in a.items()}  # +-1 ulp
    shifted = {s: float(np.nextafter(v, 0.0)) for s, v in a.items()}  # a constant 1-ulp shift
    for other in (b, shifted):
        assert other != a
        t = seed_test(a, other)
        assert t["test"] == "paired t" and t["p"] == 1.0
    assert seed_test({0: 0.7, 1: 0.7}, {2: float(np.nextafter(0.7, 1.0)), 3: 0.7})["p"] == 1.0  # Welch
    y = labels(60)
    rng = np.random.default_rng(5)
    preds = side(y, {s: y + rng.normal(0, 0.7, y.size) for s in (0, 1, 2)})
    da, db = doc(preds), doc(preds)
    for seed_metrics in db["per_seed"].values():
        seed_metrics["Corr"] -= 3e-16  # a few ulps
    rep = compare_sides(da, db)
    corr = rep["metrics"]["Corr"]
    assert corr["diff"] != 0.0 and corr["seed_test"]["p"] == 1.0 and corr["verdict"] == WITHIN_NOISE
    row = next(line for line in markdown_table(rep).splitlines() if line.startswith("| Corr"))
    assert row.split("|")[4].strip() == "+0.0000" and row.split("|")[6].strip() == "1.000"


def test_verdict_direction_evidence_and_floor():
    # MAE: lower is better; every other metric: higher is better.
    assert verdict("MAE", -0.1, ci=(-0.2, -0.05)) == BETTER
    assert verdict("MAE", 0.1, ci=(0.05, 0.2)) == WORSE
    assert verdict("Corr", 0.1, ci=(0.05, 0.2)) == BETTER
    assert verdict("Acc7", -0.1, ci=(-0.2, -0.05)) == WORSE
    assert verdict("MAE", -0.1, ci=(-0.2, 0.05)) == WITHIN_NOISE  # CI contains 0
    assert verdict("MAE", -0.1, ci=(0.01, 0.2)) == WITHIN_NOISE  # CI on the other side of the point
    assert verdict("MAE", -1e-12, ci=(-1e-12, -1e-12)) == WITHIN_NOISE  # float rounding, not a difference
    assert verdict("MAE", -0.1, ci=(-0.2, -0.05), floor=0.1) == WITHIN_NOISE  # |diff| must exceed the floor
    assert verdict("MAE", -0.1, ci=(-0.2, -0.05), floor=0.09) == BETTER
    # Without a bootstrap: the per-seed p.
    assert verdict("Corr", 0.1, p=0.01) == BETTER and verdict("Corr", 0.1, p=0.2) == WITHIN_NOISE
    assert verdict("Corr", 0.1, p=0.04, alpha=0.01) == WITHIN_NOISE
    assert verdict("Corr", 0.1) == NOT_TESTED


def test_noise_floor_turns_a_tiny_sure_difference_into_noise():
    y = labels(80)
    a = side(y, {0: y + 1.0, 1: y + 1.0})
    b = side(y, {0: y + 0.999, 1: y + 0.999})  # MAE 0.001 lower on every utterance and seed
    plain = run_compare(a, b)["metrics"]["MAE"]
    assert plain["diff"] == pytest.approx(-0.001, abs=1e-6) and plain["verdict"] == BETTER
    floored = run_compare(a, b, noise_floor={"MAE": 0.01})
    assert floored["metrics"]["MAE"]["verdict"] == WITHIN_NOISE
    assert floored["metrics"]["MAE"]["noise_floor"] == 0.01 and floored["settings"]["noise_floor"] == {"MAE": 0.01}


def test_bootstrap_uses_shared_ids_and_rejects_disjoint_ones():
    y = labels(40)
    ids = [f"u{i:03d}" for i in range(40)]
    a = side(y, {0: y + 0.5}, ids)
    b = side(y[10:], {0: y[10:] + 0.5}, ids[10:])
    rep = paired_bootstrap(a, b, n_boot=50)
    assert (rep["n_utterances"], rep["ids_only_in_a"], rep["ids_only_in_b"]) == (30, 10, 0)
    other = side(y, {0: y}, [f"x{i}" for i in range(40)])
    with pytest.raises(DataError, match="share no test utterance id"):
        paired_bootstrap(a, other, n_boot=50)
    assert rep["id_matching"] == "exact"


def test_bootstrap_pairs_the_two_mosi_namings_of_a_clip():
    """mosi-av (MMSA pickle) names a clip '<video>$_$<clip>', mosi-text (label CSV) '<video>_<clip>'."""
    y = labels(40)
    a = side(y, {0: y + 0.5}, [f"v_{i % 7}$_${i}" for i in range(40)])
    b = side(y[5:], {0: y[5:]}, [f"v_{i % 7}_{i}" for i in range(5, 40)])
    rep = paired_bootstrap(a, b, n_boot=50)
    assert (rep["n_utterances"], rep["ids_only_in_a"], rep["ids_only_in_b"]) == (35, 5, 0)
    assert rep["id_matching"].startswith("canonical") and rep["labels_differ"] == 0
    assert rep["metrics"]["MAE"]["point"] == pytest.approx(-0.5)
    # two ids of one side that would read alike are not merged: no pairing, the usual error
    clash = side(y[:2], {0: y[:2]}, ["a$_$b_c", "a_b$_$c"])  # both would read 'a_b_c'
    with pytest.raises(DataError, match="share no test utterance id"):
        paired_bootstrap(clash, side(y[:2], {0: y[:2]}, ["a_b_c", "z_1"]), n_boot=10)


def test_seed_predictions_rejects_an_incomplete_or_inconsistent_table():
    with pytest.raises(DataError, match="seed 1 lacks utterance 'b'"):
        seed_predictions([0, 0, 1], ["a", "b", "a"], [1.0, 2.0, 1.0], [0.0, 0.0, 0.0])
    with pytest.raises(DataError, match="twice"):
        seed_predictions([0, 0], ["a", "a"], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(DataError, match="different labels"):
        seed_predictions([0, 1], ["a", "a"], [1.0, 2.0], [0.0, 0.0])
    with pytest.raises(DataError, match="NaN"):
        seed_predictions([0], ["a"], [1.0], [float("nan")])


def test_seed_grid_reads_the_predictions_frame_as_evaluate_writes_it():
    """diff's path: the Parquet table (int32 seeds, float32 values) straight into the grid; a null
    prediction or id is refused like NaN."""
    import polars as pl

    from ssu_model.eval.significance import seed_grid

    frame = pl.DataFrame({"seed": [1, 0, 1, 0], "id": ["b", "a", "a", "b"], "label": [2.0, 1.0, 1.0, 2.0],
                          "prediction": [0.5, 0.1, 0.2, 0.3]},
                         schema={"seed": pl.Int32, "id": pl.String, "label": pl.Float32, "prediction": pl.Float32})
    grid = seed_grid(frame)
    assert grid.seeds == (0, 1) and grid.ids == ("a", "b") and grid.labels.tolist() == [1.0, 2.0]
    np.testing.assert_allclose(grid.predictions, [[0.1, 0.3], [0.2, 0.5]], rtol=1e-6)
    with pytest.raises(DataError, match="NaN"):
        seed_grid(frame.with_columns(pl.Series("prediction", [0.5, None, 0.2, 0.3], dtype=pl.Float32)))
    with pytest.raises(DataError, match="seed or id is empty"):
        seed_grid(frame.with_columns(pl.Series("id", ["b", None, "a", "b"])))


def test_the_bootstrap_is_deterministic():
    y = labels(50)
    rng = np.random.default_rng(5)
    a = side(y, {0: y + rng.normal(0, 1, 50), 1: y + rng.normal(0, 1, 50)})
    b = side(y, {0: y + rng.normal(0, 1, 50), 1: y + rng.normal(0, 1, 50)})
    first = json.dumps(run_compare(a, b, rng_seed=7), sort_keys=True)
    assert first == json.dumps(run_compare(a, b, rng_seed=7), sort_keys=True)
    assert first != json.dumps(run_compare(a, b, rng_seed=8), sort_keys=True)


# ---- the command on a tiny git + DVC repository

def git(repo, *args) -> str:
    res = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                          "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, check=True)
    return res.stdout.strip()


def write_run(root, variant, preds, pipeline=".") -> tuple[str, bytes]:
    """metrics/<variant>.json and reports/predictions/<variant>.parquet as `evaluate` writes them."""
    base = root / pipeline
    (base / "metrics").mkdir(parents=True, exist_ok=True)
    (base / "metrics" / f"{variant}.json").write_text(json.dumps(doc(preds), indent=2, sort_keys=True) + "\n")
    n = len(preds.ids)
    table = pa.table({
        "seed": pa.array(np.repeat(preds.seeds, n), pa.int32()),
        "id": pa.array(list(preds.ids) * len(preds.seeds), pa.string()),
        "label": pa.array(np.tile(preds.labels, len(preds.seeds)), pa.float32()),
        "prediction": pa.array(preds.predictions.reshape(-1), pa.float32()),
    })
    out = base / "reports" / "predictions" / f"{variant}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return str(out.relative_to(root)), out.read_bytes()


@pytest.fixture
def repo(tmp_path):
    """Commit 1: full overshoots by 1, its predictions committed to git. Commit 2: full overshoots by
    0.5, its predictions a DVC output (dvc.lock + the local cache only, git-ignored)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    y = labels(60)
    first = side(y, {s: y + 1.0 + 0.01 * s for s in (0, 1)})
    second = side(y, {s: y + 0.5 + 0.01 * s for s in (0, 1)})
    write_run(root, "full", first)
    git(root, "add", ".")
    git(root, "commit", "-qm", "one")
    rel, data = write_run(root, "full", second)
    git(root, "rm", "-q", "--cached", rel)
    (root / ".gitignore").write_text(f"/{rel}\n/.dvc/cache\n")
    md5 = hashlib.md5(data).hexdigest()
    cached = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    (root / "dvc.lock").write_text(
        f"schema: '2.0'\nstages:\n  evaluate@full:\n    cmd: python -m stages evaluate --variant full\n"
        f"    outs:\n    - path: {rel}\n      hash: md5\n      md5: {md5}\n      size: {len(data)}\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "two")
    return root


def diff(root, *args):
    return runner.invoke(app, ["diff", "--repo", str(root), "--n-boot", "200", *args])


def test_two_commits_from_git_and_the_dvc_cache(repo, tmp_path):
    out = tmp_path / "d.json"
    r = diff(repo, "HEAD~1", "HEAD", "--out", str(out))
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["sides"]["a"]["commit"] == git(repo, "rev-parse", "HEAD~1")
    assert rep["sides"]["b"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert rep["sides"]["a"]["predictions_used"] and rep["notes"] == []
    assert rep["bootstrap"]["n_utterances"] == 60 and rep["bootstrap"]["seed_resampling"] == "paired"
    mae = rep["metrics"]["MAE"]
    assert mae["diff"] == pytest.approx(-0.5, abs=1e-6) and mae["verdict"] == BETTER
    assert mae["bootstrap"]["ci_high"] < 0
    # The markdown table: one row per metric, the verdict at the end.
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| MAE")]
    assert rows == ["| MAE ↓ | 1.0050 ± 0.0050 | 0.5050 ± 0.0050 | -0.5000 | [-0.5000, -0.5000] | <0.001 | better |"]
    # Same inputs, byte-identical JSON (and --json prints the same document).
    out2 = tmp_path / "d2.json"
    assert diff(repo, "HEAD~1", "HEAD", "--out", str(out2)).exit_code == 0
    assert out.read_bytes() == out2.read_bytes()
    j = diff(repo, "HEAD~1", "HEAD", "--json")
    assert j.exit_code == 0 and j.stdout == out.read_text()


def test_workspace_side_and_the_fallbacks(repo, tmp_path):
    # Default: HEAD against the workspace, where the predictions are a DVC output not checked out.
    (repo / "reports" / "predictions" / "full.parquet").unlink()
    r = diff(repo, "--out", str(tmp_path / "d.json"))
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "d.json").read_text())
    assert rep["sides"]["a"]["rev"] == "HEAD" and rep["sides"]["b"]["commit"] is None
    assert rep["sides"]["b"]["head"] == git(repo, "rev-parse", "HEAD")
    assert rep["bootstrap"] is None and rep["metrics"]["MAE"]["bootstrap"] is None
    assert any("not in the workspace" in n for n in rep["notes"])
    assert "both sides are the same files" not in rep["notes"]  # the workspace is not HEAD's commit
    assert rep["metrics"]["MAE"]["verdict"] == WITHIN_NOISE and rep["metrics"]["MAE"]["diff"] == 0.0
    assert "Notes:" in r.stdout and "CI: none" in r.stdout
    r = diff(repo, "--require-bootstrap")
    assert r.exit_code == 1 and "error: side b: no usable predictions" in r.output
    # A workspace parquet from another run (stale) is not used: it does not reproduce the metrics.
    y = labels(60)
    write_run(tmp_path / "other", "full", side(y, dict.fromkeys((0, 1), y)))
    (repo / "reports" / "predictions" / "full.parquet").write_bytes(
        (tmp_path / "other" / "reports" / "predictions" / "full.parquet").read_bytes())
    r = diff(repo, "--json")
    assert r.exit_code == 0, r.output
    assert "does not reproduce metrics/full.json" in json.loads(r.stdout)["notes"][0]
    # Not in the local cache either (nor anywhere dvc.api can reach): the per-seed test only.
    for f in (repo / ".dvc" / "cache").rglob("*"):
        if f.is_file():
            f.chmod(0o644)
            f.unlink()
    r = diff(repo, "HEAD~1", "HEAD", "--json")
    assert r.exit_code == 0, r.output
    note = json.loads(r.stdout)["notes"][0]
    assert "side b" in note and "local DVC cache" in note


def test_two_variants_and_two_pipelines_in_the_workspace(tmp_path):
    root = tmp_path / "ws"  # not even a git repository: both sides are the workspace
    y = labels(50)
    write_run(root, "full", side(y, dict.fromkeys((0, 1, 2), y + 0.3)))
    write_run(root, "text_only", side(y, dict.fromkeys((0, 1, 2), y + 0.9)))
    write_run(root, "frozen", side(y, dict.fromkeys((0, 1, 2), y + 0.3)), pipeline="pipelines/mosi-text")
    r = diff(root, "--variant", "full", "--variant-b", "text_only", "--metric", "MAE,Corr", "-m", "Acc7")
    assert r.exit_code == 0, r.output
    assert "`full` in the workspace" in r.stdout and "`text_only` in the workspace" in r.stdout
    assert [ln.split(" |")[0] for ln in r.stdout.splitlines() if ln.startswith("| ") and "metric" not in ln] == [
        "| MAE ↓", "| Corr", "| Acc7 (%)"]
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("| MAE")][0].endswith("| worse |")  # 0.9 vs 0.3
    r = diff(root, "--pipeline-b", "pipelines/mosi-text", "--variant-b", "frozen", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["sides"]["b"]["metrics"] == "pipelines/mosi-text/metrics/frozen.json"
    assert rep["metrics"]["MAE"]["verdict"] == WITHIN_NOISE and rep["metrics"]["MAE"]["diff"] == 0.0


def test_the_pipelines_measured_floor_is_used_unless_asked_not_to(tmp_path):
    """<pipeline>/noise_floor.json (benchmarks/noise_floor.py's file) is the default floor: a sure
    0.3 MAE shift stays "worse" under a 0.1 floor and becomes noise under a 0.5 one."""
    root = tmp_path / "ws"
    y = labels(50)
    write_run(root, "full", side(y, dict.fromkeys((0, 1, 2), y + 0.3)))
    write_run(root, "text_only", side(y, dict.fromkeys((0, 1, 2), y + 0.6)))
    args = ("--variant", "full", "--variant-b", "text_only", "--json")
    (root / "noise_floor.json").write_text(json.dumps({"floor": {"MAE": 0.1}, "how": "test"}))
    rep = json.loads(diff(root, *args).stdout)
    assert rep["metrics"]["MAE"]["noise_floor"] == 0.1 and rep["metrics"]["MAE"]["verdict"] == WORSE
    assert rep["notes"][0].startswith("noise floor: ./noise_floor.json")
    (root / "noise_floor.json").write_text(json.dumps({"floor": {"MAE": 0.5}}))
    assert json.loads(diff(root, *args).stdout)["metrics"]["MAE"]["verdict"] == WITHIN_NOISE
    rep = json.loads(diff(root, *args, "--no-measured-floor").stdout)
    assert rep["metrics"]["MAE"]["verdict"] == WORSE and rep["notes"] == []


def test_noise_floor_is_the_largest_change_of_a_seed_mean_over_reruns():
    from ssu_model.eval.noise_floor import noise_floor

    def run(shift, spread=0.0):
        y = labels(40)
        return doc(side(y, {s: y + shift + spread * (s - 1) for s in (0, 1, 2)}))

    ref = {"full": run(0.2, 0.1), "no_anchor": run(0.4)}
    reruns = {"default": {"full": run(0.25, 0.1), "no_anchor": run(0.3)},
              "avx2": {"full": run(0.2, 0.1), "no_anchor": run(0.4), "extra": run(1.0)}}
    nf = noise_floor(ref, reruns)
    assert nf["variants"] == ["full", "no_anchor"] and nf["settings"] == ["avx2", "default"]
    assert nf["machine"]["avx2"]["full"]["MAE"] == pytest.approx(0.0, abs=1e-12)
    assert nf["machine"]["default"]["full"]["MAE"] == pytest.approx(0.05, abs=1e-6)
    assert nf["floor"]["MAE"] == pytest.approx(0.1, abs=1e-6)  # no_anchor 0.4 -> 0.3 on 'default'
    # seed spread: full's per-seed MAE 0.1/0.2/0.3 (std 0.0816), no_anchor's none: mean 0.0408
    assert nf["seed_std"]["MAE"] == pytest.approx(np.std([0.1, 0.2, 0.3]) / 2, abs=1e-6)
    assert nf["seed_sem"]["MAE"] == pytest.approx(nf["seed_std"]["MAE"] / np.sqrt(3), abs=1e-9)
    with pytest.raises(DataError, match="share no variant"):
        noise_floor(ref, {"x": {"other": run(0.1)}})


def test_error_paths(repo, tmp_path):
    r = diff(repo, "nosuchrev")
    assert r.exit_code == 1 and "error: unknown revision 'nosuchrev'" in r.output
    r = diff(repo, "HEAD~1", "HEAD", "--variant", "nosuch")
    assert r.exit_code == 1 and "error: side a: metrics of `nosuch` not found" in r.output
    assert r.output.rstrip().endswith("; variants there: full")  # what the revision does have
    r = diff(repo, "HEAD", "--pipeline-b", "pipelines/x")
    assert r.exit_code == 1 and "pipelines/x/metrics/full.json is not in the workspace" in r.output
    assert "variants there" not in r.output  # no metrics folder: nothing to list
    r = diff(tmp_path / "nowhere")
    assert r.exit_code == 1 and "repository folder not found" in r.output
    (tmp_path / "floor.json").write_text(json.dumps({"MEA": 0.01}))
    r = diff(repo, "--noise-floor", str(tmp_path / "floor.json"))
    assert r.exit_code == 1 and "unknown metric 'MEA'" in r.output
    # No shared utterance: not the same test set.
    y = labels(60)
    write_run(repo, "full", side(y, dict.fromkeys((0, 1), y), [f"x{i}" for i in range(60)]))
    r = diff(repo, "HEAD~1")
    assert r.exit_code == 1 and "share no test utterance id" in r.output and "--n-boot 0" in r.output
    # Bad usage: exit 2.
    assert diff(repo, "--metric", "F1").exit_code == 2
    assert diff(repo, "--alpha", "1.5").exit_code == 2
    assert diff(repo, "--n-boot", "-1").exit_code == 2
    assert diff(repo, "--pipeline", "../elsewhere").exit_code == 2


def test_the_sample_runs_variants_from_their_metrics_alone():
    """The repository's own sample metrics (git-tracked), per-seed test only (no predictions needed)."""
    if not (ROOT / "metrics" / "text_only.json").is_file():
        pytest.skip("the sample's metrics are not in this checkout")
    r = runner.invoke(app, ["diff", "--repo", str(ROOT), "--variant-b", "text_only", "--n-boot", "0", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["sides"]["a"]["rev"] == "workspace" and rep["bootstrap"] is None
    assert set(rep["metrics"]) == set(METRIC_NAMES)
    assert all(m["seed_test"]["test"] == "paired t" for m in rep["metrics"].values())
