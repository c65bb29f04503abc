"""The verdict is a claim: it must hold on bad runs too. Metrics come from the local evaluate modules. The saved
report reads back exactly as it was written, and one saved before a metric or a field existed still loads and
compares, the missing values "not measured"."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lft_core import compute_metrics
from lft_core import report as reports
from lft_core.events import EpochEnd, EpochRecord
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


# ---------------------------------------------------------------- the saved report, old and new

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run-2dc49eb"
"""A run folder saved by main at 2dc49eb: its report lacks every field added since (scoring, estimate, ...)."""
NEWER = ["scoring", "estimate", "skipped_references", "quantization", "base_ref", "significance", "throughput",
         "environment", "training_precision"]
"""top-level parts a report saved before them lacks; the tests below drop them all"""


def test_a_saved_report_reads_back_and_writes_exactly_what_it_read():
    saved = json.loads((FIXTURE / "report.json").read_text())
    report = reports.RunReport.from_dict(saved)
    assert report.to_dict() == saved
    assert json.dumps(report.to_dict()) == json.dumps(saved)  # the keys in their order, too
    assert reports.RunReport.from_dict(report.to_dict()) == report
    # the typed leaves hold the file's values
    assert report.timing.train_s == saved["timing"]["train_s"]
    assert report.parameters.trainable == saved["parameters"]["trainable"]
    assert report.reload_check.passed is True and report.reload_check.scoring_agreement is None
    assert report.history.losses[0] == tuple(saved["history"]["losses"][0])
    assert report.history.epochs == [EpochRecord(epoch=1, step=8, scores=saved["history"]["epochs"][0]["scores"])]
    assert report.significance.accuracy_ci95 == tuple(saved["significance"]["accuracy_ci95"])
    assert report.base_ref.id2label == saved["base_ref"]["id2label"] and report.base_ref.problem_type is None
    assert report.method.name == "lora" and not report.method.is_plain
    assert report.label_names == saved["data"]["label_names"] and report.data.text_columns is None
    assert (report.scoring.device, report.scoring.precision) == ("cpu", "fp32")  # before it was recorded: fp32
    assert report.estimate.measured == {} and report.skipped_references == {}


def test_a_new_value_in_an_old_report_is_written_and_an_unknown_key_is_kept():
    saved = json.loads((FIXTURE / "report.json").read_text())
    saved["reload_check"]["written_by_a_newer_version"] = [1, 2]
    report = reports.RunReport.from_dict(saved)
    assert report.to_dict()["reload_check"]["written_by_a_newer_version"] == [1, 2]
    report.scoring = reports.Scoring(device="cuda", precision="bf16")
    assert report.to_dict()["scoring"] == {"device": "cuda", "precision": "bf16", "why": None,
                                           "reload_check_precision": None}


def _stripped(drop: str) -> dict:
    """The fixture's report as a run saved before `drop` and before every newer part and field."""
    values = json.loads((FIXTURE / "report.json").read_text())
    for part in NEWER:
        values.pop(part, None)
    for metrics in [values["base_metrics"], values["finetuned_metrics"], *values["references"].values()]:
        del metrics["scores"][drop]
    for name in ("test_rows", "loaded_with", "max_abs_diff"):
        values["reload_check"].pop(name)
    values["method"] = {"name": "lora"}  # no kind, params or learning rate
    values["timing"].pop("base_eval_s")
    values["history"]["epochs"] = [{"epoch": 1, "step": 8, "accuracy": 0.5}]  # before scores were grouped
    return values


@pytest.mark.parametrize("drop", ["accuracy", "macro_f1"])
def test_a_report_without_a_metric_and_newer_fields_loads_and_compares_as_not_measured(tmp_path, drop):
    from lft_core.compare import comparison_figures, summary_table
    from lft_core.evaluate import METRICS

    folder = tmp_path / "old"
    shutil.copytree(FIXTURE, folder)
    values = _stripped(drop)
    (folder / "report.json").write_text(json.dumps(values))
    report = reports.read_report(folder)
    written = report.to_dict()
    assert {**written, "history": values["history"]} == values  # nothing added, nothing lost
    # an epoch record from before scores were grouped is written grouped, its flat accuracy kept beside
    assert written["history"]["epochs"] == [{"epoch": 1, "step": 8, "scores": {"accuracy": 0.5}, "accuracy": 0.5}]
    label = next(m.label for m in METRICS if m.key == drop)

    table = summary_table([str(folder)])
    assert table.iloc[0][label] == table.iloc[0][f"base {label}"] == reports.NOT_MEASURED
    assert table.iloc[0]["reload"] == "passed" and table.iloc[0]["train s"] == round(values["timing"]["train_s"])
    assert (label, reports.NOT_MEASURED, reports.NOT_MEASURED) in reports.comparison_rows(report)
    markdown = reports.report_markdown(report)
    assert f"| {label} | {reports.NOT_MEASURED} | {reports.NOT_MEASURED} |" in markdown
    facts = dict(reports.facts(report))
    assert facts["method"] == f"lora, learning rate {reports.NOT_MEASURED}"
    assert facts["eval time (base, fine-tuned)"].startswith(reports.NOT_MEASURED)
    assert facts["reload check"].startswith(f"max |logit difference| {reports.NOT_MEASURED} on "
                                            f"{reports.NOT_MEASURED} test rows")
    assert facts["fine-tuned accuracy, 95% interval"] == "-"
    assert facts["model"] == "minilm (base recorded as ?)"
    assert reports.NOT_MEASURED in reports.report_html(report) and reports.NOT_MEASURED in reports.cli_summary(report)
    card = reports.model_card(report)
    assert f"learning rate {reports.NOT_MEASURED}" in card
    assert len(comparison_figures([str(folder)])) == 4
    assert report.history.epochs[0].scores == {"accuracy": 0.5}


