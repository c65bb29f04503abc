"""The verdict is a claim: it must hold on bad runs too. Metrics come from the local evaluate modules."""

import numpy as np
import pytest

from lft_core import compute_metrics
from lft_core.report import judge

NAMES = ["ham", "spam"]


def metrics(labels, predictions, names=NAMES):
    return compute_metrics(np.asarray(labels), np.asarray(predictions), names)


@pytest.fixture
def imbalanced():
    """An 88/12 test split, as in the upload that was wrongly called an improvement."""
    labels = np.array([0] * 88 + [1] * 12)
    rng = np.random.default_rng(0)
    return labels, rng.integers(0, 2, len(labels))


def test_a_model_that_predicts_one_class_is_not_an_improvement(imbalanced):
    labels, random_predictions = imbalanced
    base = metrics(labels, random_predictions)
    tuned = metrics(labels, np.zeros_like(labels))  # every row: the majority class
    majority = metrics(labels, np.zeros_like(labels))
    verdict = judge(base, tuned, {"majority": majority})
    assert tuned.accuracy == 0.88 and tuned.accuracy > base.accuracy + 0.3
    assert verdict.kind == "collapsed" and "improved" not in verdict.headline
    assert "predicts 'ham' for 100% of the test texts" in verdict.headline


@pytest.mark.parametrize("class_weights", [False, True])
def test_collapse_advice_fits_what_was_tried(imbalanced, class_weights):
    labels, random_predictions = imbalanced
    majority = metrics(labels, np.zeros_like(labels))
    learnable = {"majority": majority, "tfidf": metrics(labels, labels)}
    advice = judge(majority, majority, learnable, class_weights=class_weights).details[0]
    assert ("class weights" in advice) is not class_weights and "more epochs" in advice
    noise = {"majority": majority, "tfidf": majority}  # nothing in the texts predicts the label
    advice = judge(majority, majority, noise, class_weights=class_weights).details[0]
    assert "labels may not be predictable from these texts" in advice


def test_barely_learned_minority_is_no_better_than_the_majority_rate(imbalanced):
    labels, random_predictions = imbalanced
    predictions = np.zeros_like(labels)
    predictions[[88, 3]] = 1  # one minority text right, one majority text wrong
    verdict = judge(metrics(labels, random_predictions), metrics(labels, predictions),
                    {"majority": metrics(labels, np.zeros_like(labels))})
    assert verdict.kind == "collapsed" or verdict.kind == "majority"
    assert "improved" not in verdict.headline


def test_a_real_improvement_says_so_with_the_references(imbalanced):
    labels, random_predictions = imbalanced
    good = labels.copy()
    good[[0, 89]] = 1 - good[[0, 89]]
    tfidf = labels.copy()
    tfidf[[0, 1, 2, 89, 90]] = 1 - tfidf[[0, 1, 2, 89, 90]]
    verdict = judge(metrics(labels, random_predictions), metrics(labels, good),
                    {"majority": metrics(labels, np.zeros_like(labels)), "tfidf": metrics(labels, tfidf)}, 1e-9)
    assert verdict.kind == "improved" and verdict.headline.startswith("Fine-tuning improved")
    assert any(d.startswith("Ahead of TF-IDF + logistic regression") for d in verdict.details)
    assert any(d.startswith("Ahead of always 'ham'") for d in verdict.details)
    assert any("McNemar" in d for d in verdict.details)


def test_behind_tfidf_is_said():
    labels = np.array([0, 1] * 50)
    tuned = labels.copy()
    tuned[:10] = 1 - tuned[:10]
    verdict = judge(metrics(labels, 1 - labels), metrics(labels, tuned), {"tfidf": metrics(labels, labels)})
    assert any(d.startswith("Behind TF-IDF") for d in verdict.details)


def test_mixed_and_worse():
    labels = np.array([0] * 50 + [1] * 50)
    base = metrics(labels, labels)
    worse = metrics(labels, 1 - labels)
    assert judge(base, worse, {}).kind == "worse"
    assert judge(base, base, {}).kind == "unchanged"


def test_macro_f1_leaves_out_a_class_absent_from_test_and_predictions_and_says_so():
    names = ["a", "b", "rare"]
    labels = np.array([0, 1] * 20)
    scored = metrics(labels, labels, names)
    assert scored.macro_f1 == 1.0 and scored.unscored_classes == ["rare"]
    assert scored.per_class["rare"]["support"] == 0
    verdict = judge(metrics(labels, 1 - labels, names), scored, {})
    assert any("leaves out 'rare'" in d for d in verdict.details)
    predicted_rare = labels.copy()
    predicted_rare[0] = 2  # predicting an absent class is a real mistake and counts
    assert metrics(labels, predicted_rare, names).unscored_classes == []


def test_metrics_round_trip_and_old_reports():
    from lft_core import Metrics

    m = metrics([0, 1, 1], [0, 1, 0])
    assert Metrics.from_dict(m.to_dict()) == m
    old = {"accuracy": 0.5, "macro_f1": 0.4, "per_class": {}, "confusion": [], "n": 2}
    assert Metrics.from_dict(old).scores == {"accuracy": 0.5, "macro_f1": 0.4}
