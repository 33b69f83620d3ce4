"""Every ml.performance metric against scikit-learn's own functions on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from driftline.processor.ml_performance.metrics import classification, regression, roc_auc


def _probabilities(rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    raw = rng.random((rows, classes))
    return raw / raw.sum(axis=1, keepdims=True)


def _check_classification(y_true: list[str], y_pred: list[str]) -> None:
    result = classification(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert result.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert list(result.per_class) == labels
    for i, label in enumerate(labels):
        scores = result.per_class[label]
        assert scores.precision == pytest.approx(precision[i])
        assert scores.recall == pytest.approx(recall[i])
        assert scores.f1 == pytest.approx(f1[i])
        assert scores.support == support[i]
    assert result.precision_macro == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert result.recall_macro == pytest.approx(
        skm.recall_score(y_true, y_pred, average="macro", zero_division=0))
    assert result.f1_macro == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert result.label_counts == {label: int(n) for label, n in zip(labels, support, strict=True)
                                   if n}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_scores_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["cat", "dog", "fox", "owl"]
    y_true = list(rng.choice(classes, 500))
    y_pred = [t if rng.random() < 0.6 else str(rng.choice(classes)) for t in y_true]
    _check_classification(y_true, y_pred)


def test_binary_scores_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    y_true = list(rng.choice(["churned", "stayed"], 300, p=[0.2, 0.8]))
    y_pred = [t if rng.random() < 0.8 else ("stayed" if t == "churned" else "churned")
              for t in y_true]
    _check_classification(y_true, y_pred)


def test_a_class_never_predicted_has_precision_zero_like_zero_division_0() -> None:
    y_true = ["a", "b", "c", "c", "a"]
    y_pred = ["a", "a", "a", "c", "a"]  # "b" is never predicted, "c" once
    _check_classification(y_true, y_pred)
    result = classification(y_true, y_pred)
    assert result.per_class["b"].precision == 0.0
    assert result.per_class["b"].f1 == 0.0


def test_a_predicted_class_without_labels_counts_in_macro_like_sklearn() -> None:
    y_true = ["a", "a", "b"]
    y_pred = ["a", "z", "b"]  # "z" predicted, never true: recall 0 (zero_division=0)
    _check_classification(y_true, y_pred)
    assert "z" not in classification(y_true, y_pred).label_counts


def test_one_row() -> None:
    _check_classification(["a"], ["b"])
    _check_classification(["a"], ["a"])


def test_binary_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    classes = ["no", "yes"]
    y_true = rng.choice(classes, 400)
    # Scores rounded to one decimal: many ties, which sklearn counts half.
    yes = np.round(np.clip(rng.normal(np.where(y_true == "yes", 0.6, 0.4), 0.2), 0, 1), 1)
    scores = np.column_stack([1 - yes, yes])
    result = classification(list(y_true), list(np.where(yes >= 0.5, "yes", "no")), scores,
                            classes)
    assert result.roc_auc_binary is not None
    positive, auc = result.roc_auc_binary
    assert positive == "yes"
    assert auc == pytest.approx(skm.roc_auc_score(y_true == "yes", yes), abs=1e-12)
    assert auc == pytest.approx(skm.roc_auc_score(y_true, yes), abs=1e-12)  # greater label
    assert result.roc_auc_macro is None


def test_binary_roc_auc_from_decision_function_scores() -> None:
    rng = np.random.default_rng(11)
    y_true = rng.choice(["0", "1"], 200)
    margin = rng.normal(np.where(y_true == "1", 1.0, -1.0), 1.5)
    scores = np.column_stack([-margin, margin])
    result = classification(list(y_true), list(np.where(margin > 0, "1", "0")), scores,
                            ["0", "1"])
    assert result.roc_auc_binary is not None
    assert result.roc_auc_binary[1] == pytest.approx(skm.roc_auc_score(y_true, margin))


def test_multiclass_roc_auc_one_vs_rest_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    classes = ["a", "b", "c"]
    y_true = rng.choice(classes, 600)
    scores = _probabilities(rng, 600, 3)
    scores[np.arange(600), np.searchsorted(classes, y_true)] += 0.3
    scores = np.round(scores / scores.sum(axis=1, keepdims=True), 2)  # ties again
    scores[:, 2] = 1 - scores[:, 0] - scores[:, 1]
    y_pred = [classes[i] for i in scores.argmax(axis=1)]
    result = classification(list(y_true), y_pred, scores, classes)
    assert result.roc_auc_macro == pytest.approx(
        skm.roc_auc_score(y_true, scores, multi_class="ovr", average="macro", labels=classes),
        abs=1e-12)
    for i, label in enumerate(classes):
        assert result.roc_auc_per_class[label] == pytest.approx(
            skm.roc_auc_score(y_true == label, scores[:, i]), abs=1e-12)
    assert result.roc_auc_binary is None
    assert result.roc_auc_undefined == ""


def test_roc_auc_undefined_when_the_window_holds_one_class_only() -> None:
    scores = np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])
    result = classification(["yes", "yes", "yes"], ["yes", "yes", "no"], scores, ["no", "yes"])
    assert result.roc_auc_binary is None
    assert "only one class" in result.roc_auc_undefined
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):  # sklearn: NaN
        assert np.isnan(skm.roc_auc_score(["yes", "yes", "yes"], scores[:, 1]))
    # The other metrics are still there.
    assert result.accuracy == pytest.approx(2 / 3)


def test_multiclass_roc_auc_leaves_out_a_class_absent_from_the_labels() -> None:
    rng = np.random.default_rng(9)
    classes = ["a", "b", "c"]
    y_true = rng.choice(["a", "b"], 100)  # "c" never true: its one-vs-rest AUC is undefined
    scores = _probabilities(rng, 100, 3)
    result = classification(list(y_true), list(y_true), scores, classes)
    assert set(result.roc_auc_per_class) == {"a", "b"}
    expected = np.mean([skm.roc_auc_score(y_true == c, scores[:, i])
                        for i, c in enumerate(classes[:2])])
    assert result.roc_auc_macro == pytest.approx(expected)
    assert "c" in result.roc_auc_undefined


def test_roc_auc_of_a_perfect_and_an_inverted_ranking() -> None:
    assert roc_auc(np.array([False, False, True, True]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([True, True, False, False]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5


def test_scores_of_the_wrong_shape_give_no_roc_auc() -> None:
    result = classification(["a", "b"], ["a", "b"], np.array([[0.1, 0.9]]), ["a", "b"])
    assert result.roc_auc_binary is None
    assert "expected 2 rows x 2 classes" in result.roc_auc_undefined


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(100, 20, 400)
    y_pred = y_true + rng.normal(3, 10, 400)
    result = regression(list(y_true), list(y_pred))
    assert result.mae == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert result.rmse == pytest.approx(skm.root_mean_squared_error(y_true, y_pred))
    assert result.r2 == pytest.approx(skm.r2_score(y_true, y_pred))
    assert result.rows == 400


def test_regression_edge_cases_match_sklearn() -> None:
    constant = [5.0, 5.0, 5.0]
    assert regression(constant, constant).r2 == skm.r2_score(constant, constant) == 1.0
    assert regression(constant, [5.0, 6.0, 5.0]).r2 == \
        skm.r2_score(constant, [5.0, 6.0, 5.0]) == 0.0
    worse = regression([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert worse.r2 == pytest.approx(skm.r2_score([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]))
    assert worse.r2 < 0
    single = regression([4.0], [1.0])
    assert (single.mae, single.rmse, single.r2) == (3.0, 3.0, None)  # R² needs two rows


def test_mismatched_lengths_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="as many predictions as labels"):
        classification(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="as many predictions as labels"):
        regression([], [])