def test_one_epoch_record_for_training_events_history_and_the_chart():
    record = EpochRecord.from_dict({"epoch": 2, "step": 16, "scores": {"accuracy": 0.75, "macro_f1": 0.7},
                                    "accuracy": 0.75})
    assert record.to_dict() == {"epoch": 2, "step": 16, "scores": {"accuracy": 0.75, "macro_f1": 0.7}, "accuracy": 0.75}
    assert EpochRecord(epoch=2, step=16, scores={"accuracy": 0.75, "macro_f1": 0.7}).to_dict() == record.to_dict()
    event = EpochEnd.of(record, best_epoch=1)
    assert event.record == record and event.best_epoch == 1
    assert EpochRecord.from_dict({"epoch": 1, "step": 8, "accuracy": 0.5}).scores == {"accuracy": 0.5}
    curve = reports.training_curves([(8, 1.0), (16, 0.5)], [EpochRecord(epoch=1, step=8), record])
    validation = [t for t in curve.data if t.name == "validation accuracy"][0]
    assert list(validation.x) == [8, 16] and list(validation.y) == [None, 0.75]  # epoch 1 measured no accuracy


def test_the_saved_epoch_records_of_a_checkpoint_from_before_merge_with_new_ones(tmp_path):
    from lft_core.train import _merge_epochs

    (tmp_path / "epochs.json").write_text(json.dumps([{"epoch": 1, "step": 8, "scores": {"accuracy": 0.5},
                                                       "accuracy": 0.5}]))
    merged = _merge_epochs(tmp_path, [EpochRecord(epoch=2, step=16, scores={"accuracy": 0.6})])
    assert merged == [EpochRecord(epoch=1, step=8, scores={"accuracy": 0.5}),
                      EpochRecord(epoch=2, step=16, scores={"accuracy": 0.6})]
    assert json.loads((tmp_path / "epochs.json").read_text())[1] == {"epoch": 2, "step": 16,
                                                                    "scores": {"accuracy": 0.6}, "accuracy": 0.6}


def test_the_live_chart_reads_the_validation_score_by_its_key_not_its_label(monkeypatch):
    import lft_core
    from lft_core.evaluate import MetricSpec
    from ui.train_tab import _View

    relabelled = [MetricSpec(m.key, f"{m.label} (validation)", m.module) for m in lft_core.METRICS]
    monkeypatch.setattr(lft_core, "METRICS", relabelled)
    view = _View("run")
    view.apply(EpochEnd(epoch=1, step=8, scores={"accuracy": 0.625, "macro_f1": 0.5}, best_epoch=1))
    view.apply(EpochEnd(epoch=2, step=16, scores={"accuracy": 0.75}, best_epoch=2))  # a run without macro-F1
    _, _, figure, table, *_ = view.render()
    validation = [t for t in figure.data if t.name == "validation accuracy"][0]
    assert list(validation.x) == [8, 16] and list(validation.y) == [0.625, 0.75]
    assert list(table.columns) == ["epoch", "step", *[m.label for m in relabelled], "best so far"]
    assert table["accuracy (validation)"].tolist() == [0.625, 0.75] and table["best so far"].tolist() == [1, 2]
    assert table["macro-F1 (validation)"].isna().tolist() == [False, True]


def test_the_verdict_says_when_test_texts_were_seen_in_training():
    """A made-up CSV whose test texts repeat its train texts scored 1.000; the verdict must say what that figure is."""
    labels = np.array([0, 1] * 15)
    verdict = judge(metrics(labels, 1 - labels), metrics(labels, labels), {}, seen_in_train=27)
    assert verdict.kind == "improved"
    assert any("27 of the 30 test texts (90%) also appear in train" in d for d in verdict.details), verdict.details
    assert not any("also appear in train" in d for d in judge(metrics(labels, 1 - labels), metrics(labels, labels),
                                                                {}, seen_in_train=0).details)


def test_the_report_counts_test_texts_seen_in_train():
    from datasets import ClassLabel, Dataset, DatasetDict

    from lft_core.engine import _shape_facts

    label = ClassLabel(names=NAMES)
    split = lambda texts: Dataset.from_dict({"text": texts, "label": [0] * len(texts)}).cast_column("label", label)
    data = DatasetDict(train=split(["a b", "c d", "e f"]), validation=split(["x"]), test=split(["A B ", "g h"]))
    assert _shape_facts(data)["test_seen_in_train"] == 1
