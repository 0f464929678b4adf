"""MMSA metric oracle: hand-computed values for the cases that trip implementations."""

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from ssu_model.errors import DataError
from ssu_model.eval.metrics import (
    METRIC_NAMES,
    aggregate,
    confusion7,
    metrics_report,
    regression_metrics,
    weighted_f1,
)

# One vector that hits every edge case at once (values worked out by hand below):
#   idx 0: label exactly 0, prediction exactly 0   -> dropped from Non0 only
#   idx 1: label 2.5, pred 2.4                      -> both round to 2 (half to even)
#   idx 2: label -0.5, pred exactly 0               -> Has0 mismatch (0 counts >= 0), Non0 match
#   idx 3: label 1.5 (-> 2), pred -0.2 (-> -0)      -> sign mismatch everywhere
#   idx 4: label 3.0, pred 3.6                      -> clipped to 3 for Acc7 (match), 2 for Acc5
#   idx 5: label -2.5 (-> -2), pred -4.0            -> Acc7: -2 vs -3 miss; Acc5: -2 vs -2 hit
#   idx 6: label 0.5 (-> 0), pred 0.5 (-> 0)
Y = [0.0, 2.5, -0.5, 1.5, 3.0, -2.5, 0.5]
P = [0.0, 2.4, 0.0, -0.2, 3.6, -4.0, 0.5]


def test_oracle_vector():
    m = regression_metrics(P, Y)
    # Has0: y>=0 = TTFTTFT, p>=0 = TTTFTFT -> 5/7.
    assert m["Has0_acc_2"] == pytest.approx(5 / 7)
    # Has0 F1: class T (support 5) tp4 fp1 fn1 -> 0.8; class F (support 2) tp1 fp1 fn1 -> 0.5.
    assert m["Has0_F1"] == pytest.approx((5 * 0.8 + 2 * 0.5) / 7)
    # Non0 (idx 0 dropped): y>0 = TFTTFT, p>0 = TFFTFT -> 5/6.
    assert m["Non0_acc_2"] == pytest.approx(5 / 6)
    # Non0 F1: T (support 4) tp3 fp0 fn1 -> 6/7; F (support 2) tp2 fp1 fn0 -> 4/5.
    assert m["Non0_F1"] == pytest.approx((4 * 6 / 7 + 2 * 4 / 5) / 6)
    # Acc7 classes: y 0,2,0,2,3,-2,0 ; p 0,2,0,0,3,-3,0 -> 5/7.
    assert m["Acc7"] == pytest.approx(5 / 7)
    # Acc5 classes: y 0,2,0,2,2,-2,0 ; p 0,2,0,0,2,-2,0 -> 6/7.
    assert m["Acc5"] == pytest.approx(6 / 7)
    # MAE is on the unclipped predictions: 0+.1+.5+1.7+.6+1.5+0 = 4.4.
    assert m["MAE"] == pytest.approx(4.4 / 7)
    assert set(m) == set(METRIC_NAMES)


def test_oracle_matches_sklearn_and_mmsa_formulas():
    """The same vector through MMSA's own formulas (sklearn F1, numpy round)."""
    p, y = np.array(P), np.array(Y)
    m = regression_metrics(p, y)
    nz = y != 0
    assert m["Has0_F1"] == pytest.approx(f1_score(y >= 0, p >= 0, average="weighted"))
    assert m["Non0_F1"] == pytest.approx(f1_score(y[nz] > 0, p[nz] > 0, average="weighted"))
    assert m["Non0_acc_2"] == pytest.approx(accuracy_score(p[nz] > 0, y[nz] > 0))
    assert m["Corr"] == pytest.approx(np.corrcoef(p, y)[0][1])


def test_half_to_even_rounding():
    y = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
    # numpy: 0.5->0, 1.5->2, 2.5->2, -0.5->-0, -1.5->-2, -2.5->-2
    assert regression_metrics([0, 2, 2, 0, -2, -2], y)["Acc7"] == 1.0
    # half-away-from-zero would put every label one class further out: all miss here
    assert regression_metrics([1, 1, 3, -1, -1, -3], y)["Acc7"] == 0.0


def test_zero_predictions_count_positive_in_has0_negative_in_non0():
    y = [-1.0, -2.0, 1.0, 2.0]
    p = [0.0, 0.0, 0.0, 0.0]
    m = regression_metrics(p, y)
    assert m["Has0_acc_2"] == 0.5  # 0 >= 0: "positive", right for the two positive labels
    assert m["Non0_acc_2"] == 0.5  # 0 > 0 is False: "negative", right for the two negative labels
    # constant predictions: Pearson undefined -> 0.0 by decision
    assert m["Corr"] == 0.0


def test_zero_labels_dropped_from_non0_only():
    y = [0.0, 0.0, 1.0, -1.0]
    p = [-1.0, -1.0, 1.0, -1.0]
    m = regression_metrics(p, y)
    assert m["Has0_acc_2"] == 0.5
    assert m["Non0_acc_2"] == 1.0
    assert m["Non0_F1"] == 1.0


def test_clipping_for_acc_not_for_mae():
    y = [3.0, -3.0]
    p = [10.0, -10.0]
    m = regression_metrics(p, y)
    assert m["Acc7"] == 1.0 and m["Acc5"] == 1.0
    assert m["MAE"] == pytest.approx(7.0)


def test_pearson_hand_case_and_signs():
    # y=[1,2,3], p=[1,3,2]: cov 1, var 2 and 2 -> 0.5
    assert regression_metrics([1, 3, 2], [1, 2, 3])["Corr"] == pytest.approx(0.5)
    assert regression_metrics([3, 5, 7], [1, 2, 3])["Corr"] == pytest.approx(1.0)
    assert regression_metrics([-1, -2, -3], [1, 2, 3])["Corr"] == pytest.approx(-1.0)
    assert regression_metrics([1, 2, 3], [2, 2, 2])["Corr"] == 0.0  # constant labels


def test_all_labels_zero_gives_zero_non0():
    m = regression_metrics([1.0, -1.0], [0.0, 0.0])
    assert m["Non0_acc_2"] == 0.0 and m["Non0_F1"] == 0.0
    assert m["Has0_acc_2"] == 0.5


def test_weighted_f1_single_class_truth():
    # truth all positive, one predicted negative: class F has support 0 -> weight 0
    assert weighted_f1([True, True, True], [True, True, False]) == pytest.approx(0.8)
    assert weighted_f1([True, True, True], [True, True, False]) == pytest.approx(
        f1_score([True, True, True], [True, True, False], average="weighted")
    )


@pytest.mark.parametrize("p, y, msg", [([1, 2], [1], "2 predictions for 1 labels"), ([], [], "no predictions"),
                                        ([np.nan], [1.0], "NaN")])
def test_bad_input(p, y, msg):
    with pytest.raises(DataError, match=msg):
        regression_metrics(p, y)


def test_confusion7():
    c = confusion7(P, Y)
    assert c.shape == (7, 7) and c.sum() == len(Y)
    assert np.trace(c) / c.sum() == pytest.approx(regression_metrics(P, Y)["Acc7"])
    # label 1.5 (class 2) predicted -0.2 (class 0): row 2+3, column 0+3
    assert c[5, 3] == 1
    # label -2.5 (class -2) predicted -4 (class -3)
    assert c[1, 0] == 1


def test_aggregate_uses_population_std():
    agg = aggregate({"0": {"MAE": 1.0}, "1": {"MAE": 3.0}})
    assert agg["mean"]["MAE"] == 2.0
    assert agg["std"]["MAE"] == 1.0  # ddof=0 (MMSA); ddof=1 would give 1.414


def test_metrics_report_contract_shape():
    per = {0: regression_metrics(P, Y), 1: regression_metrics([1, 3, 2, 0, 0, 0, 0], Y)}
    rep = metrics_report("full", [0, 1], per)
    assert rep["variant"] == "full" and rep["n_seeds"] == 2 and rep["seeds"] == [0, 1]
    assert set(rep["per_seed"]) == {"0", "1"}
    assert set(rep["mean"]) == set(rep["std"]) == set(METRIC_NAMES)
    assert rep["mean"]["Acc7"] == pytest.approx((per[0]["Acc7"] + per[1]["Acc7"]) / 2)
    json.loads(json.dumps(rep, allow_nan=False))  # valid strict JSON
